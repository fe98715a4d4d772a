//! A private PostgreSQL cluster for one test, on its own port and data directory, that the
//! test may stop and start again (the machine's shared server on 5432 is left alone).
//!
//! PostgreSQL refuses to run as root, and tests do run as root here, so there `initdb` and
//! `pg_ctl` run as the `postgres` user (through `runuser`) in a temporary directory that
//! user owns; as any other user they run as that user. Missing binaries fail the test with
//! what to install: tests never skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct PrivatePostgres {
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`, trust authentication.
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    running: bool,
    /// Holds the cluster; removed when the value is dropped.
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Creates a cluster in a temporary directory and starts it. Blocks (a few seconds): in
    /// a test on the multi-threaded runtime, call it inside `tokio::task::block_in_place`.
    pub fn start() -> PrivatePostgres {
        let bin = binaries();
        let dir = tempfile::tempdir().expect("temporary directory");
        if is_root() {
            let owner = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(owner.success(), "chown of {} failed", dir.path().display());
        }
        let data = dir.path().join("data");
        run_as_postgres(
            as_postgres(&bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
                .arg("-D")
                .arg(&data),
            "initdb",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut pg = PrivatePostgres {
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            data,
            running: false,
            dir,
        };
        pg.resume();
        pg
    }

    /// Starts (again) on the same port and data, and waits until it accepts connections.
    pub fn resume(&mut self) {
        assert!(!self.running, "already running");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        run_as_postgres(
            self.pg_ctl()
                .args(["-w", "-t", "30", "-o", &options, "-l"])
                .arg(self.dir.path().join("server.log"))
                .arg("start"),
            "pg_ctl start",
        );
        self.running = true;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private PostgreSQL did not listen on {}", self.port);
    }

    /// Stops it in fast mode, as an operator restarting the server would: open sessions are
    /// terminated and their transactions rolled back.
    pub fn stop_fast(&mut self) {
        self.stop("fast");
    }

    fn stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        run_as_postgres(
            self.pg_ctl().args(["-w", "-t", "30", "-m", mode, "stop"]),
            "pg_ctl stop",
        );
        self.running = false;
    }

    /// The tail of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = as_postgres(&self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(&self.data);
        cmd
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            // Best effort: a failing test must not leave a server behind.
            let _ = self
                .pg_ctl()
                .args(["-w", "-t", "10", "-m", "immediate", "stop"])
                .output();
            self.running = false;
        }
    }
}

/// The newest installed PostgreSQL's binaries directory (Debian layout).
fn binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    let (_, bin) = found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl): \
             install Debian's `postgresql` package, as .ci/run expects"
        )
    });
    assert!(
        !is_root()
            || Path::new("/usr/sbin/runuser").exists()
            || Path::new("/sbin/runuser").exists(),
        "runuser is missing (util-linux): as root, the private PostgreSQL runs as the `postgres` user"
    );
    bin
}

fn is_root() -> bool {
    let id = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// `program`, run as the `postgres` user when the test runs as root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run_as_postgres(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
