//! The service boundary's error: every operation answers with one of these, and
//! [`crate::mcp::errors`] maps them to the wire in one place.

use crate::store::StoreError;

/// Why an operation did not happen. A failed operation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum AresError {
    /// The caller sent something malformed; `field` names the offending argument.
    #[error("invalid `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// An id that names nothing.
    #[error("{kind} not found: {id}")]
    NotFound { kind: &'static str, id: String },
    /// A well-formed request the current state does not allow (duplicate name, illegal
    /// transition, suspended agent, …). The message says what and why.
    #[error("{0}")]
    Refused(String),
    /// A concurrent call changed the same record first; the operation is retried.
    #[error("the record changed while this call was in flight; retry the call")]
    Conflict,
    /// The store could not be reached; the call may be retried.
    #[error("storage is unavailable, retry shortly")]
    Unavailable(#[source] StoreError),
    /// A fault inside ARES; logged with its cause, never shown to the client in detail.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AresResult<T> = Result<T, AresError>;

impl AresError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::Refused(message.into())
    }
}

impl From<StoreError> for AresError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            StoreError::Duplicate(what) => {
                Self::Refused(format!("a record with this {what} already exists"))
            }
            StoreError::Conflict => Self::Conflict,
            StoreError::Internal(e) => Self::Internal(e),
        }
    }
}
