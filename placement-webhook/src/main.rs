//! `placement-webhook serve`: the mutating admission webhook; `placement-webhook certs`: its self-signed
//! serving certificate, made and rotated without cert-manager.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use placement_webhook::serve::ServeLimits;
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
    /// Make or renew the self-signed serving certificate (a Secret) and keep the
    /// MutatingWebhookConfiguration's caBundle trusting it; does nothing when both are current.
    Certs(CertsArgs),
}

#[derive(clap::Args, Debug)]
struct CertsArgs {
    /// Namespace of the Secret and the Service.
    #[arg(long, env = "PLACEMENT_CERTS_NAMESPACE", default_value = "placement-system")]
    namespace: String,
    /// The kubernetes.io/tls Secret the webhook mounts.
    #[arg(long, env = "PLACEMENT_CERTS_SECRET", default_value = "placement-webhook-tls")]
    secret: String,
    /// The MutatingWebhookConfiguration whose caBundle must trust the certificate.
    #[arg(long, env = "PLACEMENT_CERTS_WEBHOOK_CONFIG", default_value = "placement-webhook")]
    webhook_config: String,
    /// The Service the API server calls (the certificate's DNS names).
    #[arg(long, env = "PLACEMENT_CERTS_SERVICE", default_value = "placement-webhook")]
    service: String,
    /// Lifetime of a serving certificate, in days.
    #[arg(long, env = "PLACEMENT_CERTS_VALIDITY_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(2..=3650))]
    validity_days: u64,
    /// Renew when the certificate expires within this many days.
    #[arg(long, env = "PLACEMENT_CERTS_RENEW_BEFORE_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3649))]
    renew_before_days: u64,
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
    /// Seconds a watch may keep failing before /readyz reports the webhook unready (its index is stale:
    /// failing open beats placing pods on it).
    #[arg(long, env = "PLACEMENT_WATCH_FAILING_SECONDS", default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    watch_failing_seconds: u64,
    /// Open connections on the HTTPS listener; one more is closed right after accept. One client address
    /// may hold half of them.
    #[arg(long, env = "PLACEMENT_MAX_CONNECTIONS", default_value_t = ServeLimits::default().max_connections,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    max_connections: usize,
    /// Admission requests in flight (head received, not yet answered); one more is answered 503 at once.
    /// One client address may hold half of them.
    #[arg(long, env = "PLACEMENT_MAX_IN_FLIGHT", default_value_t = ServeLimits::default().max_in_flight,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    max_in_flight: usize,
    /// Time from a request's head to its last body byte, in milliseconds; past it the request is
    /// answered 408.
    #[arg(long, env = "PLACEMENT_BODY_TIMEOUT_MS", default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(100..=30_000))]
    body_timeout_ms: u64,
    /// Log as JSON lines.
    #[arg(long, env = "PLACEMENT_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Certs(args) => certs(args).await,
    };
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
        watch_failing_limit: Duration::from_secs(args.watch_failing_seconds),
        limits: ServeLimits {
            max_connections: args.max_connections,
            max_in_flight: args.max_in_flight,
            // One client address may hold half of each cap (see `ServeLimits::default`).
            max_connections_per_peer: args.max_connections.div_ceil(2),
            max_in_flight_per_peer: args.max_in_flight.div_ceil(2),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            ..ServeLimits::default()
        },
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

/// `certs`: one pass of [`placement_webhook::certs::ensure`]; exits 0 when done, 1 on failure.
async fn certs(args: CertsArgs) -> ! {
    if args.renew_before_days >= args.validity_days {
        eprintln!(
            "placement-webhook certs: --renew-before-days ({}) must be below --validity-days ({})",
            args.renew_before_days, args.validity_days
        );
        std::process::exit(2);
    }
    let config = placement_webhook::certs::CertsConfig {
        namespace: args.namespace,
        secret: args.secret,
        webhook_config: args.webhook_config,
        service: args.service,
        validity: Duration::from_secs(args.validity_days * 86_400),
        renew_before: Duration::from_secs(args.renew_before_days * 86_400),
        overlap: Duration::from_secs(3600),
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("placement-webhook certs: no Kubernetes configuration (KUBECONFIG or in-cluster): {e}");
            std::process::exit(2);
        }
    };
    match placement_webhook::certs::ensure(&client, &config, jiff::Timestamp::now()).await {
        Ok(outcome) => {
            let expiry = jiff::Timestamp::from_second(outcome.not_after).map(|t| t.to_string()).unwrap_or_default();
            match &outcome.issued {
                Some(reason) => println!("issued a new certificate ({reason}); it expires {expiry}"),
                None => println!("the certificate is current; it expires {expiry}"),
            }
            if outcome.bundle_changed {
                println!("updated the caBundle of {}", config.webhook_config);
            }
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("placement-webhook certs: {e}");
            std::process::exit(1);
        }
    }
}
