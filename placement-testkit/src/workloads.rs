//! The cluster around the API server, reduced to what placement's end-to-end tests observe: the
//! Deployment and ReplicaSet controllers, the scheduler and the kubelet.
//!
//! In a real cluster a Deployment's pods are created through the API server, where the mutating webhook
//! sees them; the scheduler puts them on nodes; a new template rolls out as a new ReplicaSet. The
//! end-to-end tests that run unchanged against the fake and against a real cluster
//! (`placement-webhook/tests/cluster_e2e.rs`) need the fake to behave the same way, simplified. Every
//! tick (100 ms) [`WorkloadControllers`] does, through the API like any client:
//!
//! * **Deployments.** The template's hash names the current ReplicaSet `<name>-<hash>`, created with
//!   the next `deployment.kubernetes.io/revision`. Missing pods are created in slow-start batches of
//!   1, 2, 4, ... concurrent creates, as the ReplicaSet controller does; a surplus is deleted in its
//!   order (unscheduled, then not Ready, then lowest `controller.kubernetes.io/pod-deletion-cost`, then
//!   newest). Once the current revision has all its pods Ready, the older revisions' pods are deleted:
//!   a rollout with unbounded surge. Status: `replicas`, `updatedReplicas`, `readyReplicas`,
//!   `availableReplicas`, `observedGeneration`.
//! * **Scheduling and the kubelet.** A pod without a node is bound (`pods/binding`) to the Ready,
//!   schedulable node that matches its `nodeSelector` and required node affinity, tolerates the node's
//!   `NoSchedule`/`NoExecute` taints, and has the fewest pods (then the first name); it is then Running
//!   and Ready at once. A pod no node fits stays Pending with the condition the real scheduler writes,
//!   `PodScheduled=False`, reason `Unschedulable` (written once; its `lastTransitionTime` says since
//!   when), which is what a node autoscaler reacts to ([`crate::autoscaler`]).
//!
//! Not done: StatefulSets, DaemonSets, Jobs, garbage collection by owner, preferred affinity, topology
//! spread, resource fit, `maxSurge`/`maxUnavailable`. Tests that depend on those belong on a real
//! cluster.

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodTemplateSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The running controllers; dropping this stops them.
pub struct WorkloadControllers {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WorkloadControllers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the controllers against the API server `client` talks to.
pub fn spawn(client: kube::Client) -> WorkloadControllers {
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sync_deployments(&client).await {
                tracing::debug!(error = %e, "fake deployment controller: retrying next tick");
            }
            if let Err(e) = schedule(&client).await {
                tracing::debug!(error = %e, "fake scheduler: retrying next tick");
            }
        }
    });
    WorkloadControllers { task }
}

async fn sync_deployments(client: &kube::Client) -> Result<(), kube::Error> {
    let deployments = Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await?;
    for d in &deployments.items {
        if d.metadata.deletion_timestamp.is_none() {
            sync_deployment(client, d).await?;
        }
    }
    Ok(())
}

async fn sync_deployment(client: &kube::Client, d: &Deployment) -> Result<(), kube::Error> {
    let (Some(ns), Some(name), Some(uid), Some(spec)) =
        (d.metadata.namespace.as_deref(), d.metadata.name.as_deref(), d.metadata.uid.as_deref(), d.spec.as_ref())
    else {
        return Ok(());
    };
    let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let selector = match_labels(&spec.selector);
    let hash = template_hash(&spec.template);
    let query = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let params = ListParams::default().labels(&query);

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let owned: Vec<ReplicaSet> =
        sets.list(&params).await?.items.into_iter().filter(|rs| controlled_by(&rs.metadata, uid)).collect();
    let current = match owned.iter().find(|rs| label(&rs.metadata, HASH) == Some(hash.as_str())) {
        Some(rs) => rs.clone(),
        None => {
            let revision = owned.iter().filter_map(|rs| annotation(&rs.metadata, REVISION)?.parse::<u64>().ok()).max();
            let rs = replica_set(d, uid, &selector, &hash, revision.unwrap_or(0) + 1);
            match sets.create(&PostParams::default(), &rs).await {
                Ok(created) => created,
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    let owned_names: Vec<&str> = owned.iter().filter_map(|rs| rs.metadata.name.as_deref()).collect();
    let rs_name = current.metadata.name.clone().unwrap_or_default();

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mine: Vec<Pod> = pods
        .list(&params)
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| controller_name(&p.metadata).is_some_and(|o| o == rs_name || owned_names.contains(&o)))
        .collect();
    let (mut new, old): (Vec<Pod>, Vec<Pod>) =
        mine.iter().cloned().partition(|p| label(&p.metadata, HASH) == Some(&hash));

    if new.len() < replicas {
        let uid = current.metadata.uid.clone().unwrap_or_default();
        create_slow_start(&pods, &pod_from(&spec.template, &rs_name, &uid, &hash), replicas - new.len()).await?;
    } else if new.len() > replicas {
        new.sort_by_key(deletion_rank);
        for p in &new[..new.len() - replicas] {
            delete(&pods, p).await?;
        }
    } else if !old.is_empty() && new.iter().all(is_ready) {
        for p in &old {
            delete(&pods, p).await?;
        }
    }

    let ready = mine.iter().filter(|p| is_ready(p)).count();
    let updated = mine.iter().filter(|p| label(&p.metadata, HASH) == Some(&hash)).count();
    let status = json!({"status": {
        "observedGeneration": d.metadata.generation,
        "replicas": mine.len(), "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
    }});
    let unchanged = d.status.as_ref().is_some_and(|s| {
        s.observed_generation == d.metadata.generation
            && s.replicas == Some(mine.len() as i32)
            && s.updated_replicas == Some(updated as i32)
            && s.ready_replicas == Some(ready as i32)
    });
    if !unchanged {
        Api::<Deployment>::namespaced(client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    Ok(())
}

/// The ReplicaSet controller's slow start: batches of 1, 2, 4, ... concurrent creates; an error stops
/// the rest until the next tick.
async fn create_slow_start(pods: &Api<Pod>, pod: &Pod, mut missing: usize) -> Result<(), kube::Error> {
    let mut batch = 1;
    while missing > 0 {
        let n = batch.min(missing);
        let params = PostParams::default();
        for created in join_all((0..n).map(|_| pods.create(&params, pod))).await {
            created?;
        }
        missing -= n;
        batch *= 2;
    }
    Ok(())
}

async fn delete(pods: &Api<Pod>, p: &Pod) -> Result<(), kube::Error> {
    match pods.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Which pod a scale-down deletes first: the smallest key.
fn deletion_rank(p: &Pod) -> (bool, bool, i64, std::cmp::Reverse<Option<k8s_openapi::jiff::Timestamp>>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let cost = annotation(&p.metadata, DELETION_COST).and_then(|c| c.parse().ok()).unwrap_or(0);
    (scheduled, is_ready(p), cost, std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
}

fn replica_set(
    d: &Deployment,
    uid: &str,
    selector: &BTreeMap<String, String>,
    hash: &str,
    revision: u64,
) -> ReplicaSet {
    let name = d.metadata.name.clone().unwrap_or_default();
    let spec = d.spec.as_ref();
    let mut template = spec.map(|s| s.template.clone()).unwrap_or_default();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH.into(), hash.into());
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.extend(selector.clone());
    let mut match_labels = selector.clone();
    match_labels.insert(HASH.into(), hash.into());
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-{hash}"), "labels": labels,
            "annotations": {REVISION: revision.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": spec.and_then(|s| s.replicas).unwrap_or(1), "selector": {"matchLabels": match_labels},
            "template": template},
    }))
    .expect("a ReplicaSet built from a Deployment's own fields")
}

fn pod_from(template: &PodTemplateSpec, rs_name: &str, rs_uid: &str, hash: &str) -> Pod {
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.generate_name = Some(format!("{rs_name}-"));
    metadata.labels.get_or_insert_with(Default::default).insert(HASH.into(), hash.into());
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs_name.into(),
        uid: rs_uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Pod { metadata, spec: template.spec.clone(), status: None }
}

/// Ten hexadecimal digits of the FNV-1a hash of the template as JSON (the real controller hashes
/// differently; only stability matters).
fn template_hash(template: &PodTemplateSpec) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")[..10].to_string()
}

async fn schedule(client: &kube::Client) -> Result<(), kube::Error> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items;
    let mut load: HashMap<String, usize> = HashMap::new();
    for p in &pods {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *load.entry(node).or_default() += 1;
        }
    }
    for p in &pods {
        let (Some(ns), Some(name), Some(spec)) =
            (p.metadata.namespace.as_deref(), p.metadata.name.as_deref(), p.spec.as_ref())
        else {
            continue;
        };
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        if spec.node_name.is_none() {
            let Some(node) = nodes.iter().filter(|n| fits(p, n)).min_by_key(|n| {
                (
                    load.get(n.metadata.name.as_deref().unwrap_or_default()).copied().unwrap_or(0),
                    n.metadata.name.clone(),
                )
            }) else {
                mark_unschedulable(&api, p, nodes.len()).await?;
                continue;
            };
            let node = node.metadata.name.clone().unwrap_or_default();
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            match api
                .create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding)
                .await
            {
                Ok(_) => *load.entry(node).or_default() += 1,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        } else if is_ready(p) {
            continue;
        }
        // The kubelet: the container starts and is Ready at once.
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {"phase": "Running", "startTime": now, "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Writes `PodScheduled=False`, reason `Unschedulable`, on a pod no node fits, unless it says so already.
async fn mark_unschedulable(api: &Api<Pod>, pod: &Pod, nodes: usize) -> Result<(), kube::Error> {
    if unschedulable_since(pod).is_some() {
        return Ok(());
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let message = format!("0/{nodes} nodes are available: none matches the pod's selectors, affinity and tolerations");
    let status = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": message, "lastTransitionTime": now}]}});
    match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Since when the scheduler has found no node for `pod` (`PodScheduled=False`, reason `Unschedulable`).
pub fn unschedulable_since(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    (c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .then(|| c.last_transition_time.as_ref().map(|t| t.0))
        .flatten()
}

/// Whether the scheduler may put `pod` on `node`.
pub(crate) fn fits(pod: &Pod, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let ready = node_is_ready(node);
    let node_spec = node.spec.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_ref() else { return false };
    let selected = spec.node_selector.as_ref().is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|r| r.node_selector_terms.clone());
    let affine = terms.is_none_or(|terms| terms.iter().any(|t| term_matches(t, &labels, name)));
    let tolerated = node_spec
        .taints
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerates(spec.tolerations.as_deref().unwrap_or_default(), t));
    ready && !node_spec.unschedulable.unwrap_or(false) && selected && affine && tolerated
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let fields = BTreeMap::from([("metadata.name".to_string(), name.to_string())]);
    let all = |reqs: &Option<Vec<NodeSelectorRequirement>>, of: &BTreeMap<String, String>| {
        reqs.iter().flatten().all(|r| requirement_matches(r, of))
    };
    let empty = term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty);
    !empty && all(&term.match_expressions, labels) && all(&term.match_fields, &fields)
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

fn tolerates(tolerations: &[k8s_openapi::api::core::v1::Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or_default();
        let matches = match t.operator.as_deref().unwrap_or("Equal") {
            "Exists" => key.is_empty() || key == taint.key,
            _ => {
                key == taint.key && t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
        };
        effect && matches
    })
}

/// Whether the node's `Ready` condition is `True`.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn match_labels(selector: &LabelSelector) -> BTreeMap<String, String> {
    selector.match_labels.clone().unwrap_or_default()
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn controller_name(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true)).map(|o| o.name.as_str())
}

fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.as_ref().is_some_and(|o| o.iter().any(|o| o.controller == Some(true) && o.uid == uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn scheduling_honours_selectors_required_affinity_and_taints() {
        let spot = node(json!({"zone": "a", "capacity": "spot"}), json!([{"key": "spot", "effect": "NoSchedule"}]));
        let affinity = |op: &str, values: serde_json::Value| {
            json!({"containers": [], "tolerations": [{"key": "spot", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": op, "values": values}]}]}}}})
        };
        assert!(!fits(&pod(json!({"containers": []})), &spot), "the taint is not tolerated");
        assert!(fits(&pod(json!({"containers": [], "tolerations": [{"operator": "Exists"}]})), &spot));
        assert!(fits(&pod(affinity("In", json!(["a", "b"]))), &spot));
        assert!(!fits(&pod(affinity("In", json!(["b"]))), &spot));
        assert!(fits(&pod(affinity("NotIn", json!(["b"]))), &spot));
        let selected = json!({"containers": [], "nodeSelector": {"capacity": "on-demand"}, "tolerations": [{"operator": "Exists"}]});
        assert!(!fits(&pod(selected), &spot));
    }

    #[test]
    fn a_scale_down_deletes_unscheduled_then_cheap_then_new_pods_first() {
        let p = |name: &str, node: Option<&str>, cost: &str, created: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {DELETION_COST: cost}}, "spec": {"containers": [], "nodeName": node}}))
            .unwrap()
        };
        let mut pods = [
            p("old-cheap", Some("n"), "-5", "2026-01-01T00:00:00Z"),
            p("new", Some("n"), "0", "2026-01-02T00:00:00Z"),
            p("old", Some("n"), "0", "2026-01-01T00:00:00Z"),
            p("pending", None, "100", "2026-01-01T00:00:00Z"),
        ];
        pods.sort_by_key(deletion_rank);
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["pending", "old-cheap", "new", "old"]);
    }

    #[test]
    fn the_template_hash_is_stable_and_follows_the_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}})).unwrap();
        let mut u = t.clone();
        u.metadata.as_mut().unwrap().annotations = Some([("rev".to_string(), "2".to_string())].into());
        assert_eq!(template_hash(&t), template_hash(&t.clone()));
        assert_ne!(template_hash(&t), template_hash(&u));
        assert_eq!(template_hash(&t).len(), 10);
    }
}
