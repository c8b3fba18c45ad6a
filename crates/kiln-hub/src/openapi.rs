//! The OpenAPI document of `/api/v1`, built from the table of routes the
//! router is built from ([`crate::api::ROUTES`]).

use serde_json::{Value, json};

use crate::api::ROUTES;

/// The document: one operation per route, with its path parameters,
/// summary, area (tag), operation id and, for writes, the permission and
/// the bearer token it needs.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "operationId": r.operation,
            "tags": [r.area],
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "default": {"description": "Error", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if !r.perm.is_empty() {
            op["description"] = json!(format!("Requires: {}.", r.perm));
            op["security"] = json!([{"token": []}]);
        }
        let entry = paths.entry(format!("/api/v1{}", r.path)).or_insert_with(|| json!({}));
        entry[r.verb.name()] = op;
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
