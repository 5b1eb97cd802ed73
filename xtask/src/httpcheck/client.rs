//! A small HTTP/1.1 client over `std::net::TcpStream`: keep-alive requests, responses
//! read whole (split or back to back), and whether the server closed the connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A response as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// Returns the value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The longest response head the client accepts.
const MAX_HEAD: usize = 16 * 1024;

/// Returns the status and headers of a response head (the bytes before the empty line).
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "the response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((status, headers))
}

/// A keep-alive connection to the server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    /// Bytes received and not yet taken by a response.
    received: Vec<u8>,
}

impl Client {
    /// Returns a connection to 127.0.0.1:`port` whose reads give up after `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> Result<Client, String> {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|error| format!("connect: {error}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|error| error.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(Client {
            stream,
            received: Vec::new(),
        })
    }

    /// Returns the connection, for a caller that goes on by hand (what was received
    /// and not taken by a response is dropped).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|error| format!("send: {error}"))
    }

    /// Sends `METHOD TARGET HTTP/1.1` with a Host header and returns the response.
    pub fn request(&mut self, method: &str, target: &str) -> Result<Response, String> {
        self.request_with(method, target, &[])
    }

    /// Sends `METHOD TARGET HTTP/1.1` with a Host header and `headers` (name, value),
    /// and returns the response.
    pub fn request_with(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.send(request.as_bytes())?;
        self.response(method == "HEAD")
            .map_err(|error| format!("{method} {target} {headers:?}: {error}"))
    }

    /// Reads more bytes; returns how many (0: the server closed the connection).
    fn fill(&mut self) -> Result<usize, String> {
        let mut buffer = [0u8; 64 * 1024];
        let count = self
            .stream
            .read(&mut buffer)
            .map_err(|error| format!("read: {error}"))?;
        self.received.extend_from_slice(&buffer[..count]);
        Ok(count)
    }

    /// Reads one response; `head_only` when it answers a HEAD request.
    pub fn response(&mut self, head_only: bool) -> Result<Response, String> {
        let end = loop {
            if let Some(end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if self.received.len() > MAX_HEAD {
                return Err("the response head is too long".into());
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "the server closed the connection after {} bytes of a head",
                    self.received.len()
                ));
            }
        };
        let (status, headers) = parse_head(&self.received[..end])?;
        self.received.drain(..end + 4);
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        // A 304 has no body (and need not say how long the body it stands for is).
        if response.status == 304 {
            return Ok(response);
        }
        let length: usize = response
            .header("Content-Length")
            .and_then(|value| value.parse().ok())
            .ok_or("no valid Content-Length")?;
        if !head_only {
            while self.received.len() < length {
                if self.fill()? == 0 {
                    return Err(format!(
                        "the server closed the connection after {} of {length} body bytes",
                        self.received.len()
                    ));
                }
            }
            response.body = self.received.drain(..length).collect();
        }
        Ok(response)
    }

    /// Returns whether the server closes the connection (a read gives end of stream)
    /// within `within`, with no further bytes.
    pub fn closed_within(&mut self, within: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(
                    left.clamp(Duration::from_millis(10), Duration::from_millis(500)),
                ))
                .map_err(|error| error.to_string())?;
            match self.fill() {
                Ok(0) => return Ok(self.received.is_empty()),
                Ok(_) => return Err("bytes after the last response".into()),
                // The read timeout: look again until the deadline.
                Err(_) => {}
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// `reply` in small pieces, then closes.
    fn serve_once(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            for piece in reply.chunks(7) {
                let _ = stream.write_all(piece);
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(1));
            }
        });
        port
    }

    #[test]
    fn reads_split_responses_and_keeps_what_follows() {
        let port = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello\
              HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nnoHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        );
        let mut client = Client::connect(port, Duration::from_secs(5)).unwrap();
        let first = client.request("GET", "/").unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(first.body, b"hello");
        assert_eq!(first.header("content-type"), Some("text/plain"));
        let second = client.response(false).unwrap();
        assert_eq!((second.status, second.body.as_slice()), (404, &b"no"[..]));
        let head = client.response(true).unwrap();
        assert_eq!(head.header("Content-Length"), Some("9"));
        assert!(head.body.is_empty());
        assert!(client.closed_within(Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn short_bodies_and_bad_heads_are_errors() {
        let port = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let mut client = Client::connect(port, Duration::from_secs(5)).unwrap();
        assert!(client.request("GET", "/").unwrap_err().contains("5 of 10"));

        let port = serve_once(b"HTTP/1.0 200 OK\r\n\r\n");
        let mut client = Client::connect(port, Duration::from_secs(5)).unwrap();
        assert!(client.request("GET", "/").is_err());

        let port = serve_once(b"HTTP/1.1 200 OK\r\nNo-Length: x\r\n\r\n");
        let mut client = Client::connect(port, Duration::from_secs(5)).unwrap();
        assert!(client
            .request("GET", "/")
            .unwrap_err()
            .contains("Content-Length"));
    }
}
