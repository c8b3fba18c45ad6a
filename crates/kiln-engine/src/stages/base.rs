//! The base stage: the tree bootstrapped with mmdebstrap in the sandbox's
//! host view, or a `[base] from` source image unpacked (docs/update.md).

use std::fs;
use std::path::Path;

use kiln_core::stagekey::Stage;

use crate::args::{self, Cmd};
use crate::manifest::BaseRecord;
use crate::{BuildError, Engine, HOST_VIEW_ROOT, base_env, tree};

impl Engine<'_> {
    /// A `[base] from` image: the source image's tree (docs/update.md).
    fn source_base(&mut self) -> Result<(), BuildError> {
        let Some((img, blob)) = self.source.clone() else {
            return Err(self.fail(Stage::Base, None, None, "the source image was not resolved".into()));
        };
        let root = self.root.clone();
        fs::create_dir_all(&root).map_err(self.io(Stage::Base, format!("cannot create {}", root.display())))?;
        self.log.reporter().step(&img.reference());
        let unsquashfs = |from: &Path| Cmd {
            program: "unsquashfs",
            args: vec![
                "-f".into(),
                "-q".into(),
                "-n".into(),
                "-d".into(),
                root.clone().into(),
                from.into(),
            ],
            env: Vec::new(),
        };
        match img.format {
            kiln_store::catalog::Format::Squashfs => {
                self.run_tool(Stage::Base, &img.reference(), &unsquashfs(&blob), None)?;
            }
            kiln_store::catalog::Format::Iso => {
                // The medium's live squashfs, copied out with xorriso.
                let fail = |e: &Self, m: String| e.fail(Stage::Base, Some(&img.reference()), None, m);
                let files = kiln_store::iso::list(&blob).map_err(|m| fail(self, m))?;
                let layout = kiln_core::iso::layout(&files).map_err(|m| fail(self, m))?;
                let sq = self.work.join("source.squashfs");
                let extract = args::xorriso_extract(&blob, &layout.root.path, &sq);
                self.run_tool(Stage::Base, &img.reference(), &extract, None)?;
                match kiln_store::image_check::check(&sq) {
                    Ok(c) if c.format == kiln_store::catalog::Format::Squashfs => {}
                    Ok(c) => {
                        return Err(fail(
                            self,
                            format!("/{} is {}, not a squashfs", layout.root.path, c.format.ext()),
                        ));
                    }
                    Err(e) => return Err(fail(self, format!("/{}: {e}", layout.root.path))),
                }
                let r = self.run_tool(Stage::Base, &img.reference(), &unsquashfs(&sq), None);
                let _ = fs::remove_file(&sq);
                r?;
            }
            kiln_store::catalog::Format::Erofs => {
                let cmd = Cmd {
                    program: "fsck.erofs",
                    args: vec![
                        format!("--extract={}", root.display()).into(),
                        "--overwrite".into(),
                        blob.clone().into(),
                    ],
                    env: Vec::new(),
                };
                self.run_tool(Stage::Base, &img.reference(), &cmd, None)?;
            }
            _ => {
                let f =
                    fs::File::open(&blob).map_err(self.io(Stage::Base, format!("cannot open {}", blob.display())))?;
                let stream = kiln_tar::extract::decompressed(f)
                    .map_err(self.io(Stage::Base, "cannot read the source".into()))?;
                kiln_tar::extract::extract(stream, &root)
                    .map_err(|e| self.fail(Stage::Base, Some(&img.reference()), None, e.to_string()))?;
            }
        }
        self.log.note(&format!(
            "base: {} ({}, sha256 {})",
            img.reference(),
            img.format.ext(),
            img.sha256
        ));
        self.base = Some(BaseRecord::Source {
            from: img.reference(),
            sha256: img.sha256.clone(),
        });
        Ok(())
    }

    /// The base stage: the bootstrap, with the mirror's release digests
    /// recorded; or the source image.
    pub(crate) fn base(&mut self) -> Result<(), BuildError> {
        let plan = self.plan().clone();
        let Some(cmd) = args::mmdebstrap(&plan, &self.root) else {
            return self.source_base();
        };
        // Keep the apt lists so the mirror's Release digests can be recorded.
        let mut cmd = cmd;
        cmd.args.insert(2, "--skip=cleanup/apt/lists".into());
        self.bootstrap(&cmd)?;
        let mut digests = Vec::new();
        let tree = tree::Tree::open(&self.root).map_err(self.io(Stage::Base, "cannot open the tree".into()))?;
        let lists = "var/lib/apt/lists";
        for (name, kind) in tree
            .entries(lists)
            .map_err(self.io(Stage::Base, "cannot list the apt lists".into()))?
        {
            let name = name.to_string_lossy().into_owned();
            if kind == tree::EntryKind::File
                && (name.ends_with("_InRelease") || name.ends_with("_Release"))
                && let Ok(f) = tree.open_file(&format!("{lists}/{name}"))
                && let Ok((h, _)) = kiln_store::sha256_copy(f, None)
            {
                digests.push((name, h));
            }
        }
        let mirror = match &plan.base {
            kiln_core::plan::Base::Bootstrap { mirror, .. } => mirror.as_ref().map(|m| m.value.clone()),
            kiln_core::plan::Base::Source { .. } => None,
        };
        self.base = Some(BaseRecord::Bootstrap {
            command: cmd.display(),
            mirror,
            release_digests: digests,
        });
        Ok(())
    }

    /// mmdebstrap in the sandbox's host view (docs/sandbox.md): the tree
    /// bound at `/kiln/root`, the network for the mirror, and leave to mount
    /// `/proc` and `/dev` in namespaces of its own; package maintainer
    /// scripts run as the sandbox's root, never the host's.
    fn bootstrap(&mut self, cmd: &Cmd) -> Result<(), BuildError> {
        fs::create_dir_all(&self.root)
            .map_err(self.io(Stage::Base, format!("cannot create {}", self.root.display())))?;
        let mut argv = vec![cmd.program.to_string()];
        argv.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
        if let Some(target) = argv.iter_mut().find(|a| Path::new(a.as_str()) == self.root) {
            *target = HOST_VIEW_ROOT.to_string();
        }
        let mut env = base_env(self.req.source_date_epoch);
        env.extend(cmd.env.iter().cloned());
        // A proxy the host's apt is told about through the environment.
        for name in [
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ] {
            if let Ok(v) = std::env::var(name) {
                env.push((name.to_string(), v));
            }
        }
        let mut req = self.host_view(
            argv.clone(),
            env,
            vec![(self.root.clone(), HOST_VIEW_ROOT.into(), false)],
            Vec::new(),
            true,
        )?;
        req.nested_mounts = true;
        req.timeout = None;
        self.log.reset_tail();
        self.log.reporter().step("mmdebstrap");
        self.log.note(&format!("$ [host view] {}", cmd.display()));
        let ended = self
            .run_inside(&req)
            .map_err(|m| self.fail(Stage::Base, Some("mmdebstrap"), Some(cmd.display()), m))?;
        if !ended.success() {
            return Err(self.fail(
                Stage::Base,
                Some("mmdebstrap"),
                Some(cmd.display()),
                format!("`mmdebstrap` {}", ended.describe()),
            ));
        }
        // mmdebstrap cannot make device nodes in a user namespace; kiln adds
        // the ones its root mode puts in /dev (a booting kernel needs
        // /dev/console before anything mounts devtmpfs).
        self.host
            .populate_dev(&self.root)
            .map_err(self.io(Stage::Base, "cannot create the device nodes in /dev".into()))
    }
}
