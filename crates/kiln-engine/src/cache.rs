//! The stage cache as the engine uses it (docs/cache.md): each tree step
//! looked up by its key and restored as a layer, or run on an overlay of
//! the layers so far and stored; `--rebuild-from` forcing a step and every
//! later one; outputs copied from the cache and verified, or made and
//! stored; and the unchanged rebuild that copies every output out without
//! running a stage.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use kiln_core::stagekey::{Stage, StageId, StageKey};
use kiln_store::Lookup;

use crate::manifest::{OutputRecord, ScriptRecord, StepRecord};
use crate::{BuildError, Engine, dpkg, fsutil};

impl Engine<'_> {
    fn cache_err(&self, k: &StageKey) -> impl Fn(kiln_store::StoreError) -> BuildError + '_ {
        let (stage, step) = (k.id.kind(), k.step.clone());
        move |e| self.fail(stage, step.as_deref(), None, format!("stage cache: {e}"))
    }

    /// Notes when `--rebuild-from` reaches `k`: from there on nothing comes
    /// from the cache.
    fn note_rebuild_from(&mut self, k: &StageKey) {
        if let Some(r) = &self.req.rebuild_from
            && r.starts_at(k)
        {
            self.forced = true;
        }
    }

    pub(crate) fn step_done(&mut self, k: &StageKey, status: &'static str, start: Instant) {
        let label = k.step.clone().unwrap_or_else(|| k.id.kind().to_string());
        if status == "cached" {
            self.log.reporter().step(&format!("{label} (cached)"));
        }
        self.log.note(&format!("{label}: {status} (key {})", &k.key[..16]));
        self.steps.push(StepRecord {
            step: k.step.clone(),
            key: k.key.clone(),
            status,
            seconds: start.elapsed().as_secs_f64(),
        });
    }

    /// Brings back what a cached stage contributed to the manifest.
    fn restore(&mut self, record: &serde_json::Value) {
        if let Some(b) = record.get("base").and_then(|b| serde_json::from_value(b.clone()).ok()) {
            self.base = Some(b);
        }
        if let Some(s) = record
            .get("scripts")
            .and_then(|s| serde_json::from_value::<Vec<ScriptRecord>>(s.clone()).ok())
        {
            self.scripts.extend(s);
        }
    }

    /// One tree step: from the cache when its entry is there and intact,
    /// else run on an overlay of the layers so far with a new upper layer
    /// (the base: into a new directory), then stored.
    pub(crate) fn tree_step(&mut self, k: &StageKey) -> Result<(), BuildError> {
        let start = Instant::now();
        self.note_rebuild_from(k);
        let Some(cache) = self.req.cache.clone() else {
            self.root = self.work.join("root");
            self.run_step(&k.id)?;
            if self.layers.is_empty() {
                self.layers.push(self.root.clone());
            }
            self.step_done(k, "built", start);
            return Ok(());
        };
        if !self.forced {
            match cache.lookup(&k.key, true).map_err(self.cache_err(k))? {
                Lookup::Hit(e) => {
                    self.restore(&e.meta.record);
                    self.layers.push(e.layer());
                    self.held.push(*e);
                    self.step_done(k, "cached", start);
                    return Ok(());
                }
                Lookup::Corrupt(why) => self
                    .log
                    .note(&format!("cache entry {} discarded ({why}); rebuilding", &k.key[..16])),
                Lookup::Miss => {}
            }
        }
        let pending = cache.begin(&k.key).map_err(self.cache_err(k))?;
        let scripts_before = self.scripts.len();
        if k.id == StageId::Base {
            self.root = pending.layer();
            self.run_step(&k.id)?;
        } else {
            self.run_on_overlay(k, pending.layer(), pending.overlay_work())?;
        }
        let record = serde_json::json!({
            "scripts": &self.scripts[scripts_before..],
            "base": if k.id == StageId::Base { serde_json::to_value(&self.base).unwrap_or_default() } else { serde_json::Value::Null },
        });
        let meta = self.new_meta("layer", k, record, Vec::new());
        let entry = cache.publish(pending, meta).map_err(self.cache_err(k))?;
        self.layers.push(entry.layer());
        self.held.push(entry);
        self.step_done(k, "built", start);
        Ok(())
    }

    /// Runs the step of `k` on an overlay of the layers so far, its changes
    /// going to `upper`.
    fn run_on_overlay(&mut self, k: &StageKey, upper: PathBuf, ovl_work: PathBuf) -> Result<(), BuildError> {
        let merged = self.work.join("merged");
        fs::create_dir_all(&merged).map_err(self.io(k.id.kind(), format!("cannot create {}", merged.display())))?;
        let lowers = self.layers.clone();
        self.mount_overlay(lowers, upper, ovl_work, merged.clone())
            .map_err(|e| self.fail(k.id.kind(), k.step.as_deref(), None, e))?;
        self.root = merged.clone();
        let r = self.run_step(&k.id);
        if r.is_err() && self.req.keep_workdir {
            // The merged tree ends with the mount: keep a copy.
            self.host.copy_tree(&merged, &self.work.join("root"));
        }
        self.overlay = None;
        r
    }

    fn new_meta(
        &self,
        kind: &str,
        k: &StageKey,
        record: serde_json::Value,
        files: Vec<kiln_store::FileMeta>,
    ) -> kiln_store::Meta {
        kiln_store::Meta {
            key: String::new(),
            kind: kind.to_string(),
            stage: k.id.kind().to_string(),
            step: k.step.clone(),
            image: self.plan().image.clone(),
            created: 0,
            size: 0,
            digest: String::new(),
            record,
            files,
        }
    }

    /// The finished tree, read-only, for the outputs.
    pub(crate) fn mount_tree(&mut self) -> Result<(), BuildError> {
        if self.req.cache.is_none() {
            self.root = self.work.join("root");
            return Ok(());
        }
        let merged = self.work.join("merged");
        fs::create_dir_all(&merged).map_err(self.io(Stage::Outputs, format!("cannot create {}", merged.display())))?;
        let m = self
            .host
            .mount_read_only(&self.layers, &merged)
            .map_err(|e| self.fail(Stage::Outputs, None, None, e.to_string()))?;
        self.tree_mount = Some(m);
        self.root = merged;
        Ok(())
    }

    fn output_key(&self, id: &StageId) -> Option<StageKey> {
        self.keys.iter().find(|k| &k.id == id).cloned()
    }

    /// An unchanged rebuild: every output is in the cache, so no stage
    /// runs; the files are copied out and verified against their sha256.
    pub(crate) fn fast_outputs(&mut self) -> Result<bool, BuildError> {
        let Some(cache) = self.req.cache.clone() else {
            return Ok(false);
        };
        if self.req.rebuild_from.is_some() || self.plan().outputs.iter().any(|o| o.format == "dir") {
            return Ok(false);
        }
        let wanted: Vec<StageKey> = self.keys.iter().filter(|k| !k.id.is_tree()).cloned().collect();
        let mut hits = Vec::new();
        for k in &wanted {
            match cache.lookup(&k.key, false).map_err(self.cache_err(k))? {
                Lookup::Hit(e) => hits.push(*e),
                _ => return Ok(false),
            }
        }
        // Copy and verify every output before reporting anything.
        let mut steps = Vec::new();
        for (k, entry) in wanted.iter().zip(&hits) {
            let start = Instant::now();
            if !self.copy_cached(k, entry)? {
                // A cached output was damaged (and is discarded now): build.
                self.log.note("a cached output did not verify; building the stages");
                for o in std::mem::take(&mut self.outputs) {
                    let _ = fs::remove_file(self.partial.join(&o.file));
                }
                return Ok(false);
            }
            steps.push((k.clone(), start));
        }
        for (kind, group) in self.tree_groups() {
            self.stage(kind, |e| {
                for k in &group {
                    e.step_done(k, "cached", Instant::now());
                }
                Ok(())
            })?;
        }
        self.stage(Stage::Outputs, |e| {
            for (k, start) in &steps {
                e.step_done(k, "cached", *start);
            }
            Ok(())
        })?;
        if let Some(first) = hits.first() {
            let rec = first.meta.record.clone();
            self.restore(&rec);
            self.packages = rec.get("packages").and_then(|p| serde_json::from_value(p.clone()).ok());
        }
        self.held.extend(hits);
        Ok(true)
    }

    /// Copies a cached output into the partial directory, hashing as it
    /// goes; false (and the entry discarded) when it does not verify.
    fn copy_cached(&mut self, k: &StageKey, entry: &kiln_store::Entry) -> Result<bool, BuildError> {
        let Some(fm) = entry.meta.files.first().cloned() else {
            return Ok(false);
        };
        let dest = self.partial.join(&fm.name);
        let sha = fsutil::copy_hashed(&entry.file(&fm.name), &dest)
            .map_err(self.io(Stage::Outputs, format!("cannot copy {} from the cache", fm.name)))?;
        if sha != fm.sha256 {
            let _ = fs::remove_file(&dest);
            // Rebuilt, it replaces the damaged entry when published.
            self.log
                .note(&format!("cached {} does not match its sha256; discarding it", fm.name));
            return Ok(false);
        }
        let (format, sub) = self.output_identity(&k.id);
        self.outputs.push(OutputRecord {
            file: fm.name.clone(),
            format,
            subprofile: sub,
            size: fm.size,
            sha256: sha,
        });
        Ok(true)
    }

    fn output_identity(&self, id: &StageId) -> (String, Option<String>) {
        match id {
            StageId::Output(i) => (self.plan().outputs[*i].format.clone(), None),
            StageId::Subprofile(i) => ("squashfs".into(), Some(self.plan().subprofiles[*i].name.clone())),
            _ => (String::new(), None),
        }
    }

    /// What every output entry records, so an unchanged rebuild can write
    /// the manifest without the tree.
    fn tree_record(&self) -> serde_json::Value {
        let status = fs::read_to_string(self.root.join("var/lib/dpkg/status")).unwrap_or_default();
        serde_json::json!({
            "base": self.base,
            "scripts": self.scripts.iter().filter(|s| s.subprofile.is_none()).collect::<Vec<_>>(),
            "packages": dpkg::parse_status(&status),
        })
    }

    /// An output from the cache when there (verified while copied), else
    /// `make` writes it and it is stored.
    pub(crate) fn cached_output(
        &mut self,
        id: StageId,
        file: &str,
        make: impl FnOnce(&mut Self) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let start = Instant::now();
        let key = self.output_key(&id);
        let cacheable =
            self.req.cache.is_some() && !(matches!(id, StageId::Output(i) if self.plan().outputs[i].format == "dir"));
        if let (Some(k), true) = (&key, cacheable) {
            self.note_rebuild_from(k);
            if !self.forced
                && let Some(cache) = self.req.cache.clone()
                && let Lookup::Hit(e) = cache.lookup(&k.key, false).map_err(self.cache_err(k))?
                && self.copy_cached(k, &e)?
            {
                self.step_done(k, "cached", start);
                return Ok(());
            }
        }
        make(self)?;
        let (format, sub) = self.output_identity(&id);
        let dest = self.partial.join(file);
        self.record_output(file, &format, sub.as_deref(), &dest)?;
        if let (Some(k), true, Some(cache)) = (&key, cacheable, self.req.cache.clone()) {
            self.store_output(&cache, k, file, &dest)?;
        }
        if let Some(k) = &key {
            self.step_done(k, "built", start);
        }
        Ok(())
    }

    /// Stores the output just written at `dest` as the entry of `k`.
    fn store_output(
        &mut self,
        cache: &kiln_store::Cache,
        k: &StageKey,
        file: &str,
        dest: &std::path::Path,
    ) -> Result<(), BuildError> {
        let pending = cache.begin(&k.key).map_err(self.cache_err(k))?;
        // A copy (a reflink where the file system shares extents), never
        // a hard link: the user's file and the cache must not change
        // together.
        let stored = pending.files().join(file);
        fs::copy(dest, &stored).map_err(self.io(Stage::Outputs, format!("cannot store {file} in the cache")))?;
        let rec = self.outputs.last().cloned();
        let files = rec
            .map(|r| kiln_store::FileMeta {
                name: r.file,
                size: r.size,
                sha256: r.sha256,
            })
            .into_iter()
            .collect();
        let meta = self.new_meta("files", k, self.tree_record(), files);
        cache.publish(pending, meta).map_err(self.cache_err(k))?;
        Ok(())
    }
}
