//! Requests the server refuses get their status before the connection closes: a close
//! with the client's bytes unread is a reset, which would destroy the answer.

use std::time::Duration;

use super::client::Client;

/// Returns `Ok` when each malformed or refused request is answered with its status (and
/// the connection then closes), however much the client sent after its head.
pub(super) fn check_malformed(port: u16) -> Result<(), String> {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(10_000));
    let many_headers: String = (0..2000).map(|i| format!("X-{i}: y\r\n")).collect();
    let many_headers = format!("GET /page.txt HTTP/1.1\r\n{many_headers}\r\n");
    let cases: [(&str, &[u8], u16); 5] = [
        ("binary garbage", b"\x00\xff\xfe garbage\r\n\r\n", 400),
        (
            "a negative Content-Length",
            b"GET /page.txt HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n",
            400,
        ),
        (
            "a body, which a GET does not take",
            b"GET /page.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            413,
        ),
        ("a 10,000-byte target", long_target.as_bytes(), 414),
        ("2,000 header lines", many_headers.as_bytes(), 431),
    ];
    for (what, request, status) in cases {
        let mut client = Client::connect(port, Duration::from_secs(30))?;
        client.send(request)?;
        let response = client
            .response(false)
            .map_err(|error| format!("{what}: no answer ({error})"))?;
        if response.status != status {
            return Err(format!(
                "{what}: status {}, expected {status}",
                response.status
            ));
        }
        if !client.closed_within(Duration::from_secs(10))? {
            return Err(format!("{what}: the connection stayed open after {status}"));
        }
    }
    Ok(())
}
