//! The hub's rules (docs/hub.md), each run against SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_hub::db::Db;
use kiln_hub::model::*;
use serde_json::json;

async fn user(db: &Db, name: &str, perms: &[&str]) -> Principal {
    let boot = Principal {
        id: None,
        name: "test".into(),
        admin: true,
        perms: vec![],
        host: None,
    };
    let perms: Vec<String> = perms.iter().map(|p| p.to_string()).collect();
    let id = db.create_user(&boot, name, None, &perms, "user").await.expect("user");
    Principal {
        id: Some(id),
        name: name.into(),
        admin: perms.iter().any(|p| p == "admin"),
        perms,
        host: None,
    }
}

async fn tag(db: &Db, who: &Principal, name: &str) {
    db.create_tag(
        who,
        &NewTag {
            name: name.into(),
            ..Default::default()
        },
    )
    .await
    .expect("tag");
}

async fn link(db: &Db, who: &Principal, child: &str, parent: &str, priority: i64, f: impl FnOnce(&mut LinkIn)) {
    let mut l = LinkIn {
        parent: parent.into(),
        priority,
        maxdepth: None,
        intransitive: false,
        noconfig: false,
        pkg_filter: String::new(),
    };
    f(&mut l);
    db.add_link(who, child, &l).await.expect("link");
}

/// A COMPLETE build with no files.
async fn build(db: &Db, who: &Principal, name: &str, version: &str) -> String {
    let b = db
        .create_build(
            who,
            &NewBuild {
                name: name.into(),
                version: version.into(),
                release: "1".into(),
                manifest: None,
                extra: None,
                artifacts: vec![],
            },
        )
        .await
        .expect("build");
    db.finish_build(who, &b.nvr, "COMPLETE").await.expect("complete");
    b.nvr
}

fn walk(w: &[WalkOut]) -> Vec<(String, i64)> {
    w.iter().map(|e| (e.tag.clone(), e.currdepth)).collect()
}

both!(full_inheritance_follows_kojis_rules, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    for n in ["leaf", "p1", "p2", "g1", "g2", "root", "x", "side"] {
        tag(&db, &a, n).await;
    }
    // Siblings in priority order; p2's link limits the depth to 1.
    link(&db, &a, "leaf", "p2", 10, |l| l.maxdepth = Some(1)).await;
    link(&db, &a, "leaf", "p1", 0, |_| {}).await;
    link(&db, &a, "p1", "g1", 0, |_| {}).await;
    link(&db, &a, "g1", "root", 0, |_| {}).await;
    link(&db, &a, "p2", "g2", 0, |_| {}).await;
    // Intransitive: followed only from the tag being walked.
    link(&db, &a, "p1", "x", 5, |l| l.intransitive = true).await;
    // A cycle back to the start is pruned.
    link(&db, &a, "root", "leaf", 0, |_| {}).await;
    let w = db.full_inheritance("leaf", false, None).await.expect("walk");
    assert_eq!(
        walk(&w),
        [
            ("p1".into(), 1),
            ("g1".into(), 2),
            ("root".into(), 3),
            ("p2".into(), 1),
            ("g2".into(), 2)
        ],
        "{w:#?}"
    );
    // maxdepth 1 on leaf -> p2: p2's parents, but nothing above them.
    assert_eq!((w[3].nextdepth, w[4].nextdepth), (Some(1), Some(0)));
    // From p1 itself the intransitive link counts.
    let w = db.full_inheritance("p1", false, None).await.expect("walk");
    assert!(walk(&w).contains(&("x".into(), 1)), "{w:#?}");

    // Revisits: g2 first reached with no depth left (its parent is cut
    // off), then again through an unlimited link: walked again from there.
    link(&db, &a, "g2", "side", 0, |_| {}).await;
    let w = db.full_inheritance("leaf", false, None).await.expect("walk");
    assert!(!w.iter().any(|e| e.tag == "side"), "{w:#?}");
    link(&db, &a, "leaf", "g2", 20, |_| {}).await;
    let w = db.full_inheritance("leaf", false, None).await.expect("walk");
    let names: Vec<(String, i64)> = walk(&w);
    assert_eq!(
        names,
        [
            ("p1".into(), 1),
            ("g1".into(), 2),
            ("root".into(), 3),
            ("p2".into(), 1),
            ("g2".into(), 2),
            ("g2".into(), 1),
            ("side".into(), 2)
        ],
        "{w:#?}"
    );
    // A tag reached again with no stronger budget is not walked twice.
    link(&db, &a, "leaf", "g1", 30, |_| {}).await;
    let again = db.full_inheritance("leaf", false, None).await.expect("walk");
    assert_eq!(walk(&again), names);

    // Reverse: the children.
    let r = db.full_inheritance("root", true, None).await.expect("reverse");
    let names: Vec<String> = r.iter().map(|e| e.tag.clone()).collect();
    assert_eq!(names[..3], ["g1", "p1", "leaf"], "{r:#?}");

    // Cumulative filters.
    tag(&db, &a, "f-child").await;
    tag(&db, &a, "f-mid").await;
    tag(&db, &a, "f-top").await;
    link(&db, &a, "f-child", "f-mid", 0, |l| l.pkg_filter = "^cam-".into()).await;
    link(&db, &a, "f-mid", "f-top", 0, |l| l.pkg_filter = "-fw$".into()).await;
    let w = db.full_inheritance("f-child", false, None).await.expect("walk");
    assert_eq!(w[1].filter, ["^cam-", "-fw$"]);
});

both!(build_config_arches_extra_blocking_noconfig, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    let mk = |name: &str, arches: Option<&str>, extra: serde_json::Value| NewTag {
        name: name.into(),
        arches: arches.map(str::to_string),
        extra: serde_json::from_value(extra).expect("extra"),
        ..Default::default()
    };
    db.create_tag(
        &a,
        &mk("top", Some("x86_64 aarch64"), json!({"a": 1, "b": "top", "c": true})),
    )
    .await
    .expect("top");
    db.create_tag(&a, &mk("cfg", Some("riscv64"), json!({"d": "cfg"})))
        .await
        .expect("cfg");
    db.create_tag(&a, &mk("mid", None, json!({"b": "mid"})))
        .await
        .expect("mid");
    db.create_tag(&a, &mk("child", None, json!({}))).await.expect("child");
    link(&db, &a, "child", "cfg", 0, |l| l.noconfig = true).await;
    link(&db, &a, "child", "mid", 1, |_| {}).await;
    link(&db, &a, "mid", "top", 0, |_| {}).await;
    db.edit_tag(
        &a,
        "mid",
        &TagEdit {
            block_extra: vec!["c".into()],
            ..Default::default()
        },
    )
    .await
    .expect("block");
    let bc = db.build_config("child", None).await.expect("config");
    // The noconfig parent gives neither arches nor extra.
    assert_eq!(
        bc.arches.as_ref().map(|s| (s.value.clone(), s.from.clone())),
        Some((json!("x86_64 aarch64"), "top".into()))
    );
    assert_eq!(
        bc.extra["b"],
        Sourced {
            value: json!("mid"),
            from: "mid".into()
        }
    );
    assert_eq!(
        bc.extra["a"],
        Sourced {
            value: json!(1),
            from: "top".into()
        }
    );
    assert!(!bc.extra.contains_key("c"), "blocked keys are not inherited: {bc:?}");
    assert!(!bc.extra.contains_key("d"), "noconfig: {bc:?}");
    // Pages of tags, with their extra.
    let page = db.list_tags(1, 2, None).await.expect("page");
    assert_eq!(page.total, 4);
    let names: Vec<&str> = page.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["child", "mid"]);
    assert_eq!(
        page.items[1].extra["c"],
        ExtraValue {
            value: None,
            blocked: true
        }
    );
    // Removing the block brings it back.
    db.edit_tag(
        &a,
        "mid",
        &TagEdit {
            remove_extra: vec!["c".into()],
            ..Default::default()
        },
    )
    .await
    .expect("unblock");
    assert_eq!(
        db.build_config("child", None).await.expect("config").extra["c"].value,
        json!(true)
    );
});

both!(packages_inherit_with_blocks_and_filters, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    for n in ["base", "mid", "dev"] {
        tag(&db, &a, n).await;
    }
    link(&db, &a, "mid", "base", 0, |_| {}).await;
    link(&db, &a, "dev", "mid", 0, |l| l.pkg_filter = "^(cam|kernel)".into()).await;
    for p in ["cam-fw", "kernel", "tools"] {
        db.set_package(
            &a,
            "base",
            &PackageIn {
                package: p.into(),
                owner: None,
                blocked: false,
            },
            false,
        )
        .await
        .expect("pkg");
    }
    db.set_package(
        &a,
        "mid",
        &PackageIn {
            package: "kernel".into(),
            owner: None,
            blocked: true,
        },
        false,
    )
    .await
    .expect("block");
    let l = db.packages("dev", true, None).await.expect("list");
    let got: Vec<(String, String, bool)> = l.into_iter().map(|p| (p.package, p.tag, p.blocked)).collect();
    assert_eq!(
        got,
        [
            ("cam-fw".into(), "base".into(), false),
            ("kernel".into(), "mid".into(), true)
        ],
        "tools is filtered out, kernel's block on mid wins over base's entry"
    );
    assert!(db.packages("dev", false, None).await.expect("own").is_empty());
    // Unblocking on the child itself overrides the parent's block.
    db.set_package(
        &a,
        "dev",
        &PackageIn {
            package: "kernel".into(),
            owner: Some("k".into()),
            blocked: false,
        },
        false,
    )
    .await
    .expect("own entry");
    let l = db.packages("dev", true, None).await.expect("list");
    assert!(
        l.iter()
            .any(|p| p.package == "kernel" && !p.blocked && p.tag == "dev" && p.owner == "k")
    );
});

both!(list_tagged_latest_masks_newer_builds_in_parents, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    tag(&db, &a, "parent").await;
    tag(&db, &a, "child").await;
    link(&db, &a, "child", "parent", 0, |_| {}).await;
    for p in ["cam-fw", "modem"] {
        db.set_package(
            &a,
            "parent",
            &PackageIn {
                package: p.into(),
                owner: None,
                blocked: false,
            },
            false,
        )
        .await
        .expect("pkg");
    }
    let old = build(&db, &a, "cam-fw", "1.0").await;
    let new = build(&db, &a, "cam-fw", "2.0").await;
    let modem = build(&db, &a, "modem", "7").await;
    db.tag_build(&a, "child", &old, false)
        .await
        .expect("tag old into child");
    db.tag_build(&a, "parent", &new, false)
        .await
        .expect("tag new into parent");
    db.tag_build(&a, "parent", &modem, false).await.expect("tag modem");
    let nvrs = |v: Vec<TaggedOut>| v.into_iter().map(|b| (b.nvr, b.tag)).collect::<Vec<_>>();
    let latest = db.list_tagged("child", true, true, None).await.expect("latest");
    assert_eq!(
        nvrs(latest),
        [(old.clone(), "child".into()), (modem.clone(), "parent".into())],
        "the child's build masks the parent's newer one"
    );
    let all = db.list_tagged("child", true, false, None).await.expect("all");
    assert_eq!(all.len(), 3);
    assert_eq!(
        nvrs(db.list_tagged("child", false, false, None).await.expect("own")),
        [(old.clone(), "child".into())]
    );
    // In one tag, most recently tagged first.
    let again = build(&db, &a, "cam-fw", "0.9").await;
    db.tag_build(&a, "parent", &again, false).await.expect("tag");
    let p = db.list_tagged("parent", false, false, None).await.expect("parent");
    assert_eq!(p[0].nvr, again);
    let pl = db.list_tagged("parent", false, true, None).await.expect("latest");
    assert_eq!(
        nvrs(pl),
        [(again.clone(), "parent".into()), (modem.clone(), "parent".into())]
    );
    // A blocked package disappears from the listing.
    db.set_package(
        &a,
        "child",
        &PackageIn {
            package: "modem".into(),
            owner: None,
            blocked: true,
        },
        false,
    )
    .await
    .expect("block");
    let l = db.list_tagged("child", true, true, None).await.expect("latest");
    assert!(l.iter().all(|b| b.name != "modem"));
});

both!(as_of_event_queries_see_the_past, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    tag(&db, &a, "p").await;
    tag(&db, &a, "c").await;
    db.set_package(
        &a,
        "c",
        &PackageIn {
            package: "fw".into(),
            owner: None,
            blocked: false,
        },
        false,
    )
    .await
    .expect("pkg");
    let b1 = build(&db, &a, "fw", "1").await;
    db.tag_build(&a, "c", &b1, false).await.expect("tag");
    db.edit_tag(
        &a,
        "c",
        &TagEdit {
            extra: [("k".to_string(), json!("v1"))].into(),
            ..Default::default()
        },
    )
    .await
    .expect("extra");
    let e1 = db.last_event().await.expect("event");
    link(&db, &a, "c", "p", 0, |_| {}).await;
    db.untag_build(&a, "c", &b1, false).await.expect("untag");
    db.edit_tag(
        &a,
        "c",
        &TagEdit {
            extra: [("k".to_string(), json!("v2"))].into(),
            locked: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("extra");
    assert!(db.list_tagged("c", false, false, None).await.expect("now").is_empty());
    let then = db.list_tagged("c", false, false, Some(e1)).await.expect("then");
    assert_eq!(then.len(), 1);
    assert!(db.links("c", false, Some(e1)).await.expect("then").is_empty());
    assert_eq!(db.links("c", false, None).await.expect("now").len(), 1);
    let info = db.tag_info("c", Some(e1)).await.expect("then");
    assert_eq!(info.extra["k"].value, Some(json!("v1")));
    assert!(!info.locked);
    assert!(db.tag_info("c", None).await.expect("now").locked);
    // History lists every change with its user.
    let h = db.tag_history("c", None).await.expect("history");
    assert!(h.iter().any(|e| e.table == "build" && e.change == "revoked"));
    assert!(h.iter().all(|e| e.user.as_deref() == Some("admin")));
    assert!(h.windows(2).all(|w| w[0].event <= w[1].event));
});

both!(tagging_rules, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    let dev = user(&db, "dev", &["tag", "build"]).await;
    let qa = user(&db, "qa", &["tag", "qa-release"]).await;
    tag(&db, &a, "t").await;
    db.set_package(
        &a,
        "t",
        &PackageIn {
            package: "fw".into(),
            owner: None,
            blocked: false,
        },
        false,
    )
    .await
    .expect("pkg");
    // Only COMPLETE builds.
    let b = db
        .create_build(
            &dev,
            &NewBuild {
                name: "fw".into(),
                version: "1".into(),
                release: "1".into(),
                manifest: None,
                extra: None,
                artifacts: vec![],
            },
        )
        .await
        .expect("build");
    let e = db.tag_build(&dev, "t", &b.nvr, false).await.expect_err("building");
    assert_eq!(e.code, "conflict");
    db.finish_build(&dev, &b.nvr, "COMPLETE").await.expect("complete");
    // The package must be listed.
    let other = build(&db, &dev, "other", "1").await;
    let e = db.tag_build(&dev, "t", &other, false).await.expect_err("unlisted");
    assert!(e.message.contains("not in tag t's package list"), "{e}");
    db.tag_build(&dev, "t", &b.nvr, false).await.expect("tag");
    // Re-tagging needs force.
    let e = db.tag_build(&dev, "t", &b.nvr, false).await.expect_err("twice");
    assert!(e.message.contains("force"), "{e}");
    db.tag_build(&dev, "t", &b.nvr, true).await.expect("force re-tag");
    assert_eq!(db.list_tagged("t", false, false, None).await.expect("list").len(), 1);
    // Untagging what is not there is an error.
    let e = db.untag_build(&dev, "t", &other, false).await.expect_err("not tagged");
    assert_eq!(e.code, "not_found");
    // Locked: refused, also to admins without force.
    db.edit_tag(
        &a,
        "t",
        &TagEdit {
            locked: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("lock");
    assert_eq!(
        db.untag_build(&dev, "t", &b.nvr, false).await.expect_err("locked").code,
        "locked"
    );
    assert_eq!(
        db.untag_build(&dev, "t", &b.nvr, true)
            .await
            .expect_err("not admin")
            .code,
        "locked"
    );
    assert_eq!(
        db.untag_build(&a, "t", &b.nvr, false)
            .await
            .expect_err("admin needs force")
            .code,
        "locked"
    );
    db.untag_build(&a, "t", &b.nvr, true).await.expect("admin force");
    db.edit_tag(
        &a,
        "t",
        &TagEdit {
            locked: Some(false),
            perm: Some(Some("qa-release".into())),
            ..Default::default()
        },
    )
    .await
    .expect("perm");
    // A custom permission.
    assert_eq!(
        db.tag_build(&dev, "t", &b.nvr, false).await.expect_err("perm").code,
        "forbidden"
    );
    db.tag_build(&qa, "t", &b.nvr, false).await.expect("qa may");
    db.tag_build(&a, "t", &b.nvr, true)
        .await
        .expect("admin passes every check");
});

both!(bad_inputs_change_nothing, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    tag(&db, &a, "c").await;
    tag(&db, &a, "p1").await;
    tag(&db, &a, "p2").await;
    link(&db, &a, "c", "p1", 3, |_| {}).await;
    let before = db.last_event().await.expect("event");
    let l = |parent: &str, priority: i64, filter: &str| LinkIn {
        parent: parent.into(),
        priority,
        maxdepth: None,
        intransitive: false,
        noconfig: false,
        pkg_filter: filter.into(),
    };
    let e = db
        .add_link(&a, "c", &l("p2", 3, ""))
        .await
        .expect_err("duplicate priority");
    assert_eq!(e.code, "conflict");
    assert!(e.message.contains("priority 3"), "{e}");
    let e = db.add_link(&a, "c", &l("p2", 4, "(unclosed")).await.expect_err("regex");
    assert_eq!(e.code, "bad_request");
    assert!(e.message.contains("pkg_filter"), "{e}");
    let e = db.add_link(&a, "nope", &l("p2", 4, "")).await.expect_err("unknown");
    assert_eq!((e.code, e.message.as_str()), ("not_found", "unknown tag `nope`"));
    assert_eq!(
        db.add_link(&a, "c", &l("c", 4, "")).await.expect_err("self").code,
        "bad_request"
    );
    assert_eq!(
        db.add_link(&a, "c", &l("p1", 9, "")).await.expect_err("again").code,
        "conflict"
    );
    assert_eq!(
        db.create_tag(
            &a,
            &NewTag {
                name: "bad name".into(),
                ..Default::default()
            }
        )
        .await
        .expect_err("name")
        .code,
        "bad_request"
    );
    assert_eq!(
        db.create_tag(
            &a,
            &NewTag {
                name: "c".into(),
                ..Default::default()
            }
        )
        .await
        .expect_err("dup")
        .code,
        "conflict"
    );
    let e = db
        .create_tag(
            &a,
            &NewTag {
                name: "orphan".into(),
                parent: Some("missing".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("missing parent");
    assert_eq!(e.code, "not_found");
    assert_eq!(
        db.tag_info("orphan", None).await.expect_err("rolled back").code,
        "not_found"
    );
    assert_eq!(db.last_event().await.expect("event"), before, "no event was recorded");
    assert_eq!(db.links("c", false, None).await.expect("links").len(), 1);
});

both!(targets_round_trip_and_feed_macro_layers, |t| async move {
    let db = common::open(&t).await;
    let a = user(&db, "admin", &["admin"]).await;
    db.create_tag(
        &a,
        &NewTag {
            name: "base".into(),
            extra: [
                ("rpm.macro.dist".to_string(), json!(".k1")),
                ("macro.vendor".to_string(), json!("acme")),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await
    .expect("base");
    db.create_tag(
        &a,
        &NewTag {
            name: "build".into(),
            parent: Some("base".into()),
            extra: [("macro.vendor".to_string(), json!("beta"))].into(),
            ..Default::default()
        },
    )
    .await
    .expect("build");
    tag(&db, &a, "dest").await;
    let target = Target {
        name: "fw".into(),
        build_tag: "build".into(),
        dest_tag: "dest".into(),
        macros: BTreeMap::from([("release".into(), "5".into())]),
    };
    db.put_target(&a, &target, true, None).await.expect("create");
    assert_eq!(
        db.put_target(&a, &target, true, None).await.expect_err("exists").code,
        "conflict"
    );
    let m = kiln_hub::db::macro_layers(&db, "fw").await.expect("layers");
    assert_eq!(m.target_macros["release"], "5");
    assert_eq!(
        m.build_tag_macros["vendor"],
        SourcedText {
            value: "beta".into(),
            from: "build".into()
        }
    );
    assert_eq!(
        m.build_tag_macros["dist"],
        SourcedText {
            value: ".k1".into(),
            from: "base".into()
        }
    );
    // Backup and restore.
    let saved = serde_json::to_string(&db.target("fw", None).await.expect("show")).expect("json");
    db.delete_target(&a, "fw").await.expect("rm");
    assert_eq!(db.target("fw", None).await.expect_err("gone").code, "not_found");
    let restored: Target = serde_json::from_str(&saved).expect("parse");
    db.put_target(&a, &restored, false, None).await.expect("apply");
    assert_eq!(db.target("fw", None).await.expect("back"), target);
    // As of an event: the target before its deletion.
    let e = db.last_event().await.expect("event");
    db.put_target(
        &a,
        &Target {
            macros: BTreeMap::new(),
            ..target.clone()
        },
        false,
        None,
    )
    .await
    .expect("edit");
    assert!(db.target("fw", None).await.expect("now").macros.is_empty());
    assert_eq!(db.target("fw", Some(e)).await.expect("then"), target);
    // A tag used by a target cannot be deleted.
    assert_eq!(db.delete_tag(&a, "dest").await.expect_err("in use").code, "conflict");
    let bad = Target {
        macros: BTreeMap::from([("bad-name".into(), "x".into())]),
        ..target.clone()
    };
    assert_eq!(
        db.put_target(&a, &bad, false, None).await.expect_err("macro").code,
        "bad_request"
    );
});

both!(concurrent_tag_build_requests_stay_consistent, |t| async move {
    let db = Arc::new(common::open(&t).await);
    let a = user(&db, "admin", &["admin"]).await;
    tag(&db, &a, "t").await;
    db.set_package(
        &a,
        "t",
        &PackageIn {
            package: "fw".into(),
            owner: None,
            blocked: false,
        },
        false,
    )
    .await
    .expect("pkg");
    let mut nvrs = Vec::new();
    for i in 0..25 {
        nvrs.push(build(&db, &a, "fw", &format!("1.{i}")).await);
    }
    // 50 requests: every build twice, at once.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (db, a, nvr) = (db.clone(), a.clone(), nvrs[i % 25].clone());
        tasks.push(tokio::spawn(async move { db.tag_build(&a, "t", &nvr, false).await }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e.code, "conflict", "{e}"),
        }
    }
    assert_eq!(ok, 25, "each build tagged exactly once");
    let listed = db.list_tagged("t", false, false, None).await.expect("list");
    assert_eq!(listed.len(), 25);
    let mut seen: Vec<&str> = listed.iter().map(|b| b.nvr.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 25);
});
