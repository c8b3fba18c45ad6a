//! The hub's data: the wire model of `kiln_hub_api::model`, and who is
//! asking (a [`Principal`], resolved from a token on every request).

pub use kiln_hub_api::model::*;

/// Who is asking: a user (or host) with permissions, or nobody.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    pub id: Option<i64>,
    pub name: String,
    pub admin: bool,
    pub perms: Vec<String>,
    /// Set when the principal is a builder.
    pub host: Option<HostRef>,
}

/// A builder's registration, as its token resolves.
#[derive(Clone, Debug, Default)]
pub struct HostRef {
    pub id: i64,
    pub arch: String,
    pub channels: Vec<String>,
    pub capacity: i64,
    pub enabled: bool,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            id: None,
            name: "anonymous".into(),
            admin: false,
            perms: Vec::new(),
            host: None,
        }
    }
    pub fn has(&self, perm: &str) -> bool {
        self.id.is_some() && (self.admin || self.perms.iter().any(|p| p == perm))
    }
}
