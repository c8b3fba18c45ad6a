//! Koji's tag model as pure functions (docs/hub.md): the full inheritance
//! walk (`readFullInheritance`), the build config (`getBuildConfig`),
//! inherited package lists (`readPackageList(inherit=True)`) and tagged
//! builds (`readTaggedBuilds`). The hub reads rows as of an event and hands
//! them in; everything here is deterministic over those rows.

use std::collections::{BTreeMap, HashMap};

/// A tag's id.
pub type TagId = i64;

/// One inheritance link: `child` inherits from `parent`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    pub child: TagId,
    pub parent: TagId,
    /// Unique per child; lower first.
    pub priority: i64,
    /// `None`: unlimited.
    pub maxdepth: Option<i64>,
    pub intransitive: bool,
    pub noconfig: bool,
    /// A regular expression the package names must match (empty: none).
    pub pkg_filter: String,
}

/// One entry of a full inheritance walk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WalkEntry {
    #[serde(flatten)]
    pub link: Link,
    /// Depth of the link's child below the walk's root, plus one.
    pub currdepth: i64,
    /// The depth budget passed on from this entry (`None`: unlimited).
    pub nextdepth: Option<i64>,
    /// Every `pkg_filter` from the root down to this link.
    pub filter: Vec<String>,
}

impl WalkEntry {
    /// The tag this entry reaches: the parent (or, reversed, the child).
    pub fn tag(&self, reverse: bool) -> TagId {
        if reverse { self.link.child } else { self.link.parent }
    }
}

/// The inheritance links at one event.
pub trait Links {
    /// A tag's parent links, in ascending priority.
    fn parents(&self, tag: TagId) -> Vec<Link>;
    /// A tag's child links (links whose parent is `tag`), in ascending
    /// priority, then child.
    fn children(&self, tag: TagId) -> Vec<Link>;
}

/// Links held in memory.
#[derive(Clone, Debug, Default)]
pub struct LinkSet(pub Vec<Link>);

impl Links for LinkSet {
    fn parents(&self, tag: TagId) -> Vec<Link> {
        let mut v: Vec<Link> = self.0.iter().filter(|l| l.child == tag).cloned().collect();
        v.sort_by_key(|l| (l.priority, l.parent));
        v
    }
    fn children(&self, tag: TagId) -> Vec<Link> {
        let mut v: Vec<Link> = self.0.iter().filter(|l| l.parent == tag).cloned().collect();
        v.sort_by_key(|l| (l.priority, l.child));
        v
    }
}

/// The full inheritance of `tag` (Koji's `readFullInheritance`): depth
/// first, pre-order, siblings by priority; intransitive links only from the
/// root; maxdepth propagated; loops pruned; a tag seen before is walked
/// again only when the earlier visit was weaker (a smaller depth budget,
/// noconfig, or filters). `reverse` walks the children instead.
pub fn full_inheritance(links: &dyn Links, tag: TagId, reverse: bool) -> Vec<WalkEntry> {
    let mut order = Vec::new();
    let mut hist: HashMap<TagId, Vec<WalkEntry>> = HashMap::new();
    recurse(links, tag, reverse, &mut order, &[], &mut hist, 0, None, false, &[]);
    order
}

#[allow(clippy::too_many_arguments)]
fn recurse(
    links: &dyn Links,
    tag: TagId,
    reverse: bool,
    order: &mut Vec<WalkEntry>,
    top: &[TagId],
    hist: &mut HashMap<TagId, Vec<WalkEntry>>,
    currdepth: i64,
    maxdepth: Option<i64>,
    noconfig: bool,
    pfilter: &[String],
) {
    if maxdepth.is_some_and(|m| m < 1) {
        return;
    }
    let currdepth = currdepth + 1;
    let mut top = top.to_vec();
    top.push(tag);
    // As in Koji, a noconfig link turns noconfig on for the rest of this
    // node's links too.
    let mut noconfig = noconfig;
    let node = if reverse {
        links.children(tag)
    } else {
        links.parents(tag)
    };
    for link in node {
        let id = if reverse { link.child } else { link.parent };
        if top.contains(&id) {
            // A loop: pruned.
            continue;
        }
        if link.intransitive && top.len() > 1 && !reverse {
            continue;
        }
        let nextdepth = if reverse {
            if link.maxdepth.is_some_and(|m| m < currdepth - 1) {
                continue;
            }
            None
        } else {
            match (link.maxdepth, maxdepth) {
                (None, None) => None,
                (None, Some(m)) => Some(m - 1),
                (Some(l), None) => Some(l),
                (Some(l), Some(m)) => Some(l.min(m) - 1),
            }
        };
        if link.noconfig {
            noconfig = true;
        }
        let mut filter = pfilter.to_vec();
        if !link.pkg_filter.is_empty() {
            filter.push(link.pkg_filter.clone());
        }
        let entry = WalkEntry {
            link: link.clone(),
            currdepth,
            nextdepth,
            filter: filter.clone(),
        };
        if let Some(previous) = hist.get(&id) {
            let sufficient = |p: &WalkEntry| {
                let depth_ok = match (nextdepth, p.nextdepth) {
                    (None, Some(_)) => false,
                    (Some(n), Some(last)) => last >= n,
                    _ => true,
                };
                // Weaker before: a smaller budget, noconfig then but not now, or filters.
                let config_ok = noconfig || !p.link.noconfig;
                depth_ok && config_ok && p.filter.is_empty()
            };
            if previous.iter().any(sufficient) {
                continue;
            }
        }
        hist.entry(id).or_default().push(entry.clone());
        order.push(entry);
        if link.intransitive && reverse {
            continue;
        }
        recurse(
            links, id, reverse, order, &top, hist, currdepth, nextdepth, noconfig, &filter,
        );
    }
}

/// A tag's own configuration at an event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TagConfig {
    pub name: String,
    pub arches: Option<String>,
    /// key → (blocked, value).
    pub extra: BTreeMap<String, (bool, serde_json::Value)>,
}

/// One value of a build config, with the tag it came from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub from: String,
}

/// The effective configuration of a tag (Koji's `getBuildConfig`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BuildConfig {
    pub arches: Option<Sourced<String>>,
    pub extra: BTreeMap<String, Sourced<serde_json::Value>>,
}

/// Arches from the first tag in the walk that has them; each extra key from
/// its first occurrence, a blocked entry winning and hiding the key; the
/// parents of noconfig links contribute nothing.
pub fn build_config(tag: TagId, walk: &[WalkEntry], configs: &HashMap<TagId, TagConfig>) -> BuildConfig {
    let mut arches: Option<Sourced<String>> = None;
    let mut extra: BTreeMap<String, (bool, Sourced<serde_json::Value>)> = BTreeMap::new();
    let mut visit = |t: TagId| {
        let Some(c) = configs.get(&t) else { return };
        if arches.is_none()
            && let Some(a) = &c.arches
        {
            arches = Some(Sourced {
                value: a.clone(),
                from: c.name.clone(),
            });
        }
        for (k, (blocked, v)) in &c.extra {
            extra.entry(k.clone()).or_insert_with(|| {
                (
                    *blocked,
                    Sourced {
                        value: v.clone(),
                        from: c.name.clone(),
                    },
                )
            });
        }
    };
    visit(tag);
    for e in walk {
        if !e.link.noconfig {
            visit(e.link.parent);
        }
    }
    BuildConfig {
        arches,
        extra: extra
            .into_iter()
            .filter(|(_, (b, _))| !b)
            .map(|(k, (_, v))| (k, v))
            .collect(),
    }
}

/// A package-list entry of one tag.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PkgEntry {
    pub package: String,
    pub tag: TagId,
    pub owner: String,
    pub blocked: bool,
}

/// An invalid `pkg_filter`.
#[derive(Debug, thiserror::Error)]
#[error("invalid package filter `{pattern}`: {message}")]
pub struct BadFilter {
    pub pattern: String,
    pub message: String,
}

/// Compiles a `pkg_filter` as Koji applies it: matched at the start of the
/// name (Python's `re.match`).
pub fn compile_filter(pattern: &str) -> Result<regex::Regex, BadFilter> {
    regex::Regex::new(&format!("^(?:{pattern})")).map_err(|e| BadFilter {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

/// The inherited package list of `tag` (Koji's `readPackageList` with
/// `inherit`): the tag's own entries, then each walk entry's tag's entries
/// for packages not seen yet whose names match every filter of the entry.
/// Blocked entries are kept (they block).
pub fn inherited_packages(
    tag: TagId,
    walk: &[WalkEntry],
    lists: &HashMap<TagId, Vec<PkgEntry>>,
) -> Result<BTreeMap<String, PkgEntry>, BadFilter> {
    let mut out: BTreeMap<String, PkgEntry> = BTreeMap::new();
    for p in lists.get(&tag).into_iter().flatten() {
        out.insert(p.package.clone(), p.clone());
    }
    let mut cache: HashMap<String, regex::Regex> = HashMap::new();
    for e in walk {
        for f in &e.filter {
            if !cache.contains_key(f) {
                cache.insert(f.clone(), compile_filter(f)?);
            }
        }
        let filters: Vec<&regex::Regex> = e.filter.iter().map(|f| &cache[f]).collect();
        for p in lists.get(&e.link.parent).into_iter().flatten() {
            if out.contains_key(&p.package) {
                continue;
            }
            if filters.iter().all(|r| r.is_match(&p.package)) {
                out.insert(p.package.clone(), p.clone());
            }
        }
    }
    Ok(out)
}

/// A build in a tag.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tagged {
    pub nvr: String,
    pub package: String,
    pub tag: TagId,
    /// The event that tagged it.
    pub tag_event: i64,
    pub complete: bool,
}

/// The builds of `tag` (Koji's `readTaggedBuilds`): the tag, then (with
/// `inherit`) each tag of the walk; in each tag most recently tagged first;
/// only complete builds of packages listed and not blocked in the tag's
/// inherited package list; with `latest` only the first build seen per
/// package, so a build in the child masks a newer one in a parent.
pub fn tagged_builds(
    tag: TagId,
    walk: &[WalkEntry],
    inherit: bool,
    latest: bool,
    packages: &BTreeMap<String, PkgEntry>,
    listings: &HashMap<TagId, Vec<Tagged>>,
) -> Vec<Tagged> {
    let mut tags = vec![tag];
    if inherit {
        tags.extend(walk.iter().map(|e| e.link.parent));
    }
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut out = Vec::new();
    for t in tags {
        let mut builds: Vec<&Tagged> = listings.get(&t).into_iter().flatten().filter(|b| b.complete).collect();
        builds.sort_by_key(|b| std::cmp::Reverse(b.tag_event));
        for b in builds {
            match packages.get(&b.package) {
                Some(p) if !p.blocked => {}
                _ => continue,
            }
            if latest {
                if seen.contains_key(b.package.as_str()) {
                    continue;
                }
                seen.insert(&b.package, ());
            }
            out.push(b.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(child: TagId, parent: TagId, priority: i64) -> Link {
        Link {
            child,
            parent,
            priority,
            maxdepth: None,
            intransitive: false,
            noconfig: false,
            pkg_filter: String::new(),
        }
    }

    fn parents(walk: &[WalkEntry]) -> Vec<(TagId, i64, Option<i64>)> {
        walk.iter().map(|e| (e.link.parent, e.currdepth, e.nextdepth)).collect()
    }

    #[test]
    fn depth_first_by_priority_with_loops_pruned() {
        // 1 → {2 (prio 10), 3 (prio 5)}; 3 → 4; 2 → 4; 4 → 1 (a loop).
        let links = LinkSet(vec![
            link(1, 2, 10),
            link(1, 3, 5),
            link(3, 4, 0),
            link(2, 4, 0),
            link(4, 1, 0),
        ]);
        let w = full_inheritance(&links, 1, false);
        // 3 first (lower priority), its ancestor 4, then 2; 4 again under 2
        // is skipped (the first visit was as strong); 4 → 1 is a loop.
        assert_eq!(parents(&w), [(3, 1, None), (4, 2, None), (2, 1, None)]);
    }

    #[test]
    fn maxdepth_propagates_and_revisits_happen_when_stronger() {
        // 1 → 2 (maxdepth 1) → 3 → 4; 1 → 5 → 3.
        let mut l12 = link(1, 2, 0);
        l12.maxdepth = Some(1);
        let links = LinkSet(vec![l12, link(2, 3, 0), link(3, 4, 0), link(1, 5, 1), link(5, 3, 0)]);
        let w = full_inheritance(&links, 1, false);
        // Under 2 the budget is 1: 3 is reached with nextdepth 0 and its
        // parents are not walked. Through 5, 3 is revisited with an
        // unlimited budget, and 4 follows.
        assert_eq!(
            parents(&w),
            [
                (2, 1, Some(1)),
                (3, 2, Some(0)),
                (5, 1, None),
                (3, 2, None),
                (4, 3, None)
            ]
        );
    }

    #[test]
    fn intransitive_links_only_from_the_root() {
        let mut l23 = link(2, 3, 0);
        l23.intransitive = true;
        let mut l14 = link(1, 4, 1);
        l14.intransitive = true;
        let links = LinkSet(vec![link(1, 2, 0), l23, l14]);
        assert_eq!(
            parents(&full_inheritance(&links, 1, false)),
            [(2, 1, None), (4, 1, None)]
        );
        // Reversed: intransitive links are listed but not followed.
        let rev = full_inheritance(&links, 3, true);
        let children: Vec<TagId> = rev.iter().map(|e| e.link.child).collect();
        assert_eq!(children, [2]);
    }

    #[test]
    fn filters_accumulate_and_make_earlier_visits_insufficient() {
        let mut l12 = link(1, 2, 0);
        l12.pkg_filter = "^kernel".into();
        let mut l23 = link(2, 3, 0);
        l23.pkg_filter = "kernel-rt".into();
        let links = LinkSet(vec![l12, l23, link(1, 3, 1)]);
        let w = full_inheritance(&links, 1, false);
        assert_eq!(w[1].filter, ["^kernel", "kernel-rt"]);
        // 3 again, without filters: the filtered visit was weaker.
        assert_eq!(parents(&w), [(2, 1, None), (3, 2, None), (3, 1, None)]);
        assert!(w[2].filter.is_empty());
        let mut lists = HashMap::new();
        lists.insert(
            3,
            vec![
                PkgEntry {
                    package: "kernel-rt".into(),
                    tag: 3,
                    owner: "o".into(),
                    blocked: false,
                },
                PkgEntry {
                    package: "bash".into(),
                    tag: 3,
                    owner: "o".into(),
                    blocked: false,
                },
            ],
        );
        lists.insert(
            2,
            vec![PkgEntry {
                package: "kernel".into(),
                tag: 2,
                owner: "o".into(),
                blocked: true,
            }],
        );
        let pkgs = inherited_packages(1, &w, &lists).expect("filters compile");
        assert_eq!(pkgs.keys().collect::<Vec<_>>(), ["bash", "kernel", "kernel-rt"]);
        assert!(pkgs["kernel"].blocked);
        assert!(compile_filter("(").is_err());
    }

    #[test]
    fn build_config_first_wins_blocked_hides_noconfig_skips() {
        let mut l13 = link(1, 3, 1);
        l13.noconfig = true;
        let links = LinkSet(vec![link(1, 2, 0), l13]);
        let w = full_inheritance(&links, 1, false);
        let mut configs = HashMap::new();
        let cfg = |name: &str, arches: Option<&str>, extra: &[(&str, bool, i64)]| TagConfig {
            name: name.into(),
            arches: arches.map(str::to_string),
            extra: extra
                .iter()
                .map(|(k, b, v)| (k.to_string(), (*b, serde_json::json!(v))))
                .collect(),
        };
        configs.insert(1, cfg("child", None, &[("a", false, 1), ("hidden", true, 0)]));
        configs.insert(
            2,
            cfg(
                "parent",
                Some("amd64"),
                &[("a", false, 2), ("b", false, 2), ("hidden", false, 2)],
            ),
        );
        configs.insert(3, cfg("noconf", Some("arm64"), &[("c", false, 3)]));
        let c = build_config(1, &w, &configs);
        assert_eq!(
            c.arches.as_ref().map(|a| (a.value.as_str(), a.from.as_str())),
            Some(("amd64", "parent"))
        );
        assert_eq!(c.extra["a"].value, 1);
        assert_eq!(c.extra["b"].from, "parent");
        assert!(!c.extra.contains_key("hidden") && !c.extra.contains_key("c"));
    }

    #[test]
    fn latest_is_the_first_seen_so_the_child_masks_the_parent() {
        let links = LinkSet(vec![link(1, 2, 0)]);
        let w = full_inheritance(&links, 1, false);
        let pkg = |p: &str, t| PkgEntry {
            package: p.into(),
            tag: t,
            owner: "o".into(),
            blocked: false,
        };
        let mut lists = HashMap::new();
        lists.insert(2, vec![pkg("os", 2), pkg("gone", 2)]);
        lists.insert(
            1,
            vec![PkgEntry {
                blocked: true,
                ..pkg("gone", 1)
            }],
        );
        let packages = inherited_packages(1, &w, &lists).expect("ok");
        let b = |nvr: &str, p: &str, t, ev, complete| Tagged {
            nvr: nvr.into(),
            package: p.into(),
            tag: t,
            tag_event: ev,
            complete,
        };
        let mut listings = HashMap::new();
        listings.insert(1, vec![b("os-1.0-1", "os", 1, 10, true)]);
        listings.insert(
            2,
            vec![
                b("os-2.0-1", "os", 2, 20, true),
                b("os-3.0-1", "os", 2, 30, false),
                b("gone-1-1", "gone", 2, 5, true),
            ],
        );
        let latest = tagged_builds(1, &w, true, true, &packages, &listings);
        assert_eq!(latest.iter().map(|t| t.nvr.as_str()).collect::<Vec<_>>(), ["os-1.0-1"]);
        let all = tagged_builds(1, &w, true, false, &packages, &listings);
        assert_eq!(
            all.iter().map(|t| t.nvr.as_str()).collect::<Vec<_>>(),
            ["os-1.0-1", "os-2.0-1"]
        );
        assert!(tagged_builds(1, &w, false, false, &packages, &listings).len() == 1);
    }
}
