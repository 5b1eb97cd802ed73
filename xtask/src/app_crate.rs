//! Applications in a crate of their own (`--app-crate PATH`): building the crate's
//! kernel image, and reading the QEMU smoke tests it declares in `qemu-tests.toml`.
//!
//! Such a crate depends on the `manada` crate and names its application with
//! `manada::main!`; `cargo xtask new` makes one. It is built with its own cargo
//! configuration and toolchain (cargo runs in its folder), as `cargo build` there would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::qemu::{self, Machine};
use crate::tools::{self, Workspace, KERNEL_TARGET};

/// The file of an application crate that lists its QEMU smoke tests.
pub const TESTS_FILE: &str = "qemu-tests.toml";

/// An application crate's image, built.
#[derive(Debug)]
pub struct Built {
    /// The kernel image (the crate's binary for `x86_64-unknown-none`).
    pub image: PathBuf,
    /// The crate's package name: the name `manada::main!` gives its application.
    pub package: String,
}

/// Returns the crate's package name, from `cargo metadata` in its folder.
pub fn package_name(dir: &Path) -> Result<String, String> {
    let manifest = manifest(dir)?;
    let output = Command::new(tools::cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run `{} metadata`: {error}", tools::cargo()))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed for {} ({})",
            manifest.display(),
            output.status
        ));
    }
    let json = String::from_utf8_lossy(&output.stdout);
    // The first "name" of `--no-deps` output is the first package's.
    tools::json_string_field(&json, "name")
        .ok_or_else(|| format!("{} names no package", manifest.display()))
}

/// Returns `dir/Cargo.toml`, or why `dir` is not a crate.
fn manifest(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    if manifest.is_file() {
        Ok(manifest)
    } else {
        Err(format!(
            "--app-crate {}: no Cargo.toml there (make one with `cargo xtask new PATH`)",
            dir.display()
        ))
    }
}

/// Builds the crate in `dir` for the kernel target and returns its image.
pub fn build(workspace: &Workspace, dir: &Path, release: bool) -> Result<Built, String> {
    let manifest = manifest(dir)?;
    let package = package_name(dir)?;
    tools::ensure_kernel_target(workspace)?;
    let mut command = Command::new(tools::cargo());
    command
        .args(["build", "--target", KERNEL_TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    eprintln!("xtask: building {} ({})", package, dir.display());
    let output = command
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "building {} failed ({})",
            manifest.display(),
            output.status
        ));
    }
    let image = executable(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        format!(
            "{} built no binary: an application crate has a src/main.rs with manada::main!",
            manifest.display()
        )
    })?;
    Ok(Built { image, package })
}

/// Returns the last executable that cargo's JSON messages report.
fn executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|line| tools::json_string_field(line, "executable"))
        .map(PathBuf::from)
        .next_back()
}

/// One QEMU smoke test of an application crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeTest {
    pub name: String,
    pub cores: usize,
    pub machine: Machine,
    /// The application to run; the crate's own when not given.
    pub app: Option<String>,
    pub kernel_args: Vec<String>,
    /// Each must start some console line.
    pub expect: Vec<String>,
}

/// Returns the smoke tests of `qemu-tests.toml`, or the first error with its line.
///
/// The format is a small part of TOML: `[[test]]` tables with `name` (a string),
/// `cores` (1 to 64, default 2), `machine` ("q35", "pc" or "microvm"), `app`,
/// `kernel-args` and `expect` (arrays of strings, which may span lines); `#` comments.
pub fn parse_tests(text: &str) -> Result<Vec<SmokeTest>, String> {
    let mut tests: Vec<SmokeTest> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        if line == "[[test]]" {
            tests.push(SmokeTest {
                name: String::new(),
                cores: 2,
                machine: Machine::Q35,
                app: None,
                kernel_args: Vec::new(),
                expect: Vec::new(),
            });
            continue;
        }
        let error = |message: String| format!("{TESTS_FILE} line {number}: {message}");
        let (key, value) = line.split_once('=').ok_or_else(|| {
            error(format!(
                "expected `[[test]]` or `key = value`, found `{line}`"
            ))
        })?;
        let key = key.trim();
        let mut value = value.trim().to_string();
        // An array may continue on the following lines until its `]`.
        if value.starts_with('[') {
            while !array_closed(&value) {
                let (_, more) = lines
                    .next()
                    .ok_or_else(|| error(format!("the array of `{key}` is not closed")))?;
                value.push(' ');
                value.push_str(strip_comment(more).trim());
            }
        }
        let test = tests
            .last_mut()
            .ok_or_else(|| error(format!("`{key}` before the first `[[test]]`")))?;
        match key {
            "name" => test.name = parse_string(&value).map_err(error)?,
            "app" => test.app = Some(parse_string(&value).map_err(error)?),
            "cores" => test.cores = qemu::parse_cores(&value).map_err(error)?,
            "machine" => {
                test.machine = match parse_string(&value).map_err(error)?.as_str() {
                    "q35" => Machine::Q35,
                    "pc" => Machine::Pc,
                    "microvm" => Machine::Microvm,
                    other => {
                        return Err(error(format!(
                            "unknown machine `{other}` (q35, pc, microvm)"
                        )))
                    }
                }
            }
            "kernel-args" => {
                test.kernel_args = parse_array(&value).map_err(error)?;
                for word in &test.kernel_args {
                    qemu::parse_kernel_arg(word).map_err(error)?;
                }
            }
            "expect" => test.expect = parse_array(&value).map_err(error)?,
            other => {
                return Err(error(format!(
                    "unknown key `{other}` (name, cores, machine, app, kernel-args, expect)"
                )))
            }
        }
    }
    for (position, test) in tests.iter().enumerate() {
        if test.name.is_empty() {
            return Err(format!("{TESTS_FILE}: test {} has no name", position + 1));
        }
    }
    if tests.is_empty() {
        return Err(format!("{TESTS_FILE} declares no [[test]]"));
    }
    Ok(tests)
}

/// Returns `line` without a `#` comment (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (at, char) in line.char_indices() {
        match char {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..at],
            _ => {}
        }
    }
    line
}

/// Returns whether an array's text has its closing `]` (outside strings).
fn array_closed(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for char in text.chars() {
        match char {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ']' if !in_string => return true,
            _ => {}
        }
    }
    false
}

/// Parses one basic string, `"..."` with `\"`, `\\`, `\t` and `\n` escapes; returns it
/// and the text after it.
fn take_string(text: &str) -> Result<(String, &str), String> {
    let rest = text
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a string in double quotes, found `{text}`"))?;
    let mut value = String::new();
    let mut chars = rest.char_indices();
    while let Some((at, char)) = chars.next() {
        match char {
            '"' => return Ok((value, &rest[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'n')) => value.push('\n'),
                _ => return Err(format!("unknown escape in `{text}`")),
            },
            other => value.push(other),
        }
    }
    Err(format!("the string `{text}` is not closed"))
}

fn parse_string(text: &str) -> Result<String, String> {
    let (value, rest) = take_string(text)?;
    if rest.trim().is_empty() {
        Ok(value)
    } else {
        Err(format!("unexpected `{}` after the string", rest.trim()))
    }
}

/// Parses `["a", "b",]` (a trailing comma is allowed).
fn parse_array(text: &str) -> Result<Vec<String>, String> {
    let mut rest = text
        .strip_prefix('[')
        .ok_or_else(|| format!("expected an array `[\"...\", ...]`, found `{text}`"))?
        .trim_start();
    let mut values = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix(']') {
            if after.trim().is_empty() {
                return Ok(values);
            }
            return Err(format!("unexpected `{}` after the array", after.trim()));
        }
        let (value, after) = take_string(rest)?;
        values.push(value);
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.starts_with(']') {
            return Err(format!("expected `,` or `]` in the array, found `{rest}`"));
        }
    }
}

/// Returns the smoke tests of the crate in `dir`.
pub fn read_tests(dir: &Path) -> Result<Vec<SmokeTest>, String> {
    let path = dir.join(TESTS_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    parse_tests(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tests_a_crate_declares() {
        let text = r#"
# Two tests.
[[test]]
name = "two cores"   # a comment after a value
cores = 2
expect = ["ping-pong: 1000 round trips", "a # inside a string"]

[[test]]
name = "four, \"quoted\""
cores = 4
machine = "pc"
app = "other"
kernel-args = ["rounds=10",
    "verbose=1",   # the array goes on
]
expect = [
    "ping-pong: 10 round trips",
]
"#;
        let tests = parse_tests(text).unwrap();
        assert_eq!(tests.len(), 2);
        assert_eq!(tests[0].name, "two cores");
        assert_eq!(
            tests[0].expect,
            ["ping-pong: 1000 round trips", "a # inside a string"]
        );
        assert_eq!(tests[0].machine, Machine::Q35);
        assert_eq!(tests[0].app, None);
        assert_eq!(tests[1].name, "four, \"quoted\"");
        assert_eq!((tests[1].cores, tests[1].machine), (4, Machine::Pc));
        assert_eq!(tests[1].app.as_deref(), Some("other"));
        assert_eq!(tests[1].kernel_args, ["rounds=10", "verbose=1"]);
        assert_eq!(tests[1].expect, ["ping-pong: 10 round trips"]);
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let cases = [
            ("cores = 2\n", "line 1: `cores` before the first `[[test]]`"),
            ("[[test]]\nname = \"a\"\ncores = 99\n", "line 3:"),
            ("[[test]]\nname = \"a\"\nspeed = 1\n", "unknown key `speed`"),
            ("[[test]]\nname = \"a\"\nexpect = [\"x\"\n", "not closed"),
            ("[[test]]\nname = \"a\nb\"\n", "line 2:"),
            (
                "[[test]]\nname = \"a\"\nmachine = \"virt\"\n",
                "unknown machine",
            ),
            (
                "[[test]]\nname = \"a\"\nkernel-args = [\"app=x\"]\n",
                "--app",
            ),
            (
                "[[test]]\nname = \"a\"\nexpect = [\"x\" \"y\"]\n",
                "expected `,` or `]`",
            ),
            ("[[test]]\ncores = 2\n", "test 1 has no name"),
            ("# nothing\n", "declares no [[test]]"),
            (
                "[[test]]\nname: \"a\"\n",
                "expected `[[test]]` or `key = value`",
            ),
        ];
        for (text, wanted) in cases {
            let error = parse_tests(text).unwrap_err();
            assert!(error.contains(wanted), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_image_is_the_executable_cargo_reports() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"manada"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"pingpong"},"executable":"/tmp/p/target/x86_64-unknown-none/debug/pingpong"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable(messages),
            Some(PathBuf::from(
                "/tmp/p/target/x86_64-unknown-none/debug/pingpong"
            ))
        );
        assert_eq!(executable(r#"{"reason":"build-finished"}"#), None);
    }
}
