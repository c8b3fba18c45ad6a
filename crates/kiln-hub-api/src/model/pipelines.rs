//! Pipelines (docs/pipelines.md): a build or update configured once and
//! run on every trigger, their runs, their hook secrets, and the signed
//! device channels their results reach.

use super::*;

/// What a pipeline runs: an `update` (source image → script → target
/// image) or a `build` (a profile repository's image).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PipelineKind {
    Update,
    Build,
}

impl PipelineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineKind::Update => "update",
            PipelineKind::Build => "build",
        }
    }
}

/// A pipeline's whole configuration, as `kiln pipeline show --json`
/// prints it and `kiln pipeline apply` takes it back. `owner` and `hooks`
/// are the hub's to set: they are shown, and ignored when sent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub kind: PipelineKind,
    /// update: the source image, `NAME@VERSION` or `NAME@latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// update: the script, `git+URL@REF:PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// build: the profile repository, `git+URL@REF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// build: the image to build, e.g. `ve/minimal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The result's NAME-VERSION-RELEASE, with macros (`%{run}`,
    /// `%{source_name}`, `%{source_version}`, `%{commit}`,
    /// `%{commit_short}`, `%{date}`, the defines and the target's layers).
    /// Required for updates; for builds it overrides the profile's NVR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// The hub target: its macros apply, its destination tag receives the result.
    pub target: String,
    /// Run on this builder only (the designated device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    #[serde(default = "default_channel")]
    pub channel: String,
    #[serde(default = "default_arch")]
    pub arch: String,
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// update: the target's format (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Macro layer 1 of every run.
    #[serde(default)]
    pub defines: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// update with a `NAME@latest` source: run when a newer version of
    /// NAME arrives in the hub's catalog.
    #[serde(default)]
    pub on_new_source: bool,
    /// Import each result into the hub's image catalog too, as
    /// NAME@VERSION-RELEASE (so other pipelines can start from it).
    #[serde(default)]
    pub import_image: bool,
    /// Pushes of these branches (globs over the short name) start a run.
    /// With no branch and no tag pattern: the configured ref's branch.
    #[serde(default)]
    pub branches: Vec<String>,
    /// Pushes of these tags (globs) start a run.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The user who saved this configuration: runs started by hooks and
    /// new source versions run with this user's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The hook services that have a secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
}

fn default_channel() -> String {
    "default".into()
}

fn default_arch() -> String {
    "noarch".into()
}

fn default_priority() -> i64 {
    20
}

fn yes() -> bool {
    true
}

/// `kiln pipeline edit`: the fields to change; `null` clears an optional one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PipelineEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub source: Option<Option<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub script: Option<Option<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub repo: Option<Option<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub image: Option<Option<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub target_name: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub builder: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub format: Option<Option<String>>,
    #[serde(default)]
    pub define: BTreeMap<String, String>,
    #[serde(default)]
    pub undefine: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_new_source: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_image: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl PipelineEdit {
    /// The configuration after this edit.
    pub fn apply(&self, p: &Pipeline) -> Result<Pipeline, String> {
        let mut p = p.clone();
        let set = |field: &mut Option<String>, v: &Option<Option<String>>| {
            if let Some(v) = v {
                *field = v.clone();
            }
        };
        if let Some(n) = &self.rename {
            p.name = n.clone();
        }
        set(&mut p.source, &self.source);
        set(&mut p.script, &self.script);
        set(&mut p.repo, &self.repo);
        set(&mut p.image, &self.image);
        set(&mut p.target_name, &self.target_name);
        set(&mut p.builder, &self.builder);
        set(&mut p.format, &self.format);
        if let Some(t) = &self.target {
            p.target = t.clone();
        }
        if let Some(c) = &self.channel {
            p.channel = c.clone();
        }
        if let Some(a) = &self.arch {
            p.arch = a.clone();
        }
        if let Some(x) = self.priority {
            p.priority = x;
        }
        for (k, v) in &self.define {
            p.defines.insert(k.clone(), v.clone());
        }
        for k in &self.undefine {
            if p.defines.remove(k).is_none() {
                return Err(format!("pipeline {} does not define `{k}`", p.name));
            }
        }
        if let Some(e) = self.enabled {
            p.enabled = e;
        }
        if let Some(e) = self.on_new_source {
            p.on_new_source = e;
        }
        if let Some(e) = self.import_image {
            p.import_image = e;
        }
        if let Some(b) = &self.branches {
            p.branches = b.clone();
        }
        if let Some(t) = &self.tags {
            p.tags = t.clone();
        }
        Ok(p)
    }
}

/// `POST /pipelines/{name}/runs`: start a run by hand. Without a ref the
/// configured one is used; a commit pins the run to it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// A branch, tag or full ref name (`refs/heads/main`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// A full commit id (40 or 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// One run of a pipeline: what started it, what it resolved, its task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PipelineRun {
    pub pipeline: String,
    /// The run's number within its pipeline (`%{run}`).
    pub run: i64,
    /// `manual`, `github`, `gitlab`, `generic` or `source` (a new source version).
    pub trigger: String,
    /// The delivery id a hook sent, or the new source version (NAME@VERSION).
    pub delivery: Option<String>,
    /// Who started a manual run; hooks and new sources run as the owner.
    pub user: Option<String>,
    /// The ref the run builds (a pushed ref, or the configured one).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The script's or repository's commit, once known.
    pub commit: Option<String>,
    /// The resolved source image, NAME@VERSION.
    pub source: Option<String>,
    /// The target's NAME-VERSION-RELEASE (with `%{commit…}` until the
    /// builder resolves the commit).
    pub nvr: Option<String>,
    pub task: Option<i64>,
    /// `queued`, `running`, `succeeded`, `failed`, `canceled`, or `error`
    /// (the run could not start: `error` says why).
    pub state: String,
    pub error: Option<String>,
    pub created: i64,
}

/// A pipeline's past configurations, newest last.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PipelineVersion {
    pub event: i64,
    pub time: i64,
    pub user: Option<String>,
    /// What the event did (`set pipeline cam`, `github hook secret`, …).
    pub action: String,
    /// The configuration from this event on (null: deleted).
    pub config: Option<Pipeline>,
    /// The event that replaced it, if any.
    pub revoked: Option<i64>,
}

/// A hook's new secret, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HookSecret {
    pub pipeline: String,
    /// `github`, `gitlab` or `generic`.
    pub service: String,
    /// The secret: GitHub's webhook secret, GitLab's secret token, or the
    /// generic hook's bearer token. The hub keeps no copy it can show again.
    pub secret: String,
    /// The hook's path on the hub.
    pub path: String,
}

/// What a hook delivery did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HookOutcome {
    /// The run it started (none for a ping).
    pub run: Option<PipelineRun>,
    pub message: String,
}
