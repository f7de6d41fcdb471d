//! PodDistribution upkeep: keeps each distribution's status true (pods, reservations, target and drift
//! per group, for the newest revision), keeps `pod-deletion-cost` on the workload's pods so that a
//! scale-down removes pods from groups above target first, and, in strict mode, removes stale
//! reservations from the ledger the webhook replicas share in the status.
//!
//! **Why a kube-runtime `Controller`** (rather than a loop over a reflector): it already gives what
//! this needs and is easy to get wrong by hand: one reconcile at a time per distribution, triggers
//! coalesced (a ReplicaSet burst of 50 pod events becomes one reconcile after the debounce), a
//! requeue per object, and a reflector store of the distributions. It is driven by
//! * the PodDistribution watch (spec changes, and the webhook's strict-mode ledger writes);
//! * a **metadata-only** watch of pods (`PartialObjectMeta`: labels, annotations, owners; no spec or
//!   status), each event mapped through the pod's owner chain to the distributions that target its
//!   workload: the pods of a workload changed, so its counts may have;
//! * a periodic requeue ([`UpkeepConfig::requeue`], 30 s), which also catches node relabelling (a
//!   node's labels decide its pods' group);
//! * this instance becoming the leader: everything is reconciled at once.
//!
//! Only the leader writes (status, pod annotations, the ledger); a standby's reconcile does nothing
//! but requeue, so its caches stay warm. Status is written with server-side apply, field manager
//! `placement-operator`, forced, and carries only the fields this controller owns
//! (`observedGeneration`, `conditions`, `revision`, `groups`): the webhook's `reservations` and
//! `confirmed`, which it writes with a `resourceVersion` precondition, are never in the patch and so
//! never clobbered. The status is written only when it differs from what is there.
//!
//! Events (best effort, on the PodDistribution): `OffTarget` (Warning) when the distribution goes off
//! target, `OnTarget` when it is back, `InvalidSpec` when the spec becomes invalid, `ReconcileFailed`
//! when a reconcile fails with an error different from the last one; never one per reconcile.

pub mod costs;
pub mod ledger;
pub mod metrics;
pub mod observe;
pub mod status;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::events::Note;
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use metrics::DistributionMetrics;
use placement_core::model::WorkloadKind;
use placement_kube::crd::conditions::{
    Condition, ConditionStatus, READY, REASON_INVALID_SPEC, StatusConditions, find_condition, set_condition,
};
use placement_kube::crd::{CrdError, PodDistribution, PodDistributionStatus, SharedLedger};
use placement_kube::field_manager;
use placement_kube::live::SharedIndex;
use prometheus_client::registry::Registry;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `Ready=False`: an older PodDistribution targets the same workload.
pub const REASON_TARGET_CONFLICT: &str = "TargetConflict";

/// Timings and bounds of the upkeep.
#[derive(Clone, Debug)]
pub struct UpkeepConfig {
    /// Reconcile every distribution at least this often.
    pub requeue: Duration,
    /// Retry a failed reconcile after this long.
    pub retry: Duration,
    /// Wait this long after a trigger for more before reconciling (coalesces pod bursts).
    pub debounce: Duration,
    /// Distributions reconciled at the same time.
    pub concurrency: u16,
    /// `pod-deletion-cost` patches per reconcile; the rest follow in the next one.
    pub max_cost_patches: usize,
    /// Writes of the shared ledger per reconcile (each 409 costs one and a re-read).
    pub ledger_attempts: u32,
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        UpkeepConfig {
            requeue: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            debounce: Duration::from_millis(500),
            concurrency: 4,
            max_cost_patches: 50,
            ledger_attempts: 5,
        }
    }
}

/// The upkeep controller with the default [`UpkeepConfig`]; runs until dropped.
pub fn controller(ctx: Context, registry: &mut Registry) -> impl Future<Output = ()> + Send + 'static {
    controller_with(ctx, registry, UpkeepConfig::default())
}

/// The upkeep controller; its metrics are registered in `registry` at once.
pub fn controller_with(
    ctx: Context,
    registry: &mut Registry,
    config: UpkeepConfig,
) -> impl Future<Output = ()> + Send + 'static {
    let metrics = DistributionMetrics::register(registry);
    let distributions: Api<PodDistribution> = Api::all(ctx.client.clone());
    let pods: Api<PartialObjectMeta<Pod>> = Api::all(ctx.client.clone());
    let controller = Controller::new(distributions, watcher::Config::default())
        .with_config(ControllerConfig::default().debounce(config.debounce).concurrency(config.concurrency));
    let store = controller.store();
    let (mapper_store, index) = (store.clone(), ctx.index.clone());
    let became_leader = futures::stream::unfold(ctx.leadership.watch(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    });
    let upkeep = Arc::new(Upkeep { ctx, metrics, config, store, memory: Mutex::default() });
    let controller = controller
        .watches(pods, watcher::Config::default(), move |pod| distributions_of_pod(&mapper_store, &index, &pod))
        .reconcile_all_on(became_leader);
    async move {
        controller
            .run(reconcile, error_policy, upkeep)
            .for_each(|result| {
                if let Err(e) = result {
                    // Reconcile errors are logged and counted in `reconcile`; these are the
                    // controller's own (a watch failing, an object gone before its reconcile).
                    tracing::debug!(error = %e, "distribution controller");
                }
                futures::future::ready(())
            })
            .await;
    }
}

/// The distributions in the pod's namespace whose target is the pod's workload (by owner chain).
fn distributions_of_pod(
    store: &Store<PodDistribution>,
    index: &SharedIndex,
    pod: &PartialObjectMeta<Pod>,
) -> Vec<ObjectRef<PodDistribution>> {
    let Some(ns) = pod.metadata.namespace.as_deref() else { return vec![] };
    let ownership = {
        let index = index.read();
        placement_kube::convert::ownership(&pod.metadata, ns, index.owners())
    };
    let Some(workload) = ownership.workload else { return vec![] };
    store
        .state()
        .iter()
        .filter(|d| {
            d.metadata.namespace.as_deref() == Some(ns)
                && d.spec.target_ref.name == workload.name
                && d.spec.target_ref.kind.to_core() == workload.kind
        })
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

/// What the controller remembers per distribution between reconciles (only for metrics and for not
/// repeating Events).
#[derive(Default)]
struct Memory {
    groups_off_target: u64,
    last_error: Option<String>,
}

struct Upkeep {
    ctx: Context,
    metrics: DistributionMetrics,
    config: UpkeepConfig,
    store: Store<PodDistribution>,
    memory: Mutex<HashMap<ObjectRef<PodDistribution>, Memory>>,
}

/// Reconciles one PodDistribution, with metrics and an Event on a new error, in a `reconcile` span naming it.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "PodDistribution", object = %ObjectRef::from_obj(&*dist)))]
async fn reconcile(dist: Arc<PodDistribution>, upkeep: Arc<Upkeep>) -> Result<Action> {
    let started = Instant::now();
    let key = ObjectRef::from_obj(&*dist);
    let result = upkeep.reconcile(&dist, &key).await;
    upkeep.metrics.reconcile_took(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => upkeep.remember(&key, |m| m.last_error = None),
        Err(e) => {
            upkeep.metrics.reconcile_error(e.metric_label());
            let text = e.to_string();
            tracing::warn!(distribution = %key, error = %text, "PodDistribution reconcile failed");
            let mut repeated = true;
            upkeep.remember(&key, |m| {
                repeated = m.last_error.as_deref() == Some(text.as_str());
                m.last_error = Some(text.clone());
            });
            if !repeated && upkeep.ctx.leadership.is_leader() {
                let note =
                    Note { warning: true, reason: "ReconcileFailed".into(), action: "Reconcile".into(), note: text };
                upkeep.ctx.events.publish(&dist.object_ref(&()), note).await;
            }
        }
    }
    result
}

fn error_policy(_: Arc<PodDistribution>, _: &Error, upkeep: Arc<Upkeep>) -> Action {
    Action::requeue(upkeep.config.retry)
}

impl Upkeep {
    /// Asked again before each write: leadership can be lost while a reconcile reads.
    fn leads(&self) -> bool {
        self.ctx.leadership.is_leader()
    }

    fn remember(&self, key: &ObjectRef<PodDistribution>, f: impl FnOnce(&mut Memory)) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        f(memory.entry(key.clone()).or_default());
        // Forget distributions that are gone, and publish the total.
        memory.retain(|k, _| k == key || self.store.get(k).is_some());
        self.metrics.set_groups_off_target(memory.values().map(|m| m.groups_off_target).sum());
    }

    async fn reconcile(&self, dist: &PodDistribution, key: &ObjectRef<PodDistribution>) -> Result<Action> {
        let requeue = Action::requeue(self.config.requeue);
        if !self.ctx.leadership.is_leader() {
            // A standby writes nothing and reports nothing; it takes over when it leads.
            self.remember(key, |m| m.groups_off_target = 0);
            return Ok(requeue);
        }
        if !self.ctx.index.is_ready() {
            // Without the nodes every pod would look groupless; wait for the first list.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let ns = dist.namespace().unwrap_or_default();
        let name = dist.name_any();
        let api: Api<PodDistribution> = Api::namespaced(self.ctx.client.clone(), &ns);
        let generation = dist.metadata.generation;
        let config = match dist.spec.to_core(&ns) {
            Ok(config) => config,
            Err(e) => {
                self.invalid_spec(&api, dist, &e).await?;
                self.remember(key, |m| m.groups_off_target = 0);
                return Ok(requeue);
            }
        };
        let rival = self.older_rival(dist);
        let observed = observe::observe(&self.ctx, &config.target, &config.rule).await?;

        let mut current = dist.clone();
        if config.strict && self.leads() {
            let expired = ledger::expire(&api, current, self.config.ledger_attempts, jiff::Timestamp::now).await?;
            if expired.removed > 0 {
                tracing::info!(distribution = %key, removed = expired.removed, "stale reservations expired");
                self.metrics.reservations_expired(expired.removed);
            }
            current = expired.object;
        }

        let now = jiff::Timestamp::now();
        let apportionment = &config.rule.apportionment;
        let names = apportionment.names();
        let pods = observed.pods_per_group(names.len());
        let reserved = if config.strict {
            status::reserved_by_group(
                &current.shared_ledger(),
                &config.target,
                observed.revision.as_deref(),
                names,
                now,
            )
        } else {
            vec![0; names.len()]
        };
        let rows = status::rows(apportionment, &pods, &reserved);
        let off = status::off_target(&rows).count() as u64;

        let previous = current.status.clone().unwrap_or_default();
        let mut conditions = previous.conditions.clone();
        let target = format!("{} {}/{}", config.target.kind, ns, config.target.name);
        let ready = match &rival {
            None => Condition::ready(format!("distributing {target} over {} groups", names.len()), generation, now),
            Some(other) => Condition::new(
                READY,
                ConditionStatus::False,
                REASON_TARGET_CONFLICT,
                format!(
                    "PodDistribution {ns}/{other} is older and also targets {target}: it applies, this one does \
                     not (its counts are shown, its deletion costs are not set); delete one of them"
                ),
                generation,
                now,
            ),
        };
        set_condition(&mut conditions, ready);
        let on_target = status::on_target_condition(
            &rows,
            observed.in_no_group(),
            observed.found.then_some(&*target),
            generation,
            now,
        );
        let was = find_condition(&previous.conditions, status::ON_TARGET).map(|c| c.status);
        set_condition(&mut conditions, on_target.clone());
        let desired = PodDistributionStatus {
            observed_generation: generation,
            conditions,
            revision: observed.revision.clone(),
            groups: rows.iter().map(status::GroupRow::to_status).collect(),
            ..Default::default()
        };
        if !self.leads() {
            return Ok(requeue);
        }
        if !owned_fields_equal(&previous, &desired) {
            self.apply_status(&api, &name, &desired).await?;
        }
        match (was, on_target.status) {
            (Some(ConditionStatus::False), ConditionStatus::False) | (_, ConditionStatus::Unknown) => {}
            (_, ConditionStatus::False) => self.publish(dist, true, "OffTarget", on_target.message.clone()).await,
            (Some(ConditionStatus::False), ConditionStatus::True) => {
                self.publish(dist, false, "OnTarget", on_target.message.clone()).await
            }
            _ => {}
        }
        self.remember(key, |m| m.groups_off_target = off);

        if config.target.kind == WorkloadKind::Deployment && observed.found && rival.is_none() {
            let changes = costs::plan(apportionment, &observed.pods);
            if !changes.is_empty() && self.leads() {
                let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
                let applied = costs::apply(&pods, &changes, self.config.max_cost_patches, &self.metrics).await?;
                tracing::debug!(distribution = %key, patched = applied.patched, deferred = applied.deferred, "deletion costs");
                if applied.deferred > 0 {
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
            }
        }
        Ok(requeue)
    }

    /// The name of an older distribution with the same target, if any: of several distributions of one
    /// workload only the oldest (then the first by name) sets deletion costs, so that two of them never
    /// patch the same pods back and forth.
    fn older_rival(&self, dist: &PodDistribution) -> Option<String> {
        let key = |d: &PodDistribution| (d.metadata.creation_timestamp.clone().map(|t| t.0), d.name_any());
        let mine = key(dist);
        self.store
            .state()
            .iter()
            .filter(|d| {
                d.metadata.namespace == dist.metadata.namespace
                    && d.spec.target_ref == dist.spec.target_ref
                    && d.metadata.uid != dist.metadata.uid
                    && key(d) < mine
            })
            .map(|d| key(d))
            .min()
            .map(|(_, name)| name)
    }

    /// `Ready=False` naming the field; an Event when this is news.
    async fn invalid_spec(&self, api: &Api<PodDistribution>, dist: &PodDistribution, e: &CrdError) -> Result<()> {
        let now = jiff::Timestamp::now();
        let generation = dist.metadata.generation;
        let previous = dist.status.clone().unwrap_or_default();
        let mut desired = PodDistributionStatus {
            conditions: previous.conditions.clone(),
            revision: previous.revision.clone(),
            groups: previous.groups.clone(),
            ..Default::default()
        };
        let news = desired.record_invalid_spec(e, generation, now);
        desired.set_condition(Condition::new(
            status::ON_TARGET,
            ConditionStatus::Unknown,
            REASON_INVALID_SPEC,
            "the spec is invalid: see the Ready condition",
            generation,
            now,
        ));
        if !owned_fields_equal(&previous, &desired) {
            self.apply_status(api, &dist.name_any(), &desired).await?;
        }
        if news {
            self.publish(dist, true, REASON_INVALID_SPEC, e.to_string()).await;
        }
        Ok(())
    }

    /// Server-side apply of the fields this controller owns, and only those.
    async fn apply_status(&self, api: &Api<PodDistribution>, name: &str, s: &PodDistributionStatus) -> Result<()> {
        let mut status = json!({"conditions": s.conditions, "groups": s.groups});
        if let Some(g) = s.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(r) = &s.revision {
            status["revision"] = json!(r);
        }
        let body = json!({
            "apiVersion": "placement.dev/v1alpha1",
            "kind": "PodDistribution",
            "metadata": {"name": name},
            "status": status,
        });
        api.patch_status(name, &PatchParams::apply(field_manager::OPERATOR).force(), &Patch::Apply(&body))
            .await
            .map_err(|e| Error::kube(format!("writing the status of PodDistribution {name}"), e))?;
        Ok(())
    }

    async fn publish(&self, dist: &PodDistribution, warning: bool, reason: &str, note: String) {
        let note = Note { warning, reason: reason.into(), action: "Reconcile".into(), note };
        self.ctx.events.publish(&dist.object_ref(&()), note).await;
    }
}

/// Whether the fields this controller writes are already as wanted.
fn owned_fields_equal(current: &PodDistributionStatus, desired: &PodDistributionStatus) -> bool {
    current.observed_generation == desired.observed_generation
        && current.conditions == desired.conditions
        && current.revision == desired.revision
        && current.groups == desired.groups
}
