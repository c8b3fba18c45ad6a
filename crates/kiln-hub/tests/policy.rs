//! The policy table of docs/hub.md ("Who may do what"), read from the
//! document and checked row by row against a running hub, on SQLite and
//! PostgreSQL: every route is called by every kind of caller, and the
//! routes with tag checks again on a tag that names a permission and on a
//! locked tag. A call the table allows must succeed (2xx); one it refuses
//! must answer 401 (anonymous), 403 (permission) or 423 (lock).

mod common;
#[path = "common/served.rs"]
mod served;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    verb: String,
    path: String,
    who: String,
    checks: String,
}

impl Row {
    fn key(&self) -> String {
        format!("{} {}", self.verb, self.path)
    }
}

/// The rows of the "Who may do what" table of docs/hub.md.
fn table() -> Vec<Row> {
    let doc = include_str!("../../../docs/hub.md");
    let section = doc
        .split("\n## Who may do what")
        .nth(1)
        .expect("docs/hub.md has a `Who may do what` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 3, "a policy row has three cells: {line}");
        let route = cells[0].trim_matches('`');
        let (verb, path) = route.split_once(' ').expect("`VERB /path`");
        rows.push(Row {
            verb: verb.to_string(),
            path: path.to_string(),
            who: cells[1].to_string(),
            checks: cells[2].to_string(),
        });
    }
    rows
}

#[test]
fn the_table_covers_every_route_and_agrees_with_the_router() {
    let rows = table();
    let documented: BTreeSet<String> = rows.iter().map(Row::key).collect();
    assert_eq!(documented.len(), rows.len(), "a route appears twice in the table");
    let served: BTreeSet<String> = kiln_hub::api::ROUTES
        .iter()
        .map(|r| format!("{} {}", r.verb.name().to_uppercase(), r.path))
        .collect();
    assert_eq!(
        documented, served,
        "the policy table and the router list different routes"
    );
    for r in &rows {
        let route = kiln_hub::api::ROUTES
            .iter()
            .find(|x| format!("{} {}", x.verb.name().to_uppercase(), x.path) == r.key())
            .expect("served");
        let want = match r.who.as_str() {
            "public" | "reader" => "",
            "build, owner" => "build",
            w => w,
        };
        assert_eq!(route.perm, want, "{}: the table says `{}`", r.key(), r.who);
        assert!(
            ["—", "tag", "dest"].contains(&r.checks.as_str()),
            "{}: unknown tag check `{}`",
            r.key(),
            r.checks
        );
        if r.checks == "tag" {
            assert!(r.path.starts_with("/tags/{tag}"), "{}: tag checks need a tag", r.key());
        }
    }
}

/// A hub on a loopback port, with one user per kind of caller.
struct Served {
    base: String,
    http: reqwest::Client,
    admin: String,
    nobody: String,
    other_build: String,
    holders: std::collections::HashMap<&'static str, String>,
    secret_tag: String,
    db: String,
    n: AtomicU32,
    _served: served::Served,
}

const PERMS: [&str; 6] = ["tag", "build", "target", "image", "host", "pipeline"];

async fn start(t: &common::TestDb) -> Served {
    let user = |name: &'static str, perms: &'static [&'static str]| {
        let url = t.url.clone();
        async move {
            let perms: Vec<String> = perms.iter().map(|p| p.to_string()).collect();
            kiln_hub::bootstrap_user(&url, name, None, &perms).await.expect("user")
        }
    };
    let admin = user("admin", &["admin"]).await;
    let nobody = user("nobody", &[]).await;
    let other_build = user("other-build", &["build"]).await;
    let secret_tag = user("secret-tag", &["tag", "secret"]).await;
    kiln_hub::bootstrap_user(&t.url, "login", Some("login-password"), &[])
        .await
        .expect("login user");
    let mut holders = std::collections::HashMap::new();
    for (p, name) in PERMS.iter().zip([
        "has-tag",
        "has-build",
        "has-target",
        "has-image",
        "has-host",
        "has-pipeline",
    ]) {
        holders.insert(*p, user(name, std::slice::from_ref(p)).await);
    }
    let served = served::serve(t, true).await;
    Served {
        base: format!("http://{}/api/v1", served.addr),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
        admin,
        nobody,
        other_build,
        holders,
        secret_tag,
        db: t.url.clone(),
        n: AtomicU32::new(0),
        _served: served,
    }
}

/// A request to send: method, path under `/api/v1`, and a JSON or raw body.
#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    json: Option<Value>,
    raw: Option<(Vec<u8>, String)>,
}

fn req(method: &str, path: String, json: Option<Value>) -> Req {
    Req {
        method: method.to_string(),
        path,
        json,
        raw: None,
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A small valid source image: a tar of one file.
fn image_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("os-release"), "ID=test\n").expect("write");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["-cf", "-", "os-release"])
        .output()
        .expect("tar");
    assert!(out.status.success());
    out.stdout
}

/// How the fixture's tag is set up.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    Plain,
    /// The tag names the permission `secret`.
    Secret,
    /// The tag is locked (after its content was set up).
    Locked,
}

impl Served {
    async fn send(&self, token: Option<&str>, r: &Req) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(r.method.as_bytes()).expect("method");
        let mut b = self.http.request(m, format!("{}{}", self.base, r.path));
        if let Some(t) = token {
            b = b.bearer_auth(t);
        }
        if let Some(j) = &r.json {
            b = b.json(j);
        }
        if let Some((bytes, sha256)) = &r.raw {
            b = b.header("x-kiln-sha256", sha256).body(bytes.clone());
        }
        let resp = b.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn admin_ok(&self, method: &str, path: String, body: Option<Value>) -> Value {
        self.ok_as(&self.admin.clone(), method, path, body).await
    }

    async fn ok_as(&self, token: &str, method: &str, path: String, body: Option<Value>) -> Value {
        let r = req(method, path, body);
        let (s, v) = self.send(Some(token), &r).await;
        assert!(s.is_success(), "fixture {} {}: {s} {v}", r.method, r.path);
        v
    }

    fn holder(&self, perm: &str) -> String {
        self.holders.get(perm).cloned().expect("holder")
    }

    /// A COMPLETE build `NAME-1-REL` without files, owned by `owner`.
    async fn complete_build(&self, owner: &str, name: &str, rel: &str) -> String {
        let b = json!({"name": name, "version": "1", "release": rel, "artifacts": []});
        self.ok_as(owner, "POST", "/builds".into(), Some(b)).await;
        let nvr = format!("{name}-1-{rel}");
        self.ok_as(
            owner,
            "POST",
            format!("/builds/{nvr}/state"),
            Some(json!({"state": "COMPLETE"})),
        )
        .await;
        nvr
    }

    /// Fresh objects for one call of `row`, and the request that makes it.
    /// The request succeeds for a caller the table allows.
    async fn prepare(&self, row: &Row, variant: Variant) -> (Req, Fixture) {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let tag = format!("t{n}");
        let parent = format!("par{n}");
        let mut fx = Fixture::default();
        let perm = (variant == Variant::Secret).then_some("secret");
        let builder_tag = format!("bt{n}");
        let target = format!("tg{n}");
        // The tags, packages, builds and target the tag, target and build
        // task routes work on.
        let needs_tags = ["/tags/{tag}", "/targets", "/tasks", "/pipelines", "/channels"]
            .iter()
            .any(|p| row.path.starts_with(p))
            || row.path == "/builds/{nvr}";
        let (tagged, untagged) = if needs_tags {
            for t in [&tag, &parent, &builder_tag] {
                let p = if t == &tag { perm } else { None };
                self.admin_ok(
                    "POST",
                    "/tags".into(),
                    Some(json!({"name": t, "perm": p, "arches": "amd64"})),
                )
                .await;
            }
            self.admin_ok("POST", format!("/tags/{tag}/packages"), Some(json!({"package": "pkg"})))
                .await;
            self.admin_ok(
                "POST",
                format!("/tags/{tag}/packages"),
                Some(json!({"package": "gone"})),
            )
            .await;
            self.admin_ok(
                "POST",
                format!("/tags/{tag}/inheritance"),
                Some(json!({"parent": parent, "priority": 10})),
            )
            .await;
            let tagged = self.complete_build(&self.admin, "pkg", &format!("a{n}")).await;
            self.admin_ok("POST", format!("/tags/{tag}/builds"), Some(json!({"nvr": tagged})))
                .await;
            let untagged = self.complete_build(&self.admin, "pkg", &format!("b{n}")).await;
            self.admin_ok(
                "POST",
                "/targets".into(),
                Some(json!({"name": target, "build_tag": builder_tag, "dest_tag": tag})),
            )
            .await;
            if variant == Variant::Locked {
                self.admin_ok("PATCH", format!("/tags/{tag}"), Some(json!({"locked": true})))
                    .await;
            }
            (tagged, untagged)
        } else {
            Default::default()
        };
        let build_req = json!({"method": "build",
            "request": {"target": target, "image": "ve/minimal", "repo": "git+file:///r@main"}});
        let r = match row.key().as_str() {
            "GET /openapi.json" => req("GET", "/openapi.json".into(), None),
            "GET /status" => req("GET", "/status".into(), None),
            "POST /login" => req(
                "POST",
                "/login".into(),
                Some(json!({"user": "login", "password": "login-password"})),
            ),
            "GET /whoami" => req("GET", "/whoami".into(), None),
            "GET /users" => req("GET", "/users".into(), None),
            "POST /users" => req("POST", "/users".into(), Some(json!({"name": format!("new{n}")}))),
            "POST /users/{name}/perms" => req(
                "POST",
                "/users/nobody/perms".into(),
                Some(json!({"perm": format!("p{n}")})),
            ),
            "DELETE /users/{name}/perms/{perm}" => {
                self.admin_ok(
                    "POST",
                    "/users/nobody/perms".into(),
                    Some(json!({"perm": format!("q{n}")})),
                )
                .await;
                req("DELETE", format!("/users/nobody/perms/q{n}"), None)
            }
            "GET /users/{name}/tokens" => req("GET", "/users/nobody/tokens".into(), None),
            "POST /users/{name}/tokens" => req("POST", "/users/nobody/tokens".into(), Some(json!({"name": "x"}))),
            "DELETE /tokens/{id}" => {
                let v = self
                    .ok_as(
                        &self.nobody.clone(),
                        "POST",
                        "/users/nobody/tokens".into(),
                        Some(json!({"name": "y"})),
                    )
                    .await;
                fx.owner = Some(self.nobody.clone());
                fx.other = Some(self.holder("tag"));
                req("DELETE", format!("/tokens/{}", v["id"]), None)
            }
            "GET /tags" => req("GET", "/tags".into(), None),
            "POST /tags" => req("POST", "/tags".into(), Some(json!({"name": format!("new{n}")}))),
            "GET /tags/{tag}" => req("GET", format!("/tags/{tag}"), None),
            "PATCH /tags/{tag}" => req("PATCH", format!("/tags/{tag}"), Some(json!({"extra": {"k": n}}))),
            "DELETE /tags/{tag}" => {
                self.admin_ok("DELETE", format!("/targets/{target}"), None).await;
                req("DELETE", format!("/tags/{tag}"), None)
            }
            "GET /tags/{tag}/history" => req("GET", format!("/tags/{tag}/history"), None),
            "GET /tags/{tag}/inheritance" => req("GET", format!("/tags/{tag}/inheritance"), None),
            "POST /tags/{tag}/inheritance" => req(
                "POST",
                format!("/tags/{tag}/inheritance"),
                Some(json!({"parent": builder_tag, "priority": 20})),
            ),
            "PATCH /tags/{tag}/inheritance/{parent}" => req(
                "PATCH",
                format!("/tags/{tag}/inheritance/{parent}"),
                Some(json!({"priority": 30})),
            ),
            "DELETE /tags/{tag}/inheritance/{parent}" => {
                req("DELETE", format!("/tags/{tag}/inheritance/{parent}"), None)
            }
            "GET /tags/{tag}/config" => req("GET", format!("/tags/{tag}/config"), None),
            "GET /tags/{tag}/packages" => req("GET", format!("/tags/{tag}/packages"), None),
            "POST /tags/{tag}/packages" => {
                fx.force_query = true;
                req(
                    "POST",
                    format!("/tags/{tag}/packages"),
                    Some(json!({"package": "other"})),
                )
            }
            "DELETE /tags/{tag}/packages/{package}" => {
                fx.force_query = true;
                req("DELETE", format!("/tags/{tag}/packages/gone"), None)
            }
            "GET /tags/{tag}/builds" => req("GET", format!("/tags/{tag}/builds"), None),
            "POST /tags/{tag}/builds" => {
                fx.force_body = true;
                req("POST", format!("/tags/{tag}/builds"), Some(json!({"nvr": untagged})))
            }
            "DELETE /tags/{tag}/builds/{nvr}" => {
                fx.force_query = true;
                req("DELETE", format!("/tags/{tag}/builds/{tagged}"), None)
            }
            "GET /builds" => req("GET", "/builds".into(), None),
            "POST /builds" => req(
                "POST",
                "/builds".into(),
                Some(json!({"name": "pkg", "version": "2", "release": format!("c{n}"), "artifacts": []})),
            ),
            "GET /builds/{nvr}" => req("GET", format!("/builds/{tagged}"), None),
            "POST /builds/{nvr}/state" | "PUT /builds/{nvr}/files/{file}" => {
                let body = b"artifact bytes".to_vec();
                let b = json!({"name": "own", "version": "1", "release": format!("d{n}"),
                    "artifacts": [{"file": "a.img", "format": "img", "size": body.len(), "sha256": sha(&body)}]});
                self.ok_as(&self.holder("build"), "POST", "/builds".into(), Some(b))
                    .await;
                let nvr = format!("own-1-d{n}");
                fx.owner = Some(self.holder("build"));
                fx.other = Some(self.other_build.clone());
                if row.verb == "PUT" {
                    Req {
                        method: "PUT".into(),
                        path: format!("/builds/{nvr}/files/a.img"),
                        json: None,
                        raw: Some((body.clone(), sha(&body))),
                    }
                } else {
                    req("POST", format!("/builds/{nvr}/state"), Some(json!({"state": "FAILED"})))
                }
            }
            "GET /builds/{nvr}/files/{file}" => {
                let body = b"download me".to_vec();
                let b = json!({"name": "dl", "version": "1", "release": format!("e{n}"),
                    "artifacts": [{"file": "a.img", "format": "img", "size": body.len(), "sha256": sha(&body)}]});
                self.admin_ok("POST", "/builds".into(), Some(b)).await;
                let up = Req {
                    method: "PUT".into(),
                    path: format!("/builds/dl-1-e{n}/files/a.img"),
                    json: None,
                    raw: Some((body.clone(), sha(&body))),
                };
                let (s, v) = self.send(Some(&self.admin), &up).await;
                assert!(s.is_success(), "{v}");
                req("GET", format!("/builds/dl-1-e{n}/files/a.img"), None)
            }
            "GET /targets" => req("GET", "/targets".into(), None),
            "POST /targets" => req(
                "POST",
                "/targets".into(),
                Some(json!({"name": format!("new{n}"), "build_tag": builder_tag, "dest_tag": tag})),
            ),
            "GET /targets/{name}" => req("GET", format!("/targets/{target}"), None),
            "PUT /targets/{name}" => req(
                "PUT",
                format!("/targets/{target}"),
                Some(json!({"name": target, "build_tag": builder_tag, "dest_tag": parent})),
            ),
            "PATCH /targets/{name}" => req(
                "PATCH",
                format!("/targets/{target}"),
                Some(json!({"define": {"k": "v"}})),
            ),
            "DELETE /targets/{name}" => req("DELETE", format!("/targets/{target}"), None),
            "GET /targets/{name}/macros" => req("GET", format!("/targets/{target}/macros"), None),
            "GET /images" => req("GET", "/images".into(), None),
            "GET /images/{name}/{version}"
            | "DELETE /images/{name}/{version}"
            | "GET /images/{name}/{version}/blob" => {
                let img = image_bytes();
                let up = Req {
                    method: "PUT".into(),
                    path: format!("/images/img{n}/1/upload"),
                    json: None,
                    raw: Some((img.clone(), sha(&img))),
                };
                let (s, v) = self.send(Some(&self.admin), &up).await;
                assert!(s.is_success(), "{v}");
                let suffix = if row.path.ends_with("/blob") { "/blob" } else { "" };
                req(&row.verb, format!("/images/img{n}/1{suffix}"), None)
            }
            "PUT /images/{name}/{version}/upload" => {
                let img = image_bytes();
                Req {
                    method: "PUT".into(),
                    path: format!("/images/img{n}/1/upload"),
                    json: None,
                    raw: Some((img.clone(), sha(&img))),
                }
            }
            "GET /hosts" => req("GET", "/hosts".into(), None),
            "POST /hosts" => req(
                "POST",
                "/hosts".into(),
                Some(json!({"name": format!("new{n}"), "arch": "amd64", "channels": ["default"], "capacity": 1})),
            ),
            "GET /tasks" => req("GET", "/tasks".into(), None),
            "POST /tasks" => req("POST", "/tasks".into(), Some(build_req)),
            "GET /tasks/{id}" | "POST /tasks/{id}/cancel" | "GET /tasks/{id}/log" => {
                let v = self
                    .ok_as(
                        &self.holder("build"),
                        "POST",
                        "/tasks".into(),
                        Some(json!({"method": "noop"})),
                    )
                    .await;
                fx.owner = Some(self.holder("build"));
                fx.other = Some(self.nobody.clone());
                let id = &v["id"];
                match row.key().as_str() {
                    "GET /tasks/{id}" => req("GET", format!("/tasks/{id}"), None),
                    "GET /tasks/{id}/log" => req("GET", format!("/tasks/{id}/log"), None),
                    _ => req("POST", format!("/tasks/{id}/cancel"), None),
                }
            }
            "GET /tasks/{id}/files/{file}" => {
                let (host, id) = self.claimed_task(n, true).await;
                let body = b"kept file".to_vec();
                let up = Req {
                    method: "PUT".into(),
                    path: format!("/tasks/{id}/files/kept.img"),
                    json: None,
                    raw: Some((body.clone(), sha(&body))),
                };
                let (s, v) = self.send(Some(&host), &up).await;
                assert!(s.is_success(), "{v}");
                let report = json!({"ok": true, "build": {"name": "scr", "version": "1", "release": format!("f{n}"),
                    "artifacts": [{"file": "kept.img", "format": "img", "size": body.len(), "sha256": sha(&body)}]}});
                self.ok_as(&host, "POST", format!("/tasks/{id}/result"), Some(report))
                    .await;
                req("GET", format!("/tasks/{id}/files/kept.img"), None)
            }
            "POST /host/heartbeat" | "POST /host/claim" => {
                let (host, _) = self.host(n).await;
                fx.host = Some(host);
                let body = (row.path == "/host/heartbeat").then(|| json!({"load": 0.0}));
                req("POST", row.path.clone(), body)
            }
            "POST /tasks/{id}/result"
            | "POST /tasks/{id}/log"
            | "POST /tasks/{id}/release"
            | "PUT /tasks/{id}/files/{file}" => {
                let (host, id) = self.claimed_task(n, false).await;
                fx.host = Some(host);
                match row.key().as_str() {
                    "POST /tasks/{id}/result" => req("POST", format!("/tasks/{id}/result"), Some(json!({"ok": true}))),
                    "POST /tasks/{id}/release" => req("POST", format!("/tasks/{id}/release"), None),
                    "POST /tasks/{id}/log" => Req {
                        method: "POST".into(),
                        path: format!("/tasks/{id}/log"),
                        json: None,
                        raw: Some((b"a log line\n".to_vec(), String::new())),
                    },
                    _ => {
                        let body = b"task file".to_vec();
                        Req {
                            method: "PUT".into(),
                            path: format!("/tasks/{id}/files/t.img"),
                            json: None,
                            raw: Some((body.clone(), sha(&body))),
                        }
                    }
                }
            }
            key if key.contains("/pipelines") => self.pipeline_scenario(key, n, &target, &mut fx).await,
            key if key.contains("/channel") => {
                self.ensure_key().await;
                match key {
                    "GET /channels" | "GET /channels/{tag}" => {
                        self.admin_ok("POST", format!("/channels/{tag}/publish"), None).await;
                        let path = if key.ends_with("{tag}") {
                            format!("/channels/{tag}")
                        } else {
                            "/channels".into()
                        };
                        req("GET", path, None)
                    }
                    "POST /channels/{tag}/publish" => req("POST", format!("/channels/{tag}/publish"), None),
                    _ => req(&row.verb, "/channel-key".into(), None),
                }
            }
            other => panic!("no scenario for `{other}`: add one to tests/policy.rs"),
        };
        (r, fx)
    }

    /// The hub's channel signing key, made once.
    async fn ensure_key(&self) {
        let (s, _) = self
            .send(Some(&self.admin), &req("GET", "/channel-key".into(), None))
            .await;
        if s == StatusCode::NOT_FOUND {
            self.admin_ok("POST", "/channel-key".into(), None).await;
        }
    }

    /// A build pipeline of target `target` (which publishes into the
    /// fixture's tag), and the request of a pipeline route on it.
    async fn pipeline_scenario(&self, key: &str, n: u32, target: &str, fx: &mut Fixture) -> Req {
        let name = format!("pl{n}");
        let config = |name: &str| {
            json!({"name": name, "kind": "build", "repo": "git+file:///r@main", "image": "ve/minimal",
                   "target": target, "target_name": "pkg-1-r%{run}"})
        };
        if key != "POST /pipelines" {
            self.admin_ok("POST", "/pipelines".into(), Some(config(&name))).await;
        }
        match key {
            "GET /pipelines" => req("GET", "/pipelines".into(), None),
            "POST /pipelines" => req("POST", "/pipelines".into(), Some(config(&format!("new{n}")))),
            "GET /pipelines/{name}" | "DELETE /pipelines/{name}" => req(
                key.split(' ').next().unwrap_or("GET"),
                format!("/pipelines/{name}"),
                None,
            ),
            "PUT /pipelines/{name}" => req("PUT", format!("/pipelines/{name}"), Some(config(&name))),
            "PATCH /pipelines/{name}" => req("PATCH", format!("/pipelines/{name}"), Some(json!({"priority": 5}))),
            "GET /pipelines/{name}/history" => req("GET", format!("/pipelines/{name}/history"), None),
            "GET /pipelines/{name}/runs" => req("GET", format!("/pipelines/{name}/runs"), None),
            "POST /pipelines/{name}/runs" => req("POST", format!("/pipelines/{name}/runs"), Some(json!({}))),
            "GET /pipelines/{name}/runs/{run}" => {
                self.admin_ok("POST", format!("/pipelines/{name}/runs"), Some(json!({})))
                    .await;
                req("GET", format!("/pipelines/{name}/runs/1"), None)
            }
            "POST /pipelines/{name}/hooks/{service}/secret" => {
                req("POST", format!("/pipelines/{name}/hooks/gitlab/secret"), None)
            }
            "DELETE /pipelines/{name}/hooks/{service}/secret" => {
                self.admin_ok("POST", format!("/pipelines/{name}/hooks/gitlab/secret"), None)
                    .await;
                req("DELETE", format!("/pipelines/{name}/hooks/gitlab/secret"), None)
            }
            "POST /pipelines/{name}/hooks/{service}" => {
                let v = self
                    .admin_ok("POST", format!("/pipelines/{name}/hooks/generic/secret"), None)
                    .await;
                fx.hook = v["secret"].as_str().map(str::to_string);
                Req {
                    method: "POST".into(),
                    path: format!("/pipelines/{name}/hooks/generic"),
                    json: None,
                    raw: Some((Vec::new(), String::new())),
                }
            }
            other => panic!("no pipeline scenario for `{other}`: add one to tests/policy.rs"),
        }
    }

    /// A new builder: its token and name.
    async fn host(&self, n: u32) -> (String, String) {
        let name = format!("h{n}");
        let v = self
            .admin_ok(
                "POST",
                "/hosts".into(),
                Some(json!({"name": name, "arch": "amd64", "channels": [format!("c{n}")], "capacity": 1})),
            )
            .await;
        (v["token"].as_str().expect("host token").to_string(), name)
    }

    /// A task claimed by a new builder: the builder's token and the task's
    /// id. A scratch build task when `scratch`, else a noop.
    async fn claimed_task(&self, n: u32, scratch: bool) -> (String, i64) {
        let (host, _) = self.host(n).await;
        let mut t = json!({"method": "noop", "channel": format!("c{n}")});
        if scratch {
            let target = format!("tg{n}");
            t = json!({"method": "build", "channel": format!("c{n}"),
                "request": {"target": target, "image": "ve/minimal", "repo": "git+file:///r@main", "scratch": true}});
        }
        let v = self.admin_ok("POST", "/tasks".into(), Some(t)).await;
        let id = v["id"].as_i64().expect("id");
        let c = self.ok_as(&host, "POST", "/host/claim".into(), None).await;
        assert_eq!(c["id"].as_i64(), Some(id), "the new builder claims its task");
        (host, id)
    }
}

/// What a scenario tells the checker besides the request.
#[derive(Default)]
struct Fixture {
    /// The object's owner and another user (owner rows).
    owner: Option<String>,
    other: Option<String>,
    /// The builder whose token the host-token rows need.
    host: Option<String>,
    /// The secret of the hook the request calls.
    hook: Option<String>,
    /// The route takes `?force=true` / `"force": true`.
    force_query: bool,
    force_body: bool,
}

/// Who calls, in the checks below.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    /// A user without permissions (also the user `self` rows name).
    Nobody,
    /// A user holding exactly this permission.
    Holder(&'static str),
    /// A user holding `tag` and `secret`.
    SecretTag,
    Admin,
    /// The admin, passing `force` where the route takes it.
    AdminForce,
    /// The owner of the fixture's object, and another user.
    Owner,
    Other,
    /// The builder the fixture's task belongs to.
    Host,
    /// Whoever holds the fixture hook's secret.
    Hook,
}

/// The callers of a row and whether the table lets each through.
fn callers(who: &str) -> Vec<(Caller, bool)> {
    use Caller::*;
    match who {
        "public" | "reader" => vec![(Anonymous, true), (Nobody, true), (Holder("host"), true), (Admin, true)],
        "admin" => vec![
            (Anonymous, false),
            (Nobody, false),
            (Holder("tag"), false),
            (Admin, true),
        ],
        "self or admin" => vec![
            (Anonymous, false),
            (Nobody, true),
            (Holder("tag"), false),
            (Admin, true),
        ],
        "owner or admin" => vec![(Anonymous, false), (Owner, true), (Other, false), (Admin, true)],
        "build, owner" => vec![
            (Anonymous, false),
            (Nobody, false),
            (Owner, true),
            (Other, false),
            (Admin, true),
        ],
        "host token" => vec![(Anonymous, false), (Nobody, false), (Admin, false), (Host, true)],
        "hook secret" => vec![(Anonymous, false), (Nobody, false), (Admin, false), (Hook, true)],
        perm => {
            let p = *PERMS
                .iter()
                .find(|p| **p == perm)
                .unwrap_or_else(|| panic!("unknown who `{perm}`"));
            let unrelated = if p == "tag" { "image" } else { "tag" };
            vec![
                (Anonymous, false),
                (Nobody, false),
                (Holder(unrelated), false),
                (Holder(p), true),
                (Admin, true),
            ]
        }
    }
}

impl Served {
    fn token(&self, c: Caller, fx: &Fixture) -> Option<String> {
        match c {
            Caller::Anonymous => None,
            Caller::Nobody => Some(self.nobody.clone()),
            Caller::Holder(p) => Some(self.holder(p)),
            Caller::SecretTag => Some(self.secret_tag.clone()),
            Caller::Admin | Caller::AdminForce => Some(self.admin.clone()),
            Caller::Owner => Some(fx.owner.clone().expect("the scenario names the owner")),
            Caller::Other => Some(fx.other.clone().expect("the scenario names another user")),
            Caller::Host => Some(fx.host.clone().expect("the scenario names the builder")),
            Caller::Hook => Some(fx.hook.clone().expect("the scenario names the hook's secret")),
        }
    }

    /// Prepares `row` afresh, calls it as `caller`, and checks the answer:
    /// 2xx when `allowed`, else `denied` (or, for anonymous callers, 401).
    async fn check(&self, row: &Row, variant: Variant, caller: Caller, allowed: bool, denied: StatusCode) {
        let (mut r, fx) = self.prepare(row, variant).await;
        if matches!(caller, Caller::AdminForce) {
            if fx.force_query {
                r.path.push_str(if r.path.contains('?') {
                    "&force=true"
                } else {
                    "?force=true"
                });
            }
            if fx.force_body
                && let Some(j) = r.json.as_mut()
            {
                j["force"] = json!(true);
            }
        }
        let (s, v) = self.send(self.token(caller, &fx).as_deref(), &r).await;
        let what = format!("{} ({variant:?}) as {caller:?}: {s} {v}", row.key());
        if allowed {
            assert!(s.is_success(), "the table allows {what}");
        } else if matches!(caller, Caller::Anonymous) {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "the table refuses {what}");
        } else if denied == StatusCode::FORBIDDEN {
            assert!(
                s == StatusCode::FORBIDDEN || s == StatusCode::UNAUTHORIZED,
                "the table refuses {what}"
            );
        } else {
            assert_eq!(s, denied, "the table refuses {what}");
        }
        if !s.is_success() {
            assert!(v["error"]["code"].is_string(), "errors are JSON: {what}");
        }
    }
}

impl Served {
    /// Every check of one row: its callers, then its tag checks.
    async fn check_row(&self, row: Row) {
        use Caller::*;
        for (caller, allowed) in callers(&row.who) {
            self.check(&row, Variant::Plain, caller, allowed, StatusCode::FORBIDDEN)
                .await;
        }
        match row.checks.as_str() {
            "tag" => {
                self.check(&row, Variant::Secret, Holder("tag"), false, StatusCode::FORBIDDEN)
                    .await;
                self.check(&row, Variant::Secret, SecretTag, true, StatusCode::FORBIDDEN)
                    .await;
                self.check(&row, Variant::Secret, Admin, true, StatusCode::FORBIDDEN)
                    .await;
                self.check(&row, Variant::Locked, Holder("tag"), false, StatusCode::LOCKED)
                    .await;
                self.check(&row, Variant::Locked, SecretTag, false, StatusCode::LOCKED)
                    .await;
                self.check(&row, Variant::Locked, AdminForce, true, StatusCode::LOCKED)
                    .await;
                let (_, fx) = self.prepare(&row, Variant::Plain).await;
                if fx.force_query || fx.force_body {
                    self.check(&row, Variant::Locked, Admin, false, StatusCode::LOCKED)
                        .await;
                }
            }
            "dest" => {
                self.check(&row, Variant::Secret, Holder("build"), false, StatusCode::FORBIDDEN)
                    .await;
                self.check(&row, Variant::Secret, Admin, true, StatusCode::FORBIDDEN)
                    .await;
                self.check(&row, Variant::Locked, Holder("build"), false, StatusCode::LOCKED)
                    .await;
                self.check(&row, Variant::Locked, Admin, false, StatusCode::LOCKED)
                    .await;
            }
            _ => {}
        }
    }
}

both!(every_row_of_the_policy_table_holds, |t| async move {
    use futures::StreamExt;
    let s = start(&t).await;
    // Rows work on objects of their own, so they run side by side.
    futures::stream::iter(table())
        .for_each_concurrent(6, |row| s.check_row(row))
        .await;
});

both!(only_admins_lock_unlock_or_set_a_tags_permission, |t| async move {
    let s = start(&t).await;
    let tagger = s.holder("tag");
    s.ok_as(&tagger, "POST", "/tags".into(), Some(json!({"name": "rel"})))
        .await;
    for body in [
        json!({"locked": true}),
        json!({"perm": "secret"}),
        json!({"perm": null}),
    ] {
        let (st, v) = s
            .send(Some(&tagger), &req("PATCH", "/tags/rel".into(), Some(body.clone())))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}: {v}");
    }
    s.admin_ok("PATCH", "/tags/rel".into(), Some(json!({"locked": true})))
        .await;
    // A locked tag: a tag holder can neither unlock it nor change it.
    for r in [
        req("PATCH", "/tags/rel".into(), Some(json!({"locked": false}))),
        req("PATCH", "/tags/rel".into(), Some(json!({"extra": {"k": 1}}))),
        req("PATCH", "/tags/rel".into(), Some(json!({"rename": "rel2"}))),
        req("DELETE", "/tags/rel".into(), None),
    ] {
        let (st, v) = s.send(Some(&tagger), &r).await;
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::LOCKED,
            "{} {}: {st} {v}",
            r.method,
            r.path
        );
    }
    let info = s.admin_ok("GET", "/tags/rel".into(), None).await;
    assert_eq!(
        (info["locked"].as_bool(), info["extra"].as_object().map(|m| m.len())),
        (Some(true), Some(0))
    );
    s.admin_ok(
        "PATCH",
        "/tags/rel".into(),
        Some(json!({"perm": "secret", "locked": false})),
    )
    .await;
    let info = s.admin_ok("GET", "/tags/rel".into(), None).await;
    assert_eq!(
        (info["locked"].as_bool(), info["perm"].as_str()),
        (Some(false), Some("secret"))
    );
});

both!(
    a_build_task_tags_as_its_owner_at_the_time_it_completes,
    |t| async move {
        let s = start(&t).await;
        let dev = kiln_hub::bootstrap_user(&s.db, "dev", None, &["build".into()])
            .await
            .expect("dev");
        for name in ["fw-build", "fw"] {
            s.admin_ok("POST", "/tags".into(), Some(json!({"name": name}))).await;
        }
        s.admin_ok("POST", "/tags/fw/packages".into(), Some(json!({"package": "cam"})))
            .await;
        s.admin_ok(
            "POST",
            "/targets".into(),
            Some(json!({"name": "fw", "build_tag": "fw-build", "dest_tag": "fw"})),
        )
        .await;
        let host = s
            .admin_ok(
                "POST",
                "/hosts".into(),
                Some(json!({"name": "b1", "arch": "amd64", "channels": ["default"], "capacity": 1})),
            )
            .await["token"]
            .as_str()
            .expect("token")
            .to_string();
        let submit = |rel: &'static str| {
            let s = &s;
            let dev = dev.clone();
            let host = host.clone();
            async move {
                let task = json!({"method": "build",
                "request": {"target": "fw", "image": "cam", "repo": "git+file:///r@main"}});
                let id = s.ok_as(&dev, "POST", "/tasks".into(), Some(task)).await["id"]
                    .as_i64()
                    .expect("id");
                s.ok_as(&host, "POST", "/host/claim".into(), None).await;
                let report =
                    json!({"ok": true, "build": {"name": "cam", "version": "1", "release": rel, "artifacts": []}});
                (id, req("POST", format!("/tasks/{id}/result"), Some(report)))
            }
        };
        // The owner loses `build` while the task runs: its build is not tagged.
        let (_, report) = submit("1").await;
        s.admin_ok("DELETE", "/users/dev/perms/build".into(), None).await;
        let (st, v) = s.send(Some(&host), &report).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        let (st, _) = s.send(None, &req("GET", "/builds/cam-1-1".into(), None)).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "nothing is recorded");
        s.admin_ok("POST", "/users/dev/perms".into(), Some(json!({"perm": "build"})))
            .await;
        let (st, v) = s.send(Some(&host), &report).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        // The destination starts to require a permission the owner lacks.
        let (_, report) = submit("2").await;
        s.admin_ok("PATCH", "/tags/fw".into(), Some(json!({"perm": "release"})))
            .await;
        let (st, v) = s.send(Some(&host), &report).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        s.admin_ok("POST", "/users/dev/perms".into(), Some(json!({"perm": "release"})))
            .await;
        let (st, v) = s.send(Some(&host), &report).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let tagged = s.admin_ok("GET", "/tags/fw/builds".into(), None).await;
        assert_eq!(tagged.as_array().map(Vec::len), Some(2), "{tagged}");
    }
);
