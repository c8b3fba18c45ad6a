//! kiln's typed hub client (`kiln_hub_api::Client`) against a real hub on
//! SQLite: every endpoint of `/api/v1` (docs/hub.md) is called through its
//! typed method at least once, in the order a team would use them, and the
//! typed answers are checked.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_core::macros::MacroLayer;
use kiln_core::model::Origin;
use kiln_hub_api::model::*;
use kiln_hub_api::{Client, ClientError, TaggedQuery};
use serde_json::{Value, json};
use sha2::Digest;

/// A hub serving on a loopback port from a runtime of its own (its worker
/// threads), with an admin's token; the blocking clients run on the test's
/// thread.
struct Hub {
    url: String,
    admin: String,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Hub {
    fn start() -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}", dir.path().join("hub.db").display());
        let opts = kiln_hub::ServeOptions {
            db: db.clone(),
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
            let token = kiln_hub::bootstrap_user(&db, "admin", None, &["admin".into()])
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
            _rt: rt,
        }
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, token.map(str::to_string)).expect("client")
    }

    fn admin(&self) -> Client {
        self.client(Some(&self.admin))
    }

    /// Writes `bytes` into the tempdir; returns the path and its sha256.
    fn file(&self, name: &str, bytes: &[u8]) -> (PathBuf, String) {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        (p, sha256(bytes))
    }
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// A request body, written as the API's JSON.
fn body<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a request body")
}

/// The status and code of a call that must fail.
fn fails<T>(r: Result<T, ClientError>) -> (Option<u16>, String) {
    let e = r.err().expect("the call must fail");
    (e.status, e.code)
}

fn err(status: u16, code: &str) -> (Option<u16>, String) {
    (Some(status), code.to_string())
}

/// One field (or a few) of every item of an answer.
fn pick<T, U>(items: &[T], f: impl FnMut(&T) -> U) -> Vec<U> {
    items.iter().map(f).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn sourced(value: Value, from: &str) -> Sourced {
    body(json!({"value": value, "from": from}))
}

/// A build of one raw file named `file`.
fn new_build(nvr: (&str, &str, &str), file: &str, bytes: &[u8]) -> NewBuild {
    body(json!({
        "name": nvr.0, "version": nvr.1, "release": nvr.2,
        "manifest": {"image": nvr.0}, "extra": {"git": "abc123"},
        "artifacts": [{"file": file, "format": "raw", "size": bytes.len(), "sha256": sha256(bytes)}]
    }))
}

fn event(c: &Client) -> i64 {
    c.status().expect("status").event
}

fn create_tags(c: &Client, names: &[&str]) {
    for name in names {
        c.create_tag(&body(json!({"name": name}))).expect("tag");
    }
}

fn add_package(c: &Client, tag: &str, package: &str) {
    c.set_package(tag, &body(json!({"package": package})), false)
        .expect("package");
}

/// base (arches, extra) ← mid (created with base as parent) ← top (linked
/// at priority 10), and `other`, not linked yet.
fn tag_tree(c: &Client) {
    let base = json!({"name": "base", "arches": "x86_64",
        "extra": {"vendor": "acme", "macro.distro": "kiln", "rpm.macro.jobs": 4}});
    let info = c.create_tag(&body(base)).expect("base");
    let got = (info.name.as_str(), info.arches.as_deref(), info.locked);
    assert_eq!(got, ("base", Some("x86_64"), false));
    let acme: ExtraValue = body(json!({"value": "acme", "blocked": false}));
    assert_eq!(info.extra["vendor"], acme);
    c.create_tag(&body(json!({"name": "mid", "parent": "base"})))
        .expect("mid");
    create_tags(c, &["top", "other"]);
    let links = c.add_link("top", &body(json!({"parent": "mid", "priority": 10})));
    let links = links.expect("link");
    let got = pick(&links, |l| (l.child.clone(), l.parent.clone()));
    assert_eq!(got, [("top".into(), "mid".into())]);
}

// ---- the tests -----------------------------------------------------------------

#[test]
fn users_tokens_login_and_error_mapping() {
    let hub = Hub::start();
    let admin = hub.admin();
    let anon = hub.client(None);
    let s = admin.status().expect("status");
    let got = (s.kiln.as_str(), s.database.as_str());
    assert_eq!(got, (env!("CARGO_PKG_VERSION"), "sqlite"));
    assert!(s.anonymous_read && s.event > 0, "{s:?}");
    let me = admin.whoami().expect("whoami");
    assert_eq!((me.name.as_str(), me.authenticated, me.admin), ("admin", true, true));
    assert_eq!(me.perms, ["admin"]);
    let nobody = anon.whoami().expect("anonymous whoami");
    assert!(
        !nobody.authenticated && !nobody.admin && nobody.perms.is_empty(),
        "{nobody:?}"
    );

    // An admin creates a user, grants and revokes.
    let alice: NewUser = body(json!({"name": "alice", "password": "correct horse", "perms": ["tag"]}));
    assert_eq!(fails(anon.create_user(&alice)), err(401, "unauthorized"));
    assert_eq!(admin.create_user(&alice).expect("alice").name, "alice");
    assert_eq!(fails(admin.create_user(&alice)), err(409, "conflict"));
    admin.grant("alice", "build").expect("grant");
    assert_eq!(fails(admin.grant("alice", "build")), err(409, "conflict"));
    admin.revoke("alice", "tag").expect("revoke");
    assert_eq!(fails(admin.revoke("alice", "tag")), err(404, "not_found"));
    let users = admin.users().expect("users");
    let expect = [
        ("admin", "user", strings(&["admin"])),
        ("alice", "user", strings(&["build"])),
    ];
    let expect = expect.map(|(n, k, p)| (n.to_string(), k.to_string(), p));
    let got = pick(&users, |u| (u.name.clone(), u.kind.clone(), u.perms.clone()));
    assert_eq!(got, expect);

    // The user logs in with her password.
    let login =
        |password: &str| -> LoginIn { body(json!({"user": "alice", "password": password, "token_name": "laptop"})) };
    assert_eq!(fails(anon.login(&login("wrong"))), err(401, "unauthorized"));
    let t = anon.login(&login("correct horse")).expect("login");
    assert_eq!((t.expires, t.token.len() >= 32), (None, true));
    let alice = hub.client(Some(&t.token));
    let me = alice.whoami().expect("whoami");
    assert_eq!((me.name.as_str(), me.authenticated, me.admin), ("alice", true, false));
    assert_eq!(me.perms, ["build"]);
    let bob: NewUser = body(json!({"name": "bob"}));
    assert_eq!(fails(alice.create_user(&bob)), err(403, "forbidden"));
    assert_eq!(fails(alice.grant("alice", "admin")), err(403, "forbidden"));

    // An admin makes her a token; she lists and revokes it.
    let ci = admin.create_token("alice", &body(json!({"name": "ci", "expires_days": 7})));
    let ci = ci.expect("token");
    let expires = ci.expires.expect("it expires");
    assert!((expires - kiln_hub::db::now() - 7 * 86_400).abs() < 60, "{expires}");
    let tokens = alice.tokens("alice").expect("tokens");
    let expect = [
        (t.id, "laptop".into(), None, None),
        (ci.id, "ci".into(), Some(expires), None),
    ];
    assert_eq!(pick(&tokens, |t| (t.id, t.name.clone(), t.expires, t.revoked)), expect);
    assert_eq!(hub.client(Some(&ci.token)).whoami().expect("ci token").name, "alice");
    assert_eq!(fails(alice.tokens("admin")), err(403, "forbidden"));
    alice.revoke_token(ci.id).expect("revoke the token");
    assert!(alice.tokens("alice").expect("tokens")[1].revoked.is_some());
    assert_eq!(fails(hub.client(Some(&ci.token)).whoami()), err(401, "unauthorized"));
    assert_eq!(fails(alice.revoke_token(9_999)), err(404, "not_found"));

    // Errors: the hub's status and code, or none when nothing answered.
    let e = admin.tag("no-such-tag", None).expect_err("unknown tag");
    assert_eq!((e.status, e.code.as_str()), (Some(404), "not_found"));
    assert!(e.message.contains("no-such-tag"), "{e}");
    assert_eq!(fails(admin.build("nope-1-1")), err(404, "not_found"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let away = Client::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    let e = away.status().expect_err("nothing listens");
    assert_eq!((e.status, e.code.as_str()), (None, "unreachable"), "{e}");
    let e = Client::new("ftp://hub", None).err().expect("not http");
    assert_eq!((e.status, e.code.as_str()), (None, "bad_url"));
}

#[test]
fn tags_inheritance_config_and_packages() {
    let hub = Hub::start();
    let c = hub.admin();
    tag_tree(&c);
    let other: LinkIn = body(json!({"parent": "other", "priority": 20, "noconfig": true, "pkg_filter": "fw.*"}));
    let links = c.add_link("top", &other).expect("link");
    let got = pick(&links, |l| (l.parent.clone(), l.priority));
    assert_eq!(got, [("mid".into(), 10), ("other".into(), 20)]);
    assert_eq!(fails(c.add_link("top", &other)), err(409, "conflict"));

    // The full walk, with depths; and reversed.
    let walk = |tag: &str, reverse: bool| -> Vec<(String, i64, Option<i64>)> {
        let w = c.full_inheritance(tag, reverse, None).expect("walk");
        pick(&w, |w| (w.tag.clone(), w.currdepth, w.nextdepth))
    };
    let step = |tag: &str, depth: i64, next: Option<i64>| (tag.to_string(), depth, next);
    let full = [step("mid", 1, None), step("base", 2, None), step("other", 1, None)];
    assert_eq!(walk("top", false), full);
    let w = c.full_inheritance("top", false, None).expect("walk");
    let got = (w[2].filter.clone(), w[1].link.child.as_str());
    assert_eq!(got, (strings(&["fw.*"]), "mid"));
    assert_eq!(walk("base", true), [step("mid", 1, None), step("top", 2, None)]);
    let children = c.links("base", true, None).expect("children");
    assert_eq!(pick(&children, |l| l.child.clone()), ["mid"]);

    let edit: LinkEdit = body(json!({"priority": 5, "maxdepth": 0}));
    let links = c.edit_link("top", "other", &edit).expect("edit link");
    let l = &links[0];
    let got = (l.parent.as_str(), l.priority, l.maxdepth, l.noconfig);
    assert_eq!(got, ("other", 5, Some(0), true));
    assert_eq!(walk("top", false)[0], step("other", 1, Some(0)));
    // An edit leaves what it does not name: the priority alone keeps maxdepth.
    let links = c.edit_link(
        "top",
        "other",
        &LinkEdit {
            priority: Some(6),
            ..LinkEdit::default()
        },
    );
    assert_eq!(links.expect("edit priority")[0].maxdepth, Some(0));

    // Build config: arches and extra through the walk; `other` is noconfig.
    let bc = c.build_config("top", None).expect("config");
    let got = (bc.tag.as_str(), bc.arches);
    assert_eq!(got, ("top", Some(sourced(json!("x86_64"), "base"))));
    assert_eq!(bc.extra["vendor"], sourced(json!("acme"), "base"));
    let mid = c.edit_tag("mid", &body(json!({"extra": {"vendor": "mid-co"}})));
    assert_eq!(mid.expect("edit mid").extra["vendor"].value, Some(json!("mid-co")));
    // An extra-only edit leaves the arches and the permission as they were.
    let base = c.tag("base", None).expect("base");
    let extra_only = TagEdit {
        extra: BTreeMap::from([("k".to_string(), json!(1))]),
        ..TagEdit::default()
    };
    let after = c.edit_tag("base", &extra_only).expect("extra-only edit");
    assert_eq!(after.arches.as_deref(), Some("x86_64"));
    assert_eq!((after.arches, after.perm), (base.arches, base.perm));
    let vendor = || c.build_config("top", None).expect("config").extra.remove("vendor");
    assert_eq!(vendor(), Some(sourced(json!("mid-co"), "mid")));
    let top = c
        .edit_tag("top", &body(json!({"block_extra": ["vendor"]})))
        .expect("block");
    let blocked: ExtraValue = body(json!({"value": null, "blocked": true}));
    assert_eq!(top.extra["vendor"], blocked);
    assert_eq!(vendor(), None, "a blocked key hides the inherited one");
    let unblock: TagEdit = body(json!({"remove_extra": ["vendor"]}));
    assert!(c.edit_tag("top", &unblock).expect("unblock").extra.is_empty());
    assert_eq!(vendor().map(|s| s.from), Some("mid".into()));
    assert_eq!(fails(c.edit_tag("top", &unblock)), err(404, "not_found"));

    let before = event(&c);
    let links = c.remove_link("top", "other").expect("remove link");
    assert_eq!(pick(&links, |l| l.parent.clone()), ["mid"]);
    assert_eq!(c.links("top", false, Some(before)).expect("links then").len(), 2);
    assert_eq!(fails(c.remove_link("top", "other")), err(404, "not_found"));

    // Package lists: added on base, blocked on top, inherited through mid.
    add_package(&c, "base", "fw");
    let tool: PackageIn = body(json!({"package": "tool", "owner": "alice"}));
    c.set_package("base", &tool, false).expect("tool");
    let block: PackageIn = body(json!({"package": "tool", "blocked": true}));
    c.set_package("top", &block, false).expect("block tool");
    let list = |tag: &str, inherit: bool| -> Vec<(String, String, bool, String)> {
        let p = c.packages(tag, inherit, None).expect("packages");
        pick(&p, |p| (p.package.clone(), p.tag.clone(), p.blocked, p.owner.clone()))
    };
    let row = |p: &str, t: &str, b: bool, o: &str| (p.to_string(), t.to_string(), b, o.to_string());
    let (fw, blocked) = (row("fw", "base", false, "admin"), row("tool", "top", true, "admin"));
    assert_eq!(list("top", true), [fw.clone(), blocked.clone()]);
    assert_eq!(list("top", false), [blocked]);
    c.remove_package("top", "tool", false).expect("unblock tool");
    assert_eq!(list("top", true), [fw, row("tool", "base", false, "alice")]);
    assert_eq!(fails(c.remove_package("top", "tool", false)), err(404, "not_found"));

    // A locked tag refuses changes unless an admin forces them.
    assert!(c.edit_tag("mid", &body(json!({"locked": true}))).expect("lock").locked);
    let fw: PackageIn = body(json!({"package": "fw"}));
    assert_eq!(fails(c.set_package("mid", &fw, false)), err(423, "locked"));
    c.set_package("mid", &fw, true).expect("forced");
    assert_eq!(list("mid", false), [row("fw", "mid", false, "admin")]);

    // Renamed, deleted, and listed as of an event.
    create_tags(&c, &["tmp"]);
    let tmp = c.edit_tag("tmp", &body(json!({"rename": "tmp2", "arches": "riscv64"})));
    let tmp = tmp.expect("rename");
    assert_eq!((tmp.name.as_str(), tmp.arches.as_deref()), ("tmp2", Some("riscv64")));
    assert_eq!(c.tag("tmp2", None).expect("tag"), tmp);
    let before = event(&c);
    c.delete_tag("tmp2").expect("delete");
    assert_eq!(fails(c.tag("tmp2", None)), err(404, "not_found"));
    let tags = c.tags(None).expect("tags");
    assert_eq!(pick(&tags, |t| t.name.clone()), ["base", "mid", "other", "top"]);
    let then = c.tags(Some(before)).expect("tags then");
    assert_eq!(then.len(), 5);
    assert!(
        then.iter()
            .any(|t| t.id == tmp.id && t.arches.as_deref() == Some("riscv64"))
    );
}

#[test]
fn builds_tagging_history_targets_and_macros() {
    let hub = Hub::start();
    let c = hub.admin();
    tag_tree(&c);
    add_package(&c, "base", "fw");

    // A build: declared, uploaded, verified, completed, downloaded.
    let publish = |v: &str, bytes: &[u8]| -> Build {
        let (path, sha) = hub.file(&format!("fw-{v}.img"), bytes);
        let b = c
            .create_build(&new_build(("fw", v, "1"), "fw.img", bytes))
            .expect("create");
        let got = (b.state.as_str(), b.artifacts[0].stored, b.completion_time);
        assert_eq!(got, ("BUILDING", false, None));
        let up = c.upload_artifact(&b.nvr, "fw.img", &path, &sha).expect("upload");
        let got = (up.file.as_str(), up.sha256, up.size);
        assert_eq!(got, ("fw.img", sha, bytes.len() as u64));
        let done = c.set_build_state(&b.nvr, "COMPLETE").expect("complete");
        let got = (done.state.as_str(), done.completion_time.is_some());
        assert_eq!(got, ("COMPLETE", true));
        done
    };
    let b1 = publish("1.0", b"firmware one");
    assert_eq!(fails(c.set_build_state(&b1.nvr, "COMPLETE")), err(409, "conflict"));
    let b = c.build("fw-1.0-1").expect("build");
    let got = (b.owner.as_str(), b.task_id, &b.extra);
    assert_eq!(got, ("admin", None, &json!({"git": "abc123"})));
    assert_eq!(b.manifest, Some(json!({"image": "fw"})));
    let a = &b.artifacts[0];
    let got = (a.file.as_str(), a.format.as_str(), a.size, a.stored);
    assert_eq!(got, ("fw.img", "raw", 12, true));
    assert_eq!(a.sha256, sha256(b"firmware one"));
    let dest = hub.dir.path().join("out.img");
    let got = c.download_artifact("fw-1.0-1", "fw.img", &dest).expect("download");
    let got = (got, std::fs::read(&dest).expect("read"));
    assert_eq!(got, (a.sha256.clone(), b"firmware one".to_vec()));
    let got = fails(c.download_artifact("fw-1.0-1", "no.img", &dest));
    assert_eq!(got, err(404, "not_found"));
    let b2 = publish("2.0", b"firmware two");
    let failed = c.create_build(&new_build(("fw", "3.0", "1"), "fw.img", b"three"));
    let failed = failed.expect("create");
    let tag_in = |tag: &str, nvr: &str| c.tag_build(tag, &body(json!({"nvr": nvr})));
    let got = fails(tag_in("top", &failed.nvr));
    assert_eq!(got, err(409, "conflict"), "only COMPLETE builds");
    assert_eq!(c.set_build_state(&failed.nvr, "FAILED").expect("fail").state, "FAILED");
    let nvrs = |state| pick(&c.builds(state).expect("builds"), |b| b.nvr.clone());
    assert_eq!(nvrs(Some("COMPLETE")), ["fw-2.0-1", "fw-1.0-1"]);
    assert_eq!(nvrs(None).len(), 3);

    // Tagged into base and top; `latest` lets the child mask its parent.
    tag_in("base", &b1.nvr).expect("tag 1");
    assert_eq!(fails(tag_in("base", &b1.nvr)), err(409, "conflict"));
    tag_in("top", &b2.nvr).expect("tag 2");
    let tagged = |q: TaggedQuery| -> Vec<(String, String)> {
        let t = c.tagged("top", q).expect("tagged");
        pick(&t, |t| (t.nvr.clone(), t.tag.clone()))
    };
    let pair = |nvr: &str, tag: &str| (nvr.to_string(), tag.to_string());
    let inherit = TaggedQuery {
        inherit: true,
        ..TaggedQuery::default()
    };
    let latest = TaggedQuery {
        latest: true,
        ..inherit
    };
    assert_eq!(tagged(TaggedQuery::default()), [pair("fw-2.0-1", "top")]);
    assert_eq!(tagged(inherit), [pair("fw-2.0-1", "top"), pair("fw-1.0-1", "base")]);
    assert_eq!(tagged(latest), [pair("fw-2.0-1", "top")]);
    let tagged_at = event(&c);
    c.untag_build("top", &b2.nvr, false).expect("untag");
    assert_eq!(fails(c.untag_build("top", &b2.nvr, false)), err(404, "not_found"));
    assert_eq!(tagged(latest), [pair("fw-1.0-1", "base")]);
    let then = TaggedQuery {
        event: Some(tagged_at),
        ..latest
    };
    assert_eq!(tagged(then), [pair("fw-2.0-1", "top")], "before the untag");
    let then = c.tagged("top", then).expect("tagged then");
    let got = (then[0].owner.as_str(), then[0].tag_event <= tagged_at);
    assert_eq!(got, ("admin", true));
    let history = c.tag_history("top", None).expect("history");
    let builds: Vec<_> = history.iter().filter(|h| h.table == "build").collect();
    let builds = pick(&builds, |h| (h.change.clone(), h.detail["nvr"].clone(), h.user.clone()));
    let admin = Some("admin".to_string());
    let expect = [("created", "fw-2.0-1"), ("revoked", "fw-2.0-1")];
    assert_eq!(builds, expect.map(|(c, n)| (c.to_string(), json!(n), admin.clone())));
    let then = c.tag_history("top", Some(tagged_at)).expect("history then");
    let builds: Vec<_> = then
        .iter()
        .filter(|h| h.table == "build")
        .map(|h| h.change.as_str())
        .collect();
    assert_eq!(builds, ["created"], "as of the tagging, not yet untagged");
    assert!(then.iter().all(|h| h.event <= tagged_at));
    assert!(
        history
            .iter()
            .any(|h| h.table == "inheritance" && h.detail["parent"] == "mid")
    );
    assert!(history.windows(2).all(|w| w[0].event <= w[1].event));

    // A target over top, with macros of its own and the build tag's.
    create_tags(&c, &["dest"]);
    let t1: Target = body(json!({"name": "t1", "build_tag": "top", "dest_tag": "dest", "macros": {"suffix": "t1"}}));
    assert_eq!(c.create_target(&t1).expect("target"), t1);
    assert_eq!(fails(c.create_target(&t1)), err(409, "conflict"));
    let before = event(&c);
    let edit: TargetEdit = body(json!({"define": {"channel": "stable"}, "undefine": ["suffix"]}));
    let edited = c.edit_target("t1", &edit).expect("edit target");
    assert_eq!(edited.macros, BTreeMap::from([("channel".into(), "stable".into())]));
    assert_eq!(c.target("t1", Some(before)).expect("then"), t1);
    assert_eq!(c.target("t1", None).expect("now"), edited);
    let mut t2: Target = body(json!({"name": "t2", "build_tag": "base", "dest_tag": "dest"}));
    assert_eq!(c.apply_target(&t2).expect("apply creates"), t2);
    t2.build_tag = "mid".into();
    assert_eq!(c.apply_target(&t2).expect("apply replaces").build_tag, "mid");
    assert_eq!(c.targets().expect("targets"), [edited.clone(), t2]);
    c.delete_target("t2").expect("delete target");
    assert_eq!(fails(c.target("t2", None)), err(404, "not_found"));
    assert_eq!(c.targets().expect("targets"), [edited]);
    assert_eq!(fails(c.delete_tag("dest")), err(409, "conflict"), "t1 uses dest");

    c.edit_tag("mid", &body(json!({"extra": {"macro.distro": "kiln-mid"}})))
        .expect("mid's macro");
    let m = c.target_macros("t1").expect("macros");
    assert_eq!((m.target.as_str(), m.build_tag.as_str()), ("t1", "top"));
    assert_eq!(m.target_macros, BTreeMap::from([("channel".into(), "stable".into())]));
    let text = |value: &str, from: &str| -> SourcedText { body(json!({"value": value, "from": from})) };
    let layer4 = [
        ("distro".into(), text("kiln-mid", "mid")),
        ("jobs".into(), text("4", "base")),
    ];
    assert_eq!(m.build_tag_macros, BTreeMap::from(layer4));
    let defs = m.defs().expect("defs");
    let defs = pick(&defs, |d| (d.name.clone(), d.value.clone(), d.layer, d.origin.clone()));
    let def = |n: &str, v: &str, l, o: &str| (n.to_string(), v.to_string(), l, Origin::External(o.into()));
    let from = |tag: &str| format!("build tag top (extra of tag {tag})");
    let expect = [
        def("channel", "stable", MacroLayer::Target, "target t1"),
        def("distro", "kiln-mid", MacroLayer::BuildTag, &from("mid")),
        def("jobs", "4", MacroLayer::BuildTag, &from("base")),
    ];
    assert_eq!(defs, expect);
}

#[test]
fn source_images() {
    let hub = Hub::start();
    let c = hub.admin();
    let squash = |n: u8| common::images::tar_image(&[n; 64]);
    let up = |name: &str, version: &str, bytes: &[u8]| {
        let (path, sha) = hub.file(&format!("{name}-{version}"), bytes);
        c.upload_image(name, version, &path, &sha)
    };
    let fw = up("fw", "1.10", &squash(1)).expect("upload 1.10");
    let got = (fw.name.as_str(), fw.version.as_str(), fw.format.as_str());
    assert_eq!(got, ("fw", "1.10", "tar"));
    let got = (fw.size, fw.uploader.as_str(), fw.sha256.clone());
    assert_eq!(got, (squash(1).len() as i64, "admin", sha256(&squash(1))));
    up("fw", "1.9", &squash(2)).expect("upload 1.9");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &squash(9)).expect("gzip");
    let tgz = gz.finish().expect("gzip");
    assert_eq!(up("base", "1", &tgz).expect("upload a tar.gz").format, "tar.gz");
    assert_eq!(fails(up("fw", "1.9", &squash(2))), err(409, "conflict"));
    assert_eq!(fails(up("junk", "1", b"not an image")), err(400, "bad_request"));
    let (path, _) = hub.file("wrong", &squash(3));
    let got = fails(c.upload_image("fw", "2", &path, &"0".repeat(64)));
    assert_eq!(got, err(400, "bad_request"));

    let versions = |name| {
        pick(&c.images(name).expect("images"), |i| {
            format!("{}@{}", i.name, i.version)
        })
    };
    assert_eq!(versions(Some("fw")), ["fw@1.9", "fw@1.10"], "by version, not by text");
    assert_eq!(versions(None), ["base@1", "fw@1.9", "fw@1.10"]);
    assert_eq!(c.image("fw", "1.10").expect("image"), fw);
    let dest = hub.dir.path().join("pulled.squashfs");
    assert_eq!(c.download_image("fw", "1.10", &dest).expect("download"), fw.sha256);
    assert_eq!(std::fs::read(&dest).expect("read"), squash(1));

    c.remove_image("fw", "1.9").expect("remove");
    assert_eq!(fails(c.image("fw", "1.9")), err(404, "not_found"));
    assert_eq!(fails(c.remove_image("fw", "1.9")), err(404, "not_found"));
    assert_eq!(versions(Some("fw")), ["fw@1.10"]);
    let got = fails(hub.client(None).remove_image("fw", "1.10"));
    assert_eq!(got, err(401, "unauthorized"));
}

#[test]
fn builders_claim_run_and_report_tasks() {
    let hub = Hub::start();
    let c = hub.admin();
    create_tags(&c, &["bt", "dest"]);
    add_package(&c, "dest", "fw");
    let target: Target = body(json!({"name": "t", "build_tag": "bt", "dest_tag": "dest"}));
    c.create_target(&target).expect("target");

    // Two builders; only b1 ever beats.
    let host = |name: &str| -> NewHost { body(json!({"name": name, "arch": "x86_64"})) };
    let ht = c.create_host(&host("b1")).expect("b1");
    assert_eq!(ht.name, "b1");
    c.create_host(&host("b2")).expect("b2");
    assert_eq!(fails(c.create_host(&host("b2"))), err(409, "conflict"));
    let b1 = hub.client(Some(&ht.token));
    let states = || {
        pick(&c.hosts().expect("hosts"), |h| {
            (h.name.clone(), h.state, h.last_seen.is_some())
        })
    };
    let hs = |n: &str, s: HostState, seen: bool| (n.to_string(), s, seen);
    let never = hs("b2", HostState::Offline, false);
    assert_eq!(states(), [hs("b1", HostState::Offline, false), never.clone()]);
    let beat = b1.heartbeat().expect("heartbeat");
    assert_eq!((beat.cancel, beat.lease_seconds), (vec![], kiln_hub::db::LEASE_SECONDS));
    assert_eq!(states(), [hs("b1", HostState::Ready, true), never]);
    let h = &c.hosts().expect("hosts")[0];
    let got = (h.channels.clone(), h.capacity, h.enabled, h.load);
    assert_eq!(got, (strings(&["default"]), 1, true, 0));

    // Tasks: a noop, a build, a scratch build, two noops, one for b2 only.
    let build_from = |repo: &str, scratch: bool| {
        TaskRequest::Build(BuildRequest {
            target: "t".into(),
            image: "fw".into(),
            repo: repo.into(),
            defines: vec![("vendor".into(), "acme".into())],
            scratch,
            nvr: None,
        })
    };
    let build = |scratch: bool| build_from("git+file:///srv/git/fw.git@main", scratch);
    let submit = |request: TaskRequest, priority: i64| {
        let t = NewTask {
            priority,
            ..NewTask::new(request)
        };
        c.submit_task(&t).expect("submit")
    };
    let noop = submit(TaskRequest::Noop, 10);
    let got = (noop.method(), noop.state.as_str(), noop.owner.as_str());
    assert_eq!(got, ("noop", "FREE", "admin"));
    let real = submit(build(false), 20);
    let got = (real.request.clone(), real.arch.as_str(), real.attempts);
    assert_eq!(got, (build(false), "noarch", 0));
    let scratch = submit(build(true), 30);
    let doomed = submit(TaskRequest::Noop, 40);
    let handed_back = submit(TaskRequest::Noop, 50);
    let t = NewTask {
        builder: Some("b2".into()),
        priority: 1,
        ..NewTask::new(TaskRequest::Noop)
    };
    let for_b2 = c.submit_task(&t).expect("designated");
    assert_eq!(for_b2.designated_host.as_deref(), Some("b2"));
    let bad = NewTask::new(build_from("https://example.org/fw.git", false));
    assert_eq!(fails(c.submit_task(&bad)), err(400, "bad_request"));
    let got = fails(b1.submit_task(&NewTask::new(TaskRequest::Noop)));
    assert_eq!(got, err(403, "forbidden"));
    assert_eq!(fails(c.claim()), err(403, "forbidden"), "an admin is not a builder");

    // The noop: claimed first (the lowest priority b1 may run), closed.
    let claim = || b1.claim().expect("claim").expect("a task");
    let t = claim();
    let got = (t.id, t.state.as_str(), t.host.as_deref(), t.attempts);
    assert_eq!(got, (noop.id, "OPEN", Some("b1"), 1));
    let report = |ok: bool, build: Option<NewBuild>| TaskReport {
        ok,
        result: json!({"log": "done"}),
        build,
    };
    let closed = b1.finish_task(noop.id, &report(true, None)).expect("finish");
    let got = (closed.state.as_str(), closed.result);
    assert_eq!(got, ("CLOSED", Some(json!({"log": "done"}))));

    // The build: logged, its file uploaded, reported with its build.
    assert_eq!(claim().id, real.id);
    assert_eq!(b1.claim().expect("claim"), None, "b1 is at capacity");
    assert_eq!(c.hosts().expect("hosts")[0].load, 1);
    b1.append_log(real.id, "checkout main\n".into()).expect("log");
    b1.append_log(real.id, "build fw\n".into()).expect("log");
    let log = c.task_log(real.id, 0).expect("log");
    let got = (log.state.as_str(), log.text.as_str());
    assert_eq!(got, ("OPEN", "checkout main\nbuild fw\n"));
    let more = c.task_log(real.id, log.next).expect("log");
    assert_eq!((more.text.as_str(), more.next), ("", log.next));
    assert_eq!(c.task_log(real.id, log.next - 1).expect("log").text, "build fw\n");
    assert_eq!(fails(c.append_log(real.id, "not mine\n".into())), err(403, "forbidden"));
    let image = b"the built image";
    let (path, sha) = hub.file("fw.img", image);
    let up = b1.upload_task_file(real.id, "fw.img", &path, &sha).expect("upload");
    let got = (up.file.as_str(), up.sha256.clone(), up.size);
    assert_eq!(got, ("fw.img", sha.clone(), 15));
    let done = b1.finish_task(
        real.id,
        &report(true, Some(new_build(("fw", "3.0", "1"), "fw.img", image))),
    );
    let done = done.expect("report the build");
    let r = done.result.expect("a result");
    assert_eq!(done.state, "CLOSED");
    let got = (&r["nvr"], &r["tag"], &r["scratch"]);
    assert_eq!(got, (&json!("fw-3.0-1"), &json!("dest"), &json!(false)));
    let b = c.build("fw-3.0-1").expect("the recorded build");
    let got = (b.state.as_str(), b.task_id, b.owner.as_str());
    assert_eq!(got, ("COMPLETE", Some(real.id), "admin"));
    let got = (b.artifacts[0].sha256.as_str(), b.artifacts[0].stored);
    assert_eq!(got, (sha.as_str(), true));
    let tagged = c.tagged("dest", TaggedQuery::default()).expect("tagged");
    let got = pick(&tagged, |t| (t.nvr.clone(), t.tag.clone()));
    assert_eq!(got, [("fw-3.0-1".into(), "dest".into())]);
    let dest = hub.dir.path().join("fw-3.0-1.img");
    assert_eq!(c.download_artifact("fw-3.0-1", "fw.img", &dest).expect("download"), sha);

    // The scratch build: nothing recorded, the file stays with the task.
    assert_eq!(claim().id, scratch.id);
    let scratch_image = b"a scratch image";
    let (path, sha) = hub.file("scratch.img", scratch_image);
    b1.upload_task_file(scratch.id, "fw.img", &path, &sha).expect("upload");
    let dest = hub.dir.path().join("scratch-out.img");
    let early = c.download_task_file(scratch.id, "fw.img", &dest);
    assert_eq!(fails(early), err(404, "not_found"), "kept only once the task closed");
    let nb = new_build(("fw", "3.1", "1"), "fw.img", scratch_image);
    let done = b1.finish_task(scratch.id, &report(true, Some(nb))).expect("report");
    let r = done.result.expect("a result");
    assert_eq!((&r["scratch"], r.get("tag")), (&json!(true), None));
    assert_eq!(fails(c.build("fw-3.1-1")), err(404, "not_found"));
    let got = c.download_task_file(scratch.id, "fw.img", &dest).expect("download");
    assert_eq!(got, sha);
    assert_eq!(std::fs::read(&dest).expect("read"), scratch_image);

    // Cancelled while it runs: the next heartbeat says so; its report is refused.
    assert_eq!(claim().id, doomed.id);
    let cancelled = c.cancel_task(doomed.id).expect("cancel");
    let got = (cancelled.state.as_str(), cancelled.finished.is_some());
    assert_eq!(got, ("CANCELED", true));
    assert_eq!(b1.heartbeat().expect("heartbeat").cancel, [doomed.id]);
    let got = fails(b1.finish_task(doomed.id, &report(true, None)));
    assert_eq!(got, err(409, "conflict"));
    assert_eq!(fails(c.cancel_task(doomed.id)), err(409, "conflict"));

    // Handed back: FREE again, no attempt used; then claimed again.
    assert_eq!(claim().id, handed_back.id);
    let freed = b1.release_task(handed_back.id).expect("release");
    assert_eq!((freed.state.as_str(), freed.host, freed.attempts), ("FREE", None, 0));
    assert_eq!(fails(b1.release_task(handed_back.id)), err(409, "conflict"));
    assert_eq!(c.task(handed_back.id).expect("task").state, "FREE");
    assert_eq!(claim().id, handed_back.id, "b1 never takes b2's task");
    b1.finish_task(handed_back.id, &report(false, None)).expect("fail it");
    assert_eq!(b1.claim().expect("claim"), None);

    let ids = |state| pick(&c.tasks(state).expect("tasks"), |t| t.id);
    assert_eq!(ids(Some("CLOSED")), [scratch.id, real.id, noop.id]);
    assert_eq!(ids(Some("FAILED")), [handed_back.id]);
    assert_eq!(ids(Some("FREE")), [for_b2.id]);
    assert_eq!(ids(None).len(), 6);
    assert_eq!(c.task(for_b2.id).expect("task"), for_b2);
}

/// A token lives between 1 and 36,500 days, or without end: other
/// lifetimes (zero, negative, large enough to overflow the clock) are
/// refused, at login and when a token is made, before any password is
/// checked.
#[test]
fn token_lifetimes_are_bounded() {
    let hub = Hub::start();
    let admin = hub.admin();
    let bob: NewUser = body(json!({"name": "bob", "password": "bob's password"}));
    admin.create_user(&bob).expect("bob");
    let anon = hub.client(None);
    for days in [0, -1, i64::MIN, 36_501, i64::MAX / 86_400 + 1, i64::MAX] {
        let login = LoginIn {
            user: "bob".into(),
            password: "bob's password".into(),
            token_name: None,
            expires_days: Some(days),
        };
        assert_eq!(
            fails(anon.login(&login)),
            err(400, "bad_request"),
            "login for {days} days"
        );
        let t = TokenIn {
            name: None,
            expires_days: Some(days),
        };
        assert_eq!(
            fails(admin.create_token("bob", &t)),
            err(400, "bad_request"),
            "a token for {days} days"
        );
    }
    let login = LoginIn {
        user: "bob".into(),
        password: "bob's password".into(),
        token_name: None,
        expires_days: Some(36_500),
    };
    let t = anon.login(&login).expect("a century is allowed");
    let expires = t.expires.expect("an expiry");
    let days = (expires
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64))
        / 86_400;
    assert!((36_499..=36_500).contains(&days), "{days} days");
    let bob_client = hub.client(Some(&t.token));
    assert!(bob_client.whoami().expect("whoami").authenticated, "the token works");
}
