//! The counting index: how many pods of each workload (and revision) sit in each group or zone, kept
//! up to date event by event (linkerd policy-controller style: `apply_*` / `delete_*` / `reset`).
//!
//! Each event costs O(1) (plus the registered zone scopes); nothing on the admission path rescans the
//! cluster. Pods are stored lean — their key, workload, revision, place and requests, not whole objects.
//! A bound pod's group is read from its node's *current* labels at query time, so relabelling a node
//! needs no recount; a pending pod's group comes from the labels its own selector implies.
//!
//! The index also keeps every node's `requested` and `pod_count` in step with the pods bound to it, so
//! that `crate::fit` checks on [`CountIndex::nodes`] see the truth.
//!
//! Nothing outlives its users: a node slot goes when its node is deleted and no pod names it any more,
//! a pending pod's label set, a revision and a workload when their last pod goes, a zone scope when its
//! balancer unregisters it ([`CountIndex::remove_zone_scope`]). Ids are reused, so the tables are as
//! large as the cluster is now, however long it churns (spot nodes come and go by the thousand). At most
//! [`MAX_ZONE_SCOPES`] scopes are registered at once: each costs a selector check per pod event.

use crate::Labels;
use crate::group::{NodeGroup, group_of_labels};
use crate::interned::Interned;
use crate::model::{Node, Pod, PodKey, Snapshot, WorkloadRef};
use crate::resources::Resources;
use crate::selector::LabelSelector;
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a counted pod is: on a node (by id) or pending with an implied label set (by id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Place {
    Node(u32),
    Pending(u32),
}

#[derive(Clone, Debug)]
struct PodEntry {
    /// Workload id and revision id, when the pod counts.
    counted: Option<(u32, Option<u32>)>,
    place: Option<Place>,
    /// Requests held on `place`'s node (bound, non-terminal pods).
    held: Option<(u32, Resources)>,
    /// Zone scopes this pod counts in.
    scopes: Vec<u16>,
}

/// Pods of one workload: per revision, per place.
#[derive(Clone, Debug, Default)]
struct WorkloadCounts {
    by_revision: HashMap<Option<u32>, RevisionPlaces>,
}

/// The counted pods of one revision of a workload: how many at each place, and in all.
#[derive(Clone, Debug, Default)]
struct RevisionPlaces {
    places: HashMap<Place, u32>,
    pods: u32,
}

/// The scope of a zone balancer: single-replica workloads' pods in one namespace, chosen by pod labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneScope {
    pub namespace: String,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default = "default_topology_key")]
    pub topology_key: String,
}

fn default_topology_key() -> String {
    crate::ZONE_LABEL.to_string()
}

impl ZoneScope {
    pub fn covers(&self, pod: &Pod) -> bool {
        pod.counts() && pod.namespace == self.namespace && self.selector.matches(&pod.labels)
    }
}

#[derive(Clone, Debug)]
struct ScopeState {
    tag: u32,
    scope: ZoneScope,
    zones: BTreeMap<String, u32>,
    /// Bound pods per node, so that a node's zone change moves its pods.
    per_node: HashMap<u32, u32>,
    /// Live node ids per zone, by this scope's topology key.
    zone_nodes: BTreeMap<String, Vec<u32>>,
}

/// Identifies a registered zone scope. An id outlives its scope harmlessly: once the scope is removed,
/// the index answers `None` for it, also after its slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScopeId {
    slot: u16,
    /// Which registration of the slot this is.
    tag: u32,
}

/// Most zone scopes registered at once (one per ZoneBalancer in use).
pub const MAX_ZONE_SCOPES: usize = 1_024;

/// A zone scope could not be registered: [`MAX_ZONE_SCOPES`] are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_ZONE_SCOPES} zone scopes are registered already (one per ZoneBalancer in use); this one is not counted")]
pub struct TooManyScopes;

/// Pods per workload, revision and place, plus zone-scope counts and node totals.
#[derive(Clone, Debug, Default)]
pub struct CountIndex {
    node_ids: HashMap<String, u32>,
    nodes: Vec<Node>,
    /// Whether `nodes[id]` currently exists.
    node_live: Vec<bool>,
    /// Pods placed on `nodes[id]`: a deleted node's slot is freed when none are left.
    node_users: Vec<u32>,
    free_nodes: Vec<u32>,
    /// Implied node labels of pending pods.
    label_sets: Interned<Labels>,
    /// Workload ids; `workloads[id]` holds the counts of workload `id`.
    workload_ids: Interned<WorkloadRef>,
    workloads: Vec<WorkloadCounts>,
    revisions: Interned<Box<str>>,
    pods: HashMap<PodKey, PodEntry>,
    scopes: Vec<Option<ScopeState>>,
    /// The tag of the next scope registered.
    next_scope_tag: u32,
    /// Bumped whenever a node's labels or existence change (invalidates cached group membership).
    node_generation: u64,
}

impl CountIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of everything in `snapshot`.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut index = CountIndex::new();
        index.reset(snapshot);
        index
    }

    /// Rebuild from a full list (a relist after a watch restart); zone scopes stay registered.
    pub fn reset(&mut self, snapshot: &Snapshot) {
        let scopes = std::mem::take(&mut self.scopes);
        let next_scope_tag = self.next_scope_tag;
        *self = CountIndex { next_scope_tag, ..CountIndex::default() };
        self.node_ids.reserve(snapshot.nodes.len());
        self.pods.reserve(snapshot.pods.len());
        // The same ids, emptied: nodes and pods count into them again below.
        self.scopes = scopes
            .into_iter()
            .map(|s| {
                s.map(|s| ScopeState {
                    zones: BTreeMap::new(),
                    per_node: HashMap::default(),
                    zone_nodes: BTreeMap::new(),
                    ..s
                })
            })
            .collect();
        for node in &snapshot.nodes {
            self.apply_node(node);
        }
        for pod in &snapshot.pods {
            self.apply_pod(pod);
        }
    }

    /// Register a zone scope. The index keeps no pod labels, so it cannot tell which pods already
    /// indexed the scope covers: `covered` names them (the caller, who has the pods, checks
    /// [`ZoneScope::covers`]); pods applied from now on are checked here.
    pub fn add_zone_scope<'a>(
        &mut self,
        scope: ZoneScope,
        covered: impl IntoIterator<Item = &'a PodKey>,
    ) -> Result<ScopeId, TooManyScopes> {
        let slot = match self.scopes.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.scopes.len() < MAX_ZONE_SCOPES => {
                self.scopes.push(None);
                self.scopes.len() - 1
            }
            None => return Err(TooManyScopes),
        };
        let mut zone_nodes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, n) in self.nodes_with_ids() {
            if let Some(z) = n.labels.get(&scope.topology_key) {
                zone_nodes.entry(z.clone()).or_default().push(i as u32);
            }
        }
        let tag = self.next_scope_tag;
        self.next_scope_tag = self.next_scope_tag.wrapping_add(1);
        self.scopes[slot] =
            Some(ScopeState { tag, scope, zones: BTreeMap::new(), per_node: HashMap::default(), zone_nodes });
        let slot = slot as u16;
        for key in covered {
            let Some(entry) = self.pods.get_mut(key) else { continue };
            if entry.scopes.contains(&slot) {
                continue;
            }
            entry.scopes.push(slot);
            let place = entry.place;
            self.bump_scope(slot, place, true);
        }
        Ok(ScopeId { slot, tag })
    }

    /// Unregister a zone scope (its balancer is gone or changed its scope): its counts go, its id
    /// answers `None` from now on, and its slot is free for another. Costs one pass over the pods.
    pub fn remove_zone_scope(&mut self, id: ScopeId) {
        if self.scope_state(id).is_none() {
            return;
        }
        self.scopes[id.slot as usize] = None;
        for entry in self.pods.values_mut() {
            entry.scopes.retain(|&s| s != id.slot);
        }
    }

    /// Zone scopes registered.
    pub fn zone_scope_count(&self) -> usize {
        self.scopes.iter().flatten().count()
    }

    fn scope_state(&self, id: ScopeId) -> Option<&ScopeState> {
        self.scopes.get(id.slot as usize)?.as_ref().filter(|s| s.tag == id.tag)
    }

    /// Insert or update a node. Its requested totals stay the index's own (from pods).
    pub fn apply_node(&mut self, node: &Node) {
        match self.node_ids.get(&node.name) {
            Some(&id) => {
                let i = id as usize;
                let (requested, pod_count) = (self.nodes[i].requested, self.nodes[i].pod_count);
                let was_live = self.node_live[i];
                let old_labels = std::mem::replace(&mut self.nodes[i], node.clone()).labels;
                self.nodes[i].requested = requested;
                self.nodes[i].pod_count = pod_count;
                self.node_live[i] = true;
                if !was_live || old_labels != node.labels {
                    self.node_generation += 1;
                }
                let old = if was_live { Some(&old_labels) } else { None };
                self.move_scope_counts(id, old, Some(&node.labels.clone()));
                self.move_zone_node(id, old, Some(&node.labels.clone()));
            }
            None => {
                let id = self.node_slot(&node.name);
                let mut n = node.clone();
                n.requested = Resources::ZERO;
                n.pod_count = 0;
                self.nodes[id as usize] = n;
                self.node_live[id as usize] = true;
                self.node_generation += 1;
                self.move_zone_node(id, None, Some(&node.labels.clone()));
            }
        }
    }

    /// Remove a node. Pods still bound to it count in no group until it comes back.
    pub fn delete_node(&mut self, name: &str) {
        if let Some(&id) = self.node_ids.get(name)
            && self.node_live[id as usize]
        {
            let labels = self.nodes[id as usize].labels.clone();
            self.move_scope_counts(id, Some(&labels), None);
            self.move_zone_node(id, Some(&labels), None);
            self.node_live[id as usize] = false;
            self.node_generation += 1;
            self.free_node_if_unused(id);
        }
    }

    /// Frees the slot of a deleted node that no pod names any more.
    fn free_node_if_unused(&mut self, id: u32) {
        let i = id as usize;
        if self.node_live[i] || self.node_users[i] > 0 {
            return;
        }
        let name = std::mem::take(&mut self.nodes[i].name);
        self.node_ids.remove(&name);
        self.nodes[i].labels = Labels::new();
        self.nodes[i].taints = Vec::new();
        self.free_nodes.push(id);
    }

    fn move_zone_node(&mut self, node: u32, old: Option<&Labels>, new: Option<&Labels>) {
        for s in self.scopes.iter_mut().flatten() {
            let key = &s.scope.topology_key;
            let (from, to) = (old.and_then(|l| l.get(key)), new.and_then(|l| l.get(key)));
            if from == to {
                continue;
            }
            if let Some(z) = from
                && let Some(ids) = s.zone_nodes.get_mut(z)
            {
                ids.retain(|&i| i != node);
                if ids.is_empty() {
                    s.zone_nodes.remove(z);
                }
            }
            if let Some(z) = to {
                s.zone_nodes.entry(z.clone()).or_default().push(node);
            }
        }
    }

    /// Live nodes per zone of a scope's topology key (none for a scope no longer registered).
    pub fn zone_nodes(&self, scope: ScopeId) -> impl Iterator<Item = (&str, impl Iterator<Item = &Node> + Clone)> {
        self.scope_state(scope)
            .into_iter()
            .flat_map(|s| s.zone_nodes.iter())
            .map(|(z, ids)| (z.as_str(), ids.iter().map(|&i| &self.nodes[i as usize])))
    }

    fn move_scope_counts(&mut self, node: u32, old: Option<&Labels>, new: Option<&Labels>) {
        for s in self.scopes.iter_mut().flatten() {
            let n = s.per_node.get(&node).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let key = &s.scope.topology_key;
            let (from, to) = (old.and_then(|l| l.get(key)), new.and_then(|l| l.get(key)));
            if from == to {
                continue;
            }
            if let Some(z) = from {
                decrement(&mut s.zones, z, n);
            }
            if let Some(z) = to {
                *s.zones.entry(z.clone()).or_insert(0) += n;
            }
        }
    }

    /// Insert or update a pod; applying the same pod twice changes nothing.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let key = pod.key();
        if let Some(old) = self.pods.remove(&key) {
            self.unapply(old);
        }
        // A pod may arrive before its node (watches are not ordered across kinds): the node gets a
        // placeholder slot, and the pod's counts follow once the node is applied.
        let node_id = pod.node_name.as_ref().map(|n| self.node_slot(n));
        let place = match node_id {
            Some(id) => {
                self.node_users[id as usize] += 1;
                Some(Place::Node(id))
            }
            None => Some(Place::Pending(self.label_sets.acquire(&pod.implied_node_labels()))),
        };
        let held = match (node_id, pod.holds_resources()) {
            (Some(id), true) => {
                let n = &mut self.nodes[id as usize];
                n.requested += pod.requests;
                n.pod_count += 1;
                Some((id, pod.requests))
            }
            _ => None,
        };
        let counted = match (&pod.workload, pod.counts(), place) {
            (Some(w), true, Some(place)) => {
                let wid = self.intern_workload(w);
                let revision = pod.revision.as_deref().map(|r| self.revisions.acquire(&Box::from(r)));
                let counted = self.workloads[wid as usize].by_revision.entry(revision).or_default();
                *counted.places.entry(place).or_insert(0) += 1;
                counted.pods += 1;
                Some((wid, revision))
            }
            _ => None,
        };
        let scopes: Vec<u16> = (0..self.scopes.len() as u16)
            .filter(|&i| self.scopes[i as usize].as_ref().is_some_and(|s| s.scope.covers(pod)))
            .collect();
        for &i in &scopes {
            self.bump_scope(i, place, true);
        }
        self.pods.insert(key, PodEntry { counted, place, held, scopes });
    }

    /// Remove a pod; unknown pods are ignored.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let key = PodKey { namespace: namespace.to_string(), name: name.to_string() };
        if let Some(entry) = self.pods.remove(&key) {
            self.unapply(entry);
        }
    }

    fn unapply(&mut self, entry: PodEntry) {
        if let Some((id, req)) = entry.held {
            let n = &mut self.nodes[id as usize];
            n.requested = n.requested.saturating_sub(req);
            n.pod_count = n.pod_count.saturating_sub(1);
        }
        if let (Some((wid, revision)), Some(place)) = (&entry.counted, entry.place) {
            let w = &mut self.workloads[*wid as usize];
            if let Some(counted) = w.by_revision.get_mut(revision) {
                if let Some(c) = counted.places.get_mut(&place) {
                    *c -= 1;
                    counted.pods -= 1;
                    if *c == 0 {
                        counted.places.remove(&place);
                    }
                }
                if counted.places.is_empty() {
                    w.by_revision.remove(revision);
                }
            }
        }
        for &i in &entry.scopes {
            self.bump_scope(i, entry.place, false);
        }
        self.release(&entry);
    }

    /// Lets go of what `entry` used: its node slot, label set, workload and revision ids.
    fn release(&mut self, entry: &PodEntry) {
        match entry.place {
            Some(Place::Node(id)) => {
                self.node_users[id as usize] -= 1;
                self.free_node_if_unused(id);
            }
            Some(Place::Pending(id)) => {
                self.label_sets.release(id);
            }
            None => {}
        }
        if let Some((wid, revision)) = entry.counted {
            if let Some(r) = revision {
                self.revisions.release(r);
            }
            if self.workload_ids.release(wid) {
                self.workloads[wid as usize] = WorkloadCounts::default();
            }
        }
    }

    /// Count (`add`) or uncount one pod at `place` in zone scope `i`.
    fn bump_scope(&mut self, i: u16, place: Option<Place>, add: bool) {
        let Some(s) = &self.scopes[i as usize] else { return };
        let key = &s.scope.topology_key;
        let zone = match place {
            Some(Place::Node(id)) if self.node_live[id as usize] => self.nodes[id as usize].labels.get(key).cloned(),
            Some(Place::Pending(l)) => self.label_sets.get(l).and_then(|labels| labels.get(key)).cloned(),
            _ => None,
        };
        let Some(s) = &mut self.scopes[i as usize] else { return };
        if let Some(Place::Node(id)) = place {
            let c = s.per_node.entry(id).or_insert(0);
            *c = if add { *c + 1 } else { c.saturating_sub(1) };
            if *c == 0 {
                s.per_node.remove(&id);
            }
        }
        match (zone, add) {
            (Some(z), true) => *s.zones.entry(z).or_insert(0) += 1,
            (Some(z), false) => decrement(&mut s.zones, &z, 1),
            (None, _) => {}
        }
    }

    fn node_slot(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.node_ids.get(name) {
            return id;
        }
        let placeholder = Node {
            name: name.to_string(),
            labels: Labels::new(),
            taints: Vec::new(),
            allocatable: Resources::ZERO,
            max_pods: 0,
            requested: Resources::ZERO,
            pod_count: 0,
            usage: None,
            ready: false,
            unschedulable: true,
        };
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id as usize] = placeholder;
                id
            }
            None => {
                self.nodes.push(placeholder);
                self.node_live.push(false);
                self.node_users.push(0);
                (self.nodes.len() - 1) as u32
            }
        };
        self.node_ids.insert(name.to_string(), id);
        id
    }

    /// The id of `w`, one more of its pods counted.
    fn intern_workload(&mut self, w: &WorkloadRef) -> u32 {
        let id = self.workload_ids.acquire(w);
        if id as usize == self.workloads.len() {
            self.workloads.push(WorkloadCounts::default());
        }
        id
    }

    fn place_labels(&self, place: Place) -> Option<&Labels> {
        match place {
            Place::Node(id) => self.node_live[id as usize].then(|| &self.nodes[id as usize].labels),
            Place::Pending(id) => self.label_sets.get(id),
        }
    }

    /// Counted pods of `workload` per group (first matching group; pods in no group are left out).
    /// `revision: None` counts every revision.
    pub fn group_counts(&self, workload: &WorkloadRef, revision: Option<&str>, groups: &[NodeGroup]) -> Vec<u32> {
        let mut out = vec![0; groups.len()];
        for (place, n) in self.places(workload, revision) {
            if let Some(g) = self.place_labels(place).and_then(|l| group_of_labels(groups, l)) {
                out[g] += n;
            }
        }
        out
    }

    /// Like [`Self::group_counts`], with bound pods classified by a precomputed
    /// [`Self::group_membership`] of the same `groups` (no selector is evaluated per node).
    pub fn group_counts_with(
        &self,
        workload: &WorkloadRef,
        revision: Option<&str>,
        groups: &[NodeGroup],
        membership: &[Option<u16>],
    ) -> Vec<u32> {
        let mut out = vec![0; groups.len()];
        for (place, n) in self.places(workload, revision) {
            let g = match place {
                Place::Node(id) => membership.get(id as usize).copied().flatten().map(usize::from),
                Place::Pending(id) => self.label_sets.get(id).and_then(|l| group_of_labels(groups, l)),
            };
            if let Some(g) = g {
                out[g] += n;
            }
        }
        out
    }

    /// Places (and pod counts) of one workload; `revision: None` means every revision.
    fn places<'a>(&'a self, workload: &WorkloadRef, revision: Option<&str>) -> impl Iterator<Item = (Place, u32)> + 'a {
        let wid = self.workload_ids.id(workload);
        // `None`: every revision; `Some(None)`: a revision never seen, so nothing.
        let wanted: Option<Option<u32>> = revision.map(|r| self.revisions.id(r));
        wid.into_iter()
            .flat_map(move |w| self.workloads[w as usize].by_revision.iter())
            .filter(move |(r, _)| match wanted {
                None => true,
                Some(None) => false,
                Some(Some(want)) => **r == Some(want),
            })
            .flat_map(|(_, counted)| counted.places.iter().map(|(&p, &n)| (p, n)))
    }

    /// Counted pods of `workload` in all, wherever they are (in a group or not); `revision: None` counts
    /// every revision. O(revisions): an upper bound of the sum of [`Self::group_counts`], for sizing.
    pub fn workload_pods(&self, workload: &WorkloadRef, revision: Option<&str>) -> u32 {
        let Some(wid) = self.workload_ids.id(workload) else { return 0 };
        let revisions = &self.workloads[wid as usize].by_revision;
        match revision {
            None => revisions.values().map(|c| c.pods).sum(),
            Some(r) => self.revisions.id(r).and_then(|r| revisions.get(&Some(r))).map_or(0, |c| c.pods),
        }
    }

    /// The group (first match) of every node id, for [`Self::group_counts_with`]; `None` for nodes in
    /// no group or not live. Valid while [`Self::node_generation`] is unchanged.
    pub fn group_membership(&self, groups: &[NodeGroup]) -> Vec<Option<u16>> {
        self.nodes
            .iter()
            .zip(&self.node_live)
            .map(|(n, live)| if *live { group_of_labels(groups, &n.labels).map(|g| g as u16) } else { None })
            .collect()
    }

    /// Changes whenever a node is added, removed or relabelled.
    pub fn node_generation(&self) -> u64 {
        self.node_generation
    }

    /// Live nodes with their ids (the positions used by [`Self::group_membership`]).
    pub fn nodes_with_ids(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes.iter().zip(&self.node_live).enumerate().filter(|(_, (_, live))| **live).map(|(i, (n, _))| (i, n))
    }

    /// Pods per zone in a scope; `None` once the scope is removed.
    pub fn zone_counts(&self, scope: ScopeId) -> Option<&BTreeMap<String, u32>> {
        self.scope_state(scope).map(|s| &s.zones)
    }

    /// The scope registered under `id`; `None` once it is removed.
    pub fn zone_scope(&self, id: ScopeId) -> Option<&ZoneScope> {
        self.scope_state(id).map(|s| &s.scope)
    }

    /// What the index holds besides pods and live nodes, for tests and metrics: node slots (live or
    /// not), pending label sets, workloads, revisions.
    pub fn interned_counts(&self) -> [usize; 4] {
        [self.node_ids.len(), self.label_sets.len(), self.workload_ids.len(), self.revisions.len()]
    }

    /// Live nodes, with `requested` and `pod_count` kept from the pods bound to them.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + Clone {
        self.nodes.iter().zip(&self.node_live).filter(|(_, live)| **live).map(|(n, _)| n)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.node_ids.get(name).filter(|&&id| self.node_live[id as usize]).map(|&id| &self.nodes[id as usize])
    }

    /// Pods indexed.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn contains_pod(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }
}

fn decrement(zones: &mut BTreeMap<String, u32>, zone: &str, n: u32) {
    if let Some(c) = zones.get_mut(zone) {
        *c = c.saturating_sub(n);
        if *c == 0 {
            zones.remove(zone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeBuilder, PodBuilder, PodPhase};

    fn groups() -> Vec<NodeGroup> {
        vec![NodeGroup::label("type", "ondemand"), NodeGroup::label("type", "spot")]
    }

    fn snapshot() -> Snapshot {
        Snapshot::new(
            vec![
                NodeBuilder::new("od").label("type", "ondemand").zone("a").build(),
                NodeBuilder::new("sp").label("type", "spot").zone("b").build(),
            ],
            vec![
                PodBuilder::new("ns", "w-1").deployment("w").revision("r1").on_node("od").build(),
                PodBuilder::new("ns", "w-2").deployment("w").revision("r1").on_node("sp").build(),
                PodBuilder::new("ns", "w-3").deployment("w").revision("r2").on_node("sp").build(),
                PodBuilder::new("ns", "w-4")
                    .deployment("w")
                    .revision("r1")
                    .pending()
                    .node_selector("type", "spot")
                    .build(),
                PodBuilder::new("ns", "w-5")
                    .deployment("w")
                    .revision("r1")
                    .on_node("od")
                    .phase(PodPhase::Succeeded)
                    .build(),
                PodBuilder::new("ns", "w-6").deployment("w").revision("r1").on_node("od").terminating().build(),
                PodBuilder::new("other", "w-1").deployment("w").revision("r1").on_node("od").build(),
            ],
            vec![],
            vec![],
        )
    }

    #[test]
    fn counts_by_group_and_revision() {
        let idx = CountIndex::from_snapshot(&snapshot());
        let w = WorkloadRef::deployment("ns", "w");
        assert_eq!(idx.group_counts(&w, Some("r1"), &groups()), vec![1, 2], "terminal/terminating/other ns excluded");
        assert_eq!(idx.group_counts(&w, Some("r2"), &groups()), vec![0, 1]);
        assert_eq!(idx.group_counts(&w, None, &groups()), vec![1, 3]);
        assert_eq!(idx.node("od").unwrap().pod_count, 3, "terminating pods still hold their requests");
    }

    #[test]
    fn events_are_idempotent_and_moves_are_tracked() {
        let mut idx = CountIndex::from_snapshot(&snapshot());
        let w = WorkloadRef::deployment("ns", "w");
        let pod = PodBuilder::new("ns", "w-1").deployment("w").revision("r1").on_node("od").build();
        idx.apply_pod(&pod);
        idx.apply_pod(&pod);
        assert_eq!(idx.group_counts(&w, Some("r1"), &groups()), vec![1, 2]);
        idx.apply_pod(&PodBuilder::new("ns", "w-4").deployment("w").revision("r1").on_node("od").build());
        assert_eq!(idx.group_counts(&w, Some("r1"), &groups()), vec![2, 1], "pending pod bound");
        idx.delete_pod("ns", "w-1");
        idx.delete_pod("ns", "nope");
        assert_eq!(idx.group_counts(&w, Some("r1"), &groups()), vec![1, 1]);
        // Relabel the spot node: its pods move groups with no recount.
        idx.apply_node(&NodeBuilder::new("sp").label("type", "ondemand").zone("b").build());
        assert_eq!(idx.group_counts(&w, Some("r1"), &groups()), vec![2, 0]);
        idx.delete_node("sp");
        assert_eq!(idx.group_counts(&w, Some("r1"), &groups()), vec![1, 0]);
    }

    #[test]
    fn zone_scopes_follow_pods_and_node_relabels() {
        let mut idx = CountIndex::new();
        let scope = idx.add_zone_scope(tools_scope(), []).unwrap();
        idx.reset(&snapshot());
        idx.apply_pod(&PodBuilder::new("tools", "g").deployment("g").label("tier", "tools").on_node("od").build());
        idx.apply_pod(&PodBuilder::new("tools", "r").deployment("r").label("tier", "tools").on_node("sp").build());
        idx.apply_pod(&PodBuilder::new("tools", "x").deployment("x").on_node("sp").build());
        idx.apply_pod(
            &PodBuilder::new("tools", "p")
                .deployment("p")
                .label("tier", "tools")
                .pending()
                .node_selector(crate::ZONE_LABEL, "c")
                .build(),
        );
        assert_eq!(zone_counts(&idx, scope), vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
        idx.apply_node(&NodeBuilder::new("sp").label("type", "spot").zone("a").build());
        assert_eq!(zone_counts(&idx, scope), vec![("a".into(), 2), ("c".into(), 1)]);
        idx.delete_pod("tools", "g");
        assert_eq!(zone_counts(&idx, scope), vec![("a".into(), 1), ("c".into(), 1)]);
    }

    fn tools_scope() -> ZoneScope {
        ZoneScope {
            namespace: "tools".into(),
            selector: LabelSelector::from_pairs([("tier", "tools")]),
            topology_key: crate::ZONE_LABEL.into(),
        }
    }

    fn zone_counts(idx: &CountIndex, scope: ScopeId) -> Vec<(String, u32)> {
        idx.zone_counts(scope).expect("registered").iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    #[test]
    fn a_scope_added_late_counts_the_pods_it_is_told_of_and_a_removed_one_answers_none() {
        let mut idx = CountIndex::from_snapshot(&snapshot());
        let tools = PodBuilder::new("tools", "g").deployment("g").label("tier", "tools").on_node("od").build();
        idx.apply_pod(&tools);
        let first = idx.add_zone_scope(tools_scope(), [&tools.key()]).unwrap();
        assert_eq!(zone_counts(&idx, first), vec![("a".into(), 1)]);
        idx.apply_pod(&PodBuilder::new("tools", "r").deployment("r").label("tier", "tools").on_node("sp").build());
        assert_eq!(zone_counts(&idx, first), vec![("a".into(), 1), ("b".into(), 1)]);

        idx.remove_zone_scope(first);
        assert_eq!((idx.zone_counts(first), idx.zone_scope(first), idx.zone_scope_count()), (None, None, 0));
        assert_eq!(idx.zone_nodes(first).count(), 0);
        let all = ZoneScope { selector: LabelSelector::default(), ..tools_scope() };
        let second = idx.add_zone_scope(all, [&tools.key()]).unwrap();
        assert_eq!(idx.zone_counts(first), None, "the old id stays dead when its slot is reused");
        assert_eq!(zone_counts(&idx, second), vec![("a".into(), 1)], "only the pods named are counted at first");
        idx.delete_pod("tools", "r");
        idx.delete_pod("tools", "g");
        assert_eq!(zone_counts(&idx, second), vec![], "pods of a removed scope do not count into its successor");
        idx.remove_zone_scope(first);
        assert_eq!(idx.zone_scope_count(), 1, "removing a dead id changes nothing");
    }

    #[test]
    fn zone_scopes_are_bounded_and_a_removed_one_frees_its_place() {
        let mut idx = CountIndex::new();
        let ids: Vec<ScopeId> = (0..MAX_ZONE_SCOPES).map(|_| idx.add_zone_scope(tools_scope(), []).unwrap()).collect();
        assert_eq!(idx.add_zone_scope(tools_scope(), []), Err(TooManyScopes), "one past the limit");
        idx.remove_zone_scope(ids[7]);
        assert!(idx.add_zone_scope(tools_scope(), []).is_ok(), "at the limit again");
        assert_eq!(idx.zone_scope_count(), MAX_ZONE_SCOPES);
    }

    /// A cluster that churns (nodes, revisions, workloads and pending label sets come and go) leaves
    /// nothing behind: the index holds what an index built from the final state holds, and counts alike.
    #[test]
    fn churn_leaves_nothing_behind() {
        let mut idx = CountIndex::from_snapshot(&snapshot());
        let baseline = idx.interned_counts();
        let slots = idx.nodes.len();
        for i in 0..500 {
            let node = format!("spot-{i}");
            idx.apply_node(&NodeBuilder::new(&node).label("type", "spot").zone("b").build());
            let w = format!("batch-{i}");
            idx.apply_pod(
                &PodBuilder::new("ns", format!("{w}-a"))
                    .deployment(&w)
                    .revision(format!("h{i}"))
                    .on_node(&node)
                    .build(),
            );
            let pending =
                PodBuilder::new("ns", format!("{w}-b")).deployment(&w).pending().node_selector("slot", format!("s{i}"));
            idx.apply_pod(&pending.build());
            // A pod naming a node that never comes (a placeholder slot).
            idx.apply_pod(&PodBuilder::new("ns", format!("{w}-c")).on_node(format!("ghost-{i}")).build());
            idx.delete_node(&node);
            idx.delete_pod("ns", &format!("{w}-a"));
            idx.delete_pod("ns", &format!("{w}-b"));
            idx.delete_pod("ns", &format!("{w}-c"));
        }
        assert_eq!(idx.interned_counts(), baseline, "node slots, label sets, workloads, revisions");
        assert!(
            idx.nodes.len() <= slots + 2,
            "{} node slots for {slots} nodes: freed slots are reused",
            idx.nodes.len()
        );
        let w = WorkloadRef::deployment("ns", "w");
        let rebuilt = CountIndex::from_snapshot(&snapshot());
        for revision in [None, Some("r1"), Some("r2")] {
            assert_eq!(idx.group_counts(&w, revision, &groups()), rebuilt.group_counts(&w, revision, &groups()));
        }
        assert_eq!(idx.nodes().cloned().collect::<Vec<_>>(), rebuilt.nodes().cloned().collect::<Vec<_>>());
    }
}
