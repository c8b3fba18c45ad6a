//! The packages stage (docs/profiles.md): a source image's package set
//! installed, and what the image removes but the base installed purged,
//! after apt's simulation showed the purge takes nothing the image wants.

use std::fs;

use kiln_core::stagekey::Stage;

use crate::hostside::dpkg_status;
use crate::{BuildError, Engine, InsideRun, dpkg, script_env, step_timeout};

impl Engine<'_> {
    /// The removals (`remove`, `!pkg`) that the base still has installed:
    /// brought in by the variant or as a dependency, not by the package set.
    fn packages_to_purge(&self) -> Option<Vec<String>> {
        if self.plan().removed.is_empty() {
            return None;
        }
        let status = dpkg_status(&self.root);
        let installed: std::collections::HashSet<String> =
            dpkg::parse_status(&status).into_iter().map(|p| p.name).collect();
        let purge: Vec<String> = self
            .plan()
            .removed
            .iter()
            .filter(|r| installed.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        (!purge.is_empty()).then_some(purge)
    }

    /// The packages stage (docs/profiles.md): purge what the image removes but the
    /// base installed. apt's simulation runs first, so a removal that would
    /// take a package of the image with it fails before anything changes.
    pub(crate) fn packages(&mut self) -> Result<(), BuildError> {
        if self.source.is_some() && !self.plan().packages.is_empty() {
            self.install_packages()?;
        }
        let Some(purge) = self.packages_to_purge() else {
            return Ok(());
        };
        let simdir = self.work.join("packages");
        fs::create_dir_all(&simdir).map_err(self.io(Stage::Packages, "cannot create the work directory".into()))?;
        self.purge_step(
            &purge,
            "apt-get -s purge",
            "apt-get -s -q purge \"$@\" > /run/kiln/packages/simulation",
        )?;
        let sim = fs::read_to_string(simdir.join("simulation"))
            .map_err(self.io(Stage::Packages, "cannot read apt's simulation".into()))?;
        self.log.output(sim.as_bytes());
        self.check_simulation(&purge, &sim)?;
        self.purge_step(&purge, "apt-get purge", "apt-get purge -y -q \"$@\"")?;
        let _ = fs::remove_dir_all(&simdir);
        Ok(())
    }

    /// One apt run of the purge, inside the image: `script` with the
    /// packages to purge as its arguments, the work directory at
    /// `/run/kiln/packages`.
    fn purge_step(&mut self, purge: &[String], step: &str, script: &str) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            script.to_string(),
            "kiln-packages".to_string(),
        ];
        argv.extend(purge.iter().cloned());
        let mut req = InsideRun::image(
            &self.root,
            argv,
            script_env(&plan, self.req.source_date_epoch, &[]),
            Some(step_timeout(&plan)),
        );
        req.binds = vec![(self.work.join("packages"), "/run/kiln/packages".into(), false)];
        self.log.reset_tail();
        self.log.reporter().step(step);
        self.log.note(&format!("$ [inside] {step} {}", purge.join(" ")));
        let ended = self
            .run_inside(&req)
            .map_err(|m| self.fail(Stage::Packages, Some(step), None, m))?;
        if ended.success() {
            Ok(())
        } else {
            Err(self.fail(
                Stage::Packages,
                Some(step),
                Some(format!("{step} {} (inside the image)", purge.join(" "))),
                format!("removing {} {}", purge.join(", "), ended.describe()),
            ))
        }
    }

    /// Fails when apt's simulation of the purge removes an essential
    /// package or one the image installs.
    fn check_simulation(&self, purge: &[String], sim: &str) -> Result<(), BuildError> {
        if sim.contains("essential packages will be removed") {
            return Err(self.fail(
                Stage::Packages,
                Some("apt-get -s purge"),
                None,
                format!(
                    "removing {} would remove packages Debian marks essential; apt refuses that",
                    purge.join(", ")
                ),
            ));
        }
        let wanted: std::collections::HashSet<&str> = self.plan().packages.iter().map(|p| p.name.as_str()).collect();
        let mut taken: Vec<&str> = sim
            .lines()
            .filter_map(|l| l.strip_prefix("Purg ").or_else(|| l.strip_prefix("Remv ")))
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| n.split(':').next().unwrap_or(n))
            .filter(|n| wanted.contains(n))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        if taken.is_empty() {
            return Ok(());
        }
        Err(self.fail(
            Stage::Packages,
            Some("apt-get -s purge"),
            None,
            format!(
                "removing {} would also remove {}, which the image installs; \
                 drop the removal or the package",
                purge.join(", "),
                taken.join(", ")
            ),
        ))
    }

    /// A source image's packages: the image's package set, installed with
    /// apt inside (with the network, which the package manager needs).
    fn install_packages(&mut self) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let names: Vec<String> = plan.packages.iter().map(|p| p.name.clone()).collect();
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "set -e\napt-get update -q\napt-get install -y -q --no-install-recommends \"$@\"\n".to_string(),
            "kiln-packages".to_string(),
        ];
        argv.extend(names.iter().cloned());
        let mut req = InsideRun::image(
            &self.root,
            argv,
            script_env(&plan, self.req.source_date_epoch, &[]),
            Some(step_timeout(&plan)),
        );
        req.network = true;
        self.log.reset_tail();
        self.log.reporter().step("apt-get install");
        self.log
            .note(&format!("$ [inside] apt-get install {}", names.join(" ")));
        let ended = self
            .run_inside(&req)
            .map_err(|m| self.fail(Stage::Packages, Some("apt-get install"), None, m))?;
        if ended.success() {
            Ok(())
        } else {
            Err(self.fail(
                Stage::Packages,
                Some("apt-get install"),
                Some(format!("apt-get install {} (inside the image)", names.join(" "))),
                format!("installing the image's packages {}", ended.describe()),
            ))
        }
    }
}
