//! `files`: the shared folder through the fs service: list it, print `hello.txt`, write
//! a new file in a new folder and read it back. Run with `cargo xtask run --app files
//! [--share DIR]`; the host sees the new file in DIR afterwards.

use alloc::format;

use manada::{App, AppError};
use percore::println;

pub(crate) const APP: App = App {
    name: "files",
    summary: "list the share, print hello.txt, write and read back a new file",
    main,
};

/// Where the app writes (the tests look for it on the host).
pub const WRITTEN: &str = "/from-manada/greeting.txt";

fn fail(what: &'static str, error: fs::Error) -> AppError {
    println!("files: {what}: {error}");
    AppError(what)
}

fn main() -> Result<(), AppError> {
    let entries = fs::api::read_dir("/").map_err(|e| fail("cannot list the share", e))?;
    println!("files: / holds {} entries", entries.len());
    for entry in &entries {
        if entry.metadata.is_dir() {
            println!("files:   {}/", entry.name);
        } else {
            println!("files:   {} ({} bytes)", entry.name, entry.metadata.size);
        }
    }
    match fs::api::read("/hello.txt") {
        Ok(bytes) => println!(
            "files: hello.txt says: {}",
            core::str::from_utf8(&bytes)
                .unwrap_or("(not UTF-8)")
                .trim_end()
        ),
        Err(fs::Error::NotFound) => println!("files: no hello.txt in the share"),
        Err(error) => return Err(fail("cannot read hello.txt", error)),
    }
    match fs::api::create_dir("/from-manada") {
        Ok(()) | Err(fs::Error::AlreadyExists) => {}
        Err(error) => return Err(fail("cannot create /from-manada", error)),
    }
    let text = format!("written by manada on {} cores\n", percore::core_count());
    fs::api::write(WRITTEN, text.as_bytes()).map_err(|e| fail("cannot write the file", e))?;
    let back = fs::api::read(WRITTEN).map_err(|e| fail("cannot read the file back", e))?;
    if back != text.as_bytes() {
        return Err(AppError("the file read back differs from what was written"));
    }
    println!(
        "files: wrote {WRITTEN} ({} bytes) and read it back",
        back.len()
    );
    Ok(())
}
