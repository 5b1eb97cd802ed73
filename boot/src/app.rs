//! The contract between an application and the kernel: what an application is, how an
//! image names its applications, and the helpers every application uses.

use alloc::vec::Vec;
use core::fmt;

/// An application: a name and its main function.
#[derive(Debug)]
pub struct App {
    /// The name given with `app=NAME` on the kernel command line (`--app NAME`).
    pub name: &'static str,
    /// One line saying what the application does.
    pub summary: &'static str,
    /// Runs in a thread on core 0 once every core is online and the device services
    /// have started; it places work on the other cores. The run ends when it returns:
    /// `Ok` ends it with success, `Err` with failure.
    pub main: fn() -> Result<(), AppError>,
}

/// Why an application failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppError(pub &'static str);

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Runs `work` in a thread on every core at once, and returns each core's result in
/// core order; an error (after every thread was joined) when a core failed or one of
/// the threads faulted.
///
/// ```
/// # manada::percore::host::run(2, || {
/// let cores = manada::on_every_core(manada::current_core).unwrap();
/// assert_eq!(cores, [0, 1]);
/// # });
/// ```
pub fn on_every_core<T: Send + 'static>(work: fn() -> T) -> Result<Vec<T>, AppError> {
    let handles: Vec<_> = (0..percore::core_count())
        .map(|core| {
            percore::try_spawn_on(core, work).map_err(|error| {
                percore::println!("app: no thread started on core {core}: {error}");
                AppError("a thread could not start")
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|handle| handle.and_then(join))
        .collect();
    results.into_iter().collect()
}

/// Returns the result of the thread of `handle`, or, when it gave none (it faulted, or
/// its core failed), an error after printing why.
pub fn join<T>(handle: percore::JoinHandle<T>) -> Result<T, AppError> {
    let core = handle.core();
    handle.join().map_err(|error| {
        percore::println!("app: a thread on core {core} gave no result: {error}");
        AppError("a thread gave no result")
    })
}

/// Returns the cores that run no device service, for the application's own threads
/// (all cores when every core runs one, as with a single core). The placement is
/// decided at boot and printed as `manada: services: ...`.
pub fn app_cores() -> Vec<usize> {
    percore::boot_info().services.app_cores().to_vec()
}

/// Returns the kernel command line, where an application finds its own `key=value`
/// words (`cargo xtask run --kernel-arg key=value`).
pub fn command_line() -> percore::cmdline::CommandLine<'static> {
    percore::boot_info().command_line()
}

/// Returns the application called `name` in `table`.
pub fn find(table: &'static [App], name: &str) -> Option<&'static App> {
    table.iter().find(|app| app.name == name)
}

/// Names the applications of an image: `manada::applications!(TABLE)`, where `TABLE` is
/// a `&'static [manada::App]`. The first is the one that runs when the kernel command
/// line names none.
///
/// It defines the one symbol the kernel reads to find them, so an image has exactly one
/// `applications!` or [`main!`](crate::main), in its binary crate. On the host, where
/// no kernel is built, the table is only checked.
#[macro_export]
macro_rules! applications {
    ($table:expr) => {
        // Exported only in the kernel image; on the host the table is still type-checked.
        #[cfg_attr(target_os = "none", no_mangle)]
        #[allow(non_upper_case_globals, dead_code)]
        static __manada_applications: &[$crate::App] = $table;
    };
}

/// Makes `function` the application of this image, named after the crate
/// (`CARGO_PKG_NAME`) and described by its `description`: `manada::main!(main);` with
/// `fn main() -> Result<(), manada::AppError>`.
///
/// ```no_run
/// # // The image's binary crate also has `#![no_std]` and `#![no_main]`.
/// manada::main!(main);
///
/// fn main() -> Result<(), manada::AppError> {
///     manada::println!("hello from core {}", manada::current_core());
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! main {
    ($function:path) => {
        $crate::applications!(&[$crate::App {
            name: env!("CARGO_PKG_NAME"),
            summary: env!("CARGO_PKG_DESCRIPTION"),
            main: $function,
        }]);
    };
}

/// Returns the applications of this image, as its binary crate named them.
#[cfg(target_os = "none")]
pub(crate) fn registered() -> &'static [App] {
    extern "Rust" {
        /// Defined by `applications!` (or `main!`) in the image's binary crate.
        static __manada_applications: &'static [App];
    }
    // SAFETY: the macros define this symbol exactly once per image, with this type; an
    // image without one does not link. It is never written.
    unsafe { __manada_applications }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeed() -> Result<(), AppError> {
        Ok(())
    }

    static TABLE: &[App] = &[
        App {
            name: "first",
            summary: "",
            main: succeed,
        },
        App {
            name: "second",
            summary: "",
            main: succeed,
        },
    ];

    #[test]
    fn applications_are_found_by_name() {
        assert_eq!(find(TABLE, "second").map(|app| app.name), Some("second"));
        assert!(find(TABLE, "third").is_none());
        assert_eq!(AppError("it broke").to_string(), "it broke");
    }
}
