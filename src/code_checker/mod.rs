//! `ares code-checker`: a small MCP stdio server that runs a project's own checks for
//! `command_succeeds`. Its one tool, `run_command`, runs an allow-listed command (no shell)
//! in a directory under the root, with a time limit and an output cap, and reports exit
//! code, duration, the output's tail and any test counts. Everything else is refused.

pub mod allow;
pub mod run;

use allow::{AllowList, resolve_cwd};
use clap::Args;
use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use run::{Limits, RunOutcome};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// `ares code-checker` options.
#[derive(Debug, Clone, Args)]
pub struct CodeCheckerArgs {
    /// Commands run only in this directory or below it.
    #[arg(long)]
    pub root: PathBuf,
    /// A command that may be run, as an argv prefix: `--allow "cargo test"` admits
    /// `cargo test --release` but not `cargo build`. Repeat for more.
    #[arg(long = "allow", required = true)]
    pub allow: Vec<String>,
    /// Kill a command (and everything it started) after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Keep at most this many bytes of output (the end).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_output_bytes: usize,
}

/// `run_command`'s input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommand {
    /// The command line, e.g. `cargo test --workspace`. Split like a shell would split words,
    /// but run without a shell; it must start with an allow-listed command.
    pub command: String,
    /// Directory to run in, relative to the checker's root (default: the root). Must
    /// resolve inside the root.
    #[serde(default)]
    pub cwd: Option<String>,
}

static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    let mut annotations = ToolAnnotations::new();
    annotations.read_only_hint = Some(false);
    annotations.destructive_hint = Some(false);
    annotations.open_world_hint = Some(false);
    vec![
        Tool::new(
            "run_command",
            "Run an allow-listed command (no shell) in a directory under the checker's root, with a time limit and an output cap. Returns exit_code, duration_ms, timed_out, the output's tail and, when the runner's summary is recognised (cargo test, pytest, jest/npm test, node --test), test counts.",
            schema_for_type::<RunCommand>(),
        )
        .with_raw_output_schema(schema_for_output::<RunOutcome>())
        .with_annotations(annotations),
    ]
});

/// The server: the root, the allow-list and the limits, fixed at start.
#[derive(Clone)]
pub struct CodeChecker {
    root: Arc<PathBuf>,
    allow: Arc<AllowList>,
    limits: Limits,
}

impl CodeChecker {
    /// Checks the options: the root must exist, the allow-list must parse.
    pub fn new(args: &CodeCheckerArgs) -> anyhow::Result<CodeChecker> {
        let root = args.root.canonicalize().map_err(|e| {
            anyhow::anyhow!("--root {} cannot be resolved: {e}", args.root.display())
        })?;
        if !root.is_dir() {
            anyhow::bail!("--root {} is not a directory", root.display());
        }
        if args.timeout_secs == 0 {
            anyhow::bail!("--timeout-secs must be at least 1");
        }
        let allow = AllowList::parse(&args.allow).map_err(anyhow::Error::msg)?;
        Ok(CodeChecker {
            root: Arc::new(root),
            allow: Arc::new(allow),
            limits: Limits {
                timeout: Duration::from_secs(args.timeout_secs),
                max_output: args.max_output_bytes.max(256),
            },
        })
    }

    /// Runs the request, or says why it will not.
    pub async fn run_command(&self, req: RunCommand) -> Result<RunOutcome, String> {
        let argv = self.allow.admit(&req.command).map_err(|e| e.to_string())?;
        let cwd = resolve_cwd(&self.root, req.cwd.as_deref()).map_err(|e| e.to_string())?;
        tracing::info!(command = %req.command, cwd = %cwd.display(), "running");
        run::run(&argv, &cwd, self.limits)
            .await
            .map_err(|e| format!("cannot start `{}`: {e}", argv[0]))
    }
}

impl ServerHandler for CodeChecker {
    fn get_info(&self) -> ServerConfig {
        let mut info = Implementation::from_build_env();
        info.name = "ares-code-checker".into();
        info.version = env!("CARGO_PKG_VERSION").into();
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(info)
            .with_instructions(format!(
                "Runs allow-listed commands under {}: {}",
                self.root.display(),
                self.allow.describe()
            ))
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
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "run_command" {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{}`; this server offers run_command",
                    request.name
                ),
                None,
            ));
        }
        let req = decode(request.arguments)?;
        // A caller that gives up (cancels or disconnects) takes the run down with it.
        let outcome = tokio::select! {
            outcome = self.run_command(req) => outcome,
            () = context.ct.cancelled() => Err("cancelled by the client".into()),
        };
        let result = match outcome {
            Ok(out) => {
                let summary = match (out.timed_out, out.exit_code) {
                    (true, _) => {
                        format!("`{}` timed out after {} ms", out.command, out.duration_ms)
                    }
                    (false, Some(code)) => {
                        format!("`{}` exited {code} in {} ms", out.command, out.duration_ms)
                    }
                    (false, None) => format!("`{}` was killed by a signal", out.command),
                };
                let value = serde_json::to_value(&out).map_err(|e| {
                    ErrorData::internal_error(format!("could not encode the answer: {e}"), None)
                })?;
                let mut r = CallToolResult::success(vec![ContentBlock::text(summary)]);
                r.structured_content = Some(value);
                r
            }
            Err(refusal) => {
                tracing::info!(%refusal, "refused");
                CallToolResult::error(vec![ContentBlock::text(refusal)])
            }
        };
        Ok(result.into())
    }
}

/// Decodes `run_command`'s arguments; a problem is invalid params naming the field.
fn decode(arguments: Option<rmcp::model::JsonObject>) -> Result<RunCommand, ErrorData> {
    let value = serde_json::Value::Object(arguments.unwrap_or_default());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "arguments".to_string(),
            p => p,
        };
        ErrorData::invalid_params(
            format!("invalid `{field}`: {}", e.inner()),
            Some(serde_json::json!({ "field": field })),
        )
    })
}

/// Serves the code checker on stdin/stdout until the client hangs up.
pub async fn serve_stdio(args: CodeCheckerArgs) -> anyhow::Result<()> {
    let checker = CodeChecker::new(&args)?;
    tracing::info!(root = %checker.root.display(), allow = %checker.allow.describe(), "code checker serving MCP over stdio");
    // Boxed so that `main`'s `run`, which holds every subcommand's future, stays shallow:
    // rmcp's handshake future is deep.
    let running = Box::pin(checker.serve(rmcp::transport::io::stdio_pipes())).await?;
    let quit = Box::pin(running.waiting()).await?;
    tracing::info!(reason = ?quit, "code checker stopped");
    Ok(())
}
