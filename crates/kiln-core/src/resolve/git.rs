//! `git+URL@REF:PATH` references: remote image scripts and whole
//! repositories at a ref.

use crate::plan;

/// Splits `git+URL@TAIL` into the URL and what follows its `@`.
fn split_git_url(s: &str) -> Result<(&str, &str), String> {
    let rest = s.strip_prefix("git+").ok_or("a git reference starts with `git+`")?;
    let scheme_ok = ["https://", "http://", "ssh://", "file://"]
        .iter()
        .any(|p| rest.starts_with(p));
    if !scheme_ok {
        return Err("the URL must start with https://, http://, ssh:// or file://".into());
    }
    // The URL's authority may hold `user@`; the `@` before the ref is the
    // first one in the URL's path (a script path may contain `@` too).
    let scheme_end = rest.find("://").map_or(0, |i| i + 3);
    let path_start = rest[scheme_end..].find('/').map_or(rest.len(), |i| scheme_end + i);
    let at = rest[path_start..]
        .find('@')
        .map(|i| path_start + i)
        .ok_or("missing `@REF` after the URL")?;
    let (url, tail) = (&rest[..at], &rest[at + 1..]);
    if url.len() <= "file://".len() {
        return Err("empty repository URL".into());
    }
    Ok((url, tail))
}

fn check_rev(rev: &str) -> Result<(), String> {
    if rev.is_empty() || rev.chars().any(char::is_whitespace) || rev.starts_with('-') {
        return Err("the ref must be a branch, tag or commit without spaces".into());
    }
    Ok(())
}

/// Parses `git+URL@REF:PATH`.
pub fn parse_git_ref(s: &str) -> Result<plan::GitRef, String> {
    let (url, tail) = split_git_url(s)?;
    let (rev, path) = tail.split_once(':').ok_or("missing `:PATH` after the ref")?;
    check_rev(rev)?;
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err("the path must be relative to the repository, without `..`".into());
    }
    Ok(plan::GitRef {
        url: url.to_string(),
        rev: rev.to_string(),
        path: path.to_string(),
    })
}

/// Parses a whole repository at a ref, `git+URL@REF`: (URL, REF).
pub fn parse_git_repo(s: &str) -> Result<(String, String), String> {
    let (url, rev) = split_git_url(s)?;
    check_rev(rev)?;
    Ok((url.to_string(), rev.to_string()))
}
