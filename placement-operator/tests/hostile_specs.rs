//! No spec crashes the operator: the `placement-operator run` binary against the fake API server, with
//! the RebalancePolicies of issue 16's first row. `interval: 999999999999h` (which an older schema let
//! through) once panicked in timestamp arithmetic two seconds after the apply; the standby took the
//! Lease and panicked too. Now such a policy is reported `InvalidSpec` naming the field and its
//! maximum; a status time past the last one the clock type holds (which once failed the whole list, so
//! no policy was ever reconciled) reads as "long ago"; and the process keeps serving.
//!
//! The fake API server does not evaluate CRD schemas, so it stores what a real one would refuse
//! (`x-kubernetes-validations` now bound every duration): this is the operator's own defence.

use placement_testkit::FakeApiServer;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NS: &str = "placement-system";

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

fn policy(name: &str, spec: Value, status: Option<Value>) -> Value {
    let mut p = json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy",
        "metadata": {"name": name}, "spec": spec});
    if let Some(status) = status {
        p["status"] = status;
    }
    p
}

/// The `Ready` condition of a policy, once it has one.
fn ready_condition(server: &FakeApiServer, name: &str) -> Option<Value> {
    let p = server.get("placement.dev/v1alpha1", "RebalancePolicy", "", name)?;
    p.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_invalid_specs_and_the_operator_keeps_running() {
    let server = FakeApiServer::start().await.unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    server.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
    let huge = "999999999999h";
    server.put(policy("interval", json!({"interval": huge}), None)).unwrap();
    server.put(policy("backoffs", json!({"workloadBackoff": huge, "nodeBackoff": huge}), None)).unwrap();
    // A valid spec whose status (anyone with status rights can write it) says the last pass was at
    // the last representable second.
    let end_of_time = json!({"state": {"lastObserved": "9999-12-31T23:59:59Z"}});
    server.put(policy("end-of-time", json!({"interval": "10s"}), Some(end_of_time))).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let probe = free_port();
    let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_placement-operator"))
            .args(["run", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--probe-listen", &probe.to_string()])
            .env("PLACEMENT_LEASE_DURATION_SECONDS", "4")
            .env("PLACEMENT_LEASE_RENEW_SECONDS", "2")
            .env("POD_NAME", "placement-operator-test-0")
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log_text = || std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut invalid = Vec::new();
    while Instant::now() < deadline {
        assert!(child.0.try_wait().unwrap().is_none(), "the operator exited:\n{}", log_text());
        invalid = ["interval", "backoffs"].into_iter().filter_map(|n| ready_condition(&server, n)).collect();
        if invalid.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(invalid.len(), 2, "both policies reported; log:\n{}", log_text());
    for c in &invalid {
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("InvalidSpec")), "{c}");
    }
    let message = |c: &Value| c["message"].as_str().unwrap_or_default().to_string();
    assert!(message(&invalid[0]).contains("spec.interval") && message(&invalid[0]).contains("24h"), "{}", invalid[0]);
    assert!(message(&invalid[1]).contains("Backoff") && message(&invalid[1]).contains("168h"), "{}", invalid[1]);

    // Several more ticks and passes: still running, still ready, no panic logged.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(child.0.try_wait().unwrap().is_none(), "the operator exited:\n{}", log_text());
    let ready = tokio::task::spawn_blocking(move || http_status(probe, "/readyz")).await.unwrap();
    assert_eq!(ready, Some(200), "{}", log_text());
    assert!(!log_text().contains("panicked"), "{}", log_text());
    // The time it could not read counts as "long ago": the policy's passes go on and rewrite it.
    let observed = server
        .get("placement.dev/v1alpha1", "RebalancePolicy", "", "end-of-time")
        .and_then(|p| p.pointer("/status/state/lastObserved").and_then(Value::as_str).map(str::to_string));
    assert!(observed.as_deref().is_some_and(|t| t.starts_with("20")), "lastObserved {observed:?}");
}
