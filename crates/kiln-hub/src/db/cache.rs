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
//! computed (`Backend::list_tagged_entry`): the walk is taken, the sum is
//! read, the walk is taken again and the listings read, and the sum read
//! again; the entry is kept only when the second walk has the tags of the
//! first and the two sums agree, so it is the exact answer at that sum.

use std::sync::{Arc, OnceLock};

use kiln_core::koji::Tagged;

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

/// The bytes an entry is counted as: its listing, with room for the
/// details, Koji's shape and the encoded answer it may gain.
fn weight(_: &Key, e: &Arc<Entry>) -> u32 {
    let per_entry = 96 + 256 + 512 + 2048;
    let bytes = 256 + e.tags.len() * 8 + e.tagged.len() * per_entry;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The cache: bounded by bytes, least recently used first out; disabled
/// with a size of 0.
#[derive(Clone)]
pub struct ReadCache {
    inner: Option<moka::sync::Cache<Key, Arc<Entry>>>,
}

/// The default bound (`kiln serve --read-cache-mb`).
pub const DEFAULT_MB: u64 = 256;

impl ReadCache {
    pub fn new(max_bytes: u64) -> ReadCache {
        ReadCache {
            inner: (max_bytes > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(weight)
                    .build()
            }),
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

    /// Entries and their weight (after pending maintenance).
    pub fn usage(&self) -> (u64, u64) {
        match &self.inner {
            Some(c) => {
                c.run_pending_tasks();
                (c.entry_count(), c.weighted_size())
            }
            None => (0, 0),
        }
    }
}

impl Default for ReadCache {
    fn default() -> ReadCache {
        ReadCache::new(DEFAULT_MB << 20)
    }
}
