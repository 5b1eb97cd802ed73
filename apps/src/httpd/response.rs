//! Response heads: the status line and the headers, written into a byte buffer without
//! allocating, and the small HTML bodies of error responses.

use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

use super::date;
use super::request::RequestError;
use super::validators::EntityTag;

/// The statuses this server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: the file follows.
    Ok,
    /// 206: the part of the file the request's range named follows.
    PartialContent,
    /// 301: a folder was named without its final `/`.
    MovedPermanently,
    /// 304: the client's copy is current (a conditional request).
    NotModified,
    /// 400: the request or its path is malformed or refused.
    BadRequest,
    /// 404: no such file.
    NotFound,
    /// 405: only GET and HEAD are served.
    MethodNotAllowed,
    /// 408: the request head did not arrive in time.
    RequestTimeout,
    /// 413: the request has a body.
    ContentTooLarge,
    /// 414: the request target is too long.
    UriTooLong,
    /// 416: the request's range lies outside the file.
    RangeNotSatisfiable,
    /// 431: the request head is too large.
    HeadersTooLarge,
    /// 500: the share could not be read.
    InternalServerError,
    /// 503: the server has no memory or worker for the request now.
    ServiceUnavailable,
    /// 505: not HTTP/1.x.
    VersionNotSupported,
}

impl Status {
    /// Returns the status code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::PartialContent => 206,
            Status::MovedPermanently => 301,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::HeadersTooLarge => 431,
            Status::InternalServerError => 500,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    /// Returns the reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::PartialContent => "Partial Content",
            Status::MovedPermanently => "Moved Permanently",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// Returns whether the connection must close after this response: after a request
    /// the server could not frame or will not read, and after its own failures.
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            Status::Ok
                | Status::PartialContent
                | Status::MovedPermanently
                | Status::NotModified
                | Status::NotFound
                | Status::MethodNotAllowed
                | Status::RangeNotSatisfiable
        )
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Status {
        match error {
            RequestError::Malformed(_) => Status::BadRequest,
            RequestError::TargetTooLong => Status::UriTooLong,
            RequestError::HeadTooLarge => Status::HeadersTooLarge,
            RequestError::BodyNotAccepted => Status::ContentTooLarge,
            RequestError::VersionNotSupported => Status::VersionNotSupported,
        }
    }
}

/// The `Content-Range` of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes START-END/SIZE` (206).
    Part {
        /// The first byte sent.
        start: u64,
        /// The last byte sent (inclusive).
        end: u64,
        /// The whole file's size.
        size: u64,
    },
    /// `bytes */SIZE` (416).
    Unsatisfied {
        /// The whole file's size.
        size: u64,
    },
}

/// What goes into a response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// The status.
    pub status: Status,
    /// The Content-Type.
    pub content_type: &'a str,
    /// The Content-Length (also for HEAD, where no body follows); left out for 304.
    pub content_length: u64,
    /// `Some(idle timeout)` keeps the connection open; `None` closes it.
    pub keep_alive: Option<Duration>,
    /// The Location of a redirect. Left out unless it is all visible ASCII, so no
    /// caller can split the head.
    pub location: Option<&'a str>,
    /// The file's entity tag, for `ETag`.
    pub etag: Option<&'a EntityTag>,
    /// The file's modification time (seconds since the Unix epoch), for
    /// `Last-Modified`.
    pub last_modified: Option<u64>,
    /// Now (seconds since the Unix epoch), for `Date`; `None` without a clock.
    pub date: Option<u64>,
    /// The `Content-Range`, for 206 and 416.
    pub content_range: Option<ContentRange>,
    /// Whether to say `Accept-Ranges: bytes` (files do).
    pub accept_ranges: bool,
}

impl<'a> Head<'a> {
    /// Returns a head for `status` with the content type and length given and nothing
    /// else (no validators, no range, no date, closing).
    pub fn new(status: Status, content_type: &'a str, content_length: u64) -> Head<'a> {
        Head {
            status,
            content_type,
            content_length,
            keep_alive: None,
            location: None,
            etag: None,
            last_modified: None,
            date: None,
            content_range: None,
            accept_ranges: false,
        }
    }
}

/// The longest head the server writes: the fixed headers, and a Location as long as
/// the longest request target allows.
pub const MAX_HEAD: usize = 2048;

/// A head being written into a fixed buffer; past its end the head is marked spoiled
/// rather than cut.
struct Cursor<'b> {
    out: &'b mut [u8],
    length: usize,
    overflowed: bool,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let end = self.length + text.len();
        match self.out.get_mut(self.length..end) {
            Some(slot) => {
                slot.copy_from_slice(text.as_bytes());
                self.length = end;
                Ok(())
            }
            None => {
                self.overflowed = true;
                Err(core::fmt::Error)
            }
        }
    }
}

impl Head<'_> {
    /// Writes the status line, the headers and the empty line into `out`; returns how
    /// many bytes, or `None` when they do not fit ([`MAX_HEAD`] always suffices for
    /// heads whose Location comes from a request target).
    pub fn write_into(&self, out: &mut [u8]) -> Option<usize> {
        let mut cursor = Cursor {
            out,
            length: 0,
            overflowed: false,
        };
        let _ = self.write_fields(&mut cursor);
        (!cursor.overflowed).then_some(cursor.length)
    }

    fn write_fields(&self, out: &mut Cursor<'_>) -> core::fmt::Result {
        write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: manada-httpd\r\n",
            self.status.code(),
            self.status.reason()
        )?;
        if let Some(now) = self.date {
            let text = date::format(now);
            out.write_str("Date: ")?;
            out.write_str(core::str::from_utf8(&text).unwrap_or_default())?;
            out.write_str("\r\n")?;
        }
        if self.status != Status::NotModified {
            write!(
                out,
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type, self.content_length
            )?;
        }
        match self.content_range {
            Some(ContentRange::Part { start, end, size }) => {
                write!(out, "Content-Range: bytes {start}-{end}/{size}\r\n")?;
            }
            Some(ContentRange::Unsatisfied { size }) => {
                write!(out, "Content-Range: bytes */{size}\r\n")?;
            }
            None => {}
        }
        if self.accept_ranges {
            out.write_str("Accept-Ranges: bytes\r\n")?;
        }
        if let Some(etag) = self.etag {
            out.write_str("ETag: ")?;
            out.write_str(core::str::from_utf8(etag.as_bytes()).unwrap_or_default())?;
            out.write_str("\r\n")?;
        }
        if let Some(modified) = self.last_modified {
            let text = date::format(modified);
            out.write_str("Last-Modified: ")?;
            out.write_str(core::str::from_utf8(&text).unwrap_or_default())?;
            out.write_str("\r\n")?;
        }
        match self.keep_alive {
            Some(idle) => write!(
                out,
                "Connection: keep-alive\r\nKeep-Alive: timeout={}\r\n",
                idle.as_secs().max(1)
            )?,
            None => out.write_str("Connection: close\r\n")?,
        }
        if self.status == Status::MethodNotAllowed {
            out.write_str("Allow: GET, HEAD\r\n")?;
        }
        if let Some(location) = self.location {
            if !location.is_empty() && location.bytes().all(|byte| byte.is_ascii_graphic()) {
                write!(out, "Location: {location}\r\n")?;
            }
        }
        out.write_str("\r\n")
    }

    /// Appends the head to `out`; `false` (and `out` unchanged) when there was no
    /// memory for it.
    pub fn write_to(&self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if out.try_reserve(MAX_HEAD).is_err() {
            return false;
        }
        out.resize(start + MAX_HEAD, 0);
        match self.write_into(&mut out[start..]) {
            Some(length) => {
                out.truncate(start + length);
                true
            }
            None => {
                out.truncate(start);
                false
            }
        }
    }
}

/// The Content-Type of the error pages.
pub const ERROR_TYPE: &str = "text/html; charset=utf-8";

/// The longest error page body.
pub const MAX_ERROR_BODY: usize = 160;

/// Writes the HTML page that explains `status` into `out`; returns its length.
pub fn error_body(status: Status, out: &mut [u8; MAX_ERROR_BODY]) -> usize {
    let mut cursor = Cursor {
        out,
        length: 0,
        overflowed: false,
    };
    let _ = write!(
        cursor,
        "<!DOCTYPE html>\n<title>{code} {reason}</title>\n<h1>{code} {reason}</h1>\n",
        code = status.code(),
        reason = status.reason()
    );
    cursor.length
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn head_text(head: &Head) -> String {
        let mut out = Vec::new();
        assert!(head.write_to(&mut out));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_ok_head_with_keep_alive() {
        let text = head_text(&Head {
            keep_alive: Some(Duration::from_secs(5)),
            ..Head::new(Status::Ok, "text/plain; charset=utf-8", 615)
        });
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: manada-httpd\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 615\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n"
        );
    }

    #[test]
    fn validators_date_and_ranges() {
        let etag = EntityTag::of_metadata(0x10, 0x20);
        let head = Head {
            etag: Some(&etag),
            last_modified: Some(784_111_777),
            date: Some(784_111_778),
            content_range: Some(ContentRange::Part {
                start: 10,
                end: 19,
                size: 100,
            }),
            accept_ranges: true,
            ..Head::new(Status::PartialContent, "application/octet-stream", 10)
        };
        let text = head_text(&head);
        assert!(
            text.starts_with("HTTP/1.1 206 Partial Content\r\n"),
            "{text}"
        );
        for line in [
            "Date: Sun, 06 Nov 1994 08:49:38 GMT",
            "Content-Length: 10",
            "Content-Range: bytes 10-19/100",
            "Accept-Ranges: bytes",
            "ETag: \"10-20\"",
            "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT",
            "Connection: close",
        ] {
            assert!(
                text.contains(&alloc::format!("\r\n{line}\r\n")),
                "{line} in {text}"
            );
        }
        let text = head_text(&Head {
            content_range: Some(ContentRange::Unsatisfied { size: 100 }),
            ..Head::new(Status::RangeNotSatisfiable, ERROR_TYPE, 0)
        });
        assert!(text.contains("\r\nContent-Range: bytes */100\r\n"));
        let text = head_text(&Head::new(Status::NotModified, "text/html", 615));
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(!text.contains("Content-Type"), "{text}");
        // A head that does not fit is refused whole, never cut.
        let mut small = [0u8; 40];
        assert_eq!(head.write_into(&mut small), None);
    }

    #[test]
    fn method_not_allowed_names_the_methods_and_redirects_their_target() {
        let text = head_text(&Head::new(Status::MethodNotAllowed, ERROR_TYPE, 0));
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));

        let text = head_text(&Head {
            keep_alive: Some(Duration::from_millis(300)),
            location: Some("/docs/"),
            ..Head::new(Status::MovedPermanently, ERROR_TYPE, 0)
        });
        assert!(text.contains("\r\nLocation: /docs/\r\n"));
        assert!(text.contains("Keep-Alive: timeout=1\r\n"));
        assert!(!text.contains("Allow"));
        let long = alloc::format!("/{}/", "a".repeat(1024));
        let text = head_text(&Head {
            location: Some(&long),
            ..Head::new(Status::MovedPermanently, ERROR_TYPE, 0)
        });
        assert!(text.contains(&long));
    }

    #[test]
    fn a_location_that_could_split_the_head_is_left_out() {
        for location in ["/a\r\nSet-Cookie: x", "/a b", "", "/\u{e9}"] {
            let text = head_text(&Head {
                location: Some(location),
                ..Head::new(Status::MovedPermanently, ERROR_TYPE, 0)
            });
            assert!(!text.contains("Location"), "{location:?}");
            assert_eq!(text.matches("\r\n\r\n").count(), 1);
        }
    }

    #[test]
    fn statuses_and_connection_rules() {
        let all = [
            Status::Ok,
            Status::PartialContent,
            Status::MovedPermanently,
            Status::NotModified,
            Status::BadRequest,
            Status::NotFound,
            Status::MethodNotAllowed,
            Status::RequestTimeout,
            Status::ContentTooLarge,
            Status::UriTooLong,
            Status::RangeNotSatisfiable,
            Status::HeadersTooLarge,
            Status::InternalServerError,
            Status::ServiceUnavailable,
            Status::VersionNotSupported,
        ];
        let codes: Vec<u16> = all.iter().map(|status| status.code()).collect();
        assert_eq!(
            codes,
            [200, 206, 301, 304, 400, 404, 405, 408, 413, 414, 416, 431, 500, 503, 505]
        );
        let kept: Vec<u16> = all
            .iter()
            .filter(|status| !status.closes_connection())
            .map(|status| status.code())
            .collect();
        assert_eq!(kept, [200, 206, 301, 304, 404, 405, 416]);
        assert_eq!(
            Status::from(RequestError::Malformed("x")),
            Status::BadRequest
        );
        assert_eq!(
            Status::from(RequestError::TargetTooLong),
            Status::UriTooLong
        );
        assert_eq!(
            Status::from(RequestError::HeadTooLarge),
            Status::HeadersTooLarge
        );
        assert_eq!(
            Status::from(RequestError::BodyNotAccepted),
            Status::ContentTooLarge
        );
        assert_eq!(
            Status::from(RequestError::VersionNotSupported),
            Status::VersionNotSupported
        );
    }

    #[test]
    fn error_bodies_name_the_status() {
        let mut out = [0u8; MAX_ERROR_BODY];
        let length = error_body(Status::RangeNotSatisfiable, &mut out);
        let text = core::str::from_utf8(&out[..length]).unwrap();
        assert!(text.contains("<h1>416 Range Not Satisfiable</h1>"));
    }
}
