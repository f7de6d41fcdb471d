//! `fake-apiserver`: the test fake API server as a process, so anyone can try the webhook, the operator
//! and kubectl without a cluster.
//!
//! ```text
//! cargo run -p placement-testkit --bin fake-apiserver -- \
//!     --listen 127.0.0.1:8001 --kubeconfig /tmp/fake.kubeconfig --crds --seed examples/clusters/small.yaml
//! KUBECONFIG=/tmp/fake.kubeconfig kubectl get nodes
//! ```
#![forbid(unsafe_code)]

use clap::Parser;
use placement_testkit::{FakeApiServer, FakeConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A fake Kubernetes API server for trying placement without a cluster (not for production).
#[derive(Parser, Debug)]
#[command(name = "fake-apiserver", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "FAKE_APISERVER_LISTEN", default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Where to write a kubeconfig that points at this server.
    #[arg(long, env = "FAKE_APISERVER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// YAML or JSON files (multi-document, or `kind: List`) whose objects are created at start,
    /// status included.
    #[arg(long = "seed", env = "FAKE_APISERVER_SEED", value_delimiter = ',')]
    seeds: Vec<PathBuf>,
    /// Where an admission webhook's `clientConfig.service` is reached: `namespace/name=host:port`.
    #[arg(long = "service", value_parser = parse_service)]
    services: Vec<(String, String)>,
    /// Watch events kept for replay; watches from older versions get 410 Gone.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Install the placement.dev CustomResourceDefinitions at start, before the seed files (which may
    /// then hold placement resources).
    #[arg(long, env = "FAKE_APISERVER_CRDS")]
    crds: bool,
    /// Run stand-ins for the Deployment and ReplicaSet controllers, the scheduler and the kubelet
    /// (placement_testkit::workloads): Deployments get pods through admission, pods get nodes.
    #[arg(long, env = "FAKE_APISERVER_WORKLOAD_CONTROLLERS")]
    workload_controllers: bool,
}

fn parse_service(s: &str) -> Result<(String, String), String> {
    let (svc, addr) = s.split_once('=').ok_or_else(|| format!("expected namespace/name=host:port, got {s:?}"))?;
    if !svc.contains('/') {
        return Err(format!("expected namespace/name before '=', got {svc:?}"));
    }
    Ok((svc.to_string(), addr.to_string()))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("fake-apiserver: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = FakeConfig {
        listen: args.listen,
        history_limit: args.history,
        services: args.services.into_iter().collect::<HashMap<_, _>>(),
        ..FakeConfig::default()
    };
    let server = FakeApiServer::start_with(config).await.map_err(|e| format!("listen on {}: {e}", args.listen))?;
    if args.crds {
        let crds = placement_kube::crd::all_crds();
        for crd in &crds {
            let name = crd.metadata.name.as_deref().unwrap_or("");
            let value = serde_json::to_value(crd).map_err(|e| format!("CRD {name}: {e}"))?;
            server.put(value).map_err(|e| format!("CRD {name}: {e}"))?;
        }
        println!("installed {} placement.dev CRDs", crds.len());
    }
    for path in &args.seeds {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = server.put_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("seeded {n} objects from {}", path.display());
    }
    let _workloads = args.workload_controllers.then(|| {
        println!("running the workload controllers (Deployments, ReplicaSets, scheduling)");
        server.start_workload_controllers()
    });
    if let Some(path) = &args.kubeconfig {
        server.write_kubeconfig(path).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("kubeconfig written to {}", path.display());
    }
    println!("serving the fake API at {} (Ctrl-C to stop)", server.url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}
