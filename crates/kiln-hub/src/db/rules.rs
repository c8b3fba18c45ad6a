//! The database's rules that need no database: name, file and checksum
//! checks, the permission rule for changing a tag's content, and the small
//! SQL and JSON pieces every area shares. Compiled once for both databases.

use std::collections::HashSet;

use crate::error::{HubError, Result};
use crate::model::{NewBuild, Principal};

/// The row filter for versioned tables: current rows, or rows active at
/// `event` (bound as parameter `$n`).
pub(super) fn active(event: Option<i64>, n: usize, alias: &str) -> String {
    let p = if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    };
    match event {
        None => format!("{p}revoke_event IS NULL"),
        Some(_) => format!("{p}create_event <= ${n} AND ({p}revoke_event IS NULL OR {p}revoke_event > ${n})"),
    }
}

pub(super) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~'));
    if ok {
        Ok(())
    } else {
        Err(HubError::bad_request(format!(
            "bad {what} name `{name}`: use letters, digits and - _ . + ~ (at most 200)"
        )))
    }
}

/// A literal list of ids for `IN (…)` (numbers only, never user text).
pub(super) fn id_list(ids: &[i64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// A unique-constraint failure as a conflict that names what exists.
pub(super) fn exists(e: sqlx::Error, what: impl FnOnce() -> String) -> HubError {
    match HubError::from(e) {
        e if e.code == "conflict" => HubError::conflict(what()),
        e => e,
    }
}

pub(super) fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

pub(super) fn parse_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// A tag's content may change: not locked (unless an admin forces), and the
/// tag's own permission held.
pub(super) fn may_change(who: &Principal, tag: &str, perm: Option<&str>, locked: bool, force: bool) -> Result<()> {
    if let Some(p) = perm
        && !who.has(p)
    {
        return Err(HubError::forbidden(format!("tag {tag} requires the `{p}` permission")));
    }
    if locked && !(force && who.admin) {
        return Err(HubError::locked(format!(
            "tag {tag} is locked{}",
            if who.admin {
                " (use force to change it anyway)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// Checks a new build's names and files; returns its NVR.
pub(super) fn check_new_build(b: &NewBuild) -> Result<String> {
    for (what, v) in [("build", &b.name), ("version", &b.version), ("release", &b.release)] {
        check_name(what, v)?;
    }
    if b.name.is_empty() || b.version.contains('-') || b.release.contains('-') {
        return Err(HubError::bad_request("version and release may not contain `-`"));
    }
    let mut seen = HashSet::new();
    for a in &b.artifacts {
        check_file_name(&a.file)?;
        if !seen.insert(&a.file) {
            return Err(HubError::bad_request(format!(
                "repeated artifact file name `{}`",
                a.file
            )));
        }
        check_sha256(&a.file, &a.sha256, a.size)?;
    }
    Ok(format!("{}-{}-{}", b.name, b.version, b.release))
}

pub(super) fn check_file_name(f: &str) -> Result<()> {
    if f.contains('/') || f.starts_with('.') || f.is_empty() || f.len() > 255 {
        return Err(HubError::bad_request(format!("bad file name `{f}`")));
    }
    Ok(())
}

pub(super) fn check_sha256(file: &str, sha256: &str, size: i64) -> Result<()> {
    if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) || size < 0 {
        return Err(HubError::bad_request(format!("bad sha256 or size for `{file}`")));
    }
    Ok(())
}
