//! The commands that talk to a hub or are one (`hub`).

pub mod hub;
