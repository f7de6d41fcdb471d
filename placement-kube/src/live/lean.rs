//! Pods as the live index keeps them: a core `Pod` with every repeated value shared.
//!
//! At 150,000 pods a plain `Pod` per pod costs about 2 KB, most of it in values that thousands of pods
//! share: the pods of one ReplicaSet have the same labels, tolerations, node selector and workload; the
//! pods on one node share its name. [`LeanPod`] keeps those as interned `Arc`s (one copy per distinct
//! value), which brings a pod down to a couple of hundred bytes. Interned values nobody uses any more
//! are dropped by [`Interner::sweep`].

use placement_core::Labels;
use placement_core::model::{ControllerKind, LocalVolume, Pod, PodPhase, WorkloadRef};
use placement_core::resources::Resources;
use placement_core::selector::NodeAffinity;
use placement_core::taints::Toleration;
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

/// One shared copy of each distinct value.
#[derive(Default)]
pub struct Interner {
    strs: FxHashSet<Arc<str>>,
    labels: FxHashSet<Arc<Labels>>,
    tolerations: FxHashSet<Arc<Vec<Toleration>>>,
    affinities: FxHashSet<Arc<NodeAffinity>>,
    workloads: FxHashSet<Arc<WorkloadRef>>,
}

fn intern<T: ?Sized + Hash + Eq>(set: &mut FxHashSet<Arc<T>>, value: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
    if let Some(v) = set.get(value) {
        return v.clone();
    }
    let v = make();
    set.insert(v.clone());
    v
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        intern(&mut self.strs, s, || Arc::from(s))
    }

    fn labels(&mut self, l: Labels) -> Arc<Labels> {
        if let Some(v) = self.labels.get(&l) {
            return v.clone();
        }
        let v = Arc::new(l);
        self.labels.insert(v.clone());
        v
    }

    /// Drops values no pod refers to any more.
    pub fn sweep(&mut self) {
        self.strs.retain(|v| Arc::strong_count(v) > 1);
        self.labels.retain(|v| Arc::strong_count(v) > 1);
        self.tolerations.retain(|v| Arc::strong_count(v) > 1);
        self.affinities.retain(|v| Arc::strong_count(v) > 1);
        self.workloads.retain(|v| Arc::strong_count(v) > 1);
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.strs.len() + self.labels.len() + self.tolerations.len() + self.affinities.len() + self.workloads.len()
    }
}

/// A pod without its namespace and name (they are the key it is stored under).
#[derive(Clone, Debug)]
pub struct LeanPod {
    /// `metadata.uid` (the eviction precondition).
    uid: Option<Box<str>>,
    labels: Arc<Labels>,
    /// Only the annotations the core reads are kept; usually none.
    annotations: BTreeMap<String, String>,
    workload: Option<Arc<WorkloadRef>>,
    revision: Option<Arc<str>>,
    controller: ControllerKind,
    node_name: Option<Arc<str>>,
    node_selector: Arc<Labels>,
    required_affinity: Option<Arc<NodeAffinity>>,
    tolerations: Arc<Vec<Toleration>>,
    pub requests: Resources,
    pub usage: Option<Resources>,
    priority: i32,
    phase: PodPhase,
    terminating: bool,
    ready: bool,
    volumes: Box<[LocalVolume]>,
    /// [`Pod::unschedulable_since`], in whole seconds since the epoch (8 bytes; no real condition is
    /// dated at the epoch itself).
    unschedulable_since: Option<std::num::NonZeroI64>,
}

impl LeanPod {
    pub fn new(pod: Pod, interner: &mut Interner) -> Self {
        let workload = pod.workload.map(|w| intern(&mut interner.workloads, &w, || Arc::new(w.clone())));
        let tolerations = intern(&mut interner.tolerations, &pod.tolerations, || Arc::new(pod.tolerations.clone()));
        let required_affinity =
            pod.required_affinity.map(|a| intern(&mut interner.affinities, &a, || Arc::new(a.clone())));
        LeanPod {
            uid: pod.uid.map(String::into_boxed_str),
            labels: interner.labels(pod.labels),
            annotations: pod.annotations,
            workload,
            revision: pod.revision.as_deref().map(|r| interner.str(r)),
            controller: pod.controller,
            node_name: pod.node_name.as_deref().map(|n| interner.str(n)),
            node_selector: interner.labels(pod.node_selector),
            required_affinity,
            tolerations,
            requests: pod.requests,
            usage: pod.usage,
            priority: pod.priority,
            phase: pod.phase,
            terminating: pod.terminating,
            ready: pod.ready,
            volumes: pod.volumes.into_boxed_slice(),
            unschedulable_since: pod.unschedulable_since.and_then(|t| std::num::NonZeroI64::new(t.as_second())),
        }
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The core pod back, with its namespace and name.
    pub fn to_pod(&self, namespace: &str, name: &str) -> Pod {
        Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: self.uid.as_deref().map(str::to_string),
            labels: (*self.labels).clone(),
            annotations: self.annotations.clone(),
            workload: self.workload.as_deref().cloned(),
            revision: self.revision.as_deref().map(str::to_string),
            controller: self.controller.clone(),
            node_name: self.node_name.as_deref().map(str::to_string),
            node_selector: (*self.node_selector).clone(),
            required_affinity: self.required_affinity.as_deref().cloned(),
            tolerations: (*self.tolerations).clone(),
            requests: self.requests,
            usage: self.usage,
            priority: self.priority,
            phase: self.phase,
            terminating: self.terminating,
            ready: self.ready,
            volumes: self.volumes.to_vec(),
            unschedulable_since: self.unschedulable_since.and_then(|s| jiff::Timestamp::from_second(s.get()).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::model::PodBuilder;

    #[test]
    fn round_trips_and_shares_repeated_values() {
        let mut interner = Interner::default();
        let a = PodBuilder::new("ns", "a").deployment("web").revision("h1").label("app", "web").on_node("n1").build();
        let b = PodBuilder::new("ns", "b").deployment("web").revision("h1").label("app", "web").on_node("n1").build();
        let la = LeanPod::new(a.clone(), &mut interner);
        let lb = LeanPod::new(b.clone(), &mut interner);
        assert_eq!(la.to_pod("ns", "a"), a);
        assert_eq!(lb.to_pod("ns", "b"), b);
        assert!(Arc::ptr_eq(&la.labels, &lb.labels));
        assert!(Arc::ptr_eq(la.workload.as_ref().unwrap(), lb.workload.as_ref().unwrap()));
        assert!(Arc::ptr_eq(la.node_name.as_ref().unwrap(), lb.node_name.as_ref().unwrap()));
        let held = interner.len();
        drop(la);
        interner.sweep();
        assert_eq!(interner.len(), held, "b still uses every value");
        drop(lb);
        interner.sweep();
        assert_eq!(interner.len(), 0);
    }

    #[test]
    fn keeps_since_when_a_pod_is_unschedulable_to_the_second() {
        let mut interner = Interner::default();
        let mut pod = PodBuilder::new("ns", "p").deployment("web").pending().build();
        pod.unschedulable_since = Some("2026-11-03T09:14:27Z".parse().unwrap());
        assert_eq!(LeanPod::new(pod.clone(), &mut interner).to_pod("ns", "p"), pod);
        pod.unschedulable_since = None;
        assert_eq!(LeanPod::new(pod.clone(), &mut interner).to_pod("ns", "p"), pod);
    }
}
