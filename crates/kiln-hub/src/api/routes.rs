//! Every route of `/api/v1`, declared once in [`ROUTES`]: its method, path,
//! summary, the permission it needs, its body limit and its handler. The
//! router ([`super::router`]) and the OpenAPI document
//! ([`crate::openapi::document`]) are both built from this table, so no
//! route is served without being documented.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{Hub, MAX_JSON, about, builds, hosts, images, tags, targets, tasks, users};

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
    /// A JSON body (or none) of at most [`MAX_JSON`] bytes.
    Json,
    /// A streamed upload, without a limit.
    Stream,
}

impl Limit {
    fn layer(self) -> DefaultBodyLimit {
        match self {
            Limit::Json => DefaultBodyLimit::max(MAX_JSON),
            Limit::Stream => DefaultBodyLimit::disable(),
        }
    }
}

/// One route of `/api/v1`.
pub struct Route {
    pub verb: Verb,
    /// The path under `/api/v1`, with `{name}` placeholders.
    pub path: &'static str,
    pub summary: &'static str,
    /// The permission needed to call it; "" for reads.
    pub perm: &'static str,
    pub limit: Limit,
    /// The module its handler lives in (the OpenAPI tag).
    pub area: &'static str,
    /// Its handler's name (the OpenAPI operation id).
    pub operation: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<Arc<Hub>>,
}

impl Route {
    /// The route as axum serves it: its handler on its method, under its
    /// body limit.
    pub(super) fn method_router(&self) -> MethodRouter<Arc<Hub>> {
        (self.handler)(self.verb.filter()).layer(self.limit.layer())
    }
}

/// Builds the table: `Verb "path" => area::handler, Limit, "permission",
/// "summary";` per route. The area is the module the handler lives in.
macro_rules! routes {
    ($($verb:ident $path:literal => $area:ident :: $handler:ident, $limit:ident, $perm:literal,
        $summary:literal;)*) => {
        &[$(Route {
            verb: Verb::$verb,
            path: $path,
            summary: $summary,
            perm: $perm,
            limit: Limit::$limit,
            area: stringify!($area),
            operation: stringify!($handler),
            handler: |m| on(m, $area::$handler),
        }),*]
    };
}

/// Every route, in the order the OpenAPI document lists them. A path's
/// methods are merged into one axum route; the same method twice on a
/// path makes [`super::router`] panic.
pub static ROUTES: &[Route] = routes! {
    Get "/openapi.json" => about::openapi_json, Json, "", "This document";
    Get "/status" => about::status, Json, "", "Hub version, database kind and last event";
    Post "/login" => users::login, Json, "", "Exchange a user name and password for a new API token (rate limited)";
    Get "/whoami" => users::whoami, Json, "", "The authenticated user and permissions";
    Get "/users" => users::list_users, Json, "", "List users with their permissions";
    Post "/users" => users::create_user, Json, "admin", "Create a user";
    Post "/users/{name}/perms" => users::grant, Json, "admin", "Grant a permission";
    Delete "/users/{name}/perms/{perm}" => users::revoke, Json, "admin", "Revoke a permission";
    Get "/users/{name}/tokens" => users::list_tokens, Json, "self or admin",
        "List a user's API tokens (not the secrets)";
    Post "/users/{name}/tokens" => users::create_token, Json, "self or admin", "Create an API token, shown once";
    Delete "/tokens/{id}" => users::revoke_token, Json, "owner or admin", "Revoke an API token";
    Get "/tags" => tags::list_tags, Json, "", "List tags (paginated; ?event=N)";
    Post "/tags" => tags::create_tag, Json, "tag", "Create a tag";
    Get "/tags/{tag}" => tags::tag_info, Json, "", "A tag's configuration and extra (?event=N)";
    Patch "/tags/{tag}" => tags::edit_tag, Json, "tag", "Edit a tag: rename, arches, perm, lock, extra";
    Delete "/tags/{tag}" => tags::delete_tag, Json, "tag", "Delete a tag";
    Get "/tags/{tag}/history" => tags::tag_history, Json, "", "Every change to the tag, by event";
    Get "/tags/{tag}/inheritance" => tags::inheritance, Json, "",
        "Parents (?reverse: children; ?full: the full walk; ?event=N)";
    Post "/tags/{tag}/inheritance" => tags::add_link, Json, "tag", "Add an inheritance link";
    Patch "/tags/{tag}/inheritance/{parent}" => tags::edit_link, Json, "tag", "Edit an inheritance link";
    Delete "/tags/{tag}/inheritance/{parent}" => tags::remove_link, Json, "tag", "Remove an inheritance link";
    Get "/tags/{tag}/config" => tags::tag_config, Json, "",
        "The build config: arches and extra through the inheritance";
    Get "/tags/{tag}/packages" => tags::packages, Json, "", "The package list (?inherit, ?event=N)";
    Post "/tags/{tag}/packages" => tags::set_package, Json, "tag",
        "Add or block a package (?force on locked tags, admins)";
    Delete "/tags/{tag}/packages/{package}" => tags::remove_package, Json, "tag", "Remove a package entry";
    Get "/tags/{tag}/builds" => tags::list_tagged, Json, "", "Tagged builds (?inherit, ?latest, ?event=N)";
    Post "/tags/{tag}/builds" => tags::tag_build, Json, "tag", "Tag a build";
    Delete "/tags/{tag}/builds/{nvr}" => tags::untag_build, Json, "tag", "Untag a build";
    Get "/builds" => builds::list_builds, Json, "", "List builds (paginated; ?state=)";
    Post "/builds" => builds::create_build, Json, "build", "Create a build (BUILDING) with its declared artifacts";
    Get "/builds/{nvr}" => builds::build_info, Json, "", "A build with its artifacts and manifest";
    Post "/builds/{nvr}/state" => builds::finish_build, Json, "build",
        "Complete (all artifacts uploaded), fail or cancel a build";
    Put "/builds/{nvr}/files/{file}" => builds::upload_artifact, Stream, "build",
        "Upload an artifact (streamed, verified against its sha256)";
    Get "/builds/{nvr}/files/{file}" => builds::download_artifact, Stream, "", "Download an artifact (streamed)";
    Get "/targets" => targets::list_targets, Json, "", "List targets";
    Post "/targets" => targets::create_target, Json, "target", "Create a target";
    Get "/targets/{name}" => targets::target, Json, "", "A target (?event=N)";
    Put "/targets/{name}" => targets::apply_target, Json, "target", "Create or replace a target (kiln target apply)";
    Patch "/targets/{name}" => targets::edit_target, Json, "target", "Edit a target: rename, tags, define, undefine";
    Delete "/targets/{name}" => targets::delete_target, Json, "target", "Delete a target";
    Get "/targets/{name}/macros" => targets::target_macros, Json, "",
        "The target's macro layers (layers 2 and 4 of docs/profiles.md)";
    Get "/images" => images::list_images, Json, "", "List source images (?name=)";
    Get "/images/{name}/{version}" => images::image_info, Json, "", "A source image";
    Delete "/images/{name}/{version}" => images::remove_image, Json, "image", "Remove a source image";
    Get "/images/{name}/{version}/blob" => images::image_blob, Json, "", "Download a source image (streamed)";
    Put "/images/{name}/{version}/upload" => images::upload_image, Stream, "image",
        "Upload a source image (streamed; X-Kiln-Sha256 verified)";
    Get "/hosts" => hosts::list_hosts, Json, "", "List builders with their load and last heartbeat";
    Post "/hosts" => hosts::create_host, Json, "host", "Register a builder; its host token is shown once";
    Post "/host/heartbeat" => hosts::heartbeat, Json, "host token",
        "A builder is alive: renews its leases, answers the tasks to cancel";
    Post "/host/claim" => hosts::claim, Json, "host token", "A builder claims its next task (atomically), or null";
    Get "/tasks" => tasks::list_tasks, Json, "", "List tasks (paginated; ?state=)";
    Post "/tasks" => tasks::submit_task, Json, "build", "Submit a task";
    Get "/tasks/{id}" => tasks::task_info, Json, "", "A task";
    Post "/tasks/{id}/cancel" => tasks::cancel_task, Json, "owner or admin", "Cancel a task and its children";
    Post "/tasks/{id}/result" => tasks::finish_task, Json, "host token", "A builder reports a task's end";
    Get "/tasks/{id}/log" => tasks::task_log, Json, "", "A task's log after chunk ?after=N";
    Post "/tasks/{id}/log" => tasks::append_log, Json, "host token", "A builder appends to a task's log";
    Post "/tasks/{id}/release" => tasks::release_task, Json, "host token",
        "A builder shutting down hands a task back (FREE, no attempt used)";
    Put "/tasks/{id}/files/{file}" => tasks::upload_task_file, Stream, "host token",
        "A builder streams a file of its task (x-kiln-sha256 and Content-Length required)";
    Get "/tasks/{id}/files/{file}" => tasks::download_task_file, Stream, "",
        "A file a closed task kept (scratch builds)";
};
