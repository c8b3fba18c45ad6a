//! Tasks and builders (docs/hub.md) on SQLite and PostgreSQL: atomic
//! claims, matching, leases, retries, cancellation.

mod common;

use std::sync::Arc;

use kiln_hub::db::{Db, LEASE_SECONDS, now};
use kiln_hub::model::*;
use serde_json::json;

async fn admin(db: &Db) -> Principal {
    let boot = Principal {
        id: None,
        name: "test".into(),
        admin: true,
        perms: vec![],
        host: None,
    };
    let id = db
        .create_user(&boot, "admin", None, &["admin".into()], "user")
        .await
        .expect("admin");
    Principal {
        id: Some(id),
        name: "admin".into(),
        admin: true,
        perms: vec!["admin".into()],
        host: None,
    }
}

async fn host(db: &Db, a: &Principal, name: &str, arch: &str, channels: &[&str], capacity: i64) -> Principal {
    let h = NewHost {
        name: name.into(),
        arch: arch.into(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        capacity,
    };
    db.create_host(a, &h, &format!("hash-of-{name}")).await.expect("host");
    db.principal_by_token(&format!("hash-of-{name}"))
        .await
        .expect("lookup")
        .expect("host principal")
}

fn task(method: &str) -> NewTask {
    serde_json::from_value(json!({"method": method})).expect("task")
}

both!(
    claims_match_channel_arch_designation_capacity_priority,
    |t| async move {
        let db = common::open(&t).await;
        let a = admin(&db).await;
        let x86 = host(&db, &a, "x86-1", "x86_64", &["default"], 2).await;
        let arm = host(&db, &a, "arm-1", "aarch64", &["default", "fw"], 1).await;
        let mut fw = task("noop");
        fw.channel = "fw".into();
        let fw = db.submit_task(&a, &fw).await.expect("fw");
        let mut armonly = task("noop");
        armonly.arch = "aarch64".into();
        let armonly = db.submit_task(&a, &armonly).await.expect("arm");
        let mut designated = task("noop");
        designated.builder = Some("x86-1".into());
        designated.priority = 30;
        let designated = db.submit_task(&a, &designated).await.expect("designated");
        let mut urgent = task("noop");
        urgent.priority = 1;
        let urgent = db.submit_task(&a, &urgent).await.expect("urgent");
        // x86: the urgent one first, then its designated task; never fw or aarch64.
        assert_eq!(db.claim(&x86).await.expect("claim").map(|t| t.id), Some(urgent.id));
        assert_eq!(db.claim(&x86).await.expect("claim").map(|t| t.id), Some(designated.id));
        let mut more = task("noop");
        more.priority = 0;
        db.submit_task(&a, &more).await.expect("more");
        assert_eq!(
            db.claim(&x86).await.expect("claim").map(|t| t.id),
            None,
            "x86 is at capacity 2"
        );
        // arm: the new urgent one, then priority 20 in id order: fw (its channel), then the aarch64 one.
        let m = db.claim(&arm).await.expect("claim").expect("a task");
        db.finish_task(&arm, m.id, true, &json!({})).await.expect("finish");
        let c = db.claim(&arm).await.expect("claim").expect("a task");
        assert_eq!(c.id, fw.id);
        assert_eq!(
            (c.state.as_str(), c.host.as_deref(), c.attempts),
            ("OPEN", Some("arm-1"), 1)
        );
        assert_eq!(db.task(m.id).await.expect("done").state, "CLOSED");
        assert!(db.claim(&arm).await.expect("claim").is_none(), "arm is at capacity 1");
        db.finish_task(&arm, fw.id, true, &json!({"done": true}))
            .await
            .expect("finish");
        assert_eq!(db.claim(&arm).await.expect("claim").map(|t| t.id), Some(armonly.id));
        // Another host cannot report on a task that is not its own.
        let e = db
            .finish_task(&x86, armonly.id, true, &json!({}))
            .await
            .expect_err("not mine");
        assert_eq!(e.code, "conflict");
        // A user is not a host.
        assert_eq!(db.claim(&a).await.expect_err("not a host").code, "forbidden");
        let hosts = db.list_hosts().await.expect("hosts");
        assert_eq!(
            hosts.iter().map(|h| (h.name.as_str(), h.load)).collect::<Vec<_>>(),
            [("arm-1", 1), ("x86-1", 2)]
        );
    }
);

both!(expired_leases_retry_then_fail, |t| async move {
    let db = common::open(&t).await;
    let a = admin(&db).await;
    let h1 = host(&db, &a, "b1", "x86_64", &["default"], 1).await;
    let h2 = host(&db, &a, "b2", "x86_64", &["default"], 1).await;
    let mut nt = task("noop");
    nt.max_attempts = 2;
    let t0 = db.submit_task(&a, &nt).await.expect("task");
    assert_eq!(db.claim(&h1).await.expect("claim").map(|t| t.id), Some(t0.id));
    // A heartbeat renews; nothing expires before the lease ends.
    db.heartbeat(&h1).await.expect("heartbeat");
    assert_eq!(db.expire_leases(now()).await.expect("expire"), 0);
    // b1 dies: after the lease the task is FREE again, and b2 takes it.
    assert_eq!(db.expire_leases(now() + LEASE_SECONDS + 1).await.expect("expire"), 1);
    let t1 = db.task(t0.id).await.expect("task");
    assert_eq!((t1.state.as_str(), t1.host.as_deref()), ("FREE", None));
    let c = db.claim(&h2).await.expect("claim").expect("retried");
    assert_eq!((c.id, c.attempts), (t0.id, 2));
    // b1 comes back and reports: refused, the task is b2's now.
    assert_eq!(
        db.finish_task(&h1, t0.id, true, &json!({}))
            .await
            .expect_err("stale")
            .code,
        "conflict"
    );
    // b2 dies too: no attempts left, FAILED.
    db.expire_leases(now() + LEASE_SECONDS + 1).await.expect("expire");
    let t2 = db.task(t0.id).await.expect("task");
    assert_eq!(t2.state, "FAILED");
    assert!(
        t2.result.expect("result")["error"]
            .as_str()
            .unwrap_or("")
            .contains("lease expired")
    );
});

both!(cancel_reaches_the_builder_and_children, |t| async move {
    let db = common::open(&t).await;
    let a = admin(&db).await;
    let h = host(&db, &a, "b1", "x86_64", &["default"], 4).await;
    let parent = db.submit_task(&a, &task("noop")).await.expect("parent");
    let mut child = task("noop");
    child.parent = Some(parent.id);
    let child = db.submit_task(&a, &child).await.expect("child");
    assert_eq!(db.claim(&h).await.expect("claim").map(|t| t.id), Some(parent.id));
    let c = db.cancel_task(&a, parent.id).await.expect("cancel");
    assert_eq!(c.state, "CANCELED");
    assert_eq!(db.task(child.id).await.expect("child").state, "CANCELED");
    assert_eq!(
        db.heartbeat(&h).await.expect("heartbeat"),
        [parent.id],
        "the builder is told to stop it"
    );
    assert_eq!(
        db.finish_task(&h, parent.id, true, &json!({}))
            .await
            .expect_err("canceled")
            .code,
        "conflict"
    );
    assert_eq!(db.cancel_task(&a, parent.id).await.expect_err("again").code, "conflict");
    assert!(db.claim(&h).await.expect("claim").is_none());
    // Logs: only the task's builder writes, anyone reads.
    let other = db.submit_task(&a, &task("noop")).await.expect("task");
    let got = db.claim(&h).await.expect("claim").expect("task");
    assert_eq!(got.id, other.id);
    db.append_log(&h, other.id, "line 1\n").await.expect("log");
    db.append_log(&h, other.id, "line 2\n").await.expect("log");
    let chunks = db.task_log(other.id, 0).await.expect("read");
    assert_eq!(
        chunks.iter().map(|c| c.1.as_str()).collect::<String>(),
        "line 1\nline 2\n"
    );
    let after = db.task_log(other.id, chunks[0].0).await.expect("read");
    assert_eq!(after.len(), 1);
    assert_eq!(
        db.append_log(&a, other.id, "x").await.expect_err("not a host").code,
        "forbidden"
    );
});

both!(concurrent_claims_take_each_task_once, |t| async move {
    let db = Arc::new(common::open(&t).await);
    let a = admin(&db).await;
    let mut hosts = Vec::new();
    for i in 0..10 {
        hosts.push(host(&db, &a, &format!("b{i}"), "x86_64", &["default"], 1000).await);
    }
    for _ in 0..200 {
        db.submit_task(&a, &task("noop")).await.expect("task");
    }
    let mut joins = Vec::new();
    for h in hosts {
        let db = db.clone();
        joins.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(t) = db.claim(&h).await.expect("claim") {
                mine.push(t.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for j in joins {
        all.extend(j.await.expect("join"));
    }
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200), "every task claimed exactly once");
    assert_eq!(db.list_tasks(0, 10, Some("FREE")).await.expect("list").total, 0);
});

/// After a burst of submissions, upkeep refreshes PostgreSQL's statistics so
/// a claim takes the first FREE task from the `tasks_free` index instead of
/// reading and sorting every FREE row (the plan, not a timing, is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upkeep_keeps_the_claim_on_the_free_index() {
    let t = common::postgres();
    let db = common::open(&t).await;
    let a = admin(&db).await;
    let Db::Pg(b) = &db else { panic!("a PostgreSQL hub") };
    // Statistics taken while the queue was empty.
    sqlx::query("ANALYZE tasks").execute(&b.write).await.expect("analyze");
    for _ in 0..3000 {
        db.submit_task(&a, &task("noop")).await.expect("submit");
    }
    let plan = || async {
        let rows: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT id FROM tasks WHERE state = 'FREE' AND (designated_host IS NULL OR designated_host = 1) \
             AND (arch = 'amd64' OR arch = 'noarch') AND channel IN ('default') ORDER BY priority, id LIMIT 1 \
             FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&b.read)
        .await
        .expect("explain");
        rows.join("\n")
    };
    db.maintain().await.expect("upkeep");
    let after = plan().await;
    assert!(
        after.contains("Index Scan using tasks_free") && !after.contains("Sort"),
        "after upkeep the claim walks tasks_free in order:\n{after}"
    );
}
