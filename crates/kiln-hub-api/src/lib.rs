//! kiln's hub API (docs/hub.md) as its clients see it: the wire model of
//! every endpoint ([`model`]) and a typed, blocking client ([`Client`]) with
//! one method per endpoint. `kiln` and `kiln builder` talk to a hub only
//! through this crate; the hub itself (`kiln-hub`) serves the same model
//! and applies the same rule to names ([`names`]).

pub mod channel;
pub mod client;
mod endpoints;
mod endpoints_ci;
pub mod minisign;
pub mod model;
pub mod names;

pub use client::{Client, ClientError};
pub use endpoints::TaggedQuery;
