//! A guest served while a host client talks to it: the client sees whether the guest
//! ended and its console so far, and the guest is stopped when the client is done.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::QemuConfig;
use super::outcome::Outcome;
use super::process::run_with;

/// Runs the guest of `config` while `client` talks to it from the host. The guest is
/// stopped as soon as the client returns; the client is handed a flag that turns true
/// when the guest ended (on its own or at `limit`), so it can stop waiting. Returns the
/// guest's outcome and the client's result.
pub fn serve_while<T: Send>(
    config: &QemuConfig,
    limit: Duration,
    client: impl FnOnce(&std::sync::atomic::AtomicBool) -> Result<T, String> + Send,
) -> (Result<Outcome, String>, Result<T, String>) {
    serve_watching(config, limit, |guest| client(guest.ended))
}

/// What a host client running beside a guest sees of it: whether it ended, and its
/// console so far.
#[derive(Debug)]
pub struct Guest<'a> {
    ended: &'a std::sync::atomic::AtomicBool,
    console: &'a Mutex<Vec<String>>,
}

impl Guest<'_> {
    /// Returns true once the guest ended (on its own or at the limit).
    pub fn ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns the console lines the guest printed so far.
    pub fn console(&self) -> Vec<String> {
        self.console
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Returns the first console line for which `wanted` is true, waiting for it up to
    /// `limit` (or until the guest ended); `None` if it did not come.
    pub fn wait_for_line(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.console().into_iter().find(|line| wanted(line)) {
                return Some(line);
            }
            if self.ended() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Like [`serve_while`], with the client watching the guest's console as it comes.
pub fn serve_watching<T: Send>(
    config: &QemuConfig,
    limit: Duration,
    client: impl FnOnce(&Guest<'_>) -> Result<T, String> + Send,
) -> (Result<Outcome, String>, Result<T, String>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (stop, ended) = (AtomicBool::new(false), AtomicBool::new(false));
    let console = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let result = client(&Guest {
                ended: &ended,
                console: &console,
            });
            stop.store(true, Ordering::Release);
            result
        });
        let outcome = run_with(
            config,
            Some(limit),
            false,
            Some(&stop),
            None,
            Some(&console),
        );
        ended.store(true, Ordering::Release);
        let result = handle
            .join()
            .unwrap_or_else(|_| Err("the client panicked".into()));
        (outcome, result)
    })
}
