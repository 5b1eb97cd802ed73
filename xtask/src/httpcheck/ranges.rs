//! The range (206, 416) and conditional (304, If-Range) checks.

use super::client::{Client, Response};
use super::site::SiteFile;

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
pub(super) fn check_ranges_and_conditions(
    client: &mut Client,
    site: &[SiteFile],
) -> Result<(), String> {
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
