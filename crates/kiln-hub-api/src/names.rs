//! What the hub accepts as names, file names, labels and free text
//! (docs/hub.md, "Names"). One rule for every kind of object, shared by the
//! hub, which refuses a bad name when an object is created or renamed, and
//! by the client, which refuses to put a bad name in a URL path (where `.`
//! and `..` would be normalised away, and tabs and newlines dropped).
//!
//! Every check answers the message the hub sends back with its 400, so a
//! name refused by the client reads the same as one refused by the hub.

/// The longest name, in characters (all ASCII).
pub const MAX_NAME: usize = 200;

/// The longest file name, in bytes (UTF-8).
pub const MAX_FILE_NAME: usize = 255;

/// The longest label (a token's name), in characters.
pub const MAX_LABEL: usize = 200;

/// The longest one-line text of a request (a package filter, a git URL, a
/// profile's image path), in characters.
pub const MAX_TEXT: usize = 4096;

/// The largest value (a tag's extra value as JSON, a macro's value), in
/// bytes.
pub const MAX_VALUE: usize = 65_536;

/// The longest list of arches, in characters.
pub const MAX_ARCHES: usize = 1000;

const NAME_RULE: &str = "a name is 1 to 200 ASCII letters, digits and - _ . + ~, starting with a letter or digit \
                         (docs/hub.md, \"Names\")";

const FILE_RULE: &str = "a file name is 1 to 255 bytes, does not start with `.`, and has no `/`, `\\`, `\"` or \
                         control characters (docs/hub.md, \"Names\")";

/// A name as a message shows it: escaped, and cut after 40 characters.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// A character as a message shows it.
fn shown_char(c: char) -> String {
    c.escape_debug().collect()
}

/// Whether `c` may be part of a name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~')
}

/// Checks a name; `kind` says what it names in the message (`tag name`,
/// `permission`, `arch`, `extra key`, …):
/// 1 to [`MAX_NAME`] ASCII letters, digits and `- _ . + ~`, starting with a
/// letter or digit (so never `.`, `..` or a hidden or option-like name).
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err(format!("bad {kind}: it is empty; {NAME_RULE}"));
    };
    let n = name.chars().count();
    if n > MAX_NAME {
        return Err(format!(
            "bad {kind} `{}`: {n} characters, more than {MAX_NAME}; {NAME_RULE}",
            shown(name)
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "bad {kind} `{}`: `{}` is not allowed; {NAME_RULE}",
            shown(name),
            shown_char(c)
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "bad {kind} `{}`: it starts with `{first}`; {NAME_RULE}",
            shown(name)
        ));
    }
    Ok(())
}

/// Checks a file name (a build's artifact, a task's file): 1 to
/// [`MAX_FILE_NAME`] bytes, not starting with `.`, without `/`, `\`, `"`
/// (they would end up in a `Content-Disposition` header) or control
/// characters (C0, DEL, C1).
pub fn check_file_name(file: &str) -> Result<(), String> {
    let why = if file.is_empty() {
        "it is empty".to_string()
    } else if file.len() > MAX_FILE_NAME {
        format!("{} bytes, more than {MAX_FILE_NAME}", file.len())
    } else if file.starts_with('.') {
        "it starts with `.`".to_string()
    } else if let Some(c) = file.chars().find(|c| matches!(c, '/' | '\\' | '"') || c.is_control()) {
        format!("`{}` is not allowed", shown_char(c))
    } else {
        return Ok(());
    };
    Err(format!("bad file name `{}`: {why}; {FILE_RULE}", shown(file)))
}

/// Checks a label (a token's name): 1 to [`MAX_LABEL`] characters, no
/// control characters. Labels are shown, never looked up by name.
pub fn check_label(kind: &str, label: &str) -> Result<(), String> {
    let n = label.chars().count();
    let why = if n == 0 {
        "it is empty".to_string()
    } else if n > MAX_LABEL {
        format!("{n} characters, more than {MAX_LABEL}")
    } else if let Some(c) = label.chars().find(|c| c.is_control()) {
        format!("`{}` is not allowed", shown_char(c))
    } else {
        return Ok(());
    };
    Err(format!(
        "bad {kind} `{}`: {why}; a label is 1 to {MAX_LABEL} characters without control characters",
        shown(label)
    ))
}

/// Checks one line of free text (`field` of a request): at most `max`
/// characters, no control characters.
pub fn check_line(field: &str, text: &str, max: usize) -> Result<(), String> {
    let n = text.chars().count();
    if n > max {
        return Err(format!("{field} is {n} characters long, more than {max}"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{field} `{}` has `{}`: control characters are not allowed",
            shown(text),
            shown_char(c)
        ));
    }
    Ok(())
}

/// Checks a value that may span lines (`field` of a request): at most
/// [`MAX_VALUE`] bytes, no NUL.
pub fn check_value(field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE {
        return Err(format!("{field} is {} bytes long, more than {MAX_VALUE}", value.len()));
    }
    if value.contains('\0') {
        return Err(format!("{field} has a NUL character, which is not allowed"));
    }
    Ok(())
}

/// A full git commit id: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
pub fn is_commit(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a tag's arches: arch names (the name rule) separated by spaces,
/// at most [`MAX_ARCHES`] characters in all.
pub fn check_arches(arches: &str) -> Result<(), String> {
    let n = arches.chars().count();
    if n > MAX_ARCHES {
        return Err(format!("arches are {n} characters long, more than {MAX_ARCHES}"));
    }
    let mut words = arches.split(' ').filter(|w| !w.is_empty()).peekable();
    if words.peek().is_none() {
        return Err(format!(
            "bad arches `{}`: name at least one arch (null clears them); arches are arch names separated by spaces",
            shown(arches)
        ));
    }
    for w in words {
        check_name("arch", w).map_err(|e| format!("{e}; arches are arch names separated by spaces"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_letters_digits_and_a_few_marks_starting_with_a_letter_or_digit() {
        for ok in [
            "a",
            "0",
            "dist-1",
            "dist-1-build",
            "x86_64",
            "rpm.macro.dist",
            "c++",
            "1.0~rc1",
            "ve-src-1.0-1.kiln1",
            "A.b_c-d+e~f",
            &"x".repeat(MAX_NAME),
        ] {
            assert_eq!(check_name("tag name", ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(MAX_NAME + 1);
        for (bad, why) in [
            ("", "it is empty"),
            (".", "starts with `.`"),
            ("..", "starts with `.`"),
            (".hidden", "starts with `.`"),
            ("-rf", "starts with `-`"),
            ("_x", "starts with `_`"),
            ("~x", "starts with `~`"),
            ("+x", "starts with `+`"),
            ("a/b", "`/` is not allowed"),
            ("a\\b", "`\\\\` is not allowed"),
            ("a b", "` ` is not allowed"),
            ("a\nb", "`\\n` is not allowed"),
            ("a\0b", "`\\0` is not allowed"),
            ("a%2e", "`%` is not allowed"),
            ("é", "`é` is not allowed"),
            ("a,b", "`,` is not allowed"),
            (long.as_str(), "201 characters, more than 200"),
        ] {
            let e = check_name("package name", bad).expect_err(bad);
            assert!(e.starts_with("bad package name"), "{e}");
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("docs/hub.md"), "{e}");
        }
    }

    #[test]
    fn messages_escape_and_shorten_what_they_show() {
        let e = check_name("tag name", "a\nb\0c").expect_err("control");
        assert!(e.contains("`a\\nb\\0c`"), "{e}");
        assert!(!e.contains('\n') && !e.contains('\0'), "{e:?}");
        let e = check_name("tag name", &"y".repeat(10_000)).expect_err("long");
        assert!(e.contains(&format!("`{}…`", "y".repeat(40))), "{e}");
        assert!(e.len() < 400, "{e}");
    }

    #[test]
    fn file_names_are_bytes_without_separators_quotes_or_controls() {
        for ok in [
            "fw.squashfs",
            "a b%20c?d#e+f~g&h=i;j,k'l(m)n[o]p{q}r<s>t|u^v`w@x!y$z*.raw",
            "üñí €.img",
            "x..y",
            "a.",
            &"é".repeat(127),
            &"x".repeat(MAX_FILE_NAME),
        ] {
            assert_eq!(check_file_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".SHA256SUMS",
            "a/b",
            "a\\b",
            "a\"b",
            "a\nb",
            "a\rb",
            "a\tb",
            "a\0b",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{9f}b",
            &"é".repeat(128),
            &"x".repeat(MAX_FILE_NAME + 1),
        ] {
            let e = check_file_name(bad).expect_err(bad);
            assert!(e.starts_with("bad file name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn labels_lines_values_and_arches() {
        assert_eq!(check_label("token name", "kiln login"), Ok(()));
        assert_eq!(check_label("token name", ".."), Ok(()));
        for bad in ["", "a\nb", "a\0b", &"l".repeat(MAX_LABEL + 1)] {
            assert!(check_label("token name", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_line("repo", "git+https://example.org/r.git@main", MAX_TEXT),
            Ok(())
        );
        assert!(check_line("repo", "git+x@a\nb", MAX_TEXT).is_err());
        assert!(check_line("repo", &"r".repeat(MAX_TEXT + 1), MAX_TEXT).is_err());
        assert_eq!(check_value("value", "two\nlines\twith tabs"), Ok(()));
        assert!(check_value("value", "a\0b").is_err());
        assert!(check_value("value", &"v".repeat(MAX_VALUE + 1)).is_err());
        for ok in ["x86_64", "x86_64 aarch64", " riscv64  noarch "] {
            assert_eq!(check_arches(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "  ",
            ".",
            "x86_64,aarch64",
            "x86_64\taarch64",
            "a/b",
            &"a".repeat(MAX_NAME + 1),
        ] {
            assert!(check_arches(bad).is_err(), "{bad:?}");
        }
        assert!(check_arches(&"a ".repeat(MAX_ARCHES)).is_err());
    }
}
