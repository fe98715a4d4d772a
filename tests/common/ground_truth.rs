//! Ground-truth fixtures: a throwaway workspace, the real downstream servers installed by
//! `npm ci` (filesystem, ESLint, Playwright) plus `ares code-checker`, a config file naming
//! them, a page served on 127.0.0.1, and the agent's side of a task.
//!
//! A missing `node_modules` or chromium fails the test with what to run: tests never skip.

use super::Mcp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where Debian puts chromium; Playwright drives it instead of downloading a browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An npm-installed executable, or a panic saying to run `npm ci`.
pub fn node_bin(name: &str) -> PathBuf {
    let path = repo_root().join("node_modules/.bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` at the repository root to install the downstream MCP servers \
         these tests drive (package.json pins them)",
        path.display()
    );
    path
}

/// The Node MCP SDK module at `rel` (installed with the servers), as an import URL.
fn sdk(rel: &str) -> String {
    let path = repo_root()
        .join("node_modules/@modelcontextprotocol/sdk/dist/esm")
        .join(rel);
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` at the repository root",
        path.display()
    );
    format!("file://{}", path.display())
}

pub fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, as .ci/run \
         does) and run `npm ci`; Playwright must never download a browser"
    );
    CHROMIUM
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A project directory the agent claims to have worked in, and a scratch directory beside
/// it for configs, pid files and control files.
pub struct Workspace {
    _dir: tempfile::TempDir,
    /// Canonical, so it matches what servers report.
    pub root: PathBuf,
    pub scratch: PathBuf,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temporary directory");
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("project");
        let scratch = base.join("scratch");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        Workspace {
            _dir: dir,
            root,
            scratch,
        }
    }

    /// Writes a file under the root; returns its sha256.
    pub fn write(&self, rel: &str, content: &str) -> String {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        sha256(content.as_bytes())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The `mcpServers` entries of a downstream config, built up server by server.
#[derive(Default)]
pub struct Servers {
    entries: serde_json::Map<String, Value>,
}

impl Servers {
    pub fn new() -> Servers {
        Servers::default()
    }

    /// The official filesystem server rooted at the workspace. It runs under `sh` so the
    /// test can find its pid (`scratch/<name>.pid`) and kill it.
    pub fn filesystem(self, ws: &Workspace) -> Servers {
        self.filesystem_named("filesystem", ws)
    }

    pub fn filesystem_named(self, name: &str, ws: &Workspace) -> Servers {
        let pidfile = ws.scratch.join(format!("{name}.pid"));
        let script = format!(
            "echo $$ > '{}'; exec '{}' '{}'",
            pidfile.display(),
            node_bin("mcp-server-filesystem").display(),
            ws.root.display()
        );
        self.with(
            name,
            json!({ "command": "sh", "args": ["-c", script], "role": "filesystem" }),
        )
    }

    /// `ares code-checker` allowing `allow`, rooted at the workspace.
    pub fn code_checker(self, ws: &Workspace, allow: &[&str]) -> Servers {
        let mut args = vec![
            "code-checker".to_string(),
            "--root".into(),
            ws.root.display().to_string(),
            "--timeout-secs".into(),
            "60".into(),
        ];
        for a in allow {
            args.push("--allow".into());
            args.push(a.to_string());
        }
        self.with(
            "code_checker",
            json!({ "command": env!("CARGO_BIN_EXE_ares"), "args": args, "env": { "ARES_LOG": "warn" } }),
        )
    }

    /// ESLint's MCP server, in the code_checker role, resolving relative paths at the root.
    pub fn eslint(self, ws: &Workspace) -> Servers {
        self.with(
            "eslint",
            json!({
                "command": node_bin("mcp"),
                "role": "code_checker",
                "cwd": ws.root,
            }),
        )
    }

    /// Playwright's MCP server driving Debian's chromium, headless.
    pub fn playwright(self, ws: &Workspace) -> Servers {
        let out = ws.scratch.join("playwright");
        std::fs::create_dir_all(&out).unwrap();
        self.with(
            "playwright",
            json!({
                "command": node_bin("playwright-mcp"),
                "args": [
                    "--headless", "--browser", "chromium", "--executable-path", chromium(),
                    "--isolated", "--no-sandbox", "--output-dir", out,
                ],
                "cwd": out,
                "timeout_secs": 60,
            }),
        )
    }

    /// A filesystem-role server (`scratch/slow_fs.mjs`) that answers `get_file_info` like the
    /// real one, except that while `scratch/hang` exists it never answers (and, started
    /// then, never completes the handshake); while `scratch/die` exists it exits 0.1 s after
    /// the handshake. It writes its pid to `scratch/slow.pid` (and appends it to
    /// `scratch/starts.log`), its environment to `scratch/env.json`, and touches
    /// `scratch/called` on every call.
    pub fn slow_filesystem(self, name: &str, ws: &Workspace) -> Servers {
        let script = ws.scratch.join("slow_fs.mjs");
        std::fs::write(&script, slow_server_source()).unwrap();
        self.with(
            name,
            json!({
                "command": "node",
                "args": [script, ws.root.clone(), ws.scratch.clone()],
                "role": "filesystem",
            }),
        )
    }

    pub fn with(mut self, name: &str, entry: Value) -> Servers {
        self.entries.insert(name.to_string(), entry);
        self
    }

    /// Sets a key on an entry already added (e.g. `fallback`, `timeout_secs`).
    pub fn set(mut self, name: &str, key: &str, value: Value) -> Servers {
        self.entries
            .get_mut(name)
            .and_then(Value::as_object_mut)
            .expect("server added before set")
            .insert(key.to_string(), value);
        self
    }

    /// Writes `scratch/downstream.json`; returns its path.
    pub fn write(self, ws: &Workspace) -> PathBuf {
        let path = ws.scratch.join("downstream.json");
        let doc = json!({ "mcpServers": self.entries });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        path
    }
}

fn slow_server_source() -> String {
    format!(
        r#"import {{ Server }} from "{server}";
import {{ StdioServerTransport }} from "{stdio}";
import {{ ListToolsRequestSchema, CallToolRequestSchema }} from "{types}";
import fs from "node:fs";
import path from "node:path";
const [root, scratch] = process.argv.slice(2);
fs.writeFileSync(path.join(scratch, "slow.pid"), String(process.pid));
fs.writeFileSync(path.join(scratch, "env.json"), JSON.stringify(process.env));
fs.appendFileSync(path.join(scratch, "starts.log"), `${{process.pid}}\n`);
const server = new Server({{ name: "slow-fs", version: "1.0.0" }}, {{ capabilities: {{ tools: {{}} }} }});
server.setRequestHandler(ListToolsRequestSchema, async () => ({{ tools: [{{
  name: "get_file_info",
  inputSchema: {{ type: "object", properties: {{ path: {{ type: "string" }} }}, required: ["path"] }},
}}] }}));
server.setRequestHandler(CallToolRequestSchema, async (request) => {{
  fs.writeFileSync(path.join(scratch, "called"), "1");
  if (fs.existsSync(path.join(scratch, "hang"))) await new Promise(() => {{}});
  try {{
    const st = fs.statSync(path.resolve(root, request.params.arguments.path));
    return {{ content: [{{ type: "text", text: `size: ${{st.size}}\nisDirectory: ${{st.isDirectory()}}\nisFile: ${{st.isFile()}}` }}] }};
  }} catch (e) {{
    return {{ content: [{{ type: "text", text: `Error: ${{e.message}}` }}], isError: true }};
  }}
}});
if (fs.existsSync(path.join(scratch, "hang"))) setInterval(() => {{}}, 1 << 30);
else {{
  await server.connect(new StdioServerTransport());
  if (fs.existsSync(path.join(scratch, "die"))) setTimeout(() => process.exit(1), 100);
}}
"#,
        server = sdk("server/index.js"),
        stdio = sdk("server/stdio.js"),
        types = sdk("types.js"),
    )
}

/// Starts `ares serve` over stdio with the downstream config at `config` (if any).
pub async fn ares(db_url: &str, config: Option<&Path>, timeout_secs: u64) -> Mcp {
    let timeout = timeout_secs.to_string();
    let mut env: Vec<(&str, &str)> = vec![("ARES_DOWNSTREAM_TIMEOUT_SECS", &timeout)];
    let config = config.map(|c| c.display().to_string());
    if let Some(c) = &config {
        env.push(("ARES_DOWNSTREAM", c));
    }
    Mcp::stdio_with(db_url, &env).await
}

/// An agent, a task with `criteria` assigned to it, and `evidence` submitted: the task is
/// ready to verify. Returns (task id, agent id).
pub async fn submitted(mcp: &Mcp, criteria: Value, evidence: Value) -> (Value, Value) {
    let (task, agent, _) =
        submitted_with_receipt(mcp, "change the project", criteria, evidence).await;
    (task, agent)
}

/// As [`submitted`], with the task's description, also returning the evidence receipt.
pub async fn submitted_with_receipt(
    mcp: &Mcp,
    description: &str,
    criteria: Value,
    evidence: Value,
) -> (Value, Value, Value) {
    let agent = mcp
        .call(
            "register_agent",
            json!({ "name": format!("agent-{}", uuid::Uuid::new_v4().simple()), "capabilities": [] }),
        )
        .await;
    let task = mcp
        .call(
            "create_task",
            json!({ "description": description, "criteria": criteria, "agent_id": agent["id"] }),
        )
        .await;
    let receipt = mcp
        .call(
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": evidence }),
        )
        .await;
    assert_eq!(receipt["task_status"], "submitted", "{receipt}");
    (task["id"].clone(), agent["id"].clone(), receipt)
}

/// Verifies the task; returns the verdict.
pub async fn verify(mcp: &Mcp, task_id: &Value) -> Value {
    mcp.call("verify_task", json!({ "task_id": task_id })).await
}

/// A task with these criteria and evidence, verified.
pub async fn verdict(mcp: &Mcp, criteria: Value, evidence: Value) -> Value {
    let (task, _) = submitted(mcp, criteria, evidence).await;
    verify(mcp, &task).await
}

/// The result for criterion `i`, with a message showing the whole verdict on failure.
pub fn result(verdict: &Value, i: usize) -> &Value {
    &verdict["results"][i]
}

pub fn detail(verdict: &Value, i: usize) -> String {
    verdict["results"][i]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts criterion `i` has `status`, was checked via `via` and carries `discrepancy`.
#[track_caller]
pub fn assert_result(verdict: &Value, i: usize, status: &str, via: &str, discrepancy: bool) {
    let r = result(verdict, i);
    assert_eq!(r["status"], status, "criterion {i}: {r:#}");
    assert_eq!(r["checked_via"], via, "criterion {i}: {r:#}");
    assert_eq!(r["discrepancy"], discrepancy, "criterion {i}: {r:#}");
}

/// Waits (bounded) until `health` shows the downstream server `name` as `status`.
pub async fn wait_for_health(mcp: &Mcp, name: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = mcp.call("health", json!({})).await;
        let dep = health["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                d["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("downstream {name} (")))
            })
            .cloned();
        if let Some(dep) = &dep
            && dep["status"] == status
        {
            return dep.clone();
        }
        assert!(
            Instant::now() < deadline,
            "downstream {name} never became {status}: {health:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) for a file to appear.
pub async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `path` holds something other than `old`.
pub async fn wait_for_change(path: &Path, old: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(path).unwrap_or_default() == old {
        assert!(
            Instant::now() < deadline,
            "{} never changed",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the process whose pid is in `pidfile`.
pub fn kill(pidfile: &Path) {
    let pid =
        std::fs::read_to_string(pidfile).unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {pid} failed");
}

/// Serves `html` at every path on 127.0.0.1 until dropped.
pub struct Page {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Page {
    pub async fn serve(html: &'static str) -> Page {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move || async move { axum::response::Html(html) });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Page { url, task }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.task.abort();
    }
}
