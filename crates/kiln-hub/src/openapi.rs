//! The OpenAPI document of `/api/v1`, built from one table of the routes
//! (a test checks that the router and the table agree).

use serde_json::{Value, json};

/// (method, path, summary, permission needed to call it; "" for reads).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/openapi.json", "This document", ""),
    ("get", "/status", "Hub version, database kind and last event", ""),
    (
        "post",
        "/login",
        "Exchange a user name and password for a new API token (rate limited)",
        "",
    ),
    ("get", "/whoami", "The authenticated user and permissions", ""),
    ("get", "/users", "List users with their permissions", ""),
    ("post", "/users", "Create a user", "admin"),
    ("post", "/users/{name}/perms", "Grant a permission", "admin"),
    ("delete", "/users/{name}/perms/{perm}", "Revoke a permission", "admin"),
    (
        "get",
        "/users/{name}/tokens",
        "List a user's API tokens (not the secrets)",
        "self or admin",
    ),
    (
        "post",
        "/users/{name}/tokens",
        "Create an API token, shown once",
        "self or admin",
    ),
    ("delete", "/tokens/{id}", "Revoke an API token", "owner or admin"),
    ("get", "/tags", "List tags (paginated; ?event=N)", ""),
    ("post", "/tags", "Create a tag", "tag"),
    ("get", "/tags/{tag}", "A tag's configuration and extra (?event=N)", ""),
    (
        "patch",
        "/tags/{tag}",
        "Edit a tag: rename, arches, perm, lock, extra",
        "tag",
    ),
    ("delete", "/tags/{tag}", "Delete a tag", "tag"),
    ("get", "/tags/{tag}/history", "Every change to the tag, by event", ""),
    (
        "get",
        "/tags/{tag}/inheritance",
        "Parents (?reverse: children; ?full: the full walk; ?event=N)",
        "",
    ),
    ("post", "/tags/{tag}/inheritance", "Add an inheritance link", "tag"),
    (
        "patch",
        "/tags/{tag}/inheritance/{parent}",
        "Edit an inheritance link",
        "tag",
    ),
    (
        "delete",
        "/tags/{tag}/inheritance/{parent}",
        "Remove an inheritance link",
        "tag",
    ),
    (
        "get",
        "/tags/{tag}/config",
        "The build config: arches and extra through the inheritance",
        "",
    ),
    (
        "get",
        "/tags/{tag}/packages",
        "The package list (?inherit, ?event=N)",
        "",
    ),
    (
        "post",
        "/tags/{tag}/packages",
        "Add or block a package (?force on locked tags, admins)",
        "tag",
    ),
    (
        "delete",
        "/tags/{tag}/packages/{package}",
        "Remove a package entry",
        "tag",
    ),
    (
        "get",
        "/tags/{tag}/builds",
        "Tagged builds (?inherit, ?latest, ?event=N)",
        "",
    ),
    ("post", "/tags/{tag}/builds", "Tag a build", "tag"),
    ("delete", "/tags/{tag}/builds/{nvr}", "Untag a build", "tag"),
    ("get", "/builds", "List builds (paginated; ?state=)", ""),
    (
        "post",
        "/builds",
        "Create a build (BUILDING) with its declared artifacts",
        "build",
    ),
    ("get", "/builds/{nvr}", "A build with its artifacts and manifest", ""),
    (
        "post",
        "/builds/{nvr}/state",
        "Complete (all artifacts uploaded), fail or cancel a build",
        "build",
    ),
    (
        "put",
        "/builds/{nvr}/files/{file}",
        "Upload an artifact (streamed, verified against its sha256)",
        "build",
    ),
    (
        "get",
        "/builds/{nvr}/files/{file}",
        "Download an artifact (streamed)",
        "",
    ),
    ("get", "/targets", "List targets", ""),
    ("post", "/targets", "Create a target", "target"),
    ("get", "/targets/{name}", "A target (?event=N)", ""),
    (
        "put",
        "/targets/{name}",
        "Create or replace a target (kiln target apply)",
        "target",
    ),
    (
        "patch",
        "/targets/{name}",
        "Edit a target: rename, tags, define, undefine",
        "target",
    ),
    ("delete", "/targets/{name}", "Delete a target", "target"),
    (
        "get",
        "/targets/{name}/macros",
        "The target's macro layers (layers 2 and 4 of docs/profiles.md)",
        "",
    ),
    ("get", "/images", "List source images (?name=)", ""),
    ("get", "/images/{name}/{version}", "A source image", ""),
    ("delete", "/images/{name}/{version}", "Remove a source image", "image"),
    (
        "get",
        "/images/{name}/{version}/blob",
        "Download a source image (streamed)",
        "",
    ),
    (
        "put",
        "/images/{name}/{version}/upload",
        "Upload a source image (streamed; X-Kiln-Sha256 verified)",
        "image",
    ),
    ("get", "/hosts", "List builders with their load and last heartbeat", ""),
    (
        "post",
        "/hosts",
        "Register a builder; its host token is shown once",
        "host",
    ),
    (
        "post",
        "/host/heartbeat",
        "A builder is alive: renews its leases, answers the tasks to cancel",
        "host token",
    ),
    (
        "post",
        "/host/claim",
        "A builder claims its next task (atomically), or null",
        "host token",
    ),
    ("get", "/tasks", "List tasks (paginated; ?state=)", ""),
    ("post", "/tasks", "Submit a task", "build"),
    ("get", "/tasks/{id}", "A task", ""),
    (
        "post",
        "/tasks/{id}/cancel",
        "Cancel a task and its children",
        "owner or admin",
    ),
    (
        "post",
        "/tasks/{id}/result",
        "A builder reports a task's end",
        "host token",
    ),
    ("get", "/tasks/{id}/log", "A task's log after chunk ?after=N", ""),
    (
        "post",
        "/tasks/{id}/log",
        "A builder appends to a task's log",
        "host token",
    ),
    (
        "post",
        "/tasks/{id}/release",
        "A builder shutting down hands a task back (FREE, no attempt used)",
        "host token",
    ),
    (
        "put",
        "/tasks/{id}/files/{file}",
        "A builder streams a file of its task (x-kiln-sha256 and Content-Length required)",
        "host token",
    ),
    (
        "get",
        "/tasks/{id}/files/{file}",
        "A file a closed task kept (scratch builds)",
        "",
    ),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, perm) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if !perm.is_empty() {
            op["description"] = json!(format!("Requires: {perm}."));
            op["security"] = json!([{"token": []}]);
        }
        let entry = paths.entry(format!("/api/v1{path}")).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "kiln hub", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}}}}
                }
            }
        }
    })
}
