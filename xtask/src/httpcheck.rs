//! The host side of the httpd integration test: the site it serves, a small HTTP/1.1
//! client over `std::net::TcpStream`, and the checks run against the guest through a
//! forwarded port.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A file of the test site: its URL path (percent-encoded) and its bytes.
#[derive(Clone, Debug)]
pub struct SiteFile {
    /// The request target that names it.
    pub target: &'static str,
    /// The Content-Type the server should send.
    pub content_type: &'static str,
    /// The bytes on the host.
    pub bytes: Vec<u8>,
}

/// Fetches every file of the site with curl (one invocation, so one keep-alive
/// connection) and compares each with the host's bytes.
fn curl_fetches(port: u16, site: &[SiteFile]) -> Result<(), String> {
    crate::tools::ensure_tool("curl", "curl")?;
    let dir = std::env::temp_dir().join(format!("manada-curl-{}-{port}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let mut command = std::process::Command::new("curl");
    command.args(["--silent", "--show-error", "--fail", "--max-time", "120"]);
    for (index, file) in site.iter().enumerate() {
        command
            .arg("--output")
            .arg(dir.join(index.to_string()))
            .arg(format!("http://127.0.0.1:{port}{}", file.target));
    }
    let result = command
        .output()
        .map_err(|error| format!("cannot run curl: {error}"))
        .and_then(|output| {
            if !output.status.success() {
                return Err(format!(
                    "curl failed with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            for (index, file) in site.iter().enumerate() {
                let fetched = fs::read(dir.join(index.to_string()))
                    .map_err(|error| format!("curl's copy of {}: {error}", file.target))?;
                if fetched != file.bytes {
                    return Err(format!(
                        "curl fetched {} bytes for {}, not the host's {} bytes",
                        fetched.len(),
                        file.target,
                        file.bytes.len()
                    ));
                }
            }
            Ok(())
        });
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Bytes of the big binary file: 3 MiB and an odd tail, many chunks of the server's 64 KiB
/// that end in no round place.
const BIG: usize = 3 * 1024 * 1024 + 123;

/// Byte `i` of the big binary file: not periodic in any power of two, so a chunk sent
/// twice or out of order shows.
fn big_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i / 251).wrapping_mul(13)) as u8
}

/// Writes the test site into `dir` and returns its files.
pub fn build_site(dir: &Path) -> Result<Vec<SiteFile>, String> {
    let page: Vec<u8> = (0..615).map(|i| b'a' + (i % 26) as u8).collect();
    let files = [
        (
            "index.html",
            "/",
            "text/html; charset=utf-8",
            b"<!DOCTYPE html>\n<title>test</title>\n<h1>Manada httpd test</h1>\n".to_vec(),
        ),
        ("page.txt", "/page.txt", "text/plain; charset=utf-8", page),
        (
            "pattern.bin",
            "/pattern.bin",
            "application/octet-stream",
            (0..BIG).map(big_byte).collect(),
        ),
        (
            "sub/nested.css",
            "/sub/nested.css",
            "text/css; charset=utf-8",
            b"h1 { color: teal; }\n".to_vec(),
        ),
        (
            "sub/index.html",
            "/sub/",
            "text/html; charset=utf-8",
            b"<p>the sub folder</p>\n".to_vec(),
        ),
        (
            "A long file name with spaces.json",
            "/A%20long%20file%20name%20with%20spaces.json",
            "application/json",
            b"{\"long\": true}\n".to_vec(),
        ),
    ];
    let mut site = Vec::new();
    for (name, target, content_type, bytes) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        fs::write(&path, &bytes)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        site.push(SiteFile {
            target,
            content_type,
            bytes,
        });
    }
    Ok(site)
}

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

/// Returns `Ok` when `response` is a 200 with `file`'s bytes and Content-Type.
fn check_file(response: &Response, file: &SiteFile) -> Result<(), String> {
    if response.status != 200 {
        return Err(format!("GET {}: status {}", file.target, response.status));
    }
    if response.body != file.bytes {
        let first = response
            .body
            .iter()
            .zip(&file.bytes)
            .position(|(got, want)| got != want)
            .unwrap_or(response.body.len().min(file.bytes.len()));
        return Err(format!(
            "GET {}: {} bytes, expected {}; first difference at byte {first}",
            file.target,
            response.body.len(),
            file.bytes.len()
        ));
    }
    if response.header("Content-Type") != Some(file.content_type) {
        return Err(format!(
            "GET {}: Content-Type {:?}, expected {}",
            file.target,
            response.header("Content-Type"),
            file.content_type
        ));
    }
    Ok(())
}

/// Returns `Ok` when `response` has `status` and exactly `body`.
fn expect(response: &Response, what: &str, status: u16, body: &[u8]) -> Result<(), String> {
    if response.status != status || response.body != body {
        return Err(format!(
            "{what}: status {} with {} bytes, expected {status} with {}",
            response.status,
            response.body.len(),
            body.len()
        ));
    }
    Ok(())
}

/// Checks ranges (206, 416) and conditional requests (304) on a small file, which the
/// net core answers from its cache, and on the big one, which a worker streams: every
/// body byte for byte, every Content-Range and validator as it must be.
fn check_ranges_and_conditions(client: &mut Client, site: &[SiteFile]) -> Result<(), String> {
    for file in [&site[1], &site[2]] {
        let target = file.target;
        let bytes = &file.bytes;
        let size = bytes.len();
        let full = client.request("GET", target)?;
        let etag = full
            .header("ETag")
            .ok_or(format!("GET {target}: no ETag"))?
            .to_string();
        let modified = full
            .header("Last-Modified")
            .ok_or(format!("GET {target}: no Last-Modified"))?
            .to_string();
        if !etag.starts_with('"') || full.header("Accept-Ranges") != Some("bytes") {
            return Err(format!(
                "GET {target}: ETag {etag:?}, Accept-Ranges {:?}",
                full.header("Accept-Ranges")
            ));
        }
        let cases: [(&str, usize, usize); 4] = [
            ("bytes=10-19", 10, 20),
            ("bytes=-123", size - 123, size),
            ("bytes=600-", 600, size),
            ("bytes=0-0", 0, 1),
        ];
        for (range, start, end) in cases {
            let response = client.request_with("GET", target, &[("Range", range)])?;
            let what = format!("GET {target} Range: {range}");
            expect(&response, &what, 206, &bytes[start..end])?;
            let content_range = format!("bytes {start}-{}/{size}", end - 1);
            if response.header("Content-Range") != Some(content_range.as_str()) {
                return Err(format!(
                    "{what}: Content-Range {:?}, expected {content_range}",
                    response.header("Content-Range")
                ));
            }
        }
        let beyond = format!("bytes={}-", size + 10);
        let response = client.request_with("GET", target, &[("Range", &beyond)])?;
        expect(
            &response,
            &format!("GET {target} Range: {beyond}"),
            416,
            b"",
        )?;
        let unsatisfied = format!("bytes */{size}");
        if response.header("Content-Range") != Some(unsatisfied.as_str()) {
            return Err(format!(
                "416 for {target}: Content-Range {:?}",
                response.header("Content-Range")
            ));
        }
        for (name, value) in [
            ("If-None-Match", etag.as_str()),
            ("If-Modified-Since", modified.as_str()),
        ] {
            let response = client.request_with("GET", target, &[(name, value)])?;
            expect(&response, &format!("GET {target} {name}"), 304, b"")?;
            if response.header("ETag") != Some(etag.as_str()) {
                return Err(format!(
                    "304 for {target}: ETag {:?}",
                    response.header("ETag")
                ));
            }
        }
        let response = client.request_with("GET", target, &[("If-None-Match", "\"other\"")])?;
        expect(
            &response,
            &format!("GET {target} If-None-Match: other"),
            200,
            bytes,
        )?;
        let response = client.request_with(
            "GET",
            target,
            &[("Range", "bytes=5-9"), ("If-Range", &etag)],
        )?;
        expect(
            &response,
            &format!("GET {target} If-Range: current"),
            206,
            &bytes[5..10],
        )?;
        let response = client.request_with(
            "GET",
            target,
            &[("Range", "bytes=5-9"), ("If-Range", "\"stale\"")],
        )?;
        expect(
            &response,
            &format!("GET {target} If-Range: stale"),
            200,
            bytes,
        )?;
    }
    Ok(())
}

/// Returns `Ok` when the server refuses `target` (400 or 404) without leaking a file.
fn check_refused(port: u16, target: &str) -> Result<(), String> {
    let mut client = Client::connect(port, Duration::from_secs(30))?;
    let response = client.request("GET", target)?;
    if !matches!(response.status, 400 | 404) {
        return Err(format!(
            "GET {target}: status {}, expected 400 or 404",
            response.status
        ));
    }
    if String::from_utf8_lossy(&response.body).contains("[package]") {
        return Err(format!(
            "GET {target} returned a file from outside the share"
        ));
    }
    Ok(())
}

/// The keep-alive clients that run at once in the concurrency check.
pub const CONCURRENT_CLIENTS: usize = 50;
/// Requests each of them sends on its one connection.
pub const REQUESTS_PER_CLIENT: usize = 4;

/// One of the concurrent clients, on its connection that is already open: it keeps the
/// connection busy (a small request every 300 ms, well within the idle timeout) until
/// every client is connected, then sends `REQUESTS_PER_CLIENT` requests for small files
/// back to back; every tenth client then fetches the big one too.
fn concurrent_client(
    mut client: Client,
    index: usize,
    site: &[SiteFile],
    all_open: &AtomicBool,
) -> Result<(), String> {
    let small: Vec<&SiteFile> = site.iter().filter(|file| file.bytes.len() < BIG).collect();
    while !all_open.load(Ordering::Acquire) {
        check_file(&client.request("GET", small[0].target)?, small[0])?;
        thread::sleep(Duration::from_millis(300));
    }
    let big = site.iter().filter(|file| file.bytes.len() >= BIG);
    let files = (0..REQUESTS_PER_CLIENT)
        .map(|step| small[(index + step) % small.len()])
        .chain(big.filter(|_| index.is_multiple_of(10)));
    for file in files {
        check_file(&client.request("GET", file.target)?, file)?;
    }
    Ok(())
}

/// Runs `CONCURRENT_CLIENTS` clients with their connections open at the same time.
///
/// The connections are opened one after the other, each with a first request: QEMU's
/// user networking listens on the host with a backlog of one, so a burst of connects
/// would wait in the host's SYN retries (see the echo test) rather than in the guest.
fn concurrent_clients(port: u16, site: &[SiteFile]) -> Result<(), String> {
    let all_open = AtomicBool::new(false);
    thread::scope(|scope| {
        let mut clients = Vec::new();
        let mut opening = Ok(());
        for index in 0..CONCURRENT_CLIENTS {
            let opened = Client::connect(port, Duration::from_secs(60)).and_then(|mut client| {
                check_file(&client.request("GET", site[0].target)?, &site[0])?;
                Ok(client)
            });
            match opened {
                Ok(client) => {
                    let all_open = &all_open;
                    clients.push(scope.spawn(move || {
                        concurrent_client(client, index, site, all_open)
                            .map_err(|error| format!("client {index}: {error}"))
                    }));
                }
                Err(error) => {
                    opening = Err(format!("client {index} could not open: {error}"));
                    break;
                }
            }
        }
        all_open.store(true, Ordering::Release);
        let mut failures = Vec::new();
        for client in clients {
            if let Err(error) = client
                .join()
                .unwrap_or_else(|_| Err("a client panicked".into()))
            {
                failures.push(error);
            }
        }
        opening?;
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(format!(
                "{} of {CONCURRENT_CLIENTS} concurrent clients failed; first: {first}",
                failures.len()
            )),
        }
    })
}

/// Fetches `file` on a connection of its own, whose reads give up after `timeout`, and
/// compares it byte for byte.
pub fn fetch(port: u16, file: &SiteFile, timeout: Duration) -> Result<(), String> {
    let mut client = Client::connect(port, timeout)?;
    check_file(&client.request("GET", file.target)?, file)
}

/// The first request, retried while the guest boots: QEMU's user networking accepts and
/// then resets connections until the guest listens.
pub fn first_response(port: u16, site: &[SiteFile]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let attempt = Client::connect(port, Duration::from_secs(20))
            .and_then(|mut client| client.request("GET", site[0].target))
            .and_then(|response| check_file(&response, &site[0]));
        match attempt {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("the first request never worked: {error}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// What the checks measured, for the test's report.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Seconds the concurrent clients took, from the first connect to the last answer.
    pub concurrent_seconds: f64,
}

/// Runs every check against the server behind 127.0.0.1:`port`, which serves `site`
/// (as `build_site` wrote it) and closes idle connections after `idle`.
pub fn check(port: u16, site: &[SiteFile], idle: Duration) -> Result<Figures, String> {
    first_response(port, site)?;
    curl_fetches(port, site)?;

    // Every file, byte for byte, on one keep-alive connection; HEAD in between.
    let mut client = Client::connect(port, Duration::from_secs(30))?;
    for file in site {
        check_file(&client.request("GET", file.target)?, file)?;
        let head = client.request("HEAD", file.target)?;
        let length = file.bytes.len().to_string();
        if head.status != 200 || head.header("Content-Length") != Some(length.as_str()) {
            return Err(format!(
                "HEAD {}: status {}, Content-Length {:?}, expected 200 and {length}",
                file.target,
                head.status,
                head.header("Content-Length")
            ));
        }
    }
    check_ranges_and_conditions(&mut client, site)?;
    let missing = client.request("GET", "/no-such-file.txt")?;
    if missing.status != 404 {
        return Err(format!("a missing file gave {}", missing.status));
    }
    let folder = client.request("GET", "/sub")?;
    if folder.status != 301 || folder.header("Location") != Some("/sub/") {
        return Err(format!(
            "GET /sub: {} to {:?}, expected 301 to /sub/",
            folder.status,
            folder.header("Location")
        ));
    }
    let post = client.request("DELETE", "/page.txt")?;
    if post.status != 405 || post.header("Allow") != Some("GET, HEAD") {
        return Err(format!(
            "DELETE gave {} {:?}",
            post.status,
            post.header("Allow")
        ));
    }
    // The connection survived all of that.
    check_file(&client.request("GET", site[1].target)?, &site[1])?;

    for target in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/sub/..%2f..%2fCargo.toml",
        "/sub\\..\\..\\Cargo.toml",
    ] {
        check_refused(port, target)?;
    }

    // HTTP/1.0 without keep-alive: one response, then the server closes.
    let mut client = Client::connect(port, Duration::from_secs(30))?;
    client.send(b"GET /page.txt HTTP/1.0\r\n\r\n")?;
    check_file(&client.response(false)?, &site[1])?;
    if !client.closed_within(Duration::from_secs(10))? {
        return Err("an HTTP/1.0 connection stayed open after its response".into());
    }

    // An idle connection is closed after the idle timeout.
    let mut client = Client::connect(port, Duration::from_millis(500))?;
    let started = Instant::now();
    if !client.closed_within(idle + Duration::from_secs(10))? {
        return Err(format!("an idle connection stayed open past {idle:?}"));
    }
    if started.elapsed() + Duration::from_millis(500) < idle {
        return Err(format!(
            "an idle connection was closed after {:?}, before the {idle:?} timeout",
            started.elapsed()
        ));
    }

    let started = Instant::now();
    concurrent_clients(port, site)?;
    Ok(Figures {
        concurrent_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Returns the port of a one-connection server that reads one request and sends
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

    #[test]
    fn the_site_is_written_as_described() {
        let dir = std::env::temp_dir().join(format!("manada-httpcheck-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let site = build_site(&dir).unwrap();
        assert_eq!(site.len(), 6);
        assert_eq!(site[0].target, "/");
        assert_eq!(fs::read(dir.join("page.txt")).unwrap().len(), 615);
        let big = fs::read(dir.join("pattern.bin")).unwrap();
        assert_eq!(big.len(), BIG);
        assert_ne!(big[..4096], big[4096..8192]);
        assert_eq!(
            fs::read(dir.join("A long file name with spaces.json")).unwrap(),
            site[5].bytes
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
