//! Throwaway databases for tests: a fresh SQLite file, or a fresh PostgreSQL database on
//! the server `ARES_TEST_POSTGRES_URL` names. Include with
//! `#[path = "common/db.rs"] mod db;`.
//!
//! PostgreSQL being unreachable fails the test with a message saying so: tests never skip.
#![allow(dead_code)]

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::time::Duration;

/// The server PostgreSQL tests create their databases on, unless `ARES_TEST_POSTGRES_URL`
/// says otherwise.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists as long as this value does.
pub struct TestDatabase {
    /// What to hand `ares::store::connect`.
    pub url: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Keeps the SQLite file's directory alive.
    dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the server to drop the database on, and its name.
    drop_on: Option<(String, String)>,
}

impl TestDatabase {
    /// A new SQLite file in a temporary directory (the file itself is not created yet).
    pub async fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("ares.db").display());
        TestDatabase {
            url,
            backend: "sqlite",
            dir: Some(dir),
            drop_on: None,
        }
    }

    /// A new, empty, uniquely named database on the test PostgreSQL server. Panics when the
    /// server cannot be reached.
    pub async fn postgres() -> TestDatabase {
        let admin_url =
            std::env::var("ARES_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let name = format!("ares_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection(&admin_url).await;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("could not create test database {name}: {e}"));
        let _ = admin.close().await;
        TestDatabase {
            url: with_database(&admin_url, &name),
            backend: "postgres",
            dir: None,
            drop_on: Some((admin_url, name)),
        }
    }

    /// The SQLite file's directory (None for PostgreSQL).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.drop_on.take() else {
            return;
        };
        // Best effort, on a thread of its own so it works inside or outside a runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin =
                    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url))
                        .await
                        .ok()?
                        .ok()?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        let _ = dropped;
    }
}

async fn admin_connection(admin_url: &str) -> PgConnection {
    let shown = ares::store::redact_url(admin_url);
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL is unreachable at {shown}: {e}. These tests need a running server; \
             start one or point ARES_TEST_POSTGRES_URL at one."
        ),
        Err(_) => panic!(
            "PostgreSQL at {shown} did not answer within 10 s. These tests need a running \
             server; start one or point ARES_TEST_POSTGRES_URL at one."
        ),
    }
}

/// `url` with its database name replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}
