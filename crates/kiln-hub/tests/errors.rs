//! Every error the hub answers has the documented shape (docs/hub.md, "The
//! API"): `{"error": {"code", "message"}}` as `application/json`, whichever
//! layer refuses the request. The test walks every route of the table with
//! requests each layer refuses: a method the path does not serve, path
//! parameters that do not parse, malformed and mistyped bodies, bodies over
//! the limit, and URLs and headers too long.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use kiln_hub::api::{Limit, ROUTES, Verb};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

/// Values that are no valid path parameter of some kind: not a number, not
/// UTF-8, past 64 bits, a NUL, a control character, a slash.
const BAD_PARAMS: [&str; 7] = ["x", "%FF", "99999999999999999999", "-1", "%00", "%0A", "a%2Fb"];

struct Served {
    root: String,
    admin: String,
    http: reqwest::Client,
    _store: tempfile::TempDir,
}

async fn start(t: &common::TestDb) -> Served {
    let store = tempfile::tempdir().expect("store");
    let opts = kiln_hub::ServeOptions {
        db: t.url.clone(),
        store: format!("file://{}", store.path().display()),
        listen: "127.0.0.1:0".into(),
        anonymous_read: true,
        lease_seconds: kiln_hub::db::LEASE_SECONDS,
        key_file: None,
        koji_session_seconds: kiln_hub::KOJI_SESSION_SECONDS,
        read_cache_mb: kiln_hub::db::cache::DEFAULT_MB,
    };
    let admin = kiln_hub::bootstrap_user(&t.url, "admin", None, &["admin".into()])
        .await
        .expect("bootstrap");
    let hub = Arc::new(kiln_hub::open(&opts).await.expect("open"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = kiln_hub::api::router(hub).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Served {
        root: format!("http://{addr}"),
        admin,
        // A hub that refuses a body without reading it closes the
        // connection: no connection is reused.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
        _store: store,
    }
}

/// One request to send.
struct Probe {
    method: &'static str,
    path: String,
    token: bool,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Probe {
    fn new(method: &'static str, path: String) -> Probe {
        Probe {
            method,
            path,
            token: true,
            content_type: None,
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn body(mut self, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Probe {
        self.content_type = content_type;
        self.body = body.into();
        self
    }

    fn describe(&self) -> String {
        let path: String = self.path.chars().take(100).collect();
        format!(
            "{} {path}{} ({} body bytes, {:?})",
            self.method,
            if self.path.len() > 100 { "…" } else { "" },
            self.body.len(),
            self.content_type
        )
    }
}

impl Served {
    /// Sends a probe; returns its status, headers and body.
    async fn send(&self, p: &Probe) -> Result<(u16, HeaderMap, Vec<u8>), String> {
        let m = reqwest::Method::from_bytes(p.method.as_bytes()).expect("method");
        let mut r = self.http.request(m, format!("{}{}", self.root, p.path));
        if p.token {
            r = r.bearer_auth(&self.admin);
        }
        if let Some(ct) = p.content_type {
            r = r.header(CONTENT_TYPE, ct);
        }
        for (k, v) in &p.headers {
            r = r.header(*k, v);
        }
        if !p.body.is_empty() {
            r = r.body(p.body.clone());
        }
        let resp = r.send().await.map_err(|e| format!("no answer: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        Ok((status, headers, body.to_vec()))
    }
}

/// Why an answer to `p` is not a well-formed error, if it is not; answers
/// below 400 pass. A HEAD answer has no body: its content type is checked.
fn malformed(p: &Probe, status: u16, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if status < 400 {
        return None;
    }
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/json") {
        return Some(format!("content type {ct:?}, body {:?}", String::from_utf8_lossy(body)));
    }
    if p.method == "HEAD" {
        return None;
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON ({e}): {:?}", String::from_utf8_lossy(body))),
    };
    let nonempty = |k: &str| v["error"][k].as_str().is_some_and(|s| !s.trim().is_empty());
    let only_error = v.as_object().is_some_and(|o| o.len() == 1);
    if !(only_error && nonempty("code") && nonempty("message")) {
        return Some(format!("not the error shape: {v}"));
    }
    None
}

/// A documented path with each placeholder filled by `fill(name)`.
fn fill(template: &str, f: impl Fn(&str) -> String) -> String {
    let segs: Vec<String> = template
        .split('/')
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => f(name),
            None => s.to_string(),
        })
        .collect();
    format!("/api/v1{}", segs.join("/"))
}

fn placeholders(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The requests to refuse, for every route of the table.
fn probes() -> Vec<Probe> {
    let mut served: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in ROUTES {
        let m = served.entry(r.path).or_default();
        m.insert(r.verb.name());
        if r.verb == Verb::Get {
            m.insert("head");
        }
    }
    let mut out = Vec::new();
    // Methods a path does not serve.
    for (path, methods) in &served {
        for m in METHODS {
            if !methods.contains(m.to_lowercase().as_str()) {
                out.push(Probe::new(m, fill(path, |_| "1".into())));
            }
        }
    }
    let big_json = {
        let mut b = vec![b'['];
        b.resize(kiln_hub::api::MAX_JSON + 2, b' ');
        b
    };
    for r in ROUTES {
        let method = match r.verb {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        };
        let url = fill(r.path, |_| "1".into());
        // Each parameter in turn, given each bad value.
        for p in placeholders(r.path) {
            for bad in BAD_PARAMS {
                let path = fill(r.path, |n| if n == p { bad.to_string() } else { "1".into() });
                out.push(Probe::new(method, path).body(Some("application/json"), "{}"));
            }
        }
        // Bodies that are not JSON, or not said to be.
        out.push(Probe::new(method, url.clone()).body(Some("application/json"), "{"));
        out.push(Probe::new(method, url.clone()).body(Some("application/json"), "[1, 2"));
        out.push(Probe::new(method, url.clone()).body(Some("application/json"), "\"\u{0}\""));
        out.push(Probe::new(method, url.clone()).body(Some("application/json"), vec![0xff, 0xfe]));
        out.push(Probe::new(method, url.clone()).body(Some("text/plain"), "{}"));
        out.push(Probe::new(method, url.clone()).body(None, "{}"));
        // A body over the limit.
        if r.limit == Limit::Json {
            out.push(Probe::new(method, url.clone()).body(Some("application/json"), big_json.clone()));
        }
        // Query strings that do not parse.
        out.push(Probe::new(method, format!("{url}?offset=x&limit=-1&event=%FF")));
        out.push(Probe::new(method, format!("{url}?%ZZ=1&&=&after=1e99")));
        // A URL too long, well within what the HTTP layer reads (64 KiB).
        out.push(Probe::new(method, format!("{url}?q={}", "x".repeat(60_000))));
        out.push(Probe::new(method, format!("{url}/{}", "y".repeat(20_000))));
        // Headers too large, well within what the HTTP layer reads.
        let mut p = Probe::new(method, url.clone());
        p.headers.push(("x-filler", "z".repeat(100_000)));
        out.push(p);
        // The same without a token, and with a token that is no token.
        let mut p = Probe::new(method, url.clone()).body(Some("application/json"), "{");
        p.token = false;
        out.push(p);
        let mut p = Probe::new(method, url.clone());
        p.token = false;
        p.headers.push(("authorization", "Basic eDp5".into()));
        out.push(p);
    }
    out
}

async fn every_error_is_json(t: &common::TestDb) {
    let h = start(t).await;
    let probes = probes();
    let mut bad = Vec::new();
    for p in &probes {
        match h.send(p).await {
            Ok((status, headers, body)) => {
                if let Some(why) = malformed(p, status, &headers, &body) {
                    bad.push(format!("{}: {status}: {why}", p.describe()));
                }
            }
            Err(e) => bad.push(format!("{}: {e}", p.describe())),
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} answers are not JSON errors:\n{}",
        bad.len(),
        probes.len(),
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_is_a_json_error_sqlite() {
    every_error_is_json(&common::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_is_a_json_error_postgres() {
    every_error_is_json(&common::postgres()).await;
}

/// The statuses of the refusals are the ones that say what was wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_say_what_was_wrong() {
    let t = common::sqlite();
    let h = start(&t).await;
    let code = |p: Probe| {
        let h = &h;
        async move {
            let (status, headers, body) = h.send(&p).await.expect("answer");
            assert_eq!(malformed(&p, status, &headers, &body), None, "{}", p.describe());
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (status, v["error"]["code"].as_str().unwrap_or("").to_string(), headers)
        }
    };
    let (s, c, headers) = code(Probe::new("PATCH", "/api/v1/tasks/1".into())).await;
    assert_eq!((s, c.as_str()), (405, "method_not_allowed"));
    assert_eq!(headers.get("allow").and_then(|v| v.to_str().ok()), Some("GET,HEAD"));
    let (s, c, _) = code(Probe::new("GET", "/api/v1/tasks/abc".into())).await;
    assert_eq!((s, c.as_str()), (400, "bad_request"));
    let (s, c, _) = code(Probe::new("POST", "/api/v1/tags".into()).body(Some("text/plain"), "{}")).await;
    assert_eq!((s, c.as_str()), (415, "unsupported_media_type"));
    let (s, c, _) = code(Probe::new("POST", "/api/v1/tasks/1/log".into()).body(None, vec![b'x'; (1 << 20) + 1])).await;
    assert_eq!((s, c.as_str()), (413, "too_large"));
    let (s, c, _) = code(Probe::new("POST", "/api/v1/tasks/1/log".into()).body(None, vec![0xff])).await;
    assert_eq!((s, c.as_str()), (400, "bad_request"));
    let (s, c, _) = code(Probe::new("GET", format!("/api/v1/tags?q={}", "x".repeat(60_000)))).await;
    assert_eq!((s, c.as_str()), (414, "uri_too_long"));
    let mut p = Probe::new("GET", "/api/v1/tags".into());
    p.headers.push(("x-filler", "z".repeat(100_000)));
    let (s, c, _) = code(p).await;
    assert_eq!((s, c.as_str()), (431, "headers_too_large"));
}
