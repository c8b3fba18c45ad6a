//! The typed client (`kiln_hub_api::Client`) and the name rule (docs/hub.md,
//! "Names"), against a real hub on SQLite and PostgreSQL: a bad name or file
//! name a method would put in a URL path is refused before anything is sent,
//! with the message the hub gives for the same name; and every character a
//! name or a file name may hold goes through a path and back unchanged.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_hub_api::model::*;
use kiln_hub_api::{Client, ClientError, TaggedQuery};
use serde_json::{Value, json};
use sha2::Digest;

/// A hub on a loopback port, served from a runtime of its own; the
/// blocking clients run on the test's thread.
struct Hub {
    url: String,
    admin: String,
    dir: tempfile::TempDir,
    _db: common::TestDb,
    _rt: tokio::runtime::Runtime,
}

impl Hub {
    fn start(db: common::TestDb) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = kiln_hub::ServeOptions {
            db: db.url.clone(),
            store: format!("file://{}", dir.path().join("store").display()),
            listen: "127.0.0.1:0".into(),
            anonymous_read: true,
            lease_seconds: kiln_hub::db::LEASE_SECONDS,
            key_file: None,
            koji_session_seconds: kiln_hub::KOJI_SESSION_SECONDS,
            read_cache_mb: kiln_hub::db::cache::DEFAULT_MB,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (addr, admin) = rt.block_on(async {
            let token = kiln_hub::bootstrap_user(&db.url, "admin", None, &["admin".into()])
                .await
                .expect("bootstrap");
            let hub = Arc::new(kiln_hub::open(&opts).await.expect("open the hub"));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let app = kiln_hub::api::router(hub).into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await });
            (addr, token)
        });
        Hub {
            url: format!("http://{addr}"),
            admin,
            dir,
            _db: db,
            _rt: rt,
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token.to_string())).expect("client")
    }

    /// Writes `bytes` into the tempdir; returns the path and its sha256.
    fn file(&self, name: &str, bytes: &[u8]) -> (PathBuf, String) {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        (p, hex::encode(sha2::Sha256::digest(bytes)))
    }
}

/// Runs a test body against SQLite and against PostgreSQL.
macro_rules! both_sync {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                ($body)(Hub::start(common::sqlite()));
            }
            #[test]
            fn postgres() {
                ($body)(Hub::start(common::postgres()));
            }
        }
    };
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a request body")
}

/// The refusal of a call that must not have reached the hub.
fn local<T>(what: &str, r: Result<T, ClientError>) -> String {
    let e = r.err().unwrap_or_else(|| panic!("{what}: the call must fail"));
    assert_eq!(
        (e.status, e.code.as_str()),
        (None, "bad_request"),
        "{what}: refused before sending: {e}"
    );
    e.message
}

/// The refusal of a call the hub answered with a 400.
fn by_hub<T>(what: &str, r: Result<T, ClientError>) -> String {
    let e = r.err().unwrap_or_else(|| panic!("{what}: the call must fail"));
    assert_eq!((e.status, e.code.as_str()), (Some(400), "bad_request"), "{what}: {e}");
    e.message
}

const BAD_NAMES: &[&str] = &[".", "..", ".x", "a/b", "a\nb", "a\tb", "a\0b", "", "-x", "a b", "a%2e"];

const BAD_FILES: &[&str] = &[".", "..", ".x", "a/b", "a\\b", "a\"b", "a\nb", "a\tb", "a\0b", ""];

both_sync!(bad_names_never_leave_the_client, |hub: Hub| {
    let c = hub.client(&hub.admin);
    for t in ["base", "other"] {
        c.create_tag(&body(json!({"name": t}))).expect("tag");
    }
    c.create_user(&body(json!({"name": "alice"}))).expect("user");
    let events = c.status().expect("status").event;
    let (path, sha) = hub.file("f", b"bytes");
    let dest = hub.dir.path().join("dest");
    let long = format!("n{}", "a".repeat(200));
    for bad in BAD_NAMES.iter().copied().chain([long.as_str()]) {
        let target = |name: &str| -> Target { body(json!({"name": name, "build_tag": "base", "dest_tag": "base"})) };
        // The hub's refusal of the name where it is created, and the
        // client's where it would go in a path: the same message.
        let same = [
            (
                by_hub("create tag", c.create_tag(&body(json!({"name": bad})))),
                local("tag", c.tag(bad, None)),
            ),
            (
                by_hub("create user", c.create_user(&body(json!({"name": bad})))),
                local("tokens", c.tokens(bad)),
            ),
            (
                by_hub("create target", c.create_target(&target(bad))),
                local("target", c.target(bad, None)),
            ),
            (
                by_hub(
                    "add package",
                    c.set_package("base", &body(json!({"package": bad})), false),
                ),
                local("remove package", c.remove_package("base", bad, false)),
            ),
            (
                by_hub("grant", c.grant("alice", bad)),
                local("revoke", c.revoke("alice", bad)),
            ),
        ];
        for (hub_says, client_says) in same {
            assert_eq!(client_says, hub_says, "{bad:?}");
        }
        // Every other method that puts a name in a path.
        let link: LinkIn = body(json!({"parent": "other", "priority": 1}));
        let tagging: TagBuildIn = body(json!({"nvr": "b-1-1"}));
        let calls: Vec<(&str, Result<(), ClientError>)> = vec![
            ("edit_tag", c.edit_tag(bad, &TagEdit::default()).map(drop)),
            ("delete_tag", c.delete_tag(bad)),
            ("tag_history", c.tag_history(bad, None).map(drop)),
            ("links", c.links(bad, false, None).map(drop)),
            ("full_inheritance", c.full_inheritance(bad, true, None).map(drop)),
            ("add_link", c.add_link(bad, &link).map(drop)),
            ("edit_link", c.edit_link("base", bad, &LinkEdit::default()).map(drop)),
            ("remove_link", c.remove_link(bad, "other").map(drop)),
            ("build_config", c.build_config(bad, None).map(drop)),
            ("packages", c.packages(bad, true, None).map(drop)),
            ("tagged", c.tagged(bad, TaggedQuery::default()).map(drop)),
            ("tag_build", c.tag_build(bad, &tagging)),
            ("untag_build", c.untag_build("base", bad, false)),
            ("build", c.build(bad).map(drop)),
            ("set_build_state", c.set_build_state(bad, "FAILED").map(drop)),
            ("upload_artifact", c.upload_artifact(bad, "f", &path, &sha).map(drop)),
            ("download_artifact", c.download_artifact(bad, "f", &dest).map(drop)),
            ("apply_target", c.apply_target(&target(bad)).map(drop)),
            ("edit_target", c.edit_target(bad, &TargetEdit::default()).map(drop)),
            ("delete_target", c.delete_target(bad)),
            ("target_macros", c.target_macros(bad).map(drop)),
            ("image name", c.image(bad, "1").map(drop)),
            ("image version", c.image("img", bad).map(drop)),
            ("upload_image", c.upload_image(bad, "1", &path, &sha).map(drop)),
            ("download_image", c.download_image("img", bad, &dest).map(drop)),
            ("remove_image", c.remove_image(bad, "1")),
            ("grant", c.grant(bad, "tag")),
            ("create_token", c.create_token(bad, &TokenIn::default()).map(drop)),
        ];
        for (what, r) in calls {
            let m = local(&format!("{what} {bad:?}"), r);
            assert!(m.starts_with("bad "), "{what}: {m}");
        }
    }
    for bad in BAD_FILES {
        let calls: Vec<(&str, Result<(), ClientError>)> = vec![
            (
                "upload_artifact",
                c.upload_artifact("b-1-1", bad, &path, &sha).map(drop),
            ),
            ("download_artifact", c.download_artifact("b-1-1", bad, &dest).map(drop)),
            ("upload_task_file", c.upload_task_file(1, bad, &path, &sha).map(drop)),
            ("download_task_file", c.download_task_file(1, bad, &dest).map(drop)),
        ];
        for (what, r) in calls {
            let m = local(&format!("{what} {bad:?}"), r);
            assert!(m.starts_with("bad file name"), "{what}: {m}");
        }
    }
    assert_eq!(c.status().expect("status").event, events, "nothing reached the hub");
});

/// A file name with every kind of character a URL path encodes.
const ODD_FILE: &str = "a b%20c?d#e+f~g&h=i;j,k'l(m)n[o]p{q}r<s>t|u^v`w@x!y$z*ü €.raw";

both_sync!(every_allowed_character_goes_through_a_path_and_back, |hub: Hub| {
    let c = hub.client(&hub.admin);
    // Tags, their links and packages.
    let (tag, parent, package) = ("a+b~c.d_e-f", "0.x~1", "c++");
    for t in [tag, parent] {
        let info = c.create_tag(&body(json!({"name": t}))).expect("create tag");
        assert_eq!(info.name, t);
        assert_eq!(c.tag(t, None).expect("tag").name, t);
    }
    c.add_link(tag, &body(json!({"parent": parent, "priority": 1})))
        .expect("link");
    let edit: LinkEdit = body(json!({"priority": 2}));
    assert_eq!(c.edit_link(tag, parent, &edit).expect("edit link")[0].parent, parent);
    assert_eq!(c.full_inheritance(tag, false, None).expect("walk")[0].tag, parent);
    c.set_package(parent, &body(json!({"package": package})), false)
        .expect("package");
    let inherited = c.packages(tag, true, None).expect("packages");
    assert_eq!(
        (inherited[0].package.as_str(), inherited[0].tag.as_str()),
        (package, parent)
    );
    c.remove_package(parent, package, false).expect("remove package");
    c.set_package(tag, &body(json!({"package": "n+x"})), false)
        .expect("package");
    assert_eq!(c.build_config(tag, None).expect("config").tag, tag);
    assert!(!c.tag_history(tag, None).expect("history").is_empty());
    // Users and permissions.
    let (user, perm) = ("u.s+e~r_1", "p+1~x");
    c.create_user(&body(json!({"name": user}))).expect("user");
    c.grant(user, perm).expect("grant");
    c.create_token(user, &body(json!({"name": "ci/nightly run"})))
        .expect("token");
    assert_eq!(c.tokens(user).expect("tokens")[0].name, "ci/nightly run");
    c.revoke(user, perm).expect("revoke");
    // A build with an odd file name, tagged and untagged.
    let nvr = "n+x-1.0~rc1-1.k+1";
    let bytes = b"artifact bytes";
    let (path, sha) = hub.file("artifact", bytes);
    let b: NewBuild = body(json!({
        "name": "n+x", "version": "1.0~rc1", "release": "1.k+1",
        "artifacts": [{"file": ODD_FILE, "format": "raw", "size": bytes.len(), "sha256": sha}]
    }));
    assert_eq!(c.create_build(&b).expect("build").nvr, nvr);
    assert_eq!(
        c.upload_artifact(nvr, ODD_FILE, &path, &sha).expect("upload").file,
        ODD_FILE
    );
    let dest = hub.dir.path().join("downloaded");
    assert_eq!(c.download_artifact(nvr, ODD_FILE, &dest).expect("download"), sha);
    assert_eq!(c.set_build_state(nvr, "COMPLETE").expect("complete").state, "COMPLETE");
    c.tag_build(tag, &body(json!({"nvr": nvr}))).expect("tag build");
    assert_eq!(c.tagged(tag, TaggedQuery::default()).expect("tagged")[0].nvr, nvr);
    c.untag_build(tag, nvr, false).expect("untag");
    // Targets.
    let name = "t~1.0+x";
    let t: Target = body(json!({"name": name, "build_tag": tag, "dest_tag": parent}));
    c.create_target(&t).expect("target");
    assert_eq!(c.target(name, None).expect("target").name, name);
    assert_eq!(c.target_macros(name).expect("macros").target, name);
    c.apply_target(&t).expect("apply");
    let e: TargetEdit = body(json!({"define": {"m": "1"}}));
    assert_eq!(c.edit_target(name, &e).expect("edit").macros["m"], "1");
    c.delete_target(name).expect("delete target");
    // Source images.
    let (img, version) = ("img+1~x", "1.0+git~1");
    let squash = common::images::tar_image(b"image bytes");
    let (path, sha) = hub.file("image", &squash);
    c.upload_image(img, version, &path, &sha).expect("upload image");
    assert_eq!(c.image(img, version).expect("image").version, version);
    assert_eq!(c.download_image(img, version, &dest).expect("download"), sha);
    c.remove_image(img, version).expect("remove image");
    // A task's file.
    let ht = c
        .create_host(&body(json!({"name": "b1", "arch": "x86_64"})))
        .expect("host");
    let b1 = hub.client(&ht.token);
    let task = c.submit_task(&NewTask::new(TaskRequest::Noop)).expect("task");
    assert_eq!(b1.claim().expect("claim").map(|t| t.id), Some(task.id));
    let (path, sha) = hub.file("task-file", b"kept");
    assert_eq!(
        b1.upload_task_file(task.id, ODD_FILE, &path, &sha)
            .expect("upload")
            .file,
        ODD_FILE
    );
    let report = TaskReport {
        ok: true,
        result: json!({}),
        build: None,
    };
    b1.finish_task(task.id, &report).expect("finish");
    assert_eq!(c.download_task_file(task.id, ODD_FILE, &dest).expect("download"), sha);
    c.delete_tag(tag).expect("delete tag");
});
