//! The client matrix: the official Python and TypeScript MCP SDK clients each run the core
//! lifecycle against the real `ares` binary, over stdio and streamable HTTP, on every protocol
//! revision ARES speaks (the handshake revisions 2025-06-18 and 2025-11-25, and the
//! per-request 2026-07-28). Each cell is a subprocess (tests/clients/) that connects on exactly
//! its revision and checks the server agreed, then registers an agent, creates, assigns,
//! submits evidence, verifies (with a progress token: at least one `notifications/progress`),
//! reads the reliability, validates every `structuredContent` against the tool's
//! `outputSchema`, and subscribes to `ares://agents/{id}` in the revision's own way
//! (`resources/subscribe` or `subscriptions/listen`) until a change is told.
//!
//! A cell passes, or is "not supported by SDK" when the SDK itself does not speak that
//! revision (it says so from its own list of versions, and only where that is known below);
//! anything else fails the test. The matrix is printed and written to docs/compatibility.md,
//! and, when every cell is green, to README.md's Compatibility section.
//!
//! The clients are installed by `.ci/clients` (a Python venv in target/clients-venv, the npm
//! packages in node_modules); without them this test fails, saying so. It never skips.

mod common;

use common::db::TestDatabase;
use common::{ADMIN_TOKEN, spawn_http, terminate};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const REVISIONS: [&str; 3] = ["2025-06-18", "2025-11-25", "2026-07-28"];
const TRANSPORTS: [Transport; 2] = [Transport::Stdio, Transport::Http];
const CELL_TIMEOUT: Duration = Duration::from_secs(90);

/// Cells an SDK is known not to speak: the TypeScript SDK v1 (`@modelcontextprotocol/sdk`)
/// has only the initialize handshake (its SUPPORTED_PROTOCOL_VERSIONS end at 2025-11-25; no
/// `server/discover`, no per-request envelope). Any other "unsupported" fails the test.
const KNOWN_UNSUPPORTED: [(&str, &str); 1] = [("typescript-v1", "2026-07-28")];

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Stdio,
    Http,
}

impl Transport {
    fn arg(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "streamable HTTP",
        }
    }
}

struct Client {
    id: &'static str,
    label: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const INSTALL_HINT: &str = "run .ci/clients (it installs the Python SDK into target/clients-venv \
     and the TypeScript SDKs into node_modules)";

/// The three clients, after checking each is installed.
fn clients() -> Vec<Client> {
    let root = repo();
    let python = root.join("target/clients-venv/bin/python");
    assert!(
        python.is_file(),
        "the Python SDK client's venv is missing ({}): {INSTALL_HINT}",
        python.display()
    );
    let probe = std::process::Command::new(&python)
        .args(["-c", "import mcp"])
        .output()
        .expect("run the venv's python");
    assert!(
        probe.status.success(),
        "the venv {} has no `mcp` package ({}): {INSTALL_HINT}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    for package in ["sdk", "client"] {
        let manifest = root.join(format!(
            "node_modules/@modelcontextprotocol/{package}/package.json"
        ));
        assert!(
            manifest.is_file(),
            "node_modules has no @modelcontextprotocol/{package}: {INSTALL_HINT}"
        );
    }
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is not on PATH: the TypeScript clients need Node.js 20 or newer"
    );

    let script = |path: &str| root.join(path).display().to_string();
    let ts = script("tests/clients/typescript/matrix_client.mjs");
    vec![
        Client {
            id: "python",
            label: "Python",
            program: python,
            args: vec![script("tests/clients/python/matrix_client.py")],
        },
        Client {
            id: "typescript-v1",
            label: "TypeScript v1",
            program: "node".into(),
            args: vec![ts.clone(), "--sdk".into(), "v1".into()],
        },
        Client {
            id: "typescript-v2",
            label: "TypeScript v2",
            program: "node".into(),
            args: vec![ts, "--sdk".into(), "v2".into()],
        },
    ]
}

/// What one cell reported.
struct Outcome {
    client: &'static str,
    transport: Transport,
    revision: &'static str,
    sdk: String,
    result: String,
    detail: String,
    elapsed: Duration,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.result == "pass"
            || (self.result == "unsupported"
                && KNOWN_UNSUPPORTED.contains(&(self.client, self.revision)))
    }

    fn cell(&self) -> &str {
        match self.result.as_str() {
            "pass" => "pass",
            "unsupported" => "not supported by SDK",
            _ => "**FAIL**",
        }
    }
}

async fn run_cell(
    client: &Client,
    transport: Transport,
    revision: &'static str,
    http_base: &str,
) -> Outcome {
    let started = Instant::now();
    // Each stdio cell spawns its own ares on its own SQLite file; HTTP cells share the server.
    let db = TestDatabase::sqlite().await;
    let mut command = tokio::process::Command::new(&client.program);
    command
        .args(&client.args)
        .args(["--transport", transport.arg(), "--revision", revision])
        .current_dir(repo())
        .kill_on_drop(true);
    match transport {
        Transport::Stdio => {
            command.args([
                "--bin",
                env!("CARGO_BIN_EXE_ares"),
                "--database-url",
                &db.url,
            ]);
        }
        Transport::Http => {
            command
                .args(["--url", &format!("{http_base}/mcp")])
                .env("ARES_API_KEY", ADMIN_TOKEN);
        }
    }
    let output = tokio::time::timeout(CELL_TIMEOUT, command.output()).await;
    let (report, stderr) = match output {
        Err(_) => (None, format!("no answer within {CELL_TIMEOUT:?}")),
        Ok(Err(e)) => (
            None,
            format!("could not start {}: {e}", client.program.display()),
        ),
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let report = stdout
                .lines()
                .rev()
                .find_map(|line| serde_json::from_str::<Value>(line).ok());
            (report, String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let text = |report: &Option<Value>, key: &str| {
        report
            .as_ref()
            .and_then(|r| r.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut outcome = Outcome {
        client: client.id,
        transport,
        revision,
        sdk: text(&report, "sdk"),
        result: text(&report, "result"),
        detail: text(&report, "detail"),
        elapsed: started.elapsed(),
    };
    if outcome.result == "pass" && text(&report, "negotiated") != revision {
        outcome.result = "fail".into();
        outcome.detail = format!("negotiated {:?}", text(&report, "negotiated"));
    }
    if !outcome.ok() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        outcome.detail = format!(
            "{} [result {:?}]\n    stderr:\n    {}",
            outcome.detail,
            outcome.result,
            tail.join("\n    ")
        );
    }
    outcome
}

/// The matrix as Markdown: one row per client and transport, one column per revision.
fn table(clients: &[Client], outcomes: &[Outcome]) -> String {
    let mut md = String::from("| Client | SDK | Transport |");
    for revision in REVISIONS {
        md.push_str(&format!(" {revision} |"));
    }
    md.push_str("\n| --- | --- | --- |");
    md.push_str(&" --- |".repeat(REVISIONS.len()));
    md.push('\n');
    for client in clients {
        for transport in TRANSPORTS {
            let row: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.client == client.id && o.transport == transport)
                .collect();
            let sdk = row
                .iter()
                .map(|o| o.sdk.as_str())
                .find(|s| !s.is_empty())
                .unwrap_or("?");
            md.push_str(&format!(
                "| {} | `{sdk}` | {} |",
                client.label,
                transport.label()
            ));
            for revision in REVISIONS {
                let cell = row
                    .iter()
                    .find(|o| o.revision == revision)
                    .map_or("?", |o| o.cell());
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
        }
    }
    md
}

const LEGEND: &str = "\
Each **pass** cell connected on exactly that revision (the server agreed to it), then ran \
register_agent, create_task, assign_task, submit_evidence, verify_task and get_reliability; \
every result's `structuredContent` matched the tool's `outputSchema`; `verify_task`, called \
with a progress token, sent `notifications/progress`; and a subscription to \
`ares://agents/{id}` (`resources/subscribe` on 2025-06-18 and 2025-11-25, \
`subscriptions/listen` on 2026-07-28) delivered `notifications/resources/updated` after a \
change to the agent. **not supported by SDK**: that SDK release does not speak the revision \
(the TypeScript SDK v1 has only the initialize handshake; v2, `@modelcontextprotocol/client`, \
replaces it and adds 2026-07-28).

How each revision is chosen: Python offers an older handshake revision by sending the SDK's \
`InitializeRequest` with it and `adopt`ing the answer (its `initialize()` always offers the \
newest), and uses `discover()` for 2026-07-28; TypeScript v2 uses its options \
(`supportedProtocolVersions: [revision]`, and `versionNegotiation: { mode: { pin } }` for \
2026-07-28); TypeScript v1 has no such option, so a thin transport wrapper rewrites the \
`protocolVersion` its `initialize` offers.";

fn document(table: &str) -> String {
    format!(
        "# Client compatibility\n\n\
         Generated by `cargo test --test client_matrix` (tests/client_matrix.rs, clients in \
         tests/clients/, installed by `.ci/clients`); do not edit by hand.\n\n\
         {table}\n{LEGEND}\n"
    )
}

const README_START: &str = "<!-- client-matrix:start -->";
const README_END: &str = "<!-- client-matrix:end -->";

/// Writes `content` to `path` unless it already holds exactly that.
fn write_if_changed(path: &Path, content: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(content) {
        std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Puts the table between README.md's client-matrix markers.
fn update_readme(table: &str) {
    let path = repo().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let (Some(start), Some(end)) = (readme.find(README_START), readme.find(README_END)) else {
        panic!("README.md has no {README_START} … {README_END} section for the client matrix");
    };
    let updated = format!(
        "{}{README_START}\n{table}{}",
        &readme[..start],
        &readme[end..]
    );
    write_if_changed(&path, &updated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sdk_client_runs_the_lifecycle_on_every_revision_and_transport() {
    let clients = clients();
    let http_db = TestDatabase::sqlite().await;
    let (server, base) = spawn_http(
        &http_db.url,
        &[("ARES_ADMIN_TOKEN", ADMIN_TOKEN), ("ARES_LOG", "warn")],
    )
    .await;

    let mut outcomes = Vec::new();
    for client in &clients {
        for transport in TRANSPORTS {
            for revision in REVISIONS {
                let outcome = run_cell(client, transport, revision, &base).await;
                eprintln!(
                    "{:<14} {:<6} {revision}: {} in {:.1} s ({})",
                    client.id,
                    transport.arg(),
                    outcome.cell(),
                    outcome.elapsed.as_secs_f64(),
                    outcome.detail
                );
                outcomes.push(outcome);
            }
        }
    }
    let (_, server_log) = terminate(server).await;

    let table = table(&clients, &outcomes);
    println!("{table}");
    write_if_changed(&repo().join("docs/compatibility.md"), &document(&table));

    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(|o| {
            format!(
                "{} over {} on {}: {}",
                o.client,
                o.transport.label(),
                o.revision,
                o.detail
            )
        })
        .collect();
    // README keeps the last green matrix; a failing run shows only in docs/compatibility.md.
    if failed.is_empty() {
        update_readme(&table);
    }
    assert!(
        failed.is_empty(),
        "{} of {} cells failed:\n{}\nserver log:\n{server_log}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}
