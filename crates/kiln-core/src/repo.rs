//! A parsed profile repository: every definition, feature folder and package
//! list of a [`Snapshot`], read once and shared by all resolutions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Span};
use crate::model::{Context, Def, Reader, Sp, is_ident, parse_toml};
use crate::packages::{PkgRef, parse_pkg, tokenize_list};
use crate::snapshot::{EntryKind, Snapshot};
use crate::tags::is_tag;

pub const CONFIG_FILE: &str = "kiln.toml";

/// `kiln.toml`.
#[derive(Clone, Debug)]
pub struct RepoConfig {
    pub file: Arc<str>,
    pub defaults: Def,
    pub macros: Vec<(Sp<String>, Sp<String>)>,
}

#[derive(Clone, Debug)]
pub struct Image {
    pub name: String,
    pub file: Arc<str>,
    pub def: Def,
}

/// A file a feature ships into the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileItem {
    /// Path inside the image, without a leading `/`.
    pub dest: String,
    /// Repository path of the source.
    pub source: Arc<str>,
    pub kind: EntryKind,
    pub mode: u32,
}

/// A script in a `*.d` folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptItem {
    pub name: String,
    pub source: Arc<str>,
    /// For tagged scripts (`NN+tag+tag`), the tags that must all be present.
    pub tags: Vec<String>,
}

/// What one folder of a feature contributes (the feature itself, a variant,
/// or a subprofile folder).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    pub files: Vec<FileItem>,
    pub image_scripts: Vec<ScriptItem>,
    pub scripts: Vec<ScriptItem>,
}

#[derive(Clone, Debug, Default)]
pub struct FeatureContent {
    pub main: Content,
    pub variants: BTreeMap<String, Content>,
    pub subprofiles: BTreeMap<String, Content>,
    /// `tagged/image-scripts.d` and `tagged/scripts.d` (in `image_scripts` / `scripts`).
    pub tagged: Content,
}

#[derive(Clone, Debug)]
pub struct Feature {
    pub name: String,
    pub dir: String,
    pub file: Arc<str>,
    pub def: Def,
    pub content: FeatureContent,
}

#[derive(Clone, Debug)]
pub struct PackageList {
    pub name: String,
    pub file: Arc<str>,
    pub entries: Vec<Sp<String>>,
    /// Each entry parsed once, for the entries without macros (those are
    /// parsed after expansion, per resolution) and without errors.
    pub parsed: Vec<Option<PkgRef>>,
}

#[derive(Clone, Debug)]
pub struct TaggedList {
    pub tags: BTreeSet<String>,
    pub list: PackageList,
}

/// Everything parsed out of a snapshot, plus the problems found while parsing.
#[derive(Clone, Debug)]
pub struct Repo {
    pub snapshot: Snapshot,
    pub config: RepoConfig,
    pub images: BTreeMap<String, Image>,
    pub features: BTreeMap<String, Feature>,
    pub lists: BTreeMap<String, PackageList>,
    /// Tagged lists in file-name order.
    pub tagged: Vec<TaggedList>,
    /// Parse-time diagnostics of the whole repository (resolution adds its own).
    pub diagnostics: Vec<Diagnostic>,
    /// The same diagnostics by the definition they belong to (an image's
    /// file, a feature's `feature.toml`, a list's file), so a resolution can
    /// report the problems of exactly the files it uses.
    pub file_diagnostics: HashMap<Arc<str>, Vec<Diagnostic>>,
    /// Definition files that are not valid TOML (their definitions are empty).
    pub broken: HashSet<Arc<str>>,
}

const RESERVED_FEATURE_DIRS: &[&str] = &["files", "image-scripts.d", "scripts.d", "tagged", "variants"];

/// Files in a `*.d` folder that are not scripts.
pub fn is_ignored_script_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".bak")
        || name.ends_with(".swp")
        || name.contains(".dpkg-")
}

fn is_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// The parse-time diagnostics of each definition file, in load order.
type FileDiagnostics = Vec<(Arc<str>, Vec<Diagnostic>)>;

impl Repo {
    /// Parses every definition and list in the snapshot.
    pub fn load(snapshot: Snapshot) -> Repo {
        let mut diags = Vec::new();
        let mut config_diags = Vec::new();
        let config = load_config(&snapshot, &mut config_diags);
        let mut owned: FileDiagnostics = vec![(Arc::clone(&config.file), config_diags)];
        let images = load_images(&snapshot, &mut diags, &mut owned);
        let features = load_features(&snapshot, &mut diags, &mut owned);
        let (lists, tagged) = load_lists(&snapshot, &mut diags);
        let mut repo = Repo {
            snapshot,
            config,
            images,
            features,
            lists,
            tagged,
            diagnostics: diags,
            file_diagnostics: HashMap::new(),
            broken: HashSet::new(),
        };
        repo.add_file_diagnostics(owned);
        repo
    }

    /// Records the parse-time diagnostics of each definition file: among the
    /// repository's, by file, and the file as broken when it is not valid TOML.
    fn add_file_diagnostics(&mut self, owned: FileDiagnostics) {
        for (file, ds) in owned {
            if ds.iter().any(|d| d.code == "toml-syntax") {
                self.broken.insert(Arc::clone(&file));
            }
            if !ds.is_empty() {
                self.diagnostics.extend(ds.iter().cloned());
                self.file_diagnostics.entry(file).or_default().extend(ds);
            }
        }
    }

    /// Every subprofile name the repository mentions (image declarations and
    /// feature folders), for checking tags.
    pub fn known_subprofiles(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = BTreeSet::new();
        for img in self.images.values() {
            out.extend(img.def.subprofiles.iter().map(|s| s.v.as_str()));
        }
        for f in self.features.values() {
            out.extend(f.content.subprofiles.keys().map(String::as_str));
        }
        out
    }
}

/// The images of `images/`; problems of names go to `diags`, those of each
/// file to `owned`.
fn load_images(
    snapshot: &Snapshot,
    diags: &mut Vec<Diagnostic>,
    owned: &mut FileDiagnostics,
) -> BTreeMap<String, Image> {
    let mut images = BTreeMap::new();
    for (path, entry) in snapshot.walk("images") {
        let Some(name) = path.strip_prefix("images/").and_then(|p| p.strip_suffix(".toml")) else {
            continue;
        };
        if entry.kind != EntryKind::File {
            continue;
        }
        if !is_image_name(name) {
            diags.push(
                Diagnostic::error(
                    "bad-name",
                    format!("bad image name `{name}`: use letters, digits, `.`, `_`, `-` and `/`"),
                )
                .at(Span::whole_file(path), ""),
            );
            continue;
        }
        let text = snapshot.text(path).unwrap_or("");
        let mut own = Vec::new();
        let def = parse_def(path, text, Context::Image, &mut own);
        owned.push((Arc::clone(path), own));
        images.insert(
            name.to_string(),
            Image {
                name: name.to_string(),
                file: Arc::clone(path),
                def,
            },
        );
    }
    images
}

/// The feature folders of `features/`; problems of names and folders go to
/// `diags`, those of each feature to `owned`.
fn load_features(
    snapshot: &Snapshot,
    diags: &mut Vec<Diagnostic>,
    owned: &mut FileDiagnostics,
) -> BTreeMap<String, Feature> {
    let mut features = BTreeMap::new();
    for (name, dir, entry) in snapshot.children("features") {
        if entry.kind != EntryKind::Dir {
            continue;
        }
        let file_path = format!("{dir}/feature.toml");
        let Some(file) = snapshot.key(&file_path).cloned() else {
            diags.push(
                Diagnostic::warning(
                    "missing-feature-toml",
                    format!("feature folder `{dir}` has no feature.toml; it is not a feature"),
                )
                .at(Span::whole_file(dir), ""),
            );
            continue;
        };
        if !is_ident(name) {
            diags.push(
                Diagnostic::error(
                    "bad-name",
                    format!("bad feature name `{name}`: use lowercase letters, digits, `_` and `-`"),
                )
                .at(Span::whole_file(&file), ""),
            );
            continue;
        }
        let mut own = Vec::new();
        let def = parse_def(&file, snapshot.text(&file).unwrap_or(""), Context::Feature, &mut own);
        let content = scan_feature(snapshot, dir, &def, &mut own);
        owned.push((Arc::clone(&file), own));
        features.insert(
            name.to_string(),
            Feature {
                name: name.to_string(),
                dir: dir.to_string(),
                file,
                def,
                content,
            },
        );
    }
    features
}

/// The package lists of `lists/`, and the tagged ones of `lists/tagged/` in
/// file-name order.
fn load_lists(snapshot: &Snapshot, diags: &mut Vec<Diagnostic>) -> (BTreeMap<String, PackageList>, Vec<TaggedList>) {
    let mut lists = BTreeMap::new();
    let mut tagged = Vec::new();
    for (path, entry) in snapshot.walk("lists") {
        if entry.kind != EntryKind::File {
            continue;
        }
        let rel = &path["lists/".len()..];
        let text = snapshot.text(path).unwrap_or("");
        if let Some(tags) = rel.strip_prefix("tagged/") {
            if tags.contains('/') {
                diags.push(
                    Diagnostic::error(
                        "bad-tagged-list",
                        format!("tagged lists live directly in lists/tagged/, not in a subfolder: `{path}`"),
                    )
                    .at(Span::whole_file(path), ""),
                );
                continue;
            }
            let set: BTreeSet<String> = tags.split('+').map(str::to_string).collect();
            if let Some(bad) = set.iter().find(|t| !is_tag(t)) {
                diags.push(
                    Diagnostic::error(
                        "bad-tagged-list",
                        format!("bad tag `{bad}` in tagged list name `{tags}`: tags are [A-Za-z0-9_]+ joined by `+`"),
                    )
                    .at(Span::whole_file(path), ""),
                );
                continue;
            }
            tagged.push(TaggedList {
                tags: set,
                list: package_list(tags, path, text),
            });
        } else {
            lists.insert(rel.to_string(), package_list(rel, path, text));
        }
    }
    (lists, tagged)
}

/// The list `name` read from `path`, its entries without macros parsed.
fn package_list(name: &str, path: &Arc<str>, text: &str) -> PackageList {
    let entries = tokenize_list(path, text);
    let parsed = entries
        .iter()
        .map(|e| {
            if e.v.contains('%') {
                None
            } else {
                parse_pkg(&e.v).ok().map(PkgRef::from)
            }
        })
        .collect();
    PackageList {
        name: name.to_string(),
        file: Arc::clone(path),
        entries,
        parsed,
    }
}

fn parse_def(file: &Arc<str>, text: &str, ctx: Context, diags: &mut Vec<Diagnostic>) -> Def {
    match parse_toml(file, text, diags) {
        Some(table) => Reader { file, text, diags }.def(table.get_ref(), ctx),
        None => Def::empty(file, ctx),
    }
}

fn load_config(snapshot: &Snapshot, diags: &mut Vec<Diagnostic>) -> RepoConfig {
    let file: Arc<str> = snapshot.key(CONFIG_FILE).cloned().unwrap_or_else(|| CONFIG_FILE.into());
    let mut config = RepoConfig {
        file: Arc::clone(&file),
        defaults: Def::empty(&file, Context::Defaults),
        macros: Vec::new(),
    };
    let Some(text) = snapshot.text(CONFIG_FILE) else {
        return config;
    };
    let Some(table) = parse_toml(&file, text, diags) else {
        return config;
    };
    let mut reader = Reader {
        file: &file,
        text,
        diags,
    };
    for (key, value) in table.get_ref().iter() {
        match key.get_ref().as_ref() {
            "defaults" => match value.get_ref() {
                DeValue::Table(t) => config.defaults = reader.def(t, Context::Defaults),
                _ => reader.diags.push(
                    Diagnostic::error("wrong-type", "`defaults` must be a table")
                        .at(Span::new(&file, value.span()), "expected a table"),
                ),
            },
            "macros" => {
                // Same rules as an image's [macros]: read through a tiny image def.
                let mut wrapper = toml::de::DeTable::new();
                wrapper.insert(key.clone(), value.clone());
                let def = reader.def(&wrapper, Context::Image);
                config.macros = def.macros;
            }
            other => {
                let d = Diagnostic::error("unknown-field", format!("unknown field `{other}` in kiln.toml"))
                    .at(Span::new(&file, key.span()), "unknown field")
                    .help("kiln.toml has `[defaults]` and `[macros]`");
                reader.diags.push(d);
            }
        }
    }
    config
}

fn scripts_in(snapshot: &Snapshot, dir: &str, tagged: bool, diags: &mut Vec<Diagnostic>) -> Vec<ScriptItem> {
    let mut out = Vec::new();
    for (name, path, entry) in snapshot.children(dir) {
        if is_ignored_script_name(name) {
            continue;
        }
        if entry.kind == EntryKind::Dir {
            diags.push(
                Diagnostic::warning(
                    "ignored-entry",
                    format!("`{path}` is a folder; script folders hold only scripts, it is ignored"),
                )
                .at(Span::whole_file(path), ""),
            );
            continue;
        }
        let tags: Vec<String> = if tagged {
            let mut parts = name.split('+');
            parts.next();
            let tags: Vec<String> = parts.map(str::to_string).collect();
            if tags.is_empty() || tags.iter().any(|t| !is_tag(t)) {
                diags.push(
                    Diagnostic::error("bad-tagged-script", format!("tagged script `{name}` must be named NN+tag[+tag…] with tags [A-Za-z0-9_]+"))
                        .at(Span::whole_file(path), "")
                        .help("e.g. `01+rescue+cleanup` runs when feature `cleanup` is used and subprofile `rescue` is being built"),
                );
                continue;
            }
            tags
        } else {
            Vec::new()
        };
        out.push(ScriptItem {
            name: name.to_string(),
            source: Arc::clone(path),
            tags,
        });
    }
    out
}

fn scan_content(snapshot: &Snapshot, dir: &str, diags: &mut Vec<Diagnostic>) -> Content {
    let files_dir = format!("{dir}/files");
    let files = snapshot
        .walk(&files_dir)
        .filter(|(_, e)| e.kind != EntryKind::Dir)
        .map(|(path, e)| FileItem {
            dest: path[files_dir.len() + 1..].to_string(),
            source: Arc::clone(path),
            kind: e.kind.clone(),
            mode: e.mode,
        })
        .collect();
    Content {
        files,
        image_scripts: scripts_in(snapshot, &format!("{dir}/image-scripts.d"), false, diags),
        scripts: scripts_in(snapshot, &format!("{dir}/scripts.d"), false, diags),
    }
}

fn scan_feature(snapshot: &Snapshot, dir: &str, def: &Def, diags: &mut Vec<Diagnostic>) -> FeatureContent {
    let mut fc = FeatureContent {
        main: scan_content(snapshot, dir, diags),
        ..Default::default()
    };
    fc.tagged.image_scripts = scripts_in(snapshot, &format!("{dir}/tagged/image-scripts.d"), true, diags);
    fc.tagged.scripts = scripts_in(snapshot, &format!("{dir}/tagged/scripts.d"), true, diags);
    for (name, path, entry) in snapshot.children(&format!("{dir}/variants")) {
        if entry.kind != EntryKind::Dir {
            continue;
        }
        if def.variant(name).is_none() {
            diags.push(
                Diagnostic::error(
                    "unknown-variant",
                    format!(
                        "folder `{path}` belongs to no variant: {}/feature.toml has no `[variants.{name}]`",
                        dir
                    ),
                )
                .at(Span::whole_file(path), ""),
            );
            continue;
        }
        fc.variants
            .insert(name.to_string(), scan_content(snapshot, path, diags));
    }
    for (name, path, entry) in snapshot.children(dir) {
        if entry.kind != EntryKind::Dir || RESERVED_FEATURE_DIRS.contains(&name) {
            continue;
        }
        fc.subprofiles
            .insert(name.to_string(), scan_content(snapshot, path, diags));
    }
    fc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_small_repo() {
        let mut s = Snapshot::new();
        s.add_file("kiln.toml", "[defaults]\nversion = \"1\"\n[macros]\ndist = \".k1\"\n")
            .add_file("images/ve/a.toml", "kind = \"ve\"\n")
            .add_file(
                "features/ssh/feature.toml",
                "packages = [\"openssh-server\"]\n[variants.x]\n",
            )
            .add_file("features/ssh/files/etc/motd", "hi")
            .add_script("features/ssh/image-scripts.d/10-keys")
            .add_script("features/ssh/image-scripts.d/.hidden")
            .add_script("features/ssh/tagged/image-scripts.d/01+live+ssh")
            .add_file("features/ssh/variants/x/files/etc/x", "")
            .add_file("features/ssh/live/files/etc/live", "")
            .add_file("lists/base", "less\n")
            .add_file("lists/tagged/a+b", "curl\n");
        let repo = Repo::load(s);
        assert_eq!(repo.diagnostics, []);
        assert_eq!(repo.config.macros[0].0.v, "dist");
        let f = &repo.features["ssh"];
        assert_eq!(f.content.main.files[0].dest, "etc/motd");
        assert_eq!(f.content.main.image_scripts.len(), 1);
        assert_eq!(f.content.tagged.image_scripts[0].tags, ["live", "ssh"]);
        assert!(f.content.variants.contains_key("x"));
        assert_eq!(f.content.subprofiles["live"].files[0].dest, "etc/live");
        assert_eq!(
            repo.tagged[0].tags.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(repo.images.contains_key("ve/a"));
    }

    #[test]
    fn reports_bad_tagged_names_and_stray_variant_folders() {
        let mut s = Snapshot::new();
        s.add_file("features/f/feature.toml", "")
            .add_file("features/f/variants/nope/files/x", "")
            .add_script("features/f/tagged/scripts.d/01")
            .add_file("lists/tagged/a+b-c", "");
        let repo = Repo::load(s);
        let mut codes: Vec<_> = repo.diagnostics.iter().map(|d| d.code).collect();
        codes.sort();
        assert_eq!(codes, ["bad-tagged-list", "bad-tagged-script", "unknown-variant"]);
    }
}
