//! The MCP face of ARES: one handler, served the same over stdio and streamable HTTP.

pub mod access;
pub mod errors;
pub mod summaries;
pub mod tools;
pub mod wire;

use crate::audit::{Actor, CallContext};
use crate::auth::Caller;
use crate::service::Ares;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::{Arc, LazyLock, OnceLock};
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
    /// Who this session's calls are recorded as in the audit log (the local user unless
    /// authentication says otherwise).
    actor: Actor,
    /// Counts this session as open from `initialized` until the handler drops with it.
    session: Arc<OnceLock<crate::metrics::SessionGuard>>,
}

impl AresServer {
    pub fn new(ares: Arc<Ares>) -> Self {
        Self {
            ares,
            actor: Actor::local(),
            session: Arc::default(),
        }
    }

    /// Records this session's calls as `actor`'s.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
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

    /// A session begins (stdio, or HTTP with the handshake; per-request clients have none).
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let transport = match context.extensions.get::<axum::http::request::Parts>() {
            Some(_) => "http",
            None => "stdio",
        };
        let _ = self
            .session
            .set(self.ares.metrics.session_opened(transport));
        tracing::info!(transport, "client initialized");
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let known = TOOLS.iter().any(|t| t.name == request.name);
        let _timer = self
            .ares
            .metrics
            .time_tool_call(known.then_some(&*request.name));
        let caller = caller_of(&context);
        let span = tracing::info_span!("tool", name = %request.name, key = %caller.key_id);
        let started = std::time::Instant::now();
        let mut arguments = request.arguments.unwrap_or_default();
        if let Err(refusal) = access::check(&self.ares, &caller, &request.name, &mut arguments)
            .instrument(span.clone())
            .await
        {
            span.in_scope(|| tracing::info!(%refusal, "forbidden"));
            return Ok(CallToolResult::error(vec![ContentBlock::text(refusal)]).into());
        }
        // What the audit log records of this call, should it change anything.
        let actor = if caller.key_id == "local" {
            self.actor.clone()
        } else {
            Actor::from(&caller)
        };
        let call = CallContext::for_call(actor, &request.name, Some(&arguments));
        let dispatch = tools::call(&self.ares, &request.name, Some(arguments));
        let result = crate::audit::context::scope(call, dispatch)
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

/// Who is calling: the key the HTTP gate put on the request, or — with no HTTP request at
/// all, i.e. on stdio — the local user. An HTTP request without one is refused by the gate
/// before it gets here; should one slip through, it gets no rights.
fn caller_of(context: &RequestContext<RoleServer>) -> Caller {
    match context.extensions.get::<axum::http::request::Parts>() {
        None => Caller::local(),
        Some(parts) => parts.extensions.get::<Caller>().cloned().unwrap_or(Caller {
            key_id: "unauthenticated".into(),
            role: crate::auth::Role::Agent,
            agent_id: None,
        }),
    }
}
