//! What a QEMU run produced: how QEMU ended (its exit status mapped to the kernel's
//! verdict), the console and the markers seen on it.

use std::process::ExitStatus;
use std::time::Duration;

/// How QEMU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The kernel wrote 0x10 to the exit port (QEMU status 33).
    KernelSuccess,
    /// The kernel wrote 0x11 to the exit port (QEMU status 35).
    KernelFailure,
    /// QEMU exited 0: no kernel status, usually a triple fault under `-no-reboot`.
    NoKernelCode,
    /// Any other QEMU exit status.
    Other(i32),
    /// QEMU was killed by a signal xtask did not send.
    Signal,
    /// xtask killed QEMU at the timeout (or when the client beside it was done).
    TimedOut,
    /// xtask killed QEMU on purpose, as a crash test asked (`kill_after_line`).
    Killed,
}

impl Status {
    /// Returns the status for QEMU's exit status.
    pub fn from_exit(status: ExitStatus) -> Status {
        match status.code() {
            Some(33) => Status::KernelSuccess,
            Some(35) => Status::KernelFailure,
            Some(0) => Status::NoKernelCode,
            Some(code) => Status::Other(code),
            None => Status::Signal,
        }
    }
}

/// When the kernel said all its cores were online.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Online {
    /// The number of cores the kernel reported.
    pub cores: usize,
    /// The kernel's own figure: milliseconds since kernel entry.
    pub kernel_ms: f64,
    /// Host time from QEMU's spawn to the line arriving.
    pub after_start: Duration,
}

/// What a QEMU run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How QEMU ended.
    pub status: Status,
    /// The guest console (QEMU's stdout), line by line.
    pub console: Vec<String>,
    /// When each console line arrived, as host time since QEMU's spawn (one per line
    /// of `console` that came from QEMU).
    pub arrivals: Vec<Duration>,
    /// QEMU's own stderr lines.
    pub stderr: Vec<String>,
    /// The `cores online` marker, if it appeared.
    pub online: Option<Online>,
    /// The first panic or exception line, if any.
    pub fatal: Option<String>,
    /// The first `unknown app` marker, if any.
    pub unknown_app: Option<String>,
    /// Host time from spawn to exit.
    pub elapsed: Duration,
    /// The timeout the run had.
    pub timeout: Option<Duration>,
    /// xtask killed QEMU on purpose (`kill_after_line`).
    pub killed: bool,
}

impl Outcome {
    /// An outcome with `status` and `console` and nothing else seen yet.
    pub fn new(status: Status, console: Vec<String>, timeout: Option<Duration>) -> Self {
        Outcome {
            status,
            console,
            arrivals: Vec::new(),
            stderr: Vec::new(),
            online: None,
            fatal: None,
            unknown_app: None,
            elapsed: Duration::ZERO,
            timeout,
            killed: false,
        }
    }

    /// Returns `Ok` when the kernel reported success and nothing fatal appeared, otherwise why not.
    pub fn verdict(&self) -> Result<(), String> {
        if let Some(line) = &self.fatal {
            return Err(match self.status {
                Status::KernelFailure => format!("kernel reported failure: {line}"),
                _ => format!("kernel crashed: {line}"),
            });
        }
        if let Some(message) = &self.unknown_app {
            return Err(message.clone());
        }
        match self.status {
            Status::KernelSuccess => Ok(()),
            Status::KernelFailure => Err("kernel reported failure".into()),
            Status::NoKernelCode => Err(
                // QEMU exits 0 when someone else stops it with a signal, and says so.
                match self
                    .stderr
                    .iter()
                    .find(|line| line.contains("terminating on signal"))
                {
                    Some(line) => format!("QEMU was stopped from outside: {}", line.trim()),
                    None => "QEMU exited without a kernel status (triple fault?)".into(),
                },
            ),
            Status::Other(code) => {
                if let Some(problem) = share_problem(&self.stderr, &self.console) {
                    return Err(problem);
                }
                let last = self
                    .stderr
                    .last()
                    .map(|line| format!(": {line}"))
                    .unwrap_or_default();
                Err(format!("QEMU exited with status {code}{last}"))
            }
            Status::Signal => Err("QEMU was killed by a signal".into()),
            Status::Killed => Err("QEMU was killed on purpose by the test".into()),
            Status::TimedOut => Err(format!(
                "timed out after {} s; QEMU killed",
                self.timeout.map_or(0, |timeout| timeout.as_secs())
            )),
        }
    }

    /// Returns the last `count` console lines, then QEMU's stderr lines, for failure reports.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let start = self.console.len().saturating_sub(count);
        let console = self.console[start..].iter().cloned();
        console
            .chain(self.stderr.iter().map(|line| format!("qemu: {line}")))
            .collect()
    }
}

/// Returns what to tell the user when QEMU could not make a FAT16 disk of a shared folder
/// (vvfat): its reason, from its error line on the `-drive file=fat:` option or the line it
/// printed before it, and what to do.
fn share_problem(stderr: &[String], console: &[String]) -> Option<String> {
    let drive = stderr.iter().find(|line| {
        line.contains("file=fat:")
            && (line.contains("Could not read directory") || line.contains("does not fit in FAT"))
    })?;
    let reason = match console
        .iter()
        .chain(stderr)
        .find(|line| line.starts_with("Too many entries"))
    {
        Some(line) => line.trim().to_string(),
        None => drive
            .rsplit(": ")
            .next()
            .unwrap_or(drive)
            .trim()
            .to_string(),
    };
    Some(format!(
        "QEMU cannot present the shared folder as a FAT16 disk: {reason}. QEMU's vvfat holds \
         at most 512 directory entries in the top folder (each file takes two or more, more \
         for a long name) and 516 MB in all: move files into subfolders, share less, or make \
         an image with `cargo xtask mkimage DIR IMAGE` and boot it with --disk IMAGE"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_exit_statuses() {
        use std::os::unix::process::ExitStatusExt;
        let exit = |code: i32| Status::from_exit(ExitStatus::from_raw(code << 8));
        assert_eq!(exit(33), Status::KernelSuccess);
        assert_eq!(exit(35), Status::KernelFailure);
        assert_eq!(exit(0), Status::NoKernelCode);
        assert_eq!(exit(1), Status::Other(1));
        assert_eq!(Status::from_exit(ExitStatus::from_raw(9)), Status::Signal);
    }

    #[test]
    fn a_share_vvfat_cannot_hold_is_explained() {
        let drive = |reason: &str| {
            format!(
                "qemu-system-x86_64: -drive file=fat:rw:/tmp/many,format=raw,if=none,id=disk0: {reason}"
            )
        };
        let mut outcome = Outcome::new(Status::Other(1), Vec::new(), None);
        outcome.stderr = vec![
            "Too many entries in root directory".into(),
            drive("Could not read directory /tmp/many"),
        ];
        let error = outcome.verdict().unwrap_err();
        assert!(error.starts_with("QEMU cannot present the shared folder as a FAT16 disk: Too many entries in root directory."), "{error}");
        assert!(error.contains("move files into subfolders"));
        outcome.stderr = vec![drive(
            "Directory does not fit in FAT16 (capacity 516.06 MB)",
        )];
        let error = outcome.verdict().unwrap_err();
        assert!(
            error.contains(": Directory does not fit in FAT16 (capacity 516.06 MB)."),
            "{error}"
        );
        // Another QEMU error keeps QEMU's own words.
        outcome.stderr = vec!["qemu-system-x86_64: -m 1T: cannot set up guest memory".into()];
        assert_eq!(
            outcome.verdict().unwrap_err(),
            "QEMU exited with status 1: qemu-system-x86_64: -m 1T: cannot set up guest memory"
        );
    }

    #[test]
    fn verdict_prefers_fatal_lines_over_status() {
        let mut outcome = Outcome::new(
            Status::KernelSuccess,
            vec!["PANIC on core 1: boom".into()],
            None,
        );
        assert_eq!(outcome.verdict(), Ok(()));
        outcome.fatal = Some("PANIC on core 1: boom".into());
        assert!(outcome.verdict().unwrap_err().contains("PANIC on core 1"));
        outcome.fatal = None;
        outcome.status = Status::NoKernelCode;
        assert!(outcome.verdict().unwrap_err().contains("triple fault"));
        outcome
            .stderr
            .push("qemu-system-x86_64: terminating on signal 15 from pid 7".into());
        assert!(outcome
            .verdict()
            .unwrap_err()
            .contains("stopped from outside"));
        outcome.stderr.pop();
        assert!(outcome.verdict().unwrap_err().contains("triple fault"));
        outcome.status = Status::KernelFailure;
        assert_eq!(outcome.verdict(), Err("kernel reported failure".into()));
    }
}
