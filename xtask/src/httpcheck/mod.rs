//! The host side of the httpd integration test: the site it serves, a small HTTP/1.1
//! client, and the checks run against the guest through a forwarded port (files byte for
//! byte, HEAD, ranges and conditions, traversal, malformed requests, HTTP/1.0, idle
//! close, concurrency).

mod client;
mod concurrent;
mod curl;
mod date;
mod malformed;
mod ranges;
mod site;
mod traversal;

use std::thread;
use std::time::{Duration, Instant};

pub use client::{Client, Response};
pub use concurrent::{CONCURRENT_CLIENTS, REQUESTS_PER_CLIENT};
pub use site::{build_site, SiteFile};

use concurrent::concurrent_clients;
use curl::curl_fetches;
use date::check_date;
use malformed::check_malformed;
use ranges::check_ranges_and_conditions;
use site::check_file;
use traversal::check_traversal;

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
    check_date(&client.request("GET", site[0].target)?)?;
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

    check_traversal(port)?;
    check_malformed(port)?;

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
