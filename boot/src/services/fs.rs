//! The fs service's wiring: the disk named by `fs.disk=NAME`, mounted and served from
//! the fs core.

use devices::disk::Disk;
use percore::{println, KernelCapability};

use crate::exit::fatal;

/// Ends the run with a clear error unless `name` is one of the `disks` disks found at
/// boot (`disk0` to `disk{disks-1}`).
pub fn check_disk_name(name: &str, disks: usize) {
    let index = name
        .strip_prefix("disk")
        .and_then(|digits| digits.parse::<usize>().ok());
    if index.is_some_and(|index| index < disks) {
        return;
    }
    match disks {
        0 => fatal(format_args!(
            "fs.disk={name}: no disk is attached (attach one with --disk IMAGE or --share DIR)"
        )),
        1 => fatal(format_args!(
            "fs.disk={name}: no such disk; the only disk is disk0"
        )),
        _ => fatal(format_args!(
            "fs.disk={name}: no such disk; the disks are disk0 to disk{}",
            disks - 1
        )),
    }
}

/// Mounts the disk `name` on `core` and serves it from there; says why when it cannot.
pub fn start(kernel: &KernelCapability, core: usize, name: &str) {
    let Some(disk) = Disk::open(name) else {
        println!("manada: fs: disk '{name}' did not start; no file system is served");
        return;
    };
    let kernel = *kernel;
    let mounted = percore::spawn_on(core, move || {
        fs::service::start(&kernel, alloc::boxed::Box::new(disk))
    })
    .join();
    match mounted {
        Ok(Ok(volume)) => println!("manada: fs: mounted FAT16 on {name}: {volume:?}"),
        Ok(Err(error)) => println!("manada: fs: cannot mount {name}: {error}"),
        Err(error) => println!("manada: fs: the service did not start on core {core}: {error}"),
    }
}

/// How long the volume may take to be written back when the run ends.
const SYNC_AT_EXIT: core::time::Duration = core::time::Duration::from_secs(10);

/// Writes the mounted volume back (nothing when none is mounted), bounded in time.
pub fn finish() -> Result<(), alloc::string::String> {
    fs::service::sync_before_exit(SYNC_AT_EXIT)
        .map_err(|error| alloc::format!("fs: the volume was not written back before exit: {error}"))
}
