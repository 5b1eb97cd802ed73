//! The Content-Type of a file, from its name's extension.

/// What a file whose extension is not known is sent as.
pub const DEFAULT: &str = "application/octet-stream";

/// Extensions (lower case) and their media types.
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("txt", "text/plain; charset=utf-8"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
    ("wasm", "application/wasm"),
    ("pdf", "application/pdf"),
];

/// Returns the media type of a file called `name`, by its extension in any case; files
/// without a known extension are [`DEFAULT`].
pub fn for_name(name: &str) -> &'static str {
    let Some((stem, extension)) = name.rsplit_once('.') else {
        return DEFAULT;
    };
    if stem.is_empty() {
        // `.html` is a hidden file called html, not an HTML file without a name.
        return DEFAULT;
    }
    TYPES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(extension))
        .map_or(DEFAULT, |(_, media_type)| media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extensions_in_any_case() {
        assert_eq!(for_name("index.html"), "text/html; charset=utf-8");
        assert_eq!(for_name("INDEX.HTM"), "text/html; charset=utf-8");
        assert_eq!(for_name("site.css"), "text/css; charset=utf-8");
        assert_eq!(for_name("app.min.js"), "text/javascript; charset=utf-8");
        assert_eq!(for_name("data.Json"), "application/json");
        assert_eq!(for_name("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(for_name("a.png"), "image/png");
        assert_eq!(for_name("a.JPG"), "image/jpeg");
        assert_eq!(for_name("a.jpeg"), "image/jpeg");
        assert_eq!(for_name("a.gif"), "image/gif");
        assert_eq!(for_name("a.svg"), "image/svg+xml");
        assert_eq!(for_name("favicon.ico"), "image/x-icon");
        assert_eq!(for_name("module.wasm"), "application/wasm");
        assert_eq!(for_name("paper.pdf"), "application/pdf");
    }

    #[test]
    fn everything_else_is_octet_stream() {
        for name in [
            "",
            "README",
            "a.bin",
            "a.",
            ".html",
            "a.html.gz",
            "a.htmlx",
            "a.ht",
        ] {
            assert_eq!(for_name(name), DEFAULT, "{name}");
        }
    }
}
