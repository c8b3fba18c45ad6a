//! The database's rules that need no database: the checks of what a
//! request may hold (names, file names, text, values and numbers, by the
//! rules of `kiln_hub_api::names`, docs/hub.md "Names"), the permission rule
//! for changing a tag's content, and the small SQL and JSON pieces every
//! area shares. Compiled once for both databases.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use kiln_hub_api::names::{self, MAX_NAME, MAX_TEXT, MAX_VALUE};

use crate::error::{HubError, Result};
use crate::model::{NewBuild, NewTag, Principal, TagEdit, TaskRequest};

/// What an inheritance link's priority and maxdepth, and a task's
/// priority, may be.
pub(super) const PRIORITIES: RangeInclusive<i64> = 0..=1_000_000;

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

/// A refusal of `kiln_hub_api::names` as a 400.
fn refused(r: std::result::Result<(), String>) -> Result<()> {
    r.map_err(HubError::bad_request)
}

/// Checks a name (docs/hub.md, "Names"); `kind` says what it names.
pub(super) fn check_name(kind: &str, name: &str) -> Result<()> {
    refused(names::check_name(kind, name))
}

/// Checks a label (a token's name).
pub(super) fn check_label(kind: &str, label: &str) -> Result<()> {
    refused(names::check_label(kind, label))
}

/// Checks one line of free text, at most `max` characters.
pub(super) fn check_line(field: &str, text: &str, max: usize) -> Result<()> {
    refused(names::check_line(field, text, max))
}

/// Checks a value that may span lines (a macro's).
pub(super) fn check_value(field: &str, value: &str) -> Result<()> {
    refused(names::check_value(field, value))
}

/// Checks that `field`'s value `v` is within `range`.
pub(super) fn check_range(field: &str, v: i64, range: RangeInclusive<i64>) -> Result<()> {
    if range.contains(&v) {
        return Ok(());
    }
    Err(HubError::bad_request(format!(
        "{field} must be between {} and {}, not {v}",
        range.start(),
        range.end()
    )))
}

/// `e`, its message prefixed with the request's field that led to it.
pub(super) fn about(field: &str, e: HubError) -> HubError {
    HubError {
        message: format!("{field}: {}", e.message),
        ..e
    }
}

/// Checks a tag's extra entry: its key is a name, its value (as JSON) at
/// most [`MAX_VALUE`] bytes.
fn check_extra(key: &str, value: Option<&serde_json::Value>) -> Result<()> {
    check_name("extra key", key)?;
    if let Some(v) = value {
        let n = json_text(v).len();
        if n > MAX_VALUE {
            return Err(HubError::bad_request(format!(
                "extra value `{key}` is {n} bytes long as JSON, more than {MAX_VALUE}"
            )));
        }
    }
    Ok(())
}

/// Checks a tag's configuration: its arches and its permission.
fn check_tag_config(arches: Option<&str>, perm: Option<&str>) -> Result<()> {
    if let Some(a) = arches {
        refused(names::check_arches(a))?;
    }
    if let Some(p) = perm {
        check_name("permission", p)?;
    }
    Ok(())
}

/// Checks what a new tag names: itself, its configuration and its extra.
pub(super) fn check_new_tag(t: &NewTag) -> Result<()> {
    check_name("tag name", &t.name)?;
    check_tag_config(t.arches.as_deref(), t.perm.as_deref())?;
    t.extra.iter().try_for_each(|(k, v)| check_extra(k, Some(v)))
}

/// Checks what an edit of a tag sets (what it removes is looked up).
pub(super) fn check_tag_edit(e: &TagEdit) -> Result<()> {
    if let Some(n) = &e.rename {
        check_name("tag name", n)?;
    }
    check_tag_config(
        e.arches.as_ref().and_then(Option::as_deref),
        e.perm.as_ref().and_then(Option::as_deref),
    )?;
    e.extra.iter().try_for_each(|(k, v)| check_extra(k, Some(v)))?;
    e.block_extra.iter().try_for_each(|k| check_extra(k, None))
}

/// Checks a macro definition given to a build: a macro's name (letters,
/// digits and `_`) of at most [`MAX_NAME`] characters, and its value.
pub(super) fn check_macro(field: &str, name: &str, value: &str) -> Result<()> {
    if !kiln_core::macros::is_macro_name(name) || name.len() > MAX_NAME {
        return Err(HubError::bad_request(format!(
            "bad macro name `{}`: 1 to {MAX_NAME} letters, digits and _",
            name.escape_debug()
        )));
    }
    check_value(&format!("{field} `{name}`"), value)
}

/// Checks the fields of a build or update request that are text: what a
/// builder is given to run has no control characters, and names follow
/// the name rule. References (the target, the source image) are looked up
/// by the caller.
pub(super) fn check_task_request(r: &TaskRequest) -> Result<()> {
    let defines = match r {
        TaskRequest::Noop => return Ok(()),
        TaskRequest::TagBuild(t) => {
            check_line("tag", &t.tag, MAX_TEXT)?;
            return check_line("build", &t.build, MAX_TEXT);
        }
        TaskRequest::Build(b) => {
            check_line("target", &b.target, MAX_TEXT)?;
            check_line("image", &b.image, MAX_TEXT)?;
            check_line("repo", &b.repo, MAX_TEXT)?;
            if let Some(n) = &b.nvr {
                check_nvr_pattern("nvr", n)?;
            }
            &b.defines
        }
        TaskRequest::Update(u) => {
            check_line("target", &u.target, MAX_TEXT)?;
            check_line("from", &u.from, MAX_TEXT)?;
            check_line("script", &u.script, MAX_TEXT)?;
            check_nvr_pattern("update name", &u.name)?;
            if let Some(f) = &u.format {
                check_name("format", f)?;
            }
            &u.defines
        }
    };
    defines.iter().try_for_each(|(k, v)| check_macro("define", k, v))
}

/// Checks a target name a builder is given: a name once the builder has
/// put in the commit it resolved (`%{commit}`, `%{commit_short}`).
fn check_nvr_pattern(field: &str, name: &str) -> Result<()> {
    check_name(field, &kiln_core::pipeline::fill_commit(name, &"0".repeat(40)))
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
    for (what, v) in [
        ("build name", &b.name),
        ("version", &b.version),
        ("release", &b.release),
    ] {
        check_name(what, v)?;
    }
    for (what, v) in [("version", &b.version), ("release", &b.release)] {
        if v.contains('-') {
            return Err(HubError::bad_request(format!(
                "bad {what} `{v}`: it may not contain `-`"
            )));
        }
    }
    let mut seen = HashSet::new();
    for a in &b.artifacts {
        check_file_name(&a.file)?;
        check_name("artifact format", &a.format)?;
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

/// Checks a file name (docs/hub.md, "Names").
pub(super) fn check_file_name(f: &str) -> Result<()> {
    refused(names::check_file_name(f))
}

pub(super) fn check_sha256(file: &str, sha256: &str, size: i64) -> Result<()> {
    if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(HubError::bad_request(format!(
            "bad sha256 for `{file}`: 64 hexadecimal digits"
        )));
    }
    if size < 0 {
        return Err(HubError::bad_request(format!(
            "bad size for `{file}`: {size} is negative"
        )));
    }
    Ok(())
}
