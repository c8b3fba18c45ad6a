//! The hub serves exactly the routes its OpenAPI document lists, checked
//! against a running hub in both directions: every documented operation is
//! served; on a documented path every other method answers 405; and paths
//! outside the document answer the JSON "no such endpoint" 404.

mod common;
#[path = "common/served.rs"]
mod served;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::Value;

/// The methods probed; CONNECT is left out (the HTTP client cannot send
/// it to a path).
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

/// Words tried as path segments next to the document's own: names an
/// undocumented route might plausibly have.
const EXTRA_SEGMENTS: [&str; 14] = [
    "admin",
    "artifacts",
    "build",
    "children",
    "events",
    "health",
    "image",
    "logout",
    "metrics",
    "tag",
    "target",
    "task",
    "token",
    "version",
];

struct Served {
    root: String,
    http: reqwest::Client,
    _served: served::Served,
}

async fn start(t: &common::TestDb) -> Served {
    let served = served::serve(t, true).await;
    Served {
        root: format!("http://{}", served.addr),
        http: reqwest::Client::new(),
        _served: served,
    }
}

impl Served {
    /// Sends a bodiless, unauthenticated request to `path` (from the root).
    async fn send(&self, method: &str, path: &str) -> (StatusCode, String) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .http
            .request(m, format!("{}{path}", self.root))
            .send()
            .await
            .expect("send");
        let status = r.status();
        (status, r.text().await.expect("body"))
    }
}

/// Whether an answer is the router's fallback (no route matched the path).
/// A HEAD answer has no body: its 404 is taken for the fallback.
fn is_fallback(method: &str, status: StatusCode, body: &str) -> bool {
    status == StatusCode::NOT_FOUND && (method == "HEAD" || body.contains("no such endpoint"))
}

/// A documented path with its placeholders filled.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a concrete path matches one of the documented templates.
fn documented(templates: &[&str], path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').collect();
    templates.iter().any(|t| {
        let tsegs: Vec<&str> = t.split('/').collect();
        tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| if t.starts_with('{') { !s.is_empty() } else { t == s })
    })
}

/// Paths the document does not list, near the ones it does: prefixes,
/// extensions, trailing slashes, the paths outside `/api/v1`, and every
/// one- and two-level combination of the document's words (each followed
/// by a placeholder or not).
fn undocumented_probes(templates: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut near = BTreeSet::new();
    for p in [
        "/",
        "/api",
        "/api/v1",
        "/api/v1/",
        "/api/v2/status",
        "/openapi.json",
        "/status",
    ] {
        near.insert(p.to_string());
    }
    let mut words: BTreeSet<&str> = EXTRA_SEGMENTS.into_iter().collect();
    for t in templates {
        let url = concrete(t);
        let segs: Vec<&str> = url.split('/').collect();
        for n in 2..segs.len() {
            near.insert(segs[..n].join("/"));
        }
        near.insert(format!("{url}/"));
        near.insert(format!("{url}/x"));
        near.insert(format!("{url}/1"));
        if let Some(outside) = url.strip_prefix("/api/v1") {
            near.insert(outside.to_string());
        }
        words.extend(t.split('/').skip(3).filter(|s| !s.is_empty() && !s.starts_with('{')));
    }
    let mut far = BTreeSet::new();
    for a in &words {
        far.insert(format!("/api/v1/{a}"));
        far.insert(format!("/api/v1/{a}/1"));
        for b in &words {
            far.insert(format!("/api/v1/{a}/{b}"));
            far.insert(format!("/api/v1/{a}/1/{b}"));
            far.insert(format!("/api/v1/{a}/1/{b}/1"));
        }
    }
    near.retain(|p| !documented(templates, p));
    far.retain(|p| !documented(templates, p) && !near.contains(p));
    (near, far)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_served_routes_are_the_documented_routes() {
    let t = common::sqlite();
    let h = start(&t).await;
    let (s, text) = h.send("GET", "/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let doc: Value = serde_json::from_str(&text).expect("the document is JSON");
    let paths: BTreeMap<&str, &Value> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(p, ops)| (p.as_str(), ops))
        .collect();
    let table: BTreeSet<&str> = kiln_hub::api::ROUTES.iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), table.len(), "documented paths");
    let templates: Vec<&str> = paths.keys().copied().collect();

    // Each documented operation is served; each other method is refused
    // with 405. HEAD is served with GET; its answer has no body to tell a
    // handler's 404 from the fallback's, the GET's answer does.
    for (path, ops) in &paths {
        let url = concrete(path);
        for m in METHODS {
            let op = m.to_lowercase();
            let served = ops.get(&op).is_some() || (m == "HEAD" && ops.get("get").is_some());
            let (s, body) = h.send(m, &url).await;
            if served {
                assert!(
                    s != StatusCode::METHOD_NOT_ALLOWED && (m == "HEAD" || !is_fallback(m, s, &body)),
                    "{m} {path} is documented but not served: {s} {body}"
                );
            } else {
                assert_eq!(
                    s,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is served but not documented: {body}"
                );
            }
        }
    }

    // Paths outside the document reach the fallback, whatever the method
    // (a routed path answers any method it lacks with 405, not 404).
    let (near, far) = undocumented_probes(&templates);
    for p in &near {
        for m in METHODS {
            let (s, body) = h.send(m, p).await;
            assert!(
                is_fallback(m, s, &body),
                "{m} {p} is served but not documented: {s} {body}"
            );
        }
    }
    for p in &far {
        let (s, body) = h.send("GET", p).await;
        assert!(
            is_fallback("GET", s, &body),
            "GET {p} is served but not documented: {s} {body}"
        );
    }
}

#[test]
fn the_document_lists_every_route_of_the_table_once() {
    let doc = kiln_hub::openapi::document();
    let ops: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|ops| ops.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(ops, kiln_hub::api::ROUTES.len(), "two routes share a method and path");
    let mut ids = BTreeSet::new();
    for r in kiln_hub::api::ROUTES {
        let op = &doc["paths"][format!("/api/v1{}", r.path)][r.verb.name()];
        assert_eq!(op["summary"], r.summary, "{} {}", r.verb.name(), r.path);
        assert_eq!(op["tags"][0], r.area, "{} {}", r.verb.name(), r.path);
        assert_eq!(
            op["security"].is_array(),
            !r.perm.is_empty(),
            "{} {}",
            r.verb.name(),
            r.path
        );
        assert!(ids.insert(r.operation), "operation id {} twice", r.operation);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_bodies_are_limited_and_uploads_are_not() {
    let t = common::sqlite();
    let admin = kiln_hub::bootstrap_user(&t.url, "admin", None, &["admin".into()])
        .await
        .expect("bootstrap");
    let h = start(&t).await;
    let big = kiln_hub::api::MAX_JSON + 1;
    let post = |path: &str, body: Vec<u8>| {
        h.http
            .post(format!("{}/api/v1{path}", h.root))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // A JSON body and a log chunk past the limit are refused.
    let r = post("/tags", vec![b' '; big]).await.expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = post("/tasks/1/log", vec![b'x'; big]).await.expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // An upload of the same size streams through.
    let img = common::images::tar_image(&vec![7u8; 2 * big]);
    let r = h
        .http
        .put(format!("{}/api/v1/images/big/1/upload", h.root))
        .bearer_auth(&admin)
        .body(img)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
}
