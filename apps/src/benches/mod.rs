//! Benchmarks: applications that measure and print numbers for `cargo xtask bench`.

pub(crate) mod blk_bench;
pub(crate) mod fs_bench;
pub(crate) mod ipc_bench;
pub(crate) mod percore_bench;
pub(crate) mod scale;
