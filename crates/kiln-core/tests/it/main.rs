//! Integration tests of kiln-core, written against docs/profiles.md and
//! docs/profiles.md: composition, diagnostics and properties of the small languages
//! (tag expressions, macros, package entries).

mod compose;
mod diagnostics;
mod props;
mod stagekeys;
mod support;
