//! The files stage: feature files and the macros file, written inside the
//! tree's root (docs/sandbox.md).

use std::path::Path;

use kiln_core::stagekey::Stage;

use crate::{BuildError, Engine, fsutil, tree};

impl Engine<'_> {
    /// Feature files: read from the repository without following symlinks,
    /// written inside the tree's root (docs/sandbox.md).
    pub(crate) fn install_files(
        &mut self,
        root: &Path,
        files: &[kiln_core::plan::FileEntry],
    ) -> Result<(), BuildError> {
        if files.is_empty() {
            return Ok(());
        }
        let tree = tree::Tree::open(root).map_err(self.io(Stage::Files, "cannot open the tree".into()))?;
        let repo =
            tree::Tree::open(&self.req.repo).map_err(self.io(Stage::Files, "cannot open the repository".into()))?;
        for f in files {
            fsutil::in_root(root, &f.path).map_err(self.io(Stage::Files, f.path.clone()))?;
            let mode = f
                .mode
                .as_deref()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0o644);
            let written = match f.target.as_deref() {
                Some(target) => tree.create_symlink(&f.path, target),
                None => repo
                    .read_regular(&f.source)
                    .and_then(|mut source| tree.create_file(&f.path, mode, &mut source).map(drop)),
            };
            written.map_err(self.io(Stage::Files, format!("cannot install {} from {}", f.path, f.source)))?;
            let (uid, gid) = fsutil::resolve_owner(&tree, &f.owner)
                .map_err(|m| self.fail(Stage::Files, Some(&f.path), None, format!("owner of {}: {m}", f.path)))?;
            tree.chown(&f.path, uid, gid)
                .map_err(self.io(Stage::Files, format!("cannot set the owner of {}", f.path)))?;
            if f.target.is_none() {
                // chown clears set-id bits: the mode goes on last.
                tree.set_mode(&f.path, mode)
                    .map_err(self.io(Stage::Files, format!("cannot set the mode of {}", f.path)))?;
            }
            self.log.note(&format!(
                "installed {} ({} {}) from {}",
                f.path,
                f.owner,
                f.mode.as_deref().unwrap_or("link"),
                f.source
            ));
        }
        Ok(())
    }

    /// `macros_file`: the resolved macros, in RPM macro syntax, for tools
    /// inside the image.
    pub(crate) fn write_macros_file(&mut self, root: &Path) -> Result<(), BuildError> {
        let Some(file) = self.plan().macros_file.clone() else {
            return Ok(());
        };
        fsutil::in_root(root, &file.value).map_err(self.io(Stage::Files, file.value.clone()))?;
        let text = kiln_core::stagekey::rpm_macros(self.plan());
        tree::Tree::open(root)
            .and_then(|tree| tree.create_file(&file.value, 0o644, &mut text.as_bytes()))
            .map_err(self.io(Stage::Files, format!("cannot write {}", file.value)))?;
        self.log.note(&format!("wrote the macros to {}", file.value));
        Ok(())
    }
}
