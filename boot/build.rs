//! Exports the link arguments every Manada image needs, for the crate that makes one.
//!
//! A dependency's build script cannot pass `rustc-link-arg` to its dependents, so the
//! arguments travel as `links` metadata: the image crate's own build script reads
//! `DEP_MANADA_LINK_ARGS` (tab-separated) and passes each with `rustc-link-arg-bins`
//! when it builds for `x86_64-unknown-none`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // Linked at 1 MiB with our linker script, no PIE, 4 KiB segment alignment.
    let arguments = [
        format!("-T{dir}/linker.ld"),
        "--no-pie".to_string(),
        "-zmax-page-size=0x1000".to_string(),
        "--build-id=none".to_string(),
    ];
    println!("cargo::metadata=link-args={}", arguments.join("\t"));
    println!("cargo::rerun-if-changed=linker.ld");
    println!("cargo::rerun-if-changed=build.rs");
}
