//! The reconcile of one operator-mode ZoneBalancer: read its workloads fresh from the API server, read
//! nodes and pods from the live index, [`plan`](placement_core::zone_plan::plan), then (leader only) record the
//! status, patch the workloads and publish Events.
//!
//! The balancer itself and its workloads are read from the API server on every reconcile rather than
//! from a cache (the balancer: so that its status is written from the latest one, moves included). A pin
//! must be decided on the workload as it is now (a cache a moment behind our own last patch would see it
//! unpinned and pin it again), and the `resourceVersion` read is the precondition of the patch.
//!
//! Order of writes for a move: the status (with the move in `lastMoves`) first, then the workload. A crash
//! in between leaves a recorded move that did not happen, which only delays the next move; the other
//! order could forget a move that did happen and move again at once after a restart. The decision
//! annotation on the workload records the move time too, and the interval counts from the later of both.

use super::Options;
use super::metrics::ZoneBalancerMetrics;
use super::status::{OwnStatus, zone_move};
use super::workload::{DecisionAction, Observed, TemplatePin, Via, ZoneDecision, move_patch, pin_patch};
use crate::runtime::events::Note;
use crate::{Context, Error, Result};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod as KubePod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use placement_core::group::NodeGroup;
use placement_core::model::{Node, WorkloadKind};
use placement_core::zone::zone_feasibility;
use placement_core::zone_plan::{self as plan, PinnedBy, Placement, PlanInput, Rebalance, WorkloadInput};
use placement_kube::crd::ZoneBalancer;
use placement_kube::crd::zone_balancer::{ZoneAffinity, ZoneBalancerConfig, ZoneMode};
use placement_kube::field_manager;
use placement_kube::live::LiveIndex;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every reconcile shares.
pub struct State {
    pub ctx: Context,
    pub metrics: ZoneBalancerMetrics,
    pub options: Options,
    /// Warnings already published by this instance (so a lasting problem is one Event, not one per
    /// reconcile); cleared when it grows large.
    reported: Mutex<HashSet<String>>,
}

impl State {
    pub fn new(ctx: Context, metrics: ZoneBalancerMetrics, options: Options) -> Self {
        State { ctx, metrics, options, reported: Mutex::new(HashSet::new()) }
    }

    /// Publishes a warning once per `key` (per instance).
    async fn warn_once(&self, key: String, object: &ObjectReference, reason: &str, action: &str, note: String) {
        {
            let mut seen = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 4096 {
                seen.clear();
            }
            if !seen.insert(key) {
                return;
            }
        }
        let note = Note { warning: true, reason: reason.into(), action: action.into(), note };
        self.ctx.events.publish(object, note).await;
    }

    async fn normal(&self, object: &ObjectReference, reason: &str, action: &str, note: String) {
        let note = Note { warning: false, reason: reason.into(), action: action.into(), note };
        self.ctx.events.publish(object, note).await;
    }
}

/// Reconciles one ZoneBalancer, with metrics and an Event on failure, in a `reconcile` span naming it.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ZoneBalancer", object = %key_of(&zb)))]
pub async fn reconcile(zb: Arc<ZoneBalancer>, st: Arc<State>) -> Result<Action> {
    let started = Instant::now();
    let out = reconcile_balancer(&zb, &st).await;
    st.metrics.observe(started.elapsed().as_secs_f64());
    if let Err(e) = &out {
        st.metrics.error(e.metric_label());
        tracing::warn!(balancer = %key_of(&zb), error = %e, "zone balancer reconcile failed");
        if st.ctx.leadership.is_leader() {
            let key = format!("error/{}/{e}", zb.uid().unwrap_or_default());
            st.warn_once(key, &zb.object_ref(&()), "ReconcileFailed", "Reconcile", e.to_string()).await;
        }
    }
    out
}

/// What the controller does after a failed reconcile.
pub fn error_policy(_zb: Arc<ZoneBalancer>, _e: &Error, st: Arc<State>) -> Action {
    Action::requeue(st.options.error_backoff)
}

fn key_of(zb: &ZoneBalancer) -> String {
    format!("{}/{}", zb.namespace().unwrap_or_default(), zb.name_any())
}

async fn reconcile_balancer(cached: &ZoneBalancer, st: &State) -> Result<Action> {
    if cached.spec.mode != ZoneMode::Operator {
        // The webhook's: nothing to do here, and its status is not ours to write.
        return Ok(Action::await_change());
    }
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let balancers: Api<ZoneBalancer> = Api::namespaced(st.ctx.client.clone(), &ns);
    // Read fresh: the controller's copy can lag behind our own last status write, and writing the
    // status from it would drop the move that write recorded.
    let zb = match balancers.get(&name).await {
        Ok(zb) => zb,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(Error::kube(format!("reading ZoneBalancer {ns}/{name}"), e)),
    };
    if zb.spec.mode != ZoneMode::Operator {
        return Ok(Action::await_change());
    }
    let zb = &zb;
    let leader = st.ctx.leadership.is_leader();
    let now = jiff::Timestamp::now();
    let generation = zb.meta().generation;

    let config = match zb.spec.to_core() {
        Ok(c) => c,
        Err(e) => {
            // Not retried: only a new spec can fix it (the watch brings it).
            st.metrics.error("spec");
            let own = OwnStatus::invalid(&e, generation, zb.status.as_ref(), now);
            if leader {
                if own.differs(zb.status.as_ref()) {
                    write_status(&balancers, &ns, &name, &own).await?;
                }
                let key = format!("spec/{}/{}", zb.uid().unwrap_or_default(), generation.unwrap_or_default());
                let note = format!("ZoneBalancer {ns}/{name} is not in effect: {e}");
                st.warn_once(key, &zb.object_ref(&()), "InvalidSpec", "Validate", note).await;
            }
            return Ok(Action::await_change());
        }
    };
    if !st.ctx.index.is_ready() {
        // Deciding on a half-listed cluster would see zones without nodes.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let workloads = list_in_scope(&st.ctx.client, &ns, &config).await?;
    let (input, mut issues) = {
        let index = st.ctx.index.read();
        build_input(&index, &ns, &name, &config, &workloads, zb, &st.options, now)
    };
    let mut plan = plan::plan(&input);
    plan.issues.append(&mut issues);

    let new_move = plan.moved.as_ref().map(|m| {
        zone_move(input.workloads[m.workload].id.clone(), m.from.clone(), m.to.clone(), m.reason.clone(), now)
    });
    let own = OwnStatus::from_plan(&plan, workloads.len() as u32, new_move, generation, zb.status.as_ref(), now);
    let requeue = match plan.next_move_at {
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            st.options.resync.min(wait + Duration::from_millis(100))
        }
        None => st.options.resync,
    };
    if !leader {
        tracing::debug!(
            balancer = %format!("{ns}/{name}"),
            pins = plan.pins.len(),
            moved = plan.moved.is_some(),
            "not the leader: planned, nothing written"
        );
        return Ok(Action::requeue(requeue));
    }
    if own.differs(zb.status.as_ref()) {
        write_status(&balancers, &ns, &name, &own).await?;
    }

    let zb_ref = zb.object_ref(&());
    let mut first_error: Option<Error> = None;
    let preferred = config.affinity == ZoneAffinity::Preferred;
    for pin in &plan.pins {
        let w = &workloads[pin.workload];
        let decision = ZoneDecision {
            balancer: name.clone(),
            zone: pin.zone.clone(),
            action: DecisionAction::Pin,
            from: None,
            reason: pin.reason.clone(),
            at: now,
        };
        let patch = pin_patch(w, &config.topology_key, preferred, &decision);
        match patch_workload(&st.ctx.client, &ns, w, patch).await {
            Ok(()) => {
                st.metrics.pinned();
                tracing::info!(workload = %w.id(), namespace = %ns, zone = %pin.zone, reason = %pin.reason, "pinned");
                let note = format!("ZoneBalancer {name} pinned zone {}: {}", pin.zone, pin.reason);
                st.normal(&w.object_ref(), "ZonePinned", "Pin", note).await;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(m) = &plan.moved {
        let w = &workloads[m.workload];
        let decision = ZoneDecision {
            balancer: name.clone(),
            zone: m.to.clone(),
            action: DecisionAction::Move,
            from: Some(m.from.clone()),
            reason: m.reason.clone(),
            at: now,
        };
        let patch = match w.pin(&config.topology_key) {
            TemplatePin::Zone { via, .. } => move_patch(w, &config.topology_key, &via, &decision),
            _ => None,
        };
        if let Some(patch) = patch {
            match patch_workload(&st.ctx.client, &ns, w, patch).await {
                Ok(()) => {
                    st.metrics.moved();
                    tracing::info!(workload = %w.id(), namespace = %ns, from = %m.from, to = %m.to, reason = %m.reason, "moved");
                    let note =
                        format!("ZoneBalancer {name} moved {} from zone {} to {}: {}", w.id(), m.from, m.to, m.reason);
                    st.normal(&w.object_ref(), "ZoneMoved", "Move", note.clone()).await;
                    st.normal(&zb_ref, "ZoneMoved", "Move", note).await;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    let uid = zb.uid().unwrap_or_default();
    for issue in &plan.issues {
        st.warn_once(format!("issue/{uid}/{issue}"), &zb_ref, "ZoneNotPlaced", "Pin", issue.clone()).await;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Action::requeue(requeue)),
    }
}

async fn write_status(api: &Api<ZoneBalancer>, ns: &str, name: &str, own: &OwnStatus) -> Result<()> {
    let params = PatchParams::apply(field_manager::OPERATOR).force();
    api.patch_status(name, &params, &Patch::Apply(own.apply_body(name)))
        .await
        .map_err(|e| Error::kube(format!("writing the status of ZoneBalancer {ns}/{name}"), e))?;
    Ok(())
}

async fn patch_workload(client: &kube::Client, ns: &str, w: &Observed, patch: json_patch::Patch) -> Result<()> {
    let params = PatchParams { field_manager: Some(field_manager::OPERATOR.into()), ..PatchParams::default() };
    let patch = Patch::Json::<()>(patch);
    let action = format!("patching {} {ns}/{}", w.kind, w.name());
    let result = match w.kind {
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), ns).patch(w.name(), &params, &patch).await.map(drop)
        }
        _ => Api::<Deployment>::namespaced(client.clone(), ns).patch(w.name(), &params, &patch).await.map(drop),
    };
    result.map_err(|e| Error::kube(action, e))
}

/// The balancer's single-replica Deployments and StatefulSets, oldest first.
async fn list_in_scope(client: &kube::Client, ns: &str, config: &ZoneBalancerConfig) -> Result<Vec<Observed>> {
    let lp = ListParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| Error::kube(format!("listing Deployments in {ns}"), e))?;
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| Error::kube(format!("listing StatefulSets in {ns}"), e))?;
    let mut out: Vec<Observed> = deployments
        .items
        .into_iter()
        .map(Observed::from_deployment)
        .chain(statefulsets.items.into_iter().map(Observed::from_statefulset))
        .filter(|w| w.replicas == 1 && w.meta.deletion_timestamp.is_none() && config.selector.matches(&w.labels()))
        .collect();
    out.sort_by(|a, b| {
        let created = |w: &Observed| w.meta.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| a.id().cmp(&b.id()))
    });
    Ok(out)
}

/// The template's pod as the core sees it, without this balancer's own nodeSelector pin (so that a
/// pinned workload's feasibility elsewhere can be judged for a move).
fn template_pod(
    index: &LiveIndex,
    ns: &str,
    w: &Observed,
    drop_key: Option<&str>,
) -> Result<placement_core::model::Pod, String> {
    let mut spec = w.template.spec.clone().unwrap_or_default();
    if let (Some(key), Some(sel)) = (drop_key, spec.node_selector.as_mut()) {
        sel.remove(key);
    }
    let pod = KubePod {
        metadata: ObjectMeta {
            name: Some(format!("{}-template", w.name())),
            namespace: Some(ns.to_string()),
            labels: w.template.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    placement_kube::convert::pod(&pod, index.owners()).map_err(|e| e.to_string())
}

/// The plan's input from the index, and the workloads that could not be read.
#[allow(clippy::too_many_arguments)]
fn build_input(
    index: &LiveIndex,
    ns: &str,
    name: &str,
    config: &ZoneBalancerConfig,
    workloads: &[Observed],
    zb: &ZoneBalancer,
    options: &Options,
    now: jiff::Timestamp,
) -> (PlanInput, Vec<String>) {
    let key = config.topology_key.as_str();
    let mut zone_nodes: BTreeMap<String, Vec<&Node>> = BTreeMap::new();
    for n in index.counts().nodes() {
        if let Some(z) = n.labels.get(key) {
            zone_nodes.entry(z.clone()).or_default().push(n);
        }
    }
    let mut domains: BTreeSet<String> = zone_nodes
        .iter()
        .filter(|(_, ns)| ns.iter().any(|n| n.ready && !n.unschedulable))
        .map(|(z, _)| z.clone())
        .collect();
    domains.extend(config.zones.iter().cloned());

    let mut issues = Vec::new();
    let mut last_move = zb.status.as_ref().and_then(|s| s.last_moves.iter().map(|m| m.time.0).max());
    let mut inputs = Vec::with_capacity(workloads.len());
    let pins: Vec<TemplatePin> = workloads.iter().map(|w| w.pin(key)).collect();
    // Pods are counted in every zone something could be in: nodes' zones, declared ones, pinned ones.
    let mut all_zones: BTreeSet<String> = zone_nodes.keys().cloned().collect();
    all_zones.extend(config.zones.iter().cloned());
    all_zones.extend(pins.iter().filter_map(|p| match p {
        TemplatePin::Zone { zone, .. } => Some(zone.clone()),
        _ => None,
    }));
    let groups: Vec<NodeGroup> = all_zones.iter().map(|z| NodeGroup::label(key, z)).collect();

    for (w, pin) in workloads.iter().zip(pins) {
        let decision = w.decision().filter(|d| d.balancer == name);
        if let Some(d) = &decision
            && d.action == DecisionAction::Move
        {
            last_move = last_move.max(Some(d.at));
        }
        let (placement, drop_key) = match (&pin, &decision) {
            // Ours only in the forms this operator writes; a required affinity naming the same zone is
            // the user's rewrite of our pin, and theirs to keep.
            (TemplatePin::Zone { zone, via }, Some(d)) if d.zone == *zone && *via != Via::RequiredAffinity => {
                let drop = (*via == Via::NodeSelector).then_some(key);
                (Placement::Pinned { zone: zone.clone(), by: PinnedBy::Balancer }, drop)
            }
            (TemplatePin::Zone { zone, .. }, _) => {
                (Placement::Pinned { zone: zone.clone(), by: PinnedBy::Other }, None)
            }
            (TemplatePin::Constrained(why), _) => (Placement::Constrained(why.clone()), None),
            (TemplatePin::None, Some(d)) => (Placement::Released(d.zone.clone()), None),
            (TemplatePin::None, None) if w.decision().is_some() => {
                // Another balancer decided it once: never pinned twice.
                (Placement::Released(String::new()), None)
            }
            (TemplatePin::None, None) => (Placement::Unpinned, None),
        };
        let wants_feasibility =
            matches!(placement, Placement::Unpinned | Placement::Pinned { by: PinnedBy::Balancer, .. });
        let feasibility = if wants_feasibility {
            match template_pod(index, ns, w, drop_key) {
                Ok(pod) => zone_feasibility(
                    zone_nodes.iter().map(|(z, v)| (z.as_str(), v.iter().copied())),
                    &config.zones,
                    &config.topology_key,
                    &pod,
                ),
                Err(e) => {
                    issues.push(format!("{}: its pod template cannot be read: {e}", w.id()));
                    BTreeMap::new()
                }
            }
        } else {
            BTreeMap::new()
        };
        let counts = index.counts().group_counts(&w.workload_ref(ns), None, &groups);
        let pods = all_zones.iter().zip(counts).filter(|(_, n)| *n > 0).map(|(z, n)| (z.clone(), n)).collect();
        inputs.push(WorkloadInput { id: w.id(), placement, pods, feasibility, decided_at: decision.map(|d| d.at) });
    }
    let rebalance = config.rebalance_threshold.map(|threshold| Rebalance {
        threshold,
        min_interval: jiff::SignedDuration::try_from(options.min_move_interval).unwrap_or(jiff::SignedDuration::MAX),
        last_move,
    });
    (PlanInput { domains, workloads: inputs, rebalance, now }, issues)
}
