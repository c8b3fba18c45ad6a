//! The hub's data as the API sends and receives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who is asking: a user (or host) with permissions, or nobody.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    pub id: Option<i64>,
    pub name: String,
    pub admin: bool,
    pub perms: Vec<String>,
    /// Set when the principal is a builder.
    pub host: Option<HostRef>,
}

/// A builder's registration, as its token resolves.
#[derive(Clone, Debug, Default)]
pub struct HostRef {
    pub id: i64,
    pub arch: String,
    pub channels: Vec<String>,
    pub capacity: i64,
    pub enabled: bool,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            id: None,
            name: "anonymous".into(),
            admin: false,
            perms: Vec::new(),
            host: None,
        }
    }
    pub fn has(&self, perm: &str) -> bool {
        self.id.is_some() && (self.admin || self.perms.iter().any(|p| p == perm))
    }
}

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
    /// `Some(None)` (JSON null) clears.
    #[serde(default, with = "double_option")]
    pub arches: Option<Option<String>>,
    #[serde(default, with = "double_option")]
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

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
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
    /// JSON null clears (unlimited).
    #[serde(default, with = "double_option_i64")]
    pub maxdepth: Option<Option<i64>>,
    #[serde(default)]
    pub intransitive: Option<bool>,
    #[serde(default)]
    pub noconfig: Option<bool>,
    #[serde(default)]
    pub pkg_filter: Option<String>,
}

mod double_option_i64 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Option<i64>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
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
    pub build_tag_macros: BTreeMap<String, Sourced>,
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

/// A unit of work for a builder (docs/hub.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub id: i64,
    pub method: String,
    /// FREE, OPEN, CLOSED, FAILED or CANCELED.
    pub state: String,
    pub priority: i64,
    pub channel: String,
    pub arch: String,
    pub owner: String,
    pub parent: Option<i64>,
    pub host: Option<String>,
    pub designated_host: Option<String>,
    pub request: serde_json::Value,
    pub result: Option<serde_json::Value>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_expires: Option<i64>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub method: String,
    #[serde(default)]
    pub request: serde_json::Value,
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default = "default_channel")]
    pub channel: String,
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Run on this builder only (the "designated device").
    #[serde(default)]
    pub builder: Option<String>,
    #[serde(default)]
    pub parent: Option<i64>,
    #[serde(default = "default_attempts")]
    pub max_attempts: i64,
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

/// The methods a task may have.
pub const TASK_METHODS: &[&str] = &["noop", "build", "update"];

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
