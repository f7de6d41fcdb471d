//! What the webhook benches share: the generated cluster with a few strategy-annotated Deployments, the
//! live index built from its objects, and AdmissionReview bodies of pods those workloads would create.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use placement_core::model::{ControllerKind, Snapshot, WorkloadKind};
use placement_core::strategy::STRATEGY_ANNOTATION;
use placement_core::testing::{ClusterSpec, generate};
use placement_kube::crd::ZoneBalancer;
use placement_kube::live::LiveIndex;
use placement_testkit::objects::{cluster_objects, pod_object};
use serde_json::{Value, json};

/// Node groups by capacity type, spot weighted 3:1 with two on-demand pods first.
pub const CAPACITY_STRATEGY: &str =
    "base=2,weight=1,nodeSelector=node-type:ondemand;weight=3,nodeSelector=node-type:spot";
/// An even split over the three zones.
pub const ZONE_STRATEGY: &str = "weight=1,nodeSelector=topology.kubernetes.io/zone:zone-a;\
    weight=1,nodeSelector=topology.kubernetes.io/zone:zone-b;weight=1,nodeSelector=topology.kubernetes.io/zone:zone-c";

/// How many of the largest spot-tolerating Deployments get a strategy annotation.
const ANNOTATED: usize = 4;

/// The uid every template carries until [`ReviewBody::set_uid`] rewrites its last 12 hex digits.
const UID_TEMPLATE: &str = "00000000-0000-4000-9000-000000000000";

/// A generated cluster prepared for admission benches.
pub struct Cluster {
    pub snapshot: Snapshot,
    /// The pods a few annotated Deployments would create next (largest first).
    pub strategy_pods: Vec<Incoming>,
    /// A pod of a single-replica Deployment, for [`Cluster::zone_balancer`].
    pub zone_pod: Option<Incoming>,
}

/// A pod at CREATE, as the API server sends it to the webhook.
pub struct Incoming {
    /// `Deployment/namespace/name (N replicas)`, for output.
    pub label: String,
    pub namespace: String,
    pub object: Value,
}

impl Cluster {
    /// Generates `ClusterSpec::scaled(nodes)` and annotates the largest Deployments whose pods tolerate
    /// spot (alternately with [`CAPACITY_STRATEGY`] and [`ZONE_STRATEGY`]).
    pub fn generate(nodes: usize) -> Cluster {
        let mut snapshot = generate(&ClusterSpec::scaled(nodes));
        let tolerates_spot = |w: &placement_core::model::WorkloadRef| {
            snapshot
                .pods
                .iter()
                .find(|p| p.workload.as_ref() == Some(w))
                .is_some_and(|p| p.tolerations.iter().any(|t| t.key == "spot"))
        };
        let mut large: Vec<usize> = (0..snapshot.workloads.len())
            .filter(|&i| snapshot.workloads[i].workload.kind == WorkloadKind::Deployment)
            .collect();
        large.sort_by_key(|&i| std::cmp::Reverse(snapshot.workloads[i].replicas));
        let chosen: Vec<usize> = large
            .iter()
            .copied()
            .filter(|&i| tolerates_spot(&snapshot.workloads[i].workload))
            .take(ANNOTATED)
            .collect();
        for (n, &i) in chosen.iter().enumerate() {
            let strategy = if n % 2 == 0 { CAPACITY_STRATEGY } else { ZONE_STRATEGY };
            snapshot.workloads[i].annotations.insert(STRATEGY_ANNOTATION.to_string(), strategy.to_string());
        }
        let strategy_pods = chosen.iter().filter_map(|&i| incoming(&snapshot, i)).collect();
        let single = (0..snapshot.workloads.len()).find(|&i| {
            let w = &snapshot.workloads[i];
            w.workload.kind == WorkloadKind::Deployment && w.replicas == 1 && !chosen.contains(&i)
        });
        let zone_pod = single.and_then(|i| incoming(&snapshot, i));
        Cluster { snapshot, strategy_pods, zone_pod }
    }

    /// Annotates the largest Deployment that has no strategy yet with `strategy` (which may be one the
    /// webhook cannot use), and returns the pod it would create next.
    pub fn annotate_another(&mut self, strategy: &str) -> Option<Incoming> {
        let workloads = &self.snapshot.workloads;
        let mut unannotated: Vec<usize> = (0..workloads.len())
            .filter(|&i| {
                workloads[i].workload.kind == WorkloadKind::Deployment
                    && !workloads[i].annotations.contains_key(STRATEGY_ANNOTATION)
            })
            .collect();
        unannotated.sort_by_key(|&i| std::cmp::Reverse(workloads[i].replicas));
        let (i, pod) = unannotated.into_iter().find_map(|i| Some((i, incoming(&self.snapshot, i)?)))?;
        self.snapshot.workloads[i].annotations.insert(STRATEGY_ANNOTATION.to_string(), strategy.to_string());
        Some(pod)
    }

    /// A ZoneBalancer (webhook mode) over every app in the zone pod's namespace.
    pub fn zone_balancer(&self) -> Option<ZoneBalancer> {
        let pod = self.zone_pod.as_ref()?;
        let zb = json!({"apiVersion": "placement.dev/v1alpha1", "kind": "ZoneBalancer",
            "metadata": {"name": "singletons", "namespace": pod.namespace, "uid": "zb-1", "generation": 1},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                "topologyKey": placement_core::ZONE_LABEL, "mode": "webhook", "affinity": "required"}});
        Some(serde_json::from_value(zb).expect("ZoneBalancer"))
    }

    /// Every object of the cluster, as the watchers would see them.
    pub fn objects(&self) -> impl Iterator<Item = Value> + '_ {
        cluster_objects(&self.snapshot)
    }

    /// A live index holding the whole cluster.
    pub fn index(&self) -> LiveIndex {
        let mut index = LiveIndex::new();
        for o in self.objects() {
            apply_value(&mut index, o);
        }
        index
    }
}

/// Applies one object (by its `kind`) to `index`; other kinds are skipped.
pub fn apply_value(index: &mut LiveIndex, o: Value) {
    let kind = o["kind"].as_str().unwrap_or_default().to_string();
    match kind.as_str() {
        "Node" => index.apply_node(&serde_json::from_value::<Node>(o).expect("node")),
        "Pod" => index.apply_pod(&serde_json::from_value::<Pod>(o).expect("pod")),
        "ReplicaSet" => index.apply_replicaset(&serde_json::from_value::<ReplicaSet>(o).expect("replicaset")),
        "Deployment" => index.apply_deployment(&serde_json::from_value::<Deployment>(o).expect("deployment")),
        "StatefulSet" => index.apply_statefulset(&serde_json::from_value::<StatefulSet>(o).expect("statefulset")),
        "PodDisruptionBudget" => index.apply_pdb(&serde_json::from_value::<PodDisruptionBudget>(o).expect("pdb")),
        _ => {}
    }
}

/// Applies one object given as its kind and JSON text (the wire form of the load bench).
pub fn apply_json(index: &mut LiveIndex, kind: &str, json: &str) {
    match kind {
        "Node" => index.apply_node(&serde_json::from_str::<Node>(json).expect("node")),
        "Pod" => index.apply_pod(&serde_json::from_str::<Pod>(json).expect("pod")),
        "ReplicaSet" => index.apply_replicaset(&serde_json::from_str::<ReplicaSet>(json).expect("replicaset")),
        "Deployment" => index.apply_deployment(&serde_json::from_str::<Deployment>(json).expect("deployment")),
        "StatefulSet" => index.apply_statefulset(&serde_json::from_str::<StatefulSet>(json).expect("statefulset")),
        "PodDisruptionBudget" => index.apply_pdb(&serde_json::from_str::<PodDisruptionBudget>(json).expect("pdb")),
        _ => {}
    }
}

/// The next pod of workload `i`: one of its running pods as `pod_object` renders it, turned back into
/// what a ReplicaSet controller sends (generateName, no name, node, uid, timestamp or status).
fn incoming(snapshot: &Snapshot, i: usize) -> Option<Incoming> {
    let w = &snapshot.workloads[i];
    let pod = snapshot.pods.iter().find(|p| {
        p.workload.as_ref() == Some(&w.workload)
            && p.controller == ControllerKind::ReplicaSet
            && p.node_name.is_some()
            && p.node_selector.is_empty()
            && p.annotations.is_empty()
            && !p.terminating
    })?;
    let mut object = pod_object(pod);
    let rs = format!("{}-{}", w.workload.name, pod.revision.as_deref().unwrap_or("0"));
    let meta = object["metadata"].as_object_mut()?;
    meta.remove("name");
    meta.remove("creationTimestamp");
    meta.remove("annotations");
    meta.insert("generateName".into(), json!(format!("{rs}-")));
    let spec = object["spec"].as_object_mut()?;
    spec.remove("nodeName");
    object["status"] = json!({});
    Some(Incoming {
        label: format!("{} ({} replicas)", w.workload, w.replicas),
        namespace: w.workload.namespace.clone(),
        object,
    })
}

/// An AdmissionReview body whose uid can be changed in place.
#[derive(Clone)]
pub struct ReviewBody {
    pub bytes: Vec<u8>,
    /// Offset of the uid's last 12 hex digits.
    digits_at: usize,
}

impl ReviewBody {
    /// The pod CREATE review the API server sends, with `dryRun` as given.
    pub fn new(pod: &Incoming, dry_run: bool) -> ReviewBody {
        let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
        let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": UID_TEMPLATE, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
                "name": "", "namespace": pod.namespace, "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                    "uid": "6a1f0c2e-3b7d-4f5a-9c8e-1d2b3a4c5e6f",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
                "object": pod.object, "oldObject": null, "dryRun": dry_run,
                "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}});
        let bytes = serde_json::to_vec(&review).expect("review JSON");
        let at = bytes.windows(UID_TEMPLATE.len()).position(|w| w == UID_TEMPLATE.as_bytes()).expect("uid in body");
        ReviewBody { bytes, digits_at: at + UID_TEMPLATE.len() - 12 }
    }

    /// The body with its uid replaced by `uid` (characters a JSON string may hold as they are).
    pub fn with_uid(&self, uid: &str) -> Vec<u8> {
        let at = self.digits_at + 12 - UID_TEMPLATE.len();
        [&self.bytes[..at], uid.as_bytes(), &self.bytes[at + UID_TEMPLATE.len()..]].concat()
    }

    /// Rewrites the uid to end in `n` (12 hex digits).
    pub fn set_uid(&mut self, n: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for k in 0..12 {
            self.bytes[self.digits_at + 11 - k] = HEX[((n >> (4 * k)) & 0xf) as usize];
        }
    }
}
