//! The image-scripts stage (inside the image, through the sandbox) and the
//! scripts stage (build side, the host's tools in a sandbox of their own):
//! each script staged as a kiln-owned copy, run, and recorded for the
//! manifest.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_core::plan::Script;
use kiln_core::stagekey::Stage;

use crate::manifest::ScriptRecord;
use crate::run::interrupted;
use crate::{BuildError, Engine, HOST_VIEW_REPO, HOST_VIEW_ROOT, InsideRun, fsutil, script_env, step_timeout, tree};

const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

impl Engine<'_> {
    fn script_source(&self, s: &Script, stage: Stage) -> Result<PathBuf, BuildError> {
        match (&s.path, &s.git) {
            (Some(p), _) => Ok(self.req.repo.join(p)),
            (None, Some(g)) => match self.remote.get(&kiln_core::stagekey::remote_key(g)) {
                Some(f) => Ok(f.path.clone()),
                None => Err(self.fail(stage, Some(&s.name), None, "remote script was not fetched".into())),
            },
            (None, None) => Err(self.fail(stage, Some(&s.name), None, "script without a source".into())),
        }
    }

    fn record_script(&mut self, stage: Stage, s: &Script, source: &Path, sub: Option<&str>, seconds: f64) {
        self.scripts.push(ScriptRecord {
            stage,
            name: s.name.clone(),
            path: s.path.clone(),
            feature: s.feature.clone(),
            git: s.git.clone(),
            subprofile: sub.map(str::to_string),
            commit: s
                .git
                .as_ref()
                .and_then(|g| self.remote.get(&kiln_core::stagekey::remote_key(g)))
                .map(|f| f.commit.clone()),
            sha256: fsutil::sha256_file(source).unwrap_or_default(),
            seconds,
        });
    }

    pub(crate) fn image_scripts(
        &mut self,
        root: &Path,
        scripts: &[Script],
        sub: Option<&str>,
    ) -> Result<(), BuildError> {
        if scripts.is_empty() {
            return Ok(());
        }
        // Package scripts must not start daemons in the image (docs/sandbox.md).
        // Written and removed inside the tree's root: a /usr/sbin that is a
        // symlink leads elsewhere in the tree, never onto the host.
        let tree = tree::Tree::open(root).map_err(self.io(Stage::ImageScripts, "cannot open the tree".into()))?;
        let had_policy = tree.exists(POLICY_RC_D);
        if !had_policy {
            tree.create_file(POLICY_RC_D, 0o755, &mut &b"#!/bin/sh\nexit 101\n"[..])
                .map_err(self.io(Stage::ImageScripts, "cannot write policy-rc.d".into()))?;
        }
        let result = self.run_image_scripts(root, scripts, sub);
        if !had_policy {
            let _ = tree.remove_file(POLICY_RC_D);
        }
        result
    }

    /// A kiln-owned copy of a script: read from the repository without
    /// following any symlink (or from the git mirror), so what runs is
    /// exactly what was hashed.
    fn staged_script(&self, s: &Script, stage: Stage) -> Result<(PathBuf, bool), BuildError> {
        let dir = self.work.join("scripts");
        fs::create_dir_all(&dir).map_err(self.io(stage, format!("cannot create {}", dir.display())))?;
        let staged = dir.join(&s.name);
        let mut source = match (&s.path, &s.git) {
            (Some(p), _) => tree::Tree::open(&self.req.repo)
                .and_then(|repo| repo.read_regular(p))
                .map_err(|e| self.fail(stage, Some(&s.name), None, format!("cannot read script {p}: {e}")))?,
            _ => {
                let path = self.script_source(s, stage)?;
                fs::File::open(&path).map_err(self.io(stage, format!("cannot read {}", path.display())))?
            }
        };
        let executable = source.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        let _ = fs::remove_file(&staged);
        let mut out =
            fs::File::create(&staged).map_err(self.io(stage, format!("cannot write {}", staged.display())))?;
        std::io::copy(&mut source, &mut out).map_err(self.io(stage, format!("cannot copy script {}", s.name)))?;
        Ok((staged, executable))
    }

    fn run_image_scripts(&mut self, root: &Path, scripts: &[Script], sub: Option<&str>) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        for s in scripts {
            let (source, executable) = self.staged_script(s, Stage::ImageScripts)?;
            let inside_path = format!("/run/kiln/scripts/{}", s.name);
            let mut env = script_env(&plan, self.req.source_date_epoch, &[("KILN_SCRIPT", s.name.clone())]);
            if let Some(sub) = sub {
                env.push(("KILN_SUBPROFILE".into(), sub.to_string()));
            }
            let argv = if executable {
                vec![inside_path.clone()]
            } else {
                vec!["/bin/sh".to_string(), inside_path.clone()]
            };
            let mut req = InsideRun::image(root, argv, env, Some(step_timeout(&plan)));
            req.network = plan.build.network.value;
            req.copies = vec![(source.clone(), inside_path.clone(), 0o755)];
            let step = format!("{} ({})", s.name, s.feature.as_deref().unwrap_or("image"));
            self.log.reset_tail();
            self.log.reporter().step(&step);
            self.log.note(&format!("$ [inside] {}", req.argv.join(" ")));
            let start = Instant::now();
            let ended = self.run_inside(&req).map_err(|m| {
                self.fail(
                    Stage::ImageScripts,
                    Some(&step),
                    Some(format!("{} (inside the image)", req.argv.join(" "))),
                    m,
                )
            })?;
            if !ended.success() {
                let err = self.fail(
                    Stage::ImageScripts,
                    Some(&step),
                    Some(format!(
                        "{} (inside the image, from {})",
                        req.argv.join(" "),
                        s.path.as_deref().unwrap_or(&s.name)
                    )),
                    format!("script `{}` {}", s.name, ended.describe()),
                );
                if self.req.shell_on_failure && !interrupted() {
                    self.shell(root, &req);
                }
                return Err(err);
            }
            self.record_script(Stage::ImageScripts, s, &source, sub, start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// `--shell-on-failure`: an interactive shell in the sandbox where the
    /// failing script ran.
    fn shell(&mut self, root: &Path, failed: &InsideRun) {
        eprintln!("kiln: opening a shell in the image at the failing point; exit it to end the build");
        let mut req = failed.clone();
        req.root = root.to_path_buf();
        req.argv = vec!["/bin/sh".to_string(), "-i".to_string()];
        req.timeout = None;
        req.interactive = true;
        req.env.push(("PS1".into(), "kiln-failed# ".into()));
        let _ = self.run_inside(&req);
    }

    /// Build-side scripts (docs/sandbox.md): the host's tools in a sandbox
    /// of their own, the tree at `$KILN_ROOT` (writable), the repository
    /// read-only as the working directory, nothing else of the host.
    pub(crate) fn build_scripts(
        &mut self,
        root: &Path,
        scripts: &[Script],
        sub: Option<&str>,
    ) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        for s in scripts {
            let (source, executable) = self.staged_script(s, Stage::Scripts)?;
            let inside_path = format!("/run/kiln/scripts/{}", s.name);
            let mut extra = vec![
                ("KILN_ROOT", HOST_VIEW_ROOT.to_string()),
                ("KILN_SCRIPT", s.name.clone()),
            ];
            if let Some(sub) = sub {
                extra.push(("KILN_SUBPROFILE", sub.to_string()));
            }
            let env = script_env(&plan, self.req.source_date_epoch, &extra);
            let argv = if executable {
                vec![inside_path.clone()]
            } else {
                vec!["/bin/sh".to_string(), inside_path.clone()]
            };
            let req = self.host_view(
                argv,
                env,
                vec![
                    (root.to_path_buf(), HOST_VIEW_ROOT.into(), false),
                    (self.req.repo.clone(), HOST_VIEW_REPO.into(), true),
                ],
                vec![(source.clone(), inside_path.clone(), 0o755)],
                plan.build.network.value,
            )?;
            let step = format!("{} ({})", s.name, s.feature.as_deref().unwrap_or("image"));
            self.log.reset_tail();
            self.log.reporter().step(&step);
            self.log.note(&format!("$ [build side] {}", req.argv.join(" ")));
            let start = Instant::now();
            let command = format!(
                "{} (build side, from {})",
                req.argv.join(" "),
                s.path.as_deref().unwrap_or(&s.name)
            );
            let ended = self
                .run_inside(&req)
                .map_err(|m| self.fail(Stage::Scripts, Some(&step), Some(command.clone()), m))?;
            if !ended.success() {
                return Err(self.fail(
                    Stage::Scripts,
                    Some(&step),
                    Some(command),
                    format!("script `{}` {}", s.name, ended.describe()),
                ));
            }
            self.record_script(Stage::Scripts, s, &source, sub, start.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
