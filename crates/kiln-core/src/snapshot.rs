//! An in-memory view of a profile repository: every path with its kind and
//! mode, and the text of the files kiln parses (TOML definitions and package
//! lists). The filesystem loader lives in `kiln-repo`; tests build snapshots
//! directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a repository path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink { target: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Unix permission bits (`0o755`).
    pub mode: u32,
    /// File text, present for the files kiln parses.
    pub text: Option<Arc<str>>,
}

/// Paths are relative to the repository root, `/`-separated, without a
/// leading `./` (e.g. `features/ssh/feature.toml`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    entries: BTreeMap<Arc<str>, Entry>,
    /// Byte offsets of line starts of every file with text, so positions
    /// resolve by binary search instead of rescanning the file.
    lines: HashMap<Arc<str>, Vec<usize>>,
}

/// Whether the loader must read a path's text: definitions and lists.
pub fn wants_text(path: &str) -> bool {
    path == "kiln.toml"
        || (path.starts_with("images/") && path.ends_with(".toml"))
        || (path.starts_with("features/") && path.ends_with("/feature.toml") && path.matches('/').count() == 2)
        || path.starts_with("lists/")
}

impl Snapshot {
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// Adds a text file (mode 0644), creating its parent directories.
    pub fn add_file(&mut self, path: &str, text: &str) -> &mut Self {
        self.insert(
            path,
            Entry {
                kind: EntryKind::File,
                mode: 0o644,
                text: Some(text.into()),
            },
        )
    }

    /// Adds an executable script (mode 0755) without text.
    pub fn add_script(&mut self, path: &str) -> &mut Self {
        self.insert(
            path,
            Entry {
                kind: EntryKind::File,
                mode: 0o755,
                text: None,
            },
        )
    }

    /// Adds an entry at `path`, creating its parent directories.
    pub fn insert(&mut self, path: &str, entry: Entry) -> &mut Self {
        let path = path.trim_start_matches("./").trim_end_matches('/');
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.entries.entry(Arc::from(prefix.as_str())).or_insert(Entry {
                kind: EntryKind::Dir,
                mode: 0o755,
                text: None,
            });
        }
        let key: Arc<str> = Arc::from(path);
        match &entry.text {
            Some(text) => {
                let starts = std::iter::once(0)
                    .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect();
                self.lines.insert(Arc::clone(&key), starts);
            }
            None => {
                self.lines.remove(&key);
            }
        }
        self.entries.insert(key, entry);
        self
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// The interned path, so spans can share it.
    pub fn key(&self, path: &str) -> Option<&Arc<str>> {
        self.entries.get_key_value(path).map(|(k, _)| k)
    }

    pub fn text(&self, path: &str) -> Option<&str> {
        self.entries.get(path).and_then(|e| e.text.as_deref())
    }

    /// 1-based line and column (in characters) of a byte offset in a file
    /// with text.
    pub fn line_col(&self, path: &str, offset: usize) -> Option<(usize, usize)> {
        let text = self.text(path)?;
        let starts = self.lines.get(path)?;
        let offset = offset.min(text.len());
        let line = starts.partition_point(|s| *s <= offset);
        let start = starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        let column = text.get(start..offset).map_or(1, |t| t.chars().count() + 1);
        Some((line.max(1), column))
    }

    pub fn is_file(&self, path: &str) -> bool {
        matches!(
            self.get(path),
            Some(Entry {
                kind: EntryKind::File,
                ..
            })
        )
    }

    pub fn is_dir(&self, path: &str) -> bool {
        matches!(
            self.get(path),
            Some(Entry {
                kind: EntryKind::Dir,
                ..
            })
        )
    }

    /// Every entry strictly below `dir` (recursively), in path order.
    pub fn walk<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }

    /// Direct children of `dir`: (name, full path, entry), in name order.
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Arc<str>, &'a Entry)> + 'a {
        let plen = dir.trim_end_matches('/').len() + 1;
        self.walk(dir).filter_map(move |(k, e)| {
            let rest = &k[plen..];
            (!rest.contains('/')).then_some((rest, k, e))
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entry)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_and_children() {
        let mut s = Snapshot::new();
        s.add_file("features/a/feature.toml", "")
            .add_script("features/a/image-scripts.d/10-x")
            .add_file("features/ab/feature.toml", "");
        let kids: Vec<_> = s.children("features").map(|(n, _, _)| n).collect();
        assert_eq!(kids, ["a", "ab"]);
        let below_a: Vec<_> = s.walk("features/a").map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            below_a,
            [
                "features/a/feature.toml",
                "features/a/image-scripts.d",
                "features/a/image-scripts.d/10-x"
            ]
        );
        assert!(s.is_dir("features/a/image-scripts.d"));
    }

    #[test]
    fn text_wanted() {
        assert!(wants_text("kiln.toml"));
        assert!(wants_text("images/ve/minimal.toml"));
        assert!(wants_text("features/ssh/feature.toml"));
        assert!(!wants_text("features/ssh/files/feature.toml"));
        assert!(wants_text("lists/tagged/a+b"));
        assert!(!wants_text("scripts/x.sh"));
    }
}
