//! Initial sync of the live index against the fake API server at cluster scale: wall time until every
//! list is synced, and the memory of the process that holds the index.
//!
//! The fake API server runs in a child process (this same binary, re-executed with
//! `PLACEMENT_BENCH_SERVE=1`), so the parent's RSS is the index's, not the server's store.
//!
//! ```text
//! cargo bench -p placement-benches --bench live_sync              # 5,000 nodes, 150,000 pods
//! cargo bench -p placement-benches --bench live_sync -- --nodes 500
//! ```

use placement_core::testing::generator::{ClusterSpec, generate};
use placement_kube::live::{self, WatchOptions};
use placement_testkit::objects::cluster_objects;
use placement_testkit::{FakeApiServer, FakeConfig};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVE_ENV: &str = "PLACEMENT_BENCH_SERVE";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(5_000);
    if std::env::var_os(SERVE_ENV).is_some() {
        serve(nodes);
    } else {
        measure(nodes);
    }
}

/// Child: seed a fake API server with the generated cluster and serve until stdin closes.
fn serve(nodes: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        // Seeded PDBs carry their status; the disruption controller is not what is measured here.
        let config = FakeConfig { history_limit: 1_000, pdb_controller: false, ..FakeConfig::default() };
        let server = FakeApiServer::start_with(config).await.expect("start the fake API server");
        let started = Instant::now();
        let snapshot = generate(&ClusterSpec::scaled(nodes));
        let mut bytes = 0;
        for o in cluster_objects(&snapshot) {
            bytes += serde_json::to_vec(&o).map(|v| v.len()).unwrap_or(0);
            server.put(o).expect("seed object");
        }
        println!(
            "SEEDED {} {} {} {:.1}",
            snapshot.nodes.len(),
            snapshot.pods.len(),
            bytes,
            started.elapsed().as_secs_f64()
        );
        println!("URL {}", server.url());
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("stdin reader");
    });
}

fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Parent: start the server child, sync a live index from it, report time and memory.
fn measure(nodes: usize) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--nodes", &nodes.to_string()])
        .env(SERVE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the server process");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let mut url = String::new();
    let mut seeded = String::new();
    for line in lines.by_ref() {
        let line = line.expect("child output");
        if let Some(s) = line.strip_prefix("SEEDED ") {
            seeded = s.to_string();
        }
        if let Some(u) = line.strip_prefix("URL ") {
            url = u.to_string();
            break;
        }
    }
    assert!(!url.is_empty(), "the server process did not start");
    let seeded: Vec<&str> = seeded.split_whitespace().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let rss_before = status_kib("self", "VmRSS:");
    let (elapsed, events, pods, node_count, errors, snapshot_ms, (rss_synced, hwm), index_guard) = rt.block_on(async {
        let uri: http::Uri = url.parse().expect("server URL");
        let client = kube::Client::try_from(kube::Config::new(uri)).expect("client");
        let started = Instant::now();
        let (shared, watchers) = live::spawn(client, WatchOptions::default());
        assert!(shared.wait_ready(Duration::from_secs(600)).await, "the live index did not sync within 10 minutes");
        let elapsed = started.elapsed();
        let (events, pods, node_count, errors) = {
            let i = shared.read();
            (i.event_count(), i.pod_count(), i.node_count(), i.error_count())
        };
        let rss_synced = status_kib("self", "VmRSS:");
        let hwm = status_kib("self", "VmHWM:");
        let s = Instant::now();
        let snap = shared.read().snapshot();
        let snapshot_ms = s.elapsed().as_secs_f64() * 1e3;
        drop(snap);
        drop(watchers);
        (elapsed, events, pods, node_count, errors, snapshot_ms, (rss_synced, hwm), shared)
    });
    let rss_after = status_kib("self", "VmRSS:");
    let server_rss = status_kib(&child.id().to_string(), "VmRSS:");
    drop(child.stdin.take());
    let _ = child.wait();
    println!("live index initial sync ({node_count} nodes, {pods} pods, {events} events, {errors} conversion errors)");
    if seeded.len() == 4 {
        println!(
            "  objects served: {} nodes, {} pods, {:.0} MB of JSON (seeded in {} s)",
            seeded[0],
            seeded[1],
            seeded[2].parse::<f64>().unwrap_or(0.0) / 1e6,
            seeded[3]
        );
    }
    println!("  time to ready:        {:.2} s", elapsed.as_secs_f64());
    println!(
        "  index process RSS:    {} MB when synced (peak {} MB during sync, {} MB before)",
        rss_synced / 1024,
        hwm / 1024,
        rss_before / 1024
    );
    println!("  snapshot() of index:  {snapshot_ms:.0} ms (RSS {} MB after it)", rss_after / 1024);
    println!("  server process RSS:   {} MB (not counted above)", server_rss / 1024);
    drop(index_guard);
}
