//! Hostile input over real HTTP, on SQLite and PostgreSQL: every name a
//! request creates follows the one name rule (docs/hub.md, "Names"); file
//! names, extra keys and values, free text and integers are bounded; and no
//! request, whatever it carries, makes the database layer answer a 5xx.

mod common;
#[path = "common/served.rs"]
mod served;

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Hub {
    base: String,
    addr: SocketAddr,
    admin: String,
    http: reqwest::Client,
    _served: served::Served,
}

async fn start(t: &common::TestDb) -> Hub {
    let admin = kiln_hub::bootstrap_user(&t.url, "admin", None, &["admin".into()])
        .await
        .expect("bootstrap");
    let served = served::serve(t, true).await;
    Hub {
        base: format!("http://{}/api/v1", served.addr),
        addr: served.addr,
        admin,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
        _served: served,
    }
}

/// One HTTP answer: its status and its JSON (null if it has none).
type Answer = (StatusCode, Value);

impl Hub {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Answer {
        let body = (!body.is_null()).then_some(body);
        self.call(method, path, Some(&self.admin), body).await
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self.admin(method, path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    /// A request written byte for byte: its path is sent as given (an HTTP
    /// client library would normalise `%2E` and `..` away).
    async fn raw(&self, method: &str, path: &str, token: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut head = format!(
            "{method} /api/v1{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut s = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text}"));
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (
            StatusCode::from_u16(status).expect("status"),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    async fn raw_json(&self, method: &str, path: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("json");
        self.raw(
            method,
            path,
            &self.admin,
            &[("Content-Type", "application/json")],
            &bytes,
        )
        .await
    }

    async fn events(&self) -> i64 {
        self.ok("GET", "/status", Value::Null).await["event"]
            .as_i64()
            .expect("event")
    }
}

/// Every byte percent-encoded but ASCII letters and digits: the segment
/// reaches the hub as it is, `.` and `/` included.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// Names the rule refuses.
fn bad_names() -> Vec<String> {
    [".", "..", ".x", "a/b", "a\nb", "a\0b", "", "-x", "a b"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("n{}", "a".repeat(200))])
        .collect()
}

/// A build request body with one artifact.
fn build(name: &str, version: &str, release: &str, file: &str, format: &str, size: i64) -> Value {
    json!({
        "name": name, "version": version, "release": release,
        "artifacts": [{"file": file, "format": format, "size": size, "sha256": "0".repeat(64)}]
    })
}

/// The answer must be a 400 in the API's error shape, its message naming
/// `what`.
fn refused(case: &str, (s, v): &Answer, what: &str) {
    let case: String = case.chars().take(200).collect();
    assert_eq!(s.as_u16(), 400, "{case}: {v:.300}");
    assert_eq!(v["error"]["code"], "bad_request", "{case}: {v}");
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(what), "{case}: the message names {what}: {v}");
}

/// Tags `base` and `dest` with package `fw` on `dest`, target `fw`, user
/// `alice`, source image `img@1`, tags `child` and `p`.
async fn fixtures(h: &Hub) {
    for t in ["base", "dest", "child", "p"] {
        h.ok("POST", "/tags", json!({"name": t})).await;
    }
    h.ok("POST", "/tags/dest/packages", json!({"package": "fw"})).await;
    h.ok(
        "POST",
        "/targets",
        json!({"name": "fw", "build_tag": "base", "dest_tag": "dest"}),
    )
    .await;
    h.ok("POST", "/users", json!({"name": "alice"})).await;
    let image = common::images::tar_image(b"image bytes");
    let sha = sha256(&image);
    let (s, v) = h
        .raw(
            "PUT",
            "/images/img/1/upload",
            &h.admin,
            &[("x-kiln-sha256", &sha)],
            &image,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// Every route that creates or renames something named, with `bad` where
/// the name goes, and what the refusal must name.
fn name_cases(bad: &str) -> Vec<(&'static str, String, Value, &'static str)> {
    let noop = |k: &str| json!({"method": "noop", k: bad});
    let update = |name: &str, format: Option<&str>| {
        json!({"method": "update", "request": {
            "target": "fw", "from": "img@1", "script": "git+file:///s@main:u.sh", "name": name, "format": format
        }})
    };
    let mut cases = vec![
        ("POST", "/tags".into(), json!({"name": bad}), "tag name"),
        ("PATCH", "/tags/base".into(), json!({"rename": bad}), "tag name"),
        ("POST", "/tags".into(), json!({"name": "t1", "perm": bad}), "permission"),
        ("PATCH", "/tags/base".into(), json!({"perm": bad}), "permission"),
        (
            "POST",
            "/tags".into(),
            json!({"name": "t1", "extra": {bad: 1}}),
            "extra key",
        ),
        ("PATCH", "/tags/base".into(), json!({"extra": {bad: 1}}), "extra key"),
        ("PATCH", "/tags/base".into(), json!({"block_extra": [bad]}), "extra key"),
        (
            "POST",
            "/tags/base/packages".into(),
            json!({"package": bad}),
            "package name",
        ),
        (
            "POST",
            "/tags/base/packages".into(),
            json!({"package": bad, "blocked": true}),
            "package name",
        ),
        (
            "POST",
            "/tags/base/packages".into(),
            json!({"package": "fw", "owner": bad}),
            "owner",
        ),
        (
            "POST",
            "/targets".into(),
            json!({"name": bad, "build_tag": "base", "dest_tag": "dest"}),
            "target name",
        ),
        ("PATCH", "/targets/fw".into(), json!({"rename": bad}), "target name"),
        ("POST", "/users".into(), json!({"name": bad}), "user name"),
        (
            "POST",
            "/users".into(),
            json!({"name": "u1", "perms": [bad]}),
            "permission",
        ),
        ("POST", "/users/alice/perms".into(), json!({"perm": bad}), "permission"),
        (
            "POST",
            "/builds".into(),
            build(bad, "1", "1", "f", "raw", 0),
            "build name",
        ),
        ("POST", "/builds".into(), build("b", bad, "1", "f", "raw", 0), "version"),
        ("POST", "/builds".into(), build("b", "1", bad, "f", "raw", 0), "release"),
        ("POST", "/builds".into(), build("b", "1", "1", "f", bad, 0), "format"),
        (
            "POST",
            "/hosts".into(),
            json!({"name": bad, "arch": "amd64"}),
            "host name",
        ),
        ("POST", "/hosts".into(), json!({"name": "h1", "arch": bad}), "arch"),
        (
            "POST",
            "/hosts".into(),
            json!({"name": "h1", "arch": "amd64", "channels": [bad]}),
            "channel",
        ),
        ("POST", "/tasks".into(), noop("channel"), "channel"),
        ("POST", "/tasks".into(), noop("arch"), "arch"),
        ("POST", "/tasks".into(), update(bad, None), "update name"),
        ("POST", "/tasks".into(), update("fw-1-1", Some(bad)), "format"),
    ];
    // Arches are names separated by spaces.
    if !bad.contains(' ') {
        cases.push(("POST", "/tags".into(), json!({"name": "t1", "arches": bad}), "arch"));
        cases.push(("PATCH", "/tags/base".into(), json!({"arches": bad}), "arch"));
    }
    cases
}

both!(every_name_a_request_creates_follows_the_name_rule, |t| async move {
    let h = start(&t).await;
    fixtures(&h).await;
    let before = h.events().await;
    for bad in bad_names() {
        for (m, path, body, what) in name_cases(&bad) {
            let a = h.admin(m, &path, body.clone()).await;
            refused(&format!("{m} {path} {body}"), &a, what);
        }
        // Names in the path, sent as they are.
        if !bad.is_empty() {
            let e = enc(&bad);
            let target = json!({"name": bad, "build_tag": "base", "dest_tag": "dest"});
            let a = h.raw_json("PUT", &format!("/targets/{e}"), &target).await;
            refused(&format!("PUT /targets/{e}"), &a, "target name");
            for (path, what) in [
                (format!("/images/{e}/1/upload"), "image name"),
                (format!("/images/img/{e}/upload"), "image version"),
            ] {
                let a = h
                    .raw("PUT", &path, &h.admin, &[], &common::images::tar_image(b"x"))
                    .await;
                refused(&format!("PUT {path}"), &a, what);
            }
        }
    }
    assert_eq!(h.events().await, before, "nothing was recorded");
    // Names that pass: every mark the rule allows, inside a name.
    for name in ["a+b~c.d_e-f", "0.x", "A~"] {
        h.ok(
            "POST",
            "/tags",
            json!({"name": name, "perm": name, "arches": format!("{name} x86_64")}),
        )
        .await;
        let (s, v) = h.admin("GET", &format!("/tags/{name}"), Value::Null).await;
        assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some(name)), "{v}");
    }
});

both!(token_names_are_labels, |t| async move {
    let h = start(&t).await;
    h.ok("POST", "/users", json!({"name": "alice"})).await;
    for ok in ["kiln login", "..", "ci/nightly"] {
        h.ok("POST", "/users/alice/tokens", json!({"name": ok})).await;
    }
    for bad in ["", "a\nb", "a\0b", "a\u{85}b", &"t".repeat(201)] {
        let a = h.admin("POST", "/users/alice/tokens", json!({"name": bad})).await;
        refused(&format!("token {bad:?}"), &a, "token name");
    }
});

/// File names the hub refuses, for artifacts and task files.
fn bad_files() -> Vec<String> {
    [
        "", ".", "..", ".x", "a/b", "a\\b", "a\"b", "a\nb", "a\rb", "a\tb", "a\0b", "a\u{1b}b", "a\u{7f}b", "a\u{85}b",
        "a\u{9f}b",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["é".repeat(128), "f".repeat(256)])
    .collect()
}

both!(
    file_names_are_bounded_and_free_of_controls_quotes_and_separators,
    |t| async move {
        let h = start(&t).await;
        for bad in bad_files() {
            let a = h.admin("POST", "/builds", build("b", "1", "1", &bad, "raw", 0)).await;
            refused(&format!("artifact {bad:?}"), &a, "file name");
        }
        // A task's files: a builder with an open task uploads them.
        let host = h.ok("POST", "/hosts", json!({"name": "b1", "arch": "amd64"})).await;
        let ht = host["token"].as_str().expect("host token").to_string();
        let task = h.ok("POST", "/tasks", json!({"method": "noop"})).await;
        let id = task["id"].as_i64().expect("id");
        let (s, v) = h.call("POST", "/host/claim", Some(&ht), None).await;
        assert_eq!((s, v["id"].as_i64()), (StatusCode::OK, Some(id)), "{v}");
        let empty = sha256(b"");
        for bad in bad_files().into_iter().filter(|f| !f.is_empty()) {
            let path = format!("/tasks/{id}/files/{}", enc(&bad));
            let a = h.raw("PUT", &path, &ht, &[("x-kiln-sha256", &empty)], b"").await;
            refused(&format!("task file {bad:?}"), &a, "file name");
        }
        // Every other character goes through, there and back.
        let odd = "a b%20c?d#e+f~g&h=i;j,k'l(m)n[o]p{q}r<s>t|u^v`w@x!y$z*ü €.raw";
        let path = format!("/tasks/{id}/files/{}", enc(odd));
        let (s, v) = h.raw("PUT", &path, &ht, &[("x-kiln-sha256", &empty)], b"").await;
        assert_eq!((s, v["file"].as_str()), (StatusCode::CREATED, Some(odd)), "{v}");
    }
);

both!(extra_keys_values_macros_and_free_text_are_bounded, |t| async move {
    let h = start(&t).await;
    fixtures(&h).await;
    let long_key = "k".repeat(10_000);
    let big = "v".repeat(70_000);
    let git = "git+file:///r@main";
    let build = |k: &str, v: Value| {
        let mut r = json!({"target": "fw", "image": "cam/fw", "repo": git});
        r[k] = v;
        json!({"method": "build", "request": r})
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "PATCH",
            "/tags/base",
            json!({"extra": {long_key.clone(): 1}}),
            "extra key",
        ),
        (
            "POST",
            "/tags",
            json!({"name": "t1", "extra": {long_key.clone(): 1}}),
            "extra key",
        ),
        (
            "PATCH",
            "/tags/base",
            json!({"extra": {"k": big.clone()}}),
            "extra value",
        ),
        (
            "POST",
            "/tags",
            json!({"name": "t1", "extra": {"k": [big.clone()]}}),
            "extra value",
        ),
        (
            "POST",
            "/targets",
            json!({"name": "t2", "build_tag": "base", "dest_tag": "dest", "macros": {"m": "a\0b"}}),
            "macro",
        ),
        ("PATCH", "/targets/fw", json!({"define": {"m": big.clone()}}), "macro"),
        (
            "POST",
            "/tags/child/inheritance",
            json!({"parent": "p", "priority": 1, "pkg_filter": "fw\0"}),
            "pkg_filter",
        ),
        (
            "POST",
            "/tags/child/inheritance",
            json!({"parent": "p", "priority": 1, "pkg_filter": "f".repeat(5000)}),
            "pkg_filter",
        ),
        ("POST", "/tasks", build("repo", json!("git+file:///r@main\nx")), "repo"),
        (
            "POST",
            "/tasks",
            build("repo", json!(format!("{git}{}", "r".repeat(5000)))),
            "repo",
        ),
        ("POST", "/tasks", build("image", json!("cam/\0fw")), "image"),
        (
            "POST",
            "/tasks",
            build("defines", json!([["vendor", "a\0b"]])),
            "vendor",
        ),
        (
            "POST",
            "/tasks",
            build("defines", json!([["vendor", big.clone()]])),
            "vendor",
        ),
        (
            "POST",
            "/tasks",
            json!({"method": "update", "request": {
                "target": "fw", "from": "img@1", "script": "git+file:///s@main:u\n.sh", "name": "fw-1-1"
            }}),
            "script",
        ),
    ];
    let before = h.events().await;
    for (m, path, body, what) in cases {
        let a = h.admin(m, path, body.clone()).await;
        refused(&format!("{m} {path} {body}"), &a, what);
    }
    assert_eq!(h.events().await, before, "nothing was recorded");
    // Values up to the limit, over several lines, pass.
    let fits = "v\n".repeat(20_000);
    h.ok("PATCH", "/tags/base", json!({"extra": {"k": fits.clone()}})).await;
    h.ok("PATCH", "/targets/fw", json!({"define": {"m": fits}})).await;
});

both!(a_log_keeps_its_text_and_loses_only_nul, |t| async move {
    let h = start(&t).await;
    let host = h.ok("POST", "/hosts", json!({"name": "b1", "arch": "amd64"})).await;
    let ht = host["token"].as_str().expect("host token").to_string();
    let id = h.ok("POST", "/tasks", json!({"method": "noop"})).await["id"]
        .as_i64()
        .expect("id");
    h.call("POST", "/host/claim", Some(&ht), None).await;
    let text = "line\r\n\u{1b}[1mbold\u{1b}[0m\tnul:\0:end\n";
    let (s, v) = h
        .raw(
            "POST",
            &format!("/tasks/{id}/log"),
            &ht,
            &[("Content-Type", "text/plain")],
            text.as_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let log = h.ok("GET", &format!("/tasks/{id}/log"), Value::Null).await;
    assert_eq!(log["text"], text.replace('\0', "\u{fffd}"));
});

both!(integers_are_bounded, |t| async move {
    let h = start(&t).await;
    fixtures(&h).await;
    let extremes = [i64::MAX, i64::MIN, -1, 0];
    let link = |k: &str, v: i64| {
        let mut b = json!({"parent": "p", "priority": 7});
        b[k] = json!(v);
        b
    };
    let task = |k: &str, v: i64| json!({"method": "noop", k: v});
    const B: u16 = 400;
    for (i, v) in extremes.into_iter().enumerate() {
        // (method, path, body, the answers to MAX, MIN, -1 and 0, what a refusal names)
        let cases: Vec<(&str, String, Value, [u16; 4], &str)> = vec![
            (
                "POST",
                "/tags/child/inheritance".into(),
                link("priority", v),
                [B, B, B, 201],
                "priority",
            ),
            (
                "POST",
                "/tags/child/inheritance".into(),
                link("maxdepth", v),
                [B, B, B, 201],
                "maxdepth",
            ),
            ("POST", "/tasks".into(), task("priority", v), [B, B, B, 201], "priority"),
            ("POST", "/tasks".into(), task("max_attempts", v), [B; 4], "max_attempts"),
            ("POST", "/tasks".into(), task("parent", v), [404; 4], "parent"),
            (
                "POST",
                "/hosts".into(),
                json!({"name": format!("h{i}"), "arch": "amd64", "capacity": v}),
                [B; 4],
                "capacity",
            ),
            (
                "POST",
                "/builds".into(),
                build(&format!("b{i}"), "1", "1", "f", "raw", v),
                [201, B, B, 201],
                "size",
            ),
            (
                "POST",
                "/users/alice/tokens".into(),
                json!({"expires_days": v}),
                [B; 4],
                "expires_days",
            ),
            (
                "GET",
                format!("/tags?offset={v}"),
                Value::Null,
                [200, B, B, 200],
                "offset",
            ),
            ("GET", format!("/tags?limit={v}"), Value::Null, [B; 4], "limit"),
            (
                "GET",
                format!("/builds?offset={v}"),
                Value::Null,
                [200, B, B, 200],
                "offset",
            ),
            (
                "GET",
                format!("/tasks?offset={v}"),
                Value::Null,
                [200, B, B, 200],
                "offset",
            ),
            (
                "GET",
                format!("/tags?event={v}"),
                Value::Null,
                [404, B, B, 200],
                "event",
            ),
            (
                "GET",
                format!("/tags/base?event={v}"),
                Value::Null,
                [404, B, B, 404],
                "event",
            ),
            (
                "GET",
                format!("/tags/base/inheritance?event={v}"),
                Value::Null,
                [404, B, B, 404],
                "event",
            ),
            (
                "GET",
                format!("/tags/base/config?event={v}"),
                Value::Null,
                [404, B, B, 404],
                "event",
            ),
            (
                "GET",
                format!("/tags/base/packages?event={v}"),
                Value::Null,
                [404, B, B, 404],
                "event",
            ),
            (
                "GET",
                format!("/tags/base/builds?event={v}"),
                Value::Null,
                [404, B, B, 404],
                "event",
            ),
            (
                "GET",
                format!("/targets/fw?event={v}"),
                Value::Null,
                [404, B, B, 404],
                "event",
            ),
            ("GET", format!("/tasks/{v}"), Value::Null, [404; 4], "task"),
            ("POST", format!("/tasks/{v}/cancel"), Value::Null, [404; 4], "task"),
            ("GET", format!("/tasks/{v}/log"), Value::Null, [404; 4], "task"),
            ("DELETE", format!("/tokens/{v}"), Value::Null, [404; 4], "token"),
        ];
        for (m, path, body, answers, what) in cases {
            let (s, a) = h.admin(m, &path, body.clone()).await;
            assert_eq!(s.as_u16(), answers[i], "{m} {path} {body}: {a}");
            // At event 0 nothing existed yet: that 404 is about the tag.
            if !(s.is_success() || what == "event" && v == 0) {
                let msg = a["error"]["message"].as_str().unwrap_or_default();
                assert!(msg.contains(what), "{m} {path} {body}: the message names {what}: {a}");
            }
            if s == StatusCode::CREATED && path == "/tags/child/inheritance" {
                h.ok("DELETE", "/tags/child/inheritance/p", Value::Null).await;
            }
        }
    }
    // The link's edits are bounded the same way.
    h.ok("POST", "/tags/child/inheritance", json!({"parent": "p", "priority": 1}))
        .await;
    for k in ["priority", "maxdepth"] {
        for v in [i64::MAX, i64::MIN, -1] {
            let a = h.admin("PATCH", "/tags/child/inheritance/p", json!({k: v})).await;
            refused(&format!("edit {k} {v}"), &a, k);
        }
    }
    // And the task log reads from anywhere.
    let id = h.ok("POST", "/tasks", json!({"method": "noop"})).await["id"]
        .as_i64()
        .expect("id");
    for v in extremes {
        let (s, l) = h.admin("GET", &format!("/tasks/{id}/log?after={v}"), Value::Null).await;
        assert_eq!((s, l["text"].as_str()), (StatusCode::OK, Some("")), "after={v}");
    }
});

both!(dangling_references_are_4xx_never_5xx, |t| async move {
    let h = start(&t).await;
    fixtures(&h).await;
    let build = |k: &str, v: &str| {
        let mut r = json!({"target": "fw", "image": "cam/fw", "repo": "git+file:///r@main"});
        r[k] = json!(v);
        json!({"method": "build", "request": r})
    };
    let target = |b: &str, d: &str| json!({"name": "t2", "build_tag": b, "dest_tag": d});
    // (method, path, body, status, what the message names)
    let named: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "POST",
            "/tasks".into(),
            json!({"method": "noop", "parent": -1}),
            404,
            "parent",
        ),
        (
            "POST",
            "/tasks".into(),
            json!({"method": "noop", "parent": 999_999}),
            404,
            "parent",
        ),
        (
            "POST",
            "/tasks".into(),
            json!({"method": "noop", "builder": "nobody"}),
            404,
            "builder",
        ),
        ("POST", "/tasks".into(), build("target", "nope"), 404, "target"),
        (
            "POST",
            "/tasks".into(),
            json!({"method": "update", "request": {
                "target": "fw", "from": "img@9", "script": "git+file:///s@main:u.sh", "name": "fw-1-1"
            }}),
            404,
            "img@9",
        ),
        ("POST", "/targets".into(), target("nope", "dest"), 404, "build_tag"),
        ("POST", "/targets".into(), target("base", "nope"), 404, "dest_tag"),
        (
            "PATCH",
            "/targets/fw".into(),
            json!({"build_tag": "nope"}),
            404,
            "build_tag",
        ),
        (
            "PATCH",
            "/targets/fw".into(),
            json!({"dest_tag": "nope"}),
            404,
            "dest_tag",
        ),
        (
            "POST",
            "/tags".into(),
            json!({"name": "t3", "parent": "nope"}),
            404,
            "parent",
        ),
        (
            "POST",
            "/tags/child/inheritance".into(),
            json!({"parent": "nope", "priority": 1}),
            404,
            "nope",
        ),
        (
            "POST",
            "/tags/base/builds".into(),
            json!({"nvr": "no-1-1"}),
            404,
            "no-1-1",
        ),
        (
            "POST",
            "/users/nobody/perms".into(),
            json!({"perm": "tag"}),
            404,
            "nobody",
        ),
        ("POST", "/users/nobody/tokens".into(), json!({}), 404, "nobody"),
        (
            "PATCH",
            "/tags/base".into(),
            json!({"remove_extra": ["nope"]}),
            404,
            "nope",
        ),
        (
            "PATCH",
            "/targets/fw".into(),
            json!({"undefine": ["nope"]}),
            404,
            "nope",
        ),
        ("DELETE", "/tokens/999999".into(), Value::Null, 404, "token"),
        ("GET", "/tags/base?event=999999".into(), Value::Null, 404, "event"),
    ];
    let before = h.events().await;
    for (m, path, body, want, what) in named {
        let (s, v) = h.admin(m, &path, body.clone()).await;
        assert_eq!(s.as_u16(), want, "{m} {path} {body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(what), "{m} {path} {body}: the message names {what}: {v}");
    }
    assert_eq!(h.events().await, before, "nothing was recorded");
    // Text no name can hold (a NUL), wherever a name is looked up: not
    // found, refused, or (a filter) nothing listed.
    let nul: Vec<(&str, &str, Value)> = vec![
        ("GET", "/tags/a%00b", Value::Null),
        ("GET", "/tags/a%00b/history", Value::Null),
        ("GET", "/tags/a%00b/inheritance", Value::Null),
        ("GET", "/tags/a%00b/config", Value::Null),
        ("GET", "/tags/a%00b/packages", Value::Null),
        ("GET", "/tags/a%00b/builds", Value::Null),
        ("PATCH", "/tags/a%00b", json!({"locked": true})),
        ("DELETE", "/tags/a%00b", Value::Null),
        ("PATCH", "/tags/child/inheritance/a%00b", json!({"priority": 3})),
        ("DELETE", "/tags/child/inheritance/a%00b", Value::Null),
        ("DELETE", "/tags/base/packages/a%00b", Value::Null),
        ("DELETE", "/tags/base/builds/a%00b", Value::Null),
        ("POST", "/tags/base/builds", json!({"nvr": "a\0b"})),
        ("PATCH", "/tags/base", json!({"remove_extra": ["a\0b"]})),
        ("GET", "/targets/a%00b", Value::Null),
        ("GET", "/targets/a%00b/macros", Value::Null),
        ("DELETE", "/targets/a%00b", Value::Null),
        (
            "POST",
            "/targets",
            json!({"name": "t2", "build_tag": "a\0b", "dest_tag": "dest"}),
        ),
        ("GET", "/builds/a%00b", Value::Null),
        ("GET", "/builds/a%00b/files/f", Value::Null),
        ("POST", "/builds/a%00b/state", json!({"state": "FAILED"})),
        ("GET", "/builds?state=a%00b", Value::Null),
        ("GET", "/tasks?state=a%00b", Value::Null),
        ("GET", "/images?name=a%00b", Value::Null),
        ("GET", "/images/a%00b/1", Value::Null),
        ("DELETE", "/images/img/a%00b", Value::Null),
        ("GET", "/users/a%00b/tokens", Value::Null),
        ("POST", "/users/a%00b/perms", json!({"perm": "tag"})),
        ("DELETE", "/users/alice/perms/a%00b", Value::Null),
        ("POST", "/tasks", json!({"method": "noop", "builder": "a\0b"})),
        ("POST", "/tasks", build("target", "a\0b")),
        (
            "POST",
            "/tasks",
            json!({"method": "update", "request": {
                "target": "fw", "from": "img@1\0", "script": "git+file:///s@main:u.sh", "name": "fw-1-1"
            }}),
        ),
    ];
    for (m, path, body) in nul {
        let (s, v) = h.admin(m, path, body.clone()).await;
        assert!(!s.is_server_error(), "{m} {path} {body}: {s} {v}");
        assert!(s.is_success() || v["error"]["code"].is_string(), "{m} {path}: {v}");
    }
    assert_eq!(h.events().await, before, "nothing was recorded");
});

both!(database_constraint_failures_are_4xx_without_sql, |t| async move {
    use kiln_hub::HubError;
    let db = common::open(&t).await;
    let statements = [
        // A dangling reference.
        (
            "INSERT INTO task_logs (task_id, data) VALUES (-1, 'x')",
            "refers to something that does not exist",
        ),
        // A missing value.
        ("INSERT INTO tags (slot) VALUES (NULL)", "missing"),
    ];
    for (sql, what) in statements {
        let e = HubError::from(execute(&db, sql).await.expect_err(sql));
        assert_eq!((e.status, e.code), (400, "bad_request"), "{sql}: {e}");
        assert!(e.message.contains(what), "{sql}: {e}");
        for word in ["INSERT", "task_logs", "violat", "constraint", "FOREIGN"] {
            assert!(!e.message.contains(word), "{sql}: no SQL in {e}");
        }
    }
    // A check constraint (the schema has none yet: a table of the test's).
    let e = match &db {
        kiln_hub::db::Db::Sqlite(b) => {
            let mut c = b.write.acquire().await.expect("connection");
            sqlx::query("CREATE TEMP TABLE checked (n BIGINT CHECK (n > 0))")
                .execute(&mut *c)
                .await
                .expect("create");
            sqlx::query("INSERT INTO checked (n) VALUES (-1)")
                .execute(&mut *c)
                .await
                .map(drop)
        }
        kiln_hub::db::Db::Pg(b) => {
            let mut c = b.write.acquire().await.expect("connection");
            sqlx::query("CREATE TEMP TABLE checked (n BIGINT CHECK (n > 0))")
                .execute(&mut *c)
                .await
                .expect("create");
            sqlx::query("INSERT INTO checked (n) VALUES (-1)")
                .execute(&mut *c)
                .await
                .map(drop)
        }
    };
    let e = HubError::from(e.expect_err("check"));
    assert_eq!((e.status, e.code), (400, "bad_request"), "{e}");
    assert!(!e.message.contains("checked"), "{e}");
    // Text the database cannot hold (PostgreSQL refuses NUL).
    if let kiln_hub::db::Db::Pg(b) = &db {
        let e = sqlx::query("SELECT $1::TEXT")
            .bind("a\0b")
            .execute(&b.read)
            .await
            .expect_err("NUL");
        let e = HubError::from(e);
        assert_eq!((e.status, e.code), (400, "bad_request"), "{e}");
        assert!(e.message.contains("NUL"), "{e}");
    }
});

async fn execute(db: &kiln_hub::db::Db, sql: &str) -> Result<(), sqlx::Error> {
    match db {
        kiln_hub::db::Db::Sqlite(b) => sqlx::query(sql).execute(&b.write).await.map(drop),
        kiln_hub::db::Db::Pg(b) => sqlx::query(sql).execute(&b.write).await.map(drop),
    }
}
