//! Tasks: what a builder runs (`TaskRequest`), queueing, reports and logs.

use super::*;

/// A unit of work for a builder (docs/hub.md). On the wire its request is
/// two fields, `method` and `request` (that method's object).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// A build tagged through Koji's protocol (`tagBuild`): recorded by the
    /// hub, closed as it is made, never queued (docs/koji.md).
    TagBuild(TagBuildRequest),
}

impl TaskRequest {
    /// Every method, as the wire names them.
    pub const METHODS: &[&str] = &["noop", "build", "update", "tagBuild"];

    pub fn method(&self) -> &'static str {
        match self {
            TaskRequest::Noop => "noop",
            TaskRequest::Build(_) => "build",
            TaskRequest::Update(_) => "update",
            TaskRequest::TagBuild(_) => "tagBuild",
        }
    }

    /// Reads the wire form: a method name and its request (`null` or an
    /// object for `noop`).
    pub fn from_parts(method: &str, request: &serde_json::Value) -> Result<TaskRequest, String> {
        let parsed = match method {
            "noop" => return Ok(TaskRequest::Noop),
            "build" => serde_json::from_value(request.clone()).map(TaskRequest::Build),
            "update" => serde_json::from_value(request.clone()).map(TaskRequest::Update),
            "tagBuild" => serde_json::from_value(request.clone()).map(TaskRequest::TagBuild),
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
            TaskRequest::TagBuild(t) => serde_json::to_value(t),
        };
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Checks what the hub can check before a builder runs it.
    pub fn check(&self) -> Result<(), String> {
        match self {
            TaskRequest::Noop => Ok(()),
            TaskRequest::Build(b) => b.check(),
            TaskRequest::Update(u) => u.check(),
            TaskRequest::TagBuild(_) => {
                Err("tagBuild tasks are recorded by the hub when a build is tagged; they cannot be submitted".into())
            }
        }
    }

    /// The target a build or update publishes through, and whether it is a
    /// scratch run.
    pub fn target(&self) -> Option<(&str, bool)> {
        match self {
            TaskRequest::Noop => None,
            TaskRequest::Build(b) => Some((&b.target, b.scratch)),
            TaskRequest::Update(u) => Some((&u.target, u.scratch)),
            TaskRequest::TagBuild(_) => None,
        }
    }
}

/// A `tagBuild` task's request: build `build` (an NVR) tagged into `tag`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TagBuildRequest {
    pub tag: String,
    pub build: String,
    #[serde(default)]
    pub force: bool,
}

/// A `build` task's request (docs/hub.md): build IMAGE from the profile
/// repository at REF with the target's macros.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// The build's NAME-VERSION-RELEASE instead of the profile's (a
    /// pipeline's target name; `%{commit}` and `%{commit_short}` are
    /// filled in by the builder once it has resolved the ref).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvr: Option<String>,
}

/// An `update` task's request (docs/update.md, docs/hub.md): run a script from git in a
/// source image from the hub and publish the result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskFile {
    pub file: String,
    pub size: i64,
    pub sha256: String,
}

/// `GET /tasks/{id}/log?after=N`: the log after chunk N.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskLogOut {
    /// The task's state now.
    pub state: String,
    pub text: String,
    /// Pass as `after` to read on.
    pub next: i64,
}
