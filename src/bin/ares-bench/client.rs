//! One MCP client session over streamable HTTP, as a real agent would hold it: rmcp's client
//! with the initialize handshake (2025-11-25) or the per-request protocol (2026-07-28), and a
//! check on every reply.

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::Value;

/// How a client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// `initialize` first, then every call in that session (protocol 2025-11-25).
    Handshake,
    /// `server/discover`, then self-contained calls with no session (protocol 2026-07-28).
    PerRequest,
}

/// A connected session.
pub struct Client {
    service: RunningService<RoleClient, ()>,
}

/// Opens a session to `base`/mcp. `http` is shared by every session so connections are
/// pooled and kept alive, as a long-running agent's would be (rmcp's own default client
/// opens a connection per request).
pub async fn connect(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    protocol: Protocol,
) -> anyhow::Result<Client> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"));
    if let Some(key) = key {
        config = config.auth_header(key);
    }
    let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
    let service = match protocol {
        Protocol::Handshake => ().serve(transport).await?,
        Protocol::PerRequest => {
            ().serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await?
        }
    };
    Ok(Client { service })
}

impl Client {
    /// Calls `tool`; the reply must be a success with structured content, which is returned.
    /// Anything else is an error, described in one line.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, String> {
        let Value::Object(args) = args else {
            return Err(format!("{tool}: arguments must be an object"));
        };
        let result = self
            .service
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
            .await
            .map_err(|e| format!("{tool}: {e}"))?;
        if result.is_error == Some(true) {
            let text: Vec<_> = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            return Err(format!("{tool} refused: {}", text.join(" ")));
        }
        result
            .structured_content
            .ok_or_else(|| format!("{tool}: no structured content"))
    }

    /// Ends the session (a DELETE for handshake sessions).
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

/// The HTTP client every session shares.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client")
}
