//! `blk-errors`: device errors reach the caller as errors and the kernel keeps going.
//! Run with disk0 behind QEMU's blkdebug, which fails reads of sector 100 (`EIO`).

use alloc::vec;

use crate::app::{App, AppError};
use devices::blk::{BlkError, Disk};
use percore::println;

pub(crate) const APP: App = App {
    name: "blk-errors",
    summary: "an injected I/O error comes back as an error; the disk keeps working",
    main,
};

const FAILING_SECTOR: u64 = 100;

fn main() -> Result<(), AppError> {
    let disk = Disk::open("disk0").ok_or(AppError("no disk0 (attach one with --disk)"))?;
    let mut buffer = vec![0u8; 512];
    for attempt in 1..=3 {
        match disk.read(FAILING_SECTOR, &mut buffer) {
            Err(BlkError::IoError) => {
                println!("blk-errors: read {attempt} of sector {FAILING_SECTOR} failed with an I/O error, as injected")
            }
            Ok(()) => return Err(AppError("the injected error did not happen")),
            Err(_) => return Err(AppError("the read failed with another error")),
        }
    }
    disk.read(0, &mut buffer)
        .map_err(|_| AppError("a good sector did not read after the errors"))?;
    println!("blk-errors: sector 0 still reads; the kernel kept running");
    Ok(())
}
