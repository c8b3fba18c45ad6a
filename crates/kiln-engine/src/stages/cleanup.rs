//! The cleanup stage (docs/profiles.md): apt's lists and caches, the
//! machine id and the logs, when the plan asks for it; then every mtime
//! clamped to `SOURCE_DATE_EPOCH`.

use std::path::Path;

use kiln_core::stagekey::Stage;

use crate::{BuildError, Engine, cleanup, fsutil};

impl Engine<'_> {
    /// The cleanup stage on the tree at `root`.
    pub(crate) fn clean_tree(&mut self, root: &Path) -> Result<(), BuildError> {
        if self.plan().build.cleanup.value {
            cleanup(root).map_err(self.io(Stage::Cleanup, "cannot clean the tree".into()))?;
        }
        if let Some(epoch) = self.req.source_date_epoch {
            fsutil::clamp_mtimes(root, epoch).map_err(self.io(Stage::Cleanup, "cannot clamp mtimes".into()))?;
        }
        Ok(())
    }
}
