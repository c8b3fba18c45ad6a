//! Users, API tokens and logging in.

use super::*;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct User {
    pub name: String,
    pub kind: String,
    pub perms: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub perms: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NewToken {
    pub id: i64,
    /// Shown once; the hub keeps only its hash.
    pub token: String,
    pub expires: Option<i64>,
}

/// `POST /login`: a password exchanged for a new token. (No `Debug`: it
/// holds a password.)
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub user: String,
    pub password: String,
    #[serde(default)]
    pub token_name: Option<String>,
    #[serde(default)]
    pub expires_days: Option<i64>,
}

/// `POST /users/{name}/perms`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PermIn {
    pub perm: String,
}

/// `POST /users/{name}/tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct TokenIn {
    /// A label (default `api`).
    pub name: Option<String>,
    pub expires_days: Option<i64>,
}

/// `POST /users`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserCreated {
    pub name: String,
}
