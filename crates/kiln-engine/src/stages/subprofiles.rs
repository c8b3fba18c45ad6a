//! Subprofiles (docs/profiles.md): the image tree plus a subprofile's
//! packages, files and scripts in an overlay of their own (nothing of the
//! image is copied), written as a squashfs in the outputs stage.

use std::fs;
use std::path::Path;

use kiln_core::plan::Subprofile;
use kiln_core::stagekey::{Stage, StageId};

use crate::{BuildError, Engine, InsideRun, args, cleanup, fsutil, script_env, step_timeout};

impl Engine<'_> {
    /// The squashfs of subprofile `i` (with the image's squashfs options),
    /// from the cache or built.
    pub(crate) fn subprofile(&mut self, i: usize, sub: &Subprofile) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let epoch = self.req.source_date_epoch;
        let dest = self.partial.join(&sub.file);
        let sq = plan
            .outputs
            .iter()
            .find(|o| o.format == "squashfs")
            .cloned()
            .unwrap_or(kiln_core::plan::Output {
                format: "squashfs".into(),
                file: sub.file.clone(),
                options: Default::default(),
            });
        self.cached_output(StageId::Subprofile(i), &sub.file, |e| {
            let dir = e.work.join(format!("sub-{}", sub.name));
            let (upper, ovl_work, tree) = (dir.join("upper"), dir.join("work"), dir.join("tree"));
            for d in [&upper, &ovl_work, &tree] {
                fs::create_dir_all(d).map_err(e.io(Stage::Outputs, format!("cannot create {}", d.display())))?;
            }
            // The image tree plus the subprofile's additions, in an
            // overlay: nothing of the image is copied.
            let lowers = e.layers.clone();
            e.mount_overlay(lowers, upper, ovl_work, tree.clone())
                .map_err(|m| e.fail(Stage::Outputs, Some(&sub.name), None, m))?;
            let r = e.subprofile_tree(&tree, sub).and_then(|()| {
                let cmd = args::mksquashfs(&sq, &tree, &dest, epoch, e.req.jobs);
                e.run_tool(
                    Stage::Outputs,
                    &format!("{} (subprofile {})", sub.file, sub.name),
                    &cmd,
                    None,
                )
            });
            e.overlay = None;
            let _ = fs::remove_dir_all(&dir);
            r
        })
    }

    fn subprofile_tree(&mut self, tree: &Path, sub: &Subprofile) -> Result<(), BuildError> {
        if !sub.packages.is_empty() || !sub.removed.is_empty() {
            self.subprofile_packages(tree, sub)?;
        }
        self.install_files(tree, &sub.files)?;
        self.image_scripts(tree, &sub.image_scripts, Some(&sub.name))?;
        self.build_scripts(tree, &sub.scripts, Some(&sub.name))?;
        if self.plan().build.cleanup.value {
            cleanup(tree).map_err(self.io(Stage::Outputs, "cannot clean the subprofile tree".into()))?;
        }
        if let Some(epoch) = self.req.source_date_epoch {
            fsutil::clamp_mtimes(tree, epoch).map_err(self.io(Stage::Outputs, "cannot clamp mtimes".into()))?;
        }
        Ok(())
    }

    /// The subprofile's packages installed and its removals purged, with
    /// apt inside its tree.
    fn subprofile_packages(&mut self, tree: &Path, sub: &Subprofile) -> Result<(), BuildError> {
        let step = format!("subprofile {}", sub.name);
        let plan = self.plan().clone();
        let install: Vec<String> = sub.packages.iter().map(|p| p.name.clone()).collect();
        let purge: Vec<String> = sub.removed.iter().map(|r| r.name.clone()).collect();
        let mut script = String::from("set -e\napt-get update -q\n");
        if !install.is_empty() {
            script += &format!("apt-get install -y -q --no-install-recommends {}\n", install.join(" "));
        }
        if !purge.is_empty() {
            script += &format!("apt-get purge -y -q {}\n", purge.join(" "));
        }
        script += "apt-get clean\nrm -rf /var/lib/apt/lists/*\n";
        let mut req = InsideRun::image(
            tree,
            vec!["/bin/sh".into(), "-c".into(), script],
            script_env(
                &plan,
                self.req.source_date_epoch,
                &[("KILN_SUBPROFILE", sub.name.clone())],
            ),
            Some(step_timeout(&plan)),
        );
        // The package manager needs the mirror; scripts do not get it.
        req.network = true;
        let ended = self
            .run_inside(&req)
            .map_err(|m| self.fail(Stage::Outputs, Some(&step), None, m))?;
        if !ended.success() {
            return Err(self.fail(
                Stage::Outputs,
                Some(&step),
                Some("apt-get (inside the subprofile tree)".into()),
                format!(
                    "installing the packages of subprofile `{}` {}",
                    sub.name,
                    ended.describe()
                ),
            ));
        }
        Ok(())
    }
}
