//! `ares-bench`: a load generator for ARES over streamable HTTP.
//!
//! It talks to the server as real agents do (rmcp's client, with the initialize handshake or
//! the per-request protocol), checks every reply, and reports per workload: throughput,
//! calls per server core-second (the server's CPU time from /proc), latency percentiles,
//! errors and server memory. It can start ARES (or a bare-rmcp reference server) on a fresh
//! database itself, or load one already running. See BENCHMARKS.md for the figures.
//!
//! ```sh
//! cargo build --release --bin ares --bin ares-bench --example bench_ref
//! target/release/ares-bench --spawn --workload trivial,submit,mix
//! target/release/ares-bench --spawn --workload mix --rate 1000
//! target/release/ares-bench --url http://127.0.0.1:8080 --key "$KEY" --server-pid 1234 --workload trivial
//! target/release/ares-bench --spawn --workload soak --rate 200 --duration 300 --sample-every 5
//! ```
#![forbid(unsafe_code)]

mod client;
mod idle;
mod load;
mod procfs;
mod report;
mod soak;
mod target;
mod workloads;

use anyhow::{Context, bail};
use clap::Parser;
use client::Protocol;
use report::Report;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::{Spawn, Target};
use workloads::{Bench, Kind, Setup, TrivialTool};

#[derive(Debug, Parser)]
#[command(
    name = "ares-bench",
    about = "Load generator for ARES over streamable HTTP"
)]
struct Args {
    /// Workloads to run, one after another (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "trivial")]
    workload: Vec<Kind>,
    /// Concurrent clients in the closed loop (also how many sessions prepare at once).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open loop: calls per second on a fixed schedule, instead of the closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Client sessions (default: 1,000 for `mix`, otherwise --concurrency).
    #[arg(long)]
    sessions: Option<usize>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Stored data loaded before measuring, in units of 100 agents with 10 verified tasks
    /// each (0: none). Compare 1, 10 and 100 to see how cost grows with data.
    #[arg(long, default_value_t = 1)]
    scale: usize,
    /// Keep seeded SQLite databases here and reuse them (seeding 100× takes minutes).
    #[arg(long)]
    seed_cache: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "handshake")]
    protocol: Protocol,
    /// Start the server for each workload on a fresh database: target/release/ares (or
    /// examples/bench_ref for the ref-* workloads), next to this binary.
    #[arg(long, conflicts_with = "url")]
    spawn: bool,
    /// With --spawn: the database (postgres://…/NAME is dropped and re-created for each
    /// workload; default: a temporary SQLite file).
    #[arg(long)]
    database_url: Option<String>,
    /// A running server to load instead (base URL; the endpoint is /mcp).
    #[arg(long)]
    url: Option<String>,
    /// API key for --url (an admin key: the workloads register agents and create tasks).
    #[arg(long, env = "ARES_BENCH_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The process id of the --url server, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also count the CPU time of every `postgres` process (default: when the database is
    /// PostgreSQL).
    #[arg(long)]
    db_cpu: Option<bool>,
    /// Tasks the submit workload creates and assigns before measuring.
    #[arg(long, default_value_t = 30_000)]
    tasks: usize,
    #[arg(long, value_enum, default_value = "health")]
    trivial_tool: TrivialTool,
    /// Sessions the idle workload opens.
    #[arg(long, default_value_t = 10_000)]
    idle_sessions: usize,
    /// Soak: seconds between samples of the server's memory, files and connections.
    #[arg(long, default_value_t = 5.0)]
    sample_every: f64,
    /// Soak: calls a session makes before it is closed and a new one opened.
    #[arg(long, default_value_t = 10)]
    session_calls: u64,
    /// Soak: the most the server's anonymous memory may grow after the warm-up, in MB
    /// (first quarter of the samples against the last); beyond it the run fails.
    #[arg(long, default_value_t = 10.0)]
    rss_growth_mb: f64,
    /// Print JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.spawn && args.url.is_none() {
        bail!("say where the server is: --spawn, or --url with --key");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let machine = procfs::machine();
    let http = client::http_client();
    let mut reports = Vec::new();
    for &kind in &args.workload {
        eprintln!("ares-bench: {} …", kind.name());
        let report = run_one(kind, &args, &http)
            .await
            .with_context(|| format!("workload {}", kind.name()))?;
        eprint!("{}", report::table(std::slice::from_ref(&report)));
        reports.push(report);
    }
    let table = report::table(&reports);
    let failed: Vec<String> = reports
        .iter()
        .filter_map(|r| r.soak.as_ref())
        .flat_map(|s| s.failures.clone())
        .collect();
    if args.json {
        eprintln!("\n{table}");
        let out = serde_json::json!({ "machine": machine, "reports": reports });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "\n{} cores ({}), {} MiB\n{table}",
            machine.cores, machine.cpu, machine.memory_mib
        );
    }
    if !failed.is_empty() {
        bail!("the soak exceeded its bound: {}", failed.join("; "));
    }
    Ok(())
}

async fn run_one(kind: Kind, args: &Args, http: &reqwest::Client) -> anyhow::Result<Report> {
    let seed_started = Instant::now();
    let target = open_target(kind, args).await?;
    let seed_s = seed_started.elapsed().as_secs_f64();
    let outcome = measure(kind, args, http, &target).await;
    target.stop().await;
    let mut report = outcome?;
    report.seed_s = seed_s;
    Ok(report)
}

/// Starts (and seeds) the server, or connects to the one at --url (seeding it over HTTP).
async fn open_target(kind: Kind, args: &Args) -> anyhow::Result<Target> {
    let scale = if kind.is_reference() || kind == Kind::Idle {
        0
    } else {
        args.scale
    };
    if let Some(url) = &args.url {
        let target = Target::remote(url, args.key.clone(), args.server_pid);
        if scale > 0 {
            let http = client::http_client();
            let mut callers = Vec::new();
            for _ in 0..args.concurrency {
                callers.push(
                    client::connect(&http, &target.base, target.key.as_deref(), args.protocol)
                        .await?,
                );
            }
            workloads::seed(&callers, scale)
                .await
                .map_err(anyhow::Error::msg)?;
            for c in callers {
                c.close().await;
            }
        }
        return Ok(target);
    }
    let dir = std::env::current_exe()?
        .parent()
        .context("this binary's directory")?
        .to_path_buf();
    let (scratch, url) = match &args.database_url {
        Some(url) if url.starts_with("postgres") => {
            target::recreate_postgres(url).await?;
            (None, url.clone())
        }
        Some(url) => {
            bail!("--database-url: only postgres://… (SQLite is a fresh temporary file), got {url}")
        }
        None => {
            let (dir, url) = Target::scratch_sqlite()?;
            (Some(dir), url)
        }
    };
    if kind.is_reference() {
        let mode = if kind == Kind::RefTrivial {
            "trivial"
        } else {
            "insert"
        };
        let bin = dir.join("examples/bench_ref");
        return Target::spawn(
            Spawn::Reference {
                bin: &bin,
                mode,
                database_url: Some(url.as_str()),
            },
            scratch,
        )
        .await;
    }
    if scale > 0 {
        seed_in_process(&url, scale, args.seed_cache.as_deref()).await?;
    }
    let bin = dir.join("ares");
    Target::spawn(
        Spawn::Ares {
            bin: &bin,
            database_url: Some(url.as_str()),
        },
        scratch,
    )
    .await
}

/// Seeds the database at `url` through ARES's own tool table in this process, before the
/// server starts on it; SQLite seeds are kept in `cache` and copied on later runs.
async fn seed_in_process(
    url: &str,
    scale: usize,
    cache: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let sqlite_path = url.strip_prefix("sqlite://").map(PathBuf::from);
    let cached = match (&sqlite_path, cache) {
        (Some(_), Some(dir)) => Some(dir.join(format!("seed-{scale}x.db"))),
        _ => None,
    };
    if let (Some(cached), Some(path)) = (&cached, &sqlite_path)
        && cached.exists()
    {
        std::fs::copy(cached, path)?;
        eprintln!("ares-bench: seeded {scale}× from {}", cached.display());
        return Ok(());
    }
    let started = Instant::now();
    let store = ares::store::connect(url).await?;
    let ares = Arc::new(ares::Ares::new(store.clone()));
    let callers: Vec<_> = (0..4).map(|_| workloads::InProcess(ares.clone())).collect();
    workloads::seed(&callers, scale)
        .await
        .map_err(anyhow::Error::msg)?;
    drop(callers);
    drop(ares);
    // Closing checkpoints SQLite's WAL into the file, so the file alone is the database.
    store.close().await;
    eprintln!(
        "ares-bench: seeded {scale}× ({} agents, {} verified tasks) in {:.1} s",
        workloads::SEED_AGENTS * scale,
        workloads::SEED_AGENTS * workloads::SEED_TASKS_PER_AGENT * scale,
        started.elapsed().as_secs_f64()
    );
    if let (Some(cached), Some(path)) = (&cached, &sqlite_path) {
        std::fs::create_dir_all(cached.parent().context("cache directory")?)?;
        std::fs::copy(path, cached)?;
    }
    Ok(())
}

/// CPU and memory readings over the measured window.
#[derive(Default)]
struct Samples {
    server_cpu: Option<(f64, f64)>,
    db_cpu: Option<(f64, f64)>,
    client_cpu: (f64, f64),
    rss_start: Option<u64>,
    rss_end: Option<u64>,
    rss_peak: Option<u64>,
}

async fn measure(
    kind: Kind,
    args: &Args,
    http: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<Report> {
    let sessions = args
        .sessions
        .unwrap_or(if kind == Kind::Mix {
            1000
        } else {
            args.concurrency
        })
        .max(1);
    let mut report = Report {
        workload: kind.name(),
        protocol: args.protocol,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        concurrency: args.concurrency,
        rate: args.rate,
        sessions,
        scale: if kind.is_reference() || kind == Kind::Idle {
            0
        } else {
            args.scale
        },
        backend: target.backend.clone(),
        seconds: 0.0,
        overall: load::Figures::empty(),
        per_tool: Default::default(),
        server_cpu_s: None,
        db_cpu_s: None,
        client_cpu_s: 0.0,
        calls_per_core_s: None,
        server_rss_kb_start: None,
        server_rss_kb_end: None,
        server_rss_kb_peak: None,
        seed_s: 0.0,
        prepare_s: 0.0,
        error_samples: Vec::new(),
        idle: None,
        soak: None,
    };
    if kind == Kind::Idle {
        let pid = target
            .pid
            .context("the idle workload needs the server's pid (--server-pid)")?;
        if let Some(limit) = procfs::open_files_limit()
            && (limit as usize) < args.idle_sessions * 2 + 100
        {
            eprintln!(
                "ares-bench: warning: open files limit {limit} is low for {} sessions (ulimit -n)",
                args.idle_sessions
            );
        }
        let idle = idle::run(
            http,
            &target.base,
            target.key.as_deref(),
            pid,
            args.idle_sessions,
            64,
        )
        .await?;
        report.sessions = idle.sessions;
        report.idle = Some(idle);
        return Ok(report);
    }

    if kind == Kind::Soak {
        let pid = target
            .pid
            .context("the soak needs the server's pid (--server-pid)")?;
        let options = soak::SoakOptions {
            rate: args.rate.unwrap_or(200.0),
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            sample_every: Duration::from_secs_f64(args.sample_every),
            slots: sessions,
            session_calls: args.session_calls,
            protocol: args.protocol,
            rss_growth_kb: (args.rss_growth_mb * 1024.0) as u64,
        };
        let soak = soak::run(&target.base, target.key.as_deref(), pid, &options).await?;
        report.mode = "open";
        report.rate = Some(options.rate);
        report.seconds = soak.seconds;
        report.overall = soak.figures.clone();
        report.server_rss_kb_start = Some(soak.before.rss_kb);
        report.server_rss_kb_peak = Some(soak.rss_peak_kb);
        report.server_rss_kb_end = soak.samples.last().map(|s| s.rss_kb);
        report.error_samples = soak.error_samples.clone();
        report.soak = Some(soak);
        return Ok(report);
    }

    let prepared = Instant::now();
    let setup = Setup {
        kind,
        sessions,
        protocol: args.protocol,
        tasks: args.tasks,
        trivial_tool: args.trivial_tool,
        parallel: args.concurrency.clamp(1, 64),
    };
    let bench = Arc::new(Bench::prepare(&setup, http, &target.base, target.key.as_deref()).await?);
    report.prepare_s = prepared.elapsed().as_secs_f64();

    let start = Instant::now() + Duration::from_millis(20);
    let rec = Arc::new(load::Recorder::new(
        start,
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
    ));
    let count_db = args.db_cpu.unwrap_or(target.backend == "postgres");
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample(target.pid, count_db, rec.window, stop.clone()));
    let end = match args.rate {
        Some(rate) => load::open_loop(bench.clone(), rec.clone(), start, rate).await,
        None => load::closed_loop(bench.clone(), rec.clone(), args.concurrency).await,
    };
    stop.cancel();
    let samples = sampler.await?;
    let seconds = end.saturating_duration_since(rec.window.0).as_secs_f64();
    let (overall, per_tool, errors) = rec.summarize(seconds.max(1e-9));
    if end < rec.window.1 {
        report.error_samples.push(format!(
            "prepared work ran out after {seconds:.1} s of measurement (raise --tasks)"
        ));
    }
    let delta = |p: Option<(f64, f64)>| p.map(|(a, b)| b - a);
    report.server_cpu_s = delta(samples.server_cpu);
    report.db_cpu_s = delta(samples.db_cpu);
    report.client_cpu_s = samples.client_cpu.1 - samples.client_cpu.0;
    report.calls_per_core_s = report
        .server_cpu_s
        .map(|s| overall.calls as f64 / (s + report.db_cpu_s.unwrap_or(0.0)).max(1e-9));
    report.server_rss_kb_start = samples.rss_start;
    report.server_rss_kb_end = samples.rss_end;
    report.server_rss_kb_peak = samples.rss_peak;
    report.seconds = seconds;
    report.overall = overall;
    report.per_tool = per_tool;
    report.error_samples.extend(errors);
    if let Ok(bench) = Arc::try_unwrap(bench) {
        bench.close().await;
    }
    Ok(report)
}

/// Reads CPU times at the window's start and end (or at `stop`), and memory throughout.
async fn sample(
    pid: Option<u32>,
    count_db: bool,
    window: (Instant, Instant),
    stop: tokio_util::sync::CancellationToken,
) -> Samples {
    let me = std::process::id();
    let read = |s: &mut Samples, first: bool| {
        let server = pid.and_then(procfs::cpu_seconds);
        let db = count_db.then(|| procfs::cpu_seconds_of("postgres"));
        let client = procfs::cpu_seconds(me).unwrap_or(0.0);
        let rss = pid.and_then(procfs::rss_kb);
        if first {
            s.server_cpu = server.map(|c| (c, c));
            s.db_cpu = db.map(|c| (c, c));
            s.client_cpu = (client, client);
            s.rss_start = rss;
        } else {
            if let (Some(c), Some(p)) = (server, s.server_cpu.as_mut()) {
                p.1 = c;
            }
            if let (Some(c), Some(p)) = (db, s.db_cpu.as_mut()) {
                p.1 = c;
            }
            s.client_cpu.1 = client;
            s.rss_end = rss;
        }
        s.rss_peak = s.rss_peak.max(rss);
    };
    let mut s = Samples::default();
    tokio::select! {
        () = tokio::time::sleep_until(window.0.into()) => {}
        () = stop.cancelled() => return s,
    }
    read(&mut s, true);
    loop {
        let next = (Instant::now() + Duration::from_millis(250)).min(window.1);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {
                if next >= window.1 {
                    break;
                }
                s.rss_peak = s.rss_peak.max(pid.and_then(procfs::rss_kb));
            }
            () = stop.cancelled() => break,
        }
    }
    read(&mut s, false);
    s
}
