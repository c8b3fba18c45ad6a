//! The REST API over real HTTP, on SQLite and PostgreSQL: authentication,
//! permissions, JSON errors, uploads, the OpenAPI document.

mod common;
#[path = "common/served.rs"]
mod served;

use reqwest::StatusCode;
use serde_json::{Value, json};

struct Hub {
    base: String,
    admin: String,
    http: reqwest::Client,
    served: served::Served,
}

async fn start(t: &common::TestDb, anonymous_read: bool) -> Hub {
    let admin = kiln_hub::bootstrap_user(&t.url, "admin", Some("admin-password"), &["admin".into()])
        .await
        .expect("bootstrap");
    let served = served::serve(t, anonymous_read).await;
    Hub {
        base: format!("http://{}/api/v1", served.addr),
        admin,
        // No reuse of idle connections: a hub that refused a body (413)
        // without reading it closes that connection, and a request sent
        // on it next fails with IncompleteMessage.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
        served,
    }
}

impl Hub {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
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

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, Some(&self.admin), body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    /// Registers a builder; returns its host token.
    async fn host(&self, name: &str) -> String {
        let v = self
            .ok(
                "POST",
                "/hosts",
                Some(json!({"name": name, "arch": "amd64", "channels": ["default"], "capacity": 1})),
            )
            .await;
        v["token"].as_str().expect("host token").to_string()
    }

    /// A bodiless call with another token that must succeed.
    async fn ok_as(&self, token: &str, method: &str, path: &str) -> Value {
        let (s, v) = self.call(method, path, Some(token), None).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    async fn token_for(&self, name: &str, perms: &[&str]) -> String {
        self.ok("POST", "/users", Some(json!({"name": name, "perms": perms})))
            .await;
        let v = self.ok("POST", &format!("/users/{name}/tokens"), Some(json!({}))).await;
        v["token"].as_str().expect("token").to_string()
    }

    async fn events(&self) -> i64 {
        self.ok("GET", "/status", None).await["event"].as_i64().expect("event")
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

both!(permissions_and_auth, |t| async move {
    let h = start(&t, true).await;
    h.ok("POST", "/tags", Some(json!({"name": "base"}))).await;
    // Anonymous reads are allowed here; writes are not.
    let (s, v) = h.call("GET", "/tags/base", None, None).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("base")));
    let (s, v) = h.call("POST", "/tags", None, Some(json!({"name": "x"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    // A user without the permission.
    let viewer = h.token_for("viewer", &[]).await;
    let (s, v) = h.call("POST", "/tags", Some(&viewer), Some(json!({"name": "x"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("`tag`"), "{v}");
    // Grant it: now allowed.
    h.ok("POST", "/users/viewer/perms", Some(json!({"perm": "tag"}))).await;
    let (s, _) = h.call("POST", "/tags", Some(&viewer), Some(json!({"name": "x"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    // Locked tag, custom permission, admin force.
    h.ok("PATCH", "/tags/x", Some(json!({"locked": true}))).await;
    let (s, v) = h
        .call(
            "POST",
            "/tags/x/packages",
            Some(&viewer),
            Some(json!({"package": "fw"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::LOCKED, "locked"));
    let (s, _) = h
        .call(
            "POST",
            "/tags/x/packages?force=true",
            Some(&h.admin),
            Some(json!({"package": "fw"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.ok("PATCH", "/tags/x", Some(json!({"locked": false, "perm": "release"})))
        .await;
    let (s, _) = h
        .call(
            "POST",
            "/tags/x/packages",
            Some(&viewer),
            Some(json!({"package": "fw2"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    h.ok("POST", "/users/viewer/perms", Some(json!({"perm": "release"})))
        .await;
    let (s, _) = h
        .call(
            "POST",
            "/tags/x/packages",
            Some(&viewer),
            Some(json!({"package": "fw2"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Revoked and bogus tokens.
    let list = h.ok("GET", "/users/viewer/tokens", None).await;
    let id = list[0]["id"].as_i64().expect("id");
    h.ok("DELETE", &format!("/tokens/{id}"), None).await;
    let (s, v) = h.call("GET", "/whoami", Some(&viewer), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, _) = h.call("GET", "/tags", Some("kiln_bogus"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Users cannot manage other users' tokens.
    let other = h.token_for("other", &["tag"]).await;
    let (s, _) = h
        .call("POST", "/users/admin/tokens", Some(&other), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Expired tokens do not work.
    let v = h
        .ok("POST", "/users/other/tokens", Some(json!({"expires_days": 1})))
        .await;
    assert!(v["expires"].as_i64().is_some());
});

both!(anonymous_reads_can_be_turned_off, |t| async move {
    let h = start(&t, false).await;
    let (s, v) = h.call("GET", "/tags", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, _) = h.call("GET", "/tags", Some(&h.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    // Every read refuses an anonymous caller, the status (version, event
    // counter) included; only the API's description and `whoami` (which
    // says "not authenticated") answer.
    for r in kiln_hub::api::ROUTES
        .iter()
        .filter(|r| r.verb == kiln_hub::api::Verb::Get)
    {
        let path = r
            .path
            .replace("{id}", "1")
            .replace("{run}", "1")
            .replace(['{', '}'], "");
        let (s, v) = h.call("GET", &path, None, None).await;
        if matches!(r.path, "/openapi.json" | "/whoami") {
            assert_eq!(s, StatusCode::OK, "GET {}", r.path);
        } else {
            assert_eq!(
                (s, code(&v)),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "GET {}",
                r.path
            );
        }
    }
});

both!(login_is_rate_limited_and_never_echoes_secrets, |t| async move {
    let h = start(&t, true).await;
    let (s, v) = h
        .call(
            "POST",
            "/login",
            None,
            Some(json!({"user": "admin", "password": "admin-password"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    let (s, w) = h.call("GET", "/whoami", Some(&token), None).await;
    assert_eq!((s, w["name"].as_str()), (StatusCode::OK, Some("admin")));
    for _ in 0..5 {
        let (s, v) = h
            .call(
                "POST",
                "/login",
                None,
                Some(json!({"user": "admin", "password": "wrong-password"})),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(!v.to_string().contains("wrong-password"));
    }
    // Even the right password is refused while limited.
    let (s, v) = h
        .call(
            "POST",
            "/login",
            None,
            Some(json!({"user": "admin", "password": "admin-password"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"));
    // Tokens are stored hashed.
    let tokens = h.served.hub.db.list_tokens("admin").await.expect("tokens");
    assert!(!serde_json::to_string(&tokens).expect("json").contains(&token));
});

both!(bad_requests_are_clear_and_change_nothing, |t| async move {
    let h = start(&t, true).await;
    h.ok("POST", "/tags", Some(json!({"name": "c"}))).await;
    h.ok("POST", "/tags", Some(json!({"name": "p"}))).await;
    h.ok(
        "POST",
        "/tags/c/inheritance",
        Some(json!({"parent": "p", "priority": 1})),
    )
    .await;
    let before = h.events().await;
    let cases: Vec<(&str, &str, Value, StatusCode, &str)> = vec![
        (
            "GET",
            "/tags/nope",
            Value::Null,
            StatusCode::NOT_FOUND,
            "unknown tag `nope`",
        ),
        (
            "POST",
            "/tags/nope/inheritance",
            json!({"parent": "p", "priority": 1}),
            StatusCode::NOT_FOUND,
            "unknown tag",
        ),
        ("POST", "/tags", json!({"name": "q"}), StatusCode::CREATED, ""),
        (
            "POST",
            "/tags/c/inheritance",
            json!({"parent": "q", "priority": 1}),
            StatusCode::CONFLICT,
            "priority 1",
        ),
        (
            "POST",
            "/tags/c/inheritance",
            json!({"parent": "q", "priority": 2, "pkg_filter": "(["}),
            StatusCode::BAD_REQUEST,
            "pkg_filter",
        ),
        (
            "POST",
            "/tags",
            json!({"name": "z", "bogus": 1}),
            StatusCode::BAD_REQUEST,
            "bogus",
        ),
        ("GET", "/tags?limit=0", Value::Null, StatusCode::BAD_REQUEST, "limit"),
        (
            "GET",
            "/nowhere",
            Value::Null,
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
    ];
    let mut expected_events = before;
    for (m, path, body, want, msg) in cases {
        let body = (!body.is_null()).then_some(body);
        let (s, v) = h.call(m, path, Some(&h.admin), body).await;
        assert_eq!(s, want, "{m} {path}: {v}");
        if want.is_success() {
            expected_events += 1;
        } else {
            assert!(
                v["error"]["message"].as_str().unwrap_or("").contains(msg),
                "{m} {path}: {v}"
            );
        }
    }
    // Malformed JSON and an oversized body.
    let r = h
        .http
        .post(format!("{}/tags", h.base))
        .bearer_auth(&h.admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json error");
    assert_eq!(code(&v), "bad_request");
    let huge = json!({"name": "big", "extra": {"k": "x".repeat(2 << 20)}});
    let (s, v) = h.call("POST", "/tags", Some(&h.admin), Some(huge)).await;
    assert_eq!((s, code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    assert_eq!(h.events().await, expected_events, "failed requests recorded no event");
    let (s, _) = h.call("GET", "/tags/big", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

both!(artifacts_upload_verified_and_download, |t| async move {
    use sha2::Digest;
    let h = start(&t, true).await;
    let data = b"an image's bytes".repeat(1000);
    let sha = hex::encode(sha2::Sha256::digest(&data));
    let b = h
        .ok(
            "POST",
            "/builds",
            Some(json!({"name": "fw", "version": "1", "release": "1", "artifacts": [
                {"file": "fw.squashfs", "format": "squashfs", "size": data.len(), "sha256": sha}
            ]})),
        )
        .await;
    assert_eq!(b["state"], "BUILDING");
    // Not complete before the upload.
    let (s, v) = h
        .call(
            "POST",
            "/builds/fw-1-1/state",
            Some(&h.admin),
            Some(json!({"state": "COMPLETE"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // A corrupted upload is rejected and leaves nothing.
    let mut bad = data.clone();
    bad[7] ^= 1;
    let r = h
        .http
        .put(format!("{}/builds/fw-1-1/files/fw.squashfs", h.base))
        .bearer_auth(&h.admin)
        .body(bad)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"].as_str().unwrap_or("").contains("sha256 mismatch"),
        "{v}"
    );
    let blobs = std::fs::read_dir(h.served.store.path().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0);
    let tmp = std::fs::read_dir(h.served.store.path().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0, "no partial upload left");
    // The right bytes.
    let r = h
        .http
        .put(format!("{}/builds/fw-1-1/files/fw.squashfs", h.base))
        .bearer_auth(&h.admin)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    let b = h
        .ok("POST", "/builds/fw-1-1/state", Some(json!({"state": "COMPLETE"})))
        .await;
    assert_eq!(b["state"], "COMPLETE");
    assert_eq!(b["artifacts"][0]["stored"], true);
    let r = h
        .http
        .get(format!("{}/builds/fw-1-1/files/fw.squashfs", h.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["x-kiln-sha256"].to_str().expect("header"), sha);
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), data.as_slice());
    // A complete build's files are final.
    let r = h
        .http
        .put(format!("{}/builds/fw-1-1/files/fw.squashfs", h.base))
        .bearer_auth(&h.admin)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CONFLICT);
});

both!(source_images_upload_and_list, |t| async move {
    use sha2::Digest;
    let h = start(&t, true).await;
    let img = common::images::tar_image(&[7u8; 5000]);
    let sha = hex::encode(sha2::Sha256::digest(&img));
    let up = |version: &'static str, body: Vec<u8>, sha: String| {
        let (http, base, admin) = (h.http.clone(), h.base.clone(), h.admin.clone());
        async move {
            http.put(format!("{base}/images/cam-fw/{version}/upload"))
                .bearer_auth(admin)
                .header("x-kiln-sha256", sha)
                .body(body)
                .send()
                .await
                .expect("put")
        }
    };
    assert_eq!(
        up("2.3.10", img.clone(), sha.clone()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        up("2.3.9", img.clone(), sha.clone()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        up("2.3.9", img.clone(), sha.clone()).await.status(),
        StatusCode::CONFLICT
    );
    let r = up("2.4", img.clone(), "0".repeat(64)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = up(
        "2.5",
        b"not an image at all".to_vec(),
        hex::encode(sha2::Sha256::digest(b"not an image at all")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = h.ok("GET", "/images?name=cam-fw", None).await;
    let versions: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["version"].as_str())
        .collect();
    assert_eq!(versions, ["2.3.9", "2.3.10"]);
    let (s, v) = h.call("GET", "/images/cam-fw/9.9", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("available: 2.3.9, 2.3.10"),
        "{v}"
    );
    let r = h
        .http
        .get(format!("{}/images/cam-fw/2.3.10/blob", h.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), img.as_slice());
    // Stored once; removed when the last version goes.
    h.ok("DELETE", "/images/cam-fw/2.3.9", None).await;
    assert!(h.served.store.path().join(format!("blobs/sha256/{sha}")).exists());
    h.ok("DELETE", "/images/cam-fw/2.3.10", None).await;
    assert!(!h.served.store.path().join(format!("blobs/sha256/{sha}")).exists());
});

both!(imports_are_checked_before_they_are_published, |t| async move {
    use sha2::Digest;
    let h = start(&t, true).await;
    let dir = tempfile::tempdir().expect("tmp");
    let up = |version: String, body: Vec<u8>| {
        let (http, base, admin) = (h.http.clone(), h.base.clone(), h.admin.clone());
        let sha = hex::encode(sha2::Sha256::digest(&body));
        async move {
            let r = http
                .put(format!("{base}/images/src/{version}/upload"))
                .bearer_auth(admin)
                .header("x-kiln-sha256", sha)
                .body(body)
                .send()
                .await
                .expect("put");
            let status = r.status();
            (status, r.json::<Value>().await.expect("a JSON answer"))
        }
    };
    let files = |sub: &str| -> Vec<String> {
        let d = h.served.store.path().join(sub);
        let mut v: Vec<String> = std::fs::read_dir(&d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for (i, (what, body, reason)) in common::images::refused(dir.path()).into_iter().enumerate() {
        let (s, v) = up(format!("{i}"), body).await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"), "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("the image is refused: ") && message.contains(reason),
            "{what}: {message}"
        );
        assert_eq!(files("blobs/sha256"), Vec::<String>::new(), "{what}: no blob");
        assert_eq!(files("tmp"), Vec::<String>::new(), "{what}: no temporary object");
    }
    assert_eq!(h.ok("GET", "/images", None).await, json!([]));
    for (version, body, format) in [
        ("1", common::images::squashfs(dir.path()), "squashfs"),
        ("2", common::images::erofs(dir.path()), "erofs"),
        ("3", common::images::tar_image(b"ID=test\n"), "tar"),
        ("4", common::images::iso(dir.path(), true), "iso"),
    ] {
        let (s, v) = up(version.to_string(), body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["format"], format);
    }
    assert_eq!(files("blobs/sha256").len(), 4);
});

#[tokio::test]
async fn every_documented_route_is_served() {
    let t = common::sqlite();
    let h = start(&t, true).await;
    let doc = h.ok("GET", "/openapi.json", None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for r in kiln_hub::api::ROUTES {
        let (method, path) = (r.verb.name(), r.path);
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let (s, v) = h.call(&method.to_uppercase(), &concrete, None, None).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !v.to_string().contains("no such endpoint"),
            "{method} {path} is not routed"
        );
        assert!(
            doc["paths"][format!("/api/v1{path}")][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    // Methods a path does not serve are refused.
    let (s, _) = h.call("PATCH", "/status", None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

/// PUTs `body` as a task's file with the declared sha256.
async fn put_task_file(
    h: &Hub,
    token: &str,
    task: i64,
    file: &str,
    sha: &str,
    body: &'static [u8],
) -> (StatusCode, Value) {
    let r = h
        .http
        .put(format!("{}/tasks/{task}/files/{file}", h.base))
        .bearer_auth(token)
        .header("x-kiln-sha256", sha)
        .body(body)
        .send()
        .await
        .expect("send");
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn blobs(h: &Hub) -> Vec<String> {
    let dir = h.served.store.path().join("blobs/sha256");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

both!(
    a_build_task_records_its_build_once_and_sweeps_dead_attempts,
    |t| async move {
        let h = start(&t, true).await;
        h.ok("POST", "/tags", Some(json!({"name": "fw-build"}))).await;
        h.ok("POST", "/tags", Some(json!({"name": "fw"}))).await;
        h.ok("POST", "/tags/fw/packages", Some(json!({"package": "cam-fw"})))
            .await;
        h.ok(
            "POST",
            "/targets",
            Some(json!({"name": "fw", "build_tag": "fw-build", "dest_tag": "fw"})),
        )
        .await;
        let host = h.host("b1").await;
        // Requests are checked before they are queued.
        let (s, v) = h
            .call(
                "POST",
                "/tasks",
                Some(&h.admin),
                Some(json!({"method": "build", "request": {"target": "fw", "image": "x", "repo": "/local/path"}})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, v) = h
        .call("POST", "/tasks", Some(&h.admin), Some(json!({"method": "build", "request": {"target": "nope", "image": "x", "repo": "git+file:///r@main"}})))
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let req = json!({"target": "fw", "image": "cam/fw", "repo": "git+file:///r@main"});
        let task = h
            .ok("POST", "/tasks", Some(json!({"method": "build", "request": req})))
            .await["id"]
            .as_i64()
            .expect("id");

        // Attempt 1 uploads a file, then its builder vanishes.
        let claimed = h.ok_as(&host, "POST", "/host/claim").await;
        assert_eq!(claimed["id"], task);
        let img: &'static [u8] = b"attempt one image bytes";
        let (s, v) = put_task_file(&h, &host, task, "fw.img", &"0".repeat(64), img).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "a wrong sha256 is refused: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains("sha256 mismatch"),
            "{v}"
        );
        assert!(blobs(&h).is_empty(), "a refused upload leaves nothing");
        let (s, _) = put_task_file(&h, &host, task, "fw.img", &sha(img), img).await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = put_task_file(&h, &host, task, "fw.img", &sha(img), img).await;
        assert_eq!(s, StatusCode::CONFLICT, "uploaded once per attempt");
        assert_eq!(blobs(&h), vec![sha(img)]);
        let lease = h.served.hub.db.lease();
        h.served
            .hub
            .db
            .expire_leases(kiln_hub::db::now() + lease + 1)
            .await
            .expect("expire");
        assert_eq!(kiln_hub::api::sweep(&h.served.hub).await.expect("sweep"), 1);
        assert!(blobs(&h).is_empty(), "the dead attempt's upload is swept");

        // Attempt 2 completes.
        let claimed = h.ok_as(&host, "POST", "/host/claim").await;
        assert_eq!(
            (claimed["id"].as_i64(), claimed["attempts"].as_i64()),
            (Some(task), Some(2))
        );
        let img2: &'static [u8] = b"attempt two image bytes";
        let manifest: &'static [u8] = b"{\"name\": \"cam-fw\"}";
        put_task_file(&h, &host, task, "fw.img", &sha(img2), img2).await;
        let build = |files: Vec<(&str, &[u8])>| {
            json!({"ok": true, "result": {"builder": "b1"}, "build": {
                "name": "cam-fw", "version": "1.0", "release": "1", "manifest": {"name": "cam-fw"},
                "artifacts": files.iter().map(|(f, b)| json!({"file": f, "format": "img", "size": b.len(), "sha256": sha(b)})).collect::<Vec<_>>()
            }})
        };
        let report = build(vec![("fw.img", img2), ("manifest.json", manifest)]);
        // A build naming a file that was not uploaded is refused, and nothing is recorded.
        let (s, v) = h
            .call(
                "POST",
                &format!("/tasks/{task}/result"),
                Some(&host),
                Some(report.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let (s, _) = h.call("GET", "/builds/cam-fw-1.0-1", None, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        put_task_file(&h, &host, task, "manifest.json", &sha(manifest), manifest).await;
        let (s, v) = h
            .call("POST", &format!("/tasks/{task}/result"), Some(&host), Some(report))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            (v["state"].as_str(), v["result"]["tag"].as_str()),
            (Some("CLOSED"), Some("fw"))
        );
        let b = h.ok("GET", "/builds/cam-fw-1.0-1", None).await;
        assert_eq!(
            (b["state"].as_str(), b["task_id"].as_i64()),
            (Some("COMPLETE"), Some(task))
        );
        assert!(
            b["artifacts"]
                .as_array()
                .expect("artifacts")
                .iter()
                .all(|a| a["stored"] == true),
            "{b}"
        );
        let tagged = h.ok("GET", "/tags/fw/builds", None).await;
        assert_eq!(tagged.as_array().map(Vec::len), Some(1), "{tagged}");
        // The files now belong to the build: a sweep keeps them.
        kiln_hub::api::sweep(&h.served.hub).await.expect("sweep");
        let mut want = vec![sha(img2), sha(manifest)];
        want.sort();
        assert_eq!(blobs(&h), want);
        // A second report is stale.
        let (s, _) = h
            .call(
                "POST",
                &format!("/tasks/{task}/result"),
                Some(&host),
                Some(json!({"ok": false})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
    }
);

both!(scratch_builds_keep_their_files_with_the_task, |t| async move {
    let h = start(&t, true).await;
    h.ok("POST", "/tags", Some(json!({"name": "b"}))).await;
    h.ok("POST", "/tags", Some(json!({"name": "d", "locked": true}))).await;
    h.ok(
        "POST",
        "/targets",
        Some(json!({"name": "t", "build_tag": "b", "dest_tag": "d"})),
    )
    .await;
    let user = h.token_for("dev", &["build"]).await;
    let req = |scratch: bool| json!({"method": "build", "request": {"target": "t", "image": "x/y", "repo": "git+file:///r@main", "scratch": scratch}});
    // Not allowed to tag into the (locked) destination: refused up front, unless scratch.
    let (s, v) = h.call("POST", "/tasks", Some(&user), Some(req(false))).await;
    assert_eq!(s, StatusCode::LOCKED, "{v}");
    let (s, v) = h.call("POST", "/tasks", Some(&user), Some(req(true))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let task = v["id"].as_i64().expect("id");
    let host = h.host("b1").await;
    h.ok_as(&host, "POST", "/host/claim").await;
    let img: &'static [u8] = b"scratch";
    put_task_file(&h, &host, task, "y.img", &sha(img), img).await;
    let (s, v) = h
        .call(
            "POST",
            &format!("/tasks/{task}/result"),
            Some(&host),
            Some(json!({"ok": true, "build": {
            "name": "x-y", "version": "1", "release": "1",
            "artifacts": [{"file": "y.img", "format": "img", "size": img.len(), "sha256": sha(img)}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["scratch"], true);
    let (s, _) = h.call("GET", "/builds/x-y-1-1", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a scratch build is not recorded");
    kiln_hub::api::sweep(&h.served.hub).await.expect("sweep");
    let r = h
        .http
        .get(format!("{}/tasks/{task}/files/y.img", h.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), img);
});
