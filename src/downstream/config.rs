//! The downstream configuration file: an `mcpServers` object in the shape Claude Desktop
//! uses, plus ARES's `role`, `fallback`, `root` and `timeout_secs` keys. Every problem is
//! reported with the server and the field it is about.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a downstream server is used for; each ground-truth criterion needs one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Reads files: `file_exists`, `file_contains`, `file_matches_evidence`.
    Filesystem,
    /// Runs commands and linters: `command_succeeds`, `lint_clean`.
    CodeChecker,
    /// Drives a browser: `page_contains`.
    Playwright,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Filesystem, Role::CodeChecker, Role::Playwright];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Filesystem => "filesystem",
            Role::CodeChecker => "code_checker",
            Role::Playwright => "playwright",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// How to reach a server.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    /// A streamable HTTP endpoint.
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

/// One configured server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The key under `mcpServers`; names the server in results and in `health`.
    pub name: String,
    pub role: Role,
    pub transport: Transport,
    /// The server to ask when this one cannot answer.
    pub fallback: Option<String>,
    /// Where relative criterion paths point for tools that need absolute ones (ESLint's
    /// `lint-files`); defaults to `cwd`.
    pub root: Option<PathBuf>,
    /// Overrides the manager's per-call timeout for this server (slow test suites).
    pub timeout: Option<Duration>,
}

/// Every configured server, in name order (JSON objects carry no order ARES keeps).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DownstreamConfig {
    pub servers: Vec<ServerConfig>,
}

/// One server's entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// `stdio`, `http` or `streamable-http`; inferred from `command` / `url` when absent.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    role: Option<String>,
    fallback: Option<String>,
    root: Option<PathBuf>,
    timeout_secs: Option<f64>,
}

impl DownstreamConfig {
    /// Reads and checks the file; relative `cwd` and `root` are taken from its directory.
    pub fn load(path: &Path) -> anyhow::Result<DownstreamConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the downstream config {}: {e}", path.display())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .map_err(|e| anyhow::anyhow!("downstream config {}: {e}", path.display()))
    }

    /// Parses the file's text; `base` anchors relative directories.
    pub fn parse(text: &str, base: &Path) -> Result<DownstreamConfig, String> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let servers = doc
            .get("mcpServers")
            .ok_or("expected a top-level `mcpServers` object")?
            .as_object()
            .ok_or("`mcpServers` must be an object of name → server")?;
        let mut raw = Vec::with_capacity(servers.len());
        for (name, value) in servers {
            let server: RawServer = serde_path_to_error::deserialize(value.clone())
                .map_err(|e| format!("server `{name}`: {}", describe(&e)))?;
            raw.push((name.clone(), server));
        }
        // A server that is only someone's fallback may take its role from that primary.
        let primary_role = |name: &str| {
            raw.iter()
                .find(|(_, s)| s.fallback.as_deref() == Some(name))
                .and_then(|(primary, s)| {
                    s.role.as_deref().map_or(Role::parse(primary), Role::parse)
                })
        };
        let mut out = Vec::with_capacity(raw.len());
        for (name, s) in &raw {
            out.push(server(name, s, base, primary_role(name))?);
        }
        for s in &out {
            if let Some(fallback) = &s.fallback {
                if fallback == &s.name {
                    return Err(format!(
                        "server `{}`: field `fallback` names the server itself",
                        s.name
                    ));
                }
                if !out.iter().any(|o| &o.name == fallback) {
                    return Err(format!(
                        "server `{}`: field `fallback` names `{fallback}`, which is not under `mcpServers`",
                        s.name
                    ));
                }
            }
        }
        Ok(DownstreamConfig { servers: out })
    }

    /// The servers that fill `role`, in the order a check tries them: each primary (by
    /// name) followed by its fallback chain. Use `fallback` to say which server comes first.
    pub fn for_role(&self, role: Role) -> Vec<&ServerConfig> {
        let is_fallback = |name: &str| {
            self.servers
                .iter()
                .any(|s| s.fallback.as_deref() == Some(name))
        };
        let mut order: Vec<&ServerConfig> = Vec::new();
        for primary in self
            .servers
            .iter()
            .filter(|s| s.role == role && !is_fallback(&s.name))
        {
            let mut next = Some(primary);
            while let Some(s) = next {
                if order.iter().any(|o| o.name == s.name) {
                    break;
                }
                order.push(s);
                next = s
                    .fallback
                    .as_deref()
                    .and_then(|f| self.servers.iter().find(|o| o.name == f));
            }
        }
        // Fallbacks whose primary has another role still serve their own role.
        for s in self.servers.iter().filter(|s| s.role == role) {
            if !order.iter().any(|o| o.name == s.name) {
                order.push(s);
            }
        }
        order
    }
}

fn server(
    name: &str,
    s: &RawServer,
    base: &Path,
    inherited: Option<Role>,
) -> Result<ServerConfig, String> {
    let at = |field: &str, problem: String| format!("server `{name}`: field `{field}` {problem}");
    if name.trim().is_empty() || name.contains('/') {
        return Err(format!(
            "server name {name:?} must be non-empty and contain no `/`"
        ));
    }
    let role = match &s.role {
        Some(r) => Role::parse(r).ok_or_else(|| {
            at(
                "role",
                format!("must be filesystem, code_checker or playwright (got {r:?})"),
            )
        })?,
        None => Role::parse(name).or(inherited).ok_or_else(|| {
            at(
                "role",
                "is missing: name the server filesystem, code_checker or playwright, or set \"role\"".into(),
            )
        })?,
    };
    let kind = match s.kind.as_deref() {
        None => None,
        Some("stdio") => Some(false),
        Some("http" | "streamable-http" | "streamableHttp") => Some(true),
        Some(other) => {
            return Err(at("type", format!("must be stdio or http (got {other:?})")));
        }
    };
    let anchored = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let transport = match (&s.command, &s.url, kind) {
        (Some(_), Some(_), _) => {
            return Err(at(
                "url",
                "cannot be given together with `command`: a server is either stdio or HTTP".into(),
            ));
        }
        (Some(command), None, None | Some(false)) => {
            if command.trim().is_empty() {
                return Err(at("command", "must not be empty".into()));
            }
            Transport::Stdio {
                command: command.clone(),
                args: s.args.clone(),
                env: s.env.clone(),
                cwd: s.cwd.as_ref().map(anchored),
            }
        }
        (None, Some(url), None | Some(true)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(at("url", format!("must be an http(s) URL (got {url:?})")));
            }
            for header in s.headers.keys() {
                if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(at(
                        "headers",
                        format!("has {header:?}, which is not a valid header name"),
                    ));
                }
            }
            Transport::Http {
                url: url.clone(),
                headers: s.headers.clone(),
            }
        }
        (_, _, Some(true)) => return Err(at("url", "is required for an http server".into())),
        (_, _, _) => {
            return Err(at(
                "command",
                "is missing: give `command` (stdio) or `url` (streamable HTTP)".into(),
            ));
        }
    };
    let timeout = match s.timeout_secs {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t <= 3600.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(at(
                "timeout_secs",
                format!("must be a number of seconds above 0 and at most 3600 (got {t})"),
            ));
        }
    };
    Ok(ServerConfig {
        name: name.to_string(),
        role,
        transport,
        fallback: s.fallback.clone(),
        root: s.root.as_ref().or(s.cwd.as_ref()).map(anchored),
        timeout,
    })
}

fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    if path == "." {
        inner
    } else {
        format!("field `{path}`: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DownstreamConfig, String> {
        DownstreamConfig::parse(text, Path::new("/etc/ares"))
    }

    #[test]
    fn claude_desktop_entries_take_their_role_from_the_name() {
        let config = parse(
            r#"{ "mcpServers": {
                "filesystem": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"] },
                "eslint": { "command": "npx", "args": ["@eslint/mcp"], "role": "code_checker", "cwd": "work" },
                "playwright": { "url": "http://127.0.0.1:8931/mcp", "headers": { "Authorization": "Bearer x" } }
            } }"#,
        )
        .unwrap();
        let roles: Vec<_> = config
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.role))
            .collect();
        assert!(roles.contains(&("filesystem", Role::Filesystem)));
        assert!(roles.contains(&("eslint", Role::CodeChecker)));
        assert!(roles.contains(&("playwright", Role::Playwright)));
        let eslint = config.servers.iter().find(|s| s.name == "eslint").unwrap();
        assert_eq!(eslint.root, Some(PathBuf::from("/etc/ares/work")));
    }

    #[test]
    fn a_fallback_follows_its_primary_and_inherits_its_role() {
        let config = parse(
            r#"{ "mcpServers": {
                "spare": { "command": "b" },
                "filesystem": { "command": "a", "fallback": "spare" }
            } }"#,
        )
        .unwrap();
        let order: Vec<_> = config
            .for_role(Role::Filesystem)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, ["filesystem", "spare"]);
    }

    #[test]
    fn problems_name_the_server_and_the_field() {
        let cases = [
            (
                r#"{ "mcpServers": { "github": { "command": "x" } } }"#,
                "server `github`: field `role`",
            ),
            (
                r#"{ "mcpServers": { "filesystem": { "args": [] } } }"#,
                "server `filesystem`: field `command`",
            ),
            (
                r#"{ "mcpServers": { "filesystem": { "command": "x", "fallbak": "y" } } }"#,
                "server `filesystem`",
            ),
            (
                r#"{ "mcpServers": { "filesystem": { "command": "x", "fallback": "nope" } } }"#,
                "field `fallback`",
            ),
            (
                r#"{ "mcpServers": { "playwright": { "url": "ftp://x" } } }"#,
                "server `playwright`: field `url`",
            ),
            (
                r#"{ "mcpServers": { "filesystem": { "command": "x", "args": "y" } } }"#,
                "field `args`",
            ),
            (
                r#"{ "mcpServers": { "filesystem": { "command": "x", "timeout_secs": 0 } } }"#,
                "field `timeout_secs`",
            ),
            (r#"{ "servers": {} }"#, "mcpServers"),
            ("{", "not valid JSON"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
