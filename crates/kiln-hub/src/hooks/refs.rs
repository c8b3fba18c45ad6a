//! Ref names and commit ids from outside, and the patterns that say which
//! pushed refs start a run.

use serde::{Deserialize, Serialize};

use crate::logsafe::esc;

/// The longest ref name, in bytes (UTF-8), `refs/heads/` or `refs/tags/`
/// included.
pub const MAX_REF_BYTES: usize = 255;

/// The longest ref pattern, in characters.
pub const MAX_PATTERN: usize = 200;

/// The most patterns in each of a [`RefFilter`]'s lists.
pub const MAX_PATTERNS: usize = 100;

/// Checks a ref name from outside: `refs/heads/X` (a branch) or
/// `refs/tags/X` (a tag), at most [`MAX_REF_BYTES`] bytes, with X a valid
/// git ref name by `git check-ref-format`'s rules: no `..`, no control
/// characters, no space or any of `~ ^ : ? * [ \`, no `//`, not ending in
/// `/` or `.`, no component starting with `.` or ending in `.lock`, no
/// `@{`. Stricter than git, X does not start with `-` (it would read as an
/// option on a command line) and has no invisible characters (bidirectional
/// controls, zero-width characters), so a ref reads in a log as it is.
pub fn check_ref(git_ref: &str) -> Result<(), String> {
    match ref_problem(git_ref) {
        None => Ok(()),
        Some(why) => Err(format!("bad ref `{}`: {why}", shown(git_ref))),
    }
}

fn ref_problem(git_ref: &str) -> Option<String> {
    if git_ref.is_empty() {
        return Some("it is empty".into());
    }
    if git_ref.len() > MAX_REF_BYTES {
        return Some(format!("{} bytes, more than {MAX_REF_BYTES}", git_ref.len()));
    }
    let Some((prefix, name)) = split_ref(git_ref) else {
        return Some("it is neither refs/heads/NAME (a branch) nor refs/tags/NAME (a tag)".into());
    };
    if name.is_empty() {
        return Some(format!("the name after {prefix} is empty"));
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() || invisible(c)) {
        return Some(format!("`{}` is not allowed", c.escape_debug()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Some(format!("`{c}` is not allowed in a git ref"));
    }
    let why = if name.starts_with('-') {
        "it starts with `-`"
    } else if name.contains("..") {
        "`..` is not allowed in a git ref"
    } else if name.contains("@{") {
        "`@{` is not allowed in a git ref"
    } else if name.contains("//") || name.starts_with('/') {
        "`//` is not allowed in a git ref"
    } else if name.ends_with('/') {
        "it ends with `/`"
    } else if name.ends_with('.') {
        "it ends with `.`"
    } else if name.split('/').any(|c| c.starts_with('.')) {
        "a component of it starts with `.`"
    } else if name.split('/').any(|c| c.ends_with(".lock")) {
        "a component of it ends with `.lock`"
    } else {
        return None;
    };
    Some(why.into())
}

/// `refs/heads/` or `refs/tags/`, and the name after it.
fn split_ref(git_ref: &str) -> Option<(&'static str, &str)> {
    ["refs/heads/", "refs/tags/"]
        .into_iter()
        .find_map(|prefix| Some((prefix, git_ref.strip_prefix(prefix)?)))
}

/// Characters that print as nothing or reorder what follows: the soft
/// hyphen, bidirectional controls, zero-width characters, the byte order
/// mark and interlinear annotation marks.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Checks a commit id from outside: 40 (SHA-1) or 64 (SHA-256) hex digits,
/// not all zero. Answers it in lower case.
pub fn check_commit(id: &str) -> Result<String, String> {
    let rule = "a commit id is 40 (SHA-1) or 64 (SHA-256) hex digits";
    if let Some(c) = id.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "bad commit id `{}`: `{}` is not a hex digit; {rule}",
            shown(id),
            c.escape_debug()
        ));
    }
    if !matches!(id.len(), 40 | 64) {
        return Err(format!("bad commit id `{}`: {} digits; {rule}", shown(id), id.len()));
    }
    if id.bytes().all(|b| b == b'0') {
        return Err("bad commit id: the all-zero id names no commit".into());
    }
    Ok(id.to_ascii_lowercase())
}

/// Which pushed refs start a run. Patterns are globs over the short name
/// (`main`, not `refs/heads/main`): `*` matches any run of characters
/// except `/`, `**` any run including `/` (and `**/` also nothing, so
/// `**/fix` matches `fix` too), `?` one character other than `/`; every
/// other character is itself. For example branches `["main", "release/*"]`,
/// tags `["v*"]`. An empty list admits nothing of its kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefFilter {
    pub branches: Vec<String>,
    pub tags: Vec<String>,
}

impl RefFilter {
    /// Checks the patterns themselves: at most [`MAX_PATTERNS`] in a list,
    /// each 1 to [`MAX_PATTERN`] characters, none a full ref name, and none
    /// that no ref could match (control or invisible characters, a space or
    /// any of `~ ^ : [ \`, `..`, `//`, a leading or trailing `/`), and no
    /// run of three `*`.
    pub fn check(&self) -> Result<(), String> {
        for (kind, patterns) in [("branch", &self.branches), ("tag", &self.tags)] {
            if patterns.len() > MAX_PATTERNS {
                return Err(format!("{} {kind} patterns, more than {MAX_PATTERNS}", patterns.len()));
            }
            for p in patterns {
                if let Some(why) = pattern_problem(p) {
                    return Err(format!(
                        "bad {kind} pattern `{}`: {why}; a pattern is a glob over the {kind}'s short name, \
                         like `main`, `release/*` or `v*`",
                        shown(p)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the full ref name `git_ref` passes; the reason when not.
    pub fn admit(&self, git_ref: &str) -> Result<(), String> {
        let (kind, patterns, name) = if let Some(name) = git_ref.strip_prefix("refs/heads/") {
            ("branch", &self.branches, name)
        } else if let Some(name) = git_ref.strip_prefix("refs/tags/") {
            ("tag", &self.tags, name)
        } else {
            return Err(format!("{} is neither a branch nor a tag", shown(git_ref)));
        };
        if patterns.iter().any(|p| glob_match(p, name)) {
            return Ok(());
        }
        if patterns.is_empty() {
            return Err(format!(
                "{} is a {kind}, and the pipeline runs for no {kind}",
                shown(git_ref)
            ));
        }
        let mut listed: Vec<String> = patterns.iter().take(10).map(|p| shown(p)).collect();
        if patterns.len() > 10 {
            listed.push(format!("… {} more", patterns.len() - 10));
        }
        Err(format!(
            "{} matches no {kind} pattern ({})",
            shown(git_ref),
            listed.join(", ")
        ))
    }
}

fn pattern_problem(p: &str) -> Option<String> {
    let n = p.chars().count();
    if n == 0 {
        return Some("it is empty".into());
    }
    if n > MAX_PATTERN {
        return Some(format!("{n} characters, more than {MAX_PATTERN}"));
    }
    if let Some(c) = p.chars().find(|&c| c.is_control() || invisible(c)) {
        return Some(format!("`{}` is not allowed", c.escape_debug()));
    }
    if let Some(c) = p.chars().find(|c| matches!(c, ' ' | '~' | '^' | ':' | '[' | '\\')) {
        return Some(format!("`{c}` is in no git ref"));
    }
    let why = if p.starts_with("refs/") {
        "it is a full ref name: patterns match the short name (`main`, not `refs/heads/main`)"
    } else if p.contains("***") {
        "`***` is not a wildcard: use `*` or `**`"
    } else if p.contains("..") {
        "`..` is in no git ref"
    } else if p.contains("//") {
        "`//` is in no git ref"
    } else if p.starts_with('/') || p.ends_with('/') {
        "a short name neither starts nor ends with `/`"
    } else {
        return None;
    };
    Some(why.into())
}

/// A pattern's parts.
#[derive(Clone, Copy)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` not followed by `/`
    Deep,
    /// `**/`: nothing, or anything ending in `/`
    DeepDir,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let cs: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(cs.len());
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '*' if cs.get(i + 1) == Some(&'*') => {
                let mut j = i + 2;
                while cs.get(j) == Some(&'*') {
                    j += 1;
                }
                if cs.get(j) == Some(&'/') {
                    out.push(Token::DeepDir);
                    j += 1;
                } else {
                    out.push(Token::Deep);
                }
                i = j;
            }
            '*' => {
                out.push(Token::Star);
                i += 1;
            }
            '?' => {
                out.push(Token::One);
                i += 1;
            }
            c => {
                out.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    out
}

/// Whether `name` matches `pattern` (see [`RefFilter`]). Dynamic
/// programming over (pattern part, name position): linear in each, so no
/// pattern can make it slow.
fn glob_match(pattern: &str, name: &str) -> bool {
    let s: Vec<char> = name.chars().collect();
    let n = s.len();
    // rest[j]: whether the pattern's parts after the current one match s[j..].
    let mut rest = vec![false; n + 1];
    rest[n] = true;
    for token in tokens(pattern).into_iter().rev() {
        let mut cur = vec![false; n + 1];
        // Whether some s[k] == '/' with k >= j has rest[k + 1] (for `**/`).
        let mut dir_ahead = false;
        for j in (0..=n).rev() {
            let here = s.get(j).copied();
            cur[j] = match token {
                Token::Literal(c) => here == Some(c) && rest[j + 1],
                Token::One => here.is_some_and(|c| c != '/') && rest[j + 1],
                Token::Star => rest[j] || (here.is_some_and(|c| c != '/') && cur[j + 1]),
                Token::Deep => rest[j] || (here.is_some() && cur[j + 1]),
                Token::DeepDir => {
                    dir_ahead = dir_ahead || (here == Some('/') && rest[j + 1]);
                    rest[j] || dir_ahead
                }
            };
        }
        rest = cur;
    }
    rest[0]
}

/// Text from outside as a message shows it: escaped (`logsafe`), cut after
/// 40 characters.
pub(super) fn shown(s: &str) -> String {
    cut(s, 40)
}

/// `s` escaped, cut after `max` characters.
pub(super) fn cut(s: &str, max: usize) -> String {
    let head: String = s.chars().take(max).collect();
    let mut out = esc(&head).to_string();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
