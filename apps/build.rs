//! Links the image with the kernel's linker script and arguments, which the manada
//! crate exports as `DEP_MANADA_LINK_ARGS` (tab-separated), when building the kernel.

fn main() {
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        let arguments = std::env::var("DEP_MANADA_LINK_ARGS")
            .expect("the manada crate exports its link arguments");
        for argument in arguments.split('\t') {
            println!("cargo::rustc-link-arg-bins={argument}");
        }
    }
    println!("cargo::rerun-if-changed=build.rs");
}
