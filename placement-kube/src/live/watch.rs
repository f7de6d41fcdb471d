//! Feeding a [`LiveIndex`] from kube watchers, and knowing when it is ready.
//!
//! One kube `watcher` per kind (paged list, then watch from the list's version, with kube's default
//! backoff on errors) applies its events to the shared index under a short write lock. The index is
//! **ready** once every kind has completed its first list; a later relist (after a dropped watch or
//! `410 Gone`) does not make it unready, because the old view stays valid until the relist completes.

use super::health::WatchHealth;
use super::index::{Kind, LiveIndex};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

/// Which kinds to watch, and how.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub kinds: BTreeSet<Kind>,
    /// Watch only this namespace (all namespaces when `None`); nodes are cluster-scoped regardless.
    pub namespace: Option<String>,
    /// Page size of the initial list.
    pub page_size: u32,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { kinds: Kind::ALL.into_iter().collect(), namespace: None, page_size: 500 }
    }
}

/// A live index shared between its watchers and its readers.
#[derive(Clone)]
pub struct SharedIndex {
    inner: Arc<RwLock<LiveIndex>>,
    ready: signal::Receiver<bool>,
    health: WatchHealth,
}

impl SharedIndex {
    /// A shared index over an index built by the caller (tests, `simulate`), ready at once.
    pub fn from_index(index: LiveIndex) -> Self {
        let (tx, ready) = signal::channel(true);
        drop(tx);
        SharedIndex { inner: Arc::new(RwLock::new(index)), ready, health: WatchHealth::default() }
    }

    /// How each watch feeding this index is doing (see [`WatchHealth`]).
    pub fn health(&self) -> &WatchHealth {
        &self.health
    }

    /// A read view. Hold it briefly: watch events wait while it is held.
    pub fn read(&self) -> RwLockReadGuard<'_, LiveIndex> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A write view, for callers that apply events themselves (tests, zone scope registration).
    pub fn write(&self) -> RwLockWriteGuard<'_, LiveIndex> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether every watched kind has been listed once.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until ready; false if `timeout` passes first.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.clone();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }
}

/// The running watchers of a [`SharedIndex`]; dropping it stops them.
pub struct Watchers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts one watcher per kind in `options`, feeding a new live index.
pub fn spawn(client: Client, options: WatchOptions) -> (SharedIndex, Watchers) {
    let inner = Arc::new(RwLock::new(LiveIndex::new()));
    let (ready_tx, ready_rx) = signal::channel(false);
    let ready_tx = Arc::new(ready_tx);
    let health = WatchHealth::default();
    let mut tasks = Vec::new();
    let config = watcher::Config::default().page_size(options.page_size);
    let ns = options.namespace.as_deref();
    for kind in &options.kinds {
        let ctx = Ctx {
            index: inner.clone(),
            ready: ready_tx.clone(),
            kinds: options.kinds.clone(),
            kind: *kind,
            health: health.clone(),
        };
        let task = match kind {
            Kind::Node => {
                tokio::spawn(run(Api::<Node>::all(client.clone()), config.clone(), ctx, |i, o| i.apply_node(o)))
            }
            Kind::Pod => tokio::spawn(run(api(&client, ns), config.clone(), ctx, |i, o: &Pod| i.apply_pod(o))),
            Kind::ReplicaSet => {
                tokio::spawn(run(api(&client, ns), config.clone(), ctx, |i, o: &ReplicaSet| i.apply_replicaset(o)))
            }
            Kind::Deployment => {
                tokio::spawn(run(api(&client, ns), config.clone(), ctx, |i, o: &Deployment| i.apply_deployment(o)))
            }
            Kind::StatefulSet => {
                tokio::spawn(run(api(&client, ns), config.clone(), ctx, |i, o: &StatefulSet| i.apply_statefulset(o)))
            }
            Kind::PodDisruptionBudget => {
                tokio::spawn(run(api(&client, ns), config.clone(), ctx, |i, o: &PodDisruptionBudget| i.apply_pdb(o)))
            }
        };
        tasks.push(task);
    }
    (SharedIndex { inner, ready: ready_rx, health }, Watchers { tasks })
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

struct Ctx {
    index: Arc<RwLock<LiveIndex>>,
    ready: Arc<signal::Sender<bool>>,
    kinds: BTreeSet<Kind>,
    kind: Kind,
    health: WatchHealth,
}

async fn run<K>(api: Api<K>, config: watcher::Config, ctx: Ctx, apply: impl Fn(&mut LiveIndex, &K))
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = ctx.kind;
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // The backoff retries; the index keeps its last good view meanwhile.
                ctx.health.on_error(kind, std::time::Instant::now());
                tracing::warn!(%kind, error = %e, "watch failed, retrying with backoff");
                continue;
            }
        };
        ctx.health.on_event(kind, std::time::Instant::now());
        if matches!(event, Event::Init) {
            ctx.health.on_relist(kind);
        }
        let mut index = ctx.index.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => index.begin_relist(kind),
            Event::InitApply(o) | Event::Apply(o) => apply(&mut index, &o),
            Event::Delete(o) => {
                let meta = o.meta();
                index.delete(kind, meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""));
            }
            Event::InitDone => {
                index.end_relist(kind);
                let all = ctx.kinds.iter().all(|k| index.is_synced(*k));
                drop(index);
                if all {
                    ctx.ready.send_replace(true);
                }
                tracing::debug!(%kind, "list synced");
            }
        }
    }
}

fn watcher<K>(api: Api<K>, config: watcher::Config) -> impl futures::Stream<Item = watcher::Result<Event<K>>>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(api, config)
}
