//! The read cache never serves a stale answer (ARCHITECTURE.md, "The read
//! cache"), on SQLite and PostgreSQL: random interleavings of writes
//! (tagging and untagging, inheritance edits, package blocks, renames and
//! deletions of tags) and reads, every read through the cache compared with
//! the same query on a hub with the cache off; reads as of an event stay
//! exact; concurrent writers and readers end in agreement; and the cache
//! stays within its bound.

mod common;

use std::sync::Arc;

use common::fixtures::admin;
use kiln_hub::db::Db;
use kiln_hub::model::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TAGS: usize = 7;
const PACKAGES: &[&str] = &["cam-fw", "kernel", "modem-fw", "tools"];
const FILTERS: &[&str] = &["", "cam-", ".*-fw$", "kernel|tools"];

/// The hub as its clients see it: one handle with the cache, one without.
struct Pair {
    cached: Db,
    plain: Db,
    who: Principal,
    /// The tags' current names (a renamed tag gets a new one; a deleted tag
    /// keeps its name here, so reads of it must fail alike).
    names: Vec<String>,
    builds: Vec<String>,
}

impl Pair {
    async fn new(t: &common::TestDb) -> Pair {
        let cached = common::open(t).await;
        let mut plain = common::open(t).await;
        plain.set_read_cache(0);
        let who = admin(&cached).await;
        let mut names = Vec::new();
        for i in 0..TAGS {
            let name = format!("t{i}");
            let tag = NewTag {
                name: name.clone(),
                ..Default::default()
            };
            cached.create_tag(&who, &tag).await.expect("tag");
            names.push(name);
        }
        for p in PACKAGES {
            let e = PackageIn {
                package: p.to_string(),
                owner: None,
                blocked: false,
            };
            cached.set_package(&who, "t0", &e, false).await.expect("package");
        }
        let mut builds = Vec::new();
        for p in PACKAGES {
            for v in 1..=3 {
                builds.push(common::fixtures::build(&cached, &who, p, &v.to_string()).await);
            }
        }
        Pair {
            cached,
            plain,
            who,
            names,
            builds,
        }
    }

    /// One random change; refusals (a package not in the list, a link that
    /// would loop, …) are part of the mix and change nothing.
    async fn write(&mut self, rng: &mut StdRng) -> String {
        let db = &self.cached;
        let tag = self.names[rng.random_range(0..TAGS)].clone();
        let other = self.names[rng.random_range(0..TAGS)].clone();
        let build = self.builds[rng.random_range(0..self.builds.len())].clone();
        let package = PACKAGES[rng.random_range(0..PACKAGES.len())].to_string();
        let what = rng.random_range(0..100);
        let (op, r) = match what {
            0..30 => ("tag", db.tag_build(&self.who, &tag, &build, false).await.map(drop)),
            30..42 => ("untag", db.untag_build(&self.who, &tag, &build, false).await.map(drop)),
            42..54 => {
                let l = LinkIn {
                    parent: other.clone(),
                    priority: rng.random_range(0..4) * 10,
                    maxdepth: rng.random_bool(0.3).then(|| rng.random_range(0..3)),
                    intransitive: rng.random_bool(0.2),
                    noconfig: rng.random_bool(0.2),
                    pkg_filter: FILTERS[rng.random_range(0..FILTERS.len())].to_string(),
                };
                ("link", db.add_link(&self.who, &tag, &l).await.map(drop))
            }
            54..62 => {
                let e = LinkEdit {
                    priority: Some(rng.random_range(0..4) * 10 + 5),
                    maxdepth: Some(rng.random_bool(0.5).then(|| rng.random_range(0..3))),
                    ..Default::default()
                };
                ("edit link", db.edit_link(&self.who, &tag, &other, &e).await.map(drop))
            }
            62..70 => ("unlink", db.remove_link(&self.who, &tag, &other).await.map(drop)),
            70..84 => {
                let e = PackageIn {
                    package,
                    owner: None,
                    blocked: rng.random_bool(0.5),
                };
                ("package", db.set_package(&self.who, &tag, &e, false).await.map(drop))
            }
            84..90 => {
                let r = db.remove_package(&self.who, &tag, &package, false).await;
                ("remove package", r.map(drop))
            }
            90..95 => {
                let i = self.names.iter().position(|n| *n == tag).unwrap_or(0);
                let new = format!("{tag}r");
                let e = TagEdit {
                    rename: Some(new.clone()),
                    ..Default::default()
                };
                let r = db.edit_tag(&self.who, &tag, &e).await.map(drop);
                if r.is_ok() {
                    self.names[i] = new;
                }
                ("rename", r)
            }
            _ => ("delete", db.delete_tag(&self.who, &tag).await.map(drop)),
        };
        format!(
            "{op} {tag} {other} {build}: {}",
            if r.is_ok() { "done" } else { "refused" }
        )
    }

    /// Every way of reading `tag`'s listing, through the cache and without.
    async fn compare(&self, tag: &str, inherit: bool, latest: bool, event: Option<i64>, log: &[String]) {
        let (c, p) = (&self.cached, &self.plain);
        let ctx = || {
            format!(
                "{tag} inherit={inherit} latest={latest} event={event:?} after:\n{}",
                log.join("\n")
            )
        };
        let a = c.list_tagged(tag, inherit, latest, event).await.map_err(|e| e.message);
        let b = p.list_tagged(tag, inherit, latest, event).await.map_err(|e| e.message);
        assert_eq!(fmt(a), fmt(b), "list_tagged {}", ctx());
        let a = c.list_tagged_page(tag, (inherit, latest), event, 1, 2).await;
        let b = p.list_tagged_page(tag, (inherit, latest), event, 1, 2).await;
        assert_eq!(
            a.map(|(n, v)| (n, fmt::<()>(Ok(v)))).map_err(|e| e.message),
            b.map(|(n, v)| (n, fmt::<()>(Ok(v)))).map_err(|e| e.message),
            "list_tagged_page {}",
            ctx()
        );
        let a = c.koji_list_tagged(tag, inherit, latest, event).await;
        let b = p.koji_list_tagged(tag, inherit, latest, event).await;
        let ids = |r: kiln_hub::error::Result<Vec<kiln_hub::db::KojiTagged>>| {
            r.map(|v| v.into_iter().map(|(b, t, n, e)| (b.id, t, n, e)).collect::<Vec<_>>())
                .map_err(|e| e.message)
        };
        let b = ids(b);
        assert_eq!(ids(a), b, "koji_list_tagged {}", ctx());
        // An answer derived from it (the Koji endpoint's encoded reply) is
        // kept with the entry and follows it.
        if event.is_none() {
            let derived = c
                .koji_tagged_derived(tag, inherit, latest, |rows| Arc::from(format!("{:?}", ids(Ok(rows)))))
                .await
                .map_err(|e| e.message);
            match (derived, &b) {
                (Ok(Some(d)), Ok(_)) => assert_eq!(*d, format!("{b:?}"), "derived {}", ctx()),
                (Err(x), Err(y)) => assert_eq!(&x, y),
                (d, b) => panic!("derived {d:?} against {b:?}: {}", ctx()),
            }
        }
    }
}

fn fmt<E>(r: Result<Vec<TaggedOut>, E>) -> Result<Vec<(String, String, i64)>, E> {
    r.map(|v| v.into_iter().map(|b| (b.nvr, b.tag, b.tag_event)).collect())
}

both!(random_writes_and_reads_agree_with_the_uncached_query, |t| async move {
    let mut pair = Pair::new(&t).await;
    let mut log: Vec<String> = Vec::new();
    let mut events = Vec::new();
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..120 {
            log.push(pair.write(&mut rng).await);
            if log.len() > 12 {
                log.remove(0);
            }
            for _ in 0..3 {
                let tag = pair.names[rng.random_range(0..TAGS)].clone();
                pair.compare(&tag, rng.random_bool(0.7), rng.random_bool(0.5), None, &log)
                    .await;
            }
            if rng.random_bool(0.1) {
                events.push(pair.cached.last_event().await.expect("event"));
            }
        }
        // Every answer once more, now that the cache holds most of them.
        for name in pair.names.clone() {
            for (inherit, latest) in [(false, false), (false, true), (true, false), (true, true)] {
                pair.compare(&name, inherit, latest, None, &log).await;
            }
        }
    }
    // As of earlier events: exact, and never from the present's entries.
    for e in events {
        for name in pair.names.clone() {
            pair.compare(&name, true, true, Some(e), &log).await;
        }
    }
    let (entries, bytes) = pair.cached.read_cache_usage();
    assert!(entries > 0, "the cache was used");
    assert!(bytes <= kiln_hub::db::cache::DEFAULT_MB << 20);
});

both!(concurrent_writers_and_readers_end_in_agreement, |t| async move {
    let pair = Arc::new(tokio::sync::Mutex::new(Pair::new(&t).await));
    // Readers share the cached handle through a second hub on the same
    // database: both caches must follow the writers.
    let other = Arc::new(common::open(&t).await);
    let names: Vec<String> = pair.lock().await.names.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let (other, names, stop) = (other.clone(), names.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(100 + r);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tag = &names[rng.random_range(0..names.len())];
                let _ = other.list_tagged(tag, true, rng.random_bool(0.5), None).await;
                n += 1;
            }
            n
        }));
    }
    {
        let mut p = pair.lock().await;
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            // Renames and deletions stay out: the readers keep the names.
            let mut line = p.write(&mut rng).await;
            while line.starts_with("rename") || line.starts_with("delete") {
                line = p.write(&mut rng).await;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader");
    }
    assert!(reads > 0);
    let p = pair.lock().await;
    for name in &p.names {
        for (inherit, latest) in [(false, false), (true, false), (true, true)] {
            let a = fmt(other
                .list_tagged(name, inherit, latest, None)
                .await
                .map_err(|e| e.message));
            let b = fmt(p
                .plain
                .list_tagged(name, inherit, latest, None)
                .await
                .map_err(|e| e.message));
            assert_eq!(
                a, b,
                "{name} inherit={inherit} latest={latest} after {reads} concurrent reads"
            );
            p.compare(name, inherit, latest, None, &[]).await;
        }
    }
});

both!(the_cache_keeps_to_its_bound, |t| async move {
    let mut pair = Pair::new(&t).await;
    // Room for a few small answers only.
    pair.cached.set_read_cache(16 << 10);
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..150 {
        pair.write(&mut rng).await;
    }
    for name in pair.names.clone() {
        for (inherit, latest) in [(false, false), (false, true), (true, false), (true, true)] {
            pair.compare(&name, inherit, latest, None, &[]).await;
        }
    }
    let (_, bytes) = pair.cached.read_cache_usage();
    assert!(bytes <= 16 << 10, "{bytes} bytes cached");
});
