//! The application table and the contract between an application and the kernel.

use alloc::vec::Vec;
use core::fmt;

/// An application: a name and its main function.
#[derive(Debug)]
pub struct App {
    /// The name given with `app=NAME` on the kernel command line.
    pub name: &'static str,
    /// One line saying what the application does.
    pub summary: &'static str,
    /// Runs in a thread on core 0 once all cores are online; it places work on the
    /// other cores with `percore::spawn_on`. The run ends when it returns.
    pub main: fn() -> Result<(), AppError>,
}

/// Runs `work` in a thread on every core at once, and returns each core's result in
/// core order.
pub fn on_every_core<T: Send + 'static>(work: fn() -> T) -> Vec<T> {
    let handles: Vec<_> = (0..percore::core_count())
        .map(|core| percore::spawn_on(core, work))
        .collect();
    handles.into_iter().map(percore::JoinHandle::join).collect()
}

/// Returns the cores that run no device service, for the application's own threads
/// (all cores when every core runs one, as with a single core). The placement is
/// decided at boot and printed as `manada: services: ...`.
pub fn app_cores() -> Vec<usize> {
    percore::boot_info().services.app_cores().to_vec()
}

/// Why an application failed on a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppError(pub &'static str);

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Every application in the image.
pub static APPS: &[App] = &[
    crate::hello::APP,
    crate::files::APP,
    crate::echo::APP,
    crate::httpd::APP,
    crate::exchange::APP,
    crate::ipc_bench::APP,
    crate::threads::APP,
    crate::blk_test::APP,
    crate::blk_errors::APP,
    crate::blk_bench::APP,
    crate::fs_bench::APP,
    crate::fs_writer::APP,
    crate::free_storm::APP,
    crate::overflow::APP,
    crate::oom::APP,
    crate::percore_bench::APP,
    crate::scale::APP,
    crate::panic::APP,
];

/// Returns the application called `name`.
pub fn find(name: &str) -> Option<&'static App> {
    APPS.iter().find(|app| app.name == name)
}

/// Returns the names of all applications, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    APPS.iter().map(|app| app.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        let mut seen = std::collections::HashSet::new();
        for name in names() {
            assert!(seen.insert(name), "duplicate app {name}");
            assert_eq!(find(name).unwrap().name, name);
        }
        assert!(find("hello").is_some());
        assert!(find("no-such-app").is_none());
    }
}
