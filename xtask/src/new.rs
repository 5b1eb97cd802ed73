//! `cargo xtask new PATH`: makes an application in a crate of its own, from a template.
//!
//! The crate depends on this checkout's `manada` crate by path, pins the same toolchain
//! and dependency versions (`rust-toolchain.toml`, `Cargo.lock`), so it builds offline
//! exactly as the kernel here does, and holds a two-core ping-pong to start from with
//! its QEMU smoke tests. Nothing is written when the folder already exists.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::app_crate::TESTS_FILE;
use crate::tools;

/// Options of `cargo xtask new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The folder to create; its last part is the crate's (and the application's) name,
    /// e.g. `../pingpong`. Best outside this repository.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// The template's files: where each goes in the new crate, and its text.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../template/Cargo.toml.in")),
    ("build.rs", include_str!("../template/build.rs.in")),
    (
        ".cargo/config.toml",
        include_str!("../template/config.toml.in"),
    ),
    ("src/main.rs", include_str!("../template/main.rs.in")),
    (TESTS_FILE, include_str!("../template/qemu-tests.toml.in")),
    ("README.md", include_str!("../template/README.md.in")),
    (".gitignore", "/target\n"),
];

/// Files copied from this checkout, so the crate builds with the same toolchain and the
/// same versions of every dependency.
const COPIED: &[&str] = &["rust-toolchain.toml", "Cargo.lock"];

/// Makes the crate and says how to run it.
pub fn main(args: &NewArgs) -> Result<(), String> {
    let name = crate_name(&args.path)?;
    if args.path.exists() {
        return Err(format!(
            "{} already exists; choose a new folder",
            args.path.display()
        ));
    }
    let workspace = tools::workspace()?;
    let manada = workspace.root.join("boot");
    let shown_path = args.path.display().to_string();
    let words = [
        ("{{name}}", name.as_str()),
        ("{{manada}}", &toml_escape(&manada.display().to_string())),
        ("{{checkout}}", &workspace.root.display().to_string()),
        ("{{path}}", &shown_path),
    ];
    let mut files: Vec<(PathBuf, String)> = TEMPLATE
        .iter()
        .map(|(path, text)| (PathBuf::from(path), fill(text, &words)))
        .collect();
    for copied in COPIED {
        let from = workspace.root.join(copied);
        let text = fs::read_to_string(&from)
            .map_err(|error| format!("cannot read {}: {error}", from.display()))?;
        files.push((PathBuf::from(copied), text));
    }
    write_all(&args.path, &files)?;
    println!(
        "xtask: made the application crate {name} in {}",
        args.path.display()
    );
    println!("xtask: boot it:      cargo xtask run --app-crate {shown_path} --cores 2 --net none");
    println!("xtask: test it:      cargo xtask test --app-crate {shown_path}");
    println!("xtask: the guide:    apps/README.md");
    Ok(())
}

/// Returns the crate name `path` ends with, or why it cannot be one: a letter, then
/// letters, digits, `-` and `_` (it is also the application's name on the kernel
/// command line).
fn crate_name(path: &Path) -> Result<String, String> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("{}: the folder needs a name", path.display()))?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "'{name}' cannot name a crate: use a letter, then letters, digits, '-' or '_'"
        ));
    }
    if matches!(
        name,
        "manada" | "percore" | "ipc" | "devices" | "fs" | "net" | "core" | "alloc" | "std" | "test"
    ) {
        return Err(format!(
            "'{name}' is taken by a crate the application uses; choose another"
        ));
    }
    Ok(name.to_string())
}

/// Returns `text` with every placeholder replaced.
fn fill(text: &str, words: &[(&str, &str)]) -> String {
    words
        .iter()
        .fold(text.to_string(), |text, (placeholder, value)| {
            text.replace(placeholder, value)
        })
}

/// Returns `text` escaped for a TOML basic string.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Writes every file under `root`; on an error, removes what it wrote.
fn write_all(root: &Path, files: &[(PathBuf, String)]) -> Result<(), String> {
    let result = files.iter().try_for_each(|(path, text)| {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        fs::write(&path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(root);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_folder_and_are_checked() {
        assert_eq!(
            crate_name(Path::new("../ping-pong")),
            Ok("ping-pong".into())
        );
        assert_eq!(crate_name(Path::new("/tmp/a_1")), Ok("a_1".into()));
        assert!(crate_name(Path::new("/tmp/1abc")).is_err());
        assert!(crate_name(Path::new("/tmp/a b")).is_err());
        assert!(crate_name(Path::new("/tmp/café")).is_err());
        assert!(crate_name(Path::new("/")).is_err());
        assert!(crate_name(Path::new("net")).unwrap_err().contains("taken"));
    }

    #[test]
    fn the_template_is_filled_everywhere() {
        let words = [
            ("{{name}}", "pingpong"),
            ("{{manada}}", "/src/manada/boot"),
            ("{{checkout}}", "/src/manada"),
            ("{{path}}", "../pingpong"),
        ];
        for (path, text) in TEMPLATE {
            let filled = fill(text, &words);
            assert!(!filled.contains("{{"), "{path} keeps a placeholder");
        }
        let manifest = fill(TEMPLATE[0].1, &words);
        assert!(manifest.contains("name = \"pingpong\""));
        assert!(manifest.contains("manada = { path = \"/src/manada/boot\" }"));
        assert_eq!(toml_escape(r#"C:\a "b""#), r#"C:\\a \"b\""#);
    }

    #[test]
    fn an_existing_folder_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("manada-new-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("keep.txt"), "mine").unwrap();
        let error = main(&NewArgs { path: dir.clone() }).unwrap_err();
        assert!(error.contains("already exists"), "{error}");
        assert_eq!(fs::read_to_string(dir.join("keep.txt")).unwrap(), "mine");
        fs::remove_dir_all(&dir).unwrap();
    }
}
