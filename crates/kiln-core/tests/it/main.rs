//! Integration tests of kiln-core, written against docs/profiles.md and
//! SPEC §2: composition, diagnostics and properties of the small languages
//! (tag expressions, macros, package entries).

mod compose;
mod diagnostics;
mod props;
mod stagekeys;
mod support;
