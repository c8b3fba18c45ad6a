//! Koji's protocol from plain XML-RPC clients (docs/koji.md), on SQLite and
//! PostgreSQL: Python's `xmlrpc.client` round-trips every type edge
//! through the endpoint (and through the database, as a tag's extra);
//! hostile documents are faults, never HTTP errors; and the same
//! inheritance, package and tagging fixture gives the same answers through
//! the REST API and through Koji's methods, now and as of an earlier event.

mod common;
#[path = "common/served.rs"]
mod served;

use std::process::Command;

use common::fixtures::{admin, build, link, package};
use kiln_hub::db::Db;
use kiln_hub::model::*;

/// Runs `script` with Python 3 (the standard library only), the hub's
/// base URL and `args` as its arguments; its output, which must succeed.
async fn python(script: &str, base: &str, args: &[&str]) -> String {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).arg(base).args(args);
    let o = tokio::task::spawn_blocking(move || c.output())
        .await
        .expect("join")
        .expect("python3 runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "python: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The round trips, as Python's client sees them. Integers outside 32 bits
/// go out as `i8`, as Koji's client marshals them (the standard library
/// reads `i8` but refuses to write it).
const ROUND_TRIPS: &str = r#"
import sys, xmlrpc.client as x, urllib.request
base, token = sys.argv[1], sys.argv[2]
url = base + "/kojihub"

class I8Marshaller(x.Marshaller):
    dispatch = dict(x.Marshaller.dispatch)
    def dump_int(self, value, write):
        tag = "int" if -2**31 <= value < 2**31 else "i8"
        write("<value><%s>%d</%s></value>\n" % (tag, value, tag))
    dispatch[int] = dump_int
    dispatch[bool] = x.Marshaller.dispatch[bool]
x.Marshaller = I8Marshaller

anon = x.ServerProxy(url, allow_none=True, use_builtin_types=True)
admin = x.ServerProxy(url, allow_none=True, use_builtin_types=True,
                      headers=[("Authorization", "Bearer " + token)])

deep = "bottom"
for i in range(30):
    deep = [deep] if i % 2 else {"k": deep}
edges = [
    None, True, False, 0, 1, -1, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**63 - 1, -2**63,
    0.0, -1.5, 1e300, 2.5e-300,
    "", " ", "ünïcødé ☃ 𝄞 日本語", "<&>\"' ]]>", "tab\there\nnewline",
    [], {}, [None, [None]], {"a": None, "b": [None, {"c": None}], "": "empty key", "ключ": "значение"},
    deep, list(range(100000)), ["x" * 1000] * 1000, b"\x00\x01binary\xff",
]
got = anon.echo(*edges)
assert got == edges, [(i, a, b) for i, (a, b) in enumerate(zip(edges, got)) if a != b][:3]
assert type(got[8]) is int and type(got[1]) is bool
print("echo", len(got))

# Through the database: a tag's extra keeps every JSON edge.
extra = {"nil": None, "big": 2**40, "neg": -2**63, "text": "ünïcødé 𝄞", "empty": "",
         "nested": {"a": [1, [2, [3, None]], {"b": {}}]}, "list": [], "float": 0.25}
admin.createTag("edges", {"extra": extra, "__starstar": True})
tag = anon.getTag("edges")
assert tag["extra"] == extra, tag["extra"]
assert tag["arches"] is None and tag["perm_id"] is None
print("extra", len(tag["extra"]))

# A keyword argument is a trailing struct with __starstar, as Koji's client sends.
assert anon.getTag("edges", {"strict": True, "__starstar": True})["name"] == "edges"
try:
    anon.getTag("nosuch", {"strict": True, "__starstar": True})
except x.Fault as f:
    print("strict", f.faultCode, f.faultString)
try:
    anon.getTag("edges", {"bogus": 1, "__starstar": True})
except x.Fault as f:
    print("bogus", f.faultCode)
try:
    anon.noSuchMethod()
except x.Fault as f:
    print("unknown", f.faultCode, f.faultString)
try:
    admin.createTag("edges")
except x.Fault as f:
    print("exists", f.faultCode)

def post(body):
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "text/xml"})
    with urllib.request.urlopen(req) as r:
        return r.status, r.headers.get("Koji-Version"), x.loads(r.read().decode())
def fault(body):
    try:
        post(body)
    except x.Fault as f:
        return f.faultCode
    return None

too_deep = "<value>" + "<array><data><value>" * 70 + "<nil/>" + "</value></data></array>" * 70 + "</value>"
hostile = {
    "not xml": "this is not xml",
    "empty": "",
    "doctype": '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e "x">]><methodCall><methodName>echo</methodName><params><param><value>&e;</value></param></params></methodCall>',
    "too deep": "<methodCall><methodName>echo</methodName><params><param>" + too_deep + "</param></params></methodCall>",
    "bad int": "<methodCall><methodName>echo</methodName><params><param><value><int>12x</int></value></param></params></methodCall>",
    "i8 overflow": "<methodCall><methodName>echo</methodName><params><param><value><i8>9223372036854775808</i8></value></param></params></methodCall>",
    "unclosed": "<methodCall><methodName>echo</methodName><params><param><value><string>x</value>",
    "no method": "<methodCall><params/></methodCall>",
}
for name, body in sorted(hostile.items()):
    print("hostile", name, fault(body))
status, version, _ = post("<methodCall><methodName>getAPIVersion</methodName><params/></methodCall>")
print("status", status, version)
"#;

both!(xmlrpc_client_round_trips_every_type_edge, |t| async move {
    let s = served::serve(&t, true).await;
    let token = kiln_hub::bootstrap_user(&t.url, "admin", None, &["admin".to_string()])
        .await
        .expect("admin");
    let out = python(ROUND_TRIPS, &format!("http://{}", s.addr), &[&token]).await;
    assert_eq!(
        out,
        "echo 29\nextra 8\nstrict 1000 No such tagInfo: 'nosuch'\nbogus 1019\nunknown 1000 Invalid method: noSuchMethod\n\
         exists 1000\nhostile bad int 1000\nhostile doctype 1000\nhostile empty 1000\nhostile i8 overflow 1000\n\
         hostile no method 1000\nhostile not xml 1000\nhostile too deep 1000\nhostile unclosed 1000\nstatus 200 1.36.1\n"
    );
});

/// Compares the REST API's answers with Koji's methods' for every tag,
/// with and without inheritance and latest, now and at `event`.
const SAME_ANSWERS: &str = r#"
import sys, json, urllib.request, xmlrpc.client as x
base, event = sys.argv[1], int(sys.argv[2])
k = x.ServerProxy(base + "/kojihub", allow_none=True)
def rest(path):
    with urllib.request.urlopen(base + "/api/v1" + path) as r:
        return json.load(r)
def kw(**opts):
    opts["__starstar"] = True
    return opts
tags = [t["name"] for t in k.listTags()]
checked = nonempty = 0
for tag in tags:
    for ev in (None, event):
        q = "" if ev is None else "&event=%d" % ev
        for inherit in (False, True):
            for latest in (False, True):
                r = rest("/tags/%s/builds?inherit=%s&latest=%s%s" % (tag, str(inherit).lower(), str(latest).lower(), q))
                r = [(b["nvr"], b["tag"], b["owner"], b["tag_event"]) for b in r]
                kk = k.listTagged(tag, kw(inherit=inherit, latest=latest, event=ev))
                kk = [(b["nvr"], b["tag_name"], b["owner_name"], b["create_event"]) for b in kk]
                assert r == kk, ("listTagged", tag, ev, inherit, latest, r, kk)
                checked += 1
                nonempty += bool(r)
        for reverse in (False, True):
            r = rest("/tags/%s/inheritance?full=true&reverse=%s%s" % (tag, str(reverse).lower(), q))
            r = [(w["tag"], w["currdepth"], w["nextdepth"], w["filter"], w["link"]["priority"]) for w in r]
            kk = k.getFullInheritance(tag, ev, reverse)
            kk = [(w["name"], w["currdepth"], w["nextdepth"], w["filter"], w["priority"]) for w in kk]
            assert r == kk, ("getFullInheritance", tag, ev, reverse, r, kk)
            checked += 1
            nonempty += bool(r)
        for inherit in (False, True):
            r = rest("/tags/%s/packages?inherit=%s%s" % (tag, str(inherit).lower(), q))
            r = sorted((p["package"], p["tag"], p["owner"], p["blocked"]) for p in r)
            kk = k.listPackages(kw(tagID=tag, inherited=inherit, with_blocked=True, event=ev))
            kk = sorted((p["package_name"], p["tag_name"], p["owner_name"], p["blocked"]) for p in kk)
            assert r == kk, ("listPackages", tag, ev, inherit, r, kk)
            checked += 1
            nonempty += bool(r)
        r = rest("/tags/%s/config?%s" % (tag, q.lstrip("&")))
        kk = k.getBuildConfig(tag, kw(event=ev))
        arches = r["arches"] and r["arches"]["value"]
        assert arches == kk["arches"], ("getBuildConfig", tag, ev, r, kk)
        extra = {key: v["value"] for key, v in r["extra"].items() if not v.get("blocked")}
        assert extra == kk["extra"], ("getBuildConfig extra", tag, ev, r["extra"], kk["extra"])
        checked += 1
print(len(tags), "tags", checked, "answers", nonempty, "not empty")
for ev in (None, event):
    print([b["nvr"] for b in k.listTagged("f-child", kw(inherit=True, latest=True, event=ev))],
          [(w["name"], w["currdepth"]) for w in k.getFullInheritance("leaf", ev)])
"#;

/// The domain tests' shapes in one hub: depth limits, an intransitive
/// link, a cycle, cumulative package filters, blocks on a middle tag and
/// an unblock below it, builds masking newer ones in parents, blocked
/// config keys; then changes after `event` (untag, relink, block).
async fn fixture(db: &Db) -> i64 {
    let a = admin(db).await;
    for n in ["root", "g1", "g2", "p1", "p2", "leaf", "x", "side", "f-mid", "f-child"] {
        let t = NewTag {
            name: n.into(),
            arches: (n == "root").then(|| "x86_64 aarch64".to_string()),
            extra: [("k".to_string(), serde_json::json!(n))].into(),
            ..Default::default()
        };
        db.create_tag(&a, &t).await.expect("tag");
    }
    link(db, &a, "leaf", "p2", 10, |l| l.maxdepth = Some(1)).await;
    link(db, &a, "leaf", "p1", 0, |_| {}).await;
    link(db, &a, "p1", "g1", 0, |_| {}).await;
    link(db, &a, "g1", "root", 0, |_| {}).await;
    link(db, &a, "p2", "g2", 0, |_| {}).await;
    link(db, &a, "g2", "side", 0, |_| {}).await;
    link(db, &a, "p1", "x", 5, |l| l.intransitive = true).await;
    link(db, &a, "root", "leaf", 0, |_| {}).await;
    link(db, &a, "f-child", "f-mid", 0, |l| l.pkg_filter = "^cam-".into()).await;
    link(db, &a, "f-mid", "leaf", 0, |l| {
        l.pkg_filter = ".*-fw$".into();
        l.noconfig = true;
    })
    .await;
    for p in ["cam-fw", "kernel", "tools", "modem-fw"] {
        package(db, &a, "root", p, false).await;
    }
    package(db, &a, "g2", "side-pkg", false).await;
    package(db, &a, "side", "tools", false).await;
    package(db, &a, "p1", "kernel", true).await;
    package(db, &a, "leaf", "kernel", false).await;
    let mut nvrs = Vec::new();
    for (n, v) in [
        ("cam-fw", "1"),
        ("cam-fw", "2"),
        ("cam-fw", "3"),
        ("kernel", "6"),
        ("tools", "1"),
        ("modem-fw", "7"),
    ] {
        nvrs.push(build(db, &a, n, v).await);
    }
    for (tag, i) in [
        ("root", 2),
        ("root", 3),
        ("root", 4),
        ("g1", 1),
        ("p1", 0),
        ("leaf", 5),
        ("side", 4),
    ] {
        db.tag_build(&a, tag, &nvrs[i], false).await.expect("tag");
    }
    db.edit_tag(
        &a,
        "p1",
        &TagEdit {
            block_extra: vec!["k".into()],
            ..Default::default()
        },
    )
    .await
    .expect("block a key");
    let event = db.last_event().await.expect("event");
    db.untag_build(&a, "p1", &nvrs[0], false).await.expect("untag");
    db.remove_link(&a, "leaf", "p2").await.expect("unlink");
    link(db, &a, "leaf", "g2", 20, |_| {}).await;
    package(db, &a, "g1", "tools", true).await;
    event
}

both!(rest_and_koji_answer_the_same, |t| async move {
    let s = served::serve(&t, true).await;
    let event = fixture(&s.hub.db).await;
    let out = python(SAME_ANSWERS, &format!("http://{}", s.addr), &[&event.to_string()]).await;
    assert_eq!(
        out,
        "10 tags 180 answers 116 not empty\n\
         ['cam-fw-2-1'] [('p1', 1), ('g1', 2), ('root', 3), ('g2', 1), ('side', 2)]\n\
         ['cam-fw-1-1'] [('p1', 1), ('g1', 2), ('root', 3), ('p2', 1), ('g2', 2)]\n",
        "now: p1's cam-fw is untagged and leaf's parents changed; at the event, as before"
    );
});

both!(expired_sessions_are_kept_a_while_then_forgotten, |t| async move {
    let db = common::open(&t).await;
    let a = admin(&db).await;
    let id = a.id.expect("id");
    let now = kiln_hub::db::now();
    let old = db
        .koji_session_create(id, "hash-old", now - 100)
        .await
        .expect("session");
    let live = db
        .koji_session_create(id, "hash-live", now + 100)
        .await
        .expect("session");
    // The upkeep's cutoff is a week before now: nothing goes yet.
    let cutoff = now - kiln_hub::KOJI_SESSION_KEPT;
    assert_eq!(db.koji_prune_sessions(cutoff).await.expect("prune"), 0);
    assert!(db.koji_session(old).await.expect("read").is_some());
    // A week later, only the expired one goes.
    assert_eq!(db.koji_prune_sessions(now - 50).await.expect("prune"), 1);
    assert!(db.koji_session(old).await.expect("read").is_none());
    assert!(db.koji_session(live).await.expect("read").is_some());
});
