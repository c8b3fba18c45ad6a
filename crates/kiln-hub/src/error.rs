//! The hub's errors: an HTTP status, a stable code and a message, sent as
//! `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

impl HubError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> HubError {
        HubError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> HubError {
        HubError::new(404, "not_found", message)
    }
    pub fn bad_request(message: impl Into<String>) -> HubError {
        HubError::new(400, "bad_request", message)
    }
    pub fn conflict(message: impl Into<String>) -> HubError {
        HubError::new(409, "conflict", message)
    }
    pub fn forbidden(message: impl Into<String>) -> HubError {
        HubError::new(403, "forbidden", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> HubError {
        HubError::new(401, "unauthorized", message)
    }
    pub fn locked(message: impl Into<String>) -> HubError {
        HubError::new(423, "locked", message)
    }
    /// A request understood and authenticated that starts nothing (a
    /// pushed ref no filter admits, an event that is not a push).
    pub fn ignored(message: impl Into<String>) -> HubError {
        HubError::new(422, "ignored", message)
    }
    pub fn internal(message: impl Into<String>) -> HubError {
        HubError::new(500, "internal", message)
    }
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for HubError {}

impl From<sqlx::Error> for HubError {
    fn from(e: sqlx::Error) -> HubError {
        if let sqlx::Error::Database(d) = &e
            && let Some(refusal) = refused_by_database(d.as_ref())
        {
            tracing::warn!("the database refused a request: {e}");
            return refusal;
        }
        // The database's text may quote a value a client sent.
        tracing::error!("database: {}", crate::logsafe::esc(&e));
        HubError::internal(format!("database error: {e}"))
    }
}

/// What the database refuses because of the request's data, as a 4xx that
/// says so without the database's own words (SQL, table and constraint
/// names): a unique key that exists, a reference to nothing, a value
/// missing or out of range, and (PostgreSQL's data exceptions) text or a
/// number it cannot store, such as text with NUL. The checks before a
/// change should have answered first; this is the net under them.
fn refused_by_database(d: &dyn sqlx::error::DatabaseError) -> Option<HubError> {
    use sqlx::error::ErrorKind;
    let pg_code = d
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .map(|p| p.code());
    Some(match d.kind() {
        ErrorKind::UniqueViolation => HubError::conflict("already exists"),
        ErrorKind::ForeignKeyViolation => HubError::bad_request("the request refers to something that does not exist"),
        ErrorKind::NotNullViolation => HubError::bad_request("the request is missing a value"),
        ErrorKind::CheckViolation => HubError::bad_request("a value of the request is out of range"),
        _ => match pg_code {
            Some("22021") => HubError::bad_request("the request has text with a NUL character, which is not accepted"),
            Some(c) if c.starts_with("22") => HubError::bad_request("the request has a value that cannot be stored"),
            _ => return None,
        },
    })
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (status, axum::Json(body)).into_response()
    }
}
