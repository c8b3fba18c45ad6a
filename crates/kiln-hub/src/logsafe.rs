//! Values from outside the program, made safe for a log line. A name, a
//! path, a message from a client or an error text quoting one may hold a
//! newline (a forged log line of the client's making), a terminal escape,
//! or invisible characters that make a line read other than it is:
//! [`esc`] writes every such character as a Rust escape (`\n`, `\u{1b}`,
//! `\u{202e}`), and a backslash as `\\`, so what the log shows is
//! unambiguous and stays on one line. Other characters, non-ASCII letters
//! included, pass as they are.

use std::fmt::{self, Display, Write};

/// `v`'s `Display`, escaped for a log line.
pub fn esc<T: Display>(v: T) -> Escaped<T> {
    Escaped(v)
}

/// A value written escaped (see [`esc`]).
pub struct Escaped<T>(T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaper(f), "{}", self.0)
    }
}

/// Whether `c` is written escaped: a backslash, or a character that Rust's
/// debug formatting would escape other than a quote (control and format
/// characters, line and paragraph separators, combining marks, characters
/// not yet assigned).
fn escaped(c: char) -> bool {
    c == '\\' || (c != '"' && c != '\'' && c.escape_debug().len() > 1)
}

struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if escaped(c) {
                write!(self.0, "{}", c.escape_debug())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        let e = |s: &str| esc(s).to_string();
        assert_eq!(e("x\nFORGED line"), "x\\nFORGED line");
        assert_eq!(e("a\r\n\tb"), "a\\r\\n\\tb");
        assert_eq!(e("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(e("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(e("one\u{2028}two"), "one\\u{2028}two");
        assert_eq!(e("nul\0"), "nul\\0");
        assert_eq!(e("back\\nslash"), "back\\\\nslash");
        // Ordinary text, quotes and non-ASCII letters stay as they are.
        assert_eq!(e("Zoë's \"tag\" дом 家"), "Zoë's \"tag\" дом 家");
        // Any Display: an error text quoting input.
        let err = crate::HubError::bad_request("unknown tag `a\nb`");
        assert_eq!(esc(&err).to_string(), "unknown tag `a\\nb` (bad_request)");
        assert!(!esc("\n".repeat(3)).to_string().contains('\n'));
    }
}
