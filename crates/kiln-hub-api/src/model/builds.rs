//! Builds and their artifacts.

use super::*;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewArtifact {
    pub file: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
}

/// `POST /builds/{nvr}/state`: COMPLETE, FAILED or CANCELED.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StateIn {
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["COMPLETE", "FAILED", "CANCELED"])))]
    pub state: String,
}
