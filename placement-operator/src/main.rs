#![forbid(unsafe_code)]
//! `placement-operator`: `run` (the controllers under leader election, with probes and metrics; see
//! `placement_operator::runtime` and docs/operator.md), `plan` (the rebalancer's plan, once, as a dry
//! run), `simulate`, and `crdgen`, which writes (or checks) the CRD files under `deploy/crds`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use placement_operator::runtime::{self, RunConfig, leader::LeaseConfig};
use placement_operator::{controllers_with, crdgen, plan, simulate};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "placement-operator", version, about = "Keeps pod placement true and utilization balanced")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: leader election on a Lease, the controllers, probes and metrics.
    Run(RunArgs),
    /// Run a scenario (the embedded demo by default) through every placement decision and print the result.
    Simulate {
        /// A scenario file (docs/scenarios.md); without it, the embedded demo runs.
        #[arg(long, env = "PLACEMENT_SCENARIO")]
        scenario: Option<std::path::PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table, env = "PLACEMENT_FORMAT")]
        format: Format,
        /// Also write a self-contained HTML report with charts (viewable offline) to this file.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
    },
    /// Print the rebalance plan the controller would make next (never evicts): against the cluster of
    /// the kubeconfig, or saved objects (`--snapshot`), as a table with reasons or JSON.
    Plan(plan::PlanArgs),
    /// Write every placement CRD to `<out>/<plural>.placement.dev.yaml`, or with --check fail when the
    /// files there differ from what the code generates.
    Crdgen {
        /// Directory of the CRD files.
        #[arg(long, default_value = "deploy/crds")]
        out: std::path::PathBuf,
        /// Write nothing; exit non-zero, naming each drifting file, when the files differ.
        #[arg(long)]
        check: bool,
    },
}

/// Every flag can also be set by the environment variable shown in `--help`.
#[derive(Args)]
struct RunArgs {
    /// Address of the plain-HTTP listener for /healthz, /readyz and /metrics.
    #[arg(long, env = "PLACEMENT_PROBE_LISTEN", default_value = "0.0.0.0:8080")]
    probe_listen: SocketAddr,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, env = "PLACEMENT_LEASE_NAME", default_value = "placement-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace; from the downward API in the manifests).
    #[arg(long, env = "PLACEMENT_LEASE_NAMESPACE", default_value = "placement-system")]
    lease_namespace: String,
    /// How long the Lease stays valid after a renewal.
    #[arg(long, env = "PLACEMENT_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration_seconds: u64,
    /// How long after a renewal the leader renews again (less than the lease duration).
    #[arg(long, env = "PLACEMENT_LEASE_RENEW_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3599))]
    lease_renew_seconds: u64,
    /// How often a standby re-reads the Lease, in milliseconds.
    #[arg(long, env = "PLACEMENT_LEASE_RETRY_MILLIS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=60000))]
    lease_retry_millis: u64,
    /// Holder identity in the Lease; default: POD_NAME, else the host name with a random suffix.
    #[arg(long, env = "PLACEMENT_LEASE_IDENTITY")]
    lease_identity: Option<String>,
    /// Watch workloads in this namespace only (default: all namespaces; nodes are always watched).
    #[arg(long, env = "PLACEMENT_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// A kubeconfig file; without it kube's inference is used: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account.
    #[arg(long, env = "PLACEMENT_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Bound, in seconds, on each shutdown step (stopping controllers, releasing the Lease, draining probes).
    #[arg(long, env = "PLACEMENT_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    shutdown_timeout_seconds: u64,
    /// Log format.
    #[arg(long, value_enum, env = "PLACEMENT_LOG_FORMAT", default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax, e.g. `info` or `placement_operator=debug,kube=warn`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    traffic: placement_operator::traffic::TrafficArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_operator(args),
        Command::Crdgen { out, check } => run_crdgen(&out, check),
        Command::Plan(args) => plan::main(args),
        Command::Simulate { scenario, format, html } => {
            let loaded = match &scenario {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display())).and_then(|text| {
                        simulate::Scenario::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())
                    })
                }
                None => simulate::Scenario::demo().map_err(|e| e.to_string()),
            };
            let scenario = match loaded {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = simulate::run(&scenario);
            if let Some(path) = &html
                && let Err(e) = std::fs::write(path, simulate::html::render(&report))
            {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            match format {
                Format::Table => print!("{}", report.render()),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::SUCCESS
        }
    }
}

fn run_operator(args: RunArgs) -> ExitCode {
    let format = match args.log_format {
        LogFormat::Json => runtime::LogFormat::Json,
        LogFormat::Text => runtime::LogFormat::Text,
    };
    if let Err(e) = runtime::init_logging(format, &args.log) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let identity = args.lease_identity.unwrap_or_else(runtime::leader::default_identity);
    let lease = LeaseConfig {
        duration: Duration::from_secs(args.lease_duration_seconds),
        renew: Duration::from_secs(args.lease_renew_seconds),
        retry: Duration::from_millis(args.lease_retry_millis),
        ..LeaseConfig::new(args.lease_name, args.lease_namespace, identity)
    };
    if let Err(e) = lease.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let config = RunConfig {
        kubeconfig: args.kubeconfig,
        probe_listen: args.probe_listen,
        lease,
        watch_namespace: args.watch_namespace,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_seconds),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(runtime::run(config, controllers_with(args.traffic.options()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("error: {e}");
            match e {
                runtime::RunError::Config(_) => ExitCode::from(2),
                runtime::RunError::Crds(_) => ExitCode::from(3),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run_crdgen(out: &std::path::Path, check: bool) -> ExitCode {
    if check {
        match crdgen::check(out) {
            Ok(drift) if drift.is_empty() => {
                println!("CRDs in {} are up to date", out.display());
                ExitCode::SUCCESS
            }
            Ok(drift) => {
                for d in &drift {
                    eprintln!("error: {d}");
                }
                eprintln!(
                    "run `cargo run -p placement-operator -- crdgen --out {}` and commit the result",
                    out.display()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    } else {
        match crdgen::write(out) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    }
}
