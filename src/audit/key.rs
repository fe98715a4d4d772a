//! Where ARES's checkpoint signing key comes from.
//!
//! 1. `ARES_AUDIT_KEY`: base64 of a 32-byte ed25519 seed. Use this when several instances
//!    share one PostgreSQL, so they all sign with the same key.
//! 2. Otherwise the key file (`ARES_AUDIT_KEY_FILE`, default `audit.key` in the data
//!    directory: next to the SQLite file, or `$XDG_DATA_HOME/ares/` with PostgreSQL),
//!    created with mode 0600 on first start.
//!
//! The key is deliberately never kept in the database: whoever can rewrite the database must
//! not be able to re-sign checkpoints too.

use super::checkpoint::AuditKey;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A secret taken from the command line or environment; never printed.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Where to find the audit signing key.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditKeyArgs {
    /// The audit checkpoint signing key: base64 of a 32-byte ed25519 seed. Prefer the
    /// environment variable to the flag. Default: the key file.
    #[arg(long = "audit-key", env = "ARES_AUDIT_KEY", hide_env_values = true)]
    pub audit_key: Option<Secret>,
    /// The file the audit signing key is kept in when ARES_AUDIT_KEY is not set (created on
    /// first start). Default: audit.key in the data directory.
    #[arg(long = "audit-key-file", env = "ARES_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<PathBuf>,
}

/// The audit options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct AuditServeArgs {
    #[command(flatten)]
    pub key: AuditKeyArgs,
    /// Minutes between signed checkpoints of the audit log (0: only on demand).
    #[arg(
        long = "audit-checkpoint-minutes",
        env = "ARES_AUDIT_CHECKPOINT_MINUTES",
        default_value_t = 5
    )]
    pub checkpoint_minutes: u64,
}

impl AuditServeArgs {
    pub fn checkpoint_every(&self) -> Duration {
        Duration::from_secs(self.checkpoint_minutes.saturating_mul(60))
    }
}

impl AuditKeyArgs {
    /// The key for the store at `store_url`. With `create`, a missing key file is created;
    /// without, or when it cannot be, ARES signs with a key of its own for this run only
    /// (and says so), which later runs will not trust.
    pub fn load(&self, store_url: &str, create: bool) -> anyhow::Result<AuditKey> {
        if let Some(seed) = &self.audit_key {
            return AuditKey::from_seed_base64(seed.expose())
                .context("ARES_AUDIT_KEY must be base64 of a 32-byte ed25519 seed");
        }
        let Some(path) = self
            .audit_key_file
            .clone()
            .or_else(|| default_key_path(store_url))
        else {
            tracing::info!("no audit key file for an in-memory store; using a key for this run");
            return Ok(AuditKey::generate());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => AuditKey::from_seed_base64(&text).with_context(|| {
                format!(
                    "the audit key file {} must hold base64 of a 32-byte ed25519 seed",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => create_key_file(&path)
                .or_else(|e| {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                        "could not create the audit key file; checkpoints signed in this run \
                         will not be trusted by later runs");
                    Ok(AuditKey::generate())
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(),
                    "no audit key file; stored checkpoints cannot be trusted");
                Ok(AuditKey::generate())
            }
            Err(e) => {
                Err(e).with_context(|| format!("reading the audit key file {}", path.display()))
            }
        }
    }
}

/// `audit.key` in the data directory the store URL implies; none for in-memory SQLite.
pub fn default_key_path(store_url: &str) -> Option<PathBuf> {
    if store_url.starts_with("sqlite:") {
        if store_url.contains(":memory:") || store_url.contains("mode=memory") {
            return None;
        }
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(store_url).ok()?;
        let dir = options.get_filename().parent()?.to_path_buf();
        return Some(dir.join("audit.key"));
    }
    let db = crate::config::default_sqlite_path().ok()?;
    Some(db.parent()?.join("audit.key"))
}

/// Writes a new key to `path` (mode 0600) unless another process got there first, in which
/// case that key wins. The file appears whole or not at all.
fn create_key_file(path: &Path) -> anyhow::Result<AuditKey> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = AuditKey::generate();
    let tmp = dir.join(format!(".audit.key.{}", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{}\n", key.seed_base64()).as_bytes()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), public_key = %key.public_key(),
                "created the audit checkpoint signing key");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            AuditKey::from_seed_base64(&text)
                .with_context(|| format!("{} holds no audit key", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_lives_next_to_the_sqlite_file() {
        assert_eq!(
            default_key_path("sqlite:///srv/ares/ares.db"),
            Some(PathBuf::from("/srv/ares/audit.key"))
        );
        assert_eq!(default_key_path("sqlite::memory:"), None);
    }

    #[test]
    fn a_key_file_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let args = AuditKeyArgs {
            audit_key: None,
            audit_key_file: Some(dir.path().join("keys/audit.key")),
        };
        let first = args.load("sqlite::memory:", true).unwrap();
        let again = args.load("sqlite::memory:", false).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys/audit.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_environment_key_wins_and_a_bad_one_is_refused_without_echo() {
        let key = AuditKey::generate();
        let args = AuditKeyArgs {
            audit_key: Some(Secret(key.seed_base64())),
            audit_key_file: None,
        };
        assert_eq!(
            args.load("sqlite::memory:", true).unwrap().public_key(),
            key.public_key()
        );
        let bad = AuditKeyArgs {
            audit_key: Some(Secret("not-a-key".into())),
            audit_key_file: None,
        };
        let err = format!("{:#}", bad.load("sqlite::memory:", true).unwrap_err());
        assert!(
            err.contains("ARES_AUDIT_KEY") && !err.contains("not-a-key"),
            "{err}"
        );
        assert_eq!(format!("{:?}", bad.audit_key), "Some(Secret(***))");
    }
}
