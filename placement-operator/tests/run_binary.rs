//! The `placement-operator run` binary against the in-process fake API server through a kubeconfig:
//! it exits non-zero with an install hint when the CRDs are missing, and with them it becomes ready,
//! takes the Lease, logs JSON, and on SIGTERM releases the Lease and exits 0. Issue 16's eviction row
//! against the binary: an Argo Workflow pod and a cache pod with a sized emptyDir on a hot node are not
//! evicted by default, and each is evicted once opted in.

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

const GI: u64 = 1 << 30;

/// The hot cluster of issue 16: node `hot` at 90 % (metrics.k8s.io), `cold-a` and `cold-b` at 10 %;
/// on `hot`, a step of the Argo Workflow `etl` (owner kind `Workflow`, which nothing placement knows
/// recreates) and a pod of Deployment `cache` keeping 3 GiB in an emptyDir with a 4 GiB sizeLimit.
fn seed_hot_cluster(server: &FakeApiServer) {
    use placement_core::model::{LocalVolume, NodeBuilder, PodBuilder};
    use placement_testkit::objects::{node_object, pod_object};
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    for (name, tenths) in [("hot", 9u64), ("cold-a", 1), ("cold-b", 1)] {
        server.put(node_object(&NodeBuilder::new(name).allocatable(4000, 16 * GI).build())).unwrap();
        server
            .put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "metadata": {"name": name},
                "timestamp": "2026-12-07T00:00:00Z", "window": "20s",
                "usage": {"cpu": format!("{}m", tenths * 400), "memory": (tenths * 16 * GI / 10).to_string()}}))
            .unwrap();
    }
    let mut step = pod_object(&PodBuilder::new("shop", "etl-step-1").on_node("hot").requests(400, GI).build());
    step["metadata"]["ownerReferences"] = json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "name": "etl", "uid": "6d1c9f3e-1b2a-4c3d-9e8f-7a6b5c4d3e2f", "controller": true, "blockOwnerDeletion": true}]);
    server.put(step).unwrap();
    let cache = PodBuilder::new("shop", "cache-5f7d8-x1")
        .deployment("cache")
        .revision("5f7d8")
        .label("app", "cache")
        .volume(LocalVolume::EmptyDir { size_limit: Some(4 * GI), used: None })
        .on_node("hot")
        .requests(400, GI)
        .build();
    server.put(pod_object(&cache)).unwrap();
    for pod in ["etl-step-1", "cache-5f7d8-x1"] {
        server
            .put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                "metadata": {"name": pod, "namespace": "shop"}, "timestamp": "2026-12-07T00:00:00Z", "window": "20s",
                "containers": [{"name": "app", "usage": {"cpu": "400m", "memory": (3 * GI).to_string()}}]}))
            .unwrap();
    }
}

/// A live policy that calls a node hot at the first observation, with `extra` fields on top.
fn put_live_policy(server: &FakeApiServer, name: &str, extra: serde_json::Value) {
    let mut spec = json!({"observationsToEnter": 1, "ewmaAlpha": 1.0, "dryRun": false, "nodeBackoff": "0s"});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": name},
            "spec": spec}))
        .unwrap();
}

/// The policy's last plan once it has `evictions_done` evictions done. A pass writes its plan twice:
/// reserved before it evicts (nothing done yet), then settled; the first write must not be read as the
/// outcome.
async fn settled_plan(
    server: &FakeApiServer,
    name: &str,
    child: &mut std::process::Child,
    evictions_done: u64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let plan = last_plan(server, name, child).await;
        if plan["evictionsDone"].as_u64() == Some(evictions_done) || Instant::now() > deadline {
            return plan;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The policy's last plan, once it has one.
async fn last_plan(server: &FakeApiServer, name: &str, child: &mut std::process::Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let plan = server
            .get("placement.dev/v1alpha1", "RebalancePolicy", "", name)
            .map(|p| p["status"]["lastPlan"].clone())
            .unwrap_or_default();
        if !plan.is_null() {
            return plan;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("RebalancePolicy {name} never planned; the operator said:\n{stderr}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn blocked(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["blocked"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| (b["pod"].as_str().unwrap_or("").to_string(), b["reason"].as_str().unwrap_or("").to_string()))
        .filter(|(pod, _)| !pod.is_empty())
        .collect()
}

fn exists(server: &FakeApiServer, pod: &str) -> bool {
    server.get("v1", "Pod", "shop", pod).is_some()
}

/// Issue 16, "a hot node running pods of an Argo Workflow (kind Workflow) and a cache Deployment whose
/// pods keep 3 GiB in an emptyDir with a sizeLimit → the default policy planned both evictions": against
/// the `placement-operator run` binary, a live policy with no opt-in evicts neither and says why
/// (`unknown_controller`, `empty_dir`); a policy naming `Workflow` in `allowControllerKinds` evicts the
/// workflow step only; a WorkloadSLO declaring the cache's emptyDir scratch lets the next policy evict
/// the cache pod. Each pod is evicted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_evicts_neither_a_workflow_step_nor_a_cache_with_data_until_each_is_opted_in() {
    let server = FakeApiServer::start().await.unwrap();
    seed_hot_cluster(&server);
    put_live_policy(&server, "default", json!({}));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = operator(&kubeconfig, free_port()).spawn().unwrap();

    let plan = last_plan(&server, "default", &mut child).await;
    assert_eq!(plan["hotNodes"], json!(["hot"]), "{plan}");
    assert_eq!(plan["evictionsPlanned"], 0, "{plan}");
    let why = blocked(&plan);
    assert!(why.contains(&("etl-step-1".into(), "unknown_controller".into())), "{why:?}");
    assert!(why.contains(&("cache-5f7d8-x1".into(), "empty_dir".into())), "{why:?}");
    assert!(exists(&server, "etl-step-1") && exists(&server, "cache-5f7d8-x1"));

    // Opt in the Workflow kind by name: the step goes, the cache stays.
    put_live_policy(&server, "workflows", json!({"allowControllerKinds": ["Workflow"]}));
    let plan = settled_plan(&server, "workflows", &mut child, 1).await;
    assert_eq!(plan["evictionsDone"], 1, "{plan}");
    assert_eq!(plan["evictions"][0]["pod"], "etl-step-1", "{plan}");
    assert!(blocked(&plan).contains(&("cache-5f7d8-x1".into(), "empty_dir".into())), "{plan}");
    assert!(!exists(&server, "etl-step-1"));
    assert!(exists(&server, "cache-5f7d8-x1"));

    // Declare the cache's emptyDir scratch (WorkloadSLO): the next policy's pass evicts the cache pod.
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "WorkloadSLO",
            "metadata": {"name": "cache", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "cache"}}, "emptyDirIsScratch": true, "maxEvictionsPerHour": 5}}))
        .unwrap();
    put_live_policy(&server, "scratch", json!({}));
    let plan = settled_plan(&server, "scratch", &mut child, 1).await;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(plan["evictionsDone"], 1, "{plan}\n{stderr}");
    assert_eq!(plan["evictions"][0]["pod"], "cache-5f7d8-x1", "{plan}");
    assert!(!exists(&server, "cache-5f7d8-x1"));
    // Each evicted once: one Evicted event per pod.
    let events = server.list("events.k8s.io/v1", "Event", Some("shop"));
    for pod in ["etl-step-1", "cache-5f7d8-x1"] {
        let n = events
            .iter()
            .filter(|e| {
                e["reason"] == "Evicted" && (e["regarding"]["name"] == pod || e["involvedObject"]["name"] == pod)
            })
            .count();
        assert_eq!(n, 1, "{pod}: {events:?}");
    }
}
