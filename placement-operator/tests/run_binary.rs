//! The `placement-operator run` binary against the in-process fake API server through a kubeconfig:
//! it exits non-zero with an install hint when the CRDs are missing, and with them it becomes ready,
//! takes the Lease, logs JSON, and on SIGTERM releases the Lease and exits 0.

use placement_testkit::FakeApiServer;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NS: &str = "placement-system";

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(status, _)| status)
}

/// `GET path` on the probe port: the status and the whole answer.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some((text.split_whitespace().nth(1)?.parse().ok()?, text))
}

fn operator(kubeconfig: &std::path::Path, probe: SocketAddr) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_placement-operator"));
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--probe-listen", &probe.to_string()])
        .env("PLACEMENT_LEASE_DURATION_SECONDS", "4")
        .env("PLACEMENT_LEASE_RENEW_SECONDS", "2")
        .env("POD_NAME", "placement-operator-test-0")
        .env("RUST_LOG", "info")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_non_zero_naming_the_missing_crds() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let mut cmd = operator(&kubeconfig, free_port());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing: ") && stderr.contains("poddistributions.placement.dev"), "{stderr}");
    assert!(stderr.contains("kubectl apply -f deploy/crds/"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_becomes_ready_leads_and_releases_the_lease_on_sigterm() {
    let server = FakeApiServer::start().await.unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let probe = free_port();
    let child = operator(&kubeconfig, probe).spawn().unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        ready = tokio::task::spawn_blocking(move || http_status(probe, "/readyz")).await.unwrap() == Some(200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The watch metrics come from the live index's watches (one series per kind).
    let metrics = tokio::task::spawn_blocking(move || http_get(probe, "/metrics")).await.unwrap();
    let holder = || {
        server
            .get("coordination.k8s.io/v1", "Lease", NS, "placement-operator")
            .and_then(|l| l.pointer("/spec/holderIdentity").and_then(|v| v.as_str()).map(str::to_string))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && holder().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = holder();

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(ready, "/readyz never answered 200; stderr:\n{stderr}");
    let metrics = metrics.map(|(_, text)| text).unwrap_or_default();
    for series in [
        r#"placement_operator_watch_relists_total{kind="Node"} 1"#,
        r#"placement_operator_watch_errors_total{kind="Pod"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series} missing from /metrics:\n{metrics}");
    }
    assert_eq!(held.as_deref(), Some("placement-operator-test-0"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(holder(), None, "the lease was not released on SIGTERM; stderr:\n{stderr}");
    // Logs are JSON lines with a level and a message.
    let lines: Vec<serde_json::Value> =
        stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect(l)).collect();
    assert!(lines.iter().any(|l| l["message"] == "became the leader" && l["level"] == "INFO"), "{stderr}");
    assert!(lines.iter().any(|l| l["message"] == "operator stopped"), "{stderr}");
}
