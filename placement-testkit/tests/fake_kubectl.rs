//! kubectl drives the fake API server: discovery, client- and server-side apply, the three patch types,
//! CRDs and custom resources, delete and wait. `/usr/bin/kubectl` must exist: these tests fail without it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use placement_testkit::FakeApiServer;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/bin/kubectl";

/// Upper bound for one kubectl run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one kubectl run gave.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The standard output of a successful run.
    fn ok(self, what: &str) -> String {
        assert_eq!(self.code, Some(0), "kubectl {what} failed: {self:?}");
        self.stdout
    }

    /// The standard error of a failed run.
    fn failed(self, what: &str) -> String {
        assert!(self.code.is_some_and(|c| c != 0), "kubectl {what} should fail: {self:?}");
        self.stderr
    }
}

/// Kills a kubectl still running when a test fails or times out.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// kubectl with a kubeconfig for the fake and its own discovery cache.
struct Kubectl {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(server: &FakeApiServer) -> Kubectl {
        assert!(
            Path::new(KUBECTL).exists(),
            "{KUBECTL} is missing: the kubectl tests need kubectl (1.32 or newer) installed there"
        );
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl { dir, kubeconfig }
    }

    /// Writes `text` into the temporary directory; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, None).await
    }

    async fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Run {
        let child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {KUBECTL}: {e}"));
        let mut child = KillOnDrop(child);
        if let Some(text) = input {
            // Dropping stdin closes it: kubectl reads to the end.
            child.0.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let read = |mut pipe: Box<dyn Read + Send>| {
            tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                pipe.read_to_end(&mut buf).map(|_| String::from_utf8_lossy(&buf).into_owned())
            })
        };
        let stdout = read(Box::new(child.0.stdout.take().unwrap()));
        let stderr = read(Box::new(child.0.stderr.take().unwrap()));
        // Poll rather than block: the test may drive the fake server on this same thread meanwhile.
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "kubectl {args:?} did not finish within {RUN_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Run { code: status.code(), stdout: stdout.await.unwrap().unwrap(), stderr: stderr.await.unwrap().unwrap() }
    }

    /// `kubectl get ... -o json`, parsed.
    async fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.run(&all).await.ok(&format!("{all:?}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {all:?}: not JSON ({e}): {out}"))
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: registry.example/web:1
";

/// Waits (bounded) until the fake has at least `n` open watches.
async fn until_watches(server: &FakeApiServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.watch_count() < n {
        assert!(Instant::now() < deadline, "no watch was opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn get_namespaces_and_version() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let names = kubectl.run(&["get", "ns", "-o", "name"]).await.ok("get ns -o name");
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["namespace/default", "namespace/kube-system"]);
    let table = kubectl.run(&["get", "ns"]).await.ok("get ns");
    assert!(table.starts_with("NAME") && table.contains("kube-system"), "{table}");
    let missing = kubectl.run(&["get", "ns", "nowhere"]).await.failed("get ns nowhere");
    assert!(missing.contains("NotFound") && missing.contains("nowhere"), "{missing}");
    let version: Value = serde_json::from_str(&kubectl.run(&["version", "-o", "json"]).await.ok("version")).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.33.0-placement-fake");
}

#[tokio::test]
async fn apply_creates_keeps_then_configures_a_deployment() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let v1 = kubectl.file("web-v1.yaml", DEPLOYMENT);
    let v2 = kubectl.file("web-v2.yaml", &DEPLOYMENT.replace("web:1", "web:2"));

    let out = kubectl.run(&["apply", "-f", &v1]).await.ok("apply");
    assert_eq!(out.trim(), "deployment.apps/web created");
    let first = kubectl.get_json(&["deploy", "web"]).await;
    assert_eq!(first["metadata"]["generation"], 1);
    let out = kubectl.run(&["apply", "-f", &v1]).await.ok("apply again");
    assert_eq!(out.trim(), "deployment.apps/web unchanged");
    let same = kubectl.get_json(&["deploy", "web"]).await;
    assert_eq!(same["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"], "unchanged writes nothing");
    let out = kubectl.run(&["apply", "-f", &v2]).await.ok("apply a new image");
    assert_eq!(out.trim(), "deployment.apps/web configured");

    let d = kubectl.get_json(&["deploy", "web"]).await;
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["metadata"]["namespace"], "default");
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/web:2");
    let last_applied = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("client-side apply records the last applied configuration");
    let last_applied: Value = serde_json::from_str(last_applied).unwrap();
    assert_eq!(last_applied["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/web:2");
    // The kube client sees the same object.
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let typed = api.get("web").await.unwrap();
    assert_eq!(typed.metadata.generation, Some(2));
    assert_eq!(typed.metadata.uid.as_deref(), d["metadata"]["uid"].as_str());

    let listed = kubectl.get_json(&["deploy"]).await;
    assert_eq!(listed["kind"], "List");
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn patch_strategic_merge_and_json() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let file = kubectl.file("web.yaml", DEPLOYMENT);
    kubectl.run(&["apply", "-f", &file]).await.ok("apply");

    // Strategic merge: containers merge by name, the replica count changes.
    let sidecar = r#"{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"sidecar","image":"registry.example/envoy:1"}]}}}}"#;
    let out = kubectl.run(&["patch", "deploy", "web", "-p", sidecar]).await.ok("strategic patch");
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let d = kubectl.get_json(&["deploy", "web"]).await;
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "sidecar"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    let out = kubectl.run(&["patch", "deploy", "web", "-p", sidecar]).await.ok("the same patch");
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");

    // Merge patch: labels merge; metadata changes leave the generation alone.
    let out = kubectl
        .run(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"metadata":{"labels":{"tier":"front"}}}"#])
        .await
        .ok("merge patch");
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let d = kubectl.get_json(&["deploy", "web"]).await;
    assert_eq!(d["metadata"]["labels"], json!({"app": "web", "tier": "front"}));
    assert_eq!(d["metadata"]["generation"], 2);

    // JSON patch.
    let replace = r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.example/web:3"},{"op":"remove","path":"/spec/template/spec/containers/1"}]"#;
    let out = kubectl.run(&["patch", "deploy", "web", "--type=json", "-p", replace]).await.ok("json patch");
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let d = kubectl.get_json(&["deploy", "web"]).await;
    let containers = d["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "registry.example/web:3");
    assert_eq!(d["metadata"]["generation"], 3);

    // A JSON patch that does not apply fails and changes nothing.
    let bad = r#"[{"op":"replace","path":"/spec/nowhere/x","value":1}]"#;
    let err = kubectl.run(&["patch", "deploy", "web", "--type=json", "-p", bad]).await.failed("a bad json patch");
    assert!(err.contains("/spec/nowhere/x"), "{err}");
    let after = kubectl.get_json(&["deploy", "web"]).await;
    assert_eq!(after["metadata"]["resourceVersion"], d["metadata"]["resourceVersion"]);
    // Patching what does not exist.
    let err = kubectl.run(&["patch", "deploy", "missing", "-p", "{}"]).await.failed("patch a missing deployment");
    assert!(err.contains("NotFound"), "{err}");
}

#[tokio::test]
async fn server_side_apply_creates_and_updates() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  zone: zone-a\n";
    let out = kubectl.run_with_input(&["apply", "--server-side", "-f", "-"], Some(cm)).await.ok("server-side apply");
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    let got = kubectl.get_json(&["configmap", "settings"]).await;
    assert_eq!(got["data"]["zone"], "zone-a");
    assert!(
        got["metadata"]
            .get("annotations")
            .and_then(|a| a.get("kubectl.kubernetes.io/last-applied-configuration"))
            .is_none(),
        "server-side apply keeps no last-applied annotation"
    );
    let changed = cm.replace("zone-a", "zone-b");
    let out = kubectl
        .run_with_input(&["apply", "--server-side", "--field-manager=placement-ci", "-f", "-"], Some(&changed))
        .await
        .ok("server-side apply again");
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    assert_eq!(kubectl.get_json(&["configmap", "settings"]).await["data"]["zone"], "zone-b");

    let file = kubectl.file("web.yaml", DEPLOYMENT);
    let out = kubectl.run(&["apply", "--server-side", "-f", &file]).await.ok("server-side apply of a deployment");
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let file = kubectl.file("web-v2.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: 4"));
    kubectl.run(&["apply", "--server-side", "-f", &file]).await.ok("server-side apply of a change");
    let d = kubectl.get_json(&["deploy", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
    // Dry run stores nothing.
    let file = kubectl.file("web-v3.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: 9"));
    kubectl.run(&["apply", "--server-side", "--dry-run=server", "-f", &file]).await.ok("server dry run");
    assert_eq!(kubectl.get_json(&["deploy", "web"]).await["spec"]["replicas"], 4);
}

#[tokio::test]
async fn crds_from_the_repository_and_custom_resources() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    // Discovery is cached before the CRDs exist: kubectl must find the new types anyway.
    kubectl.run(&["get", "ns"]).await.ok("get ns");
    let crds = path_str(&repo_root().join("deploy/crds"));
    let out = kubectl.run(&["apply", "-f", &crds]).await.ok("apply -f deploy/crds/");
    let created: Vec<&str> = out.lines().collect();
    assert_eq!(created.len(), 6, "{out}");
    assert!(
        created
            .iter()
            .all(|l| l.starts_with("customresourcedefinition.apiextensions.k8s.io/") && l.ends_with(" created"))
    );
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/zonebalancers.placement.dev created"), "{out}");
    let out = kubectl.run(&["apply", "-f", &crds]).await.ok("apply the CRDs again");
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");

    // The CRDs' schemas are served, so `kubectl explain` shows the field descriptions.
    let explain = kubectl.run(&["explain", "poddistribution.spec.groups"]).await.ok("explain");
    assert!(explain.contains("KIND:       PodDistribution") && explain.contains("FIELDS:"), "{explain}");
    assert!(explain.contains("weight") && explain.contains("base"), "{explain}");

    let empty = kubectl.run(&["get", "zonebalancers", "-A"]).await;
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert_eq!(empty.stdout, "");
    assert!(empty.stderr.contains("No resources found"), "{empty:?}");
    let resources =
        kubectl.run(&["api-resources", "--api-group=placement.dev", "-o", "name"]).await.ok("api-resources");
    let mut resources: Vec<&str> = resources.lines().collect();
    resources.sort();
    assert_eq!(
        resources,
        [
            "nodeclasses.placement.dev",
            "poddistributions.placement.dev",
            "rebalancepolicies.placement.dev",
            "trafficweights.placement.dev",
            "workloadslos.placement.dev",
            "zonebalancers.placement.dev"
        ]
    );

    // The examples live in the namespaces shop and traffic.
    for ns in ["shop", "traffic"] {
        let doc = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        let out = kubectl.run_with_input(&["create", "-f", "-"], Some(&doc)).await.ok("create namespace");
        assert_eq!(out.trim(), format!("namespace/{ns} created"));
    }
    let example = path_str(&repo_root().join("examples/crds/zonebalancer.yaml"));
    let out = kubectl.run(&["apply", "-f", &example]).await.ok("apply the ZoneBalancer example");
    assert_eq!(out.trim(), "zonebalancer.placement.dev/singletons created");
    let listed = kubectl.run(&["get", "zonebalancers", "-A"]).await.ok("get zonebalancers -A");
    let row = listed.lines().nth(1).unwrap_or_default();
    assert!(listed.starts_with("NAMESPACE") && row.starts_with("shop") && row.contains("singletons"), "{listed}");
    // Short name and JSON output.
    let zb = kubectl.get_json(&["zb", "-n", "shop", "singletons"]).await;
    assert_eq!(zb["apiVersion"], "placement.dev/v1alpha1");
    assert_eq!(zb["kind"], "ZoneBalancer");
    assert_eq!(zb["spec"]["mode"], "webhook");
    assert_eq!(zb["spec"]["zones"], json!(["eu-west-1a", "eu-west-1b", "eu-west-1c"]));

    // Custom resources take merge patches, not strategic ones.
    let err = kubectl
        .run(&["patch", "zb", "singletons", "-n", "shop", "-p", r#"{"spec":{"mode":"operator"}}"#])
        .await
        .failed("strategic patch of a custom resource");
    assert!(err.contains("strategic merge patch is not supported"), "{err}");
    kubectl
        .run(&["patch", "zb", "singletons", "-n", "shop", "--type=merge", "-p", r#"{"spec":{"mode":"operator"}}"#])
        .await
        .ok("merge patch of a custom resource");
    assert_eq!(kubectl.get_json(&["zb", "-n", "shop", "singletons"]).await["spec"]["mode"], "operator");

    // Every example applies; the category lists them all.
    let examples = path_str(&repo_root().join("examples/crds"));
    let out = kubectl.run(&["apply", "-f", &examples]).await.ok("apply -f examples/crds/");
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(out.contains("zonebalancer.placement.dev/singletons configured"), "{out}");
    // Printer columns are evaluated (the fake answers kubectl's Table requests).
    server
        .put(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": server.get("placement.dev/v1alpha1", "PodDistribution", "shop", "web").unwrap()["spec"].clone(),
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .unwrap();
    let table = kubectl.run(&["get", "pdist", "-n", "shop", "web"]).await.ok("get pdist");
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "KIND", "TARGET", "GROUPS", "STRICT", "READY", "AGE"], "{table}");
    assert_eq!(&row[..6], ["web", "Deployment", "web", "on-demand,spot", "false", "True"], "{table}");

    let all = kubectl.run(&["get", "placement", "-A", "-o", "name"]).await.ok("get placement -A");
    assert_eq!(all.lines().count(), 7, "{all}");

    let out = kubectl.run(&["delete", "-f", &example]).await.ok("delete the example");
    assert_eq!(out.trim(), "zonebalancer.placement.dev \"singletons\" deleted");
    assert!(server.get("placement.dev/v1alpha1", "ZoneBalancer", "shop", "singletons").is_none());
    let err = kubectl.run(&["get", "zb", "-n", "shop", "singletons"]).await.failed("get a deleted resource");
    assert!(err.contains("NotFound"), "{err}");
}

const POD_X: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: x
  labels:
    app: x
spec:
  containers:
  - name: app
    image: registry.example/x:1
";

#[tokio::test]
async fn delete_and_wait_for_conditions_and_deletion() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let out = kubectl.run_with_input(&["create", "-f", "-"], Some(POD_X)).await.ok("create pod x");
    assert_eq!(out.trim(), "pod/x created");

    // Not ready: a short wait times out.
    let err = kubectl
        .run(&["wait", "--for=condition=Ready", "pod/x", "--timeout=1s"])
        .await
        .failed("wait on a pod not ready");
    assert!(err.contains("timed out"), "{err}");

    // kubectl waits on a watch while the kubelet's part is played by the kube client.
    let watches = server.watch_count();
    let waiting = kubectl.run(&["wait", "--for=condition=Ready", "pod/x", "--timeout=30s"]);
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let mark_ready = async {
        until_watches(&server, watches + 1).await;
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status("x", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    };
    let (run, ()) = tokio::join!(waiting, mark_ready);
    assert_eq!(run.ok("wait --for=condition=Ready").trim(), "pod/x condition met");
    // Already ready: returns at once.
    kubectl.run(&["wait", "--for=condition=Ready", "pod/x", "--timeout=5s"]).await.ok("wait on a ready pod");

    let watches = server.watch_count();
    let waiting = kubectl.run(&["wait", "--for=delete", "pod/x", "--timeout=30s"]);
    let delete = async {
        until_watches(&server, watches + 1).await;
        pods.delete("x", &DeleteParams::default()).await.unwrap();
    };
    let (run, ()) = tokio::join!(waiting, delete);
    assert_eq!(run.ok("wait --for=delete").trim(), "pod/x condition met");
    assert!(server.get("v1", "Pod", "default", "x").is_none());

    // kubectl delete, then nothing is left to delete.
    kubectl.run_with_input(&["create", "-f", "-"], Some(POD_X)).await.ok("create pod x again");
    let out = kubectl.run(&["delete", "pod", "x", "--wait=true", "--timeout=30s"]).await.ok("delete pod x");
    assert_eq!(out.trim(), "pod \"x\" deleted");
    let err = kubectl.run(&["delete", "pod", "x"]).await.failed("delete a missing pod");
    assert!(err.contains("NotFound"), "{err}");
    kubectl.run(&["delete", "pod", "x", "--ignore-not-found"]).await.ok("delete --ignore-not-found");
    // A deleted pod is waited for at once.
    kubectl.run(&["wait", "--for=delete", "pod/x", "--timeout=5s"]).await.ok("wait for a pod already gone");
}

#[tokio::test]
async fn create_pods_with_generate_name() {
    let server = FakeApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let doc = POD_X.replace("name: x\n", "generateName: worker-\n").replace("app: x", "app: worker");
    let file = kubectl.file("worker.yaml", &doc);
    let mut names = Vec::new();
    for _ in 0..2 {
        let out = kubectl.run(&["create", "-f", &file, "-o", "name"]).await.ok("create -f with generateName");
        let name = out.trim().strip_prefix("pod/").unwrap_or_else(|| panic!("{out}")).to_string();
        assert!(name.starts_with("worker-") && name.len() == "worker-".len() + 5, "{name}");
        names.push(name);
    }
    assert_ne!(names[0], names[1]);
    let listed = kubectl.run(&["get", "pods", "-l", "app=worker", "-o", "name"]).await.ok("get pods -l");
    let mut listed: Vec<String> = listed.lines().map(|l| l.trim_start_matches("pod/").to_string()).collect();
    listed.sort();
    names.sort();
    assert_eq!(listed, names);
    for name in &names {
        let pod = server.get("v1", "Pod", "default", name).expect("stored");
        assert_eq!(pod["metadata"]["generateName"], "worker-");
    }
    // `apply` needs a name.
    let run = kubectl.run(&["apply", "-f", &file]).await;
    assert_ne!(run.code, Some(0), "{run:?}");
}
