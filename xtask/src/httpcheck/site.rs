//! The test site: the files the httpd test serves, written on the host, and the check
//! that a response carries one of them byte for byte.

use std::fs;
use std::path::Path;

use super::client::Response;

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

/// Bytes of the big binary file: 3 MiB and an odd tail, many chunks of the server's 64 KiB
/// that end in no round place.
pub(super) const BIG: usize = 3 * 1024 * 1024 + 123;

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

/// Returns `Ok` when `response` is a 200 with `file`'s bytes and Content-Type.
pub(super) fn check_file(response: &Response, file: &SiteFile) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
