//! A stand-in for a node autoscaler (Karpenter, the Cluster Autoscaler), reduced to what placement's
//! end-to-end tests of autoscaled groups observe: a node of a pool is made when a pod stays
//! unschedulable and a node of that pool would run it; a pool can be told that its capacity is
//! unavailable, as a cloud answers "insufficient capacity".
//!
//! Every tick (100 ms), through the API like any client: the pods that the scheduler stand-in
//! ([`crate::workloads`]) has marked `PodScheduled=False`/`Unschedulable` for at least
//! [`AutoscalerOptions::delay`] are matched against the pools in order; the first pool whose node
//! template the pod could run on (its `nodeSelector`, required node affinity and tolerations against
//! the template's labels and taints, as the scheduler stand-in checks a node) gets one new node, Ready,
//! named `<pool>-<n>`: unless its capacity is unavailable (counted as refused) or it has
//! [`NodePool::max_nodes`] already. One launch per pool per `delay`: the scheduler stand-in ignores
//! resources, so one new node takes every pod waiting for its pool, and the next wave waits for it.
//!
//! Not done: instance types and sizes, scale-down and consolidation, node expiry, interruption.

use crate::workloads::{fits, unschedulable_since};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Label every node this stand-in makes carries, with its pool's name.
pub const POOL_LABEL: &str = "autoscaler.fake/pool";

/// A pool of nodes the autoscaler can make: what each new node of it looks like.
#[derive(Clone, Debug)]
pub struct NodePool {
    /// Prefix of the nodes' names, and the value of [`POOL_LABEL`].
    pub name: String,
    /// The new nodes' labels (besides [`POOL_LABEL`] and `kubernetes.io/hostname`).
    pub labels: BTreeMap<String, String>,
    /// The new nodes' taints.
    pub taints: Vec<Taint>,
    /// Most nodes of this pool at once (those it made; nodes deleted since do not count).
    pub max_nodes: usize,
}

impl NodePool {
    /// A pool `name` whose nodes carry `labels` and no taint, at most 10 of them.
    pub fn new<'a>(name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> NodePool {
        NodePool {
            name: name.to_string(),
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            taints: Vec::new(),
            max_nodes: 10,
        }
    }

    /// The same pool, its nodes tainted `key=value:effect`.
    pub fn tainted(mut self, key: &str, value: &str, effect: &str) -> NodePool {
        self.taints.push(Taint {
            key: key.to_string(),
            value: Some(value.to_string()).filter(|v| !v.is_empty()),
            effect: effect.to_string(),
            time_added: None,
        });
        self
    }

    /// The node the pool would make next, as the scheduler sees it.
    fn node(&self, name: &str) -> Node {
        let mut labels = self.labels.clone();
        labels.insert(POOL_LABEL.to_string(), self.name.clone());
        labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": self.taints},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                "conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("a node from a pool")
    }
}

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct AutoscalerOptions {
    /// The pools, in the order pods are matched against them.
    pub pools: Vec<NodePool>,
    /// How long a pod stays unschedulable before a node is made for it (Karpenter takes about a
    /// minute to launch one; tests use less).
    pub delay: Duration,
}

/// What the stand-in has done and may do, shared with its handle.
#[derive(Debug, Default)]
struct State {
    /// Pools whose capacity is unavailable.
    unavailable: Vec<String>,
    /// Nodes made, in order.
    launched: Vec<String>,
    /// Launches refused for lack of capacity, per pool.
    refused: BTreeMap<String, usize>,
    /// Nodes made per pool (for the next one's name).
    made: HashMap<String, usize>,
    /// When each pool last made a node, or last was refused one.
    last_launch: HashMap<String, Instant>,
}

/// The running stand-in; dropping it stops it.
pub struct Autoscaler {
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<State>>,
}

impl Drop for Autoscaler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Autoscaler {
    /// Makes the capacity of `pool` available or not: while it is not, pods waiting for it stay
    /// pending, and each attempt that would have made a node (one per `delay`) counts as refused.
    pub fn set_capacity_available(&self, pool: &str, available: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.unavailable.retain(|p| p != pool);
        if !available {
            state.unavailable.push(pool.to_string());
        }
    }

    /// The nodes made so far, in order.
    pub fn launched(&self) -> Vec<String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).launched.clone()
    }

    /// Launches refused so far for lack of capacity in `pool`.
    pub fn refused(&self, pool: &str) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).refused.get(pool).copied().unwrap_or(0)
    }
}

/// Starts the stand-in against the API server `client` talks to.
pub fn spawn(client: kube::Client, options: AutoscalerOptions) -> Autoscaler {
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = scale_up(&client, &options, &shared).await {
                tracing::debug!(error = %e, "fake autoscaler: retrying next tick");
            }
        }
    });
    Autoscaler { task, state }
}

/// One tick: a node for each pool some pod has waited for long enough.
async fn scale_up(client: &kube::Client, options: &AutoscalerOptions, state: &Mutex<State>) -> Result<(), kube::Error> {
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let now = k8s_openapi::jiff::Timestamp::now();
    let waited = |p: &Pod| {
        unschedulable_since(p).is_some_and(|since| {
            now.duration_since(since).unsigned_abs() >= options.delay
                && p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
                && p.metadata.deletion_timestamp.is_none()
        })
    };
    let mut wanted: Vec<&NodePool> = Vec::new();
    for pod in pods.iter().filter(|p| waited(p)) {
        let pool = options.pools.iter().find(|pool| fits(pod, &pool.node(&format!("{}-next", pool.name))));
        if let Some(pool) = pool
            && !wanted.iter().any(|w| w.name == pool.name)
        {
            wanted.push(pool);
        }
    }
    for pool in wanted {
        let name = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if s.last_launch.get(&pool.name).is_some_and(|at| at.elapsed() < options.delay) {
                continue;
            }
            if s.unavailable.contains(&pool.name) {
                *s.refused.entry(pool.name.clone()).or_insert(0) += 1;
                s.last_launch.insert(pool.name.clone(), Instant::now());
                continue;
            }
            let of_pool = |n: &Node| n.metadata.labels.as_ref().and_then(|l| l.get(POOL_LABEL)) == Some(&pool.name);
            if nodes.iter().filter(|n| of_pool(n)).count() >= pool.max_nodes {
                continue;
            }
            s.last_launch.insert(pool.name.clone(), Instant::now());
            let made = s.made.entry(pool.name.clone()).or_insert(0);
            *made += 1;
            format!("{}-{made}", pool.name)
        };
        launch(client, pool, &name).await?;
        state.lock().unwrap_or_else(|e| e.into_inner()).launched.push(name);
    }
    Ok(())
}

/// Creates the node, then reports it Ready, as a kubelet registering it does.
async fn launch(client: &kube::Client, pool: &NodePool, name: &str) -> Result<(), kube::Error> {
    let api = Api::<Node>::all(client.clone());
    let node = pool.node(name);
    api.create(&PostParams::default(), &node).await?;
    let status = json!({"status": node.status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}
