//! CI webhooks: who may push to a pipeline, and what a push asks for.
//!
//! The hub takes pushes at `POST /api/v1/pipelines/NAME/hooks/SERVICE`, with
//! SERVICE one of `github`, `gitlab` and `generic`. This module is the part of
//! that route that needs no database and no HTTP: [`receive`] authenticates
//! one delivery against the pipeline's stored secret and then reads it into
//! a [`Delivery`]; [`RefFilter`] says which pushed refs start a run;
//! [`new_secret`] makes the secret a pipeline's hook is set up with.
//!
//! Authentication comes first, and nothing of the body or of any other header
//! is read before it passes:
//!
//! - GitHub signs the raw body: `X-Hub-Signature-256: sha256=<hex>` is
//!   HMAC-SHA256 under the webhook's secret, checked in constant time. The
//!   older SHA-1 `X-Hub-Signature` is not accepted.
//! - GitLab sends the secret itself in `X-Gitlab-Token`; a generic sender
//!   sends it as `Authorization: Bearer <secret>`. The hub keeps only the
//!   sha256 of these secrets, and the sha256 of what was sent is compared
//!   with it in constant time.
//!
//! Neither signature covers a time, so a captured delivery replays cleanly:
//! the [`Delivery::id`] is what the hub de-duplicates on. Limiting the size
//! of the body is the route's work, before the body is read.
//!
//! Everything taken from a body is checked as hostile: a ref must be a valid
//! branch or tag name ([`check_ref`]), a commit 40 or 64 hex digits
//! ([`check_commit`]), a delivery id at most 200 printable ASCII characters.
//! A refusal after authentication is a [`HookError::BadRequest`] naming the
//! field; no input makes this module panic.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::HubError;
mod refs;

use refs::{cut, shown};

pub use refs::{MAX_PATTERN, MAX_PATTERNS, MAX_REF_BYTES, RefFilter, check_commit, check_ref};

/// The longest delivery id, in characters.
pub const MAX_DELIVERY_ID: usize = 200;

/// Which service sent a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    GitHub,
    GitLab,
    Generic,
}

impl Service {
    /// The service a route's last path segment names: `github`, `gitlab` or
    /// `generic`.
    pub fn from_path_segment(segment: &str) -> Option<Service> {
        match segment {
            "github" => Some(Service::GitHub),
            "gitlab" => Some(Service::GitLab),
            "generic" => Some(Service::Generic),
            _ => None,
        }
    }

    /// The route's path segment for the service.
    pub fn path_segment(self) -> &'static str {
        match self {
            Service::GitHub => "github",
            Service::GitLab => "gitlab",
            Service::Generic => "generic",
        }
    }

    /// Whether the hub keeps the secret itself ([`Secret::Key`], GitHub: the
    /// HMAC needs it) rather than its sha256 ([`Secret::TokenSha256`]).
    pub fn keeps_key(self) -> bool {
        self == Service::GitHub
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::GitHub => "GitHub",
            Service::GitLab => "GitLab",
            Service::Generic => "generic",
        })
    }
}

/// What an authenticated delivery asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub service: Service,
    /// The delivery id to de-duplicate on, the same for every resend of one
    /// event: GitHub's `X-GitHub-Delivery`; GitLab's `Idempotency-Key`, or,
    /// from GitLab releases that do not send one, `X-Gitlab-Event-UUID`
    /// (only the fallback: GitLab makes it anew for each attempt, and gives
    /// the same one to every hook set off by a request that carried it);
    /// for a generic delivery, `delivery` in the body or an
    /// `Idempotency-Key` header. None when the sender gave none (an empty
    /// value counts as none). At most [`MAX_DELIVERY_ID`] printable ASCII
    /// characters, without spaces.
    pub id: Option<String>,
    pub event: Event,
}

/// What a delivery asks the hub to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// GitHub or GitLab pushed `git_ref` (a full name, `refs/heads/main` or
    /// `refs/tags/v1.2`, checked by [`check_ref`]) and it now points at
    /// `commit` (40 or 64 lower-case hex digits). For an annotated tag this
    /// is the tagged commit, not the tag object.
    Push { git_ref: String, commit: String },
    /// A generic delivery: run the pipeline, at `git_ref` if given (a full
    /// name, like [`Event::Push`]'s) or else the pipeline's configured ref,
    /// and at `commit` if given or else wherever that ref points when the
    /// run starts. A generic delivery always reads as `Run`, even when it
    /// names both; a ref it names still has to pass the [`RefFilter`].
    Run {
        git_ref: Option<String>,
        commit: Option<String>,
    },
    /// GitHub's `ping`, sent when a webhook is created: answered, starts
    /// nothing.
    Ping,
    /// Authenticated, but not a run (a deleted branch or tag, another kind
    /// of event); the reason, for the answer.
    Ignored(String),
}

/// A delivery's headers, as the route received them: every (name, value)
/// pair, a repeated header once per value. Names match in any case. A
/// header that appears more than once is refused rather than guessed at.
///
/// From axum's `HeaderMap`, values that are not visible ASCII left out:
///
/// ```ignore
/// let pairs: Vec<(&str, &str)> =
///     map.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
/// let headers = Headers::new(&pairs);
/// ```
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    pairs: &'a [(&'a str, &'a str)],
}

/// A header that appears more than once.
struct Repeated;

impl<'a> Headers<'a> {
    pub fn new(pairs: &'a [(&'a str, &'a str)]) -> Headers<'a> {
        Headers { pairs }
    }

    /// The value of header `name`: None when it is absent.
    fn one(&self, name: &str) -> Result<Option<&'a str>, Repeated> {
        let mut found = None;
        for (k, v) in self.pairs {
            if k.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(Repeated);
                }
                found = Some(*v);
            }
        }
        Ok(found)
    }

    /// A header that authenticates: repeated, it is refused as 401.
    fn credential(&self, name: &str) -> Result<Option<&'a str>, HookError> {
        self.one(name)
            .map_err(|Repeated| HookError::Unauthorized(format!("the {name} header appears more than once")))
    }

    /// Any other header: repeated, it is refused as 400.
    fn get(&self, name: &str) -> Result<Option<&'a str>, HookError> {
        self.one(name)
            .map_err(|Repeated| HookError::BadRequest(format!("the {name} header appears more than once")))
    }
}

/// Names only: values may be credentials.
impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(k, _)| k)).finish()
    }
}

/// The stored secret material for one service of one pipeline, as the hub
/// keeps it.
#[derive(Clone, Copy)]
pub enum Secret<'a> {
    /// GitHub's: the secret itself, which the HMAC needs (for a secret from
    /// [`new_secret`], the bytes of its text).
    Key(&'a [u8]),
    /// GitLab's token and the generic bearer token: the sha256 of the
    /// token's text ([`token_sha256`]).
    TokenSha256(&'a [u8; 32]),
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Key(_) => "Secret::Key(..)",
            Secret::TokenSha256(_) => "Secret::TokenSha256(..)",
        })
    }
}

/// Why a delivery is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// 401: a missing or wrong signature or token. The message never echoes
    /// what was sent.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: authenticated, but the body or a header is malformed (which
    /// field, and why).
    #[error("{0}")]
    BadRequest(String),
    /// 500: the hub passed secret material that cannot check this service's
    /// deliveries (a hash where GitHub needs the key, an empty key).
    #[error("{0}")]
    Misconfigured(String),
}

impl HookError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            HookError::Unauthorized(_) => 401,
            HookError::BadRequest(_) => 400,
            HookError::Misconfigured(_) => 500,
        }
    }
}

impl From<HookError> for HubError {
    fn from(e: HookError) -> HubError {
        match e {
            HookError::Unauthorized(m) => HubError::unauthorized(m),
            HookError::BadRequest(m) => HubError::bad_request(m),
            HookError::Misconfigured(m) => HubError::internal(m),
        }
    }
}

/// Authenticates, then reads, one delivery of `service` with the raw `body`
/// (see the module's documentation for each service's rules).
pub fn receive(service: Service, secret: Secret<'_>, headers: Headers<'_>, body: &[u8]) -> Result<Delivery, HookError> {
    let (id, event) = match service {
        Service::GitHub => {
            verify_github(secret, &headers, body)?;
            let id = delivery_id("X-GitHub-Delivery", headers.get("X-GitHub-Delivery")?)?;
            (id, read_github(&headers, body)?)
        }
        Service::GitLab => {
            let token = gitlab_token(&headers)?;
            verify_token(service, secret, token, "X-Gitlab-Token")?;
            let id = match headers.get("Idempotency-Key")?.filter(|v| !v.is_empty()) {
                Some(key) => delivery_id("Idempotency-Key", Some(key))?,
                None => delivery_id("X-Gitlab-Event-UUID", headers.get("X-Gitlab-Event-UUID")?)?,
            };
            (id, read_gitlab(&headers, body)?)
        }
        Service::Generic => {
            let token = bearer_token(&headers)?;
            verify_token(service, secret, token, "the bearer token")?;
            read_generic(&headers, body)?
        }
    };
    Ok(Delivery { service, id, event })
}

/// Generates a new hook secret: 32 random bytes, URL-safe base64 without
/// padding (43 characters), and the sha256 of that text, which is what the
/// hub keeps for GitLab and generic hooks ([`token_sha256`]). For GitHub the
/// hub keeps the text itself: its bytes are the HMAC key.
pub fn new_secret() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_sha256(&secret);
    (secret, hash)
}

/// The sha256 of a token's text: what the hub keeps of a GitLab or generic
/// hook secret, and what [`Secret::TokenSha256`] holds.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` under `key`
/// (`sha256=` and 64 hex digits): for tests, and for replaying a captured
/// delivery.
pub fn github_signature(key: &[u8], body: &[u8]) -> Result<String, HookError> {
    let mut mac = github_mac(key)?;
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

fn github_mac(key: &[u8]) -> Result<Hmac<Sha256>, HookError> {
    if key.is_empty() {
        return Err(HookError::Misconfigured(
            "the pipeline's GitHub hook secret is empty: anyone could sign with it; set a new secret".into(),
        ));
    }
    Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| HookError::Misconfigured(format!("the pipeline's GitHub hook secret is unusable: {e}")))
}

/// Checks `X-Hub-Signature-256` against the raw body.
fn verify_github(secret: Secret<'_>, headers: &Headers<'_>, body: &[u8]) -> Result<(), HookError> {
    let Secret::Key(key) = secret else {
        return Err(HookError::Misconfigured(
            "a GitHub hook needs its secret itself (the HMAC key), and the hub passed its hash".into(),
        ));
    };
    let mut mac = github_mac(key)?;
    let Some(signature) = headers.credential("X-Hub-Signature-256")? else {
        let why = if matches!(headers.one("X-Hub-Signature"), Ok(Some(_)) | Err(_)) {
            "the delivery is signed only with X-Hub-Signature (HMAC-SHA1), which is not accepted; GitHub adds \
             X-Hub-Signature-256 when the webhook has a secret"
        } else {
            "the delivery has no X-Hub-Signature-256 header: set the GitHub webhook's secret to this pipeline's \
             GitHub hook secret"
        };
        return Err(HookError::Unauthorized(why.into()));
    };
    let malformed = || HookError::Unauthorized("X-Hub-Signature-256 is not `sha256=` and 64 hex digits".into());
    let digits = signature.trim().strip_prefix("sha256=").ok_or_else(malformed)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(digits, &mut tag).map_err(|_| malformed())?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| {
        HookError::Unauthorized(
            "X-Hub-Signature-256 does not match the body: the GitHub webhook's secret is not this pipeline's \
             GitHub hook secret, or the body was changed on the way"
                .into(),
        )
    })
}

/// Compares a sent token with the stored hash, in constant time.
fn verify_token(service: Service, secret: Secret<'_>, token: &str, what: &str) -> Result<(), HookError> {
    let Secret::TokenSha256(stored) = secret else {
        return Err(HookError::Misconfigured(format!(
            "a {service} hook is checked against its secret's sha256, and the hub passed the secret itself"
        )));
    };
    if bool::from(token_sha256(token).ct_eq(stored)) {
        Ok(())
    } else {
        Err(HookError::Unauthorized(format!(
            "{what} is not this pipeline's {service} hook secret"
        )))
    }
}

/// The token of `X-Gitlab-Token`.
fn gitlab_token<'a>(headers: &Headers<'a>) -> Result<&'a str, HookError> {
    match headers.credential("X-Gitlab-Token")? {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(HookError::Unauthorized(
            "the delivery has no X-Gitlab-Token header: set the GitLab webhook's secret token to this pipeline's \
             GitLab hook secret"
                .into(),
        )),
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer_token<'a>(headers: &Headers<'a>) -> Result<&'a str, HookError> {
    let Some(value) = headers.credential("Authorization")? else {
        return Err(HookError::Unauthorized(
            "the delivery has no Authorization header: send this pipeline's generic hook secret as \
             `Authorization: Bearer <secret>`"
                .into(),
        ));
    };
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(HookError::Unauthorized(
            "the Authorization header is not a Bearer token: send `Authorization: Bearer <secret>`".into(),
        ));
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(HookError::Unauthorized(
            "the Authorization header has an empty Bearer token: send `Authorization: Bearer <secret>`".into(),
        ));
    }
    Ok(token)
}

/// Checks a delivery id from `field`: an empty one counts as none.
fn delivery_id(field: &str, value: Option<&str>) -> Result<Option<String>, HookError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let n = value.chars().count();
    if n > MAX_DELIVERY_ID {
        return Err(HookError::BadRequest(format!(
            "{field} is {n} characters long, more than {MAX_DELIVERY_ID}"
        )));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(HookError::BadRequest(format!(
            "{field} has `{}`: a delivery id is printable ASCII without spaces",
            c.escape_debug()
        )));
    }
    Ok(Some(value.to_string()))
}

/// Reads an authenticated GitHub delivery.
fn read_github(headers: &Headers<'_>, body: &[u8]) -> Result<Event, HookError> {
    let event = headers
        .get("X-GitHub-Event")?
        .ok_or_else(|| HookError::BadRequest("the delivery has no X-GitHub-Event header saying what it is".into()))?;
    match event {
        "ping" => return Ok(Event::Ping),
        "push" => {}
        other => {
            return Ok(Event::Ignored(format!(
                "GitHub `{}` events start no run: only push does; set the webhook to send push events only",
                shown(other)
            )));
        }
    }
    let json = github_json(headers, body)?;
    let push: GitHubPush = parse_json(&json)?;
    let git_ref = ref_field(&push.git_ref)?;
    let after = required_str(&push.after, "after")?;
    let deleted = bool_field(&push.deleted, "deleted")?.unwrap_or(false);
    if deleted || is_zero_id(after) {
        return Ok(deletion(git_ref));
    }
    let after = commit_field(after, "after")?;
    // `after` is the tag object for an annotated tag; `head_commit` is
    // the commit the ref points at.
    let commit = match &push.head_commit {
        None => after,
        Some(Value::Object(head)) => match head.get("id") {
            Some(Value::String(id)) => commit_field(id, "head_commit.id")?,
            Some(other) => return Err(not_a("head_commit.id", "string", other)),
            None => return Err(HookError::BadRequest("`head_commit` has no `id`".into())),
        },
        Some(other) => return Err(not_a("head_commit", "object", other)),
    };
    Ok(Event::Push {
        git_ref: git_ref.to_string(),
        commit,
    })
}

/// The fields of GitHub's push event that say what to run; the others are
/// skipped unread.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct GitHubPush {
    #[serde(rename = "ref")]
    git_ref: Option<Value>,
    after: Option<Value>,
    deleted: Option<Value>,
    head_commit: Option<Value>,
}

/// The JSON of a GitHub delivery: the body, or, for a webhook set to send
/// `application/x-www-form-urlencoded`, its `payload` field.
fn github_json<'b>(headers: &Headers<'_>, body: &'b [u8]) -> Result<Cow<'b, [u8]>, HookError> {
    let media = headers
        .get("Content-Type")?
        .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        None | Some("application/json") => Ok(Cow::Borrowed(body)),
        Some("application/x-www-form-urlencoded") => {
            let mut payload = None;
            for (name, value) in url::form_urlencoded::parse(body) {
                if name == "payload" {
                    if payload.is_some() {
                        return Err(HookError::BadRequest(
                            "the form has more than one `payload` field".into(),
                        ));
                    }
                    payload = Some(value.into_owned().into_bytes());
                }
            }
            payload
                .map(Cow::Owned)
                .ok_or_else(|| HookError::BadRequest("the form has no `payload` field".into()))
        }
        Some(other) => Err(HookError::BadRequest(format!(
            "Content-Type `{}` is neither application/json nor application/x-www-form-urlencoded",
            shown(other)
        ))),
    }
}

/// GitLab's two events that start runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GitLabKind {
    Push,
    TagPush,
}

impl GitLabKind {
    fn from_object_kind(kind: &str) -> Option<GitLabKind> {
        match kind {
            "push" => Some(GitLabKind::Push),
            "tag_push" => Some(GitLabKind::TagPush),
            _ => None,
        }
    }

    fn header(self) -> &'static str {
        match self {
            GitLabKind::Push => "Push Hook",
            GitLabKind::TagPush => "Tag Push Hook",
        }
    }
}

/// The fields of GitLab's push and tag events that say what to run.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct GitLabPush {
    object_kind: Option<Value>,
    #[serde(rename = "ref")]
    git_ref: Option<Value>,
    after: Option<Value>,
    checkout_sha: Option<Value>,
}

/// Reads an authenticated GitLab delivery.
fn read_gitlab(headers: &Headers<'_>, body: &[u8]) -> Result<Event, HookError> {
    let said = match headers.get("X-Gitlab-Event")? {
        Some("Push Hook") => Some(GitLabKind::Push),
        Some("Tag Push Hook") => Some(GitLabKind::TagPush),
        Some("System Hook") => {
            return Ok(Event::Ignored(
                "GitLab system hooks start no run: add the webhook to the project or its group instead".into(),
            ));
        }
        Some(other) => return Ok(ignored_gitlab(other)),
        None => None,
    };
    let push: GitLabPush = parse_json(body)?;
    let kind = match (said, opt_str(&push.object_kind, "object_kind")?) {
        (Some(said), Some(object_kind)) if GitLabKind::from_object_kind(object_kind) != Some(said) => {
            return Err(HookError::BadRequest(format!(
                "X-Gitlab-Event says {} but `object_kind` is `{}`",
                said.header(),
                shown(object_kind)
            )));
        }
        (Some(said), _) => said,
        (None, Some(object_kind)) => match GitLabKind::from_object_kind(object_kind) {
            Some(kind) => kind,
            None => return Ok(ignored_gitlab(object_kind)),
        },
        (None, None) => {
            return Err(HookError::BadRequest(
                "neither an X-Gitlab-Event header nor an `object_kind` says what the delivery is".into(),
            ));
        }
    };
    let git_ref = ref_field(&push.git_ref)?;
    let (prefix, what) = match kind {
        GitLabKind::Push => ("refs/heads/", "a branch"),
        GitLabKind::TagPush => ("refs/tags/", "a tag"),
    };
    if !git_ref.starts_with(prefix) {
        return Err(HookError::BadRequest(format!(
            "a {} names {what}, and `ref` is {git_ref}",
            kind.header()
        )));
    }
    let after = required_str(&push.after, "after")?;
    if is_zero_id(after) {
        return Ok(deletion(git_ref));
    }
    let after = commit_field(after, "after")?;
    // `checkout_sha` is the commit the ref points at (for an annotated tag,
    // `after` is the tag object).
    let commit = match opt_str(&push.checkout_sha, "checkout_sha")? {
        Some(sha) => commit_field(sha, "checkout_sha")?,
        None => after,
    };
    Ok(Event::Push {
        git_ref: git_ref.to_string(),
        commit,
    })
}

fn ignored_gitlab(what: &str) -> Event {
    Event::Ignored(format!(
        "GitLab `{}` deliveries start no run: only Push Hook and Tag Push Hook do",
        shown(what)
    ))
}

/// A generic delivery's body; every field optional.
#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with `ref`, `commit` and `delivery`, each optional"
)]
struct GenericBody {
    #[serde(rename = "ref")]
    git_ref: Option<Value>,
    commit: Option<Value>,
    delivery: Option<Value>,
}

/// Reads an authenticated generic delivery: its id and its run.
fn read_generic(headers: &Headers<'_>, body: &[u8]) -> Result<(Option<String>, Event), HookError> {
    let from_header = delivery_id("Idempotency-Key", headers.get("Idempotency-Key")?)?;
    let body: GenericBody = if body.trim_ascii().is_empty() {
        GenericBody::default()
    } else {
        parse_json(body)?
    };
    let git_ref = match opt_str(&body.git_ref, "ref")? {
        Some(r) => Some(ref_field_str(r)?.to_string()),
        None => None,
    };
    let commit = match opt_str(&body.commit, "commit")? {
        Some(c) => Some(commit_field(c, "commit")?),
        None => None,
    };
    let from_body = delivery_id("`delivery`", opt_str(&body.delivery, "delivery")?)?;
    let id = match (from_body, from_header) {
        (Some(b), Some(h)) if b != h => {
            return Err(HookError::BadRequest(
                "the body's `delivery` and the Idempotency-Key header differ: send one, or the same in both".into(),
            ));
        }
        (b, h) => b.or(h),
    };
    Ok((id, Event::Run { git_ref, commit }))
}

/// Parses a JSON body into `T`, whose fields are all `Option<Value>`: the
/// only errors are then bad JSON, a body that is not an object, a field
/// given twice or (generic) an unknown field.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, HookError> {
    serde_json::from_slice(body).map_err(|e| HookError::BadRequest(format!("the body is not {}", json_error(&e))))
}

fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("valid JSON (line {}, column {})", e.line(), e.column())
        }
        Category::Data => format!("what was expected: {}", shown_long(&e.to_string())),
    }
}

/// A string field that may be absent (or null).
fn opt_str<'v>(value: &'v Option<Value>, field: &str) -> Result<Option<&'v str>, HookError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(not_a(field, "string", other)),
    }
}

fn required_str<'v>(value: &'v Option<Value>, field: &str) -> Result<&'v str, HookError> {
    opt_str(value, field)?.ok_or_else(|| HookError::BadRequest(format!("the body has no `{field}`")))
}

fn bool_field(value: &Option<Value>, field: &str) -> Result<Option<bool>, HookError> {
    match value {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(not_a(field, "boolean", other)),
    }
}

/// The required `ref`, checked.
fn ref_field(value: &Option<Value>) -> Result<&str, HookError> {
    ref_field_str(required_str(value, "ref")?)
}

fn ref_field_str(git_ref: &str) -> Result<&str, HookError> {
    check_ref(git_ref).map_err(|e| HookError::BadRequest(format!("`ref`: {e}")))?;
    Ok(git_ref)
}

fn commit_field(id: &str, field: &str) -> Result<String, HookError> {
    check_commit(id).map_err(|e| HookError::BadRequest(format!("`{field}`: {e}")))
}

fn not_a(field: &str, wanted: &str, got: &Value) -> HookError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    HookError::BadRequest(format!("`{field}` must be a {wanted}, not {got}"))
}

/// Git's id for "no object": a deleted ref's new value.
fn is_zero_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b == b'0')
}

fn deletion(git_ref: &str) -> Event {
    Event::Ignored(format!("{git_ref} was deleted: a deletion starts no run"))
}

fn shown_long(s: &str) -> String {
    cut(s, 200)
}

#[cfg(test)]
mod tests;
