//! Pipelines over real HTTP on SQLite and PostgreSQL (docs/pipelines.md):
//! configuration and its checks, history and apply, manual runs, hooks with
//! real signatures, duplicate deliveries, filters, chained runs on new
//! source versions and the loop check, a run carried through a builder's
//! report to an imported image — and the signed channels (docs/channels.md).

mod common;
#[path = "common/served.rs"]
mod served;

use hmac::{Hmac, Mac};
use kiln_hub_api::channel::{ChannelError, check_index};
use kiln_hub_api::minisign::PublicKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Hub {
    base: String,
    root: String,
    admin: String,
    http: reqwest::Client,
    served: served::Served,
}

async fn start(t: &common::TestDb) -> Hub {
    let admin = kiln_hub::bootstrap_user(&t.url, "admin", Some("admin-password"), &["admin".into()])
        .await
        .expect("bootstrap");
    let served = served::serve(t, true).await;
    Hub {
        base: format!("http://{}/api/v1", served.addr),
        root: format!("http://{}", served.addr),
        admin,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
        served,
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
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

    /// A raw delivery to a hook.
    async fn deliver(
        &self,
        pipeline: &str,
        service: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .post(format!("{}/pipelines/{pipeline}/hooks/{service}", self.base))
            .body(body.to_vec());
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let resp = r.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn upload_image(&self, name: &str, version: &str) {
        let img = common::images::tar_image(format!("{name} {version}").as_bytes());
        let r = self
            .http
            .put(format!("{}/images/{name}/{version}/upload", self.base))
            .bearer_auth(&self.admin)
            .header("x-kiln-sha256", sha(&img))
            .body(img)
            .send()
            .await
            .expect("put");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }

    async fn runs(&self, pipeline: &str) -> Vec<Value> {
        let v = self.ok("GET", &format!("/pipelines/{pipeline}/runs"), None).await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    async fn task(&self, id: i64) -> Value {
        self.ok("GET", &format!("/tasks/{id}"), None).await
    }

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

    /// The tags, target and source images most tests share.
    async fn setup(&self) {
        self.ok("POST", "/tags", Some(json!({"name": "cam-build"}))).await;
        self.ok("POST", "/tags", Some(json!({"name": "cam-release"}))).await;
        self.ok(
            "POST",
            "/targets",
            Some(
                json!({"name": "cam", "build_tag": "cam-build", "dest_tag": "cam-release",
                        "macros": {"product": "cam"}}),
            ),
        )
        .await;
        for package in ["cam-fw", "cam-app", "cam-dev"] {
            self.ok("POST", "/tags/cam-release/packages", Some(json!({"package": package})))
                .await;
        }
        self.upload_image("cam-base", "2.3.9").await;
        self.upload_image("cam-base", "2.3.10").await;
    }
}

const SCRIPT: &str = "git+https://git.example.com/ops/scripts.git@main:cam/update.sh";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn update_pipeline(name: &str) -> Value {
    json!({
        "name": name, "kind": "update", "source": "cam-base@latest", "script": SCRIPT,
        "target_name": "%{product}-fw-%{source_version}-%{run}", "target": "cam",
    })
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn github_push(git_ref: &str, after: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": git_ref, "before": "0".repeat(40), "after": after, "created": false, "deleted": false,
        "forced": false, "repository": {"full_name": "ops/scripts", "clone_url": "https://example.invalid/x.git"},
        "pusher": {"name": "alice"}, "commits": [], "head_commit": {"id": after},
    }))
    .expect("json")
}

both!(configuration_checks_history_and_apply, |t| async move {
    let h = start(&t).await;
    h.setup().await;
    let p = h.ok("POST", "/pipelines", Some(update_pipeline("cam-fw"))).await;
    assert_eq!(
        (p["owner"].as_str(), p["enabled"].as_bool()),
        (Some("admin"), Some(true))
    );
    assert_eq!(p["channel"], "default");

    // Each class of mistake is refused with what is wrong.
    let bad = |patch: Value| {
        let mut p = update_pipeline("bad");
        for (k, v) in patch.as_object().expect("object") {
            p[k] = v.clone();
        }
        p
    };
    for (patch, status, needle) in [
        (json!({"script": null}), StatusCode::BAD_REQUEST, "need `script`"),
        (
            json!({"repo": "git+file:///p@main"}),
            StatusCode::BAD_REQUEST,
            "`repo` is not for update",
        ),
        (
            json!({"target_name": "cam-fw"}),
            StatusCode::BAD_REQUEST,
            "NAME-VERSION-RELEASE",
        ),
        (
            json!({"target_name": "x-%{nope}-1"}),
            StatusCode::BAD_REQUEST,
            "undefined macro `nope`",
        ),
        (
            json!({"defines": {"run": "1"}}),
            StatusCode::BAD_REQUEST,
            "set by every run",
        ),
        (
            json!({"target": "nope"}),
            StatusCode::NOT_FOUND,
            "unknown target `nope`",
        ),
        (
            json!({"builder": "nope"}),
            StatusCode::NOT_FOUND,
            "unknown builder `nope`",
        ),
        (
            json!({"source": "cam-base@2", "on_new_source": true}),
            StatusCode::BAD_REQUEST,
            "cam-base@latest",
        ),
        (json!({"name": ".."}), StatusCode::BAD_REQUEST, "pipeline name"),
        (json!({"branches": ["ma\nin"]}), StatusCode::BAD_REQUEST, ""),
    ] {
        let (s, v) = h
            .call("POST", "/pipelines", Some(&h.admin), Some(bad(patch.clone())))
            .await;
        assert_eq!(s, status, "{patch}: {v}");
        assert!(message(&v).contains(needle), "{patch}: {v}");
    }
    let (s, _) = h
        .call("POST", "/pipelines", Some(&h.admin), Some(update_pipeline("cam-fw")))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The permission: `pipeline` to configure.
    h.ok("POST", "/users", Some(json!({"name": "dev", "perms": ["build"]})))
        .await;
    let dev = h.ok("POST", "/users/dev/tokens", Some(json!({}))).await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let (s, _) = h
        .call("POST", "/pipelines", Some(&dev), Some(update_pipeline("mine")))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Edit, then show --json → apply gives the same configuration back.
    let e = h
        .ok(
            "PATCH",
            "/pipelines/cam-fw",
            Some(json!({"define": {"board": "b2"}, "enabled": false, "branches": ["main", "release/*"]})),
        )
        .await;
    assert_eq!(
        (e["enabled"].as_bool(), e["defines"]["board"].as_str()),
        (Some(false), Some("b2"))
    );
    let shown = h.ok("GET", "/pipelines/cam-fw", None).await;
    let applied = h.ok("PUT", "/pipelines/cam-fw", Some(shown.clone())).await;
    assert_eq!(applied, shown);

    // History: every save, with the configuration as of each event.
    let hist = h.ok("GET", "/pipelines/cam-fw/history", None).await;
    let hist = hist.as_array().expect("history");
    assert_eq!(hist.len(), 3, "{hist:?}");
    let first = hist[0]["event"].as_i64().expect("event");
    let then = h.ok("GET", &format!("/pipelines/cam-fw?event={first}"), None).await;
    assert_eq!(then["enabled"], true);
    assert!(then["defines"].as_object().is_some_and(|d| d.is_empty()));

    // A target a pipeline uses cannot go; a deleted pipeline's history stays.
    let (s, v) = h.call("DELETE", "/targets/cam", Some(&h.admin), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("cam-fw"), "{v}");
    h.ok("DELETE", "/pipelines/cam-fw", None).await;
    let (s, _) = h.call("GET", "/pipelines/cam-fw", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let hist = h.ok("GET", "/pipelines/cam-fw/history", None).await;
    assert!(
        hist.as_array()
            .is_some_and(|a| a.len() == 4 && a[3]["config"].is_null()),
        "{hist}"
    );
    h.ok("DELETE", "/targets/cam", None).await;
});

both!(manual_runs_resolve_the_source_and_number_the_runs, |t| async move {
    let h = start(&t).await;
    h.setup().await;
    h.ok("POST", "/pipelines", Some(update_pipeline("cam-fw"))).await;
    let run = h.ok("POST", "/pipelines/cam-fw/runs", Some(json!({}))).await;
    assert_eq!(
        (run["run"].as_i64(), run["trigger"].as_str(), run["state"].as_str()),
        (Some(1), Some("manual"), Some("queued"))
    );
    // The newest version by Debian ordering: 2.3.10, not 2.3.9.
    assert_eq!(run["source"], "cam-base@2.3.10");
    assert_eq!(run["nvr"], "cam-fw-2.3.10-1");
    let task = h.task(run["task"].as_i64().expect("task")).await;
    assert_eq!(task["method"], "update");
    assert_eq!(task["request"]["from"], "cam-base@2.3.10");
    assert_eq!(task["request"]["script"], SCRIPT);
    assert_eq!(task["owner"], "admin");
    // A pinned commit goes into the script spec; the run counts on.
    let run = h
        .ok("POST", "/pipelines/cam-fw/runs", Some(json!({"commit": COMMIT})))
        .await;
    assert_eq!((run["run"].as_i64(), run["commit"].as_str()), (Some(2), Some(COMMIT)));
    let task = h.task(run["task"].as_i64().expect("task")).await;
    assert_eq!(
        task["request"]["script"].as_str(),
        Some(format!("git+https://git.example.com/ops/scripts.git@{COMMIT}:cam/update.sh").as_str())
    );
    // A commit in the name is left for the builder when unknown.
    h.ok(
        "PATCH",
        "/pipelines/cam-fw",
        Some(json!({"target_name": "cam-fw-%{source_version}+g%{commit_short}-%{run}"})),
    )
    .await;
    let run = h.ok("POST", "/pipelines/cam-fw/runs", Some(json!({}))).await;
    assert_eq!(run["nvr"], "cam-fw-2.3.10+g%{commit_short}-3");
    let run = h
        .ok("POST", "/pipelines/cam-fw/runs", Some(json!({"commit": COMMIT})))
        .await;
    assert_eq!(run["nvr"], "cam-fw-2.3.10+g0123456789ab-4");
    // Bad input is refused before anything is recorded.
    let (s, _) = h
        .call(
            "POST",
            "/pipelines/cam-fw/runs",
            Some(&h.admin),
            Some(json!({"commit": "abc"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = h
        .call(
            "POST",
            "/pipelines/cam-fw/runs",
            Some(&h.admin),
            Some(json!({"ref": "a..b"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A source with no version: the run is recorded with its error.
    h.ok("PATCH", "/pipelines/cam-fw", Some(json!({"source": "nothing@latest"})))
        .await;
    let (s, v) = h
        .call("POST", "/pipelines/cam-fw/runs", Some(&h.admin), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let runs = h.runs("cam-fw").await;
    assert_eq!(runs.len(), 5);
    assert_eq!(
        (runs[0]["run"].as_i64(), runs[0]["state"].as_str()),
        (Some(5), Some("error"))
    );
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("no version of image nothing"),
        "{:?}",
        runs[0]
    );
    // Disabled: refused, nothing recorded.
    h.ok("PATCH", "/pipelines/cam-fw", Some(json!({"enabled": false})))
        .await;
    let (s, v) = h
        .call("POST", "/pipelines/cam-fw/runs", Some(&h.admin), Some(json!({})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert_eq!(h.runs("cam-fw").await.len(), 5);
});

both!(
    hooks_authenticate_filter_and_start_one_run_per_delivery,
    |t| async move {
        let h = start(&t).await;
        h.setup().await;
        let mut p = update_pipeline("cam-fw");
        p["branches"] = json!(["main", "release/*"]);
        p["tags"] = json!(["v*"]);
        h.ok("POST", "/pipelines", Some(p)).await;
        let body = github_push("refs/heads/main", COMMIT);

        // No secret yet: refused.
        let (s, _) = h
            .deliver("cam-fw", "github", &[("x-github-event", "push".into())], &body)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let gh = h.ok("POST", "/pipelines/cam-fw/hooks/github/secret", None).await;
        let secret = gh["secret"].as_str().expect("secret").to_string();
        assert_eq!(gh["path"], "/api/v1/pipelines/cam-fw/hooks/github");
        let shown = h.ok("GET", "/pipelines/cam-fw", None).await;
        assert_eq!(shown["hooks"], json!(["github"]));
        assert!(!shown.to_string().contains(&secret), "the secret is never shown again");

        let headers = |sig: String, id: &str, event: &str| {
            vec![
                ("x-hub-signature-256", sig),
                ("x-github-delivery", id.to_string()),
                ("x-github-event", event.to_string()),
                ("content-type", "application/json".to_string()),
            ]
        };
        // Bad signatures record nothing.
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        for (sig, b) in [
            (github_sig(&secret, &body), tampered.as_slice()),
            (github_sig("another secret", &body), body.as_slice()),
            ("sha256=zz".to_string(), body.as_slice()),
        ] {
            let (s, v) = h.deliver("cam-fw", "github", &headers(sig, "d-1", "push"), b).await;
            assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"), "{v}");
        }
        assert!(h.runs("cam-fw").await.is_empty());

        // A ping, then a good push: one run at the pushed commit.
        let ping = br#"{"zen": "Keep it simple.", "hook_id": 1}"#;
        let (s, _) = h
            .deliver(
                "cam-fw",
                "github",
                &headers(github_sig(&secret, ping), "d-0", "ping"),
                ping,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = h
            .deliver(
                "cam-fw",
                "github",
                &headers(github_sig(&secret, &body), "d-1", "push"),
                &body,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let run = &v["run"];
        assert_eq!(
            (
                run["trigger"].as_str(),
                run["delivery"].as_str(),
                run["commit"].as_str(),
                run["ref"].as_str()
            ),
            (Some("github"), Some("d-1"), Some(COMMIT), Some("refs/heads/main"))
        );
        let task = h.task(run["task"].as_i64().expect("task")).await;
        assert!(
            task["request"]["script"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("@{COMMIT}:"))
        );
        assert_eq!(task["owner"], "admin", "hook runs run as the pipeline's owner");
        // The same delivery again (a redelivery): refused, no second run.
        let (s, v) = h
            .deliver(
                "cam-fw",
                "github",
                &headers(github_sig(&secret, &body), "d-1", "push"),
                &body,
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(message(&v).contains("d-1"), "{v}");
        // Filters: a branch no pattern admits, a deleted branch; a tag that matches.
        let dev = github_push("refs/heads/dev", COMMIT);
        let (s, v) = h
            .deliver(
                "cam-fw",
                "github",
                &headers(github_sig(&secret, &dev), "d-2", "push"),
                &dev,
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "ignored"), "{v}");
        let tag = github_push("refs/tags/v2.0", COMMIT);
        let (s, v) = h
            .deliver(
                "cam-fw",
                "github",
                &headers(github_sig(&secret, &tag), "d-3", "push"),
                &tag,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(h.runs("cam-fw").await.len(), 2);

        // GitLab: the token, in constant time; wrong or missing → 401.
        let gl = h.ok("POST", "/pipelines/cam-fw/hooks/gitlab/secret", None).await;
        let token = gl["secret"].as_str().expect("secret").to_string();
        let gl_body = serde_json::to_vec(&json!({
            "object_kind": "push", "event_name": "push", "ref": "refs/heads/release/2.3",
            "before": "0".repeat(40), "after": COMMIT, "checkout_sha": COMMIT,
            "project": {"path_with_namespace": "ops/scripts"}, "commits": [], "total_commits_count": 0,
        }))
        .expect("json");
        let gl_headers = |tok: &str, id: &str| {
            vec![
                ("x-gitlab-token", tok.to_string()),
                ("x-gitlab-event", "Push Hook".to_string()),
                ("x-gitlab-event-uuid", id.to_string()),
                ("content-type", "application/json".to_string()),
            ]
        };
        let (s, _) = h
            .deliver("cam-fw", "gitlab", &gl_headers("wrong", "g-1"), &gl_body)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, v) = h
            .deliver("cam-fw", "gitlab", &gl_headers(&token, "g-1"), &gl_body)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["run"]["ref"], "refs/heads/release/2.3");
        // The GitHub secret is no GitLab token.
        let (s, _) = h
            .deliver("cam-fw", "gitlab", &gl_headers(&secret, "g-2"), &gl_body)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Generic: a bearer token, an empty body runs the configured ref.
        let gen_secret = h.ok("POST", "/pipelines/cam-fw/hooks/generic/secret", None).await["secret"]
            .as_str()
            .expect("secret")
            .to_string();
        let (s, v) = h
            .deliver(
                "cam-fw",
                "generic",
                &[("authorization", format!("Bearer {gen_secret}"))],
                b"",
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(
            (v["run"]["ref"].as_str(), v["run"]["commit"].as_str()),
            (Some("main"), None)
        );
        // A new secret replaces the old one.
        h.ok("POST", "/pipelines/cam-fw/hooks/generic/secret", None).await;
        let (s, _) = h
            .deliver(
                "cam-fw",
                "generic",
                &[("authorization", format!("Bearer {gen_secret}"))],
                b"",
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Disabled: refused, nothing recorded.
        h.ok("PATCH", "/pipelines/cam-fw", Some(json!({"enabled": false})))
            .await;
        let before = h.runs("cam-fw").await.len();
        let (s, v) = h
            .deliver(
                "cam-fw",
                "github",
                &headers(github_sig(&secret, &body), "d-9", "push"),
                &body,
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
        assert!(message(&v).contains("disabled"), "{v}");
        assert_eq!(h.runs("cam-fw").await.len(), before);
        // Every hook change is in the history.
        let hist = h.ok("GET", "/pipelines/cam-fw/history", None).await;
        let actions: Vec<&str> = hist
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|v| v["action"].as_str())
            .collect();
        assert_eq!(
            actions.iter().filter(|a| a.contains("hook secret")).count(),
            4,
            "{actions:?}"
        );
    }
);

/// Waits until `pipeline` has `n` runs (runs on new sources start in the background).
async fn wait_runs(h: &Hub, pipeline: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let runs = h.runs(pipeline).await;
        if runs.len() >= n {
            return runs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    h.runs(pipeline).await
}

both!(new_source_versions_run_chained_pipelines_once, |t| async move {
    let h = start(&t).await;
    h.setup().await;
    let mut p = update_pipeline("cam-fw");
    p["on_new_source"] = json!(true);
    h.ok("POST", "/pipelines", Some(p)).await;
    let mut other = update_pipeline("manual-only");
    other["on_new_source"] = json!(false);
    h.ok("POST", "/pipelines", Some(other)).await;
    // A newer version: one run, as the owner, naming the version.
    h.upload_image("cam-base", "2.4").await;
    let runs = wait_runs(&h, "cam-fw", 1).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (
            runs[0]["trigger"].as_str(),
            runs[0]["delivery"].as_str(),
            runs[0]["source"].as_str()
        ),
        (Some("source"), Some("cam-base@2.4"), Some("cam-base@2.4"))
    );
    // An older version imported late starts nothing; neither does the catch-up pass, again.
    h.upload_image("cam-base", "2.3.11").await;
    kiln_hub::api::chain_catch_up(&h.served.hub).await;
    kiln_hub::api::chain_catch_up(&h.served.hub).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.runs("cam-fw").await.len(), 1);
    assert!(h.runs("manual-only").await.is_empty());

    // Loops through the catalog are refused: directly…
    let mut selfish = update_pipeline("selfish");
    selfish["source"] = json!("cam-fw@latest");
    selfish["import_image"] = json!(true);
    selfish["target_name"] = json!("cam-fw-%{source_version}-%{run}");
    let (s, v) = h.call("POST", "/pipelines", Some(&h.admin), Some(selfish)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("selfish → selfish"), "{v}");
    // …and through others.
    h.ok("PATCH", "/pipelines/cam-fw", Some(json!({"import_image": true})))
        .await;
    let mut back = update_pipeline("back");
    back["source"] = json!("cam-fw@latest");
    back["import_image"] = json!(true);
    back["target_name"] = json!("cam-base-%{source_version}-%{run}");
    let (s, v) = h.call("POST", "/pipelines", Some(&h.admin), Some(back.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("cam-fw") && message(&v).contains("back"), "{v}");
    back["target_name"] = json!("cam-dev-%{source_version}-%{run}");
    h.ok("POST", "/pipelines", Some(back)).await;
    // A name that varies per run cannot be imported.
    let (s, v) = h
        .call(
            "PATCH",
            "/pipelines/back",
            Some(&h.admin),
            Some(json!({"target_name": "cam%{run}-1-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
});

/// A builder's part of a run: claims the task, uploads the image and
/// reports the build (its NVR from the task's request, as the builder does).
async fn build_as_builder(h: &Hub, host: &str, content: &[u8]) -> Value {
    let (s, claimed) = h.call("POST", "/host/claim", Some(host), None).await;
    assert_eq!(s, StatusCode::OK, "{claimed}");
    let id = claimed["id"].as_i64().expect("a task to claim");
    let nvr = claimed["request"]["name"]
        .as_str()
        .expect("name")
        .replace("%{commit_short}", "0123456789ab");
    let file = format!("{nvr}.squashfs");
    let r = h
        .http
        .put(format!("{}/tasks/{id}/files/{file}", h.base))
        .bearer_auth(host)
        .header("x-kiln-sha256", sha(content))
        .body(content.to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    let (n, rest) = nvr
        .split_once("-fw-")
        .map(|(a, b)| (format!("{a}-fw"), b))
        .expect("nvr");
    let (v, rel) = rest.rsplit_once('-').expect("release");
    let report = json!({"ok": true, "result": {"builder": "b1", "commit": COMMIT}, "build": {
        "name": n, "version": v, "release": rel, "manifest": {"kind": "update"},
        "artifacts": [{"file": file, "format": "squashfs", "size": content.len(), "sha256": sha(content)}]}});
    let (s, v) = h
        .call("POST", &format!("/tasks/{id}/result"), Some(host), Some(report))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

both!(
    a_run_records_its_build_and_imports_it_for_the_next_pipeline,
    |t| async move {
        let h = start(&t).await;
        h.setup().await;
        let host = h.host("cam-lab-1").await;
        let mut p = update_pipeline("cam-fw");
        p["import_image"] = json!(true);
        p["builder"] = json!("cam-lab-1");
        h.ok("POST", "/pipelines", Some(p)).await;
        let mut next = update_pipeline("cam-app");
        next["source"] = json!("cam-fw@latest");
        next["target_name"] = json!("cam-app-%{source_version}-%{run}");
        next["on_new_source"] = json!(true);
        // Its runs wait for a builder of another channel: cam-lab-1 only builds cam-fw.
        next["channel"] = json!("apps");
        h.ok("POST", "/pipelines", Some(next)).await;

        let run = h.ok("POST", "/pipelines/cam-fw/runs", Some(json!({}))).await;
        let task = h.task(run["task"].as_i64().expect("task")).await;
        assert_eq!(task["designated_host"], "cam-lab-1");
        let done = build_as_builder(&h, &host, b"hsqs pretend image").await;
        assert_eq!(done["result"]["image"], "cam-fw@2.3.10-1");
        let runs = h.runs("cam-fw").await;
        assert_eq!(
            (
                runs[0]["state"].as_str(),
                runs[0]["nvr"].as_str(),
                runs[0]["commit"].as_str()
            ),
            (Some("succeeded"), Some("cam-fw-2.3.10-1"), Some(COMMIT))
        );
        // Tagged into the target's destination, and in the catalog.
        let tagged = h.ok("GET", "/tags/cam-release/builds", None).await;
        assert_eq!(tagged[0]["nvr"], "cam-fw-2.3.10-1");
        let img = h.ok("GET", "/images/cam-fw/2.3.10-1", None).await;
        assert_eq!(
            (img["format"].as_str(), img["uploader"].as_str()),
            (Some("squashfs"), Some("admin"))
        );
        // The pipeline following cam-fw ran on it.
        let runs = wait_runs(&h, "cam-app", 1).await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0]["source"], "cam-fw@2.3.10-1");
        // The imported version's dash does not split the next target name wrong.
        assert_eq!(runs[0]["nvr"], "cam-app-2.3.10_1-1");
        // A version the catalog already holds: the build stands, the run says
        // why nothing was imported.
        h.upload_image("cam-fw", "2.3.10-2").await;
        h.ok("POST", "/pipelines/cam-fw/runs", Some(json!({}))).await;
        let done = build_as_builder(&h, &host, b"hsqs the second image").await;
        assert_eq!(
            (done["state"].as_str(), done["result"]["image"].as_str()),
            (Some("CLOSED"), None)
        );
        let runs = h.runs("cam-fw").await;
        assert_eq!(runs[0]["state"], "succeeded");
        assert!(
            runs[0]["error"]
                .as_str()
                .unwrap_or("")
                .contains("already holds cam-fw@2.3.10-2"),
            "{:?}",
            runs[0]
        );
    }
);

both!(channels_publish_signed_indexes_devices_verify, |t| async move {
    let h = start(&t).await;
    h.setup().await;
    // No key: publishing says how to make one.
    let (s, v) = h
        .call("POST", "/channels/cam-release/publish", Some(&h.admin), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(message(&v).contains("kiln channel keygen"), "{v}");
    let key = h.ok("POST", "/channel-key", None).await;
    let public = PublicKey::parse(key["public_key"].as_str().expect("key")).expect("a minisign key");
    let served_key = h
        .http
        .get(format!("{}/channels/key.pub", h.root))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(served_key, key["public_key"].as_str().unwrap_or_default());

    // A build in the tag, through a run.
    let host = h.host("b1").await;
    h.ok("POST", "/pipelines", Some(update_pipeline("cam-fw"))).await;
    h.ok("POST", "/pipelines/cam-fw/runs", Some(json!({}))).await;
    let image = b"hsqs the image a device installs".to_vec();
    build_as_builder(&h, &host, &image).await;

    let fetch = |path: String| {
        let http = h.http.clone();
        async move {
            let r = http.get(path).send().await.expect("get");
            (r.status(), r.bytes().await.expect("bytes").to_vec())
        }
    };
    let index_url = format!("{}/channels/cam-release/index.json", h.root);
    let (s, _) = fetch(index_url.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not published yet");
    let info = h.ok("POST", "/channels/cam-release/publish", None).await;
    assert_eq!((info["sequence"].as_i64(), info["images"].as_i64()), (Some(1), Some(1)));
    let (_, body) = fetch(index_url.clone()).await;
    let (_, sig) = fetch(format!("{index_url}.minisig")).await;
    let sig = String::from_utf8(sig).expect("utf-8");
    let ok = check_index(&body, &sig, &public, "cam-release", None).expect("verifies");
    let entry = &ok.index.images["cam-fw"];
    assert_eq!(
        (entry.nvr.as_str(), entry.sha256.clone()),
        ("cam-fw-2.3.10-1", sha(&image))
    );
    // The listed file downloads; anything else under /files is refused.
    let (s, got) = fetch(format!("{}/channels/cam-release/{}", h.root, entry.url)).await;
    assert_eq!((s, sha(&got)), (StatusCode::OK, sha(&image)));
    let (s, _) = fetch(format!("{}/channels/cam-release/files/cam-fw-2.3.10-1/other", h.root)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Unchanged content publishes nothing new; --force does.
    let again = h.ok("POST", "/channels/cam-release/publish", None).await;
    assert_eq!(again["sequence"].as_i64(), Some(1));
    h.ok("POST", "/channels/cam-release/publish?force=true", None).await;
    let (_, body2) = fetch(index_url.clone()).await;
    let (_, sig2) = fetch(format!("{index_url}.minisig")).await;
    let sig2 = String::from_utf8(sig2).expect("utf-8");
    let ok2 = check_index(&body2, &sig2, &public, "cam-release", Some(1)).expect("newer");
    assert_eq!(ok2.index.sequence, 2);
    // The old index, replayed to a device that accepted sequence 2: a rollback.
    match check_index(&body, &sig, &public, "cam-release", Some(2)) {
        Err(ChannelError::Rollback {
            sequence: 1,
            accepted: 2,
        }) => {}
        other => panic!("expected a rollback, got {other:?}"),
    }
    // Tampering: the index, the signature, the trusted comment, another key.
    let mut bad = body2.clone();
    let at = bad.iter().position(|b| *b == b'2').expect("a digit");
    bad[at] = b'3';
    assert!(matches!(
        check_index(&bad, &sig2, &public, "cam-release", None),
        Err(ChannelError::Signature(_))
    ));
    let bad_sig = sig2.replace("sequence 2", "sequence 9");
    assert!(matches!(
        check_index(&body2, &bad_sig, &public, "cam-release", None),
        Err(ChannelError::Signature(_))
    ));
    let new_key = h.ok("POST", "/channel-key", None).await;
    let other = PublicKey::parse(new_key["public_key"].as_str().expect("key")).expect("key");
    assert!(matches!(
        check_index(&body2, &sig2, &other, "cam-release", None),
        Err(ChannelError::Signature(_))
    ));

    // Automatic publication: the tag's own extra, after the next tagging.
    h.ok(
        "PATCH",
        "/tags/cam-release",
        Some(json!({"extra": {"channel.publish": true}})),
    )
    .await;
    h.ok("POST", "/pipelines/cam-fw/runs", Some(json!({}))).await;
    build_as_builder(&h, &host, b"hsqs the second image").await;
    kiln_hub::api::publish_auto(&h.served.hub).await;
    let now = h.ok("GET", "/channels/cam-release", None).await;
    assert_eq!((now["sequence"].as_i64(), now["auto"].as_bool()), (Some(3), Some(true)));
    let (_, body3) = fetch(index_url.clone()).await;
    let (_, sig3) = fetch(format!("{index_url}.minisig")).await;
    let ok3 = check_index(
        &body3,
        &String::from_utf8(sig3).expect("utf-8"),
        &other,
        "cam-release",
        Some(2),
    )
    .expect("new key");
    assert_eq!(ok3.index.images["cam-fw"].nvr, "cam-fw-2.3.10-2");
    // A signed index of another channel is no answer for this one.
    h.ok("POST", "/tags", Some(json!({"name": "beta"}))).await;
    h.ok("POST", "/channels/beta/publish", None).await;
    let (_, beta) = fetch(format!("{}/channels/beta/index.json", h.root)).await;
    let (_, beta_sig) = fetch(format!("{}/channels/beta/index.json.minisig", h.root)).await;
    let beta_sig = String::from_utf8(beta_sig).expect("utf-8");
    assert!(check_index(&beta, &beta_sig, &other, "beta", None).is_ok());
    assert!(matches!(
        check_index(&beta, &beta_sig, &other, "cam-release", None),
        Err(ChannelError::WrongChannel { .. })
    ));
    // A channel's sequence numbers never repeat, even for a new tag of the name.
    h.ok("POST", "/channels/beta/publish?force=true", None).await;
    h.ok("DELETE", "/tags/beta", None).await;
    h.ok("POST", "/tags", Some(json!({"name": "beta"}))).await;
    let again = h.ok("POST", "/channels/beta/publish", None).await;
    assert_eq!(again["sequence"].as_i64(), Some(3), "{again}");
    // Publishing needs the tag permission.
    h.ok("POST", "/users", Some(json!({"name": "dev", "perms": ["build"]})))
        .await;
    let dev = h.ok("POST", "/users/dev/tokens", Some(json!({}))).await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let (s, _) = h.call("POST", "/channels/cam-release/publish", Some(&dev), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.call("POST", "/channel-key", Some(&dev), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
});

both!(
    hook_runs_act_as_the_owner_who_must_be_allowed_to_build,
    |t| async move {
        let h = start(&t).await;
        h.setup().await;
        h.ok("POST", "/users", Some(json!({"name": "cfg", "perms": ["pipeline"]})))
            .await;
        let cfg = h.ok("POST", "/users/cfg/tokens", Some(json!({}))).await["token"]
            .as_str()
            .expect("token")
            .to_string();
        let (s, v) = h
            .call("POST", "/pipelines", Some(&cfg), Some(update_pipeline("cam-fw")))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let secret = h.ok("POST", "/pipelines/cam-fw/hooks/generic/secret", None).await["secret"]
            .as_str()
            .expect("secret")
            .to_string();
        let bearer = |id: &str| {
            vec![
                ("authorization", format!("Bearer {secret}")),
                ("idempotency-key", id.to_string()),
            ]
        };
        // cfg configured it but may not build: the run is recorded, refused.
        let (s, v) = h.deliver("cam-fw", "generic", &bearer("one"), b"").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(message(&v).contains("lacks the `build` permission"), "{v}");
        let runs = h.runs("cam-fw").await;
        assert_eq!(
            (runs.len(), runs[0]["state"].as_str(), runs[0]["task"].as_i64()),
            (1, Some("error"), None)
        );
        // Allowed to build: the next delivery runs, as cfg.
        h.ok("POST", "/users/cfg/perms", Some(json!({"perm": "build"}))).await;
        let (s, v) = h.deliver("cam-fw", "generic", &bearer("two"), b"").await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let task = h.task(v["run"]["task"].as_i64().expect("task")).await;
        assert_eq!(task["owner"], "cfg");
    }
);
