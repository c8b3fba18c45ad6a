//! Device channels (docs/channels.md): a tag's latest build of each image,
//! as a signed index devices fetch.

use super::*;

/// `/channels/{tag}/index.json`: what a device reads. Signed as a whole
/// (`index.json.minisig`); `sequence` grows with every publication of the
/// channel, so a device that remembers the last one it accepted can refuse
/// an older index (a rollback).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelIndex {
    /// 1.
    pub schema: i64,
    /// The tag the channel publishes.
    pub channel: String,
    pub sequence: i64,
    /// Seconds since the epoch, when it was published.
    pub timestamp: i64,
    /// The hub event the content reflects.
    pub event: i64,
    /// The signing key's id (minisign's, upper-case hex).
    pub key_id: String,
    /// By image name: its latest build in the tag (inheritance included).
    pub images: BTreeMap<String, ChannelImage>,
}

/// One image of a channel: the latest build and its files.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelImage {
    pub nvr: String,
    pub version: String,
    pub release: String,
    /// The image file: its name, size, sha256 and download URL (relative
    /// to the index's own URL).
    pub file: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
    pub url: String,
    /// Every file of the build (the image, its manifest, checksums, log).
    pub files: Vec<ChannelFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelFile {
    pub file: String,
    pub format: String,
    pub size: i64,
    pub sha256: String,
    pub url: String,
}

/// A channel's last publication.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelInfo {
    pub channel: String,
    pub sequence: i64,
    pub timestamp: i64,
    pub event: i64,
    pub key_id: String,
    pub images: i64,
    /// Whether the hub republishes after every change to the tag (the
    /// tag's own `channel.publish` extra).
    pub auto: bool,
    /// The index's path on the hub.
    pub path: String,
}

/// The hub's channel signing key (public half).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelKey {
    pub key_id: String,
    /// minisign's `.pub` file: a comment line and the key in base64.
    pub public_key: String,
    pub created: i64,
}
