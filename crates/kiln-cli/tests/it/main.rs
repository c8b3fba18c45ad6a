//! End-to-end tests of the `kiln` binary: the README's example repository,
//! tampered copies of it, and the host tool report.

mod support;

mod build;
mod cache;
mod check;
mod cli;
mod doctor;
mod farm;
mod hostile;
mod hub;
mod hub_crash;
mod imports;
mod iso;
mod pipelines;
mod s3;
mod schemathesis;
mod show;
mod update;
mod web;
