//! The work of each stage, one `impl Engine` block per stage: the base
//! (bootstrap or source image), the packages, the feature files, the
//! scripts (image-side and build side), the cleanup, the outputs with the
//! manifest, and the subprofiles' trees.

mod base;
mod cleanup;
mod files;
pub(crate) mod iso;
mod outputs;
mod packages;
mod scripts;
mod subprofiles;
