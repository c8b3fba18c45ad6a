//! kiln's pure core: the profile model of mkimage-profiles (images, features,
//! subprofiles, tagged package lists), macros with their seven layers, tag
//! expressions, composition into a [`plan::Plan`] with provenance, and
//! diagnostics.
//!
//! Architecture invariant: nothing here does I/O. A repository is handed in
//! as a [`snapshot::Snapshot`] (built by `kiln-repo` from disk, or by tests in
//! memory), and every function is deterministic over its inputs.

pub mod check;
pub mod diag;
pub mod external;
pub mod iso;
pub mod koji;
pub mod macros;
pub mod model;
pub mod packages;
pub mod parallel;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod repo;
pub mod resolve;
pub mod snapshot;
pub mod stagekey;
pub mod tags;
pub mod utc;
pub mod version;

pub use diag::{Diagnostic, Severity};
pub use plan::Plan;
pub use repo::Repo;
pub use resolve::{Resolution, ResolveOptions, resolve};
pub use snapshot::Snapshot;
