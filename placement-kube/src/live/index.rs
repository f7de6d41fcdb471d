//! The live index: the cluster as the webhook and the operator need it, kept up to date watch event by
//! watch event.
//!
//! It owns a core [`CountIndex`] (pods per workload, revision and group; node totals; zone scopes) and
//! the lean core values behind it: nodes, pods, workloads, PDBs and usage. No Kubernetes object is kept:
//! each event is converted ([`crate::convert`]) and applied in O(1), and the converted pod is a few
//! hundred bytes instead of the tens of kilobytes of a full Pod with `managedFields`.
//!
//! Relists (a watch restart after `410 Gone`, or the first list) are handled the way kube's watcher
//! reports them: [`LiveIndex::begin_relist`] on `Init`, applies on `InitApply`, and
//! [`LiveIndex::end_relist`] on `InitDone`, which deletes whatever the relist did not mention. Between the
//! two the index keeps serving the old view updated by the new objects, never an empty one.

use super::lean::{Interner, LeanPod};
use crate::convert::{self, ConvertError, ReplicaSetOwners};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use placement_core::index::{CountIndex, ScopeId, TooManyScopes, ZoneScope};
use placement_core::ledger::{Ledger, RESERVATION_ANNOTATION, is_reservation_id};
use placement_core::model::{Node, Pdb, Pod, PodKey, Snapshot, Workload, WorkloadRef};
use placement_core::resources::Resources;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The kinds the live index watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Pod,
    ReplicaSet,
    Deployment,
    StatefulSet,
    PodDisruptionBudget,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Node, Kind::Pod, Kind::ReplicaSet, Kind::Deployment, Kind::StatefulSet, Kind::PodDisruptionBudget];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Namespace and name (namespace empty for cluster-scoped kinds).
type Key = (String, String);

/// How many conversion errors are kept for inspection (all are counted).
const KEPT_ERRORS: usize = 64;

/// Counts and lean values of the watched kinds.
#[derive(Default)]
pub struct LiveIndex {
    counts: CountIndex,
    /// Pods by `namespace/name`, with repeated values shared.
    pods: FxHashMap<Box<str>, LeanPod>,
    interner: Interner,
    deletes_since_sweep: u32,
    owners: ReplicaSetOwners,
    workloads: BTreeMap<WorkloadRef, Workload>,
    workload_keys: FxHashMap<(Kind, Key), WorkloadRef>,
    pdbs: BTreeMap<Key, Pdb>,
    node_usage: FxHashMap<String, Resources>,
    pod_usage: FxHashMap<Box<str>, Resources>,
    /// Keys seen since `begin_relist`, per kind being relisted.
    relisting: FxHashMap<Kind, FxHashSet<Key>>,
    synced: FxHashSet<Kind>,
    errors: VecDeque<ConvertError>,
    error_count: u64,
    events: u64,
    relists: u64,
    /// In-flight admission decisions not yet seen as pods; a pod carrying the
    /// `placement.dev/reservation` annotation confirms its reservation when it is applied, under the
    /// same lock, so no pod is ever counted both as a reservation and as a pod.
    ledger: Ledger,
    /// How long a confirmed reservation id is remembered (so that a late copy is never counted).
    confirm_memory: ConfirmMemory,
}

/// Five minutes, whether the index is made with `new` or `default`.
struct ConfirmMemory(jiff::SignedDuration);

impl Default for ConfirmMemory {
    fn default() -> Self {
        ConfirmMemory(jiff::SignedDuration::from_mins(5))
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl LiveIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// ReplicaSet owners, to resolve the workload of a pod being admitted (not yet in the index).
    pub fn owners(&self) -> &ReplicaSetOwners {
        &self.owners
    }

    /// The reservations in flight.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The reservations, to add to (the webhook) or merge a peer's into (strict mode).
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// Both halves an admission decision reads, together.
    pub fn counts_and_ledger(&self) -> (&CountIndex, &Ledger) {
        (&self.counts, &self.ledger)
    }

    /// The core counting index (group and zone counts, node totals).
    pub fn counts(&self) -> &CountIndex {
        &self.counts
    }

    /// Registers a zone scope and counts the pods already indexed into it: one pass over the pods, the
    /// labels first, converting only the few of its namespace that match.
    pub fn add_zone_scope(&mut self, scope: ZoneScope) -> Result<ScopeId, TooManyScopes> {
        let prefix = format!("{}/", scope.namespace);
        let covered: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(k, p)| k.starts_with(&prefix) && scope.selector.matches(p.labels()))
            .filter_map(|(k, p)| {
                let (ns, name) = split_key(k);
                let pod = p.to_pod(&ns, &name);
                scope.covers(&pod).then(|| pod.key())
            })
            .collect();
        self.counts.add_zone_scope(scope, &covered)
    }

    /// Unregisters a zone scope ([`CountIndex::remove_zone_scope`]).
    pub fn remove_zone_scope(&mut self, id: ScopeId) {
        self.counts.remove_zone_scope(id);
    }

    /// Whether the first full list of `kind` has been applied.
    pub fn is_synced(&self, kind: Kind) -> bool {
        self.synced.contains(&kind)
    }

    /// Watch events applied so far.
    pub fn event_count(&self) -> u64 {
        self.events
    }

    /// Distinct shared values (labels, tolerations, names, ...) the pods refer to.
    pub fn interned_values(&self) -> usize {
        self.interner.len()
    }

    /// Lists started so far (the first list of each kind included).
    pub fn relist_count(&self) -> u64 {
        self.relists
    }

    /// Conversion errors so far (every one is counted; the last few are kept).
    pub fn error_count(&self) -> u64 {
        self.error_count
    }

    pub fn recent_errors(&self) -> impl Iterator<Item = &ConvertError> {
        self.errors.iter()
    }

    fn record_error(&mut self, e: ConvertError) {
        tracing::warn!(error = %e, "object skipped: it cannot be converted");
        self.error_count += 1;
        if self.errors.len() == KEPT_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(e);
    }

    fn seen(&mut self, kind: Kind, key: &Key) {
        self.events += 1;
        if let Some(set) = self.relisting.get_mut(&kind) {
            set.insert(key.clone());
        }
    }

    /// A relist of `kind` starts (kube watcher `Init`).
    pub fn begin_relist(&mut self, kind: Kind) {
        self.relists += 1;
        self.relisting.insert(kind, FxHashSet::default());
    }

    /// A relist of `kind` is complete (kube watcher `InitDone`): objects it did not mention are gone.
    pub fn end_relist(&mut self, kind: Kind) {
        let seen = self.relisting.remove(&kind).unwrap_or_default();
        let stale: Vec<Key> = match kind {
            Kind::Node => self.counts.nodes().map(|n| (String::new(), n.name.clone())).collect(),
            Kind::Pod => self.pods.keys().map(|k| split_key(k)).collect(),
            Kind::ReplicaSet => self.owners.keys().collect(),
            Kind::Deployment | Kind::StatefulSet => {
                self.workload_keys.keys().filter(|(k, _)| *k == kind).map(|(_, key)| key.clone()).collect()
            }
            Kind::PodDisruptionBudget => self.pdbs.keys().cloned().collect(),
        };
        for key in stale.into_iter().filter(|k| !seen.contains(k)) {
            self.delete(kind, &key.0, &key.1);
        }
        self.synced.insert(kind);
        self.interner.sweep();
    }

    /// Removes an object of `kind`.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) {
        self.events += 1;
        match kind {
            Kind::Node => {
                self.counts.delete_node(name);
                self.node_usage.remove(name);
            }
            Kind::Pod => {
                let key = pod_key(namespace, name);
                self.counts.delete_pod(namespace, name);
                self.pods.remove(key.as_str());
                self.pod_usage.remove(key.as_str());
                self.deletes_since_sweep += 1;
                if self.deletes_since_sweep >= SWEEP_EVERY {
                    self.deletes_since_sweep = 0;
                    self.interner.sweep();
                }
            }
            Kind::ReplicaSet => self.owners.remove(namespace, name),
            Kind::Deployment | Kind::StatefulSet => {
                if let Some(w) = self.workload_keys.remove(&(kind, (namespace.to_string(), name.to_string()))) {
                    self.workloads.remove(&w);
                }
            }
            Kind::PodDisruptionBudget => {
                self.pdbs.remove(&(namespace.to_string(), name.to_string()));
            }
        }
    }

    pub fn apply_node(&mut self, n: &core_v1::Node) {
        let key = key_of(&n.metadata);
        self.seen(Kind::Node, &key);
        match convert::node(n) {
            Ok(mut node) => {
                node.usage = self.node_usage.get(&node.name).copied();
                self.counts.apply_node(&node);
            }
            Err(e) => {
                self.record_error(e);
                self.counts.delete_node(&key.1);
            }
        }
    }

    pub fn apply_pod(&mut self, p: &core_v1::Pod) {
        let key = key_of(&p.metadata);
        self.seen(Kind::Pod, &key);
        match convert::pod(p, &self.owners) {
            Ok(mut pod) => {
                let pk = pod_key(&pod.namespace, &pod.name);
                pod.usage = self.pod_usage.get(pk.as_str()).copied();
                // Annotations other than the ones the core reads are dropped: they can be large.
                // A reservation value not of our shape is a tenant's, of any size: neither kept nor
                // remembered as a tombstone.
                pod.annotations
                    .retain(|k, v| is_read_annotation(k) && (k != RESERVATION_ANNOTATION || is_reservation_id(v)));
                if let Some(id) = pod.annotations.get(RESERVATION_ANNOTATION) {
                    let now = jiff::Timestamp::now();
                    self.ledger.confirm(id, now.saturating_add(self.confirm_memory.0).unwrap_or(now));
                }
                self.counts.apply_pod(&pod);
                self.pods.insert(pk.into_boxed_str(), LeanPod::new(pod, &mut self.interner));
            }
            Err(e) => {
                self.record_error(e);
                self.delete(Kind::Pod, &key.0, &key.1);
            }
        }
    }

    pub fn apply_replicaset(&mut self, rs: &ReplicaSet) {
        let key = key_of(&rs.metadata);
        self.seen(Kind::ReplicaSet, &key);
        self.owners.insert(rs);
    }

    pub fn apply_deployment(&mut self, d: &Deployment) {
        let key = key_of(&d.metadata);
        self.seen(Kind::Deployment, &key);
        let w = convert::deployment(d);
        self.apply_workload(Kind::Deployment, key, w);
    }

    pub fn apply_statefulset(&mut self, s: &StatefulSet) {
        let key = key_of(&s.metadata);
        self.seen(Kind::StatefulSet, &key);
        let w = convert::statefulset(s);
        self.apply_workload(Kind::StatefulSet, key, w);
    }

    fn apply_workload(&mut self, kind: Kind, key: Key, w: Result<Workload, ConvertError>) {
        match w {
            Ok(w) => {
                if let Some(old) = self.workload_keys.insert((kind, key), w.workload.clone()) {
                    self.workloads.remove(&old);
                }
                self.workloads.insert(w.workload.clone(), w);
            }
            Err(e) => {
                self.record_error(e);
                self.delete(kind, &key.0, &key.1);
            }
        }
    }

    pub fn apply_pdb(&mut self, p: &PodDisruptionBudget) {
        let key = key_of(&p.metadata);
        self.seen(Kind::PodDisruptionBudget, &key);
        match convert::pdb(p) {
            Ok(Some(pdb)) => {
                self.pdbs.insert(key, pdb);
            }
            Ok(None) => {
                self.pdbs.remove(&key);
            }
            Err(e) => {
                self.record_error(e);
                self.pdbs.remove(&key);
            }
        }
    }

    /// Replaces node usage with a full metrics.k8s.io list (metrics-server serves lists, not watches).
    pub fn set_node_metrics(&mut self, metrics: &[convert::NodeMetrics]) {
        self.node_usage.clear();
        for m in metrics {
            match convert::node_usage(m) {
                Ok(u) => {
                    self.node_usage.insert(m.metadata.name.clone().unwrap_or_default(), u);
                }
                Err(e) => self.record_error(e),
            }
        }
        let nodes: Vec<Node> = self.counts.nodes().cloned().collect();
        for mut node in nodes {
            let usage = self.node_usage.get(&node.name).copied();
            if node.usage != usage {
                node.usage = usage;
                self.counts.apply_node(&node);
            }
        }
    }

    /// Replaces pod usage with a full metrics.k8s.io list.
    pub fn set_pod_metrics(&mut self, metrics: &[convert::PodMetrics]) {
        self.pod_usage.clear();
        for m in metrics {
            match convert::pod_usage(m) {
                Ok(u) => {
                    let (namespace, name) = key_of(&m.metadata);
                    self.pod_usage.insert(pod_key(&namespace, &name).into_boxed_str(), u);
                }
                Err(e) => self.record_error(e),
            }
        }
        for (key, pod) in self.pods.iter_mut() {
            pod.usage = self.pod_usage.get(key).copied();
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.counts.node(name)
    }

    /// A pod, as a core value.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods.get(pod_key(namespace, name).as_str()).map(|p| p.to_pod(namespace, name))
    }

    /// Whether a pod is indexed (cheaper than [`Self::pod`]).
    pub fn contains_pod(&self, namespace: &str, name: &str) -> bool {
        self.pods.contains_key(pod_key(namespace, name).as_str())
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn node_count(&self) -> usize {
        self.counts.nodes().count()
    }

    pub fn workload(&self, w: &WorkloadRef) -> Option<&Workload> {
        self.workloads.get(w)
    }

    pub fn pdbs(&self) -> impl Iterator<Item = &Pdb> {
        self.pdbs.values()
    }

    /// A full core snapshot (for the rebalancer and for explanations), in a stable order.
    pub fn snapshot(&self) -> Snapshot {
        let nodes: Vec<Node> = self.counts.nodes().cloned().collect();
        let mut pods: Vec<Pod> = self
            .pods
            .iter()
            .map(|(k, p)| {
                let (ns, name) = split_key(k);
                p.to_pod(&ns, &name)
            })
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Snapshot::new(nodes, pods, self.pdbs.values().cloned().collect(), self.workloads.values().cloned().collect())
    }
}

/// How many pod deletions between sweeps of unused interned values.
const SWEEP_EVERY: u32 = 4096;

/// `namespace/name`: the key pods are stored under (a namespace never contains `/`).
fn pod_key(namespace: &str, name: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + name.len() + 1);
    k.push_str(namespace);
    k.push('/');
    k.push_str(name);
    k
}

fn split_key(key: &str) -> (String, String) {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    (ns.to_string(), name.to_string())
}

/// Annotations the core reads (pinning, mirror pods, reservations); the rest are not kept.
fn is_read_annotation(key: &str) -> bool {
    key == placement_core::model::PINNED_ANNOTATION
        || key == placement_core::model::MIRROR_ANNOTATION
        || key == RESERVATION_ANNOTATION
        || key.starts_with("placement.dev/")
}
