//! The hub's data as the API sends and receives it (docs/hub.md): the
//! request and answer bodies of every endpoint.

use std::collections::BTreeMap;

use kiln_core::macros::{MacroDef, MacroLayer, is_macro_name};
use kiln_core::model::Origin;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExtraValue {
    pub value: Option<serde_json::Value>,
    pub blocked: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TagInfo {
    pub id: i64,
    pub name: String,
    pub arches: Option<String>,
    pub perm: Option<String>,
    pub locked: bool,
    pub extra: BTreeMap<String, ExtraValue>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTag {
    pub name: String,
    #[serde(default)]
    pub arches: Option<String>,
    #[serde(default)]
    pub perm: Option<String>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// A first parent, linked at priority 0.
    #[serde(default)]
    pub parent: Option<String>,
}

/// Changes to a tag; absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagEdit {
    #[serde(default)]
    pub rename: Option<String>,
    /// `Some(None)` (JSON null) clears; `None` (absent) leaves it.
    #[serde(default, with = "double_option", skip_serializing_if = "Option::is_none")]
    pub arches: Option<Option<String>>,
    #[serde(default, with = "double_option", skip_serializing_if = "Option::is_none")]
    pub perm: Option<Option<String>>,
    #[serde(default)]
    pub locked: Option<bool>,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub remove_extra: Vec<String>,
    #[serde(default)]
    pub block_extra: Vec<String>,
}

/// A field that may be absent (leave it), null (clear it) or a value. An
/// absent field must stay absent on the wire: serialize it with
/// `skip_serializing_if = "Option::is_none"`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkIn {
    pub parent: String,
    pub priority: i64,
    #[serde(default)]
    pub maxdepth: Option<i64>,
    #[serde(default)]
    pub intransitive: bool,
    #[serde(default)]
    pub noconfig: bool,
    #[serde(default)]
    pub pkg_filter: String,
}

/// Changes to an inheritance link; absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEdit {
    #[serde(default)]
    pub priority: Option<i64>,
    /// JSON null clears (unlimited); absent leaves it.
    #[serde(default, with = "double_option", skip_serializing_if = "Option::is_none")]
    pub maxdepth: Option<Option<i64>>,
    #[serde(default)]
    pub intransitive: Option<bool>,
    #[serde(default)]
    pub noconfig: Option<bool>,
    #[serde(default)]
    pub pkg_filter: Option<String>,
}

/// One inheritance link, by name, as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LinkOut {
    pub child: String,
    pub parent: String,
    pub priority: i64,
    pub maxdepth: Option<i64>,
    pub intransitive: bool,
    pub noconfig: bool,
    pub pkg_filter: String,
}

/// One entry of a full inheritance walk (`koji list-tag-inheritance`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalkOut {
    /// The tag reached (the parent; reversed, the child).
    pub tag: String,
    pub link: LinkOut,
    pub currdepth: i64,
    pub nextdepth: Option<i64>,
    pub filter: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sourced {
    pub value: serde_json::Value,
    /// The tag it came from.
    pub from: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BuildConfigOut {
    pub tag: String,
    pub arches: Option<Sourced>,
    pub extra: BTreeMap<String, Sourced>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageIn {
    pub package: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub blocked: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PackageOut {
    pub package: String,
    pub owner: String,
    pub blocked: bool,
    /// The tag the entry is on (inherited entries name their parent).
    pub tag: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    pub file: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
    /// Whether the file is stored (uploaded and verified).
    #[serde(default)]
    pub stored: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Build {
    pub id: i64,
    pub nvr: String,
    pub name: String,
    pub version: String,
    pub release: String,
    pub state: String,
    pub owner: String,
    pub task_id: Option<i64>,
    pub start_time: i64,
    pub completion_time: Option<i64>,
    pub artifacts: Vec<Artifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
    pub extra: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBuild {
    pub name: String,
    pub version: String,
    pub release: String,
    #[serde(default)]
    pub manifest: Option<serde_json::Value>,
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
    pub artifacts: Vec<NewArtifact>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewArtifact {
    pub file: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaggedOut {
    pub nvr: String,
    pub name: String,
    pub version: String,
    pub release: String,
    pub tag: String,
    /// The event that tagged it.
    pub tag_event: i64,
    pub owner: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagBuildIn {
    pub nvr: String,
    #[serde(default)]
    pub force: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub build_tag: String,
    pub dest_tag: String,
    #[serde(default)]
    pub macros: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEdit {
    #[serde(default)]
    pub rename: Option<String>,
    #[serde(default)]
    pub build_tag: Option<String>,
    #[serde(default)]
    pub dest_tag: Option<String>,
    #[serde(default)]
    pub define: BTreeMap<String, String>,
    #[serde(default)]
    pub undefine: Vec<String>,
}

/// The macro layers a target contributes (docs/profiles.md): layer 2 (the
/// target's own) and layer 4 (the build tag's `macro.*` / `rpm.macro.*`
/// extra, through its inheritance).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MacroLayers {
    pub target: String,
    pub target_macros: BTreeMap<String, String>,
    pub build_tag: String,
    /// The build tag's `macro.*` / `rpm.macro.*` extra through its
    /// inheritance, by macro name, as text ([`macro_text`]).
    pub build_tag_macros: BTreeMap<String, SourcedText>,
}

/// A macro's text and the tag it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SourcedText {
    pub value: String,
    /// The tag it came from.
    pub from: String,
}

/// A tag extra's value as macro text: strings as they are, anything else
/// as its JSON.
pub fn macro_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl MacroLayers {
    /// The two layers as macro definitions: the target's (layer 2), then the
    /// build tag's (layer 4), each naming where it came from.
    pub fn defs(&self) -> Result<Vec<MacroDef>, String> {
        if let Some(n) = self
            .target_macros
            .keys()
            .chain(self.build_tag_macros.keys())
            .find(|n| !is_macro_name(n))
        {
            return Err(format!("bad macro name `{n}`: names are [A-Za-z0-9_]+"));
        }
        let target = self.target_macros.iter().map(|(name, value)| MacroDef {
            origin: Origin::External(format!("target {}", self.target)),
            name: name.clone(),
            value: value.clone(),
            layer: MacroLayer::Target,
        });
        let build_tag = self.build_tag_macros.iter().map(|(name, v)| MacroDef {
            origin: Origin::External(format!("build tag {} (extra of tag {})", self.build_tag, v.from)),
            name: name.clone(),
            value: v.value.clone(),
            layer: MacroLayer::BuildTag,
        });
        Ok(target.chain(build_tag).collect())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub event: i64,
    pub time: i64,
    pub user: Option<String>,
    /// `created` or `revoked`.
    pub change: String,
    /// What changed: `config`, `extra`, `inheritance`, `package`, `build`.
    pub table: String,
    pub detail: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Image {
    pub name: String,
    pub version: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
    pub uploader: String,
    pub time: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub name: String,
    pub kind: String,
    pub perms: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub perms: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewToken {
    pub id: i64,
    /// Shown once; the hub keeps only its hash.
    pub token: String,
    pub expires: Option<i64>,
}

/// One page of a listing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

/// The permissions kiln knows; tags may name custom ones.
pub const PERMISSIONS: &[&str] = &["admin", "tag", "target", "build", "image", "host", "pipeline"];

/// A builder, as registered on the hub.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub name: String,
    pub arch: String,
    pub channels: Vec<String>,
    pub capacity: i64,
    pub enabled: bool,
    pub last_seen: Option<i64>,
    /// Tasks it holds now.
    pub load: i64,
    /// Whether it takes work now, as the hub judges by its lease.
    pub state: HostState,
}

/// A builder's state as the hub sees it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Enabled, and it sent a heartbeat within two of the hub's leases.
    Ready,
    /// Enabled, but no heartbeat within two leases (or never).
    Offline,
    /// An admin disabled it.
    Disabled,
}

impl HostState {
    /// The state of an enabled (or not) builder last seen at `last_seen`,
    /// at `now`, on a hub whose claims last `lease` seconds.
    pub fn judge(enabled: bool, last_seen: Option<i64>, now: i64, lease: i64) -> HostState {
        match (enabled, last_seen) {
            (false, _) => HostState::Disabled,
            (true, Some(t)) if now - t < 2 * lease => HostState::Ready,
            (true, _) => HostState::Offline,
        }
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostState::Ready => "ready",
            HostState::Offline => "offline",
            HostState::Disabled => "disabled",
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    pub name: String,
    pub arch: String,
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    #[serde(default = "default_capacity")]
    pub capacity: i64,
}

fn default_channels() -> Vec<String> {
    vec!["default".into()]
}

fn default_capacity() -> i64 {
    1
}

/// A unit of work for a builder (docs/hub.md). On the wire its request is
/// two fields, `method` and `request` (that method's object).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "TaskWire", into = "TaskWire")]
pub struct Task {
    pub id: i64,
    pub request: TaskRequest,
    /// FREE, OPEN, CLOSED, FAILED or CANCELED.
    pub state: String,
    pub priority: i64,
    pub channel: String,
    pub arch: String,
    pub owner: String,
    pub parent: Option<i64>,
    pub host: Option<String>,
    pub designated_host: Option<String>,
    pub result: Option<serde_json::Value>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_expires: Option<i64>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
}

impl Task {
    /// The task's method (`noop`, `build`, `update`).
    pub fn method(&self) -> &'static str {
        self.request.method()
    }
}

#[derive(Serialize, Deserialize)]
struct TaskWire {
    id: i64,
    method: String,
    state: String,
    priority: i64,
    channel: String,
    arch: String,
    owner: String,
    parent: Option<i64>,
    host: Option<String>,
    designated_host: Option<String>,
    request: serde_json::Value,
    result: Option<serde_json::Value>,
    attempts: i64,
    max_attempts: i64,
    lease_expires: Option<i64>,
    created: i64,
    started: Option<i64>,
    finished: Option<i64>,
}

impl TryFrom<TaskWire> for Task {
    type Error = String;
    fn try_from(w: TaskWire) -> Result<Task, String> {
        Ok(Task {
            request: TaskRequest::from_parts(&w.method, &w.request)?,
            id: w.id,
            state: w.state,
            priority: w.priority,
            channel: w.channel,
            arch: w.arch,
            owner: w.owner,
            parent: w.parent,
            host: w.host,
            designated_host: w.designated_host,
            result: w.result,
            attempts: w.attempts,
            max_attempts: w.max_attempts,
            lease_expires: w.lease_expires,
            created: w.created,
            started: w.started,
            finished: w.finished,
        })
    }
}

impl From<Task> for TaskWire {
    fn from(t: Task) -> TaskWire {
        TaskWire {
            id: t.id,
            method: t.request.method().to_string(),
            request: t.request.to_value(),
            state: t.state,
            priority: t.priority,
            channel: t.channel,
            arch: t.arch,
            owner: t.owner,
            parent: t.parent,
            host: t.host,
            designated_host: t.designated_host,
            result: t.result,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            lease_expires: t.lease_expires,
            created: t.created,
            started: t.started,
            finished: t.finished,
        }
    }
}

/// A task to queue. On the wire: `method`, `request` and the placement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "NewTaskWire", into = "NewTaskWire")]
pub struct NewTask {
    pub request: TaskRequest,
    /// Lower runs first.
    pub priority: i64,
    pub channel: String,
    pub arch: String,
    /// Run on this builder only (the "designated device").
    pub builder: Option<String>,
    pub parent: Option<i64>,
    pub max_attempts: i64,
}

impl NewTask {
    /// `request` with the default placement: priority 20, channel
    /// `default`, any architecture, three attempts.
    pub fn new(request: TaskRequest) -> NewTask {
        NewTask {
            request,
            priority: default_priority(),
            channel: default_channel(),
            arch: default_arch(),
            builder: None,
            parent: None,
            max_attempts: default_attempts(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTaskWire {
    method: String,
    #[serde(default)]
    request: serde_json::Value,
    #[serde(default = "default_priority")]
    priority: i64,
    #[serde(default = "default_channel")]
    channel: String,
    #[serde(default = "default_arch")]
    arch: String,
    #[serde(default)]
    builder: Option<String>,
    #[serde(default)]
    parent: Option<i64>,
    #[serde(default = "default_attempts")]
    max_attempts: i64,
}

impl TryFrom<NewTaskWire> for NewTask {
    type Error = String;
    fn try_from(w: NewTaskWire) -> Result<NewTask, String> {
        Ok(NewTask {
            request: TaskRequest::from_parts(&w.method, &w.request)?,
            priority: w.priority,
            channel: w.channel,
            arch: w.arch,
            builder: w.builder,
            parent: w.parent,
            max_attempts: w.max_attempts,
        })
    }
}

impl From<NewTask> for NewTaskWire {
    fn from(t: NewTask) -> NewTaskWire {
        NewTaskWire {
            method: t.request.method().to_string(),
            request: t.request.to_value(),
            priority: t.priority,
            channel: t.channel,
            arch: t.arch,
            builder: t.builder,
            parent: t.parent,
            max_attempts: t.max_attempts,
        }
    }
}

fn default_priority() -> i64 {
    20
}
fn default_channel() -> String {
    "default".into()
}
fn default_arch() -> String {
    "noarch".into()
}
fn default_attempts() -> i64 {
    3
}

/// What a task does: its method with that method's request.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskRequest {
    /// Does nothing (for tests, benchmarks and checking a farm).
    Noop,
    Build(BuildRequest),
    Update(UpdateRequest),
}

impl TaskRequest {
    /// Every method, as the wire names them.
    pub const METHODS: &[&str] = &["noop", "build", "update"];

    pub fn method(&self) -> &'static str {
        match self {
            TaskRequest::Noop => "noop",
            TaskRequest::Build(_) => "build",
            TaskRequest::Update(_) => "update",
        }
    }

    /// Reads the wire form: a method name and its request (`null` or an
    /// object for `noop`).
    pub fn from_parts(method: &str, request: &serde_json::Value) -> Result<TaskRequest, String> {
        let parsed = match method {
            "noop" => return Ok(TaskRequest::Noop),
            "build" => serde_json::from_value(request.clone()).map(TaskRequest::Build),
            "update" => serde_json::from_value(request.clone()).map(TaskRequest::Update),
            _ => {
                return Err(format!(
                    "unknown task method `{method}` (known: {})",
                    Self::METHODS.join(", ")
                ));
            }
        };
        parsed.map_err(|e| format!("{method} request: {e}"))
    }

    /// The request object of the wire form.
    pub fn to_value(&self) -> serde_json::Value {
        let v = match self {
            TaskRequest::Noop => Ok(serde_json::Value::Null),
            TaskRequest::Build(b) => serde_json::to_value(b),
            TaskRequest::Update(u) => serde_json::to_value(u),
        };
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Checks what the hub can check before a builder runs it.
    pub fn check(&self) -> Result<(), String> {
        match self {
            TaskRequest::Noop => Ok(()),
            TaskRequest::Build(b) => b.check(),
            TaskRequest::Update(u) => u.check(),
        }
    }

    /// The target a build or update publishes through, and whether it is a
    /// scratch run.
    pub fn target(&self) -> Option<(&str, bool)> {
        match self {
            TaskRequest::Noop => None,
            TaskRequest::Build(b) => Some((&b.target, b.scratch)),
            TaskRequest::Update(u) => Some((&u.target, u.scratch)),
        }
    }
}

/// A `build` task's request (docs/hub.md): build IMAGE from the profile
/// repository at REF with the target's macros.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    pub target: String,
    pub image: String,
    /// `git+URL@REF`.
    pub repo: String,
    /// Macro layer 1 (`--define`), in the order given: a later one wins.
    #[serde(default)]
    pub defines: Vec<(String, String)>,
    /// Build without recording or tagging a build (the files stay with the task).
    #[serde(default)]
    pub scratch: bool,
}

/// An `update` task's request (docs/update.md, docs/hub.md): run a script from git in a
/// source image from the hub and publish the result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub target: String,
    /// A source image on the hub, NAME@VERSION.
    pub from: String,
    /// `git+URL@REF:PATH`.
    pub script: String,
    /// The target image's name, NAME-VERSION-RELEASE.
    pub name: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub defines: Vec<(String, String)>,
    #[serde(default)]
    pub scratch: bool,
}

impl BuildRequest {
    /// Checks what the hub can check before a builder runs it.
    pub fn check(&self) -> Result<(), String> {
        if !self.repo.starts_with("git+") || !self.repo.contains('@') {
            return Err(format!(
                "repo `{}`: builders fetch repositories from git: use git+URL@REF",
                self.repo
            ));
        }
        if self.image.is_empty() {
            return Err("the image is empty".into());
        }
        check_defines(&self.defines)
    }
}

impl UpdateRequest {
    pub fn check(&self) -> Result<(), String> {
        if !self.script.starts_with("git+") {
            return Err(format!(
                "script `{}`: builders fetch scripts from git: use git+URL@REF:PATH",
                self.script
            ));
        }
        if !self.from.contains('@') {
            return Err(format!("from `{}`: expected NAME@VERSION", self.from));
        }
        check_defines(&self.defines)
    }
}

fn check_defines(d: &[(String, String)]) -> Result<(), String> {
    match d
        .iter()
        .find(|(k, _)| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        Some((k, _)) => Err(format!("bad macro name `{k}`: names are [A-Za-z0-9_]+")),
        None => Ok(()),
    }
}

/// A builder's report of a task's end. A build or update that succeeded
/// carries its build: the hub records it with the files uploaded for this
/// attempt and tags it, in one transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReport {
    pub ok: bool,
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default)]
    pub build: Option<NewBuild>,
}

/// A file a task uploaded (for scratch builds, kept with the task).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskFile {
    pub file: String,
    pub size: i64,
    pub sha256: String,
}

/// `GET /status`: what the hub runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// kiln's version.
    pub kiln: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The last event.
    pub event: i64,
    pub anonymous_read: bool,
}

/// `GET /whoami`: the caller.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WhoAmI {
    pub name: String,
    pub authenticated: bool,
    pub admin: bool,
    pub perms: Vec<String>,
}

/// `POST /login`: a password exchanged for a new token. (No `Debug`: it
/// holds a password.)
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub user: String,
    pub password: String,
    #[serde(default)]
    pub token_name: Option<String>,
    #[serde(default)]
    pub expires_days: Option<i64>,
}

/// `POST /users/{name}/perms`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PermIn {
    pub perm: String,
}

/// `POST /users/{name}/tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenIn {
    /// A label (default `api`).
    pub name: Option<String>,
    pub expires_days: Option<i64>,
}

/// `POST /users`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserCreated {
    pub name: String,
}

/// `POST /builds/{nvr}/state`: COMPLETE, FAILED or CANCELED.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateIn {
    pub state: String,
}

/// `POST /hosts`'s answer: the builder's token, shown once.
#[derive(Clone, Serialize, Deserialize)]
pub struct HostToken {
    pub name: String,
    pub token: String,
}

/// `POST /host/heartbeat`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    /// Tasks of this builder that were cancelled: stop them.
    pub cancel: Vec<i64>,
    /// Seconds a claim lasts without a heartbeat.
    pub lease_seconds: i64,
}

/// `GET /tasks/{id}/log?after=N`: the log after chunk N.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskLogOut {
    /// The task's state now.
    pub state: String,
    pub text: String,
    /// Pass as `after` to read on.
    pub next: i64,
}

/// The answer to a streamed upload (an artifact or a task's file).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Uploaded {
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_leave_absent_fields_absent_and_null_clears() {
        let only_extra = TagEdit {
            extra: BTreeMap::from([("k".to_string(), serde_json::json!(1))]),
            ..TagEdit::default()
        };
        let v = serde_json::to_value(&only_extra).expect("json");
        assert!(v.get("arches").is_none() && v.get("perm").is_none(), "{v}");
        let clear = TagEdit {
            perm: Some(None),
            arches: Some(Some("amd64".into())),
            ..TagEdit::default()
        };
        let v = serde_json::to_value(&clear).expect("json");
        assert_eq!(v["perm"], serde_json::Value::Null);
        assert_eq!(v["arches"], "amd64");
        let back: TagEdit = serde_json::from_value(v).expect("read back");
        assert_eq!((back.perm, back.arches), (Some(None), Some(Some("amd64".into()))));

        let priority_only = LinkEdit {
            priority: Some(3),
            ..LinkEdit::default()
        };
        let v = serde_json::to_value(&priority_only).expect("json");
        assert!(v.get("maxdepth").is_none(), "{v}");
        let back: LinkEdit = serde_json::from_value(serde_json::json!({"maxdepth": null})).expect("read");
        assert_eq!(back.maxdepth, Some(None));
    }

    #[test]
    fn task_requests_round_trip_through_the_wire_form() {
        let b = TaskRequest::Build(BuildRequest {
            target: "fw".into(),
            image: "cam/fw".into(),
            repo: "git+file:///r@main".into(),
            defines: vec![("a".into(), "1".into())],
            scratch: true,
        });
        let t = NewTask::new(b.clone());
        let v = serde_json::to_value(&t).expect("json");
        assert_eq!(v["method"], "build");
        assert_eq!(v["request"]["image"], "cam/fw");
        let back: NewTask = serde_json::from_value(v).expect("read back");
        assert_eq!(back, t);
        let e = serde_json::from_value::<NewTask>(serde_json::json!({"method": "bake"})).expect_err("unknown");
        assert!(e.to_string().contains("unknown task method `bake`"), "{e}");
        let e = serde_json::from_value::<NewTask>(serde_json::json!({"method": "update", "request": {"target": "x"}}))
            .expect_err("incomplete");
        assert!(e.to_string().contains("update request: missing field"), "{e}");
        let n: NewTask = serde_json::from_value(serde_json::json!({"method": "noop"})).expect("noop");
        assert_eq!(n.request, TaskRequest::Noop);
        assert_eq!(n.priority, 20);
    }
}
