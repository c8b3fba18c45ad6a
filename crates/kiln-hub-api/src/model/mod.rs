//! The hub's data as the API sends and receives it (docs/hub.md): the
//! request and answer bodies of every endpoint, by area.

use std::collections::BTreeMap;

use kiln_core::macros::{MacroDef, MacroLayer, is_macro_name};
use kiln_core::model::Origin;
use serde::{Deserialize, Serialize};

mod builds;
mod channels;
mod hosts;
mod images;
mod pipelines;
mod tags;
mod targets;
mod tasks;
mod users;

pub use builds::*;
pub use channels::*;
pub use hosts::*;
pub use images::*;
pub use pipelines::*;
pub use tags::*;
pub use targets::*;
pub use tasks::*;
pub use users::*;

/// A field that may be absent (leave it), null (clear it) or a value. An
/// absent field must stay absent on the wire: serialize it with
/// `skip_serializing_if = "Option::is_none"`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Page_of_{T}"))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

/// The permissions kiln knows; tags may name custom ones.
pub const PERMISSIONS: &[&str] = &["admin", "tag", "target", "build", "image", "host", "pipeline"];

/// `GET /status`: what the hub runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Status {
    /// kiln's version.
    pub kiln: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The last event.
    pub event: i64,
    pub anonymous_read: bool,
}

/// `GET /whoami`: the caller.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WhoAmI {
    pub name: String,
    pub authenticated: bool,
    pub admin: bool,
    pub perms: Vec<String>,
}

/// The answer to a streamed upload (an artifact or a task's file).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Uploaded {
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_leave_absent_fields_absent_and_null_clears() {
        let only_extra = TagEdit {
            extra: BTreeMap::from([("k".to_string(), serde_json::json!(1))]),
            ..TagEdit::default()
        };
        let v = serde_json::to_value(&only_extra).expect("json");
        assert!(v.get("arches").is_none() && v.get("perm").is_none(), "{v}");
        let clear = TagEdit {
            perm: Some(None),
            arches: Some(Some("amd64".into())),
            ..TagEdit::default()
        };
        let v = serde_json::to_value(&clear).expect("json");
        assert_eq!(v["perm"], serde_json::Value::Null);
        assert_eq!(v["arches"], "amd64");
        let back: TagEdit = serde_json::from_value(v).expect("read back");
        assert_eq!((back.perm, back.arches), (Some(None), Some(Some("amd64".into()))));

        let priority_only = LinkEdit {
            priority: Some(3),
            ..LinkEdit::default()
        };
        let v = serde_json::to_value(&priority_only).expect("json");
        assert!(v.get("maxdepth").is_none(), "{v}");
        let back: LinkEdit = serde_json::from_value(serde_json::json!({"maxdepth": null})).expect("read");
        assert_eq!(back.maxdepth, Some(None));
    }

    #[test]
    fn task_requests_round_trip_through_the_wire_form() {
        let b = TaskRequest::Build(BuildRequest {
            target: "fw".into(),
            image: "cam/fw".into(),
            repo: "git+file:///r@main".into(),
            defines: vec![("a".into(), "1".into())],
            scratch: true,
            nvr: None,
        });
        let t = NewTask::new(b.clone());
        let v = serde_json::to_value(&t).expect("json");
        assert_eq!(v["method"], "build");
        assert_eq!(v["request"]["image"], "cam/fw");
        let back: NewTask = serde_json::from_value(v).expect("read back");
        assert_eq!(back, t);
        let e = serde_json::from_value::<NewTask>(serde_json::json!({"method": "bake"})).expect_err("unknown");
        assert!(e.to_string().contains("unknown task method `bake`"), "{e}");
        let e = serde_json::from_value::<NewTask>(serde_json::json!({"method": "update", "request": {"target": "x"}}))
            .expect_err("incomplete");
        assert!(e.to_string().contains("update request: missing field"), "{e}");
        let n: NewTask = serde_json::from_value(serde_json::json!({"method": "noop"})).expect("noop");
        assert_eq!(n.request, TaskRequest::Noop);
        assert_eq!(n.priority, 20);
    }
}
