use proptest::prelude::*;

use super::*;

const GITHUB_PUSH: &[u8] = include_bytes!("../../tests/fixtures/hooks/github-push.json");
const GITHUB_PUSH_FORM: &[u8] = include_bytes!("../../tests/fixtures/hooks/github-push.form");
const GITHUB_PUSH_TAG: &[u8] = include_bytes!("../../tests/fixtures/hooks/github-push-tag.json");
const GITHUB_PUSH_DELETE: &[u8] = include_bytes!("../../tests/fixtures/hooks/github-push-delete.json");
const GITHUB_PING: &[u8] = include_bytes!("../../tests/fixtures/hooks/github-ping.json");
const GITLAB_PUSH: &[u8] = include_bytes!("../../tests/fixtures/hooks/gitlab-push.json");
const GITLAB_TAG_PUSH: &[u8] = include_bytes!("../../tests/fixtures/hooks/gitlab-tag-push.json");
const GITLAB_PUSH_DELETE: &[u8] = include_bytes!("../../tests/fixtures/hooks/gitlab-push-delete.json");

/// The GitHub secret of the tests' pipeline.
const KEY: &[u8] = b"kiln-hook-test-secret-7f3a9c";
/// The GitLab and generic token of the tests' pipeline.
const TOKEN: &str = "glpat-like-hook-token-2c41e8";
const DELIVERY: &str = "040255ae-70a8-429f-87e4-3dc42e964399";

fn sign(body: &[u8]) -> String {
    github_signature(KEY, body).expect("a non-empty key signs")
}

fn github(headers: &[(&str, &str)], body: &[u8]) -> Result<Delivery, HookError> {
    receive(Service::GitHub, Secret::Key(KEY), Headers::new(headers), body)
}

/// A GitHub delivery of `event` as GitHub sends it, signed.
fn github_signed(event: &str, content_type: &str, body: &[u8]) -> Result<Delivery, HookError> {
    let signature = sign(body);
    github(
        &[
            ("x-github-event", event),
            ("x-github-delivery", DELIVERY),
            ("x-hub-signature-256", &signature),
            ("content-type", content_type),
            ("user-agent", "GitHub-Hookshot/5c1e2a4"),
        ],
        body,
    )
}

fn token_hash() -> [u8; 32] {
    token_sha256(TOKEN)
}

fn gitlab(headers: &[(&str, &str)], body: &[u8]) -> Result<Delivery, HookError> {
    receive(
        Service::GitLab,
        Secret::TokenSha256(&token_hash()),
        Headers::new(headers),
        body,
    )
}

/// A GitLab delivery of `event` as GitLab sends it, with the right token.
fn gitlab_sent(event: &str, body: &[u8]) -> Result<Delivery, HookError> {
    gitlab(
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "GitLab/17.11.1-ee"),
            ("X-Gitlab-Event", event),
            ("X-Gitlab-Token", TOKEN),
            ("X-Gitlab-Instance", "https://gitlab.example.org"),
            ("X-Gitlab-Webhook-UUID", "b09ee124-f8a8-4430-8b12-b7e456e1d4f8"),
            ("X-Gitlab-Event-UUID", "51f79797-307e-43a6-bab3-2358c54915a2"),
            ("Idempotency-Key", "0268d226-fef6-48f7-86aa-4f96d6ae0263"),
        ],
        body,
    )
}

fn generic(headers: &[(&str, &str)], body: &[u8]) -> Result<Delivery, HookError> {
    receive(
        Service::Generic,
        Secret::TokenSha256(&token_hash()),
        Headers::new(headers),
        body,
    )
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn push(git_ref: &str, commit: &str) -> Event {
    Event::Push {
        git_ref: git_ref.into(),
        commit: commit.into(),
    }
}

fn run(git_ref: Option<&str>, commit: Option<&str>) -> Event {
    Event::Run {
        git_ref: git_ref.map(Into::into),
        commit: commit.map(Into::into),
    }
}

fn unauthorized(r: Result<Delivery, HookError>) -> String {
    match r {
        Err(HookError::Unauthorized(m)) => m,
        other => panic!("expected 401, got {other:?}"),
    }
}

fn bad_request(r: Result<Delivery, HookError>) -> String {
    match r {
        Err(HookError::BadRequest(m)) => m,
        other => panic!("expected 400, got {other:?}"),
    }
}

fn ignored(r: Result<Delivery, HookError>) -> String {
    match r {
        Ok(Delivery {
            event: Event::Ignored(why),
            ..
        }) => why,
        other => panic!("expected an ignored delivery, got {other:?}"),
    }
}

#[test]
fn github_push_with_a_correct_signature_is_a_push() {
    let d = github_signed("push", "application/json", GITHUB_PUSH).expect("accepted");
    assert_eq!(d.service, Service::GitHub);
    assert_eq!(d.id.as_deref(), Some(DELIVERY));
    assert_eq!(
        d.event,
        push("refs/heads/main", "d31aa58c4ce1e90636f7a42d4601ba2864ce290f")
    );
}

#[test]
fn github_signature_matches_the_documented_example() {
    // The example of GitHub's "Validating webhook deliveries".
    let s = github_signature(b"It's a Secret to Everybody", b"Hello, World!").expect("signs");
    assert_eq!(
        s,
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let headers = [("X-Hub-Signature-256", s.as_str()), ("X-GitHub-Event", "ping")];
    let d = receive(
        Service::GitHub,
        Secret::Key(b"It's a Secret to Everybody"),
        Headers::new(&headers),
        b"Hello, World!",
    );
    assert_eq!(d.expect("accepted").event, Event::Ping);
}

/// What is refused, the headers, the body.
type SignatureCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8]);

#[test]
fn github_refuses_what_the_secret_did_not_sign() {
    let good = sign(GITHUB_PUSH);
    let mut tampered = GITHUB_PUSH.to_vec();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let other_secret = github_signature(b"some other secret", GITHUB_PUSH).expect("signs");
    let sha1_only = "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6";
    let non_hex = format!("sha256={}", "zz".repeat(32));
    let short = good[..good.len() - 2].to_string();
    let no_prefix = good["sha256=".len()..].to_string();
    let sha1_prefix = format!("sha1={}", &good["sha256=".len()..]);
    let cases: Vec<SignatureCase> = vec![
        ("one byte changed", vec![("x-hub-signature-256", &good)], &tampered),
        (
            "another secret",
            vec![("x-hub-signature-256", &other_secret)],
            GITHUB_PUSH,
        ),
        ("no signature", vec![], GITHUB_PUSH),
        ("SHA-1 only", vec![("x-hub-signature", sha1_only)], GITHUB_PUSH),
        ("not hex", vec![("x-hub-signature-256", &non_hex)], GITHUB_PUSH),
        ("too short", vec![("x-hub-signature-256", &short)], GITHUB_PUSH),
        ("no sha256=", vec![("x-hub-signature-256", &no_prefix)], GITHUB_PUSH),
        (
            "sha1= in the 256 header",
            vec![("x-hub-signature-256", &sha1_prefix)],
            GITHUB_PUSH,
        ),
        ("empty", vec![("x-hub-signature-256", "")], GITHUB_PUSH),
        (
            "given twice",
            vec![("x-hub-signature-256", &good), ("X-Hub-Signature-256", &other_secret)],
            GITHUB_PUSH,
        ),
    ];
    for (what, mut headers, body) in cases {
        headers.extend([("x-github-event", "push"), ("content-type", "application/json")]);
        let m = unauthorized(github(&headers, body));
        for (_, value) in &headers {
            if value.len() > 20 {
                assert!(!m.contains(value), "{what}: the answer echoes {value}: {m}");
            }
        }
        if what == "SHA-1 only" {
            assert!(m.contains("HMAC-SHA1"), "{m}");
        }
    }
    // The signature is good on the untampered body: the refusals above are the signature's.
    let headers = [("x-hub-signature-256", good.as_str()), ("x-github-event", "push")];
    assert!(github(&headers, GITHUB_PUSH).is_ok());
}

#[test]
fn nothing_is_read_before_authentication() {
    // A body and headers that would be refused as malformed are refused as unauthenticated first.
    let garbage = b"{\"ref\": 5, not json";
    let wrong = sign(b"something else");
    for headers in [
        vec![("x-hub-signature-256", wrong.as_str())],
        vec![("x-github-event", "push"), ("x-github-delivery", "bad id\n")],
        vec![("x-hub-signature-256", wrong.as_str()), ("content-type", "text/plain")],
    ] {
        unauthorized(github(&headers, garbage));
    }
    unauthorized(gitlab(
        &[("X-Gitlab-Token", "wrong"), ("X-Gitlab-Event", "Push Hook")],
        garbage,
    ));
    unauthorized(generic(&[("Idempotency-Key", "bad id\n")], garbage));
}

#[test]
fn github_form_encoded_push_reads_like_json() {
    let form = github_signed("push", "application/x-www-form-urlencoded", GITHUB_PUSH_FORM).expect("accepted");
    let json = github_signed("push", "application/json", GITHUB_PUSH).expect("accepted");
    assert_eq!(form, json);
    // The media type's parameters and case do not matter.
    let with_charset = github_signed(
        "push",
        "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        GITHUB_PUSH_FORM,
    );
    assert_eq!(with_charset.expect("accepted"), json);
}

#[test]
fn github_form_and_content_type_problems_are_bad_requests() {
    let m = bad_request(github_signed("push", "application/x-www-form-urlencoded", b"other=1"));
    assert!(m.contains("no `payload`"), "{m}");
    let m = bad_request(github_signed(
        "push",
        "application/x-www-form-urlencoded",
        b"payload=%7B%7D&payload=%7B%7D",
    ));
    assert!(m.contains("more than one `payload`"), "{m}");
    let m = bad_request(github_signed("push", "text/plain", GITHUB_PUSH));
    assert!(m.contains("text/plain"), "{m}");
    // A form's payload is checked like a body.
    let m = bad_request(github_signed(
        "push",
        "application/x-www-form-urlencoded",
        b"payload=%5B1%5D",
    ));
    assert!(m.contains("JSON object"), "{m}");
}

#[test]
fn github_ping_is_answered() {
    let d = github_signed("ping", "application/json", GITHUB_PING).expect("accepted");
    assert_eq!(d.event, Event::Ping);
    assert_eq!(d.id.as_deref(), Some(DELIVERY));
}

#[test]
fn github_branch_deletion_is_ignored() {
    let why = ignored(github_signed("push", "application/json", GITHUB_PUSH_DELETE));
    assert!(why.contains("refs/heads/feature/old-kernel was deleted"), "{why}");
    // `deleted` alone, or the zero id alone, says so.
    for body in [
        r#"{"ref":"refs/heads/x","after":"d31aa58c4ce1e90636f7a42d4601ba2864ce290f","deleted":true}"#,
        r#"{"ref":"refs/tags/x","after":"0000000000000000000000000000000000000000"}"#,
        r#"{"ref":"refs/tags/x","after":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
    ] {
        ignored(github_signed("push", "application/json", body.as_bytes()));
    }
}

#[test]
fn github_annotated_tag_push_runs_the_tagged_commit() {
    let d = github_signed("push", "application/json", GITHUB_PUSH_TAG).expect("accepted");
    // `after` is the tag object (c6298bc6…); `head_commit` the commit it tags.
    assert_eq!(
        d.event,
        push("refs/tags/v1.2", "d31aa58c4ce1e90636f7a42d4601ba2864ce290f")
    );
    // Without `head_commit` (a lightweight tag from an older payload), `after` is the commit.
    let body = br#"{"ref":"refs/tags/v1.3","after":"C6298BC6FC696374B6CFC3360CBE5219178C120D","head_commit":null}"#;
    let d = github_signed("push", "application/json", body).expect("accepted");
    assert_eq!(
        d.event,
        push("refs/tags/v1.3", "c6298bc6fc696374b6cfc3360cbe5219178c120d")
    );
}

#[test]
fn github_other_events_are_ignored() {
    let why = ignored(github_signed("issues", "application/json", b"{}"));
    assert!(why.contains("`issues`"), "{why}");
    // A hostile event name is shown escaped.
    let why = ignored(github_signed("a\u{1b}[31m\u{202e}b", "application/json", b"{}"));
    assert!(!why.contains('\u{1b}') && !why.contains('\u{202e}'), "{why}");
    let m = bad_request(github(&[("x-hub-signature-256", &sign(b"{}"))], b"{}"));
    assert!(m.contains("X-GitHub-Event"), "{m}");
}

#[test]
fn github_malformed_pushes_name_the_field() {
    let commit = "d31aa58c4ce1e90636f7a42d4601ba2864ce290f";
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{"after":"{commit}"}}"#), "`ref`"),
        (
            format!(r#"{{"ref":5,"after":"{commit}"}}"#),
            "`ref` must be a string, not a number",
        ),
        (format!(r#"{{"ref":"main","after":"{commit}"}}"#), "neither refs/heads/"),
        (format!(r#"{{"ref":"refs/heads/a..b","after":"{commit}"}}"#), "`..`"),
        (format!(r#"{{"ref":"refs/heads/x\n","after":"{commit}"}}"#), "`\\n`"),
        (r#"{"ref":"refs/heads/x"}"#.to_string(), "`after`"),
        (r#"{"ref":"refs/heads/x","after":"d31aa58c"}"#.to_string(), "`after`"),
        (
            r#"{"ref":"refs/heads/x","after":[]}"#.to_string(),
            "`after` must be a string",
        ),
        (
            format!(r#"{{"ref":"refs/heads/x","after":"{commit}","deleted":"no"}}"#),
            "`deleted`",
        ),
        (
            format!(r#"{{"ref":"refs/heads/x","after":"{commit}","head_commit":"x"}}"#),
            "`head_commit`",
        ),
        (
            format!(r#"{{"ref":"refs/heads/x","after":"{commit}","head_commit":{{}}}}"#),
            "`id`",
        ),
        (
            format!(r#"{{"ref":"refs/heads/x","after":"{commit}","head_commit":{{"id":"g"}}}}"#),
            "`head_commit.id`",
        ),
        (
            format!(r#"{{"ref":"refs/heads/x","ref":"refs/heads/y","after":"{commit}"}}"#),
            "duplicate field `ref`",
        ),
        (
            format!(r#"{{"ref":"refs/heads/x","after":"{commit}"}} trailing"#),
            "valid JSON",
        ),
        ("not json".to_string(), "valid JSON (line 1, column 2)"),
        ("".to_string(), "valid JSON"),
        ("[1,2]".to_string(), "a JSON object"),
        ("\"just a string\"".to_string(), "a JSON object"),
    ];
    for (body, needle) in cases {
        let m = bad_request(github_signed("push", "application/json", body.as_bytes()));
        assert!(m.contains(needle), "{body}: {m} (wanted {needle})");
    }
}

#[test]
fn secret_material_of_the_wrong_kind_is_the_hubs_error() {
    let hash = token_hash();
    let headers = [
        ("x-hub-signature-256", "sha256=00"),
        ("X-Gitlab-Token", TOKEN),
        ("Authorization", "Bearer x"),
    ];
    let h = Headers::new(&headers);
    for (service, secret) in [
        (Service::GitHub, Secret::TokenSha256(&hash)),
        (Service::GitHub, Secret::Key(b"")),
        (Service::GitLab, Secret::Key(KEY)),
        (Service::Generic, Secret::Key(KEY)),
    ] {
        match receive(service, secret, h, b"{}") {
            Err(e @ HookError::Misconfigured(_)) => assert_eq!(e.status(), 500),
            other => panic!("{service} with {secret:?}: {other:?}"),
        }
    }
    assert!(github_signature(b"", b"body").is_err());
    assert!(Service::GitHub.keeps_key() && !Service::GitLab.keeps_key() && !Service::Generic.keeps_key());
}

#[test]
fn gitlab_push_with_the_right_token() {
    let d = gitlab_sent("Push Hook", GITLAB_PUSH).expect("accepted");
    assert_eq!(d.service, Service::GitLab);
    assert_eq!(
        d.event,
        push("refs/heads/release/2024.06", "2a36645253104ef2d42a4545fa43455ecd09f547")
    );
}

#[test]
fn gitlab_tag_push_runs_checkout_sha() {
    let d = gitlab_sent("Tag Push Hook", GITLAB_TAG_PUSH).expect("accepted");
    // `after` is the tag object (f79a7377…), `checkout_sha` the commit.
    assert_eq!(
        d.event,
        push("refs/tags/v2024.06.1", "2a36645253104ef2d42a4545fa43455ecd09f547")
    );
}

#[test]
fn gitlab_refuses_a_wrong_or_missing_token() {
    let wrong_case = TOKEN.to_uppercase();
    let padded = format!("{TOKEN} ");
    for headers in [
        vec![("X-Gitlab-Token", "not-the-token")],
        vec![("X-Gitlab-Token", wrong_case.as_str())],
        vec![("X-Gitlab-Token", padded.as_str())],
        vec![("X-Gitlab-Token", "")],
        vec![],
        vec![("X-Gitlab-Token", TOKEN), ("x-gitlab-token", TOKEN)],
        // The generic header is not GitLab's.
        vec![("Authorization", &bearer())],
    ] {
        let mut headers = headers;
        headers.push(("X-Gitlab-Event", "Push Hook"));
        let m = unauthorized(gitlab(&headers, GITLAB_PUSH));
        assert!(!m.contains(TOKEN) && !m.contains("not-the-token"), "{m}");
    }
}

#[test]
fn gitlab_deleted_branch_is_ignored() {
    let why = ignored(gitlab_sent("Push Hook", GITLAB_PUSH_DELETE));
    assert!(why.contains("refs/heads/feature/old-kernel was deleted"), "{why}");
}

#[test]
fn gitlab_event_header_and_object_kind() {
    let with = |event: Option<&str>, body: &[u8]| {
        let mut headers = vec![("X-Gitlab-Token", TOKEN)];
        headers.extend(event.map(|e| ("X-Gitlab-Event", e)));
        gitlab(&headers, body)
    };
    // Without the header, `object_kind` says what it is.
    let d = with(None, GITLAB_TAG_PUSH).expect("accepted");
    assert!(matches!(d.event, Event::Push { .. }), "{d:?}");
    let m = bad_request(with(Some("Push Hook"), GITLAB_TAG_PUSH));
    assert!(m.contains("`object_kind` is `tag_push`"), "{m}");
    let why = ignored(with(Some("Merge Request Hook"), b"{}"));
    assert!(why.contains("`Merge Request Hook`"), "{why}");
    let why = ignored(with(Some("System Hook"), GITLAB_PUSH));
    assert!(why.contains("system hooks"), "{why}");
    ignored(with(None, br#"{"object_kind":"note"}"#));
    let m = bad_request(with(None, br#"{"ref":"refs/heads/main"}"#));
    assert!(m.contains("object_kind"), "{m}");
    // A push names a branch, a tag push a tag.
    let body = br#"{"ref":"refs/tags/v1","after":"2a36645253104ef2d42a4545fa43455ecd09f547"}"#;
    let m = bad_request(with(Some("Push Hook"), body));
    assert!(m.contains("a Push Hook names a branch"), "{m}");
    let m = bad_request(with(
        Some("Push Hook"),
        br#"{"ref":"refs/heads/x","after":"2a36645253104ef2d42a4545fa43455ecd09f547","checkout_sha":7}"#,
    ));
    assert!(m.contains("`checkout_sha`"), "{m}");
}

#[test]
fn generic_body_shapes() {
    let commit = "448603520f8d81d53183718b5eaee16d07dcfd65";
    let full = format!(r#"{{"ref":"refs/tags/v3","commit":"{commit}","delivery":"run-17"}}"#);
    let cases: Vec<(&str, Event, Option<&str>)> = vec![
        ("", run(None, None), None),
        (" \n\t", run(None, None), None),
        ("{}", run(None, None), None),
        (r#"{"ref":null,"commit":null,"delivery":null}"#, run(None, None), None),
        (r#"{"ref":"refs/heads/main"}"#, run(Some("refs/heads/main"), None), None),
        (
            r#"{"commit":"448603520F8D81D53183718B5EAEE16D07DCFD65"}"#,
            run(None, Some(commit)),
            None,
        ),
        (&full, run(Some("refs/tags/v3"), Some(commit)), Some("run-17")),
    ];
    for (body, event, id) in cases {
        let d = generic(&[("Authorization", &bearer())], body.as_bytes()).expect(body);
        assert_eq!(
            (d.service, d.event, d.id.as_deref()),
            (Service::Generic, event, id),
            "{body}"
        );
    }
}

#[test]
fn generic_refuses_bad_bodies() {
    for (body, needle) in [
        (r#"{"ref":"refs/heads/main","comit":"x"}"#, "unknown field `comit`"),
        (r#"{"ref":7}"#, "`ref` must be a string"),
        (r#"{"ref":"main"}"#, "refs/heads/NAME"),
        (r#"{"commit":"HEAD"}"#, "`commit`"),
        (r#"{"commit":"0000000000000000000000000000000000000000"}"#, "all-zero"),
        (r#"{"delivery":"has space"}"#, "`delivery`"),
        (r#"{"delivery":5}"#, "`delivery` must be a string"),
        ("ref=refs/heads/main", "valid JSON"),
        ("[]", "`ref`, `commit` and `delivery`"),
    ] {
        let m = bad_request(generic(&[("Authorization", &bearer())], body.as_bytes()));
        assert!(m.contains(needle), "{body}: {m} (wanted {needle})");
    }
}

#[test]
fn generic_takes_only_the_right_bearer_token() {
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {TOKEN}");
        generic(&[("authorization", &value)], b"").expect(scheme);
    }
    let basic = format!("Basic {TOKEN}");
    let trailing = format!("Bearer {TOKEN} x");
    for headers in [
        vec![],
        vec![("Authorization", basic.as_str())],
        vec![("Authorization", TOKEN)],
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", trailing.as_str())],
        vec![("X-Gitlab-Token", TOKEN)],
        vec![("Authorization", &bearer()), ("Authorization", &bearer())],
    ] {
        let m = unauthorized(generic(&headers, b""));
        assert!(!m.contains(TOKEN), "{m}");
    }
}

#[test]
fn delivery_ids() {
    let key = "0268d226-fef6-48f7-86aa-4f96d6ae0263";
    let event_uuid = "51f79797-307e-43a6-bab3-2358c54915a2";
    let gl = |extra: &[(&'static str, &'static str)]| {
        let mut headers = vec![("X-Gitlab-Token", TOKEN), ("X-Gitlab-Event", "Push Hook")];
        headers.extend_from_slice(extra);
        gitlab(&headers, GITLAB_PUSH).map(|d| d.id)
    };
    // GitLab: Idempotency-Key (the same on every retry), else X-Gitlab-Event-UUID.
    let both = [("Idempotency-Key", key), ("X-Gitlab-Event-UUID", event_uuid)];
    assert_eq!(gl(&both).expect("accepted").as_deref(), Some(key));
    let only_uuid = [("X-Gitlab-Event-UUID", event_uuid), ("Idempotency-Key", "")];
    assert_eq!(gl(&only_uuid).expect("accepted").as_deref(), Some(event_uuid));
    let webhook_uuid_only = [("X-Gitlab-Webhook-UUID", event_uuid)];
    assert_eq!(gl(&webhook_uuid_only).expect("accepted"), None);

    // GitHub: X-GitHub-Delivery, or none.
    let sig = sign(GITHUB_PING);
    let gh = |id: Option<&str>| {
        let mut headers = vec![("X-Hub-Signature-256", sig.as_str()), ("X-GitHub-Event", "ping")];
        headers.extend(id.map(|id| ("X-GitHub-Delivery", id)));
        github(&headers, GITHUB_PING).map(|d| d.id)
    };
    assert_eq!(gh(None).expect("accepted"), None);
    assert_eq!(gh(Some("")).expect("accepted"), None);
    let longest = "d".repeat(MAX_DELIVERY_ID);
    assert_eq!(gh(Some(&longest)).expect("accepted"), Some(longest.clone()));
    let too_long = "d".repeat(MAX_DELIVERY_ID + 1);
    for bad in [too_long.as_str(), "a b", "tab\there", "é", "x\u{7f}"] {
        let m = bad_request(gh(Some(bad)).map(|_| Delivery {
            service: Service::GitHub,
            id: None,
            event: Event::Ping,
        }));
        assert!(m.contains("X-GitHub-Delivery"), "{bad:?}: {m}");
    }

    // Generic: the body's `delivery` or an Idempotency-Key header, which must agree.
    let auth = bearer();
    let gen_id = |header: Option<&str>, body: &str| {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(header.map(|h| ("Idempotency-Key", h)));
        generic(&headers, body.as_bytes())
    };
    assert_eq!(gen_id(Some("k1"), "").expect("ok").id.as_deref(), Some("k1"));
    assert_eq!(
        gen_id(None, r#"{"delivery":"k2"}"#).expect("ok").id.as_deref(),
        Some("k2")
    );
    assert_eq!(
        gen_id(Some("k3"), r#"{"delivery":"k3"}"#).expect("ok").id.as_deref(),
        Some("k3")
    );
    assert_eq!(gen_id(None, r#"{"delivery":""}"#).expect("ok").id, None);
    let m = bad_request(gen_id(Some("k4"), r#"{"delivery":"k5"}"#));
    assert!(m.contains("differ"), "{m}");
}

#[test]
fn new_secrets_work_for_every_service() {
    let (a, hash) = new_secret();
    let (b, _) = new_secret();
    assert_ne!(a, b);
    assert_eq!(a.len(), 43, "{a}");
    assert!(
        a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{a}"
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).expect("base64").len(), 32);
    assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(a.as_bytes())));

    let body = br#"{"ref":"refs/heads/main","after":"2a36645253104ef2d42a4545fa43455ecd09f547"}"#;
    let sig = github_signature(a.as_bytes(), body).expect("signs");
    let headers = [("X-Hub-Signature-256", sig.as_str()), ("X-GitHub-Event", "push")];
    receive(Service::GitHub, Secret::Key(a.as_bytes()), Headers::new(&headers), body).expect("GitHub");
    let headers = [("X-Gitlab-Token", a.as_str()), ("X-Gitlab-Event", "Push Hook")];
    receive(
        Service::GitLab,
        Secret::TokenSha256(&hash),
        Headers::new(&headers),
        body,
    )
    .expect("GitLab");
    let auth = format!("Bearer {a}");
    let headers = [("Authorization", auth.as_str())];
    receive(
        Service::Generic,
        Secret::TokenSha256(&hash),
        Headers::new(&headers),
        b"",
    )
    .expect("generic");
    // Another pipeline's secret is refused.
    let headers = [("X-Gitlab-Token", b.as_str()), ("X-Gitlab-Event", "Push Hook")];
    unauthorized(receive(
        Service::GitLab,
        Secret::TokenSha256(&hash),
        Headers::new(&headers),
        body,
    ));
}

#[test]
fn services_errors_and_debug_output() {
    for s in [Service::GitHub, Service::GitLab, Service::Generic] {
        assert_eq!(Service::from_path_segment(s.path_segment()), Some(s));
    }
    assert_eq!(Service::from_path_segment("GitHub"), None);
    assert_eq!(Service::from_path_segment("bitbucket"), None);
    let statuses: Vec<u16> = [
        HookError::Unauthorized("u".into()),
        HookError::BadRequest("b".into()),
        HookError::Misconfigured("m".into()),
    ]
    .into_iter()
    .map(|e| {
        let status = e.status();
        assert_eq!(HubError::from(e).status, status);
        status
    })
    .collect();
    assert_eq!(statuses, [401, 400, 500]);
    // Debug output shows no credential.
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    let shown = format!("{:?} {:?}", Headers::new(&headers), Secret::Key(KEY));
    assert!(!shown.contains(TOKEN) && !shown.contains("7f3a9c"), "{shown}");
}

/// Any JSON value, nested a little.
fn any_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as V;
    let leaf = prop_oneof![
        Just(V::Null),
        any::<bool>().prop_map(V::Bool),
        any::<i64>().prop_map(V::from),
        any::<String>().prop_map(V::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(V::Array),
            prop::collection::btree_map("id|x", inner, 0..2).prop_map(|m| V::Object(m.into_iter().collect())),
        ]
    })
}

/// Ref names: good ones, and ones with what git refuses.
fn ref_text() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just("refs/heads/main".to_string()),
        Just("refs/tags/v1.2".to_string()),
        "refs/(heads|tags)/[a-z0-9./@{}~^:*?\\[\\\\ \t\n-]{0,12}",
        "(refs/)?[a-z/]{0,12}",
        "refs/heads/\\PC{0,8}",
    ]
    .prop_map(serde_json::Value::String)
}

/// Commit ids: good ones, the zero id, and near misses.
fn commit_text() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just("2a36645253104ef2d42a4545fa43455ecd09f547".to_string()),
        Just("0000000000000000000000000000000000000000".to_string()),
        "[0-9a-fA-F]{40}|[0-9a-f]{64}",
        "[0-9a-gA-G ]{38,66}",
        "\\PC{0,8}",
    ]
    .prop_map(serde_json::Value::String)
}

/// A field: mostly a plausible value of its kind, sometimes anything.
fn field(name: &'static str) -> BoxedStrategy<(&'static str, serde_json::Value)> {
    use serde_json::Value as V;
    let plausible = match name {
        "ref" => ref_text().boxed(),
        "after" | "checkout_sha" | "commit" => commit_text().boxed(),
        "deleted" => any::<bool>().prop_map(V::Bool).boxed(),
        "head_commit" => prop_oneof![
            commit_text().prop_map(|id| serde_json::json!({ "id": id })),
            Just(V::Null),
        ]
        .boxed(),
        "object_kind" => prop_oneof![Just("push"), Just("tag_push"), Just("note")]
            .prop_map(|k| V::String(k.into()))
            .boxed(),
        _ => "[ -~]{0,24}".prop_map(V::String).boxed(),
    };
    prop_oneof![5 => plausible, 1 => any_value()]
        .prop_map(move |v| (name, v))
        .boxed()
}

/// An object of some of `names`' fields.
fn object(names: &[&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let fields: Vec<_> = names.iter().map(|n| prop::option::weighted(0.85, field(n))).collect();
    fields.prop_map(|fields| {
        let map: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().flatten().map(|(k, v)| (k.to_string(), v)).collect();
        serde_json::to_vec(&map).unwrap_or_default()
    })
}

/// Bodies: forge pushes, generic bodies, and bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => object(&["ref", "after", "deleted", "head_commit", "object_kind", "checkout_sha"]),
        2 => object(&["ref", "commit", "delivery"]),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// What an accepted delivery may hold, whatever was sent.
fn well_formed(d: &Delivery) -> bool {
    let commit_ok = |c: &str| check_commit(c).as_deref() == Ok(c);
    let id_ok =
        d.id.as_ref()
            .is_none_or(|id| !id.is_empty() && id.len() <= MAX_DELIVERY_ID && id.bytes().all(|b| b.is_ascii_graphic()));
    id_ok
        && match &d.event {
            Event::Push { git_ref, commit } => check_ref(git_ref).is_ok() && commit_ok(commit),
            Event::Run { git_ref, commit } => {
                git_ref.as_deref().is_none_or(|r| check_ref(r).is_ok()) && commit.as_deref().is_none_or(commit_ok)
            }
            Event::Ping | Event::Ignored(_) => true,
        }
}

proptest! {
    #[test]
    fn authenticated_garbage_never_panics(
        body in payload(),
        event in prop_oneof![Just("push".to_string()), Just("Push Hook".to_string()),
            Just("Tag Push Hook".to_string()), any::<String>()],
        content_type in prop_oneof![Just("application/json".to_string()),
            Just("application/x-www-form-urlencoded".to_string()), any::<String>()],
        id in any::<String>(),
    ) {
        let form: Vec<u8> = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &String::from_utf8_lossy(&body))
            .finish()
            .into_bytes();
        for body in [body.as_slice(), form.as_slice()] {
            let sig = sign(body);
            let auth = bearer();
            let results = [
                github(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", &event),
                    ("Content-Type", &content_type), ("X-GitHub-Delivery", &id)], body),
                gitlab(&[("X-Gitlab-Token", TOKEN), ("X-Gitlab-Event", &event),
                    ("Idempotency-Key", &id)], body),
                gitlab(&[("X-Gitlab-Token", TOKEN)], body),
                generic(&[("Authorization", &auth), ("Idempotency-Key", &id)], body),
            ];
            for r in results {
                match r {
                    Ok(d) => prop_assert!(well_formed(&d), "{d:?}"),
                    Err(HookError::BadRequest(m)) => prop_assert!(!m.contains('\n'), "{m:?}"),
                    Err(e) => prop_assert!(false, "authenticated, yet {e:?}"),
                }
            }
        }
    }

    #[test]
    fn unauthenticated_garbage_is_unauthorized(
        body in prop::collection::vec(any::<u8>(), 0..64),
        sig in any::<String>(),
        token in any::<String>(),
    ) {
        let auth = format!("Bearer {token}");
        prop_assert!(matches!(github(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")], &body),
            Err(HookError::Unauthorized(_))));
        prop_assert!(matches!(gitlab(&[("X-Gitlab-Token", &token)], &body), Err(HookError::Unauthorized(_))));
        prop_assert!(matches!(generic(&[("Authorization", &auth)], &body), Err(HookError::Unauthorized(_))));
    }
}
