//! `cargo xtask`: builds Manada images, runs them under QEMU, drives the tests and benchmarks.

mod app_crate;
mod bench;
mod build;
mod frames;
mod httpcheck;
mod markers;
mod mkimage;
#[cfg(test)]
mod module_graph;
mod new;
mod qemu;
mod run;
mod test;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The most cores the kernel supports; `--cores` accepts `1..=MAX_CORES`.
pub const MAX_CORES: usize = 64;

/// Manada's developer tasks.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, test and benchmark Manada images under QEMU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, one module each.
#[derive(Debug, Subcommand)]
enum Command {
    /// Builds the kernel image and prints its path.
    Build(build::BuildArgs),
    /// Builds the kernel and boots it under QEMU with the console on stdout.
    Run(run::RunArgs),
    /// Runs the host unit tests, then the QEMU integration tests.
    Test(test::TestArgs),
    /// Runs benchmark suites and writes their reports under target/bench.
    Bench(bench::BenchArgs),
    /// Builds a FAT16 image of a folder (mkfs.fat and mcopy).
    Mkimage(mkimage::MkimageArgs),
    /// Makes an application in a crate of its own, outside this repository.
    New(new::NewArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Build(args) => build::main(&args),
        Command::Run(args) => run::main(&args),
        Command::Test(args) => test::main(&args),
        Command::Bench(args) => bench::main(&args),
        Command::Mkimage(args) => mkimage::main(&args),
        Command::New(args) => new::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // An empty message means the command already reported the failure.
        Err(message) => {
            if !message.is_empty() {
                eprintln!("xtask: error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn max_cores_matches_the_kernel() {
        assert_eq!(super::MAX_CORES, percore::MAX_CORES);
    }

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
