//! Request targets to paths in the share: percent-decoding, and refusing every target
//! that could name something outside the served folder or that the folder's FAT names
//! could read differently (dot segments, encoded slashes, backslashes, control bytes).

use alloc::string::String;
use alloc::vec::Vec;

/// Why a request target names no path the server will look up (answered with 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathError(pub &'static str);

/// A checked path in the share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitePath {
    /// The decoded segments: none is empty, none is only dots and spaces, none holds a
    /// `/`, a `\`, or a control character.
    segments: Vec<String>,
    /// Whether the path ends in `/` (the root does).
    directory_form: bool,
    /// The path as sent, still percent-encoded (visible ASCII only).
    raw: String,
    /// The query as sent, without the `?`.
    query: Option<String>,
}

impl SitePath {
    /// Returns the checked path of a request target (origin form `/a/b?q`, or absolute
    /// form `http://host/a/b`).
    pub fn parse(target: &str) -> Result<SitePath, PathError> {
        let path_and_query = if target.starts_with('/') {
            target
        } else {
            absolute_form_path(target)?
        };
        let without_fragment = path_and_query
            .split_once('#')
            .map_or(path_and_query, |(before, _)| before);
        let (raw, query) = match without_fragment.split_once('?') {
            Some((raw, query)) => (raw, Some(String::from(query))),
            None => (without_fragment, None),
        };
        let raw = if raw.is_empty() { "/" } else { raw };
        if !raw.starts_with('/') || !raw.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(PathError("the path is not /-rooted visible ASCII"));
        }
        let mut segments = Vec::new();
        for part in raw.split('/').filter(|part| !part.is_empty()) {
            segments.push(decode_segment(part)?);
        }
        Ok(SitePath {
            segments,
            directory_form: raw.ends_with('/'),
            raw: String::from(raw),
            query,
        })
    }

    /// Returns the path to give the fs service: `/` and the segments joined by `/`.
    pub fn fs_path(&self) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            path.push_str(segment);
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// Returns the fs path of `name` inside this path, taken as a folder.
    pub fn fs_path_of(&self, name: &str) -> String {
        let mut path = self.fs_path();
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(name);
        path
    }

    /// Returns the last segment (empty for the root).
    pub fn file_name(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }

    /// Returns whether the target ended in `/` (the root always does).
    pub fn is_directory_form(&self) -> bool {
        self.directory_form
    }

    /// Returns where to send a client that named a folder without the final `/`: the path
    /// as sent with a `/` added, and the query if there was one.
    pub fn with_slash(&self) -> String {
        let mut location = self.raw.clone();
        location.push('/');
        if let Some(query) = &self.query {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// Returns the path (and query) of an absolute-form target such as `http://host/a?q`.
fn absolute_form_path(target: &str) -> Result<&str, PathError> {
    let lower_starts = |prefix: &str| {
        target
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    let rest = if lower_starts("http://") {
        &target["http://".len()..]
    } else if lower_starts("https://") {
        &target["https://".len()..]
    } else {
        return Err(PathError("the target is neither a path nor an http URL"));
    };
    match rest.find(['/', '?', '#']) {
        Some(at) if rest.as_bytes()[at] == b'/' => Ok(&rest[at..]),
        _ => Ok("/"),
    }
}

/// Returns the value of an ASCII hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Returns one percent-decoded path segment, or why it is refused.
fn decode_segment(part: &str) -> Result<String, PathError> {
    let bytes = part.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let high = bytes.get(index + 1).copied().and_then(hex_value);
            let low = bytes.get(index + 2).copied().and_then(hex_value);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(PathError("a % not followed by two hex digits"));
            };
            decoded.push(high << 4 | low);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    if decoded.contains(&b'/') {
        return Err(PathError("an encoded / in a segment"));
    }
    if decoded.contains(&b'\\') {
        return Err(PathError("a backslash in the path"));
    }
    if decoded.iter().any(|&byte| byte < 0x20 || byte == 0x7f) {
        return Err(PathError("a control character in the path"));
    }
    // FAT drops trailing dots and spaces from names, so `.. ` could read as `..`.
    if decoded.iter().all(|&byte| byte == b'.' || byte == b' ') {
        return Err(PathError("a segment of dots"));
    }
    String::from_utf8(decoded).map_err(|_| PathError("the path is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_path(target: &str) -> String {
        match SitePath::parse(target) {
            Ok(path) => path.fs_path(),
            Err(error) => panic!("{target}: {error:?}"),
        }
    }

    #[test]
    fn plain_paths() {
        assert_eq!(fs_path("/"), "/");
        assert_eq!(fs_path("/index.html"), "/index.html");
        assert_eq!(fs_path("/docs/a.txt"), "/docs/a.txt");
        assert_eq!(fs_path("//docs///a.txt"), "/docs/a.txt");
        assert_eq!(fs_path("/docs/?x=1"), "/docs");
        assert_eq!(fs_path("/a.txt#frag"), "/a.txt");
        assert_eq!(fs_path("/.hidden"), "/.hidden");
        assert_eq!(fs_path("/a..b/c."), "/a..b/c.");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            fs_path("/A%20long%20file%20name.txt"),
            "/A long file name.txt"
        );
        assert_eq!(fs_path("/caf%C3%A9"), "/caf\u{e9}");
        assert_eq!(fs_path("/a+b%2B"), "/a+b+");
        assert_eq!(fs_path("/%41"), "/A");
    }

    #[test]
    fn absolute_form() {
        assert_eq!(fs_path("http://example:8080/a/b"), "/a/b");
        assert_eq!(fs_path("HTTP://example"), "/");
        assert_eq!(fs_path("https://example?x"), "/");
        assert!(SitePath::parse("*").is_err());
        assert!(SitePath::parse("example.com:80").is_err());
        assert!(SitePath::parse("ftp://x/y").is_err());
    }

    #[test]
    fn traversal_and_odd_bytes_are_refused() {
        for target in [
            "/..",
            "/../Cargo.toml",
            "/a/../../etc/passwd",
            "/.",
            "/./a",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a/%2e",
            "/.. /x",
            "/..%20/x",
            "/...",
            "/%20",
            "/a%2fb",
            "/a%2F..%2F..%2Fb",
            "/a\\..\\b",
            "/a%5cb",
            "/a%5C..",
            "/a%00b",
            "/a%0d%0aSet-Cookie:%20x",
            "/a%7f",
            "/%",
            "/%4",
            "/%zz",
            "/%c3",
            "/%ff%fe",
            "",
            "a/b",
            "/a b",
            "/caf\u{e9}",
        ] {
            assert!(SitePath::parse(target).is_err(), "{target:?} was accepted");
        }
    }

    #[test]
    fn directory_form_and_redirects() {
        let root = SitePath::parse("/").unwrap();
        assert!(root.is_directory_form());
        assert_eq!(root.fs_path_of("index.html"), "/index.html");
        assert_eq!(root.file_name(), "");
        let folder = SitePath::parse("/docs%20x?page=2").unwrap();
        assert!(!folder.is_directory_form());
        assert_eq!(folder.with_slash(), "/docs%20x/?page=2");
        assert_eq!(folder.fs_path_of("index.html"), "/docs x/index.html");
        assert_eq!(folder.file_name(), "docs x");
        let slashed = SitePath::parse("/docs/").unwrap();
        assert!(slashed.is_directory_form());
        assert_eq!(slashed.fs_path(), "/docs");
        let absolute = SitePath::parse("http://h/docs").unwrap();
        assert_eq!(absolute.with_slash(), "/docs/");
    }

    #[test]
    fn every_accepted_path_is_safe() {
        // All targets over a small alphabet up to four bytes long: whatever is accepted
        // holds no dot segment, backslash, control character or empty segment.
        let alphabet: &[&str] = &["/", ".", "%2e", "%2f", "%5c", "\\", "a", "%00", "%", " "];
        let mut targets = alloc::vec![String::new()];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for target in &targets {
                for piece in alphabet {
                    let mut next = target.clone();
                    next.push_str(piece);
                    longer.push(next);
                }
            }
            targets.extend(longer);
        }
        let mut accepted = 0;
        for target in &targets {
            let Ok(path) = SitePath::parse(target) else {
                continue;
            };
            accepted += 1;
            let fs = path.fs_path();
            assert!(fs.starts_with('/'), "{target:?}");
            for segment in fs.split('/').skip(1) {
                if fs == "/" {
                    break;
                }
                assert!(!segment.is_empty(), "{target:?}");
                assert!(segment.chars().any(|c| c != '.' && c != ' '), "{target:?}");
                assert!(!segment.contains(['\\', '\0']), "{target:?}");
            }
        }
        assert!(accepted > 50, "{accepted}");
    }
}
