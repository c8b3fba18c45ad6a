//! Build targets and the macro layers they give a build.

use super::*;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub build_tag: String,
    pub dest_tag: String,
    #[serde(default)]
    pub macros: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
