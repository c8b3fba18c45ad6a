//! The OpenAPI document of `/api/v1`, built from the table of routes the
//! router is built from ([`crate::api::ROUTES`]). The schemas of the bodies
//! are the wire model's own (`schemars` derives them from the types the
//! handlers read and answer), collected under `components/schemas`.

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::api::{Answer, Body, Query, ROUTES, Route};

/// The document: one operation per route, with its path and query
/// parameters, request body, the answer of its success and the error of
/// everything else; its summary, area (tag), operation id and, for writes,
/// the permission and the bearer token it needs.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(r, &mut g);
        let entry = paths.entry(format!("/api/v1{}", r.path)).or_insert_with(|| json!({}));
        entry[r.verb.name()] = op;
    }
    let mut schemas = g.take_definitions(true);
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {"title": "kiln hub", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        }
    })
}

fn operation(r: &Route, g: &mut SchemaGenerator) -> Value {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": path_schema(p)}))
        .collect();
    if let Some(q) = r.query {
        params.extend(query_params(q, g));
    }
    let success = match r.answer {
        Answer::Empty => json!({"description": "Done (no body)"}),
        Answer::Json(schema) => json!({"description": "OK", "content": {"application/json": {"schema": schema(g)}}}),
        Answer::Octets => json!({"description": "The file's bytes", "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}),
    };
    let mut responses = Map::new();
    responses.insert(r.status.to_string(), success);
    responses.insert(
        "default".into(),
        json!({"description": "Error", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
    );
    let mut op = json!({
        "summary": r.summary,
        "operationId": r.operation,
        "tags": [r.area],
        "parameters": params,
        "responses": responses,
    });
    let body = match r.body {
        Body::None => None,
        Body::Json(schema) => Some(("application/json", schema(g).to_value())),
        Body::Text => Some(("text/plain", json!({"type": "string"}))),
        Body::Octets => Some((
            "application/octet-stream",
            json!({"type": "string", "format": "binary"}),
        )),
        Body::Hook => None,
    };
    if matches!(r.body, Body::Hook) {
        op["requestBody"] = json!({"required": false, "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": {"payload": {"type": "string"}}}
            },
        }});
    }
    if let Some((media, schema)) = body {
        op["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
    }
    if !r.perm.is_empty() {
        op["description"] = json!(format!("Requires: {}.", r.perm));
        op["security"] = json!([{"token": []}]);
    }
    op
}

/// A path parameter's schema: `{id}` and `{run}` are integers, any other a name.
fn path_schema(name: &str) -> Value {
    if name == "id" || name == "run" {
        json!({"type": "integer", "format": "int64"})
    } else {
        json!({"type": "string", "minLength": 1})
    }
}

/// The query parameters a route reads: the fields of its query type it
/// names, each optional. A field absent from the type's schema is
/// documented without a schema (the route table's test catches it).
fn query_params(q: Query, g: &mut SchemaGenerator) -> Vec<Value> {
    let all: Schema = (q.schema)(g);
    q.fields
        .iter()
        .map(|f| {
            let mut schema = all
                .get("properties")
                .and_then(|p| p.get(*f))
                .cloned()
                .unwrap_or(json!({}));
            // An absent parameter is the null of an optional field: the
            // query string itself has no null.
            if let Some(Value::Array(types)) = schema.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    schema["type"] = types[0].clone();
                }
            }
            if let Some(o) = schema.as_object_mut() {
                o.remove("default");
            }
            json!({"name": f, "in": "query", "required": false, "schema": schema})
        })
        .collect()
}

/// Every error: `{"error": {"code", "message"}}`.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": false,
            "properties": {
                "code": {"type": "string", "minLength": 1},
                "message": {"type": "string", "minLength": 1},
            }
        }}
    })
}
