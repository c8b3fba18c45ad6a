//! kiln's stage cache (docs/cache.md): content-addressed entries, one per stage
//! key. A tree stage's entry is an overlayfs upper layer (only what the
//! stage changed, never a copy of the tree); an output stage's entry holds
//! the output files.
//!
//! Layout, under the cache root (`/var/cache/kiln` for root, else
//! `$XDG_CACHE_HOME/kiln`):
//!
//! ```text
//! v1/lock                   prune and clear hold it exclusively
//! v1/entries/<key>/         published entries, never changed after publishing
//!     entry.json            the index record: stage, image, size, digest, …
//!     lock                  shared-locked by every build using the entry
//!     used                  its mtime is the entry's last use
//!     layer/ | files/       the content
//! v1/tmp/<key>.<pid>.<n>/   entries being built (their `lock` held exclusively)
//! ```
//!
//! Invariants: an entry appears in `entries/` only complete (built in `tmp/`,
//! then renamed atomically); it is verified against its digest before use, a
//! mismatch discards it; prune never removes an entry a build holds.

pub mod catalog;
pub mod digest;
pub mod image_check;
pub mod iso;
pub mod overlay;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use digest::tree_digest;

/// The directory name of this cache format.
const FORMAT_DIR: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One output file of a files entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMeta {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// An entry's index record (`entry.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    /// `layer` or `files`.
    pub kind: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub image: String,
    /// Unix seconds.
    pub created: u64,
    /// Bytes of file content.
    pub size: u64,
    /// [`tree_digest`] of the content directory.
    pub digest: String,
    /// What the stage contributes to a manifest (scripts run, packages, …).
    #[serde(default)]
    pub record: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMeta>,
}

/// A usable entry, shared-locked for as long as it lives.
#[derive(Debug)]
pub struct Entry {
    pub meta: Meta,
    dir: PathBuf,
    _lock: File,
}

impl Entry {
    /// The layer directory of a `layer` entry.
    pub fn layer(&self) -> PathBuf {
        self.dir.join("layer")
    }

    /// A file of a `files` entry.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join("files").join(name)
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<Entry>),
    Miss,
    /// The entry did not match its digest; it was discarded.
    Corrupt(String),
}

/// An entry under construction in `tmp/`.
#[derive(Debug)]
pub struct Pending {
    key: String,
    dir: PathBuf,
    lock: File,
    /// Published or handed over: nothing to remove on drop.
    kept: bool,
}

impl Pending {
    /// Where a tree stage writes (an overlay upper directory, or the whole
    /// tree for the first stage).
    pub fn layer(&self) -> PathBuf {
        self.dir.join("layer")
    }

    /// overlayfs's work directory, on the layer's file system.
    pub fn overlay_work(&self) -> PathBuf {
        self.dir.join("ovl-work")
    }

    /// Where an output stage puts its files.
    pub fn files(&self) -> PathBuf {
        self.dir.join("files")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Not published: remove what was built.
        if !self.kept && self.dir.exists() {
            let _ = remove_tree(&self.dir);
        }
    }
}

/// One entry as `kiln cache ls` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub meta: Meta,
    /// Unix seconds of the last use.
    pub last_used: u64,
    pub in_use: bool,
}

/// What a prune removed.
#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub freed: u64,
    pub kept_in_use: usize,
    pub remaining: u64,
}

/// The stage cache in a directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Removes a tree even where directories lack write permission (overlayfs
/// leaves `work/work` at mode 000).
fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The default cache root: `/var/cache/kiln` for root, else
/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/kiln");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("kiln");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/kiln"))
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln"))
}

impl Cache {
    /// Opens (creating) the cache under `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        let dir = root.join(FORMAT_DIR);
        for d in ["entries", "tmp"] {
            fs::create_dir_all(dir.join(d)).map_err(ctx(format!("cannot create {}", dir.join(d).display())))?;
        }
        Ok(Cache { root: dir })
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(key)
    }

    /// Finds and shared-locks the entry of `key`. With `verify`, its content
    /// is checked against its digest first; a mismatch discards it.
    pub fn lookup(&self, key: &str, verify: bool) -> Result<Lookup> {
        let dir = self.entry_dir(key);
        let lock_path = dir.join("lock");
        let lock = match File::open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(ctx(format!("cannot open {}", lock_path.display()))(e)),
        };
        lock.lock_shared()
            .map_err(ctx(format!("cannot lock {}", lock_path.display())))?;
        // A prune may have removed the entry while we waited for the lock.
        let same = fs::metadata(&lock_path)
            .ok()
            .zip(lock.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        if !same {
            return Ok(Lookup::Miss);
        }
        let meta: Meta = match fs::read(dir.join("entry.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(m) => m,
            None => {
                drop(lock);
                self.discard(key);
                return Ok(Lookup::Corrupt("its index record is missing or unreadable".into()));
            }
        };
        if verify {
            let content = dir.join(if meta.kind == "files" { "files" } else { "layer" });
            let ok = match tree_digest(&content) {
                Ok((d, _)) if d == meta.digest => None,
                Ok(_) => Some("its content does not match its digest".to_string()),
                Err(e) => Some(format!("its content cannot be read: {e}")),
            };
            if let Some(why) = ok {
                drop(lock);
                self.discard(key);
                return Ok(Lookup::Corrupt(why));
            }
        }
        let _ = File::create(dir.join("used")).and_then(|f| f.set_modified(SystemTime::now()));
        Ok(Lookup::Hit(Box::new(Entry { meta, dir, _lock: lock })))
    }

    /// Removes an entry nobody uses (else leaves it).
    fn discard(&self, key: &str) -> bool {
        let dir = self.entry_dir(key);
        let Ok(lock) = File::open(dir.join("lock")) else {
            // No lock file: a broken entry nobody can be using.
            return self.trash(&dir);
        };
        if lock.try_lock().is_err() {
            return false;
        }
        self.trash(&dir)
    }

    fn trash(&self, dir: &Path) -> bool {
        let to = self.root.join("tmp").join(unique("trash"));
        if fs::rename(dir, &to).is_err() {
            return false;
        }
        remove_tree(&to).is_ok()
    }

    /// Starts an entry for `key` in `tmp/`.
    pub fn begin(&self, key: &str) -> Result<Pending> {
        let dir = self.root.join("tmp").join(unique(key));
        fs::create_dir_all(&dir).map_err(ctx(format!("cannot create {}", dir.display())))?;
        let lock = File::create(dir.join("lock")).map_err(ctx(format!("cannot create {}/lock", dir.display())))?;
        lock.lock().map_err(ctx("cannot lock a new cache entry"))?;
        for d in ["layer", "ovl-work", "files"] {
            fs::create_dir(dir.join(d)).map_err(ctx(format!("cannot create {}/{d}", dir.display())))?;
        }
        Ok(Pending {
            key: key.to_string(),
            dir,
            lock,
            kept: false,
        })
    }

    /// Publishes a finished entry: its digest and index record are written,
    /// then it is renamed into `entries/` in one step. When another build
    /// published the same key first, that entry is used and this one
    /// dropped. `meta`'s key, size, digest and created are filled in here.
    pub fn publish(&self, pending: Pending, mut meta: Meta) -> Result<Entry> {
        let _ = remove_tree(&pending.overlay_work());
        let content = pending.dir.join(if meta.kind == "files" { "files" } else { "layer" });
        let other = pending.dir.join(if meta.kind == "files" { "layer" } else { "files" });
        let _ = fs::remove_dir(&other);
        let (digest, size) =
            tree_digest(&content).map_err(ctx(format!("cannot hash the new entry {}", content.display())))?;
        meta.key = pending.key.clone();
        meta.digest = digest;
        meta.size = size;
        meta.created = now();
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| ctx("cannot encode an index record")(e.into()))?;
        let tmp_json = pending.dir.join("entry.json.tmp");
        fs::write(&tmp_json, json).map_err(ctx("cannot write an index record"))?;
        File::open(&tmp_json)
            .and_then(|f| f.sync_all())
            .map_err(ctx("cannot sync an index record"))?;
        fs::rename(&tmp_json, pending.dir.join("entry.json")).map_err(ctx("cannot write an index record"))?;
        let _ = File::create(pending.dir.join("used"));
        let target = self.entry_dir(&pending.key);
        let mut retried = false;
        loop {
            match fs::rename(&pending.dir, &target) {
                Ok(()) => {
                    // Ours now: keep it shared-locked while this build uses it.
                    let mut pending = pending;
                    pending.kept = true;
                    let lock = pending.lock.try_clone().map_err(ctx("cannot keep the entry's lock"))?;
                    lock.lock_shared().map_err(ctx("cannot lock the entry"))?;
                    return Ok(Entry {
                        meta,
                        dir: target,
                        _lock: lock,
                    });
                }
                Err(_) if target.exists() => match self.lookup(&meta.key, true)? {
                    // Published concurrently by another build: use theirs.
                    Lookup::Hit(e) => return Ok(*e),
                    // A damaged entry, discarded now, or one pruned meanwhile:
                    // publish ours in its place.
                    _ if !retried && !target.exists() => retried = true,
                    // Theirs is damaged and in use: keep ours private.
                    _ => {
                        let mut pending = pending;
                        pending.kept = true;
                        let dir = pending.dir.clone();
                        let lock = pending.lock.try_clone().map_err(ctx("cannot keep the entry's lock"))?;
                        return Ok(Entry { meta, dir, _lock: lock });
                    }
                },
                Err(e) => return Err(ctx(format!("cannot publish {}", target.display()))(e)),
            }
        }
    }

    /// Every published entry, least recently used first.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let entries = self.root.join("entries");
        let mut out = Vec::new();
        for e in fs::read_dir(&entries).map_err(ctx(format!("cannot read {}", entries.display())))? {
            let Ok(e) = e else { continue };
            let dir = e.path();
            let Some(meta) = fs::read(dir.join("entry.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            else {
                continue;
            };
            let last_used = fs::metadata(dir.join("used"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(meta.created, |d| d.as_secs());
            let in_use = File::open(dir.join("lock")).is_ok_and(|f| f.try_lock().is_err());
            out.push(Listed {
                meta,
                last_used,
                in_use,
            });
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.meta.key.cmp(&b.meta.key)));
        Ok(out)
    }

    /// Removes least recently used entries until the cache holds at most
    /// `max_size` bytes, skipping entries in use; also removes what crashed
    /// builds left in `tmp/`.
    pub fn prune(&self, max_size: u64) -> Result<Pruned> {
        let global = File::create(self.root.join("lock")).map_err(ctx("cannot open the cache lock"))?;
        global.lock().map_err(ctx("cannot lock the cache"))?;
        self.remove_stale_tmp();
        let listed = self.list()?;
        let mut total: u64 = listed.iter().map(|l| l.meta.size).sum();
        let mut report = Pruned::default();
        for l in listed {
            if total <= max_size {
                break;
            }
            if self.discard(&l.meta.key) {
                total -= l.meta.size;
                report.freed += l.meta.size;
                report.removed.push(l.meta.key);
            } else {
                report.kept_in_use += 1;
            }
        }
        report.remaining = total;
        Ok(report)
    }

    fn remove_stale_tmp(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            // An entry under construction holds its lock; a crashed build's does not.
            let stale = match File::open(p.join("lock")) {
                Ok(f) => f.try_lock().is_ok(),
                Err(_) => fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60)),
            };
            if stale {
                let _ = remove_tree(&p);
            }
        }
    }
}

/// Streams `from` into `to` (created and synced) or only reads it
/// (`None`), returning the sha256 (hex) and length of what was read.
pub fn sha256_copy(mut from: impl io::Read, to: Option<&Path>) -> io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Write as _;
    let mut out = to.map(File::create).transpose()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some(o) = &mut out {
            o.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    if let Some(o) = out {
        o.sync_all()?;
    }
    Ok((h.finalize().iter().map(|b| format!("{b:02x}")).collect(), total))
}

/// Parses a size such as `20G`, `512M`, `1.5T` or a number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].trim_end_matches(['B', 'b', 'i']).to_ascii_uppercase();
            let mult: u64 = match unit.as_str() {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return None,
            };
            (&s[..i], mult)
        }
        None => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str) -> Meta {
        Meta {
            key: String::new(),
            kind: kind.into(),
            stage: "files".into(),
            step: None,
            image: "ve/x".into(),
            created: 0,
            size: 0,
            digest: String::new(),
            record: serde_json::json!({"note": 1}),
            files: Vec::new(),
        }
    }

    fn put(cache: &Cache, key: &str, content: &str) -> Entry {
        let p = cache.begin(key).expect("begin");
        fs::write(p.layer().join("f"), content).expect("write");
        cache.publish(p, meta("layer")).expect("publish")
    }

    #[test]
    fn publish_then_hit_then_corruption_is_detected() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(d.path()).expect("open");
        assert!(matches!(cache.lookup("k1", true).expect("lookup"), Lookup::Miss));
        let e = put(&cache, "k1", "hello");
        assert_eq!(e.meta.size, 5);
        drop(e);
        let Lookup::Hit(e) = cache.lookup("k1", true).expect("lookup") else {
            panic!("expected a hit")
        };
        assert_eq!(fs::read_to_string(e.layer().join("f")).expect("read"), "hello");
        assert_eq!(e.meta.record["note"], 1);
        drop(e);
        // Truncate the content: the entry is discarded, not used.
        fs::write(cache.entry_dir("k1").join("layer/f"), "he").expect("truncate");
        assert!(matches!(cache.lookup("k1", true).expect("lookup"), Lookup::Corrupt(_)));
        assert!(!cache.entry_dir("k1").exists());
        assert!(matches!(cache.lookup("k1", true).expect("lookup"), Lookup::Miss));
    }

    #[test]
    fn a_second_publish_of_a_key_uses_the_first() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(d.path()).expect("open");
        let a = cache.begin("k").expect("begin");
        let b = cache.begin("k").expect("begin");
        fs::write(a.layer().join("f"), "same").expect("write");
        fs::write(b.layer().join("f"), "same").expect("write");
        let ea = cache.publish(a, meta("layer")).expect("publish a");
        let eb = cache.publish(b, meta("layer")).expect("publish b");
        assert_eq!(ea.layer(), eb.layer());
        drop((ea, eb));
        // Nothing left in tmp/.
        assert_eq!(fs::read_dir(cache.dir().join("tmp")).expect("tmp").count(), 0);
    }

    #[test]
    fn a_publish_over_a_damaged_entry_replaces_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(d.path()).expect("open");
        drop(put(&cache, "k", "good"));
        fs::write(cache.entry_dir("k").join("layer/f"), "bad!").expect("damage");
        let e = put(&cache, "k", "good");
        assert_eq!(e.layer(), cache.entry_dir("k").join("layer"), "published, not private");
        drop(e);
        assert!(matches!(cache.lookup("k", true).expect("lookup"), Lookup::Hit(_)));
    }

    #[test]
    fn prune_keeps_entries_in_use_and_goes_least_recently_used_first() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(d.path()).expect("open");
        for (k, t) in [("old", 100), ("mid", 200), ("new", 300)] {
            drop(put(&cache, k, "0123456789"));
            let f = File::options()
                .write(true)
                .open(cache.entry_dir(k).join("used"))
                .expect("used");
            f.set_modified(UNIX_EPOCH + Duration::from_secs(t)).expect("mtime");
        }
        let held = match cache.lookup("old", false).expect("lookup") {
            Lookup::Hit(e) => e,
            other => panic!("{other:?}"),
        };
        // `old` is now the most recently used and in use; prune to 10 bytes.
        let r = cache.prune(10).expect("prune");
        assert_eq!(r.removed, ["mid", "new"]);
        assert_eq!(r.remaining, 10);
        let r = cache.prune(0).expect("prune");
        assert!(r.removed.is_empty() && r.kept_in_use == 1);
        drop(held);
        let r = cache.prune(0).expect("prune");
        assert_eq!(r.removed, ["old"]);
        assert!(cache.list().expect("list").is_empty());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("20G"), Some(20 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5Q"), None);
    }
}
