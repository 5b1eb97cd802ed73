//! Response heads: the status line and the headers, written into a byte buffer, and the
//! small HTML bodies of error responses.

use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

use super::request::RequestError;

/// The statuses this server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: the file follows.
    Ok,
    /// 301: a folder was named without its final `/`.
    MovedPermanently,
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
    /// 431: the request head is too large.
    HeadersTooLarge,
    /// 500: the share could not be read.
    InternalServerError,
    /// 505: not HTTP/1.x.
    VersionNotSupported,
}

impl Status {
    /// Returns the status code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::MovedPermanently => 301,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::HeadersTooLarge => 431,
            Status::InternalServerError => 500,
            Status::VersionNotSupported => 505,
        }
    }

    /// Returns the reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::MovedPermanently => "Moved Permanently",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// Returns whether the connection must close after this response: after a request
    /// the server could not frame or will not read, and after its own failures.
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            Status::Ok | Status::MovedPermanently | Status::NotFound | Status::MethodNotAllowed
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

/// What goes into a response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// The status.
    pub status: Status,
    /// The Content-Type.
    pub content_type: &'a str,
    /// The Content-Length (also for HEAD, where no body follows).
    pub content_length: u64,
    /// `Some(idle timeout)` keeps the connection open; `None` closes it.
    pub keep_alive: Option<Duration>,
    /// The Location of a redirect. Left out unless it is all visible ASCII, so no
    /// caller can split the head.
    pub location: Option<&'a str>,
}

impl Head<'_> {
    /// Appends the status line, the headers and the empty line to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = alloc::string::String::with_capacity(256);
        // Writing into a String cannot fail.
        let _ = write!(
            text,
            "HTTP/1.1 {} {}\r\nServer: manada-httpd\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.content_length
        );
        match self.keep_alive {
            Some(idle) => {
                let _ = write!(
                    text,
                    "Connection: keep-alive\r\nKeep-Alive: timeout={}\r\n",
                    idle.as_secs().max(1)
                );
            }
            None => text.push_str("Connection: close\r\n"),
        }
        if self.status == Status::MethodNotAllowed {
            text.push_str("Allow: GET, HEAD\r\n");
        }
        if let Some(location) = self.location {
            if !location.is_empty() && location.bytes().all(|byte| byte.is_ascii_graphic()) {
                let _ = write!(text, "Location: {location}\r\n");
            }
        }
        text.push_str("\r\n");
        out.extend_from_slice(text.as_bytes());
    }
}

/// The Content-Type of the error pages.
pub const ERROR_TYPE: &str = "text/html; charset=utf-8";

/// Appends the HTML page that explains `status` to `out`.
pub fn write_error_body(status: Status, out: &mut Vec<u8>) {
    let mut text = alloc::string::String::with_capacity(128);
    let _ = write!(
        text,
        "<!DOCTYPE html>\n<title>{code} {reason}</title>\n<h1>{code} {reason}</h1>\n",
        code = status.code(),
        reason = status.reason()
    );
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn head_text(head: &Head) -> String {
        let mut out = Vec::new();
        head.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_ok_head_with_keep_alive() {
        let text = head_text(&Head {
            status: Status::Ok,
            content_type: "text/plain; charset=utf-8",
            content_length: 615,
            keep_alive: Some(Duration::from_secs(5)),
            location: None,
        });
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: manada-httpd\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 615\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n"
        );
    }

    #[test]
    fn method_not_allowed_names_the_methods_and_redirects_their_target() {
        let text = head_text(&Head {
            status: Status::MethodNotAllowed,
            content_type: ERROR_TYPE,
            content_length: 0,
            keep_alive: None,
            location: None,
        });
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));

        let text = head_text(&Head {
            status: Status::MovedPermanently,
            content_type: ERROR_TYPE,
            content_length: 0,
            keep_alive: Some(Duration::from_millis(300)),
            location: Some("/docs/"),
        });
        assert!(text.contains("\r\nLocation: /docs/\r\n"));
        assert!(text.contains("Keep-Alive: timeout=1\r\n"));
        assert!(!text.contains("Allow"));
    }

    #[test]
    fn a_location_that_could_split_the_head_is_left_out() {
        for location in ["/a\r\nSet-Cookie: x", "/a b", "", "/\u{e9}"] {
            let text = head_text(&Head {
                status: Status::MovedPermanently,
                content_type: ERROR_TYPE,
                content_length: 0,
                keep_alive: None,
                location: Some(location),
            });
            assert!(!text.contains("Location"), "{location:?}");
            assert_eq!(text.matches("\r\n\r\n").count(), 1);
        }
    }

    #[test]
    fn statuses_and_connection_rules() {
        let all = [
            Status::Ok,
            Status::MovedPermanently,
            Status::BadRequest,
            Status::NotFound,
            Status::MethodNotAllowed,
            Status::RequestTimeout,
            Status::ContentTooLarge,
            Status::UriTooLong,
            Status::HeadersTooLarge,
            Status::InternalServerError,
            Status::VersionNotSupported,
        ];
        let codes: Vec<u16> = all.iter().map(|status| status.code()).collect();
        assert_eq!(
            codes,
            [200, 301, 400, 404, 405, 408, 413, 414, 431, 500, 505]
        );
        let kept: Vec<u16> = all
            .iter()
            .filter(|status| !status.closes_connection())
            .map(|status| status.code())
            .collect();
        assert_eq!(kept, [200, 301, 404, 405]);
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
        let mut out = Vec::new();
        write_error_body(Status::NotFound, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("<h1>404 Not Found</h1>"));
    }
}
