//! Stage keys (docs/cache.md): a content hash per build stage, chained like
//! osbuild's. A key covers the stage's kind, its canonical options, the
//! content of every input it reads, the host tools it calls (by version),
//! kiln's cache format and the previous stage's key, so changing any input
//! changes the key of the stage that reads it and of every stage after it,
//! and of no stage before it.
//!
//! Pure: file contents, tool versions and the mirror's release digest are
//! handed in as [`KeyInputs`]; nothing here reads a file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::plan::{Base, FileEntry, Output, Plan, Script};

/// Bumped whenever what a stage stores or how keys are computed changes:
/// every earlier cache entry then misses.
pub const CACHE_FORMAT: u32 = 1;

/// What the keys need besides the plan.
#[derive(Clone, Debug, Default)]
pub struct KeyInputs {
    /// Content hash of each repository file the plan reads (feature files,
    /// scripts), by repository path, including the execute bit.
    pub files: BTreeMap<String, String>,
    /// Host tool versions by tool name (`mmdebstrap`, `mksquashfs`, …).
    pub tools: BTreeMap<String, String>,
    /// Digest of the mirror's `InRelease`/`Release` for the suite.
    pub mirror_digest: Option<String>,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub epoch: Option<u64>,
    /// kiln's version: its tar writer and cleanup are part of some stages.
    pub kiln_version: String,
}

/// A stage of a build (docs/profiles.md), in build order. Its name is what
/// progress events, logs, error reports and the manifest show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Base,
    Packages,
    Files,
    ImageScripts,
    Scripts,
    Cleanup,
    Outputs,
}

impl Stage {
    /// Every stage, in build order.
    pub const ALL: [Stage; 7] = [
        Stage::Base,
        Stage::Packages,
        Stage::Files,
        Stage::ImageScripts,
        Stage::Scripts,
        Stage::Cleanup,
        Stage::Outputs,
    ];

    /// The stage's name: `base`, `packages`, `files`, `image-scripts`,
    /// `scripts`, `cleanup` or `outputs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Base => "base",
            Stage::Packages => "packages",
            Stage::Files => "files",
            Stage::ImageScripts => "image-scripts",
            Stage::Scripts => "scripts",
            Stage::Cleanup => "cleanup",
            Stage::Outputs => "outputs",
        }
    }

    /// Every stage's name in build order, comma-separated (for messages).
    pub fn names() -> String {
        Stage::ALL.map(Stage::as_str).join(", ")
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Stage::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a stage ({})", Stage::names())]
pub struct UnknownStage {
    pub name: String,
}

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage { name: s.to_string() })
    }
}

/// Where a forced rebuild starts (`kiln build --rebuild-from`, docs/cache.md):
/// a stage, or a script of the plan, by name. That step and every later one
/// are built even when cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebuildFrom {
    Stage(Stage),
    /// An image-script or a build-side script, by name.
    Script(String),
}

/// A `--rebuild-from` name that is neither a stage nor a script of the plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a stage ({}) or a script of `{image}`", Stage::names())]
pub struct UnknownStep {
    pub name: String,
    /// The plan's image.
    pub image: String,
}

impl RebuildFrom {
    /// `name` as a stage, else as a script of `plan` (image-side or build
    /// side; a subprofile's scripts are not steps of their own).
    pub fn parse(name: &str, plan: &Plan) -> Result<Self, UnknownStep> {
        if let Ok(stage) = name.parse() {
            return Ok(RebuildFrom::Stage(stage));
        }
        if plan.image_scripts.iter().chain(&plan.scripts).any(|s| s.name == name) {
            return Ok(RebuildFrom::Script(name.to_string()));
        }
        Err(UnknownStep {
            name: name.to_string(),
            image: plan.image.clone(),
        })
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        match self {
            RebuildFrom::Stage(s) => s.as_str(),
            RebuildFrom::Script(name) => name,
        }
    }

    /// Whether the rebuild starts at `key`'s step: it is of that stage, or
    /// its step has that name.
    pub fn starts_at(&self, key: &StageKey) -> bool {
        let by_stage = matches!(self, RebuildFrom::Stage(s) if *s == key.id.kind());
        by_stage || key.step.as_deref() == Some(self.as_str())
    }
}

impl fmt::Display for RebuildFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which stage a key is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageId {
    Base,
    Packages,
    Files,
    /// Index into `plan.image_scripts`.
    ImageScript(usize),
    /// Index into `plan.scripts`.
    Script(usize),
    Cleanup,
    /// Index into `plan.outputs`.
    Output(usize),
    /// Index into `plan.subprofiles`.
    Subprofile(usize),
}

impl StageId {
    /// The stage the step belongs to, as progress and the manifest name it.
    pub fn kind(&self) -> Stage {
        match self {
            StageId::Base => Stage::Base,
            StageId::Packages => Stage::Packages,
            StageId::Files => Stage::Files,
            StageId::ImageScript(_) => Stage::ImageScripts,
            StageId::Script(_) => Stage::Scripts,
            StageId::Cleanup => Stage::Cleanup,
            StageId::Output(_) | StageId::Subprofile(_) => Stage::Outputs,
        }
    }

    /// Whether the stage produces a tree layer (else output files).
    pub fn is_tree(&self) -> bool {
        !matches!(self, StageId::Output(_) | StageId::Subprofile(_))
    }
}

/// One stage's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageKey {
    pub id: StageId,
    /// The step within the stage (a script's name, an output's file name).
    pub step: Option<String>,
    /// Lowercase hex of a 256-bit BLAKE3 hash.
    pub key: String,
}

/// A canonical, length-prefixed encoding fed to BLAKE3: field names and
/// values can never run into each other.
struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    fn new(kind: &str, prev: Option<&str>) -> Self {
        let mut h = KeyHasher(blake3::Hasher::new());
        h.field("kiln-stage", &CACHE_FORMAT.to_string());
        h.field("kind", kind);
        h.field("prev", prev.unwrap_or(""));
        h
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
    }

    fn field(&mut self, name: &str, value: &str) {
        self.bytes(name.as_bytes());
        self.bytes(value.as_bytes());
    }

    fn list<'a>(&mut self, name: &str, values: impl IntoIterator<Item = &'a str>) {
        self.bytes(name.as_bytes());
        let values: Vec<&str> = values.into_iter().collect();
        self.0.update(&(values.len() as u64).to_le_bytes());
        for v in values {
            self.bytes(v.as_bytes());
        }
    }

    fn finish(self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

fn tool(inputs: &KeyInputs, name: &str) -> String {
    inputs.tools.get(name).cloned().unwrap_or_default()
}

fn file_hash(inputs: &KeyInputs, path: &str) -> String {
    inputs.files.get(path).cloned().unwrap_or_default()
}

/// What every script sees: the environment kiln gives it.
fn script_context(h: &mut KeyHasher, plan: &Plan, inputs: &KeyInputs) {
    h.field("image", &plan.image);
    h.field("nvr", &plan.nvr);
    h.field("arch", &plan.arch);
    h.field("kind", &plan.kind.value);
    h.field("epoch", &inputs.epoch.map(|e| e.to_string()).unwrap_or_default());
    h.list(
        "macros",
        plan.macros.iter().flat_map(|m| [m.name.as_str(), m.value.as_str()]),
    );
    h.field("network", &plan.build.network.value.to_string());
}

fn script(h: &mut KeyHasher, s: &Script, inputs: &KeyInputs) {
    h.field("name", &s.name);
    h.field("feature", s.feature.as_deref().unwrap_or(""));
    match (&s.path, &s.git) {
        (Some(p), _) => {
            h.field("path", p);
            h.field("content", &file_hash(inputs, p));
        }
        (None, Some(g)) => {
            h.field("git", &format!("{}@{}:{}", g.url, g.rev, g.path));
            h.field("content", &file_hash(inputs, &remote_key(g)));
        }
        (None, None) => {}
    }
}

fn files(h: &mut KeyHasher, files: &[FileEntry], inputs: &KeyInputs) {
    h.field("count", &files.len().to_string());
    for f in files {
        h.field("path", &f.path);
        h.field("type", f.kind);
        h.field("source", &f.source);
        h.field("content", &file_hash(inputs, &f.source));
        h.field("target", f.target.as_deref().unwrap_or(""));
        h.field("mode", f.mode.as_deref().unwrap_or(""));
        h.field("owner", &f.owner);
    }
}

fn output_options(h: &mut KeyHasher, o: &Output) {
    h.field("format", &o.format);
    for (k, v) in &o.options {
        h.field(k, &v.value.to_string());
    }
}

/// The tools an output format calls.
pub fn output_tools(format: &str) -> &'static [&'static str] {
    match format {
        "squashfs" => &["mksquashfs"],
        "erofs" => &["mkfs.erofs"],
        "ext4" => &["mkfs.ext4"],
        "qcow2" => &["mkfs.ext4", "qemu-img"],
        "iso" => &[
            "xorriso",
            "grub-mkimage",
            "grub i386-pc",
            "grub x86_64-efi",
            "mkfs.vfat",
            "mcopy",
        ],
        _ => &[],
    }
}

/// The keys of every stage of `plan`, in build order: the tree stages
/// (base, packages when the image removes packages, files, each
/// image-script, each build-side script, cleanup), then each output but
/// the ISOs and each subprofile, both chained to the cleanup key, then each
/// ISO, whose key also holds the keys of the squashfs files it packs.
pub fn stage_keys(plan: &Plan, inputs: &KeyInputs) -> Vec<StageKey> {
    let mut keys = Vec::new();
    let push = |keys: &mut Vec<StageKey>, id, step: Option<String>, h: KeyHasher| -> String {
        let key = h.finish();
        keys.push(StageKey {
            id,
            step,
            key: key.clone(),
        });
        key
    };

    // The kinds hashed below are part of the key format, not stage names.
    let mut h = KeyHasher::new("base", None);
    match &plan.base {
        Base::Bootstrap {
            distribution,
            suite,
            variant,
            mirror,
            components,
        } => {
            h.field("distribution", &distribution.value);
            h.field("suite", &suite.value);
            h.field("variant", variant.as_ref().map_or("", |v| v.value.as_str()));
            h.field("mirror", mirror.as_ref().map_or("", |m| m.value.as_str()));
            h.list("components", components.value.iter().map(String::as_str));
            h.field("release-digest", inputs.mirror_digest.as_deref().unwrap_or(""));
            h.field("mmdebstrap", &tool(inputs, "mmdebstrap"));
            // The package set is installed by the bootstrap itself.
            h.list("packages", plan.packages.iter().map(|p| p.name.as_str()));
        }
        Base::Source { from, .. } => {
            h.field("from", &from.value);
            h.field("source-digest", inputs.mirror_digest.as_deref().unwrap_or(""));
        }
    }
    h.field("arch", &plan.arch);
    let mut prev = push(&mut keys, StageId::Base, None, h);

    let source_base = matches!(plan.base, Base::Source { .. });
    if !plan.removed.is_empty() || (source_base && !plan.packages.is_empty()) {
        let mut h = KeyHasher::new("packages", Some(&prev));
        h.list("purge", plan.removed.iter().map(|r| r.name.as_str()));
        h.list("keep", plan.packages.iter().map(|p| p.name.as_str()));
        h.field("install", &source_base.to_string());
        prev = push(&mut keys, StageId::Packages, None, h);
    }

    let mut h = KeyHasher::new("files", Some(&prev));
    files(&mut h, &plan.files, inputs);
    if let Some(m) = &plan.macros_file {
        h.field("macros-file", &m.value);
        h.field("macros", &rpm_macros(plan));
    }
    prev = push(&mut keys, StageId::Files, None, h);

    for (i, s) in plan.image_scripts.iter().enumerate() {
        let mut h = KeyHasher::new("image-script", Some(&prev));
        script_context(&mut h, plan, inputs);
        script(&mut h, s, inputs);
        prev = push(&mut keys, StageId::ImageScript(i), Some(s.name.clone()), h);
    }
    for (i, s) in plan.scripts.iter().enumerate() {
        let mut h = KeyHasher::new("script", Some(&prev));
        script_context(&mut h, plan, inputs);
        script(&mut h, s, inputs);
        prev = push(&mut keys, StageId::Script(i), Some(s.name.clone()), h);
    }

    let mut h = KeyHasher::new("cleanup", Some(&prev));
    h.field("cleanup", &plan.build.cleanup.value.to_string());
    h.field("epoch", &inputs.epoch.map(|e| e.to_string()).unwrap_or_default());
    h.field("kiln", &inputs.kiln_version);
    let tree = push(&mut keys, StageId::Cleanup, None, h);

    let output_key = |o: &Output| {
        let mut h = KeyHasher::new("output", Some(&tree));
        output_options(&mut h, o);
        h.field("file", &o.file);
        h.field("epoch", &inputs.epoch.map(|e| e.to_string()).unwrap_or_default());
        h.field("kiln", &inputs.kiln_version);
        for t in output_tools(&o.format) {
            h.field(t, &tool(inputs, t));
        }
        h
    };
    for (i, o) in plan.outputs.iter().enumerate().filter(|(_, o)| o.format != "iso") {
        push(&mut keys, StageId::Output(i), Some(o.file.clone()), output_key(o));
    }
    let squashfs = plan.outputs.iter().find(|o| o.format == "squashfs");
    for (i, sub) in plan.subprofiles.iter().enumerate() {
        let mut h = KeyHasher::new("subprofile", Some(&tree));
        h.field("name", &sub.name);
        h.field("file", &sub.file);
        h.list("packages", sub.packages.iter().map(|p| p.name.as_str()));
        h.list("removed", sub.removed.iter().map(|r| r.name.as_str()));
        files(&mut h, &sub.files, inputs);
        script_context(&mut h, plan, inputs);
        for s in sub.image_scripts.iter().chain(&sub.scripts) {
            script(&mut h, s, inputs);
        }
        if let Some(o) = squashfs {
            output_options(&mut h, o);
        }
        h.field("mksquashfs", &tool(inputs, "mksquashfs"));
        h.field("kiln", &inputs.kiln_version);
        push(&mut keys, StageId::Subprofile(i), Some(sub.file.clone()), h);
    }
    // An ISO packs squashfs files written above: its key follows theirs.
    for (i, o) in plan.outputs.iter().enumerate().filter(|(_, o)| o.format == "iso") {
        let mut h = output_key(o);
        let packed = |name: &str| -> String {
            let id = match plan.subprofiles.iter().position(|s| s.name == name) {
                Some(j) => Some(StageId::Subprofile(j)),
                None => plan
                    .outputs
                    .iter()
                    .position(|o| o.format == "squashfs")
                    .map(StageId::Output),
            };
            match id.and_then(|id| keys.iter().find(|k| k.id == id)) {
                Some(k) => k.key.clone(),
                // The image packed by the ISO stage itself, with the
                // squashfs defaults.
                None => format!("image:{tree}:{}", tool(inputs, "mksquashfs")),
            }
        };
        let root = o.options.get("root").and_then(|v| v.value.as_str()).unwrap_or("image");
        h.field("root", &packed(root));
        let extra: Vec<String> = o
            .options
            .get("extra")
            .and_then(|v| v.value.as_array())
            .map(|a| a.iter().filter_map(|e| e.as_str()).map(packed).collect())
            .unwrap_or_default();
        h.list("extra", extra.iter().map(String::as_str));
        h.field("unsquashfs", &tool(inputs, "unsquashfs"));
        push(&mut keys, StageId::Output(i), Some(o.file.clone()), h);
    }
    keys
}

/// Every `git+` script of the plan (the image's and its subprofiles').
pub fn remote_scripts(plan: &Plan) -> Vec<crate::plan::GitRef> {
    let mut out: Vec<crate::plan::GitRef> = plan
        .image_scripts
        .iter()
        .chain(&plan.scripts)
        .chain(
            plan.subprofiles
                .iter()
                .flat_map(|s| s.image_scripts.iter().chain(&s.scripts)),
        )
        .filter_map(|s| s.git.clone())
        .collect();
    out.sort_by(|a, b| (&a.url, &a.rev, &a.path).cmp(&(&b.url, &b.rev, &b.path)));
    out.dedup();
    out
}

/// The key name of a remote script's content in [`KeyInputs::files`].
pub fn remote_key(g: &crate::plan::GitRef) -> String {
    format!("git+{}@{}:{}", g.url, g.rev, g.path)
}

/// The repository files whose content the keys cover: feature files and
/// local scripts, of the image and its subprofiles.
pub fn key_files(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let scripts = plan.image_scripts.iter().chain(&plan.scripts).chain(
        plan.subprofiles
            .iter()
            .flat_map(|s| s.image_scripts.iter().chain(&s.scripts)),
    );
    out.extend(scripts.filter_map(|s| s.path.clone()));
    let files = plan.files.iter().chain(plan.subprofiles.iter().flat_map(|s| &s.files));
    out.extend(files.filter(|f| !f.source.is_empty()).map(|f| f.source.clone()));
    out.sort();
    out.dedup();
    out
}

/// The plan's macros in RPM macro-file syntax (`%name value`), by name; a
/// newline in a value continues it with a trailing backslash.
pub fn rpm_macros(plan: &Plan) -> String {
    let mut macros: Vec<&crate::plan::Macro> = plan.macros.iter().collect();
    macros.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = format!("# The macros of {} ({}), written by kiln.\n", plan.image, plan.nvr);
    for m in macros {
        out += &format!("%{} {}\n", m.name, m.value.replace('\n', "\\\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
            assert_eq!(stage.to_string(), stage.as_str());
            assert_eq!(
                serde_json::to_value(stage).ok(),
                Some(serde_json::Value::from(stage.as_str()))
            );
        }
        assert_eq!(
            Stage::names(),
            "base, packages, files, image-scripts, scripts, cleanup, outputs"
        );
        assert_eq!(
            Stage::ImageScripts,
            serde_json::from_str("\"image-scripts\"").unwrap_or(Stage::Base)
        );
    }

    #[test]
    fn unknown_stage_lists_the_stages() {
        let e = "script".parse::<Stage>().expect_err("not a stage");
        assert_eq!(
            e.to_string(),
            "`script` is not a stage (base, packages, files, image-scripts, scripts, cleanup, outputs)"
        );
    }

    #[test]
    fn ids_name_their_stage() {
        assert_eq!(StageId::ImageScript(3).kind(), Stage::ImageScripts);
        assert_eq!(StageId::Script(0).kind(), Stage::Scripts);
        assert_eq!(StageId::Subprofile(1).kind(), Stage::Outputs);
        assert_eq!(StageId::Output(0).kind(), Stage::Outputs);
    }

    #[test]
    fn a_rebuild_starts_at_its_stage_or_step() {
        let key = |id, step: Option<&str>| StageKey {
            id,
            step: step.map(str::to_string),
            key: String::new(),
        };
        let files = RebuildFrom::Stage(Stage::Files);
        assert!(files.starts_at(&key(StageId::Files, None)));
        assert!(!files.starts_at(&key(StageId::Base, None)));
        // A script named like a stage starts it too.
        assert!(files.starts_at(&key(StageId::Script(0), Some("files"))));
        let script = RebuildFrom::Script("10-setup".into());
        assert!(script.starts_at(&key(StageId::ImageScript(1), Some("10-setup"))));
        assert!(!script.starts_at(&key(StageId::ImageScript(0), Some("05-other"))));
        assert!(!script.starts_at(&key(StageId::Cleanup, None)));
        assert_eq!(script.to_string(), "10-setup");
    }
}
