//! Builders as registered on the hub, and their heartbeat.

use super::*;

/// A builder, as registered on the hub.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostInfo {
    pub name: String,
    pub arch: String,
    pub channels: Vec<String>,
    pub capacity: i64,
    pub enabled: bool,
    pub last_seen: Option<i64>,
    /// Tasks it holds now.
    pub load: i64,
    /// Whether it takes work now, as the hub judges by its lease.
    pub state: HostState,
}

/// A builder's state as the hub sees it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Enabled, and it sent a heartbeat within two of the hub's leases.
    Ready,
    /// Enabled, but no heartbeat within two leases (or never).
    Offline,
    /// An admin disabled it.
    Disabled,
}

impl HostState {
    /// The state of an enabled (or not) builder last seen at `last_seen`,
    /// at `now`, on a hub whose claims last `lease` seconds.
    pub fn judge(enabled: bool, last_seen: Option<i64>, now: i64, lease: i64) -> HostState {
        match (enabled, last_seen) {
            (false, _) => HostState::Disabled,
            (true, Some(t)) if now - t < 2 * lease => HostState::Ready,
            (true, _) => HostState::Offline,
        }
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostState::Ready => "ready",
            HostState::Offline => "offline",
            HostState::Disabled => "disabled",
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    pub name: String,
    pub arch: String,
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    #[serde(default = "default_capacity")]
    pub capacity: i64,
}

fn default_channels() -> Vec<String> {
    vec!["default".into()]
}

fn default_capacity() -> i64 {
    1
}

/// `POST /hosts`'s answer: the builder's token, shown once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostToken {
    pub name: String,
    pub token: String,
}

/// `POST /host/heartbeat`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Heartbeat {
    /// Tasks of this builder that were cancelled: stop them.
    pub cancel: Vec<i64>,
    /// Seconds a claim lasts without a heartbeat.
    pub lease_seconds: i64,
}
