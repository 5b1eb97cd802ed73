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
    ///
    /// A forward walk over the bytes (ASCII whitespace and `=` are single bytes, so every
    /// cut lies on a character boundary): the boot core runs this before the other
    /// cores start, where under TCG each instruction run for the first time costs its
    /// translation, and a word iterator walked from the back is several times the code.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let mut found = None;
        let mut start = 0;
        while start <= bytes.len() {
            let end = bytes[start..]
                .iter()
                .position(u8::is_ascii_whitespace)
                .map_or(bytes.len(), |at| start + at);
            let word = &bytes[start..end];
            if word.len() > key.len() && word.starts_with(key.as_bytes()) && word[key.len()] == b'='
            {
                found = Some(start + key.len() + 1..end);
            }
            start = end + 1;
        }
        found.and_then(|value| self.text.get(value))
    }

    /// Returns true when the bare word `flag` is present.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.text.split_ascii_whitespace().any(|word| word == flag)
    }

    /// Returns the whole number after `key=`: `Ok(None)` without the word, an error when
    /// the value is not a number (so a mistyped value is refused, not replaced by a default).
    pub fn number(&self, key: &str) -> Result<Option<u64>, core::num::ParseIntError> {
        self.get(key).map(str::parse::<u64>).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_absent_read_or_refused() {
        let c = CommandLine::new("messages=250 ops=-1 rounds= count=12x");
        assert_eq!(c.number("messages"), Ok(Some(250)));
        assert_eq!(c.number("absent"), Ok(None));
        assert!(c.number("ops").is_err());
        assert!(c.number("count").is_err());
        // `rounds=` with nothing after it is a value left out: refused too.
        assert!(c.number("rounds").is_err());
    }

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
    fn agrees_with_a_word_iterator() {
        // The reference: the last word split at its first `=` whose key matches.
        fn reference<'a>(text: &'a str, key: &str) -> Option<&'a str> {
            text.split_ascii_whitespace()
                .filter_map(|word| word.split_once('='))
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .next_back()
        }
        let pieces = [
            "app", "apps", "ap", "=", "==", "x", "é", " ", "\t", "\n", "a=b=c", "", "app=",
        ];
        let mut random = crate::random::XorShift64::new(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let mut text = std::string::String::new();
            for _ in 0..random.below(9) {
                text.push_str(pieces[random.below(pieces.len() as u64) as usize]);
            }
            for key in ["app", "ap", "", "a"] {
                assert_eq!(
                    CommandLine::new(&text).get(key),
                    reference(&text, key),
                    "{text:?} {key:?}"
                );
            }
        }
    }

    #[test]
    fn empty_values_and_missing_keys() {
        let c = CommandLine::new("app= =x");
        assert_eq!(c.get("app"), Some(""));
        assert_eq!(c.get(""), Some("x"));
        assert_eq!(CommandLine::new("").get("app"), None);
    }
}
