//! Several writers on one database: two connections to the same SQLite
//! file (as a hub and `kiln user create --db` beside it), or two hubs on
//! one PostgreSQL database, change it at once. Every change succeeds; none
//! fails with "database is locked" or a serialization error.

mod common;

use std::sync::Arc;

use kiln_hub::db::Db;
use kiln_hub::model::*;

fn admin(id: i64) -> Principal {
    Principal {
        id: Some(id),
        name: "admin".into(),
        admin: true,
        perms: vec!["admin".into()],
        host: None,
    }
}

both!(two_connections_write_at_once_without_busy_failures, |t| async move {
    let a = Arc::new(common::open(&t).await);
    let b = Arc::new(Db::open(&t.url).await.expect("second connection"));
    let boot = Principal {
        id: None,
        name: "test".into(),
        admin: true,
        perms: vec![],
        host: None,
    };
    let id = a
        .create_user(&boot, "admin", None, &["admin".into()], "user")
        .await
        .expect("admin");
    let who = admin(id);
    for db in [&a, &b] {
        db.create_tag(
            &who,
            &NewTag {
                name: format!("base-{}", Arc::as_ptr(db) as usize),
                ..Default::default()
            },
        )
        .await
        .expect("tag");
    }
    // Each change reads (the tag, its lock) before it writes: the pattern
    // that fails at once when another connection wrote in between.
    let mut tasks = Vec::new();
    for i in 0..120 {
        let db = if i % 2 == 0 { a.clone() } else { b.clone() };
        let who = who.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("t{i}");
            db.create_tag(
                &who,
                &NewTag {
                    name: name.clone(),
                    ..Default::default()
                },
            )
            .await?;
            db.set_package(
                &who,
                &name,
                &PackageIn {
                    package: "p".into(),
                    owner: None,
                    blocked: false,
                },
                false,
            )
            .await?;
            let mut e = TagEdit::default();
            e.extra.insert("k".into(), serde_json::json!(i));
            db.edit_tag(&who, &name, &e).await.map(|_| ())
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("join") {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "{} changes failed: {failures:?}", failures.len());
    let tags = a.list_tags(0, 1000, None).await.expect("list");
    assert_eq!(tags.total, 122);
});

both!(
    a_tag_deleted_by_several_callers_at_once_is_deleted_once,
    |t| async move {
        let a = Arc::new(common::open(&t).await);
        let b = Arc::new(Db::open(&t.url).await.expect("second connection"));
        let boot = Principal {
            id: None,
            name: "test".into(),
            admin: true,
            perms: vec![],
            host: None,
        };
        let who = admin(
            a.create_user(&boot, "admin", None, &["admin".into()], "user")
                .await
                .expect("admin"),
        );
        for round in 0..20 {
            let name = format!("x{round}");
            a.create_tag(
                &who,
                &NewTag {
                    name: name.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("tag");
            let mut tasks = Vec::new();
            for i in 0..4 {
                let db = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (who, name) = (who.clone(), name.clone());
                tasks.push(tokio::spawn(async move { db.delete_tag(&who, &name).await }));
            }
            let mut deleted = 0;
            for t in tasks {
                match t.await.expect("join") {
                    Ok(()) => deleted += 1,
                    Err(e) => assert!(matches!(e.status, 404 | 409), "{e}"),
                }
            }
            assert_eq!(deleted, 1, "round {round}: one deletion succeeds");
            let history = a.tag_history(&name, None).await.expect("history");
            let deletions = history
                .iter()
                .filter(|h| h.change == "revoked" && h.table == "config")
                .count();
            assert_eq!(deletions, 1, "round {round}: {history:?}");
        }
    }
);
