//! The MCP face of ARES: one handler, served the same over stdio and streamable HTTP.

pub mod errors;
pub mod summaries;
pub mod tools;
pub mod wire;

use crate::service::Ares;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::{Arc, LazyLock};
use tracing::Instrument;

static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(tools::list);

const INSTRUCTIONS: &str = "ARES checks what agents claim. Register an agent (register_agent), \
create a task with acceptance criteria (create_task), assign it (assign_task), submit evidence \
(submit_evidence), then verify it (verify_task); get_reliability shows how far an agent can be \
trusted.";

/// The MCP handler; cheap to clone, one per session.
#[derive(Clone)]
pub struct AresServer {
    ares: Arc<Ares>,
}

impl AresServer {
    pub fn new(ares: Arc<Ares>) -> Self {
        Self { ares }
    }
}

impl ServerHandler for AresServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = Implementation::from_build_env();
        info.name = "ares".into();
        info.version = env!("CARGO_PKG_VERSION").into();
        info.title = Some("ARES — Agent Reliability Enforcement System".into());
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(info)
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(TOOLS.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        TOOLS.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = tracing::info_span!("tool", name = %request.name);
        let started = std::time::Instant::now();
        let result = tools::call(&self.ares, &request.name, request.arguments)
            .instrument(span.clone())
            .await;
        span.in_scope(|| match &result {
            Ok(r) if r.is_error == Some(true) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "refused")
            }
            Ok(_) => tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "ok"),
            Err(e) => tracing::info!(code = ?e.code, message = %e.message, "invalid call"),
        });
        result.map(Into::into)
    }
}
