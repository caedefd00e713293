//! Offered file names reduced to a safe base name, and the names tried when one is taken.
//!
//! A peer chooses the name it offers, so it is treated like any other network text: only the
//! last path component is kept, control and invisible characters go, leading dots and
//! surrounding spaces go (no hidden files, no `..`), and the result is cut to a length every
//! common file system accepts once `.part.meta` is added. The result never contains a path
//! separator, so joining it to a directory stays inside that directory.

use crate::core::sanitize::is_hidden_format;

/// Longest safe name in bytes; leaves room for ` (999)` and `.part.meta` under 255.
pub(crate) const MAX_NAME_BYTES: usize = 200;
/// How many `NAME (n)` variants are tried before giving up.
pub(crate) const MAX_VARIANTS: u32 = 999;

/// The base name a file offered as `offered` is saved under.
pub(crate) fn safe_name(offered: &str) -> String {
    let last = offered
        .rsplit(['/', '\\'])
        .find(|part| !part.trim().is_empty())
        .unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|&c| !c.is_control() && !is_hidden_format(c) && c != ':')
        .collect();
    let trimmed = cleaned.trim().trim_start_matches(['.', ' ']).trim_end();
    let mut name = cut(trimmed, MAX_NAME_BYTES).trim_end().to_string();
    if name.is_empty() {
        name = "file".to_string();
    }
    name
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `name` for `n == 0`, else `stem (n).ext` (`report (1).pdf`, `archive (2)`).
pub(crate) fn variant(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_plain_base_names() {
        assert_eq!(safe_name("../../x"), "x");
        assert_eq!(safe_name("/etc/passwd"), "passwd");
        assert_eq!(safe_name("a\nb"), "a b");
        assert_eq!(safe_name("..\\..\\win.ini"), "win.ini");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("."), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("dir/"), "dir");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("...hidden"), "hidden");
        assert_eq!(safe_name("evil\u{202E}txt.exe"), "eviltxt.exe");
        assert_eq!(safe_name("a\u{1b}[31mred"), "a[31mred");
        assert_eq!(safe_name("c:stream"), "cstream");
        assert_eq!(safe_name("  spaced  "), "spaced");
        let long = "é".repeat(300);
        let s = safe_name(&long);
        assert!(s.len() <= MAX_NAME_BYTES && s.chars().all(|c| c == 'é'));
        for hostile in [
            "../../x",
            "/etc/passwd",
            "a\nb",
            &"y".repeat(300),
            "/",
            "\0",
        ] {
            let s = safe_name(hostile);
            assert!(!s.contains('/') && !s.contains('\\') && !s.starts_with('.'));
            assert!(!s.is_empty() && s.len() <= MAX_NAME_BYTES);
        }
    }

    #[test]
    fn variants_keep_the_extension() {
        assert_eq!(variant("a.pdf", 0), "a.pdf");
        assert_eq!(variant("a.pdf", 1), "a (1).pdf");
        assert_eq!(variant("archive", 2), "archive (2)");
        assert_eq!(variant("x.tar.gz", 1), "x.tar (1).gz");
    }
}
