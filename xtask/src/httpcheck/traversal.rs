//! The traversal checks: requests that climb out of the share are refused.

use std::time::Duration;

use super::client::Client;

/// Returns `Ok` when the server refuses every request that climbs out of the share,
/// plainly, percent-encoded or with backslashes.
pub(super) fn check_traversal(port: u16) -> Result<(), String> {
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/sub/..%2f..%2fCargo.toml",
        "/sub\\..\\..\\Cargo.toml",
    ] {
        check_refused(port, target)?;
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
