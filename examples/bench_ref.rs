//! The same-run references for ARES's benchmarks: a bare rmcp server over streamable HTTP
//! with one tool and nothing else, in one of two modes.
//!
//! - `--mode trivial`: a `noop` tool that answers `{ "ok": true }` — the transport limit
//!   (rmcp + axum + JSON-RPC), the ceiling for any tool ARES serves.
//! - `--mode insert`: an `insert` tool doing one INSERT per call through sqlx — the
//!   storage-bound limit of one durable write per call. SQLite gets ARES's settings (WAL,
//!   synchronous=NORMAL, one writer connection); PostgreSQL a pool of 10.
//!
//! ```sh
//! cargo run --release --example bench_ref -- --mode insert --addr 127.0.0.1:8091 \
//!     --database-url sqlite:///tmp/ref.db
//! ```
//! `ares-bench --spawn --workload ref-trivial,ref-insert` starts it for you.

use anyhow::Context;
use axum::Router;
use clap::Parser;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{Json, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;

/// ARES's allocator, so that what differs between the two servers is the code.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
struct Args {
    /// `trivial` or `insert`.
    #[arg(long, default_value = "trivial")]
    mode: String,
    /// Where to listen (serves /mcp and /health).
    #[arg(long, default_value = "127.0.0.1:8091")]
    addr: String,
    /// `sqlite://PATH` or `postgres://…` (insert mode; default: a SQLite file in /tmp).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Clone)]
enum Db {
    None,
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

#[derive(Clone)]
struct Reference {
    db: Db,
    /// Built once; `#[tool_handler]` would otherwise build the router on every call.
    tool_router: Arc<ToolRouter<Reference>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct NoopInput {}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct InsertInput {
    /// Text stored in the new row.
    payload: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Done {
    ok: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Inserted {
    id: String,
}

#[tool_router]
impl Reference {
    #[tool(description = "Does nothing and says so.")]
    async fn noop(&self, Parameters(_): Parameters<NoopInput>) -> Json<Done> {
        Json(Done { ok: true })
    }

    #[tool(description = "Inserts one row.")]
    async fn insert(
        &self,
        Parameters(input): Parameters<InsertInput>,
    ) -> Result<Json<Inserted>, rmcp::ErrorData> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = chrono::Utc::now().to_rfc3339();
        let sql = "INSERT INTO bench_rows (id, payload, created_at) VALUES ($1, $2, $3)";
        let done = match &self.db {
            Db::None => Ok(()),
            Db::Sqlite(pool) => sqlx::query(sql)
                .bind(&id)
                .bind(&input.payload)
                .bind(&now)
                .execute(pool)
                .await
                .map(drop),
            Db::Postgres(pool) => sqlx::query(sql)
                .bind(&id)
                .bind(&input.payload)
                .bind(&now)
                .execute(pool)
                .await
                .map(drop),
        };
        done.map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))?;
        Ok(Json(Inserted { id }))
    }
}

#[tool_handler(router = self.tool_router)]
impl rmcp::ServerHandler for Reference {}

async fn open(url: &str) -> anyhow::Result<Db> {
    let table = "CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, payload TEXT NOT NULL, created_at TEXT NOT NULL)";
    if url.starts_with("postgres") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        sqlx::query(table).execute(&pool).await?;
        return Ok(Db::Postgres(pool));
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query(table).execute(&pool).await?;
    Ok(Db::Sqlite(pool))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = match args.mode.as_str() {
        "trivial" => Db::None,
        "insert" => {
            let url = args
                .database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite:///tmp/bench-ref-{}.db", std::process::id()));
            open(&url).await.with_context(|| format!("opening {url}"))?
        }
        other => anyhow::bail!("--mode: trivial or insert, got {other}"),
    };
    let server = Reference {
        db,
        tool_router: Arc::new(Reference::tool_router()),
    };
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        // Plain JSON answers, as ARES gives where the client accepts them.
        StreamableHttpServerConfig::default().with_json_response(true),
    );
    let app = Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .nest_service("/mcp", mcp);
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    eprintln!("bench_ref ({}) serving /mcp on {}", args.mode, args.addr);
    axum::serve(listener, app).await?;
    Ok(())
}
