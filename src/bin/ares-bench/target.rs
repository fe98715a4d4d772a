//! The server under load: an `ares serve --http` (or a reference server) this program starts
//! on a fresh database, or one already running at `--url`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bootstrap admin key of servers this program starts.
const SPAWN_TOKEN: &str = "ares-bench-admin-token";

pub struct Target {
    /// `http://host:port`; the MCP endpoint is `/mcp`.
    pub base: String,
    pub key: Option<String>,
    /// The server process, for its CPU time and memory.
    pub pid: Option<u32>,
    /// `sqlite` or `postgres`: where the server keeps its data.
    pub backend: String,
    child: Option<tokio::process::Child>,
    /// A temporary directory this program made and removes.
    scratch: Option<PathBuf>,
}

/// What to start.
pub enum Spawn<'a> {
    /// `ares serve --http` with this database (None: a temporary SQLite file).
    Ares {
        bin: &'a Path,
        database_url: Option<&'a str>,
    },
    /// The reference server of `examples/bench_ref.rs` in this mode (`trivial` or `insert`).
    Reference {
        bin: &'a Path,
        mode: &'a str,
        database_url: Option<&'a str>,
    },
}

impl Target {
    pub fn remote(base: &str, key: Option<String>, pid: Option<u32>) -> Target {
        Target {
            base: base.trim_end_matches('/').to_string(),
            key,
            pid,
            backend: "unknown".into(),
            child: None,
            scratch: None,
        }
    }

    /// A fresh scratch directory and the SQLite URL of a database inside it.
    pub fn scratch_sqlite() -> anyhow::Result<(PathBuf, String)> {
        let dir = std::env::temp_dir().join(format!(
            "ares-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}", dir.join("ares.db").display());
        Ok((dir, url))
    }

    /// Starts the server on a free loopback port and waits until it answers `/health`.
    /// `scratch`, if given, is removed when the server stops.
    pub async fn spawn(what: Spawn<'_>, scratch: Option<PathBuf>) -> anyhow::Result<Target> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log_dir = match &scratch {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir(),
        };
        let log = std::fs::File::create(log_dir.join(format!("server-{port}.log")))?;
        let (mut cmd, backend, key) = match what {
            Spawn::Ares { bin, database_url } => {
                let mut cmd = tokio::process::Command::new(bin);
                cmd.args(["serve", "--http", &addr])
                    .env("ARES_ADMIN_TOKEN", SPAWN_TOKEN)
                    // The load comes from one key; the per-key limit would measure itself.
                    .env("ARES_RATE_LIMIT", "100000000")
                    .env("ARES_LOG", "warn");
                if let Some(url) = database_url {
                    cmd.env("DATABASE_URL", url);
                }
                (cmd, backend_of(database_url), Some(SPAWN_TOKEN.to_string()))
            }
            Spawn::Reference {
                bin,
                mode,
                database_url,
            } => {
                let mut cmd = tokio::process::Command::new(bin);
                cmd.args(["--mode", mode, "--addr", &addr]);
                if let Some(url) = database_url {
                    cmd.args(["--database-url", url]);
                }
                let backend = if mode == "trivial" {
                    "none".into()
                } else {
                    backend_of(database_url)
                };
                (cmd, backend, None)
            }
        };
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| "starting the server (build it first with --release)".to_string())?;
        let target = Target {
            base: format!("http://{addr}"),
            key,
            pid: child.id(),
            backend,
            child: Some(child),
            scratch,
        };
        target.wait_healthy().await?;
        Ok(target)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server at {} never answered /health", self.base)
    }

    /// Stops a server this program started (SIGTERM, then SIGKILL) and removes its scratch
    /// directory; a remote server is left alone.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn backend_of(database_url: Option<&str>) -> String {
    match database_url {
        Some(u) if u.starts_with("postgres") => "postgres".into(),
        _ => "sqlite".into(),
    }
}

/// Drops and re-creates the PostgreSQL database `url` names, so each run starts empty.
pub async fn recreate_postgres(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let (server, rest) = url
        .rsplit_once('/')
        .context("a PostgreSQL URL ends in /DATABASE")?;
    let (name, query) = match rest.split_once('?') {
        Some((n, q)) => (n, format!("?{q}")),
        None => (rest, String::new()),
    };
    if name.is_empty()
        || name == "postgres"
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("refusing to recreate database `{name}`: use a dedicated name like ares_bench");
    }
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres{query}")).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
