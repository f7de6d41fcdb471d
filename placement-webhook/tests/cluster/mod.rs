//! Where the end-to-end test bodies of `cluster_e2e.rs` run: the fake API server, or a real cluster.
//!
//! A body sees a [`Cluster`]: a kube client, a fresh namespace per test, and waits bounded by the
//! cluster's patience. It acts and observes only through the Kubernetes API, as a user with kubectl
//! would, so the same body runs in both places:
//!
//! * **Fake** (always): the fake API server with the placement CRDs, three Ready workers in the shape
//!   below, the stand-ins for the controller manager and scheduler
//!   ([`placement_testkit::workloads`]), the webhook over real TLS registered as the chart
//!   registers it, and the operator's controllers under leader election, all in this process.
//! * **Real** (`PLACEMENT_E2E_KUBECONFIG` set, tests run with `--ignored`): a cluster where placement is
//!   installed and the workers are labelled in the same shape; `deploy/kind/e2e.sh` makes one with kind.
//!   The real controllers, scheduler and kubelets do the rest.
#![allow(dead_code)]

use crate::common;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use placement_operator::runtime::{self, Clients, RunConfig, leader::LeaseConfig};
use placement_testkit::FakeApiServer;
use placement_testkit::workloads::{WorkloadControllers, node_is_ready};
use placement_webhook::server::RunningServer;
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};

/// The node label naming a worker's capacity type.
pub const CAPACITY: &str = "capacity";
/// The node label naming a worker's zone.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// The workers every e2e cluster has: (capacity, zone). `deploy/kind/cluster.yaml` makes the same.
pub const WORKERS: [(&str, &str); 3] = [("on-demand", "zone-a"), ("spot", "zone-b"), ("spot", "zone-c")];
/// The variable naming the kubeconfig of a real cluster.
pub const KUBECONFIG_VAR: &str = "PLACEMENT_E2E_KUBECONFIG";
/// Overrides the real cluster's patience (whole seconds; 240 by default).
pub const PATIENCE_VAR: &str = "PLACEMENT_E2E_PATIENCE_SECONDS";
/// Where the placement components run in the fake (the chart's namespace in a real cluster).
const SYSTEM_NAMESPACE: &str = "placement-system";

pub struct Cluster {
    pub client: kube::Client,
    /// How long a wait may take: the fake settles in seconds; a real cluster pulls images, rolls
    /// Deployments and runs the operator at its production intervals.
    pub patience: Duration,
    /// "fake" or "real", for messages.
    pub kind: &'static str,
    fake: Option<FakeParts>,
}

/// What the fake cluster runs in this process; dropped in this order, the API server last.
struct FakeParts {
    operator_stop: Option<tokio::sync::oneshot::Sender<()>>,
    operator: tokio::task::JoinHandle<Result<(), runtime::RunError>>,
    webhook: Option<RunningServer>,
    _workloads: WorkloadControllers,
    _certs: tempfile::TempDir,
    server: FakeApiServer,
}

impl Cluster {
    /// The fake cluster, started and ready.
    pub async fn fake() -> Cluster {
        let server = FakeApiServer::start().await.expect("the fake API server starts");
        for crd in placement_kube::crd::all_crds() {
            server.put(serde_json::to_value(crd).unwrap()).unwrap();
        }
        server
            .put(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": SYSTEM_NAMESPACE, "labels": {"placement.dev/ignore": "true"}}}))
            .unwrap();
        for (i, (capacity, zone)) in WORKERS.iter().enumerate() {
            server
                .put(json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": format!("worker-{i}"), "labels": {CAPACITY: capacity, ZONE: zone,
                        "kubernetes.io/hostname": format!("worker-{i}")}},
                    "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True"}]}}))
                .unwrap();
        }
        let workloads = server.start_workload_controllers();

        let (certs, cert_pem) = common::certificates();
        // Decisions get 8 s within the configuration's 10 (the chart: 1.5 within 3): the bodies check
        // where pods go, not how fast this shared machine decides.
        let webhook = common::start_webhook(&server, certs.path(), |c| c.deadline = Duration::from_secs(8)).await;
        register_webhook_as_the_chart_does(&server, webhook.address.port(), &cert_pem);

        let (operator_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let clients = Clients { client: server.client(), without_retry: server.client_without_retry() };
        let config = RunConfig {
            kubeconfig: None,
            probe_listen: "127.0.0.1:0".parse().unwrap(),
            lease: LeaseConfig::new("placement-operator", SYSTEM_NAMESPACE, "e2e-operator-0"),
            watch_namespace: None,
            shutdown_timeout: Duration::from_secs(2),
        };
        let listener = tokio::net::TcpListener::bind(config.probe_listen).await.unwrap();
        let operator =
            tokio::spawn(runtime::run_with(clients, config, listener, placement_operator::controllers, async {
                let _ = stopped.await;
            }));

        let client = server.client();
        Cluster {
            client,
            patience: Duration::from_secs(30),
            kind: "fake",
            fake: Some(FakeParts {
                operator_stop: Some(operator_stop),
                operator,
                webhook: Some(webhook),
                _workloads: workloads,
                _certs: certs,
                server,
            }),
        }
    }

    /// The real cluster `PLACEMENT_E2E_KUBECONFIG` names. Panics, saying what is missing, when the
    /// variable is unset or the cluster is not ready for the tests: a real-cluster test that was asked
    /// for never passes without running.
    pub async fn real() -> Cluster {
        let path = std::env::var_os(KUBECONFIG_VAR).unwrap_or_else(|| {
            panic!(
                "{KUBECONFIG_VAR} is not set: the real-cluster e2e tests need the kubeconfig of a cluster with \
                 placement installed (deploy/kind/e2e.sh makes one with kind and prints the command to run)"
            )
        });
        let clients = runtime::clients(Some(std::path::Path::new(&path)))
            .await
            .unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={}: {e}", path.to_string_lossy()));
        let client = clients.client;
        let missing =
            runtime::crds::missing(&client).await.unwrap_or_else(|e| panic!("reading the cluster's APIs: {e}"));
        assert!(
            missing.is_empty(),
            "the placement CRDs are not installed: {missing:?} (helm install, or deploy/kind/e2e.sh)"
        );
        let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("listing nodes");
        for (capacity, zone) in WORKERS {
            let found = nodes.items.iter().any(|n| {
                let labels = n.metadata.labels.clone().unwrap_or_default();
                node_is_ready(n)
                    && labels.get(CAPACITY).map(String::as_str) == Some(capacity)
                    && labels.get(ZONE).map(String::as_str) == Some(zone)
            });
            assert!(
                found,
                "no Ready node labelled {CAPACITY}={capacity}, {ZONE}={zone}: label the workers as deploy/kind/cluster.yaml does"
            );
        }
        let patience = match std::env::var(PATIENCE_VAR) {
            Ok(s) => Duration::from_secs(s.parse().unwrap_or_else(|_| panic!("{PATIENCE_VAR}={s:?}: whole seconds"))),
            Err(_) => Duration::from_secs(240),
        };
        Cluster { client, patience, kind: "real", fake: None }
    }

    /// A new namespace for one test, named `e2e-{prefix}-{suffix}`.
    pub async fn namespace(&self, prefix: &str) -> String {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let name = format!("e2e-{prefix}-{:06x}", nanos & 0xff_ffff);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating the test namespace");
        name
    }

    /// Ends a test that passed: a real cluster's namespace is deleted (a failed test's stays, to be
    /// looked at); the fake's components are stopped.
    pub async fn finish(mut self, namespace: &str) {
        if self.kind == "real" {
            let _ = Api::<Namespace>::all(self.client.clone()).delete(namespace, &DeleteParams::default()).await;
        }
        if let Some(mut fake) = self.fake.take() {
            if let Some(stop) = fake.operator_stop.take() {
                let _ = stop.send(());
            }
            let ended = tokio::time::timeout(Duration::from_secs(10), &mut fake.operator).await;
            assert!(matches!(ended, Ok(Ok(Ok(())))), "the operator did not stop cleanly: {ended:?}");
            if let Some(webhook) = fake.webhook.take() {
                webhook.shutdown().await;
            }
        }
    }

    /// Polls `check` until it gives a value, or panics after [`Self::patience`] with what it last said.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + self.patience;
        loop {
            let last = match check().await {
                Ok(value) => return value,
                Err(last) => last,
            };
            if Instant::now() >= deadline {
                panic!("{} cluster: {what}: not after {:?}; last seen: {last}", self.kind, self.patience);
            }
            tokio::time::sleep(Duration::from_millis(if self.kind == "fake" { 100 } else { 1000 })).await;
        }
    }
}

/// The MutatingWebhookConfiguration the chart renders (deploy/helm/placement/templates/webhook), with
/// the URL of the webhook in this process instead of its Service.
fn register_webhook_as_the_chart_does(server: &FakeApiServer, port: u16, cert_pem: &str) {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(cert_pem);
    server
        .put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "placement-webhook"},
            "webhooks": [{"name": "pods.placement.dev", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
                "failurePolicy": "Ignore", "timeoutSeconds": 10, "reinvocationPolicy": "IfNeeded",
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-node-lease", SYSTEM_NAMESPACE]},
                    {"key": "placement.dev/ignore", "operator": "NotIn", "values": ["true"]}]},
                "matchPolicy": "Equivalent",
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
                "objectSelector": {"matchExpressions": [{"key": "placement.dev/ignore", "operator": "NotIn", "values": ["true"]}]},
                "clientConfig": {"url": format!("https://localhost:{port}/mutate"), "caBundle": ca}}]}))
        .unwrap();
}
