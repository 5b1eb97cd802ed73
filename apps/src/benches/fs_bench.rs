//! `fs-bench`: reading through the fs service: one large file sequentially, streamed
//! in 1 MiB pieces through one reused buffer (so a file of any size reads in constant
//! memory), then many small files. Expects `/big.bin` and `/small/*` on the volume
//! (`cargo xtask bench fs` builds that image). Results are lines `fs-bench: NAME VALUE
//! UNIT`.

use alloc::format;
use alloc::vec::Vec;

use manada::{App, AppError};
use percore::{println, Instant};

pub(crate) const APP: App = App {
    name: "fs-bench",
    summary: "sequential MB/s of a 16 MiB file and small-file reads per second",
    main,
};

fn main() -> Result<(), AppError> {
    let start = Instant::now();
    let bytes = stream("/big.bin").map_err(|error| {
        println!("fs-bench: cannot read /big.bin: {error}");
        AppError("cannot read /big.bin")
    })?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "fs-bench: seq_read {:.1} MB/s",
        bytes as f64 / seconds / 1e6
    );
    println!("fs-bench: streamed {bytes} bytes of /big.bin");

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

/// Reads the file at `path` to its end in [`fs::api::READ_CHUNK`] pieces through one
/// buffer; returns its length.
fn stream(path: &str) -> fs::Result<u64> {
    let mut file = fs::api::File::open(path)?;
    let mut buffer = Vec::new();
    let mut total = 0u64;
    loop {
        buffer = file.read_chunk(buffer, fs::api::READ_CHUNK)?;
        if buffer.is_empty() {
            return Ok(total);
        }
        total += buffer.len() as u64;
    }
}
