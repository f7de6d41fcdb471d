//! Running the operator: the startup check that the CRDs are installed, the live index, Kubernetes
//! Events, leader election on a Lease, the probe and metrics listener, the controllers, and graceful
//! shutdown.
//!
//! [`run`] is what `placement-operator run` calls; [`run_with`] is the same with the client, the probe
//! listener and the shutdown signal given by the caller (tests). In order:
//!
//! 1. check through API discovery that every placement CRD is served ([`crds`]); if not, return
//!    [`RunError::Crds`] naming what is missing and how to install it (the binary exits non-zero);
//! 2. start the live index (`placement_kube::live::spawn`) and the Events recorder;
//! 3. join the leader election ([`leader`]), which drives the [`Leadership`] flag;
//! 4. build the [`Context`] and a `prometheus-client` [`Registry`], and call the `controllers` closure
//!    once with both: it registers its metrics and returns one [`Controller`] per control loop. Every
//!    controller runs on every instance (standbys keep their caches and plans warm) and must write or
//!    evict only while `ctx.leadership.is_leader()`; a controller that needs synced caches awaits
//!    `ctx.index.wait_ready(..)` itself;
//! 5. serve `/healthz`, `/readyz` and `/metrics` ([`probes`]);
//! 6. on the shutdown signal (SIGTERM or Ctrl-C in [`run`]): stop the controllers, **then** release the
//!    Lease (so no write happens after a standby may have taken over, and the standby takes over at
//!    once instead of after expiry), then drain the probe listener and stop the watches.
//!
//! A controller future that returns ends the operator with [`RunError::ControllerEnded`]: a control
//! loop that stopped silently is worse than a restart. Each shutdown step is bounded by
//! [`RunConfig::shutdown_timeout`].

pub mod crds;
pub mod events;
pub mod leader;
pub mod probes;

use crate::context::{Context, Leadership};
use events::Events;
use futures::future::BoxFuture;
use leader::LeaseConfig;
use placement_kube::live::{self, WatchOptions};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The name the operator reports Events under: its field manager's name.
pub const CONTROLLER_NAME: &str = placement_kube::field_manager::OPERATOR;

/// How to run the operator (the flags of `placement-operator run`).
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// A kubeconfig file; `None` uses kube's inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub probe_listen: SocketAddr,
    pub lease: LeaseConfig,
    /// Watch only this namespace's workloads (all namespaces when `None`); nodes are always watched.
    pub watch_namespace: Option<String>,
    /// Bound on each shutdown step (stopping controllers, releasing the Lease, draining probes).
    pub shutdown_timeout: Duration,
}

/// One control loop, named for logs.
pub struct Controller {
    pub name: &'static str,
    pub future: BoxFuture<'static, ()>,
}

impl Controller {
    pub fn new(name: &'static str, future: impl Future<Output = ()> + Send + 'static) -> Self {
        Controller { name, future: Box::pin(future) }
    }
}

/// Why the operator stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    #[error("cannot listen for probes on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The CRDs are missing, or discovery failed.
    #[error(transparent)]
    Crds(crate::Error),
    #[error("controller {0}; restarting the operator")]
    ControllerEnded(String),
}

/// Builds the client, binds the probe listener, and runs until SIGTERM or Ctrl-C.
pub async fn run<C>(config: RunConfig, controllers: C) -> Result<(), RunError>
where
    C: FnOnce(Context, &mut Registry) -> Vec<Controller>,
{
    config.lease.validate().map_err(RunError::Config)?;
    let listener = tokio::net::TcpListener::bind(config.probe_listen)
        .await
        .map_err(|source| RunError::Listen { addr: config.probe_listen, source })?;
    let clients = clients(config.kubeconfig.as_deref()).await?;
    run_with(clients, config, listener, controllers, shutdown_signal()).await
}

/// The clients of one operator: the usual one, and one without the client's own retries (see
/// [`Context::eviction_client`]).
#[derive(Clone)]
pub struct Clients {
    pub client: kube::Client,
    pub without_retry: kube::Client,
}

/// [`run`] with the clients, the bound probe listener and the shutdown signal given.
pub async fn run_with<C>(
    clients: Clients,
    config: RunConfig,
    probe_listener: tokio::net::TcpListener,
    controllers: C,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError>
where
    C: FnOnce(Context, &mut Registry) -> Vec<Controller>,
{
    config.lease.validate().map_err(RunError::Config)?;
    let step = config.shutdown_timeout;
    let Clients { client, without_retry } = clients;

    crds::check(&client).await.map_err(RunError::Crds)?;
    tracing::info!("placement CRDs are installed");
    let readiness = probes::Readiness::new();
    readiness.set_crds_found();

    let options = WatchOptions { namespace: config.watch_namespace.clone(), ..WatchOptions::default() };
    let (index, watchers) = live::spawn(client.clone(), options);
    readiness.set_index(index.clone());
    let events = Events::new(client.clone(), CONTROLLER_NAME, Some(config.lease.identity.clone()));

    let (leading, leadership) = Leadership::channel();
    let elector = leader::spawn(client.clone(), config.lease.clone(), leading);

    let ctx = Context { client, eviction_client: without_retry, index, events, leadership: leadership.clone() };
    let mut registry = Registry::default();
    probes::register(&mut registry, leadership);
    // Watch failures, relists and last-event ages: placement_operator_watch_*{kind}.
    registry.register_collector(Box::new(live::WatchHealthCollector::new(
        ctx.index.health().clone(),
        "placement_operator",
    )));
    let controllers = controllers(ctx, &mut registry);

    let (probe_stop, probe_stopped) = tokio::sync::oneshot::channel::<()>();
    let probe_addr = probe_listener.local_addr().ok();
    let probe_server = tokio::spawn(probes::serve(probe_listener, readiness, Arc::new(registry), async move {
        let _ = probe_stopped.await;
    }));
    tracing::info!(probe_listen = ?probe_addr, controllers = controllers.len(), "operator running");

    let mut running = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for c in controllers {
        let name = c.name;
        let task = running.spawn(async move {
            c.future.await;
            name
        });
        names.insert(task.id(), name);
    }

    let ended = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutdown signal received");
            None
        }
        Some(done) = running.join_next_with_id(), if !running.is_empty() => Some(match done {
            Ok((_, name)) => (name, "returned".to_string()),
            Err(e) => {
                let name = names.get(&e.id()).copied().unwrap_or("(unknown)");
                (name, if e.is_panic() { format!("panicked: {}", panic_message(e.into_panic())) } else { "was cancelled".into() })
            }
        }),
    };
    if let Some((name, how)) = &ended {
        tracing::error!(controller = name, how = %how, "a controller stopped; shutting down");
    }

    // Controllers first: no write may happen once the Lease is released.
    running.abort_all();
    if tokio::time::timeout(step, async { while running.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("controllers did not stop in time");
    }
    elector.shutdown(step).await;
    let _ = probe_stop.send(());
    if tokio::time::timeout(step, probe_server).await.is_err() {
        tracing::warn!("probe connections did not drain in time");
    }
    drop(watchers);
    tracing::info!("operator stopped");
    match ended {
        Some((name, how)) => Err(RunError::ControllerEnded(format!("{name} {how}"))),
        None => Ok(()),
    }
}

/// The message of a panic payload (a `&str` or a `String`; anything else is named as such).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or("(a payload that is not text)".to_string(), |s| s.to_string())
        }
    };
    text.chars().take(1024).collect()
}

/// A client from `kubeconfig`, or kube's inference.
pub async fn clients(kubeconfig: Option<&std::path::Path>) -> Result<Clients, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Client(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Client(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| RunError::Client(e.to_string()))?,
    };
    let mut no_retry = config.clone();
    no_retry.default_retry = false;
    let build = |c: kube::Config| kube::Client::try_from(c).map_err(|e| RunError::Client(e.to_string()));
    Ok(Clients { client: build(config)?, without_retry: build(no_retry)? })
}

/// Completes on SIGTERM (what the kubelet sends) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Log output of the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global tracing subscriber: `filter` in `RUST_LOG` syntax (`info`,
/// `placement_operator=debug,kube=warn`). Returns an error message for an invalid filter.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
