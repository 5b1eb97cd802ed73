//! `fs-bench`: reading through the fs service: one 16 MiB file sequentially, then many
//! small files. Expects `/big.bin` and `/small/*` on the volume (`cargo xtask bench fs`
//! builds that image). Results are lines `fs-bench: NAME VALUE UNIT`.

use alloc::format;
use alloc::vec::Vec;

use crate::app::{App, AppError};
use percore::{println, Instant};

pub(crate) const APP: App = App {
    name: "fs-bench",
    summary: "sequential MB/s of a 16 MiB file and small-file reads per second",
    main,
};

fn main() -> Result<(), AppError> {
    let start = Instant::now();
    let mut big = Vec::new();
    fs::api::File::open("/big.bin")
        .and_then(|mut file| file.read_to_end(&mut big))
        .map_err(|_| AppError("cannot read /big.bin"))?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "fs-bench: seq_read {:.1} MB/s",
        big.len() as f64 / seconds / 1e6
    );

    let names = fs::api::read_dir("/small").map_err(|_| AppError("cannot list /small"))?;
    let start = Instant::now();
    let mut bytes = 0;
    for entry in &names {
        bytes += fs::api::read(&format!("/small/{}", entry.name))
            .map_err(|_| AppError("cannot read a small file"))?
            .len();
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "fs-bench: small_file_reads {:.0} files/s",
        names.len() as f64 / seconds
    );
    println!(
        "fs-bench: read {} bytes in {} small files",
        bytes,
        names.len()
    );
    Ok(())
}
