//! Realistic Kubernetes objects for a core [`Snapshot`]: what `kubectl get -o json` would show for its
//! nodes, pods, ReplicaSets, Deployments, StatefulSets and PDBs, `managedFields` and all, so that loads
//! and benchmarks against the fake API server pay the real cost of decoding real-sized objects.
//!
//! The inverse of [`placement_kube::convert`] for the fields the core reads: converting these objects back gives
//! the snapshot's nodes and pods (tested).

use placement_core::model::{ControllerKind, LocalVolume, Node, Pdb, Pod, PodPhase, Snapshot, Workload, WorkloadKind};
use placement_core::taints::{Effect, TolerationOperator};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const CREATED: &str = "2026-01-01T00:00:00Z";

fn effect(e: &Effect) -> &'static str {
    match e {
        Effect::NoSchedule => "NoSchedule",
        Effect::PreferNoSchedule => "PreferNoSchedule",
        Effect::NoExecute => "NoExecute",
    }
}

/// Every object of `snapshot`, nodes first, then namespaces, workloads, ReplicaSets, PDBs and pods,
/// rendered one at a time (150,000 pods as JSON values at once would take gigabytes).
pub fn cluster_objects(snapshot: &Snapshot) -> impl Iterator<Item = Value> + '_ {
    let namespaces: BTreeSet<&str> = snapshot.pods.iter().map(|p| p.namespace.as_str()).collect();
    let replicasets: BTreeSet<(&str, &str, &str)> = snapshot
        .pods
        .iter()
        .filter_map(|p| match (&p.workload, &p.revision) {
            (Some(w), Some(rev)) if w.kind == WorkloadKind::Deployment => {
                Some((w.namespace.as_str(), w.name.as_str(), rev.as_str()))
            }
            _ => None,
        })
        .collect();
    snapshot
        .nodes
        .iter()
        .map(node_object)
        .chain(
            namespaces.into_iter().map(|ns| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
        )
        .chain(snapshot.workloads.iter().filter_map(workload_object))
        .chain(replicasets.into_iter().map(|(ns, deployment, hash)| replicaset_object(ns, deployment, hash)))
        .chain(snapshot.pdbs.iter().map(pdb_object))
        .chain(snapshot.pods.iter().map(pod_object))
}

pub fn replicaset_object(ns: &str, deployment: &str, hash: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
            "name": format!("{deployment}-{hash}"), "namespace": ns, "creationTimestamp": CREATED,
            "labels": {"app": deployment, "pod-template-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                "uid": format!("uid-deploy-{ns}-{deployment}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": deployment, "pod-template-hash": hash}}}})
}

pub fn node_object(n: &Node) -> Value {
    let taints: Vec<Value> =
        n.taints.iter().map(|t| json!({"key": t.key, "value": t.value, "effect": effect(&t.effect)})).collect();
    let mut spec = json!({"providerID": format!("aws:///{}", n.name), "podCIDR": "10.0.0.0/24"});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    if n.unschedulable {
        spec["unschedulable"] = json!(true);
    }
    let ready = if n.ready { "True" } else { "False" };
    let quantity = json!({"cpu": format!("{}m", n.allocatable.cpu_millis), "memory": n.allocatable.memory_bytes.to_string(),
        "pods": n.max_pods.to_string(), "ephemeral-storage": "100Gi"});
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": n.labels, "creationTimestamp": CREATED,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
            "managedFields": managed_fields("kubelet")},
        "spec": spec,
        "status": {"capacity": quantity, "allocatable": quantity,
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED},
                {"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": n.name}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://2.0.0", "osImage": "Bottlerocket", "architecture": "amd64", "operatingSystem": "linux"}}})
}

/// A `managedFields` entry of the size real objects carry (what the live index must not keep).
fn managed_fields(manager: &str) -> Value {
    json!([{"manager": manager, "operation": "Update", "apiVersion": "v1", "time": CREATED, "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                "f:resources": {".": {}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}}, "f:terminationMessagePath": {},
                "f:terminationMessagePolicy": {}}}, "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}}])
}

pub fn pod_object(p: &Pod) -> Value {
    let (owner_kind, owner_name) = match (&p.controller, &p.workload) {
        (ControllerKind::ReplicaSet, Some(w)) if w.kind == WorkloadKind::Deployment => {
            ("ReplicaSet", format!("{}-{}", w.name, p.revision.as_deref().unwrap_or("0")))
        }
        (ControllerKind::ReplicaSet, Some(w)) => ("ReplicaSet", w.name.clone()),
        (ControllerKind::StatefulSet, Some(w)) => ("StatefulSet", w.name.clone()),
        (ControllerKind::DaemonSet, Some(w)) => ("DaemonSet", w.name.clone()),
        (ControllerKind::Job, Some(w)) => ("Job", w.name.clone()),
        (ControllerKind::Node, _) => ("Node", p.node_name.clone().unwrap_or_default()),
        _ => ("", String::new()),
    };
    let mut labels = p.labels.clone();
    if let (Some(rev), Some(w)) = (&p.revision, &p.workload) {
        let key = if w.kind == WorkloadKind::Deployment { "pod-template-hash" } else { "controller-revision-hash" };
        labels.insert(key.to_string(), rev.clone());
    }
    let mut meta = json!({"name": p.name, "namespace": p.namespace, "labels": labels, "creationTimestamp": CREATED,
        "annotations": p.annotations, "managedFields": managed_fields("kube-controller-manager")});
    if !owner_kind.is_empty() {
        let api_version = match owner_kind {
            "Node" => "v1",
            "Job" => "batch/v1",
            _ => "apps/v1",
        };
        meta["ownerReferences"] = json!([{"apiVersion": api_version, "kind": owner_kind, "name": owner_name,
            "uid": format!("uid-{}-{owner_name}", owner_kind.to_lowercase()), "controller": true, "blockOwnerDeletion": true}]);
    }
    if p.terminating {
        meta["deletionTimestamp"] = json!(CREATED);
    }
    let mut tolerations: Vec<Value> = p
        .tolerations
        .iter()
        .map(|t| {
            let mut v = json!({"key": t.key, "operator": if t.operator == TolerationOperator::Exists { "Exists" } else { "Equal" }});
            if t.operator == TolerationOperator::Equal {
                v["value"] = json!(t.value);
            }
            if let Some(e) = &t.effect {
                v["effect"] = json!(effect(e));
            }
            v
        })
        .collect();
    tolerations.push(json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
    tolerations.push(json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
    let mut volumes = vec![
        json!({"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}),
    ];
    for (i, v) in p.volumes.iter().enumerate() {
        volumes.push(match v {
            LocalVolume::EmptyDir { size_limit: Some(l), .. } => {
                json!({"name": format!("scratch-{i}"), "emptyDir": {"sizeLimit": l.to_string()}})
            }
            LocalVolume::EmptyDir { .. } => json!({"name": format!("scratch-{i}"), "emptyDir": {}}),
            LocalVolume::HostPath => json!({"name": format!("host-{i}"), "hostPath": {"path": "/var/log"}}),
            LocalVolume::PersistentClaim { claim, .. } => {
                json!({"name": format!("data-{i}"), "persistentVolumeClaim": {"claimName": claim}})
            }
        });
    }
    let mut spec = json!({
        "containers": [{"name": "app", "image": "registry.example.com/team/app:1.2.3",
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": format!("{}m", p.requests.cpu_millis), "memory": p.requests.memory_bytes.to_string()}},
            "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "schedulerName": "default-scheduler", "securityContext": {},
        "priority": p.priority, "tolerations": tolerations, "volumes": volumes, "enableServiceLinks": true});
    if let Some(n) = &p.node_name {
        spec["nodeName"] = json!(n);
    }
    if !p.node_selector.is_empty() {
        spec["nodeSelector"] = json!(p.node_selector);
    }
    let phase = match p.phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
        PodPhase::Unknown => "Unknown",
    };
    let ready = if p.ready { "True" } else { "False" };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
        "status": {"phase": phase, "qosClass": "Burstable", "podIP": "10.1.2.3", "hostIP": "10.0.0.1", "startTime": CREATED,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": CREATED},
                {"type": "Initialized", "status": "True", "lastTransitionTime": CREATED},
                {"type": "Ready", "status": ready, "lastTransitionTime": CREATED},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": CREATED},
                {"type": "PodScheduled", "status": if p.node_name.is_some() { "True" } else { "False" }, "lastTransitionTime": CREATED}],
            "containerStatuses": [{"name": "app", "ready": p.ready, "restartCount": 0, "image": "registry.example.com/team/app:1.2.3",
                "imageID": "registry.example.com/team/app@sha256:0123456789abcdef", "containerID": "containerd://0123456789abcdef",
                "started": true, "state": {"running": {"startedAt": CREATED}}}]}})
}

pub fn workload_object(w: &Workload) -> Option<Value> {
    let (api_version, kind) = match w.workload.kind {
        WorkloadKind::Deployment => ("apps/v1", "Deployment"),
        WorkloadKind::StatefulSet => ("apps/v1", "StatefulSet"),
        _ => return None,
    };
    let name = &w.workload.name;
    let mut spec = json!({"replicas": w.replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example.com/team/app:1.2.3"}]}}});
    if kind == "Deployment" {
        spec["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": w.max_unavailable, "maxSurge": 1}});
    } else {
        spec["serviceName"] = json!(name);
        spec["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": w.max_unavailable}});
    }
    Some(json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": w.workload.namespace, "uid": format!("uid-deploy-{}-{name}", w.workload.namespace),
            "labels": w.labels, "annotations": w.annotations, "creationTimestamp": CREATED, "generation": 1},
        "spec": spec}))
}

pub fn pdb_object(p: &Pdb) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": p.name, "namespace": p.namespace, "creationTimestamp": CREATED, "generation": 1},
        "spec": {"selector": {"matchLabels": p.selector.match_labels}, "maxUnavailable": 1},
        "status": {"disruptionsAllowed": p.disruptions_allowed, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0, "observedGeneration": 1}})
}
