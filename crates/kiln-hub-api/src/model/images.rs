//! Source images on the hub.

use super::*;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Image {
    pub name: String,
    pub version: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
    pub uploader: String,
    pub time: i64,
}
