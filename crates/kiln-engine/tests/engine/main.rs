//! The engine's logic with a recording sandbox and host (see `support`):
//! builds and updates run without root, the host tools or the network.

mod build;
mod support;
mod update;
