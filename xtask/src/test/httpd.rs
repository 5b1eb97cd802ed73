//! httpd tests: the web server on a vvfat share through a forwarded port, checked by the
//! host client in `httpcheck` (files byte for byte, HEAD, ranges, conditional requests,
//! errors, traversal, keep-alive), at every core count a user can choose; and under
//! hostile load (`load`): thousands of idle connections, a slow-header attack, a
//! connection flood on a small guest.

mod load;

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
    cases.push(Case::boot(
        format!("httpd q35 x2 {IDLE_CONNECTIONS} idle connections"),
        run_idle,
    ));
    cases.push(Case::boot(
        format!("httpd q35 x4 slow-header attack of {SLOW_ATTACKERS}"),
        run_slow_headers,
    ));
    cases.push(Case::boot(
        format!("httpd q35 x4 connection flood at {FLOOD_MEMORY}M"),
        run_flood,
    ));
    cases
}

/// Idle keep-alive connections held in the idle test.
const IDLE_CONNECTIONS: usize = 2000;
/// Slow-header attackers in the slow-header test.
const SLOW_ATTACKERS: usize = 300;
/// Guest memory (MiB) of the flood test: the net core's share is then small enough
/// that a flood reaches its socket limit.
const FLOOD_MEMORY: u64 = 80;

/// Boots httpd on a fresh copy of the test site with `kernel_args` at `cores` cores
/// (`mem` MiB when given), runs `client` against it, and checks that no core failed and
/// the server started. Returns what the client returned.
fn with_httpd<T: Send>(
    context: &Context,
    name: &str,
    cores: usize,
    mem: Option<u64>,
    kernel_args: Vec<String>,
    client: impl FnOnce(u16, &[httpcheck::SiteFile]) -> Result<T, String> + Send,
) -> Result<T, super::runner::Failure> {
    let port = tools::free_port()?;
    let dir = scratch_dir(name)?;
    let share = dir.join("www");
    let site = httpcheck::build_site(&share)?;
    let mut config = context.config(Machine::Q35, cores, "httpd");
    config.disks = vec![qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    }];
    if let Some(mem) = mem {
        config.mem = qemu::MemSize::from_mebibytes(mem);
    }
    config.kernel_args = ["fs.disk=disk0".to_string()]
        .into_iter()
        .chain(kernel_args)
        .collect();
    config.net = Some(vec![(port, 80)]);
    // These clients take longer than a plain test; their own steps are bounded.
    let limit = context.timeout.max(Duration::from_secs(240));
    let (outcome, result) = qemu::serve_while(&config, limit, |_| client(port, &site));
    let outcome = outcome?;
    require_no_fatal(&outcome)?;
    let result = result.tail_of(&outcome)?;
    require_line(&outcome, "httpd: serving the share on port 80")?;
    remove_scratch(&dir);
    Ok(result)
}

/// 2,000 idle keep-alive connections held while a client's requests are all answered.
fn run_idle(context: &Context) -> CaseResult {
    load::allow_open_files(IDLE_CONNECTIONS as u64 + 256)?;
    let figures = with_httpd(
        context,
        "httpd-idle",
        2,
        None,
        // Held longer than the test takes.
        vec!["idle_ms=600000".into()],
        |port, site| load::idle_connections(port, site, IDLE_CONNECTIONS, 20),
    )?;
    println!(
        "xtask: httpd x2: {IDLE_CONNECTIONS} idle connections opened in {:.1} s; while held, \
         slowest small request {:?}, the 3 MiB file in {:?}",
        figures.opening_seconds, figures.slowest, figures.big
    );
    Ok(())
}

/// 300 connections sending a head a byte a second (and reconnecting when closed) while a
/// client is served within 1 s every time.
fn run_slow_headers(context: &Context) -> CaseResult {
    load::allow_open_files(SLOW_ATTACKERS as u64 + 256)?;
    let figures = with_httpd(context, "httpd-slow", 4, None, Vec::new(), |port, site| {
        // Longer than the server's 10 s head timeout: attackers are cut and come back.
        load::slow_headers(port, &site[1], SLOW_ATTACKERS, 14)
    })?;
    println!(
        "xtask: httpd x4: {} requests during a slow-header attack of {SLOW_ATTACKERS}, slowest {:?}",
        figures.requests, figures.slowest
    );
    Ok(())
}

/// A flood of connections on a guest with 80 MiB: the net core refuses what its memory
/// cannot back, no core fails, and the server serves again once the flood ends.
fn run_flood(context: &Context) -> CaseResult {
    load::allow_open_files(3000)?;
    let figures = with_httpd(
        context,
        "httpd-flood",
        4,
        Some(FLOOD_MEMORY),
        vec!["idle_ms=600000".into()],
        |port, site| load::flood(port, &site[1], 2500),
    )?;
    if figures.refused == 0 {
        return Err(format!(
            "the flood never reached the socket limit ({} connections served)",
            figures.served
        )
        .into());
    }
    if figures.served < 16 {
        return Err(format!("only {} connections were served", figures.served).into());
    }
    println!(
        "xtask: httpd x4 at {FLOOD_MEMORY}M: {} flood connections served and held, {} refused, no core failed",
        figures.served, figures.refused
    );
    Ok(())
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
