//! The kernel's capability: the proof a caller must show to use a kernel-only entry
//! point (installing the platform hooks, publishing the boot information, starting a
//! device service), as Tock's capabilities do.
//!
//! Only `unsafe` code can make a [`KernelCapability`], and the crates an application is
//! made of (`apps`, `fs`, `net`) forbid `unsafe`, so they can call those entry points only
//! with the capability the kernel's start-up hands them. Nothing checks it at run time:
//! it is zero-sized, and the type checker does all the work.
//!
//! ```
//! // The kernel's start-up (the `manada` crate) makes it, in one place:
//! // SAFETY: this example plays the kernel's start-up.
//! let kernel = unsafe { percore::KernelCapability::new() };
//! percore::time::publish_wall_clock(
//!     &kernel,
//!     percore::time::WallClockBase { unix_seconds: 0, tsc: 0 },
//! );
//! ```
//!
//! Without it, an application cannot call a kernel-only entry point:
//!
//! ```compile_fail
//! percore::time::publish_wall_clock(percore::time::WallClockBase { unix_seconds: 0, tsc: 0 });
//! ```
//!
//! ```compile_fail
//! percore::cpu::install_service(percore::placement::Service::Net, 0_u32);
//! ```
//!
//! nor make one without `unsafe`, which its crate forbids:
//!
//! ```compile_fail
//! let kernel = percore::KernelCapability::new();
//! ```
//!
//! ```compile_fail
//! #![forbid(unsafe_code)]
//! // SAFETY: an application cannot say this truthfully, and its crate refuses it.
//! let kernel = unsafe { percore::KernelCapability::new() };
//! ```
//!
//! ```compile_fail
//! let kernel = percore::KernelCapability { _private: () };
//! ```

/// The kernel's capability: required by every kernel-only entry point.
///
/// Zero-sized and `Copy`, so the kernel passes it to the service cores' start-up
/// threads by value; copying one gives nobody a power they did not have.
#[derive(Debug, Clone, Copy)]
pub struct KernelCapability {
    _private: (),
}

impl KernelCapability {
    /// Returns the kernel's capability.
    ///
    /// # Safety
    /// Only the kernel's start-up (the `manada` crate, `boot/`) may call it, and it hands
    /// the capability only to kernel-only entry points, never to an application. (For
    /// host tests, the test code plays the kernel.) Calling a kernel-only entry point
    /// at the wrong moment is not memory-unsafe by itself; it breaks what the kernel
    /// relies on (the boot information, the hooks and the services are set once, by it).
    pub const unsafe fn new() -> Self {
        KernelCapability { _private: () }
    }
}
