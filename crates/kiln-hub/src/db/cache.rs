//! The read cache (ARCHITECTURE.md, "The read cache"): resolved
//! `list-tagged` answers of the present, shared by the REST API, the web UI
//! and the Koji endpoint, so that many clients asking about the same tags
//! cost one computation each time the tags change.
//!
//! An entry is keyed by (tag id, inherit, latest) and remembers the tags of
//! its walk and the sum of their versions (`tag_versions`, raised by
//! triggers in the transaction of every change to a tag's links, package
//! list, listings, name or config). Before an entry is served, the sum is
//! read again: any committed change to a tag of the walk raised it, and a
//! change to any other tag cannot change the answer (a walk only follows the
//! links of its own tags). The database is the only source of truth, so
//! every hub on it agrees. Answers as of an event are not cached.
//!
//! Filling is careful about changes that commit while the answer is being
//! computed (`Backend::cached_tagged`): the walk is taken, the versions
//! are read, the walk is taken again and the rows read, and the versions
//! read again; the entry is kept only when the second walk has the tags of
//! the first and the versions did not move, so it is the exact answer at
//! them.
//!
//! Below the answers, each tag's own rows (package list, listings) are
//! kept at the tag's version (`TagData`): walks share ancestors, so the
//! first listing of a tag reads only the tags no other listing brought in.

use std::sync::{Arc, OnceLock};

use kiln_core::koji::{PkgEntry, Tagged};

use crate::model::TaggedOut;

/// What an entry answers: a tag (by id) with or without inheritance and
/// latest-only.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub tag: i64,
    pub inherit: bool,
    pub latest: bool,
}

/// One resolved answer and what it was computed from.
pub struct Entry {
    /// What it answers.
    pub key: Key,
    /// The tag and the tags of its walk, sorted: the tags whose versions
    /// the answer depends on.
    pub tags: Vec<i64>,
    /// The sum of those tags' versions the answer is exact for.
    pub version: i64,
    /// The listing, by ids (each `nvr` holds its build's id).
    pub tagged: Arc<Vec<Tagged>>,
    /// The listing with its builds' details, once some reader asked.
    pub details: OnceLock<Arc<Vec<TaggedOut>>>,
    /// Koji's shape of the listing, once some reader asked.
    pub koji: OnceLock<Arc<Vec<super::KojiTagged>>>,
    /// A whole answer derived from Koji's shape (the Koji endpoint keeps
    /// its encoded reply here), once some reader asked.
    pub derived: OnceLock<Arc<str>>,
}

impl Entry {
    pub fn new(key: Key, tags: Vec<i64>, version: i64, tagged: Arc<Vec<Tagged>>) -> Entry {
        Entry {
            key,
            tags,
            version,
            tagged,
            details: OnceLock::new(),
            koji: OnceLock::new(),
            derived: OnceLock::new(),
        }
    }
}

/// One tag's own rows a listing is computed from, at one version of the
/// tag: walks share their ancestors, so a listing of a tag not asked
/// before reads only the tags no other listing brought in.
pub struct TagData {
    /// The tag's version (`tag_versions.n`) the rows are exact for.
    pub version: i64,
    pub packages: Vec<PkgEntry>,
    /// Most recently tagged first; read only once a listing of the tag
    /// with inheritance (or of the tag itself) needed them.
    pub listings: Option<Vec<Tagged>>,
}

fn tag_weight(_: &i64, d: &Arc<TagData>) -> u32 {
    let bytes = 128 + d.packages.len() * 96 + d.listings.as_ref().map_or(0, Vec::len) * 96;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The bytes an entry is counted as: its listing and what it gained
/// (re-weighed as it gains them, `ReadCache::reweigh`).
fn weight(_: &Key, e: &Arc<Entry>) -> u32 {
    let n = e.tagged.len();
    let bytes = 256
        + e.tags.len() * 8
        + n * 96
        + e.details.get().map_or(0, |_| n * 224)
        + e.koji.get().map_or(0, |_| n * 512)
        + e.derived.get().map_or(0, |d| d.len());
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The cache: bounded by bytes, least recently used first out; disabled
/// with a size of 0.
#[derive(Clone)]
pub struct ReadCache {
    inner: Option<moka::sync::Cache<Key, Arc<Entry>>>,
    tags: Option<moka::sync::Cache<i64, Arc<TagData>>>,
}

/// The default bound (`kiln serve --read-cache-mb`).
pub const DEFAULT_MB: u64 = 256;

impl ReadCache {
    /// A cache of at most `max_bytes`: three quarters for answers, a
    /// quarter for tags' rows.
    pub fn new(max_bytes: u64) -> ReadCache {
        ReadCache {
            inner: (max_bytes > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(max_bytes - max_bytes / 4)
                    .weigher(weight)
                    .build()
            }),
            tags: (max_bytes > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(max_bytes / 4)
                    .weigher(tag_weight)
                    .build()
            }),
        }
    }

    pub fn get_tag(&self, tag: i64) -> Option<Arc<TagData>> {
        self.tags.as_ref()?.get(&tag)
    }

    pub fn insert_tag(&self, tag: i64, data: Arc<TagData>) {
        if let Some(c) = &self.tags {
            c.insert(tag, data);
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.inner.as_ref()?.get(key)
    }

    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        if let Some(c) = &self.inner {
            c.insert(key, entry);
        }
    }

    /// Weighs `entry` again after it gained details or an encoded answer,
    /// if it is still the one cached for `key`.
    pub fn reweigh(&self, key: Key, entry: &Arc<Entry>) {
        if let Some(c) = &self.inner
            && c.get(&key).is_some_and(|e| Arc::ptr_eq(&e, entry))
        {
            c.insert(key, entry.clone());
        }
    }

    /// Entries and their weight (after pending maintenance).
    pub fn usage(&self) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        if let Some(c) = &self.inner {
            c.run_pending_tasks();
            (n, bytes) = (c.entry_count(), c.weighted_size());
        }
        if let Some(c) = &self.tags {
            c.run_pending_tasks();
            (n, bytes) = (n + c.entry_count(), bytes + c.weighted_size());
        }
        (n, bytes)
    }
}

impl Default for ReadCache {
    fn default() -> ReadCache {
        ReadCache::new(DEFAULT_MB << 20)
    }
}
