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

use crate::Labels;
use crate::group::{NodeGroup, group_of_labels};
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
    by_revision: HashMap<Option<u32>, HashMap<Place, u32>>,
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
    scope: ZoneScope,
    zones: BTreeMap<String, u32>,
    /// Bound pods per node, so that a node's zone change moves its pods.
    per_node: HashMap<u32, u32>,
    /// Live node ids per zone, by this scope's topology key.
    zone_nodes: BTreeMap<String, Vec<u32>>,
}

/// Identifies a registered zone scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScopeId(u16);

/// Pods per workload, revision and place, plus zone-scope counts and node totals.
#[derive(Clone, Debug, Default)]
pub struct CountIndex {
    node_ids: HashMap<String, u32>,
    nodes: Vec<Node>,
    /// Whether `nodes[id]` currently exists.
    node_live: Vec<bool>,
    label_set_ids: HashMap<Labels, u32>,
    label_sets: Vec<Labels>,
    workload_ids: HashMap<WorkloadRef, u32>,
    workloads: Vec<WorkloadCounts>,
    revision_ids: HashMap<Box<str>, u32>,
    pods: HashMap<PodKey, PodEntry>,
    scopes: Vec<ScopeState>,
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
        let scopes: Vec<ZoneScope> = self.scopes.drain(..).map(|s| s.scope).collect();
        *self = CountIndex { scopes: Vec::new(), ..CountIndex::default() };
        self.node_ids.reserve(snapshot.nodes.len());
        self.pods.reserve(snapshot.pods.len());
        for scope in scopes {
            self.scopes.push(ScopeState {
                scope,
                zones: BTreeMap::new(),
                per_node: HashMap::default(),
                zone_nodes: BTreeMap::new(),
            });
        }
        for node in &snapshot.nodes {
            self.apply_node(node);
        }
        for pod in &snapshot.pods {
            self.apply_pod(pod);
        }
    }

    /// Register a zone scope and count its pods (one pass over the pods already indexed is not
    /// possible without them, so register scopes before feeding pods, or call [`Self::reset`]).
    pub fn add_zone_scope(&mut self, scope: ZoneScope) -> ScopeId {
        let id = ScopeId(self.scopes.len() as u16);
        let mut zone_nodes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, n) in self.nodes_with_ids() {
            if let Some(z) = n.labels.get(&scope.topology_key) {
                zone_nodes.entry(z.clone()).or_default().push(i as u32);
            }
        }
        self.scopes.push(ScopeState { scope, zones: BTreeMap::new(), per_node: HashMap::default(), zone_nodes });
        id
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
        }
    }

    fn move_zone_node(&mut self, node: u32, old: Option<&Labels>, new: Option<&Labels>) {
        for s in &mut self.scopes {
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

    /// Live nodes per zone of a scope's topology key.
    pub fn zone_nodes(&self, scope: ScopeId) -> impl Iterator<Item = (&str, impl Iterator<Item = &Node> + Clone)> {
        self.scopes[scope.0 as usize]
            .zone_nodes
            .iter()
            .map(|(z, ids)| (z.as_str(), ids.iter().map(|&i| &self.nodes[i as usize])))
    }

    fn move_scope_counts(&mut self, node: u32, old: Option<&Labels>, new: Option<&Labels>) {
        for s in &mut self.scopes {
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
            Some(id) => Some(Place::Node(id)),
            None => {
                let labels = pod.implied_node_labels();
                Some(Place::Pending(self.intern_labels(labels)))
            }
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
                let revision = pod.revision.as_deref().map(|r| self.intern_revision(r));
                *self.workloads[wid as usize].by_revision.entry(revision).or_default().entry(place).or_insert(0) += 1;
                Some((wid, revision))
            }
            _ => None,
        };
        let scopes: Vec<u16> =
            (0..self.scopes.len() as u16).filter(|&i| self.scopes[i as usize].scope.covers(pod)).collect();
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
            if let Some(places) = w.by_revision.get_mut(revision) {
                if let Some(c) = places.get_mut(&place) {
                    *c -= 1;
                    if *c == 0 {
                        places.remove(&place);
                    }
                }
                if places.is_empty() {
                    w.by_revision.remove(revision);
                }
            }
        }
        for &i in &entry.scopes {
            self.bump_scope(i, entry.place, false);
        }
    }

    /// Count (`add`) or uncount one pod at `place` in zone scope `i`.
    fn bump_scope(&mut self, i: u16, place: Option<Place>, add: bool) {
        let key = &self.scopes[i as usize].scope.topology_key;
        let zone = match place {
            Some(Place::Node(id)) if self.node_live[id as usize] => self.nodes[id as usize].labels.get(key).cloned(),
            Some(Place::Pending(l)) => self.label_sets[l as usize].get(key).cloned(),
            _ => None,
        };
        let s = &mut self.scopes[i as usize];
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
        let id = self.nodes.len() as u32;
        self.node_ids.insert(name.to_string(), id);
        self.nodes.push(Node {
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
        });
        self.node_live.push(false);
        id
    }

    fn intern_labels(&mut self, labels: Labels) -> u32 {
        if let Some(&id) = self.label_set_ids.get(&labels) {
            return id;
        }
        let id = self.label_sets.len() as u32;
        self.label_sets.push(labels.clone());
        self.label_set_ids.insert(labels, id);
        id
    }

    fn intern_revision(&mut self, r: &str) -> u32 {
        if let Some(&id) = self.revision_ids.get(r) {
            return id;
        }
        let id = self.revision_ids.len() as u32;
        self.revision_ids.insert(Box::from(r), id);
        id
    }

    fn intern_workload(&mut self, w: &WorkloadRef) -> u32 {
        if let Some(&id) = self.workload_ids.get(w) {
            return id;
        }
        let id = self.workloads.len() as u32;
        self.workloads.push(WorkloadCounts::default());
        self.workload_ids.insert(w.clone(), id);
        id
    }

    fn place_labels(&self, place: Place) -> Option<&Labels> {
        match place {
            Place::Node(id) => self.node_live[id as usize].then(|| &self.nodes[id as usize].labels),
            Place::Pending(id) => Some(&self.label_sets[id as usize]),
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
                Place::Pending(id) => group_of_labels(groups, &self.label_sets[id as usize]),
            };
            if let Some(g) = g {
                out[g] += n;
            }
        }
        out
    }

    /// Places (and pod counts) of one workload; `revision: None` means every revision.
    fn places<'a>(&'a self, workload: &WorkloadRef, revision: Option<&str>) -> impl Iterator<Item = (Place, u32)> + 'a {
        let wid = self.workload_ids.get(workload).copied();
        // `None`: every revision; `Some(None)`: a revision never seen, so nothing.
        let wanted: Option<Option<u32>> = revision.map(|r| self.revision_ids.get(r).copied());
        wid.into_iter()
            .flat_map(move |w| self.workloads[w as usize].by_revision.iter())
            .filter(move |(r, _)| match wanted {
                None => true,
                Some(None) => false,
                Some(Some(want)) => **r == Some(want),
            })
            .flat_map(|(_, places)| places.iter().map(|(&p, &n)| (p, n)))
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

    /// Pods per zone in a scope.
    pub fn zone_counts(&self, scope: ScopeId) -> &BTreeMap<String, u32> {
        &self.scopes[scope.0 as usize].zones
    }

    /// The scope registered under `id`.
    pub fn zone_scope(&self, id: ScopeId) -> &ZoneScope {
        &self.scopes[id.0 as usize].scope
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
        let scope = idx.add_zone_scope(ZoneScope {
            namespace: "tools".into(),
            selector: LabelSelector::from_pairs([("tier", "tools")]),
            topology_key: crate::ZONE_LABEL.into(),
        });
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
        let counts = |idx: &CountIndex| idx.zone_counts(scope).iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>();
        assert_eq!(counts(&idx), vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
        idx.apply_node(&NodeBuilder::new("sp").label("type", "spot").zone("a").build());
        assert_eq!(counts(&idx), vec![("a".into(), 2), ("c".into(), 1)]);
        idx.delete_pod("tools", "g");
        assert_eq!(counts(&idx), vec![("a".into(), 1), ("c".into(), 1)]);
    }
}
