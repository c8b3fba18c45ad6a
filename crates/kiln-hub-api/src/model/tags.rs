//! Tags: their configuration and extra, inheritance links and walks, the
//! build config, package lists, tagged builds and history.

use super::*;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExtraValue {
    pub value: Option<serde_json::Value>,
    pub blocked: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TagInfo {
    pub id: i64,
    pub name: String,
    pub arches: Option<String>,
    pub perm: Option<String>,
    pub locked: bool,
    pub extra: BTreeMap<String, ExtraValue>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TagEdit {
    #[serde(default)]
    pub rename: Option<String>,
    /// `Some(None)` (JSON null) clears; `None` (absent) leaves it.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    #[serde(default, with = "double_option", skip_serializing_if = "Option::is_none")]
    pub arches: Option<Option<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkEdit {
    #[serde(default)]
    pub priority: Option<i64>,
    /// JSON null clears (unlimited); absent leaves it.
    #[cfg_attr(feature = "schema", schemars(with = "Option<i64>"))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WalkOut {
    /// The tag reached (the parent; reversed, the child).
    pub tag: String,
    pub link: LinkOut,
    pub currdepth: i64,
    pub nextdepth: Option<i64>,
    pub filter: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sourced {
    pub value: serde_json::Value,
    /// The tag it came from.
    pub from: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BuildConfigOut {
    pub tag: String,
    pub arches: Option<Sourced>,
    pub extra: BTreeMap<String, Sourced>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageIn {
    pub package: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub blocked: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PackageOut {
    pub package: String,
    pub owner: String,
    pub blocked: bool,
    /// The tag the entry is on (inherited entries name their parent).
    pub tag: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TagBuildIn {
    pub nvr: String,
    #[serde(default)]
    pub force: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
