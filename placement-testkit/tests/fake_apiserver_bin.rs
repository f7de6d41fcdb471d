//! The `fake-apiserver` binary as a process: seeds, CRDs, a kubeconfig a real kube client connects with,
//! and bad seed files rejected with the file and document named.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fake-apiserver");

/// The child process, killed when the test ends however it ends.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("FAKE_APISERVER_LISTEN")
            .env_remove("FAKE_APISERVER_KUBECONFIG")
            .env_remove("FAKE_APISERVER_SEED")
            .env_remove("FAKE_APISERVER_CRDS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the fake-apiserver binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, lines }
    }

    /// Waits (bounded) for the line announcing the URL; returns every line seen and the URL.
    fn wait_serving(&self) -> (Vec<String>, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("serving the fake API at ") {
                        let url = rest.split_whitespace().next().unwrap_or("").to_string();
                        seen.push(line);
                        return (seen, url);
                    }
                    seen.push(line);
                }
                Err(e) => panic!("no 'serving' line within 30 s ({e}); stdout so far: {seen:?}"),
            }
        }
    }
}

const SEED: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels:
    topology.kubernetes.io/zone: zone-a
status:
  allocatable:
    cpu: "4"
    memory: 16Gi
    pods: "110"
  capacity:
    cpu: "4"
    memory: 16Gi
    pods: "110"
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
  labels:
    topology.kubernetes.io/zone: zone-b
status:
  allocatable:
    cpu: 3500m
    memory: 8Gi
    pods: "110"
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels:
    app: web
spec:
  nodeName: node-a
  containers:
  - name: web
    image: nginx:1
    resources:
      requests:
        cpu: 500m
        memory: 1Gi
status:
  phase: Running
  conditions:
  - type: Ready
    status: "True"
---
apiVersion: placement.dev/v1alpha1
kind: ZoneBalancer
metadata:
  name: web
  namespace: shop
spec: {}
"#;

async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("the written kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("a kube config from the written kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

#[tokio::test]
async fn binary_serves_seed_and_crds_through_its_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("cluster.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let server = Server::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--seed",
        seed.to_str().unwrap(),
        "--crds",
    ]);
    let (lines, url) = server.wait_serving();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "{url} in {lines:?}");
    assert!(lines.iter().any(|l| l == "installed 6 placement.dev CRDs"), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("seeded 5 objects from ")), "{lines:?}");
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(written.contains(&format!("server: {url}")), "{written}");

    let client = client_from(&kubeconfig).await;
    assert_eq!(client.default_namespace(), "default");

    let nodes: Api<Node> = Api::all(client.clone());
    let mut nodes = nodes.list(&ListParams::default()).await.unwrap().items;
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let names: Vec<_> = nodes.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["node-a", "node-b"]);
    let allocatable = |n: &Node, r: &str| {
        n.status.as_ref().and_then(|s| s.allocatable.as_ref()).and_then(|a| a.get(r)).map(|q| q.0.clone())
    };
    assert_eq!(allocatable(&nodes[0], "cpu").as_deref(), Some("4"));
    assert_eq!(allocatable(&nodes[0], "memory").as_deref(), Some("16Gi"));
    assert_eq!(allocatable(&nodes[1], "cpu").as_deref(), Some("3500m"));
    assert_eq!(allocatable(&nodes[1], "pods").as_deref(), Some("110"));
    assert_eq!(
        nodes[0].metadata.labels.as_ref().and_then(|l| l.get("topology.kubernetes.io/zone")).map(String::as_str),
        Some("zone-a")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pods = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    assert_eq!(pod.metadata.name.as_deref(), Some("web-0"));
    assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("node-a"));
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"), "seeded status is kept");
    let in_default: Api<Pod> = Api::default_namespaced(client.clone());
    assert!(in_default.list(&ListParams::default()).await.unwrap().items.is_empty());

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd_names: Vec<String> = crds
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.ends_with(".placement.dev"))
        .collect();
    crd_names.sort();
    let mut want: Vec<String> =
        placement_kube::crd::all_crds().into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>();
    want.sort();
    assert_eq!(crd_names.len(), 6, "{crd_names:?}");
    assert_eq!(crd_names, want);

    // The CRDs are served: the seeded ZoneBalancer (which needed them) reads back through discovery.
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery.get("placement.dev").expect("placement.dev is discovered");
    let (ar, _) = group.recommended_kind("ZoneBalancer").expect("ZoneBalancer is served");
    let zbs: Api<kube::api::DynamicObject> = Api::namespaced_with(client, "shop", &ar);
    let zb = zbs.get("web").await.unwrap();
    assert_eq!(zb.metadata.namespace.as_deref(), Some("shop"));
}

/// Runs the binary to completion (bounded) and returns its exit status and stderr.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("FAKE_APISERVER_SEED")
        .env_remove("FAKE_APISERVER_CRDS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fake-apiserver binary starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fake-apiserver {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn bad_seed_files_exit_non_zero_naming_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bad-yaml.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n---\nkind: [unclosed\n  name: : :\n",
            "document 2",
        ),
        (
            "unknown-kind.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok2\n---\napiVersion: example.dev/v1\nkind: Gizmo\nmetadata:\n  name: g\n",
            "document 3",
        ),
    ];
    for (file, text, doc) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let (status, stderr) = run_to_exit(&["--listen", "127.0.0.1:0", "--seed", path.to_str().unwrap()]);
        assert!(!status.success(), "{file}: {status}; {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{file}: the message names the file: {stderr}");
        assert!(stderr.contains(doc), "{file}: the message names {doc}: {stderr}");
    }
    // A missing seed file is an error too.
    let missing = dir.path().join("missing.yaml");
    let (status, stderr) = run_to_exit(&["--listen", "127.0.0.1:0", "--seed", missing.to_str().unwrap()]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("missing.yaml"), "{stderr}");
}
