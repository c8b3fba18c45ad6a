//! Reads a profile repository directory into a [`Snapshot`]: every path with
//! its kind and mode, and the text of definitions and package lists.
//!
//! This is the only place where profile parsing touches the filesystem; the
//! core works on the snapshot.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use kiln_core::snapshot::{Entry, EntryKind, Snapshot, wants_text};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("profile repository `{0}` does not exist")]
    Missing(PathBuf),
    #[error("`{0}` is not a profile repository: it has neither kiln.toml nor an images/ folder")]
    NotARepo(PathBuf),
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{0}` is not valid UTF-8; definitions and package lists must be UTF-8 text")]
    NotUtf8(PathBuf),
}

/// Folders that are never part of a profile.
fn skipped(name: &str) -> bool {
    name == ".git" || name == ".hg" || name == "target"
}

/// Loads the repository at `root`.
pub fn load(root: &Path) -> Result<Snapshot, LoadError> {
    if !root.is_dir() {
        return Err(LoadError::Missing(root.to_path_buf()));
    }
    if !root.join("kiln.toml").is_file() && !root.join("images").is_dir() {
        return Err(LoadError::NotARepo(root.to_path_buf()));
    }
    let mut found = Vec::new();
    walk(root, root, &mut found)?;
    // Reading the texts dominates loading; spread it over the cores.
    let texts = read_texts(&found)?;
    let mut snapshot = Snapshot::new();
    for (f, text) in found.into_iter().zip(texts) {
        snapshot.insert(
            &f.rel,
            Entry {
                kind: f.kind,
                mode: f.mode,
                text,
            },
        );
    }
    Ok(snapshot)
}

/// One path found by the walk.
struct Found {
    rel: String,
    path: PathBuf,
    kind: EntryKind,
    mode: u32,
}

fn read_text(f: &Found) -> Result<Option<Arc<str>>, LoadError> {
    if f.kind != EntryKind::File || !wants_text(&f.rel) {
        return Ok(None);
    }
    let bytes = fs::read(&f.path).map_err(io_err(&f.path))?;
    let s = String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8(f.path.clone()))?;
    Ok(Some(s.into()))
}

fn read_texts(found: &[Found]) -> Result<Vec<Option<Arc<str>>>, LoadError> {
    kiln_core::parallel::map_in_order(found, 256, read_text)
        .into_iter()
        .collect()
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<Found>) -> Result<(), LoadError> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for de in entries {
        let path = de.path();
        let name = de.file_name();
        let Some(name) = name.to_str() else {
            // Names that are not UTF-8 cannot be referenced from a profile.
            continue;
        };
        if dir == root && skipped(name) {
            continue;
        }
        let rel = path.strip_prefix(root).map_err(|_| LoadError::Io {
            path: path.clone(),
            source: io::Error::other("path outside the repository"),
        })?;
        let Some(rel) = rel.to_str() else { continue };
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            EntryKind::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            continue;
        };
        let is_dir = kind == EntryKind::Dir;
        found.push(Found {
            rel: rel.to_string(),
            path: path.clone(),
            kind,
            mode,
        });
        if is_dir {
            walk(root, &path, found)?;
        }
        // Sockets, FIFOs and devices are not part of a profile.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn loads_files_modes_symlinks_and_text() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::write(root.join("kiln.toml"), "[macros]\nx = \"1\"\n")?;
        fs::create_dir_all(root.join("features/ssh/image-scripts.d"))?;
        fs::create_dir_all(root.join("features/ssh/files/etc"))?;
        fs::create_dir_all(root.join(".git"))?;
        fs::write(root.join(".git/HEAD"), "ref")?;
        fs::write(root.join("features/ssh/feature.toml"), "")?;
        let script = root.join("features/ssh/image-scripts.d/10-x");
        fs::write(&script, "#!/bin/sh\n")?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        symlink("/usr/share/zoneinfo/UTC", root.join("features/ssh/files/etc/localtime"))?;

        let s = load(root)?;
        assert_eq!(s.text("kiln.toml"), Some("[macros]\nx = \"1\"\n"));
        assert_eq!(s.get("features/ssh/image-scripts.d/10-x").map(|e| e.mode), Some(0o755));
        assert!(
            s.get("features/ssh/image-scripts.d/10-x")
                .is_some_and(|e| e.text.is_none())
        );
        assert_eq!(
            s.get("features/ssh/files/etc/localtime").map(|e| e.kind.clone()),
            Some(EntryKind::Symlink {
                target: "/usr/share/zoneinfo/UTC".into()
            })
        );
        assert!(s.get(".git/HEAD").is_none());
        Ok(())
    }

    #[test]
    fn rejects_non_repos_and_bad_text() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(matches!(load(&dir.path().join("nope")), Err(LoadError::Missing(_))));
        assert!(matches!(load(dir.path()), Err(LoadError::NotARepo(_))));
        fs::create_dir_all(dir.path().join("lists"))?;
        fs::write(dir.path().join("kiln.toml"), "")?;
        fs::write(dir.path().join("lists/base"), [0xff, 0xfe])?;
        let err = load(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("lists/base") && err.contains("UTF-8"), "{err}");
        Ok(())
    }
}
