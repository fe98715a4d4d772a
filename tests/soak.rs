//! The soak, short enough for CI: `ares-bench --workload soak` starts `ares serve --http` on
//! a fresh SQLite file and holds the task lifecycle at a steady 50 calls/s for 35 s after a
//! 10 s warm-up, 16 agents whose sessions are closed and reopened every 10 calls, sampling
//! the server every 2 s. The bound it must hold (stated in src/bin/ares-bench/soak.rs): no
//! failed call, anonymous memory grows at most 10 MB after the warm-up, and once the load
//! stops the server's client connections and MCP sessions are back to where they started.
//! A longer release run and its command are in benches/results/*-soak/ (see RELIABILITY.md, "Soak").

use serde_json::Value;
use std::process::Command;

#[test]
fn steady_load_with_session_churn_holds_memory_connections_and_sessions_bounded() {
    let out = Command::new(env!("CARGO_BIN_EXE_ares-bench"))
        .args([
            "--spawn",
            "--workload",
            "soak",
            "--scale",
            "0",
            "--rate",
            "50",
            "--sessions",
            "16",
            "--session-calls",
            "10",
            "--warmup",
            "10",
            "--duration",
            "35",
            "--sample-every",
            "2",
            "--rss-growth-mb",
            "10",
            "--json",
        ])
        .output()
        .expect("run ares-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let figures = stderr
        .lines()
        .find(|l| l.starts_with("FIGURES: soak"))
        .unwrap_or_else(|| panic!("ares-bench printed no FIGURES line:\n{stderr}"));
    println!("{figures}");
    assert!(out.status.success(), "the soak failed its bound:\n{stderr}");

    let json: Value = serde_json::from_slice(&out.stdout).expect("ares-bench --json");
    let soak = &json["reports"][0]["soak"];
    assert_eq!(soak["passed"], true, "{soak}");
    assert_eq!(soak["figures"]["errors"], 0, "no call failed");
    let held = soak["figures"]["calls"].as_u64().unwrap();
    assert!(
        held >= 50 * 35 * 95 / 100,
        "the load was held: {held} calls"
    );
    assert!(
        soak["sessions_opened"].as_u64().unwrap() >= held / 10,
        "sessions came and went"
    );
    let growth = soak["anon_growth_kb"].as_i64().unwrap();
    assert!(growth <= 10 * 1024, "memory after warm-up grew {growth} KB");
    let (before, after) = (&soak["before"], &soak["after"]);
    assert!(
        after["connections"].as_u64() <= before["connections"].as_u64(),
        "connections back to baseline: {before} → {after}"
    );
    assert_eq!(after["sessions_open"], 0, "every session closed: {after}");
    assert!(
        soak["samples"].as_array().unwrap().len() >= 20,
        "sampled throughout"
    );
}
