//! A tag's name is versioned like the rest of the tag (docs/hub.md,
//! "Versioned data"): deleting or renaming a tag is an event, every read as
//! of an earlier event still answers what it answered then, and the name
//! may go to a new tag. Each test runs against SQLite and PostgreSQL; the
//! last ones start from a database that older versions of the hub wrote.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use kiln_hub::db::Db;
use kiln_hub::model::*;
use serde_json::{Value, json};

fn boot() -> Principal {
    Principal {
        id: None,
        name: "test".into(),
        admin: true,
        perms: vec![],
        host: None,
    }
}

async fn admin(db: &Db) -> Principal {
    let perms = vec!["admin".to_string()];
    let id = db
        .create_user(&boot(), "admin", None, &perms, "user")
        .await
        .expect("user");
    Principal {
        id: Some(id),
        name: "admin".into(),
        admin: true,
        perms,
        host: None,
    }
}

async fn tag(db: &Db, who: &Principal, t: NewTag) -> TagInfo {
    db.create_tag(who, &t).await.expect("tag")
}

fn named(name: &str) -> NewTag {
    NewTag {
        name: name.into(),
        ..Default::default()
    }
}

async fn link(db: &Db, who: &Principal, child: &str, parent: &str, priority: i64) {
    let l = LinkIn {
        parent: parent.into(),
        priority,
        maxdepth: None,
        intransitive: false,
        noconfig: false,
        pkg_filter: String::new(),
    };
    db.add_link(who, child, &l).await.expect("link");
}

async fn package(db: &Db, who: &Principal, tag: &str, package: &str, blocked: bool) {
    let p = PackageIn {
        package: package.into(),
        owner: None,
        blocked,
    };
    db.set_package(who, tag, &p, false).await.expect("package");
}

/// A COMPLETE build with no files, tagged into `tag`.
async fn tagged_build(db: &Db, who: &Principal, tag: &str, name: &str, version: &str) {
    let b = NewBuild {
        name: name.into(),
        version: version.into(),
        release: "1".into(),
        manifest: None,
        extra: None,
        artifacts: vec![],
    };
    let b = db.create_build(who, &b).await.expect("build");
    db.finish_build(who, &b.nvr, "COMPLETE").await.expect("complete");
    db.tag_build(who, tag, &b.nvr, false).await.expect("tag build");
}

fn value<T: serde::Serialize>(what: &str, r: kiln_hub::error::Result<T>) -> Value {
    match r {
        Ok(v) => serde_json::to_value(v).expect("json"),
        Err(e) => json!({ "error": e.code, "read": what }),
    }
}

/// Every read that involves tag `x` as of `ev`: `x` itself, its parent
/// `p` and child `c`, the tag list, and target `t`.
async fn reads(db: &Db, ev: i64) -> BTreeMap<&'static str, Value> {
    let e = Some(ev);
    let mut out = BTreeMap::new();
    out.insert("tag x", value("tag x", db.tag_info("x", e).await));
    out.insert("tag list", value("tag list", db.list_tags(0, 100, e).await));
    for (label, tag, reverse) in [
        ("parents of x", "x", false),
        ("children of x", "x", true),
        ("parents of c", "c", false),
        ("children of p", "p", true),
    ] {
        out.insert(label, value(label, db.links(tag, reverse, e).await));
    }
    for (label, tag, reverse) in [
        ("walk of x", "x", false),
        ("reverse walk of x", "x", true),
        ("walk of c", "c", false),
        ("reverse walk of p", "p", true),
    ] {
        out.insert(label, value(label, db.full_inheritance(tag, reverse, e).await));
    }
    for (label, tag) in [("config of x", "x"), ("config of c", "c")] {
        out.insert(label, value(label, db.build_config(tag, e).await));
    }
    for (label, tag, inherit) in [
        ("packages of x", "x", false),
        ("inherited packages of x", "x", true),
        ("inherited packages of c", "c", true),
    ] {
        out.insert(label, value(label, db.packages(tag, inherit, e).await));
    }
    for (label, tag, inherit, latest) in [
        ("tagged in x", "x", false, false),
        ("tagged from c", "c", true, false),
        ("latest from c", "c", true, true),
    ] {
        out.insert(label, value(label, db.list_tagged(tag, inherit, latest, e).await));
    }
    out.insert("target t", value("target t", db.target("t", e).await));
    for (label, tag) in [("history of x", "x"), ("history of c", "c"), ("history of p", "p")] {
        out.insert(label, value(label, db.tag_history(tag, e).await));
    }
    out
}

fn assert_same(then: &BTreeMap<&str, Value>, now: &BTreeMap<&str, Value>, when: &str) {
    for (label, v) in then {
        assert_eq!(Some(v), now.get(label), "{label} as of the event, {when}");
    }
}

/// The tag `x` (config, extra, parent `p`, child `c`, packages, builds in
/// `p` and `x`, a target over it); returns the event after all of it.
async fn populate(db: &Db, a: &Principal) -> i64 {
    tag(db, a, named("p")).await;
    let x = NewTag {
        name: "x".into(),
        arches: Some("x86_64 aarch64".into()),
        perm: Some("admin".into()),
        extra: [
            ("rpm.macro.dist".to_string(), json!(".x")),
            ("k".to_string(), json!({"n": 1})),
        ]
        .into(),
        parent: Some("p".into()),
        ..Default::default()
    };
    tag(db, a, x).await;
    tag(db, a, named("c")).await;
    link(db, a, "c", "x", 0).await;
    for t in ["p", "x"] {
        package(db, a, t, "fw", false).await;
    }
    package(db, a, "x", "tool", false).await;
    package(db, a, "c", "doc", true).await;
    tagged_build(db, a, "p", "fw", "3").await;
    tagged_build(db, a, "x", "fw", "1").await;
    tagged_build(db, a, "x", "tool", "1").await;
    tagged_build(db, a, "x", "fw", "2").await;
    let t = Target {
        name: "t".into(),
        build_tag: "x".into(),
        dest_tag: "x".into(),
        macros: [("dist".to_string(), ".t".to_string())].into(),
    };
    db.put_target(a, &t, true, None).await.expect("target");
    db.last_event().await.expect("event")
}

both!(a_deleted_tag_stays_in_history, |t| async move {
    let db = common::open(&t).await;
    let a = admin(&db).await;
    let e = populate(&db, &a).await;
    let old = db.tag_info("x", None).await.expect("x");
    db.delete_target(&a, "t").await.expect("target deleted");
    let then = reads(&db, e).await;
    // The reads as of e name x and its relatives as they were.
    assert_eq!(then["tag x"]["name"], "x");
    assert_eq!(then["parents of c"][0]["parent"], "x");
    let latest = |label: &str| -> Vec<(String, String)> {
        let rows = then[label].as_array().cloned().unwrap_or_default();
        rows.iter()
            .map(|b| (b["nvr"].to_string(), b["tag"].to_string()))
            .collect()
    };
    let expect = [("fw-2-1", "x"), ("tool-1-1", "x")].map(|(n, t)| (json!(n).to_string(), json!(t).to_string()));
    assert_eq!(latest("latest from c"), expect);
    assert_eq!(latest("tagged from c").len(), 4);
    assert_eq!(then["target t"]["build_tag"], "x");
    assert!(then.values().all(|v| v.get("error").is_none()), "{then:#?}");

    db.delete_tag(&a, "x").await.expect("delete");
    let deleted = db.last_event().await.expect("event");
    assert_same(&then, &reads(&db, e).await, "after the deletion");
    // Now, and as of the deletion, x is gone.
    for ev in [None, Some(deleted)] {
        assert_eq!(db.tag_info("x", ev).await.expect_err("gone").code, "not_found");
        assert_eq!(db.links("x", true, ev).await.expect_err("gone").code, "not_found");
        assert_eq!(db.packages("x", false, ev).await.expect_err("gone").code, "not_found");
        assert_eq!(
            db.list_tagged("x", false, false, ev).await.expect_err("gone").code,
            "not_found"
        );
        let names: Vec<String> = db
            .list_tags(0, 100, ev)
            .await
            .expect("tags")
            .items
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["c", "p"]);
        assert!(db.links("c", false, ev).await.expect("links").is_empty());
        assert!(db.links("p", true, ev).await.expect("links").is_empty());
        assert_eq!(
            walk_tags(&db.full_inheritance("c", false, ev).await.expect("walk")),
            Vec::<String>::new()
        );
    }
    // Its history still reads by its name, deletion included.
    let h = db.tag_history("x", None).await.expect("history");
    let revoked: Vec<&str> = h
        .iter()
        .filter(|h| h.event == deleted && h.change == "revoked")
        .map(|h| h.table.as_str())
        .collect();
    for table in ["name", "config", "extra", "inheritance", "package", "build"] {
        assert!(revoked.contains(&table), "{table} revoked by the deletion: {h:#?}");
    }
    let name = h.iter().find(|h| h.table == "name").expect("name entry");
    assert_eq!(
        (name.detail["name"].as_str(), name.change.as_str()),
        (Some("x"), "created")
    );

    // The name is free: a new tag, empty, with another id.
    let new = tag(&db, &a, named("x")).await;
    assert_ne!(new.id, old.id);
    assert_eq!((new.arches.as_deref(), new.extra.len()), (None, 0));
    assert!(db.links("x", false, None).await.expect("links").is_empty());
    assert!(db.links("x", true, None).await.expect("links").is_empty());
    assert!(db.packages("x", true, None).await.expect("packages").is_empty());
    assert!(db.list_tagged("x", true, false, None).await.expect("tagged").is_empty());
    let h = db.tag_history("x", None).await.expect("history of the new x");
    assert!(h.iter().all(|h| h.event > deleted), "{h:#?}");
    // Reads as of e still give the old one.
    assert_same(&then, &reads(&db, e).await, "after the name was taken again");
    assert_eq!(
        db.tag_info("x", Some(deleted)).await.expect_err("gone then").code,
        "not_found"
    );
    // The new x can take the old one's place.
    link(&db, &a, "c", "x", 0).await;
    assert_eq!(db.links("c", false, None).await.expect("links")[0].parent, "x");
    assert_same(&then, &reads(&db, e).await, "after the new x got a child");
});

fn walk_tags(w: &[WalkOut]) -> Vec<String> {
    w.iter().map(|e| e.tag.clone()).collect()
}

both!(a_renamed_tag_keeps_its_old_name_in_history, |t| async move {
    let db = common::open(&t).await;
    let a = admin(&db).await;
    let e = populate(&db, &a).await;
    let then = reads(&db, e).await;
    let old = db.tag_info("x", None).await.expect("x");
    let edit = TagEdit {
        rename: Some("y".into()),
        ..Default::default()
    };
    let renamed = db.edit_tag(&a, "x", &edit).await.expect("rename");
    assert_eq!((renamed.id, renamed.name.as_str()), (old.id, "y"));
    let at = db.last_event().await.expect("event");
    // As of e: still x (with everything x had); now: y, and no x.
    assert_same(&then, &reads(&db, e).await, "after the rename");
    assert_eq!(db.tag_info("y", Some(e)).await.expect_err("not yet").code, "not_found");
    assert_eq!(db.tag_info("x", None).await.expect_err("renamed").code, "not_found");
    assert_eq!(db.links("c", false, None).await.expect("links")[0].parent, "y");
    assert_eq!(db.target("t", None).await.expect("target").build_tag, "y");
    let tagged = db.list_tagged("c", true, true, None).await.expect("tagged");
    assert!(tagged.iter().any(|b| b.tag == "y"), "{tagged:#?}");
    // The rename is in the history, and links made before it keep the
    // names they were made with.
    let h = db.tag_history("y", None).await.expect("history");
    let names: Vec<(String, String)> = h
        .iter()
        .filter(|h| h.table == "name")
        .map(|h| {
            (
                h.change.clone(),
                h.detail["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expect = [("created", "x"), ("created", "y"), ("revoked", "x")];
    assert_eq!(names, expect.map(|(c, n)| (c.to_string(), n.to_string())));
    assert!(h.iter().any(|h| h.event == at && h.table == "name"), "{h:#?}");
    assert!(
        h.iter().any(|h| h.table == "inheritance" && h.detail["parent"] == "x"),
        "{h:#?}"
    );
    // Renaming to a name in use is refused; the freed name can be taken.
    let edit = TagEdit {
        rename: Some("c".into()),
        ..Default::default()
    };
    assert_eq!(db.edit_tag(&a, "y", &edit).await.expect_err("taken").code, "conflict");
    let new = tag(&db, &a, named("x")).await;
    assert_ne!(new.id, old.id);
    assert_same(&then, &reads(&db, e).await, "after x was taken again");
});

both!(a_name_is_one_tags_at_a_time, |t| async move {
    let db = common::open(&t).await;
    let a = admin(&db).await;
    tag(&db, &a, named("x")).await;
    let e = db.create_tag(&a, &named("x")).await.expect_err("exists");
    assert_eq!(e.code, "conflict");
    tag(&db, &a, named("z")).await;
    let edit = TagEdit {
        rename: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(db.edit_tag(&a, "z", &edit).await.expect_err("exists").code, "conflict");
    // Renaming a tag to its own name changes nothing.
    let before = db.last_event().await.expect("event");
    let same = TagEdit {
        rename: Some("z".into()),
        ..Default::default()
    };
    db.edit_tag(&a, "z", &same).await.expect("same name");
    let h = db.tag_history("z", None).await.expect("history");
    assert!(h.iter().all(|h| h.event <= before), "{h:#?}");
});

// Databases written before names were versioned: a deleted tag's name was
// replaced by `NAME#deleted-ID`, and renames left no trace.

/// Runs the migrations before the one that versions names.
async fn old_schema(db: &common::TestDb) {
    let kind = if db.url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(kind);
    let mut m = sqlx::migrate::Migrator::new(dir).await.expect("migrations");
    m.migrations = m
        .migrations
        .iter()
        .filter(|m| m.version < 6)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    if kind == "sqlite" {
        let url = format!("{}?mode=rwc", db.url);
        let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
        m.run(&pool).await.expect("old migrations");
        sqlx::raw_sql(OLD_HISTORY).execute(&pool).await.expect("old history");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        m.run(&pool).await.expect("old migrations");
        sqlx::raw_sql(OLD_HISTORY).execute(&pool).await.expect("old history");
        pool.close().await;
    }
}

/// What the hub wrote before (ids count from 1 in a new database):
/// events 1-5: tag a (1), tag b (2) inheriting from a, a package on a, a
/// deleted; 6: a new tag a (3); 7-8: tag c (4), deleted; 9-11: tag d (5),
/// edited, deleted; 12: tag y (6), later renamed from another name to y;
/// 13-14: another y (7), deleted.
const OLD_HISTORY: &str = "
INSERT INTO events (time, user_id, action) VALUES
    (100, NULL, 'create tag a'), (101, NULL, 'create tag b'), (102, NULL, 'add inheritance b -> a'),
    (103, NULL, 'add package fw on a'), (104, NULL, 'delete tag a'), (105, NULL, 'create tag a'),
    (106, NULL, 'create tag c'), (107, NULL, 'delete tag c'), (108, NULL, 'create tag d'),
    (109, NULL, 'edit tag d'), (110, NULL, 'delete tag d'), (111, NULL, 'create tag w'),
    (112, NULL, 'create tag y'), (113, NULL, 'delete tag y');
INSERT INTO tags (name) VALUES ('a#deleted-1'), ('b'), ('a'), ('c#deleted-4'), ('d#deleted-5'), ('y'),
    ('y#deleted-7');
INSERT INTO tag_config (tag_id, arches, perm, locked, create_event, revoke_event) VALUES
    (1, 'x86_64', NULL, FALSE, 1, 5), (2, NULL, NULL, FALSE, 2, NULL), (3, 'riscv64', NULL, FALSE, 6, NULL),
    (4, NULL, NULL, FALSE, 7, 8), (5, NULL, NULL, FALSE, 9, 10), (5, 'ppc64le', NULL, FALSE, 10, 11),
    (6, NULL, NULL, FALSE, 12, NULL), (7, NULL, NULL, FALSE, 13, 14);
INSERT INTO tag_inheritance (tag_id, parent_id, priority, maxdepth, intransitive, noconfig, pkg_filter,
    create_event, revoke_event) VALUES (2, 1, 0, NULL, FALSE, FALSE, '', 3, 5);
INSERT INTO tag_packages (tag_id, package, owner, blocked, create_event, revoke_event) VALUES
    (1, 'fw', 'admin', FALSE, 4, 5);
";

both!(old_deleted_tags_get_their_names_back, |t| async move {
    old_schema(&t).await;
    let db = common::open(&t).await;
    let info = |name: &'static str, ev: Option<i64>| {
        let db = &db;
        async move { db.tag_info(name, ev).await.map(|t| (t.id, t.name, t.arches)) }
    };
    let some = |id: i64, name: &str, arches: Option<&str>| (id, name.to_string(), arches.map(str::to_string));
    // a: the first one until its deletion (event 5), the second one after.
    assert_eq!(info("a", Some(4)).await.expect("a then"), some(1, "a", Some("x86_64")));
    assert_eq!(info("a", Some(5)).await.expect_err("none").code, "not_found");
    assert_eq!(info("a", None).await.expect("a now"), some(3, "a", Some("riscv64")));
    let links = db.links("b", false, Some(4)).await.expect("links then");
    assert_eq!(links.iter().map(|l| l.parent.as_str()).collect::<Vec<_>>(), ["a"]);
    let pk = db.packages("a", false, Some(4)).await.expect("packages then");
    assert_eq!(
        pk.iter()
            .map(|p| (p.package.as_str(), p.tag.as_str()))
            .collect::<Vec<_>>(),
        [("fw", "a")]
    );
    let names = |p: Page<TagInfo>| p.items.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(db.list_tags(0, 100, Some(4)).await.expect("tags")), ["a", "b"]);
    assert_eq!(names(db.list_tags(0, 100, None).await.expect("tags")), ["a", "b", "y"]);
    // c and d: their names until their deletions, their history by name.
    assert_eq!(info("c", Some(7)).await.expect("c then"), some(4, "c", None));
    assert_eq!(info("c", None).await.expect_err("deleted").code, "not_found");
    assert_eq!(info("d", Some(9)).await.expect("d then"), some(5, "d", None));
    assert_eq!(
        info("d", Some(10)).await.expect("d then"),
        some(5, "d", Some("ppc64le"))
    );
    let h = db.tag_history("d", None).await.expect("history of d");
    let name: Vec<(i64, &str, &str)> = h
        .iter()
        .filter(|h| h.table == "name")
        .map(|h| {
            (
                h.event,
                h.change.as_str(),
                h.detail["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(name, [(9, "created", "d"), (11, "revoked", "d")]);
    let h = db.tag_history("b", None).await.expect("history of b");
    assert!(
        h.iter().any(|h| h.table == "inheritance" && h.detail["parent"] == "a"),
        "{h:#?}"
    );
    assert!(h.iter().all(|h| !h.detail.to_string().contains('#')), "{h:#?}");
    // y: the deleted one until its deletion; the other one (whose earlier
    // name is lost) only from then, so no event has two tags named y.
    assert_eq!(info("y", Some(13)).await.expect("y then").0, 7);
    assert_eq!(info("y", Some(12)).await.expect_err("unnamed then").code, "not_found");
    assert_eq!(info("y", None).await.expect("y now").0, 6);
    // The hub goes on: a deleted tag's name is free, new ids follow.
    let a = admin(&db).await;
    let c = tag(&db, &a, named("c")).await;
    assert_eq!(c.id, 8);
    assert_eq!(info("c", Some(7)).await.expect("c then"), some(4, "c", None));
    db.delete_tag(&a, "a").await.expect("delete a");
    assert_eq!(info("a", Some(6)).await.expect("a then"), some(3, "a", Some("riscv64")));
});
