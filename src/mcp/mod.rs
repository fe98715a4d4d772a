//! The MCP face of ARES: one handler, served the same over stdio and streamable HTTP.

pub mod access;
pub mod completions;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod errors;
pub mod portable;
pub mod prompts;
pub mod resources;
pub mod summaries;
pub mod tools;
pub mod wire;

use crate::audit::{Actor, CallContext};
use crate::auth::Caller;
use crate::service::Ares;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::{Arc, LazyLock, OnceLock};
use tracing::Instrument;

static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(tools::list);

const INSTRUCTIONS: &str = "ARES checks what agents claim. Register an agent (register_agent), \
create a task with acceptance criteria (create_task), assign it (assign_task), submit evidence \
(submit_evidence), then verify it (verify_task); get_reliability shows how far an agent can be \
trusted. The prompt submit_complete_evidence says what evidence a task's criteria need and how \
to sign it.";

/// The MCP handler; cheap to clone, one per session.
#[derive(Clone)]
pub struct AresServer {
    ares: Arc<Ares>,
    /// Who this session's calls are recorded as in the audit log (the local user unless
    /// authentication says otherwise).
    actor: Actor,
    /// Counts this session as open from `initialized` until the handler drops with it.
    session: Arc<OnceLock<crate::metrics::SessionGuard>>,
    /// The resources this session subscribed to with `resources/subscribe`.
    subscriptions: Arc<resources::Subscriptions>,
}

impl AresServer {
    pub fn new(ares: Arc<Ares>) -> Self {
        Self {
            ares,
            actor: Actor::local(),
            session: Arc::default(),
            subscriptions: Arc::default(),
        }
    }

    /// Records this session's calls as `actor`'s.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }
}

impl ServerHandler for AresServer {
    /// rmcp hands over what it could not route: an unknown method, or a known one whose
    /// params do not decode. Either way the client is told which, naming the field.
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        Err(wire::unroutable_request(
            &request.method,
            request.params.as_ref(),
        ))
    }

    fn get_info(&self) -> ServerConfig {
        let mut info = Implementation::from_build_env();
        info.name = "ares".into();
        info.version = env!("CARGO_PKG_VERSION").into();
        info.title = Some("ARES — Agent Reliability Enforcement System".into());
        #[allow(unused_mut)]
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_completions()
            .build();
        // The conformance suite tests MCP logging, which ARES itself does not use.
        #[cfg(feature = "conformance")]
        {
            capabilities.logging = Some(Default::default());
        }
        ServerConfig::new(capabilities)
            .with_server_info(info)
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        #[allow(unused_mut)]
        let mut tools = TOOLS.clone();
        #[cfg(feature = "conformance")]
        tools.extend(conformance::tools());
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        #[cfg(feature = "conformance")]
        if conformance::is_tool(name) {
            return conformance::tools().into_iter().find(|t| t.name == name);
        }
        TOOLS.iter().find(|t| t.name == name).cloned()
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        #[allow(unused_mut)]
        let mut listed = prompts::list();
        #[cfg(feature = "conformance")]
        listed.extend(conformance::prompts());
        Ok(ListPromptsResult::with_all_items(listed))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        #[cfg(feature = "conformance")]
        if conformance::is_prompt(&request.name) {
            let args = request.arguments.unwrap_or_default();
            return conformance::get_prompt(&request.name, &args).map(Into::into);
        }
        let caller = caller_of(&context);
        prompts::get(&self.ares, &caller, &request.name, request.arguments)
            .await
            .map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        completions::complete(&self.ares, &caller_of(&context), &request).await
    }

    #[cfg(feature = "conformance")]
    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
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

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        #[allow(unused_mut)]
        let mut listed = resources::list();
        #[cfg(feature = "conformance")]
        listed.extend(conformance::resources());
        Ok(ListResourcesResult::with_all_items(listed))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        #[allow(unused_mut)]
        let mut listed = resources::templates();
        #[cfg(feature = "conformance")]
        listed.extend(conformance::templates());
        Ok(ListResourceTemplatesResult::with_all_items(listed))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        #[cfg(feature = "conformance")]
        if let Some(fixture) = conformance::read_resource(&request.uri) {
            return fixture.map(Into::into);
        }
        let caller = caller_of(&context);
        resources::read(&self.ares, &caller, &request.uri)
            .await
            .map(Into::into)
    }

    /// Handshake-era subscriptions: the session is told of changes until it unsubscribes
    /// or ends. Subscribing needs the right to read the resource.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        #[cfg(feature = "conformance")]
        if conformance::read_resource(&request.uri).is_some() {
            return Ok(());
        }
        let caller = caller_of(&context);
        resources::read(&self.ares, &caller, &request.uri).await?;
        self.subscriptions
            .add(&self.ares, request.uri, context.peer.clone());
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.remove(&request.uri);
        Ok(())
    }

    /// Per-request (2026-07-28) subscriptions: ARES accepts resource subscriptions to any
    /// of its resources; `listen` checks the right to read each one.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let uris: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| resources::Uri::parse(uri).is_ok())
            .cloned()
            .collect();
        // The acknowledgment goes out before `listen` runs; listening starts here so that
        // a change the client makes right after it is not missed.
        self.subscriptions.listening(&self.ares);
        Some(
            SubscriptionFilter::builder()
                .resource_subscriptions(uris)
                .build(),
        )
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let caller = caller_of(context.request_context());
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        for uri in &uris {
            resources::read(&self.ares, &caller, uri).await?;
        }
        let sink = context.sink().clone();
        let stop = context.request_context().ct.clone();
        resources::forward(
            self.subscriptions.take_listening(&self.ares),
            stop,
            || Some(uris.clone()),
            |uri| {
                let sink = sink.clone();
                async move { sink.notify_resource_updated(uri).await.is_ok() }
            },
        )
        .await;
        Ok(())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        #[cfg(feature = "conformance")]
        if conformance::is_tool(&request.name) {
            let args = request.arguments.unwrap_or_default();
            return conformance::call_tool(&request.name, &args, &context)
                .await
                .map(Into::into);
        }
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
        let token = context
            .meta
            .get_progress_token()
            .or_else(|| request.meta.as_ref()?.get_progress_token());
        let dispatch = crate::audit::context::scope(
            call,
            tools::call(&self.ares, &request.name, Some(arguments)),
        )
        .instrument(span.clone());
        let result = match token {
            None => dispatch.await,
            Some(token) => {
                let (progress, forwarding) = ProgressToPeer::start(context.peer.clone(), token);
                let result = crate::service::progress::scope(progress, dispatch).await;
                // Every report is delivered before the result is.
                let _ = forwarding.await;
                result
            }
        };
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

/// Progress of the call, sent to the client as `notifications/progress` in the order it
/// was reported.
struct ProgressToPeer(tokio::sync::mpsc::UnboundedSender<(u32, u32, String)>);

impl ProgressToPeer {
    fn start(
        peer: rmcp::Peer<RoleServer>,
        token: rmcp::model::ProgressToken,
    ) -> (
        Arc<dyn crate::service::progress::Progress>,
        tokio::task::JoinHandle<()>,
    ) {
        let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel::<(u32, u32, String)>();
        let forwarding = tokio::spawn(async move {
            while let Some((done, total, message)) = reports.recv().await {
                let param = rmcp::model::ProgressNotificationParam::new(token.clone(), done.into())
                    .with_total(total.into())
                    .with_message(message);
                if peer.notify_progress(param).await.is_err() {
                    return;
                }
            }
        });
        (Arc::new(Self(sender)), forwarding)
    }
}

impl crate::service::progress::Progress for ProgressToPeer {
    fn report(&self, done: u32, total: u32, message: String) {
        let _ = self.0.send((done, total, message));
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
