//! The build manifest, `<nvr>.manifest.json` (docs/manifest-json.md).

use serde::{Deserialize, Serialize};

use kiln_core::plan::{GitRef, Plan};
use kiln_core::stagekey::Stage;

use crate::dpkg::Installed;

pub const MANIFEST_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub schema: u32,
    pub kiln_version: String,
    pub image: String,
    pub nvr: String,
    pub name: String,
    pub version: String,
    pub release: String,
    pub kind: String,
    pub arch: String,
    pub repo: RepoInfo,
    pub source_date_epoch: Option<u64>,
    pub base: BaseRecord,
    pub scripts: Vec<ScriptRecord>,
    pub packages: Vec<Installed>,
    pub outputs: Vec<OutputRecord>,
    pub stages: Vec<StageRecord>,
    pub tools: Vec<ToolRecord>,
    /// The resolved plan with provenance and macros (docs/plan-json.md).
    pub plan: Plan,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoInfo {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum BaseRecord {
    Bootstrap {
        command: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        mirror: Option<String>,
        /// sha256 of the mirror's InRelease/Release files the bootstrap used,
        /// by file name.
        release_digests: Vec<(String, String)>,
    },
    Source {
        from: String,
        /// sha256 of the source image.
        #[serde(default)]
        sha256: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScriptRecord {
    /// `image-scripts` (inside the image) or `scripts` (build side).
    pub stage: Stage,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<GitRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subprofile: Option<String>,
    /// The commit a `git+` script was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub sha256: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputRecord {
    pub file: String,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subprofile: Option<String>,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageRecord {
    pub stage: Stage,
    /// `built`, `cached`, or `partly cached` (some steps came from the cache).
    pub status: &'static str,
    pub seconds: f64,
    /// Each cached step of the stage: its key and whether it was a hit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub key: String,
    /// `built` or `cached`.
    pub status: &'static str,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ToolRecord {
    pub name: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
