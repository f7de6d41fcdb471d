//! Lists of Kubernetes objects into one core [`Snapshot`].
//!
//! Every object is converted on its own: a malformed one is reported as a [`ConvertError`] and left
//! out, never aborting the snapshot (one bad pod must not blind the webhook to a whole cluster).
//! ReplicaSets only feed the owner lookup, so the order in which lists are given does not matter.
//! Metrics are attached by name (`usage` stays `None` for objects without metrics, or with malformed
//! metrics, which are reported too). Nodes are sorted by name and pods by `namespace/name`, so the
//! snapshot does not depend on the order of an informer cache. Node `requested` and `pod_count` are
//! computed by [`Snapshot::new`].
//!
//! ```no_run
//! # use placement_kube::convert::SnapshotBuilder;
//! # fn f(nodes: Vec<k8s_openapi::api::core::v1::Node>, pods: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Pod>>) {
//! let (snapshot, errors) = SnapshotBuilder::new().nodes(&nodes).pods(&pods).build();
//! # }
//! ```

use super::error::ConvertError;
use super::metrics::{NodeMetrics, PodMetrics, node_usage, pod_usage};
use super::owners::ReplicaSetOwners;
use super::{node, pdb, pod, workload};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use placement_core::model::Snapshot;
use placement_core::resources::Resources;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// Collects object lists (borrowed: `&[Pod]`, `&[Arc<Pod>]`, ...) and builds a snapshot.
#[derive(Clone, Debug, Default)]
pub struct SnapshotBuilder<'a> {
    nodes: Vec<&'a core_v1::Node>,
    pods: Vec<&'a core_v1::Pod>,
    replicasets: Vec<&'a ReplicaSet>,
    deployments: Vec<&'a Deployment>,
    statefulsets: Vec<&'a StatefulSet>,
    pdbs: Vec<&'a PodDisruptionBudget>,
    node_metrics: Vec<&'a NodeMetrics>,
    pod_metrics: Vec<&'a PodMetrics>,
}

/// The value, or `None` with the error recorded.
fn keep<T>(errors: &mut Vec<ConvertError>, r: Result<T, ConvertError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn refs<'a, K: 'a, B: Borrow<K> + 'a>(items: impl IntoIterator<Item = &'a B>) -> impl Iterator<Item = &'a K> {
    items.into_iter().map(Borrow::borrow)
}

impl<'a> SnapshotBuilder<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes<B: Borrow<core_v1::Node> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.nodes.extend(refs(items));
        self
    }

    pub fn pods<B: Borrow<core_v1::Pod> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.pods.extend(refs(items));
        self
    }

    /// ReplicaSets resolve pods to their Deployments; pods of unknown ReplicaSets use the
    /// `pod-template-hash` naming rule (see [`super::owners`]).
    pub fn replicasets<B: Borrow<ReplicaSet> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.replicasets.extend(refs(items));
        self
    }

    pub fn deployments<B: Borrow<Deployment> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.deployments.extend(refs(items));
        self
    }

    pub fn statefulsets<B: Borrow<StatefulSet> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.statefulsets.extend(refs(items));
        self
    }

    pub fn pdbs<B: Borrow<PodDisruptionBudget> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.pdbs.extend(refs(items));
        self
    }

    pub fn node_metrics<B: Borrow<NodeMetrics> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.node_metrics.extend(refs(items));
        self
    }

    pub fn pod_metrics<B: Borrow<PodMetrics> + 'a>(mut self, items: impl IntoIterator<Item = &'a B>) -> Self {
        self.pod_metrics.extend(refs(items));
        self
    }

    /// Converts everything: the snapshot of the objects that converted, and one error per object that
    /// did not (in input order, nodes first).
    pub fn build(self) -> (Snapshot, Vec<ConvertError>) {
        let mut errors = Vec::new();

        let owners: ReplicaSetOwners = self.replicasets.iter().copied().collect();
        let mut nodes: Vec<_> = self.nodes.iter().filter_map(|n| keep(&mut errors, node::node(n))).collect();
        let mut pods: Vec<_> = self.pods.iter().filter_map(|p| keep(&mut errors, pod::pod(p, &owners))).collect();
        let mut workloads: Vec<_> =
            self.deployments.iter().filter_map(|d| keep(&mut errors, workload::deployment(d))).collect();
        workloads.extend(self.statefulsets.iter().filter_map(|s| keep(&mut errors, workload::statefulset(s))));
        let mut pdbs: Vec<_> = self.pdbs.iter().filter_map(|p| keep(&mut errors, pdb::pdb(p))).flatten().collect();

        let node_usage: BTreeMap<String, Resources> = self
            .node_metrics
            .iter()
            .filter_map(|m| Some((m.metadata.name.clone()?, keep(&mut errors, node_usage(m))?)))
            .collect();
        let pod_usage: BTreeMap<(String, String), Resources> = self
            .pod_metrics
            .iter()
            .filter_map(|m| {
                let key = (m.metadata.namespace.clone()?, m.metadata.name.clone()?);
                Some((key, keep(&mut errors, pod_usage(m))?))
            })
            .collect();

        for n in &mut nodes {
            n.usage = node_usage.get(&n.name).copied();
        }
        for p in &mut pods {
            p.usage = pod_usage.get(&(p.namespace.clone(), p.name.clone())).copied();
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        workloads.sort_by(|a, b| a.workload.cmp(&b.workload));
        pdbs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        (Snapshot::new(nodes, pods, pdbs, workloads), errors)
    }
}
