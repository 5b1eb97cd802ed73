//! The table of this crate's applications, in the order `--app` help and the kernel list
//! them: the ones a user runs or reads first, then the test fixtures, then the benches.

use manada::App;

/// Every application in the image. The first runs when the command line names none.
pub static APPS: &[App] = &[
    // Applications and worked examples.
    crate::hello::APP,
    crate::files::APP,
    crate::echo::APP,
    crate::httpd::APP,
    crate::primes::APP,
    crate::pipeline::APP,
    // Test fixtures (`fixtures/`).
    crate::fixtures::ipc::APP,
    crate::threads::APP,
    crate::blk_test::APP,
    crate::blk_errors::APP,
    crate::free_storm::APP,
    crate::overflow::APP,
    crate::oom::APP,
    crate::panic::APP,
    crate::faults::APP,
    crate::fs_writer::APP,
    // Benchmarks (`benches/`).
    crate::ipc_bench::APP,
    crate::percore_bench::APP,
    crate::scale::APP,
    crate::blk_bench::APP,
    crate::fs_bench::APP,
];

/// Returns the application called `name`.
pub fn find(name: &str) -> Option<&'static App> {
    manada::find(APPS, name)
}

/// Returns the names of all applications, in table order.
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
        assert_eq!(names().next(), Some("hello"), "hello runs by default");
        assert!(find("no-such-app").is_none());
    }
}
