//! End to end on a whole cluster: the webhook, the operator, the Deployment controller and the
//! scheduler together, driven only through the Kubernetes API as a user would.
//!
//! Every body below is written once and run twice by the `e2e!` macro:
//!
//! * `fake::NAME` against the fake API server with everything else in this process (always run);
//! * `real::NAME` against the cluster `PLACEMENT_E2E_KUBECONFIG` names. These are `#[ignore]`d with the
//!   reason, so every `cargo test` lists them as ignored rather than passing them without a cluster;
//!   run them with `cargo test -p placement-webhook --test cluster_e2e -- --ignored real::`. Asked for
//!   without the variable, they fail and say what to set. `deploy/kind/e2e.sh` makes a kind cluster,
//!   loads the images, installs the chart and prints that command.
//!
//! See `cluster/mod.rs` for what each place provides.

mod cluster;
mod common;

use cluster::{CAPACITY, Cluster, ZONE};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use placement_core::apportion::{Apportionment, Base};
use serde_json::{Value, json};
use std::collections::BTreeMap;

macro_rules! e2e {
    ($($name:ident),* $(,)?) => {
        mod fake {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::cluster::Cluster::fake().await).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a real cluster: set PLACEMENT_E2E_KUBECONFIG and pass --ignored (deploy/kind/e2e.sh)"]
                async fn $name() {
                    super::$name(super::cluster::Cluster::real().await).await
                }
            )*
        }
    };
}

e2e!(
    a_weighted_deployment_stays_on_target_as_it_scales_up_and_down,
    a_rollout_places_the_new_revision_on_target,
    single_replica_deployments_are_spread_two_per_zone,
    a_dry_run_is_answered_with_a_placement_and_stores_nothing,
);

/// 1 pod on on-demand first, then 1:3 on-demand:spot: the getting-started example.
const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// A container that starts everywhere kind runs (its sandbox image is preloaded) and stops at once.
const IMAGE: &str = "registry.k8s.io/pause:3.10";

/// What on-demand and spot should hold of `n` pods.
fn target(n: u32) -> BTreeMap<String, u32> {
    let t = Apportionment::new(vec![("on-demand".into(), 1), ("spot".into(), 3)], Some(Base { group: 0, count: 1 }))
        .unwrap()
        .target(n);
    [("on-demand".to_string(), t[0]), ("spot".to_string(), t[1])].into_iter().filter(|(_, n)| *n > 0).collect()
}

fn deployment(ns: &str, name: &str, replicas: i32, labels: Value, annotations: Value) -> Deployment {
    let mut labels = labels;
    labels["app"] = json!(name);
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": IMAGE,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}),
    )
    .unwrap()
}

async fn create(c: &Cluster, d: &Deployment) {
    let ns = d.metadata.namespace.as_deref().unwrap();
    Api::<Deployment>::namespaced(c.client.clone(), ns)
        .create(&PostParams::default(), d)
        .await
        .expect("creating a Deployment");
}

async fn patch_deployment(c: &Cluster, ns: &str, name: &str, patch: Value) {
    Api::<Deployment>::namespaced(c.client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching a Deployment");
}

fn group(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .and_then(|s| s.get(CAPACITY))
        .cloned()
        .unwrap_or_else(|| "unplaced".into())
}

fn hash(p: &Pod) -> String {
    p.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")).cloned().unwrap_or_default()
}

fn count_by<K: Ord>(pods: &[Pod], key: impl Fn(&Pod) -> K) -> BTreeMap<K, u32> {
    let mut out = BTreeMap::new();
    for p in pods {
        *out.entry(key(p)).or_default() += 1;
    }
    out
}

/// Node name to its labels.
async fn node_labels(c: &Cluster) -> BTreeMap<String, BTreeMap<String, String>> {
    let nodes = Api::<Node>::all(c.client.clone()).list(&ListParams::default()).await.expect("listing nodes");
    nodes
        .items
        .into_iter()
        .map(|n| (n.metadata.name.unwrap_or_default(), n.metadata.labels.unwrap_or_default()))
        .collect()
}

/// The Deployment's pods once it has rolled out `replicas` Ready pods of its current template and no
/// others: `Err` says what it is still waiting for.
async fn rolled_out(c: &Cluster, ns: &str, name: &str, replicas: usize) -> Result<Vec<Pod>, String> {
    let d = Api::<Deployment>::namespaced(c.client.clone(), ns).get(name).await.map_err(|e| e.to_string())?;
    let status = d.status.clone().unwrap_or_default();
    let want = Some(replicas as i32);
    if status.observed_generation != d.metadata.generation
        || status.replicas != want
        || status.updated_replicas != want
        || status.ready_replicas != want
    {
        return Err(format!("Deployment {ns}/{name} status {status:?}"));
    }
    let pods = Api::<Pod>::namespaced(c.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .map_err(|e| e.to_string())?;
    let live: Vec<Pod> = pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let revisions = count_by(&live, hash);
    if live.len() != replicas || revisions.len() != 1 {
        return Err(format!("{} pods of {name}, revisions {revisions:?}", live.len()));
    }
    Ok(live)
}

/// Every pod runs on a node of the group it was placed in.
async fn assert_on_their_nodes(c: &Cluster, pods: &[Pod]) {
    let nodes = node_labels(c).await;
    for p in pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).expect("a Ready pod has a node");
        assert_eq!(nodes[&node].get(CAPACITY), Some(&group(p)), "pod {:?} on {node}", p.metadata.name);
    }
}

async fn a_weighted_deployment_stays_on_target_as_it_scales_up_and_down(c: Cluster) {
    let ns = c.namespace("weights").await;
    let distributions: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &ns, &pod_distribution_resource());
    let pd: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "PodDistribution",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "groups": [
            {"name": "on-demand", "nodeSelector": {"matchLabels": {CAPACITY: "on-demand"}}, "base": 1, "weight": 1},
            {"name": "spot", "nodeSelector": {"matchLabels": {CAPACITY: "spot"}}, "weight": 3}]}}))
        .unwrap();
    distributions.create(&PostParams::default(), &pd).await.expect("creating the PodDistribution");
    c.eventually("the PodDistribution is Ready", || async {
        let status = distributions.get("web").await.map_err(|e| e.to_string())?.data["status"].clone();
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready { Ok(()) } else { Err(status.to_string()) }
    })
    .await;

    create(&c, &deployment(&ns, "web", 9, json!({}), json!({}))).await;
    settle(&c, &ns, &distributions, 9, true, None).await;
    scale(&c, &ns, 20).await;
    let pods = settle(&c, &ns, &distributions, 20, true, None).await;
    // Someone deletes three on-demand pods. The Deployment replaces them at once; the webhook sends the
    // replacements back to on-demand (unless its watch has not yet seen a deletion, which counts the
    // deleted pod: see docs/distribution-upkeep.md). Either way the replacements are the newest pods, so
    // a plain newest-first scale-down would take them and leave on-demand short: only the deletion
    // costs the operator keeps make the scale-downs below end on target.
    let before: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let api: Api<Pod> = Api::namespaced(c.client.clone(), &ns);
    for p in pods.iter().filter(|p| group(p) == "on-demand").take(3) {
        api.delete(p.metadata.name.as_deref().unwrap(), &Default::default()).await.expect("deleting a pod");
    }
    let pods = settle(&c, &ns, &distributions, 20, false, Some(17)).await;
    let replacements = pods.iter().filter(|p| !before.contains(p.metadata.name.as_ref().unwrap())).count();
    assert_eq!(replacements, 3, "the three deleted pods were replaced");
    scale(&c, &ns, 17).await;
    settle(&c, &ns, &distributions, 17, true, Some(5)).await;
    scale(&c, &ns, 5).await;
    settle(&c, &ns, &distributions, 5, true, None).await;
    c.finish(&ns).await;
}

async fn scale(c: &Cluster, ns: &str, replicas: u32) {
    patch_deployment(c, ns, "web", json!({"spec": {"replicas": replicas}})).await;
}

/// Waits until Deployment `web` has rolled out `replicas` pods (on target if `on_target`), each on a
/// node of its group and placed by the PodDistribution, and until the operator's status counts the
/// same and every pod has a deletion cost; returns the pods.
async fn settle(
    c: &Cluster,
    ns: &str,
    distributions: &Api<DynamicObject>,
    replicas: u32,
    on_target: bool,
    next: Option<u32>,
) -> Vec<Pod> {
    let what = if on_target { "on target" } else { "placed" };
    let pods = c
        .eventually(&format!("web rolled out at {replicas} pods, {what}"), || async {
            let pods = rolled_out(c, ns, "web", replicas as usize).await?;
            let groups = count_by(&pods, group);
            if groups.contains_key("unplaced") || (on_target && groups != target(replicas)) {
                return Err(format!("groups {groups:?}, target {:?}", target(replicas)));
            }
            Ok(pods)
        })
        .await;
    assert_on_their_nodes(c, &pods).await;
    for p in &pods {
        let decision =
            p.metadata.annotations.as_ref().and_then(|a| a.get("placement.dev/decision")).cloned().unwrap_or_default();
        assert!(decision.contains("PodDistribution"), "pod {:?}: decision {decision:?}", p.metadata.name);
    }
    c.eventually(&format!("the status and deletion costs at {replicas} pods"), || async {
        let status = distributions.get("web").await.map_err(|e| e.to_string())?.data["status"].clone();
        let groups: BTreeMap<String, u32> = status["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["pods"].as_u64() != Some(0))
            .map(|g| (g["name"].as_str().unwrap_or_default().to_string(), g["pods"].as_u64().unwrap_or(0) as u32))
            .collect();
        let drift_free = status["groups"].as_array().into_iter().flatten().all(|g| g["drift"] == 0);
        let pods = rolled_out(c, ns, "web", replicas as usize).await?;
        if groups != count_by(&pods, group) || (on_target && !drift_free) {
            return Err(format!("status {status}"));
        }
        let cost = |p: &Pod| p.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)?.parse::<i64>().ok());
        let costed = pods.iter().filter(|p| cost(p).is_some()).count();
        if costed != pods.len() {
            return Err(format!("{costed} of {} pods have a deletion cost", pods.len()));
        }
        // The costs are current once deleting the cheapest pods down to the next size leaves it on target.
        if let Some(next) = next {
            let mut cheapest_first = pods.clone();
            cheapest_first.sort_by_key(|p| cost(p));
            let kept = count_by(&cheapest_first[(replicas - next) as usize..], group);
            if kept != target(next) {
                return Err(format!("deleting the cheapest pods down to {next} would keep {kept:?}"));
            }
        }
        Ok(pods)
    })
    .await
}

async fn a_rollout_places_the_new_revision_on_target(c: Cluster) {
    let ns = c.namespace("rollout").await;
    create(&c, &deployment(&ns, "web", 8, json!({}), json!({"placement.dev/strategy": STRATEGY}))).await;
    let first = c
        .eventually("revision 1 rolled out on target", || async {
            let pods = rolled_out(&c, &ns, "web", 8).await?;
            let groups = count_by(&pods, group);
            if groups == target(8) { Ok(pods) } else { Err(format!("groups {groups:?}")) }
        })
        .await;
    let old = hash(&first[0]);

    patch_deployment(
        &c,
        &ns,
        "web",
        json!({"spec": {"template": {"metadata": {"annotations": {"e2e.placement.dev/revision": "2"}}}}}),
    )
    .await;
    let second = c
        .eventually("revision 2 rolled out on target", || async {
            let pods = rolled_out(&c, &ns, "web", 8).await?;
            let groups = count_by(&pods, group);
            if hash(&pods[0]) == old {
                return Err("still revision 1".into());
            }
            if groups == target(8) { Ok(pods) } else { Err(format!("groups {groups:?}")) }
        })
        .await;
    assert_on_their_nodes(&c, &second).await;
    for p in &second {
        let decision =
            p.metadata.annotations.as_ref().and_then(|a| a.get("placement.dev/decision")).cloned().unwrap_or_default();
        assert!(decision.starts_with(&format!("strategy annotation on Deployment/{ns}/web: ")), "{decision}");
    }
    c.finish(&ns).await;
}

async fn single_replica_deployments_are_spread_two_per_zone(c: Cluster) {
    let ns = c.namespace("zones").await;
    let balancers: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &ns, &zone_balancer_resource());
    let zb: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "ZoneBalancer",
        "metadata": {"name": "spread", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"balance": "yes"}}, "mode": "operator"}}))
        .unwrap();
    balancers.create(&PostParams::default(), &zb).await.expect("creating the ZoneBalancer");
    let names: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
    for name in &names {
        create(&c, &deployment(&ns, name, 1, json!({"balance": "yes"}), json!({}))).await;
    }
    let nodes = node_labels(&c).await;
    let zones = c
        .eventually("six single-replica Deployments pinned and running two per zone", || async {
            let mut zones: BTreeMap<String, u32> = BTreeMap::new();
            for name in &names {
                let d =
                    Api::<Deployment>::namespaced(c.client.clone(), &ns).get(name).await.map_err(|e| e.to_string())?;
                let pin = d
                    .spec
                    .and_then(|s| s.template.spec)
                    .and_then(|s| s.node_selector)
                    .and_then(|s| s.get(ZONE).cloned());
                let Some(pin) = pin else { return Err(format!("{name} is not pinned yet")) };
                let pods = rolled_out(&c, &ns, name, 1).await?;
                let node = pods[0].spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                let zone = nodes.get(&node).and_then(|l| l.get(ZONE)).cloned().unwrap_or_default();
                if zone != pin {
                    return Err(format!("{name} is pinned to {pin} but its pod runs in {zone:?}"));
                }
                *zones.entry(zone).or_default() += 1;
            }
            Ok(zones)
        })
        .await;
    let want: BTreeMap<String, u32> = cluster::WORKERS.iter().map(|(_, z)| (z.to_string(), 2)).collect();
    assert_eq!(zones, want);
    let status = balancers.get("spread").await.unwrap().data["status"].clone();
    assert_eq!(status["workloads"], 6, "{status}");
    c.finish(&ns).await;
}

async fn a_dry_run_is_answered_with_a_placement_and_stores_nothing(c: Cluster) {
    let ns = c.namespace("dryrun").await;
    create(&c, &deployment(&ns, "web", 1, json!({}), json!({"placement.dev/strategy": STRATEGY}))).await;
    c.eventually("web rolled out", || rolled_out(&c, &ns, "web", 1)).await;
    let sets = Api::<ReplicaSet>::namespaced(c.client.clone(), &ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let rs = sets.items.first().expect("the Deployment's ReplicaSet");
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).expect("a ReplicaSet has a template");
    // The pod the ReplicaSet controller would create next.
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.generate_name = Some(format!("{}-", rs.metadata.name.as_deref().unwrap()));
    metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.metadata.name.clone().unwrap(),
        uid: rs.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    let pod = Pod { metadata, spec: template.spec.clone(), status: None };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns);
    let answered =
        pods.create(&PostParams { dry_run: true, ..Default::default() }, &pod).await.expect("a dry-run create");
    assert_eq!(group(&answered), "spot", "the second pod of 1:3 after the on-demand base goes to spot");
    let decision =
        answered.metadata.annotations.unwrap_or_default().get("placement.dev/decision").cloned().unwrap_or_default();
    assert!(decision.starts_with(&format!("strategy annotation on Deployment/{ns}/web: ")), "{decision}");
    let stored = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(stored.items.len(), 1, "a dry run stores no pod");
    c.finish(&ns).await;
}

fn pod_distribution_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<placement_kube::crd::PodDistribution>(&())
}

fn zone_balancer_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<placement_kube::crd::ZoneBalancer>(&())
}

/// `deploy/kind/cluster.yaml` (what `deploy/kind/e2e.sh` and the getting-started guide create) has the
/// workers the bodies expect, so a real run fails on placement, not on the cluster's shape.
#[test]
fn the_kind_cluster_has_the_workers_the_bodies_expect() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kind/cluster.yaml");
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let workers: Vec<(String, String)> = config["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["role"] == "worker")
        .map(|n| {
            (n["labels"][CAPACITY].as_str().unwrap_or("-").into(), n["labels"][ZONE].as_str().unwrap_or("-").into())
        })
        .collect();
    let want: Vec<(String, String)> = cluster::WORKERS.iter().map(|(c, z)| (c.to_string(), z.to_string())).collect();
    assert_eq!(workers, want, "{path}");
}
