//! The HTTP/1.x request parser: works on the bytes received so far and says whether they
//! hold a whole request head, need more, or can never become a valid request.
//!
//! Requests with a body are refused (the server only serves GET and HEAD), so a request
//! is its head: the request line, the header lines and an empty line. Lines end in CRLF;
//! a bare LF is accepted too (RFC 9112, section 2.2). Every limit is checked on partial
//! input as well, so a peer cannot make the buffer grow past the limits.

/// The longest method token accepted (longer ones are malformed requests).
const MAX_METHOD: usize = 32;
/// `HTTP/1.1` plus a CR.
const MAX_VERSION: usize = 9;

/// Size limits of a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest request target, in bytes (longer: 414).
    pub max_target: usize,
    /// The longest head (request line, headers and the empty line), in bytes (longer: 431).
    pub max_head: usize,
    /// The most header lines (more: 431).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_target: 1024,
            max_head: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// The request methods the server tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// Any other well-formed method (answered with 405).
    Other,
}

/// The protocol versions the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client asks for
    /// keep-alive.
    Http10,
    /// HTTP/1.1 (and later 1.x minors): the connection stays open unless a side says
    /// `Connection: close`.
    Http11,
}

/// A complete, well-formed request head, borrowing from the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The request target as sent: visible ASCII only, at most `Limits::max_target` bytes.
    pub target: &'a str,
    /// The protocol version.
    pub version: Version,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// How many bytes of the buffer the request took (the next request starts there).
    pub length: usize,
    /// The headers that make the response conditional or partial.
    pub conditions: Conditions<'a>,
}

/// The values of the headers that make a response conditional or partial, trimmed,
/// as sent. A header sent more than once is left out ([`Conditions::repeated`]): the
/// server then answers in full, as it may.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditions<'a> {
    /// `Range`.
    pub range: Option<&'a [u8]>,
    /// `If-Range`.
    pub if_range: Option<&'a [u8]>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a [u8]>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a [u8]>,
    /// One of them came more than once.
    pub repeated: bool,
}

impl<'a> Conditions<'a> {
    /// Records `value` for the header kept in `slot`.
    fn set(slot: &mut Option<&'a [u8]>, repeated: &mut bool, value: &'a [u8]) {
        if slot.is_some() {
            *repeated = true;
        }
        *slot = Some(value);
    }

    /// Returns the headers, without those that came more than once.
    fn settled(self) -> Conditions<'a> {
        if self.repeated {
            Conditions {
                repeated: true,
                ..Conditions::default()
            }
        } else {
            self
        }
    }
}

/// Why bytes can never become an acceptable request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The syntax is wrong; the detail says where (400).
    Malformed(&'static str),
    /// The request target is longer than the limit (414).
    TargetTooLong,
    /// The head has more bytes or more header lines than the limits (431).
    HeadTooLarge,
    /// The request announces a body, which this server never accepts (413).
    BodyNotAccepted,
    /// The major protocol version is not 1 (505).
    VersionNotSupported,
}

/// What the bytes received so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// A request head may still come; read more.
    Incomplete,
    /// A whole request head.
    Complete(Request<'a>),
    /// No continuation makes this a request the server accepts.
    Error(RequestError),
}

/// Returns what `buffer`, the bytes received on a connection since the end of the
/// previous request, holds. Never panics, whatever the bytes.
pub fn parse<'a>(buffer: &'a [u8], limits: &Limits) -> Parse<'a> {
    match parse_head(buffer, limits) {
        Ok(Some(request)) => Parse::Complete(request),
        Ok(None) => Parse::Incomplete,
        Err(error) => Parse::Error(error),
    }
}

fn parse_head<'a>(buffer: &'a [u8], limits: &Limits) -> Result<Option<Request<'a>>, RequestError> {
    // Empty lines before the request line are ignored (RFC 9112, section 2.2).
    let mut start = 0;
    while let Some(rest) = buffer.get(start..) {
        if rest.starts_with(b"\r\n") {
            start += 2;
        } else if rest.starts_with(b"\n") {
            start += 1;
        } else {
            break;
        }
    }
    let Some((line, mut position)) = next_line(buffer, start)? else {
        check_partial_request_line(&buffer[start..], limits)?;
        if buffer.len() > limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
        return Ok(None);
    };
    let (method, target, version) = request_line(line, limits)?;
    let mut headers = Headers::default();
    let mut count = 0;
    loop {
        let Some((line, next)) = next_line(buffer, position)? else {
            if buffer.len() > limits.max_head {
                return Err(RequestError::HeadTooLarge);
            }
            return Ok(None);
        };
        if next > limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
        position = next;
        if line.is_empty() {
            break;
        }
        count += 1;
        if count > limits.max_headers {
            return Err(RequestError::HeadTooLarge);
        }
        headers.add(line)?;
    }
    if headers.body {
        return Err(RequestError::BodyNotAccepted);
    }
    if version == Version::Http11 && headers.hosts != 1 {
        return Err(RequestError::Malformed(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let keep_alive = match version {
        Version::Http11 => !headers.close,
        Version::Http10 => headers.keep_alive && !headers.close,
    };
    Ok(Some(Request {
        method,
        target,
        version,
        keep_alive,
        length: position,
        conditions: headers.conditions.settled(),
    }))
}

/// Returns the line that starts at `start` without its line end, and where the next line
/// starts; `None` when the line has not ended yet. A CR anywhere but before the LF is
/// malformed.
fn next_line(buffer: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, RequestError> {
    let rest = buffer.get(start..).unwrap_or_default();
    let Some(end) = rest.iter().position(|&byte| byte == b'\n') else {
        return Ok(None);
    };
    let line = &rest[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(RequestError::Malformed("a bare CR in a line"));
    }
    Ok(Some((line, start + end + 1)))
}

/// Refuses an unfinished request line that can only end up over a limit.
fn check_partial_request_line(partial: &[u8], limits: &Limits) -> Result<(), RequestError> {
    let Some(space) = partial.iter().position(|&byte| byte == b' ') else {
        return if partial.len() > MAX_METHOD {
            Err(RequestError::Malformed("the method is too long"))
        } else {
            Ok(())
        };
    };
    let after = &partial[space + 1..];
    match after.iter().position(|&byte| byte == b' ') {
        None if after.len() > limits.max_target => Err(RequestError::TargetTooLong),
        None => Ok(()),
        Some(end) if end > limits.max_target => Err(RequestError::TargetTooLong),
        Some(end) if after.len() - end - 1 > MAX_VERSION => {
            Err(RequestError::Malformed("the request line is too long"))
        }
        Some(_) => Ok(()),
    }
}

/// Returns whether `byte` may appear in a token (method, header name; RFC 9110, 5.6.2).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn request_line<'a>(
    line: &'a [u8],
    limits: &Limits,
) -> Result<(Method, &'a str, Version), RequestError> {
    let mut parts = line.split(|&byte| byte == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(RequestError::Malformed("the method is not a token"));
    }
    if target.len() > limits.max_target {
        return Err(RequestError::TargetTooLong);
    }
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return Err(RequestError::Malformed(
            "the target is empty or not visible ASCII",
        ));
    }
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Version::Http10,
                (b'1', _) => Version::Http11,
                _ => return Err(RequestError::VersionNotSupported),
            }
        }
        _ => return Err(RequestError::Malformed("the version is not HTTP/D.D")),
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    // Every byte is visible ASCII, so this is valid UTF-8.
    let target = core::str::from_utf8(target)
        .map_err(|_| RequestError::Malformed("the target is not visible ASCII"))?;
    Ok((method, target, version))
}

/// What the header lines said that matters to this server.
#[derive(Debug, Default)]
struct Headers<'a> {
    /// A body is announced (Content-Length above zero, or any Transfer-Encoding).
    body: bool,
    /// Host header lines seen.
    hosts: usize,
    /// `Connection: close` seen.
    close: bool,
    /// `Connection: keep-alive` seen.
    keep_alive: bool,
    /// The conditional and range headers.
    conditions: Conditions<'a>,
}

impl<'a> Headers<'a> {
    fn add(&mut self, line: &'a [u8]) -> Result<(), RequestError> {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            return Err(RequestError::Malformed("a header line without a colon"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // Whitespace before the colon, or a line folded onto the previous one, is not a
        // token, and both are to be refused (RFC 9112, sections 5.1 and 5.2).
        if name.is_empty() || !name.iter().all(|&byte| is_token_byte(byte)) {
            return Err(RequestError::Malformed("a header name is not a token"));
        }
        if !value
            .iter()
            .all(|&byte| byte == b'\t' || byte == b' ' || byte.is_ascii_graphic() || byte >= 0x80)
        {
            return Err(RequestError::Malformed(
                "a header value holds a control character",
            ));
        }
        let value = value.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(RequestError::Malformed("Content-Length is not a number"));
            }
            if value.iter().any(|&digit| digit != b'0') {
                self.body = true;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.body = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"range") {
            let conditions = &mut self.conditions;
            Conditions::set(&mut conditions.range, &mut conditions.repeated, value);
        } else if name.eq_ignore_ascii_case(b"if-range") {
            let conditions = &mut self.conditions;
            Conditions::set(&mut conditions.if_range, &mut conditions.repeated, value);
        } else if name.eq_ignore_ascii_case(b"if-none-match") {
            let conditions = &mut self.conditions;
            Conditions::set(
                &mut conditions.if_none_match,
                &mut conditions.repeated,
                value,
            );
        } else if name.eq_ignore_ascii_case(b"if-modified-since") {
            let conditions = &mut self.conditions;
            Conditions::set(
                &mut conditions.if_modified_since,
                &mut conditions.repeated,
                value,
            );
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&byte| byte == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use percore::random::XorShift64;

    fn limits() -> Limits {
        Limits::default()
    }

    fn complete(text: &[u8]) -> Request<'_> {
        match parse(text, &limits()) {
            Parse::Complete(request) => request,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(text)),
        }
    }

    fn error(text: &[u8]) -> RequestError {
        match parse(text, &limits()) {
            Parse::Error(error) => error,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn a_simple_get() {
        let text = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n";
        let request = complete(text);
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.target, "/index.html");
        assert_eq!(request.version, Version::Http11);
        assert!(request.keep_alive);
        assert_eq!(request.length, text.len());
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let text = b"HEAD /a%20b?x=1 HTTP/1.0\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(parse(&text[..end], &limits()), Parse::Incomplete, "{end}");
        }
        let request = complete(text);
        assert_eq!(request.method, Method::Head);
        assert_eq!(request.version, Version::Http10);
        assert!(request.keep_alive);
    }

    #[test]
    fn conditions_are_kept_as_sent_and_repeats_drop_them() {
        let text = b"GET /a HTTP/1.1\r\nHost: h\r\nRange:  bytes=0-99 \r\n\
                     If-None-Match: \"abc\", W/\"d\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                     if-range: \"abc\"\r\n\r\n";
        let request = complete(text);
        let conditions = request.conditions;
        assert_eq!(conditions.range, Some(&b"bytes=0-99"[..]));
        assert_eq!(conditions.if_none_match, Some(&b"\"abc\", W/\"d\""[..]));
        assert_eq!(
            conditions.if_modified_since,
            Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..])
        );
        assert_eq!(conditions.if_range, Some(&b"\"abc\""[..]));
        assert!(!conditions.repeated);
        let twice = complete(b"GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\nIf-None-Match: *\r\n\r\n");
        assert!(twice.conditions.repeated);
        assert_eq!(twice.conditions.range, None);
        assert_eq!(twice.conditions.if_none_match, None);
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").conditions,
            Conditions::default()
        );
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let text = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c";
        let first = complete(text);
        assert_eq!(first.target, "/a");
        let second = complete(&text[first.length..]);
        assert_eq!(second.target, "/b");
        let rest = &text[first.length + second.length..];
        assert_eq!(rest, b"GET /c");
        assert_eq!(parse(rest, &limits()), Parse::Incomplete);
    }

    #[test]
    fn bare_line_feeds_and_leading_empty_lines_are_accepted() {
        let text = b"\r\n\nGET / HTTP/1.1\nHost: h\n\n";
        let request = complete(text);
        assert_eq!(request.target, "/");
        assert_eq!(request.length, text.len());
        assert_eq!(parse(b"\r\n\r\n", &limits()), Parse::Incomplete);
    }

    #[test]
    fn connection_options_decide_keep_alive() {
        let cases: [(&[u8], bool); 8] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nconnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: Upgrade,  keep-alive \r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.9\r\nHost: h\r\n\r\n", true),
        ];
        for (text, keep_alive) in cases {
            assert_eq!(
                complete(text).keep_alive,
                keep_alive,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn other_methods_parse_as_other() {
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get", "BREW"] {
            let text = alloc::format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(complete(text.as_bytes()).method, Method::Other, "{method}");
        }
    }

    #[test]
    fn a_body_is_refused() {
        for text in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 00010\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        ] {
            assert_eq!(error(text), RequestError::BodyNotAccepted);
        }
        let zero = complete(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n");
        assert_eq!(zero.method, Method::Get);
    }

    #[test]
    fn malformed_requests() {
        let cases: &[&[u8]] = &[
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
            b"GET /\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTX/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost h\r\n\r\n",
            b"GET / HTTP/1.1\r\n: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\x00i\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for text in cases {
            assert!(
                matches!(error(text), RequestError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn other_major_versions_are_not_supported() {
        assert_eq!(
            error(b"GET / HTTP/2.0\r\n\r\n"),
            RequestError::VersionNotSupported
        );
        assert_eq!(
            error(b"GET / HTTP/0.9\r\n\r\n"),
            RequestError::VersionNotSupported
        );
    }

    #[test]
    fn target_length_limit() {
        let at_limit = alloc::format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(1023));
        assert_eq!(complete(at_limit.as_bytes()).target.len(), 1024);
        let over = alloc::format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(1024));
        assert_eq!(error(over.as_bytes()), RequestError::TargetTooLong);
        // Known before the line ends, so an endless target is refused early.
        let partial = alloc::format!("GET /{}", "a".repeat(1024));
        assert_eq!(error(partial.as_bytes()), RequestError::TargetTooLong);
        let partial = alloc::format!("GET /{}", "a".repeat(1023));
        assert_eq!(parse(partial.as_bytes(), &limits()), Parse::Incomplete);
    }

    #[test]
    fn endless_first_lines_are_refused_early() {
        assert!(matches!(
            error("A".repeat(33).as_bytes()),
            RequestError::Malformed(_)
        ));
        assert_eq!(
            parse("A".repeat(32).as_bytes(), &limits()),
            Parse::Incomplete
        );
        assert!(matches!(
            error(b"GET / HTTP/1.1xxxxxxxxxxx"),
            RequestError::Malformed(_)
        ));
        assert_eq!(parse(b"GET / HTTP/1.1\r", &limits()), Parse::Incomplete);
        let blank = b"\r\n".repeat(5000);
        assert_eq!(error(&blank), RequestError::HeadTooLarge);
    }

    #[test]
    fn head_size_limits() {
        let mut text = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for index in 0..63 {
            text.extend_from_slice(alloc::format!("X-{index}: v\r\n").as_bytes());
        }
        let mut exact = text.clone();
        exact.extend_from_slice(b"\r\n");
        complete(&exact);
        text.extend_from_slice(b"X-64: v\r\n\r\n");
        assert_eq!(error(&text), RequestError::HeadTooLarge);

        let big = alloc::format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(8200)
        );
        assert_eq!(error(big.as_bytes()), RequestError::HeadTooLarge);
        // Also while the header is still arriving.
        assert_eq!(error(&big.as_bytes()[..8200]), RequestError::HeadTooLarge);
        // A head of exactly the limit passes.
        let prefix = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".len() + 4;
        let fits = alloc::format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(8192 - prefix)
        );
        assert_eq!(fits.len(), 8192);
        complete(fits.as_bytes());
    }

    /// Returns a number below `bound` (at least 1) from the mutation loop's generator.
    fn below(random: &mut XorShift64, bound: usize) -> usize {
        random.below(bound.max(1) as u64) as usize
    }

    /// Bytes that matter to the parser, favoured by the mutations.
    const INTERESTING: &[u8] = b"\r\n :/%.\\\0\t\x7f\xff0aGHTP";

    fn mutate(seed: &[u8], random: &mut XorShift64) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + below(random, 6) {
            let at = below(random, bytes.len() + 1);
            let byte = if below(random, 2) == 0 {
                INTERESTING[below(random, INTERESTING.len())]
            } else {
                random.next_u64() as u8
            };
            match below(random, 5) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                3 => {
                    let end = (at + below(random, 64)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    let to = below(random, bytes.len() + 1);
                    bytes.splice(to..to, copy);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    }

    #[test]
    fn mutated_requests_never_panic_and_stay_consistent() {
        let seeds: &[&[u8]] = &[
            b"GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
            b"HEAD /docs/a%20b.txt?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n",
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
            b"\r\nGET /%2e%2e/x HTTP/1.1\nHost: h\nConnection: close\n\n",
        ];
        let limits = Limits {
            max_target: 40,
            max_head: 160,
            max_headers: 4,
        };
        let mut random = XorShift64::new(0x9e37_79b9_7f4a_7c15);
        let mut outcomes = [0usize; 3];
        for round in 0..200_000 {
            let input = mutate(seeds[round % seeds.len()], &mut random);
            match parse(&input, &limits) {
                Parse::Incomplete => {
                    outcomes[0] += 1;
                    assert!(input.len() <= limits.max_head);
                }
                Parse::Complete(request) => {
                    outcomes[1] += 1;
                    assert!(request.length <= input.len());
                    assert!(request.length <= limits.max_head);
                    assert!(request.target.len() <= limits.max_target);
                    assert!(request.target.bytes().all(|byte| byte.is_ascii_graphic()));
                    // A complete head stays complete, and the same, whatever follows.
                    let mut longer = input.clone();
                    longer.extend_from_slice(b"GARBAGE\r\n");
                    assert_eq!(parse(&longer, &limits), Parse::Complete(request));
                }
                Parse::Error(_) => outcomes[2] += 1,
            }
        }
        // The mutations reach all three outcomes, so the loop tests something.
        assert!(outcomes.iter().all(|&count| count > 1000), "{outcomes:?}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = XorShift64::new(12345);
        for _ in 0..20_000 {
            let length = below(&mut random, 300);
            let bytes: Vec<u8> = (0..length).map(|_| random.next_u64() as u8).collect();
            let _ = parse(&bytes, &limits());
        }
    }
}
