//! `placement-webhook serve`: the mutating admission webhook.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use placement_webhook::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "placement-webhook", version, about = "Places pods at creation: zones, weighted node groups")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve admission reviews over HTTPS (kubeconfig from KUBECONFIG or in-cluster).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// HTTPS listener for AdmissionReviews (POST /mutate).
    #[arg(long, env = "PLACEMENT_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Plain-HTTP listener for /healthz, /readyz and /metrics.
    #[arg(long, env = "PLACEMENT_PROBE_LISTEN", default_value = "0.0.0.0:8080")]
    probe_listen: SocketAddr,
    /// PEM certificate chain (reloaded when it changes, Secret volume symlink swaps included).
    #[arg(long, env = "PLACEMENT_TLS_CERT", default_value = "/etc/placement/tls/tls.crt")]
    tls_cert: PathBuf,
    /// PEM private key.
    #[arg(long, env = "PLACEMENT_TLS_KEY", default_value = "/etc/placement/tls/tls.key")]
    tls_key: PathBuf,
    /// Time budget of one admission in milliseconds; past it the pod is admitted unmutated.
    #[arg(long, env = "PLACEMENT_DEADLINE_MS", default_value_t = 1500)]
    deadline_ms: u64,
    /// How long a placement counts while its pod has not been seen, in seconds.
    #[arg(long, env = "PLACEMENT_RESERVATION_TTL_SECONDS", default_value_t = 30)]
    reservation_ttl_seconds: u64,
    /// Log as JSON lines.
    #[arg(long, env = "PLACEMENT_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = ServerConfig {
        listen: args.listen,
        probe_listen: args.probe_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        deadline: Duration::from_millis(args.deadline_ms),
        reservation_ttl: Duration::from_secs(args.reservation_ttl_seconds),
        ..ServerConfig::default()
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("placement-webhook: no Kubernetes configuration (KUBECONFIG or in-cluster): {e}");
            std::process::exit(2);
        }
    };
    let running = match server::start(config, client).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("placement-webhook: {e}");
            std::process::exit(1);
        }
    };
    server::shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await;
}
