//! The client's methods for pipelines, their runs and hooks, and device
//! channels (docs/pipelines.md, docs/channels.md). Names in a path are
//! checked before anything is sent, as in `endpoints`.

use crate::client::{Client, Method, Result};
use crate::endpoints::check_names;
use crate::model::*;

type Query = Vec<(&'static str, String)>;

const PIPELINE: &str = "pipeline name";
const TAG: &str = "tag name";

fn check(kind: &str, name: &str) -> Result<()> {
    check_names(&[(kind, name)])
}

impl Client {
    // ---- pipelines ---------------------------------------------------------

    pub fn pipelines(&self) -> Result<Vec<Pipeline>> {
        self.get(&["pipelines"], &[])
    }

    pub fn create_pipeline(&self, p: &Pipeline) -> Result<Pipeline> {
        check(PIPELINE, &p.name)?;
        self.call(Method::Post, &["pipelines"], &[], Some(p))
    }

    pub fn pipeline(&self, name: &str, at: Option<i64>) -> Result<Pipeline> {
        check(PIPELINE, name)?;
        let q: Query = at.map(|e| ("event", e.to_string())).into_iter().collect();
        self.get(&["pipelines", name], &q)
    }

    /// Creates or replaces a pipeline as a whole.
    pub fn apply_pipeline(&self, p: &Pipeline) -> Result<Pipeline> {
        check(PIPELINE, &p.name)?;
        self.call(Method::Put, &["pipelines", &p.name], &[], Some(p))
    }

    pub fn edit_pipeline(&self, name: &str, e: &PipelineEdit) -> Result<Pipeline> {
        check(PIPELINE, name)?;
        self.call(Method::Patch, &["pipelines", name], &[], Some(e))
    }

    pub fn delete_pipeline(&self, name: &str) -> Result<()> {
        check(PIPELINE, name)?;
        self.call::<(), serde_json::Value>(Method::Delete, &["pipelines", name], &[], None)
            .map(drop)
    }

    pub fn pipeline_history(&self, name: &str) -> Result<Vec<PipelineVersion>> {
        check(PIPELINE, name)?;
        self.get(&["pipelines", name, "history"], &[])
    }

    /// A pipeline's runs, newest first (one page).
    pub fn pipeline_runs(&self, name: &str, limit: i64) -> Result<Page<PipelineRun>> {
        check(PIPELINE, name)?;
        self.get(&["pipelines", name, "runs"], &[("limit", limit.to_string())])
    }

    pub fn pipeline_run(&self, name: &str, run: i64) -> Result<PipelineRun> {
        check(PIPELINE, name)?;
        self.get(&["pipelines", name, "runs", &run.to_string()], &[])
    }

    pub fn start_run(&self, name: &str, r: &RunRequest) -> Result<PipelineRun> {
        check(PIPELINE, name)?;
        self.call(Method::Post, &["pipelines", name, "runs"], &[], Some(r))
    }

    /// A new secret for a pipeline's hook of `service`, shown once.
    pub fn set_hook_secret(&self, name: &str, service: &str) -> Result<HookSecret> {
        check(PIPELINE, name)?;
        check("hook service", service)?;
        self.call::<(), _>(
            Method::Post,
            &["pipelines", name, "hooks", service, "secret"],
            &[],
            None,
        )
    }

    pub fn remove_hook_secret(&self, name: &str, service: &str) -> Result<()> {
        check(PIPELINE, name)?;
        check("hook service", service)?;
        self.call::<(), serde_json::Value>(
            Method::Delete,
            &["pipelines", name, "hooks", service, "secret"],
            &[],
            None,
        )
        .map(drop)
    }

    // ---- channels ----------------------------------------------------------

    pub fn channels(&self) -> Result<Vec<ChannelInfo>> {
        self.get(&["channels"], &[])
    }

    pub fn channel(&self, tag: &str) -> Result<ChannelInfo> {
        check(TAG, tag)?;
        self.get(&["channels", tag], &[])
    }

    pub fn publish_channel(&self, tag: &str, force: bool) -> Result<ChannelInfo> {
        check(TAG, tag)?;
        let q: Query = if force {
            vec![("force", "true".into())]
        } else {
            Vec::new()
        };
        self.call::<(), _>(Method::Post, &["channels", tag, "publish"], &q, None)
    }

    pub fn channel_key(&self) -> Result<ChannelKey> {
        self.get(&["channel-key"], &[])
    }

    pub fn channel_keygen(&self) -> Result<ChannelKey> {
        self.call::<(), _>(Method::Post, &["channel-key"], &[], None)
    }
}
