//! `cargo xtask bench`: benchmark suites that boot the kernel and report medians.
//!
//! Each suite writes `<out>/<suite>.json` and `.md`; after every suite the combined
//! `<out>/report.md` is rewritten from all the JSON files there, with SVG plots for the
//! suites that measure throughput at several core counts (`report`, `plot`).

mod breakdown;
mod context;
mod http;
mod net;
mod plot;
mod report;
mod scale;
mod suites;

use std::fs;
use std::path::Path;

use crate::build;
use crate::tools;

use context::{oversubscription, Context, Record};
pub use context::{BenchArgs, Suite};

pub use scale::check_smoke_run;

/// Returns the core counts to measure: those asked for, or 1, 2 and `host_cpus`; sorted,
/// without duplicates, within the kernel's limit.
fn core_counts(asked: &[usize], host_cpus: usize) -> Vec<usize> {
    let mut counts = if asked.is_empty() {
        vec![1, 2, host_cpus.clamp(1, crate::MAX_CORES)]
    } else {
        asked.to_vec()
    };
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// Returns the runs per measure: `--repeat`, else 1 with `--quick` and 5 without.
fn repeat_count(repeat: Option<u64>, quick: bool) -> usize {
    let default = if quick { 1 } else { 5 };
    repeat.map_or(default, |repeat| usize::try_from(repeat).unwrap_or(default))
}

/// Returns the core counts `suite` boots with, of those asked for.
fn suite_core_counts(suite: Suite, asked: &[usize]) -> Vec<usize> {
    match suite {
        Suite::Boot | Suite::Percore | Suite::Scale => asked.to_vec(),
        Suite::Ipc => asked.iter().copied().filter(|&cores| cores >= 2).collect(),
        Suite::Blk => vec![2],
        Suite::Fs => vec![3],
        Suite::Net => vec![net::CORES],
        Suite::Http => http::CORES.to_vec(),
    }
}

/// Runs `suite` and returns its measures.
fn run_suite(suite: Suite, context: &Context) -> Result<Vec<Record>, String> {
    match suite {
        Suite::Boot => suites::boot_suite(context),
        Suite::Ipc => suites::ipc_suite(context),
        Suite::Percore => suites::percore_suite(context),
        Suite::Scale => scale::scale_suite(context),
        Suite::Blk => suites::blk_suite(context),
        Suite::Fs => suites::fs_suite(context),
        Suite::Net => net::net_suite(context),
        Suite::Http => http::http_suite(context),
    }
}

/// Runs the chosen suites; after each, writes its reports and rewrites `report.md`.
pub fn main(args: &BenchArgs) -> Result<(), String> {
    let workspace = tools::workspace()?;
    let kernel = build::kernel_or_build(&workspace, args.kernel.as_deref(), !args.debug)?;
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    let host_cpus = tools::host_cpus();
    let context = Context {
        args,
        kernel,
        accel,
        host_cpus,
        cores: core_counts(&args.cores, host_cpus),
        repeat: repeat_count(args.repeat, args.quick),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| workspace.target_dir.join("bench")),
        date: report::utc_now(),
        commit: report::git_commit(&workspace.root),
    };
    let suites = args.suite.map_or(Suite::ALL.to_vec(), |suite| vec![suite]);
    for suite in suites {
        let counts = suite_core_counts(suite, &context.cores);
        if let Some(warning) = counts
            .iter()
            .max()
            .and_then(|&most| oversubscription(most, host_cpus))
        {
            eprintln!("xtask: warning: {} suite: {warning}", suite.name());
        }
        eprintln!(
            "xtask: bench {} under {} on {host_cpus} host CPUs, cores {counts:?}, {} run(s) each",
            suite.name(),
            accel.name(),
            context.repeat
        );
        let records = run_suite(suite, &context)?;
        write_suite(&context, suite.name(), &records)?;
    }
    Ok(())
}

/// Writes the suite's JSON, Markdown and plots into the output folder, prints its table,
/// and rewrites `report.md` from every suite's JSON there.
fn write_suite(context: &Context, suite: &str, records: &[Record]) -> Result<(), String> {
    let dir = &context.out;
    let io =
        |path: &Path, error: std::io::Error| format!("cannot write {}: {error}", path.display());
    fs::create_dir_all(dir).map_err(|error| io(dir, error))?;
    let report = report::SuiteReport::new(context, suite, records);
    let json_path = dir.join(format!("{suite}.json"));
    fs::write(&json_path, report::to_json(&report)).map_err(|error| io(&json_path, error))?;
    let markdown = report::to_markdown(&report);
    let markdown_path = dir.join(format!("{suite}.md"));
    fs::write(&markdown_path, &markdown).map_err(|error| io(&markdown_path, error))?;
    for (name, svg) in plot::suite_plots(&report) {
        let path = dir.join(&name);
        fs::write(&path, svg).map_err(|error| io(&path, error))?;
    }
    println!("{markdown}");
    report::write_combined(dir)?;
    eprintln!(
        "xtask: wrote {}, {} and {}",
        json_path.display(),
        markdown_path.display(),
        dir.join("report.md").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::PathBuf;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(words: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(words.iter().copied()))
            .map(|cli| cli.bench)
    }

    #[test]
    fn default_cores_are_one_two_and_the_host() {
        assert_eq!(core_counts(&[], 2), vec![1, 2]);
        assert_eq!(core_counts(&[], 1), vec![1, 2]);
        assert_eq!(core_counts(&[], 16), vec![1, 2, 16]);
        assert_eq!(core_counts(&[], 512), vec![1, 2, crate::MAX_CORES]);
        assert_eq!(core_counts(&[8, 1, 4, 2, 4], 2), vec![1, 2, 4, 8]);
    }

    #[test]
    fn parses_suites_cores_repeat_and_quick() {
        let args = parse(&["scale", "--cores", "1,2,4,8", "--repeat", "3", "--quick"]).unwrap();
        assert_eq!(args.suite, Some(Suite::Scale));
        assert_eq!(args.cores, vec![1, 2, 4, 8]);
        assert_eq!(repeat_count(args.repeat, args.quick), 3);
        let args = parse(&["net", "--quick", "--out", "/tmp/x"]).unwrap();
        assert_eq!(args.suite, Some(Suite::Net));
        assert!(args.cores.is_empty());
        assert_eq!(repeat_count(args.repeat, args.quick), 1);
        assert_eq!(args.out, Some(PathBuf::from("/tmp/x")));
        let args = parse(&[]).unwrap();
        assert_eq!(args.suite, None);
        assert_eq!(repeat_count(args.repeat, args.quick), 5);
        assert!(parse(&["--cores", "0"]).is_err());
        assert!(parse(&["--cores", "65"]).is_err());
        assert!(parse(&["--repeat", "0"]).is_err());
        assert!(parse(&["nosuch"]).is_err());
    }

    #[test]
    fn suites_boot_the_core_counts_they_need() {
        assert_eq!(suite_core_counts(Suite::Ipc, &[1, 2, 4]), vec![2, 4]);
        assert_eq!(suite_core_counts(Suite::Scale, &[1, 2, 4]), vec![1, 2, 4]);
        assert_eq!(suite_core_counts(Suite::Fs, &[1, 2, 4]), vec![3]);
        assert!(Suite::ALL.contains(&Suite::Scale));
    }
}
