//! The one place service errors become MCP answers.
//!
//! - Malformed input (`Invalid`) is a JSON-RPC invalid-params error (-32602) with
//!   `data.field`.
//! - Refusals and unknown ids are tool results with `isError: true`, so an agent's model sees
//!   why and can act on it.
//! - An unreachable store is a tool error saying to retry.
//! - Internal faults are logged with their cause chain and answered with an opaque reference.

use crate::error::AresError;
use rmcp::model::{CallToolResult, ContentBlock, ErrorData};
use serde_json::json;

pub fn to_mcp(error: AresError) -> Result<CallToolResult, ErrorData> {
    match error {
        AresError::Invalid { field, message } => Err(super::wire::invalid(&field, &message)),
        AresError::NotFound { .. } | AresError::Refused(_) | AresError::Conflict => {
            Ok(tool_error(error.to_string()))
        }
        AresError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "store unavailable");
            Ok(tool_error(
                "ARES storage is temporarily unavailable; nothing was changed — retry shortly"
                    .into(),
            ))
        }
        AresError::Internal(cause) => {
            let reference = uuid::Uuid::new_v4();
            tracing::error!(%reference, error = ?cause, "internal error");
            Err(ErrorData::internal_error(
                format!("internal error (reference {reference}); nothing was changed"),
                Some(json!({ "reference": reference.to_string() })),
            ))
        }
    }
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}
