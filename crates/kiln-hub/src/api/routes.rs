//! Every route of `/api/v1`, declared once in [`ROUTES`]: its method, path,
//! summary, the permission it needs, its handler, the query parameters and
//! body it reads and what it answers. The router ([`super::router`]) and
//! the OpenAPI document ([`crate::openapi::document`]) are both built from
//! this table, so no route is served without being documented.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::json;

use super::tasks::LogQuery;
use super::{
    Hub, ListQuery, MAX_JSON, about, builds, channels, hooks, hosts, images, pipelines, tags, targets, tasks, users,
};
use crate::model::*;

/// The HTTP method a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    /// The method's name as an OpenAPI document spells it (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// How large a route's request body may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A JSON or text body (or none) of at most [`MAX_JSON`] bytes.
    Json,
    /// A streamed upload, without a limit.
    Stream,
    /// A CI service's delivery: at most [`MAX_HOOK`] bytes.
    Hook,
}

/// Largest hook delivery the hub reads (GitHub's own limit is 25 MB).
pub const MAX_HOOK: usize = 25 << 20;

impl Limit {
    fn layer(self) -> DefaultBodyLimit {
        match self {
            Limit::Json => DefaultBodyLimit::max(MAX_JSON),
            Limit::Stream => DefaultBodyLimit::disable(),
            Limit::Hook => DefaultBodyLimit::max(MAX_HOOK),
        }
    }
}

/// Makes a JSON Schema, registering the named types it refers to with the
/// generator (they become the document's `components/schemas`).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The query parameters a route reads: some fields of a query type.
#[derive(Clone, Copy)]
pub struct Query {
    /// The query type's schema: an object with a property per field.
    pub schema: SchemaFn,
    /// The fields this route reads.
    pub fields: &'static [&'static str],
}

/// A route's request body.
#[derive(Clone, Copy)]
pub enum Body {
    None,
    /// JSON (`application/json`) of at most [`MAX_JSON`] bytes.
    Json(SchemaFn),
    /// UTF-8 text of at most [`MAX_JSON`] bytes.
    Text,
    /// Bytes (`application/octet-stream`), streamed without a limit.
    Octets,
    /// A CI service's delivery: JSON, or a form with a `payload` field
    /// (GitHub's other content type); optional for generic hooks.
    Hook,
}

/// What a route answers when it succeeds (its errors are all the
/// documented `{"error": {"code", "message"}}`).
#[derive(Clone, Copy)]
pub enum Answer {
    /// No body (204).
    Empty,
    /// JSON of this schema.
    Json(SchemaFn),
    /// A stream of bytes (`application/octet-stream`).
    Octets,
}

/// One route of `/api/v1`.
pub struct Route {
    pub verb: Verb,
    /// The path under `/api/v1`, with `{name}` placeholders; `{id}` is an
    /// integer, every other placeholder a string.
    pub path: &'static str,
    pub summary: &'static str,
    /// The permission needed to call it; "" for reads.
    pub perm: &'static str,
    /// Its body limit: streamed for octet bodies, [`MAX_JSON`] otherwise.
    pub limit: Limit,
    /// The module its handler lives in (the OpenAPI tag).
    pub area: &'static str,
    /// Its handler's name (the OpenAPI operation id).
    pub operation: &'static str,
    pub query: Option<Query>,
    pub body: Body,
    /// The status of its success.
    pub status: u16,
    pub answer: Answer,
    handler: fn(MethodFilter) -> MethodRouter<Arc<Hub>>,
}

impl Route {
    /// The route as axum serves it: its handler on its method, under its
    /// body limit.
    pub(super) fn method_router(&self) -> MethodRouter<Arc<Hub>> {
        (self.handler)(self.verb.filter()).layer(self.limit.layer())
    }
}

/// A named type's schema, by reference.
fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// A query type's own schema, inline: its fields are the parameters.
fn fields<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// `GET /openapi.json`: an OpenAPI document.
fn document(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "required": ["openapi", "paths"]})
}

/// `GET /tags/{tag}/inheritance`: the links, or with `?full` the walk.
fn inheritance(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"anyOf": [g.subschema_for::<Vec<LinkOut>>(), g.subschema_for::<Vec<WalkOut>>()]})
}

/// `POST /tasks`: a method with its request, and where to run it (the
/// fields of [`NewTask`]'s wire form).
fn new_task(g: &mut SchemaGenerator) -> Schema {
    let int = json!({"type": "integer", "format": "int64"});
    let placement = |method: &str, request: Option<Schema>| {
        let mut props = json!({
            "method": {"const": method},
            "priority": int,
            "channel": {"type": "string"},
            "arch": {"type": "string"},
            "builder": {"type": ["string", "null"]},
            "parent": {"type": ["integer", "null"], "format": "int64"},
            "max_attempts": int,
        });
        let mut required = vec!["method"];
        match request {
            Some(r) => {
                props["request"] = r.to_value();
                required.push("request");
            }
            None => props["request"] = json!({"type": ["object", "null"]}),
        }
        json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
    };
    let build = g.subschema_for::<BuildRequest>();
    let update = g.subschema_for::<UpdateRequest>();
    json_schema!({"oneOf": [
        placement("noop", None),
        placement("build", Some(build)),
        placement("update", Some(update)),
    ]})
}

/// Builds the table: per route
/// `Verb "path" => area::handler, "permission", "summary";` and then
/// `query Q, body B, answer STATUS A;` where Q is `_` or
/// `[QueryType: field, …]`, B is `_`, `text`, `octets`, `(Type)` or
/// `{schema_fn}` (JSON), and A is `_` (no body), `octets`, `(Type)` or
/// `{schema_fn}` (JSON). The area is the module the handler lives in.
macro_rules! routes {
    ($($verb:ident $path:literal => $area:ident :: $handler:ident, $perm:literal, $summary:literal;
        query $q:tt, body $b:tt, answer $status:literal $a:tt;)*) => {
        &[$(Route {
            verb: Verb::$verb,
            path: $path,
            summary: $summary,
            perm: $perm,
            limit: routes!(@limit $b),
            area: stringify!($area),
            operation: stringify!($handler),
            query: routes!(@query $q),
            body: routes!(@body $b),
            status: $status,
            answer: routes!(@answer $a),
            handler: |m| on(m, $area::$handler),
        }),*]
    };
    (@limit octets) => { Limit::Stream };
    (@limit hook) => { Limit::Hook };
    (@limit $b:tt) => { Limit::Json };
    (@query _) => { None };
    (@query [$t:ty: $($f:ident),+]) => { Some(Query { schema: fields::<$t>, fields: &[$(stringify!($f)),+] }) };
    (@body _) => { Body::None };
    (@body text) => { Body::Text };
    (@body octets) => { Body::Octets };
    (@body hook) => { Body::Hook };
    (@body ($t:ty)) => { Body::Json(schema::<$t>) };
    (@body {$f:ident}) => { Body::Json($f) };
    (@answer _) => { Answer::Empty };
    (@answer octets) => { Answer::Octets };
    (@answer ($t:ty)) => { Answer::Json(schema::<$t>) };
    (@answer {$f:ident}) => { Answer::Json($f) };
}

/// Every route, in the order the OpenAPI document lists them. A path's
/// methods are merged into one axum route; the same method twice on a
/// path makes [`super::router`] panic.
pub static ROUTES: &[Route] = routes! {
    Get "/openapi.json" => about::openapi_json, "", "This document";
        query _, body _, answer 200 {document};
    Get "/status" => about::status, "", "Hub version, database kind and last event";
        query _, body _, answer 200 (Status);
    Post "/login" => users::login, "", "Exchange a user name and password for a new API token (rate limited)";
        query _, body (LoginIn), answer 201 (NewToken);
    Get "/whoami" => users::whoami, "", "The authenticated user and permissions";
        query _, body _, answer 200 (WhoAmI);
    Get "/users" => users::list_users, "", "List users with their permissions";
        query _, body _, answer 200 (Vec<User>);
    Post "/users" => users::create_user, "admin", "Create a user";
        query _, body (NewUser), answer 201 (UserCreated);
    Post "/users/{name}/perms" => users::grant, "admin", "Grant a permission";
        query _, body (PermIn), answer 204 _;
    Delete "/users/{name}/perms/{perm}" => users::revoke, "admin", "Revoke a permission";
        query _, body _, answer 204 _;
    Get "/users/{name}/tokens" => users::list_tokens, "self or admin", "List a user's API tokens (not the secrets)";
        query _, body _, answer 200 (Vec<TokenInfo>);
    Post "/users/{name}/tokens" => users::create_token, "self or admin", "Create an API token, shown once";
        query _, body (TokenIn), answer 201 (NewToken);
    Delete "/tokens/{id}" => users::revoke_token, "owner or admin", "Revoke an API token";
        query _, body _, answer 204 _;
    Get "/tags" => tags::list_tags, "", "List tags (paginated; ?event=N)";
        query [ListQuery: offset, limit, event], body _, answer 200 (Page<TagInfo>);
    Post "/tags" => tags::create_tag, "tag", "Create a tag";
        query _, body (NewTag), answer 201 (TagInfo);
    Get "/tags/{tag}" => tags::tag_info, "", "A tag's configuration and extra (?event=N)";
        query [ListQuery: event], body _, answer 200 (TagInfo);
    Patch "/tags/{tag}" => tags::edit_tag, "tag", "Edit a tag: rename, arches, perm, lock, extra";
        query _, body (TagEdit), answer 200 (TagInfo);
    Delete "/tags/{tag}" => tags::delete_tag, "tag", "Delete a tag";
        query _, body _, answer 204 _;
    Get "/tags/{tag}/history" => tags::tag_history, "", "Every change to the tag, by event (?event=N: up to N)";
        query [ListQuery: event], body _, answer 200 (Vec<HistoryEntry>);
    Get "/tags/{tag}/inheritance" => tags::inheritance, "",
        "Parents (?reverse: children; ?full: the full walk; ?event=N)";
        query [ListQuery: event, reverse, full], body _, answer 200 {inheritance};
    Post "/tags/{tag}/inheritance" => tags::add_link, "tag", "Add an inheritance link";
        query _, body (LinkIn), answer 201 (Vec<LinkOut>);
    Patch "/tags/{tag}/inheritance/{parent}" => tags::edit_link, "tag", "Edit an inheritance link";
        query _, body (LinkEdit), answer 200 (Vec<LinkOut>);
    Delete "/tags/{tag}/inheritance/{parent}" => tags::remove_link, "tag", "Remove an inheritance link";
        query _, body _, answer 200 (Vec<LinkOut>);
    Get "/tags/{tag}/config" => tags::tag_config, "", "The build config: arches and extra through the inheritance";
        query [ListQuery: event], body _, answer 200 (BuildConfigOut);
    Get "/tags/{tag}/packages" => tags::packages, "", "The package list (?inherit, ?event=N)";
        query [ListQuery: inherit, event], body _, answer 200 (Vec<PackageOut>);
    Post "/tags/{tag}/packages" => tags::set_package, "tag", "Add or block a package (?force on locked tags, admins)";
        query [ListQuery: force], body (PackageIn), answer 204 _;
    Delete "/tags/{tag}/packages/{package}" => tags::remove_package, "tag", "Remove a package entry";
        query [ListQuery: force], body _, answer 204 _;
    Get "/tags/{tag}/builds" => tags::list_tagged, "", "Tagged builds (?inherit, ?latest, ?event=N)";
        query [ListQuery: inherit, latest, event], body _, answer 200 (Vec<TaggedOut>);
    Post "/tags/{tag}/builds" => tags::tag_build, "tag", "Tag a build";
        query _, body (TagBuildIn), answer 204 _;
    Delete "/tags/{tag}/builds/{nvr}" => tags::untag_build, "tag", "Untag a build";
        query [ListQuery: force], body _, answer 204 _;
    Get "/builds" => builds::list_builds, "", "List builds (paginated; ?state=)";
        query [ListQuery: offset, limit, state], body _, answer 200 (Page<Build>);
    Post "/builds" => builds::create_build, "build", "Create a build (BUILDING) with its declared artifacts";
        query _, body (NewBuild), answer 201 (Build);
    Get "/builds/{nvr}" => builds::build_info, "", "A build with its artifacts and manifest";
        query _, body _, answer 200 (Build);
    Post "/builds/{nvr}/state" => builds::finish_build, "build",
        "Complete (all artifacts uploaded), fail or cancel a build";
        query _, body (StateIn), answer 200 (Build);
    Put "/builds/{nvr}/files/{file}" => builds::upload_artifact, "build",
        "Upload an artifact (streamed, verified against its sha256)";
        query _, body octets, answer 201 (Uploaded);
    Get "/builds/{nvr}/files/{file}" => builds::download_artifact, "", "Download an artifact (streamed)";
        query _, body _, answer 200 octets;
    Get "/targets" => targets::list_targets, "", "List targets";
        query _, body _, answer 200 (Vec<Target>);
    Post "/targets" => targets::create_target, "target", "Create a target";
        query _, body (Target), answer 201 (Target);
    Get "/targets/{name}" => targets::target, "", "A target (?event=N)";
        query [ListQuery: event], body _, answer 200 (Target);
    Put "/targets/{name}" => targets::apply_target, "target", "Create or replace a target (kiln target apply)";
        query _, body (Target), answer 200 (Target);
    Patch "/targets/{name}" => targets::edit_target, "target", "Edit a target: rename, tags, define, undefine";
        query _, body (TargetEdit), answer 200 (Target);
    Delete "/targets/{name}" => targets::delete_target, "target", "Delete a target";
        query _, body _, answer 204 _;
    Get "/targets/{name}/macros" => targets::target_macros, "",
        "The target's macro layers (layers 2 and 4 of docs/profiles.md)";
        query _, body _, answer 200 (MacroLayers);
    Get "/pipelines" => pipelines::list_pipelines, "", "List pipelines";
        query _, body _, answer 200 (Vec<Pipeline>);
    Post "/pipelines" => pipelines::create_pipeline, "pipeline", "Create a pipeline";
        query _, body (Pipeline), answer 201 (Pipeline);
    Get "/pipelines/{name}" => pipelines::pipeline_info, "", "A pipeline (?event=N)";
        query [ListQuery: event], body _, answer 200 (Pipeline);
    Put "/pipelines/{name}" => pipelines::apply_pipeline, "pipeline",
        "Create or replace a pipeline (kiln pipeline apply)";
        query _, body (Pipeline), answer 200 (Pipeline);
    Patch "/pipelines/{name}" => pipelines::edit_pipeline, "pipeline", "Edit a pipeline";
        query _, body (PipelineEdit), answer 200 (Pipeline);
    Delete "/pipelines/{name}" => pipelines::delete_pipeline, "pipeline", "Delete a pipeline (its runs stay)";
        query _, body _, answer 204 _;
    Get "/pipelines/{name}/history" => pipelines::pipeline_history, "", "Every change to a pipeline, by event";
        query _, body _, answer 200 (Vec<PipelineVersion>);
    Get "/pipelines/{name}/runs" => pipelines::list_runs, "", "A pipeline's runs, newest first (paginated)";
        query [ListQuery: offset, limit], body _, answer 200 (Page<PipelineRun>);
    Post "/pipelines/{name}/runs" => pipelines::start_run, "build", "Start a run now (?ref, ?commit in the body)";
        query _, body (RunRequest), answer 201 (PipelineRun);
    Get "/pipelines/{name}/runs/{run}" => pipelines::run_info, "", "One run";
        query _, body _, answer 200 (PipelineRun);
    Post "/pipelines/{name}/hooks/{service}/secret" => pipelines::set_hook_secret, "pipeline",
        "A new secret for a hook (github, gitlab, generic), shown once";
        query _, body _, answer 201 (HookSecret);
    Delete "/pipelines/{name}/hooks/{service}/secret" => pipelines::remove_hook_secret, "pipeline",
        "Remove a hook's secret: the hook refuses every delivery";
        query _, body _, answer 204 _;
    Post "/pipelines/{name}/hooks/{service}" => hooks::receive_hook, "hook secret",
        "A CI service's delivery (GitHub signature, GitLab token or bearer token)";
        query _, body hook, answer 202 (HookOutcome);
    Get "/channels" => channels::list_channels, "", "Published device channels";
        query _, body _, answer 200 (Vec<ChannelInfo>);
    Get "/channels/{tag}" => channels::channel_info, "", "A channel's last publication";
        query _, body _, answer 200 (ChannelInfo);
    Post "/channels/{tag}/publish" => channels::publish, "tag",
        "Publish the tag's latest builds as a signed index (when changed, or ?force)";
        query [ListQuery: force], body _, answer 201 (ChannelInfo);
    Get "/channel-key" => channels::channel_key, "", "The channel signing key's public half";
        query _, body _, answer 200 (ChannelKey);
    Post "/channel-key" => channels::keygen, "admin", "Make a new channel signing key";
        query _, body _, answer 201 (ChannelKey);
    Get "/images" => images::list_images, "", "List source images (?name=)";
        query [ListQuery: name], body _, answer 200 (Vec<Image>);
    Get "/images/{name}/{version}" => images::image_info, "", "A source image";
        query _, body _, answer 200 (Image);
    Delete "/images/{name}/{version}" => images::remove_image, "image", "Remove a source image";
        query _, body _, answer 204 _;
    Get "/images/{name}/{version}/blob" => images::image_blob, "", "Download a source image (streamed)";
        query _, body _, answer 200 octets;
    Put "/images/{name}/{version}/upload" => images::upload_image, "image",
        "Upload a source image (streamed; X-Kiln-Sha256 verified)";
        query _, body octets, answer 201 (Image);
    Get "/hosts" => hosts::list_hosts, "", "List builders with their load and last heartbeat";
        query _, body _, answer 200 (Vec<HostInfo>);
    Post "/hosts" => hosts::create_host, "host", "Register a builder; its host token is shown once";
        query _, body (NewHost), answer 201 (HostToken);
    Post "/host/heartbeat" => hosts::heartbeat, "host token",
        "A builder is alive: renews its leases, answers the tasks to cancel";
        query _, body _, answer 200 (Heartbeat);
    Post "/host/claim" => hosts::claim, "host token", "A builder claims its next task (atomically), or null";
        query _, body _, answer 200 (Option<Task>);
    Get "/tasks" => tasks::list_tasks, "", "List tasks (paginated; ?state=)";
        query [ListQuery: offset, limit, state], body _, answer 200 (Page<Task>);
    Post "/tasks" => tasks::submit_task, "build", "Submit a task";
        query _, body {new_task}, answer 201 (Task);
    Get "/tasks/{id}" => tasks::task_info, "", "A task";
        query _, body _, answer 200 (Task);
    Post "/tasks/{id}/cancel" => tasks::cancel_task, "owner or admin", "Cancel a task and its children";
        query _, body _, answer 200 (Task);
    Post "/tasks/{id}/result" => tasks::finish_task, "host token", "A builder reports a task's end";
        query _, body (TaskReport), answer 200 (Task);
    Get "/tasks/{id}/log" => tasks::task_log, "", "A task's log after chunk ?after=N";
        query [LogQuery: after], body _, answer 200 (TaskLogOut);
    Post "/tasks/{id}/log" => tasks::append_log, "host token", "A builder appends to a task's log";
        query _, body text, answer 204 _;
    Post "/tasks/{id}/release" => tasks::release_task, "host token",
        "A builder shutting down hands a task back (FREE, no attempt used)";
        query _, body _, answer 200 (Task);
    Put "/tasks/{id}/files/{file}" => tasks::upload_task_file, "host token",
        "A builder streams a file of its task (x-kiln-sha256 and Content-Length required)";
        query _, body octets, answer 201 (Uploaded);
    Get "/tasks/{id}/files/{file}" => tasks::download_task_file, "", "A file a closed task kept (scratch builds)";
        query _, body _, answer 200 octets;
};
