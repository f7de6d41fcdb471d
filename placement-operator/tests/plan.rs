//! `placement-operator plan`: the binary on saved files (table and JSON), clear errors for bad files,
//! and against a cluster (the fake API server through a kubeconfig), where its plan is the one the
//! controller then carries out.

use placement_core::model::{NodeBuilder, PodBuilder};
use placement_kube::live::{WatchOptions, spawn};
use placement_operator::context::{Context, Leadership};
use placement_operator::plan::{PlanOptions, plan_cluster};
use placement_operator::rebalancer::{Evictor, PassOutcome, Rebalancer};
use placement_operator::runtime::events::Events;
use placement_testkit::FakeApiServer;
use placement_testkit::objects::{node_object, pod_object};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_placement-operator")).arg("plan").args(args).output().expect("runs")
}

fn saved_args(format: &str) -> Vec<String> {
    let mut args = Vec::new();
    for (flag, file) in [
        ("--snapshot", "cluster.yaml"),
        ("--snapshot", "policy.yaml"),
        ("--metrics", "node-metrics.json"),
        ("--metrics", "pod-metrics.json"),
    ] {
        args.push(flag.to_string());
        args.push(fixture(file).display().to_string());
    }
    args.extend(["--now".into(), "2026-11-25T12:00:00Z".into(), "--format".into(), format.into()]);
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_saved_snapshot_prints_the_table_with_reasons() {
    let out = run(&strs(&saved_args("table")));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "RebalancePolicy tight (live)",
        "nothing is evicted by this command",
        "| hot    | 0.887     | 0.762            | HOT   |",
        "sigma 0.3596 -> 0.2741; 1 eviction(s)",
        "| shop/web-7d9f-0 | Deployment web | hot  | cold-a |",
        "| shop/log-agent-x2 | hot  | daemonset       | DaemonSet pod",
        "| shop/api-5c4b-0   | hot  | pdb             | PodDisruptionBudget shop/api allows no more disruptions |",
        "| shop/web-7d9f-1   | hot  | max_unavailable | workload would exceed maxUnavailable 1",
        "note: not read by the plan: 1 Service",
        "note: no persisted state: assuming the usage seen now held for 1 observation(s)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn a_saved_snapshot_prints_json() {
    let out = run(&strs(&saved_args("json")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["policy"], "tight");
    assert_eq!(report["observations"], 1);
    let plan = &report["plan"];
    assert_eq!(plan["dryRun"], false);
    assert_eq!(plan["evictions"].as_array().unwrap().len(), 1);
    assert_eq!(plan["evictions"][0]["pod"], json!({"namespace": "shop", "name": "web-7d9f-0"}));
    assert_eq!(plan["evictions"][0]["to"], "cold-a");
    assert_eq!(plan["evictions"][0]["record"]["at"], "2026-11-25T12:00:00Z");
    let skipped = plan["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["reason"]["kind"] == "pdbExhausted" && s["pod"]["name"] == "api-5c4b-0"),
        "{skipped:?}"
    );
    assert!(plan["nodes"].as_array().unwrap().iter().any(|n| n["node"] == "hot" && n["hot"] == true));
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn bad_snapshot_files_fail_with_an_error_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture("cluster.yaml").display().to_string();
    let node = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}}"#;
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (vec![dir.path().join("missing.yaml").display().to_string()], vec!["missing.yaml", "No such file"]),
        (
            vec![write(dir.path(), "syntax.yaml", "apiVersion: v1\nkind: [Node\n")],
            vec!["syntax.yaml: document 1: not valid YAML or JSON"],
        ),
        (
            vec![write(dir.path(), "nokind.yaml", "apiVersion: v1\nmetadata: {name: x}\n")],
            vec!["nokind.yaml: document 1: an object without `kind`"],
        ),
        (
            vec![write(
                dir.path(),
                "types.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: 5}\n",
            )],
            vec!["types.yaml: document 1 (Pod shop/p): field spec.containers: invalid type"],
        ),
        (
            vec![write(dir.path(), "quantity.yaml", &node.replace("\"4\"", "\"four\""))],
            vec!["cannot read 1 object(s)", "Node n1", "status.allocatable.cpu"],
        ),
        (
            vec![write(dir.path(), "pods-only.yaml", "apiVersion: v1\nkind: List\nitems: []\n")],
            vec!["no Node in", "kubectl get nodes,pods,pdb -A -o yaml"],
        ),
        (
            vec![
                cluster.clone(),
                write(
                    dir.path(),
                    "two.yaml",
                    "apiVersion: placement.dev/v1alpha1\nkind: RebalancePolicy\nmetadata: {name: a}\nspec: {}\n---\napiVersion: placement.dev/v1alpha1\nkind: RebalancePolicy\nmetadata: {name: b}\nspec: {}\n",
                ),
            ],
            vec!["several RebalancePolicies (a, b): choose one with --policy"],
        ),
        (
            vec![
                cluster.clone(),
                write(
                    dir.path(),
                    "badpolicy.yaml",
                    "apiVersion: placement.dev/v1alpha1\nkind: RebalancePolicy\nmetadata: {name: a}\nspec: {coldThreshold: 0.9}\n",
                ),
            ],
            vec!["RebalancePolicy a: spec.coldThreshold"],
        ),
    ];
    for (files, wants) in cases {
        let mut args = Vec::new();
        for f in &files {
            args.extend(["--snapshot".to_string(), f.clone()]);
        }
        let out = run(&strs(&args));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{files:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing on stdout for {files:?}");
        for want in wants {
            assert!(err.contains(want), "{files:?}: missing {want:?} in {err}");
        }
    }
}

const GI: u64 = 1 << 30;

#[tokio::test]
async fn against_a_cluster_the_plan_is_what_the_controller_does_next() {
    let server = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    for (name, used) in [("hot", 9u64), ("cold-a", 1), ("cold-b", 2)] {
        server.put(node_object(&NodeBuilder::new(name).allocatable(4000, 16 * GI).build())).unwrap();
        server
            .put(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "metadata": {"name": name},
                "usage": {"cpu": format!("{}m", used * 400), "memory": (used * 16 * GI / 10).to_string()}}))
            .unwrap();
    }
    for i in 0..5 {
        let pod = PodBuilder::new("shop", format!("w{i}-0")).deployment(format!("w{i}")).revision("h").on_node("hot");
        server.put(pod_object(&pod.requests(400, GI).build())).unwrap();
    }
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy", "metadata": {"name": "rb"},
            "spec": {"observationsToEnter": 1, "ewmaAlpha": 1.0, "dryRun": false, "maxEvictionsPerMinute": 3}}))
        .unwrap();

    // The binary, through a kubeconfig.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let path = kubeconfig.display().to_string();
    let out = tokio::task::spawn_blocking(move || run(&["--kubeconfig", &path, "--format", "json"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["source"], "the cluster");
    let from_binary: Vec<String> = report["plan"]["evictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pod"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(from_binary.len(), 3, "{report}");

    // The library call, then the controller's pass: the same evictions.
    let planned = plan_cluster(&server.client(), &PlanOptions::default()).await.unwrap();
    let from_library: Vec<String> = planned.plan.evictions.iter().map(|e| e.pod.name.clone()).collect();
    assert_eq!(from_library, from_binary);
    let client = server.client();
    let (index, _watchers) = spawn(client.clone(), WatchOptions::default());
    assert!(index.wait_ready(Duration::from_secs(10)).await);
    let ctx = Context {
        client,
        eviction_client: server.client_without_retry(),
        index,
        events: Events::disabled(),
        leadership: Leadership::always(),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let rebalancer = Rebalancer::new(ctx, Evictor::new(server.client_without_retry()), &mut registry);
    let Ok(PassOutcome::Done(report)) = rebalancer.pass("rb", true).await else { panic!("the pass completes") };
    let done: Vec<String> = report.plan.evictions.iter().map(|e| e.pod.name.clone()).collect();
    assert_eq!(done, from_binary);
    assert_eq!(server.list("v1", "Pod", Some("shop")).len(), 2);

    // Now the policy has a persisted state: plan continues from it (and sees the spent budget).
    let planned = plan_cluster(&server.client(), &PlanOptions::default()).await.unwrap();
    assert!(planned.from_persisted_state);
    assert_eq!(planned.observations, 1);
    assert!(planned.plan.evictions.is_empty(), "{}", planned.plan.stop);
}

#[test]
fn a_saved_policy_with_status_continues_from_its_state_unless_fresh() {
    let dir = tempfile::tempdir().unwrap();
    // The policy as `kubectl get rbp tight -o yaml` shows it after a pass that evicted a web pod from
    // `hot` two minutes earlier (web is in its 10-minute backoff).
    let policy = write(
        dir.path(),
        "policy-with-status.yaml",
        "apiVersion: placement.dev/v1alpha1\nkind: RebalancePolicy\nmetadata: {name: tight}\n\
         spec: {observationsToEnter: 1, ewmaAlpha: 1, maxEvictionsPerMinute: 2, dryRun: false}\n\
         status:\n  state:\n    lastObserved: \"2026-11-25T11:59:00Z\"\n    nodes:\n\
         \x20   - {node: hot, score: 0.9, hot: true, hotStreak: 5}\n\
         \x20   - {node: cold-a, score: 0.1, cold: true, coldStreak: 5}\n\
         \x20   - {node: cold-b, score: 0.15, cold: true, coldStreak: 5}\n\
         \x20   history:\n\
         \x20   - {at: \"2026-11-25T11:58:00Z\", namespace: shop, pod: web-7d9f-9, from: hot, to: cold-a,\n\
         \x20      workload: {kind: Deployment, namespace: shop, name: web}}\n",
    );
    let mut args =
        vec!["--snapshot".to_string(), fixture("cluster.yaml").display().to_string(), "--snapshot".into(), policy];
    for m in ["node-metrics.json", "pod-metrics.json"] {
        args.extend(["--metrics".to_string(), fixture(m).display().to_string()]);
    }
    args.extend(["--now".into(), "2026-11-25T12:00:00Z".into(), "--format".into(), "json".into()]);
    let out = run(&strs(&args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["fromPersistedState"], true);
    assert!(report["plan"]["evictions"].as_array().unwrap().is_empty(), "{report}");
    let skipped = report["plan"]["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["pod"]["name"] == "web-7d9f-0" && s["reason"]["kind"] == "workloadBackoff"),
        "{skipped:?}"
    );

    args.push("--fresh".into());
    let out = run(&strs(&args));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["fromPersistedState"], false);
    assert_eq!(report["plan"]["evictions"][0]["pod"]["name"], "web-7d9f-0");
}
