//! httpd tests: the web server on a vvfat share through a forwarded port, checked by the
//! host client in `httpcheck` (files byte for byte, HEAD, errors, traversal, keep-alive),
//! at every core count a user can choose.

use std::time::Duration;

use super::runner::{
    remove_scratch, require_line, require_no_fatal, scratch_dir, Case, CaseResult, Context,
    WithTail,
};
use crate::httpcheck;
use crate::qemu::{self, Machine};
use crate::tools;

/// Returns the httpd tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for machine in [Machine::Q35, Machine::Pc, Machine::Microvm] {
        cases.push(Case::boot(
            format!("httpd {} share+forward", machine.name()),
            move |context: &Context| run_httpd(context, machine, 4),
        ));
    }
    for cores in [1, 2, 3] {
        cases.push(Case::boot(
            format!("httpd q35 x{cores} share+forward"),
            move |context: &Context| run_httpd(context, Machine::Q35, cores),
        ));
    }
    // The microVM shape (virtio-mmio) at two cores, as Firecracker users would run it.
    cases.push(Case::boot(
        "httpd microvm x2 share+forward",
        |context: &Context| run_httpd(context, Machine::Microvm, 2),
    ));
    cases
}

/// The idle timeout the httpd test gives the server (kernel argument `idle_ms`).
const HTTPD_IDLE: Duration = Duration::from_secs(2);

/// `httpd` on a vvfat share of the test site, checked from the host through a forwarded
/// port while it serves.
fn run_httpd(context: &Context, machine: Machine, cores: usize) -> CaseResult {
    let port = tools::free_port()?;
    let dir = scratch_dir(&format!("httpd-{}-x{cores}", machine.name()))?;
    let share = dir.join("www");
    let site = httpcheck::build_site(&share)?;
    let disk = qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    };
    let mut config = context.config(machine, cores, "httpd");
    config.disks = vec![disk];
    config.kernel_args = vec![
        "fs.disk=disk0".into(),
        format!("idle_ms={}", HTTPD_IDLE.as_millis()),
    ];
    config.net = Some(vec![(port, 80)]);
    let (outcome, client) = qemu::serve_while(&config, context.timeout, |_| {
        httpcheck::check(port, &site, HTTPD_IDLE)
    });
    let outcome = outcome?;
    require_no_fatal(&outcome)?;
    let figures = client.tail_of(&outcome)?;
    require_line(&outcome, "httpd: serving the share on port 80")?;
    println!(
        "xtask: httpd {} x{cores}: {} keep-alive clients x {} requests served in {:.1} s",
        machine.name(),
        httpcheck::CONCURRENT_CLIENTS,
        httpcheck::REQUESTS_PER_CLIENT,
        figures.concurrent_seconds
    );
    remove_scratch(&dir);
    Ok(())
}
