//! The kernel command line: `key=value` words separated by spaces.
//!
//! `cargo xtask run` passes `app=NAME` and future options this way. Parsing never fails:
//! unknown keys are kept for whoever asks for them, and words without `=` are flags.

/// A parsed view of the kernel command line.
#[derive(Clone, Copy, Debug)]
pub struct CommandLine<'a> {
    text: &'a str,
}

impl<'a> CommandLine<'a> {
    /// Returns a view of `text`.
    pub const fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// Returns the whole command line.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Returns the value of the last `key=value` word for `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.text
            .split_ascii_whitespace()
            .filter_map(|word| word.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .next_back()
    }

    /// Returns true when the bare word `flag` is present.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.text.split_ascii_whitespace().any(|word| word == flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_values_and_flags() {
        let c = CommandLine::new("  app=hello  verbose cores=4 app=files ");
        assert_eq!(c.get("app"), Some("files"));
        assert_eq!(c.get("cores"), Some("4"));
        assert_eq!(c.get("verbose"), None);
        assert!(c.has_flag("verbose"));
        assert!(!c.has_flag("app"));
    }

    #[test]
    fn empty_values_and_missing_keys() {
        let c = CommandLine::new("app= =x");
        assert_eq!(c.get("app"), Some(""));
        assert_eq!(c.get(""), Some("x"));
        assert_eq!(CommandLine::new("").get("app"), None);
    }
}
