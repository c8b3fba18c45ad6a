//! The resolved plan of one image: what `kiln show` prints and what the build
//! engine consumes. Serialized as JSON it is a stable, versioned format
//! (`docs/plan-json.md`); fields are only ever added within a schema version.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diag::Location;
use crate::macros::MacroLayer;

/// Version of the JSON form; bumped on any incompatible change.
pub const PLAN_SCHEMA: u32 = 1;

/// Where a value came from, resolved to a file position.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Provenance {
    /// A repository file, 1-based line and column (line 0: the file as a whole).
    Source(Location),
    /// From outside the repository, e.g. `--define`.
    External { external: String },
    /// kiln's built-in default.
    Default { default: bool },
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::Source(l) => write!(f, "{l}"),
            Provenance::External { external } => f.write_str(external),
            Provenance::Default { .. } => f.write_str("kiln default"),
        }
    }
}

/// A value that lost to a later definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overridden<T> {
    pub value: T,
    pub origin: Provenance,
}

/// A resolved scalar with its provenance and what it overrode (most recent
/// first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Value<T> {
    pub value: T,
    pub origin: Provenance,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrode: Vec<Overridden<T>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainEntry {
    pub image: String,
    pub file: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureUse {
    pub name: String,
    pub variants: Vec<String>,
    pub file: String,
    /// The `use` or `requires` entry that first pulled the feature in.
    pub requested_by: Provenance,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)]
pub enum Base {
    /// Bootstrap with mmdebstrap.
    Bootstrap {
        distribution: Value<String>,
        suite: Value<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        variant: Option<Value<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mirror: Option<Value<String>>,
        components: Value<Vec<String>>,
    },
    /// A source image from the catalog (docs/update.md).
    Source {
        from: Value<String>,
        name: String,
        version: String,
    },
}

/// How a package entered or left the set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackageEvent {
    pub action: &'static str,
    pub origin: Provenance,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Package {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The entry that added it (a list line or a `packages` element).
    pub origin: Provenance,
    /// The `lists`/`tagged` entry that pulled in the list, if from a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Provenance>,
    /// Earlier additions and removals of the same package, most recent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrode: Vec<PackageEvent>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Removal {
    pub name: String,
    pub origin: Provenance,
    /// The additions it undid.
    pub removed: Vec<Provenance>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListUse {
    pub name: String,
    pub file: String,
    pub tagged: bool,
    pub via: Provenance,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GitRef {
    pub url: String,
    #[serde(rename = "ref")]
    pub rev: String,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Script {
    pub name: String,
    /// Repository path of a local script; absent for remote ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<GitRef>,
    /// The feature that ships it; absent for an image's `scripts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub origin: Provenance,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileEntry {
    /// Absolute path inside the image.
    pub path: String,
    /// Repository path of the source.
    pub source: String,
    pub feature: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Octal, e.g. "0644" (absent for symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub owner: String,
    /// The earlier feature's file this one replaced (an `override`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Output {
    pub format: String,
    /// The file name the build writes (`<nvr>.<arch>.<ext>`).
    pub file: String,
    pub options: BTreeMap<String, Value<serde_json::Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Subprofile {
    pub name: String,
    pub file: String,
    pub origin: Provenance,
    /// Packages added on top of the image's set.
    pub packages: Vec<Package>,
    /// Packages of the image's set removed from this subprofile.
    pub removed: Vec<Removal>,
    pub files: Vec<FileEntry>,
    pub image_scripts: Vec<Script>,
    pub scripts: Vec<Script>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Build {
    pub network: Value<bool>,
    /// Per-script timeout in seconds.
    pub timeout: Value<i64>,
    pub cleanup: Value<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MacroOverride {
    pub value: String,
    pub layer: MacroLayer,
    pub origin: Provenance,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Macro {
    pub name: String,
    /// The expanded value.
    pub value: String,
    /// The value as written.
    pub raw: String,
    pub layer: MacroLayer,
    pub origin: Provenance,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrode: Vec<MacroOverride>,
}

/// The fully resolved image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub schema: u32,
    pub image: String,
    pub arch: String,
    pub name: Value<String>,
    pub nvr: String,
    pub kind: Value<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Value<String>>,
    pub version: Value<String>,
    pub release: Value<String>,
    /// The `extends` chain, parents first, ending with the image itself.
    pub chain: Vec<ChainEntry>,
    pub features: Vec<FeatureUse>,
    pub base: Base,
    pub lists: Vec<ListUse>,
    /// The final package set for `arch`, sorted by name.
    pub packages: Vec<Package>,
    pub removed: Vec<Removal>,
    /// Packages whose architecture filter excludes `arch`.
    pub arch_excluded: Vec<Package>,
    pub files: Vec<FileEntry>,
    /// Run inside the image, in order.
    pub image_scripts: Vec<Script>,
    /// Run on the build side, in order.
    pub scripts: Vec<Script>,
    pub outputs: Vec<Output>,
    pub subprofiles: Vec<Subprofile>,
    pub build: Build,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macros_file: Option<Value<String>>,
    pub macros: Vec<Macro>,
}

impl Plan {
    /// The stable JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn package_names(&self) -> Vec<&str> {
        self.packages.iter().map(|p| p.name.as_str()).collect()
    }
}
