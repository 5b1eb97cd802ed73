//! The site fetched by curl, an outside client, on one keep-alive connection.

use std::fs;

use super::site::SiteFile;

/// Fetches every file of the site with curl (one invocation, so one keep-alive
/// connection) and compares each with the host's bytes.
pub(super) fn curl_fetches(port: u16, site: &[SiteFile]) -> Result<(), String> {
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
