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

/// Whether `path` is an instance of route template `t`.
fn matches_template(t: &str, path: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (t.split('/').collect(), path.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || (x.starts_with('{') && !y.is_empty()))
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
    // The web UI's pages are served outside the API (docs/web.md).
    let page = |p: &str| kiln_hub::web::PATHS.iter().any(|t| matches_template(t, p));
    for t in kiln_hub::web::PATHS {
        let url = concrete(t);
        let (g, body) = h.send("GET", &url).await;
        let (p, _) = h.send("POST", &url).await;
        assert!(
            !(is_fallback("GET", g, &body) && p == StatusCode::NOT_FOUND),
            "the page {t} is not served: {g} {body}"
        );
    }
    for p in near.iter().filter(|p| !page(p)) {
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

/// Every `$ref` in a document, wherever it is.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r);
            }
            o.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_describes_every_body_and_answer() {
    use kiln_hub::api::{Answer, Body, Verb};
    let doc = kiln_hub::openapi::document();
    for r in kiln_hub::api::ROUTES {
        let what = format!("{} {}", r.verb.name(), r.path);
        let op = &doc["paths"][format!("/api/v1{}", r.path)][r.verb.name()];
        // The body: none, or one media type with a schema.
        let media = match r.body {
            Body::None => None,
            Body::Json(_) => Some("application/json"),
            Body::Text => Some("text/plain"),
            Body::Octets => Some("application/octet-stream"),
            Body::Hook => {
                // A hook reads JSON, or GitHub's form with a payload field.
                let content = op["requestBody"]["content"].as_object().expect(&what);
                let mut types: Vec<&String> = content.keys().collect();
                types.sort();
                assert_eq!(
                    types,
                    ["application/json", "application/x-www-form-urlencoded"],
                    "{what}"
                );
                continue;
            }
        };
        match media {
            None => assert!(
                op.get("requestBody").is_none(),
                "{what} documents a body it does not read"
            ),
            Some(m) => {
                let content = op["requestBody"]["content"].as_object().expect(&what);
                assert_eq!(content.keys().collect::<Vec<_>>(), [m], "{what}");
                assert!(content[m]["schema"].is_object(), "{what}: no schema");
            }
        }
        assert!(
            !matches!(r.body, Body::Json(_) | Body::Octets) || r.verb != Verb::Get,
            "{what}: a GET reads no body"
        );
        // One success, with the status the route answers, and the error.
        let responses = op["responses"].as_object().expect(&what);
        let ok: Vec<&String> = responses.keys().filter(|k| k.starts_with('2')).collect();
        assert_eq!(ok, [&r.status.to_string()], "{what}");
        assert_eq!(
            responses["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        let success = &responses[&r.status.to_string()];
        match r.answer {
            Answer::Empty => {
                assert_eq!(r.status, 204, "{what}: an answer without a body is a 204");
                assert!(success.get("content").is_none(), "{what}");
            }
            Answer::Json(_) => {
                assert!(matches!(r.status, 200 | 201), "{what}");
                assert!(success["content"]["application/json"]["schema"].is_object(), "{what}");
            }
            Answer::Octets => {
                assert_eq!(r.status, 200, "{what}");
                assert!(success["content"]["application/octet-stream"].is_object(), "{what}");
            }
        }
        if r.verb == Verb::Get {
            assert_eq!(r.status, 200, "{what}: a read answers 200");
        }
        // The query parameters name fields of the route's query type.
        let documented: Vec<&Value> = op["parameters"]
            .as_array()
            .expect(&what)
            .iter()
            .filter(|p| p["in"] == "query")
            .collect();
        let declared = r.query.map_or(&[][..], |q| q.fields);
        assert_eq!(documented.len(), declared.len(), "{what}");
        for p in documented {
            assert!(
                p["schema"].get("type").is_some(),
                "{what}: query parameter {} is no field of the query type",
                p["name"]
            );
        }
    }
    // Every schema referred to is there.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").expect(r);
        assert!(doc["components"]["schemas"].get(name).is_some(), "{r} is missing");
    }
}

/// The documented task submission: its variants are the task methods, and
/// its fields are the ones a task is sent with.
#[test]
fn the_documented_task_submission_is_the_wire_form() {
    use kiln_hub::model::{BuildRequest, NewTask, TaskRequest, UpdateRequest};
    let doc = kiln_hub::openapi::document();
    let body = &doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let variants = body["oneOf"].as_array().expect("oneOf");
    let methods: Vec<&str> = variants
        .iter()
        .map(|v| v["properties"]["method"]["const"].as_str().expect("method"))
        .collect();
    // A `tagBuild` task is recorded by the hub as it tags (Koji's
    // protocol), never submitted.
    let submitted: Vec<&str> = TaskRequest::METHODS
        .iter()
        .copied()
        .filter(|m| *m != "tagBuild")
        .collect();
    assert_eq!(methods, submitted);
    let build = TaskRequest::Build(BuildRequest {
        target: "t".into(),
        image: "i".into(),
        repo: "git+file:///r@main".into(),
        defines: Vec::new(),
        scratch: false,
        nvr: None,
    });
    let update = TaskRequest::Update(UpdateRequest {
        target: "t".into(),
        from: "a@1".into(),
        script: "git+file:///r@main:s".into(),
        name: "n-1-1".into(),
        format: None,
        defines: Vec::new(),
        scratch: false,
    });
    for (v, req) in variants.iter().zip([TaskRequest::Noop, build, update]) {
        let mut t = NewTask::new(req);
        t.builder = Some("b".into());
        t.parent = Some(1);
        let wire = serde_json::to_value(&t).expect("json");
        let sent: BTreeSet<&String> = wire.as_object().expect("object").keys().collect();
        let documented: BTreeSet<&String> = v["properties"].as_object().expect("properties").keys().collect();
        assert_eq!(sent, documented, "{}", v["properties"]["method"]);
    }
}

/// The table says which routes read a body, a query and an integer path
/// parameter; the served routes agree. Each is checked by what the route's
/// extractors refuse before anything else (no token is sent, so nothing
/// past them runs): a JSON body sent as text (415), text that is not UTF-8,
/// a body over the limit (413), an unknown query parameter, a known one,
/// and `abc` for a placeholder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_table_declares_what_each_route_reads() {
    use kiln_hub::api::{Body, Verb};
    let t = common::sqlite();
    let h = start(&t).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let send = |method: &str, path: &str, ct: Option<&str>, body: Vec<u8>| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = http.request(m, format!("{}/api/v1{path}", h.root)).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        async move {
            let r = r.send().await.expect("send");
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
    };
    for r in kiln_hub::api::ROUTES {
        let m = r.verb.name().to_uppercase();
        let what = format!("{m} {}", r.path);
        let url = concrete(r.path);
        let (s, text) = send(&m, &url, Some("text/plain"), b"{}".to_vec()).await;
        assert_eq!(s == 415, matches!(r.body, Body::Json(_)), "{what}: {s} {text}");
        let (s, text) = send(&m, &url, None, vec![0xff, 0xfe]).await;
        assert_eq!(
            s == 400 && text.contains("UTF-8"),
            matches!(r.body, Body::Text),
            "{what}: {s} {text}"
        );
        let (s, text) = send(&m, &url, Some("application/json"), vec![b' '; (1 << 20) + 1]).await;
        assert_eq!(
            s == 413,
            matches!(r.body, Body::Json(_) | Body::Text),
            "{what}: {s} {text}"
        );
        let (s, text) = send(&m, &format!("{url}?zzz=1"), None, Vec::new()).await;
        assert_eq!(
            s == 400 && text.contains("zzz"),
            r.query.is_some(),
            "{what}: {s} {text}"
        );
        for f in r.query.map_or(&[][..], |q| q.fields) {
            let (s, text) = send(&m, &format!("{url}?{f}=1"), None, Vec::new()).await;
            assert!(!text.contains("unknown field"), "{what} does not read ?{f}: {s} {text}");
        }
        let with_abc = r.path.replace("{id}", "abc");
        let (s, text) = send(&m, &concrete(&with_abc), None, Vec::new()).await;
        assert_eq!(
            s == 400 && text.contains("bad path"),
            r.path.contains("{id}"),
            "{what}: {s} {text}"
        );
        if r.verb == Verb::Get {
            assert!(matches!(r.body, Body::None), "{what}");
        }
    }
}
