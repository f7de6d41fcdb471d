//! The rebalancer controller: for every `RebalancePolicy`, once per its `interval`, observe usage, plan
//! with the core planner, reserve the plan in status, evict through the eviction subresource, then
//! settle the status with what the API server said.
//!
//! Decisions made here, and why:
//!
//! * **Only the leader** reads state, writes status or evicts; a standby does nothing (the state lives
//!   in status, so a new leader continues where the old one stopped). Leadership is checked again
//!   before the status write and before each eviction; after losing it, the pass stops without writing,
//!   leaving its reservations in place (budgets over-counted, never under-counted).
//! * **The state is read with a GET**, not from a cache, at the start of each pass, and written back
//!   with its resourceVersion: a status changed meanwhile (another instance during a failover, a stale
//!   cache) gives 409 Conflict, and the pass evicts nothing. The next tick starts over.
//! * **The interval is measured from `status.state.lastObserved`**, so a restart or a failover neither
//!   observes early (which would speed up the K/M hysteresis) nor forgets when it last planned.
//! * **The index must be synced** (every watched kind listed once) before the first pass: planning over
//!   a half-listed cluster would miss pods, PDBs and workloads.
//! * **Budgets are cluster-wide**: every RebalancePolicy is listed at each pass (from the API server),
//!   and the other policies' live evictions count in this pass's budgets and backoffs (see
//!   [`super::observe`]); each policy still writes only its own history.
//! * **Dry-run** runs the same pass, writes the same status (marked dry-run), publishes the same Events
//!   with `DryRun` in the reason and counts `dry_run` metrics; it never calls the eviction API.

use super::evictor::{Evictor, Outcome};
use super::metrics::{self, BlockedLabels, BudgetLabels, EvictionLabels, Metrics, PolicyLabels, SigmaLabels};
use super::observe::{self, Inputs};
use super::outcome;
use super::pass;
use super::report;
use super::state;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::events::Note;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ListParams, PostParams};
use placement_core::model::PodKey;
use placement_core::rebalance::{Plan, RebalancePolicy as CorePolicy, UtilizationSource};
use placement_kube::crd::conditions::{REASON_INVALID_SPEC, StatusConditions};
use placement_kube::crd::rebalance_policy::EvictionEntry;
use placement_kube::crd::{
    Condition, ConditionStatus, NodeClass, RebalancePolicy, RebalancePolicySpec, RebalancePolicyStatus, WorkloadSLO,
    set_condition,
};
use placement_kube::live::Reflected;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// Most "blocked" Events published per pass (the status lists up to 50, the metrics count all).
const BLOCKED_EVENTS_PER_PASS: usize = 10;

/// Longest wait for the metrics.k8s.io lists of one pass.
const METRICS_TIMEOUT: Duration = Duration::from_secs(30);

/// How the controller paces itself.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often the loop looks for policies that are due.
    pub tick: Duration,
    /// Use this instead of every policy's `spec.interval` (tests).
    pub interval_override: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options { tick: Duration::from_secs(1), interval_override: None }
    }
}

/// What a pass did.
#[derive(Debug)]
pub enum PassOutcome {
    /// Not the leader: nothing read or written.
    NotLeader,
    /// The live index has not listed every kind yet.
    IndexNotReady,
    /// The policy's interval has not passed since its last observation.
    NotDue {
        next: Timestamp,
    },
    Done(Box<PassReport>),
}

/// A completed pass.
/// What one pass read besides the policy: the planner's inputs and the guard rails it reports on.
struct PassInputs {
    inputs: Inputs,
    slos: Vec<WorkloadSLO>,
    classes: Vec<NodeClass>,
}

#[derive(Debug)]
pub struct PassReport {
    pub plan: Plan,
    /// Each eviction attempted (live mode), with the API server's answer.
    pub outcomes: Vec<(PodKey, Outcome)>,
    /// The status as written (after settling).
    pub status: RebalancePolicyStatus,
    pub notes: Vec<String>,
}

/// The rebalancer of one operator instance.
#[derive(Clone)]
pub struct Rebalancer {
    ctx: Context,
    evictor: Evictor,
    metrics: Metrics,
    options: Options,
}

/// The rebalancer loop, ready to spawn: `evict_client` must not retry 429 by itself (see
/// [`super::evictor::client_without_retry`]).
pub fn controller(ctx: Context, registry: &mut Registry) -> impl Future<Output = ()> + Send + 'static {
    let evictor = Evictor::new(ctx.eviction_client.clone());
    Rebalancer::new(ctx, evictor, registry).run()
}

fn policy_ref(p: &RebalancePolicy) -> ObjectReference {
    ObjectReference {
        api_version: Some(placement_kube::crd::API_VERSION.into()),
        kind: Some("RebalancePolicy".into()),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn pod_ref(pod: &PodKey) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        ..ObjectReference::default()
    }
}

impl Rebalancer {
    /// Registers the metrics in `registry`.
    pub fn new(ctx: Context, evictor: Evictor, registry: &mut Registry) -> Self {
        Rebalancer { ctx, evictor, metrics: Metrics::register(registry), options: Options::default() }
    }

    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    fn interval(&self, spec: &RebalancePolicySpec) -> Duration {
        self.options.interval_override.unwrap_or_else(|| spec.interval().unwrap_or(Duration::from_secs(60)))
    }

    /// Runs forever: every tick, a pass for each policy that is due (while leading).
    pub async fn run(self) {
        let policies = Reflected::<RebalancePolicy>::spawn(Api::all(self.ctx.client.clone()));
        // When each policy may be tried next: paced locally too, so that a failing pass (or a stale
        // cache) is retried once per interval, not once per tick.
        let mut next_try: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::time::sleep(self.options.tick).await;
            if !self.ctx.leadership.is_leader() || !self.ctx.index.is_ready() {
                continue;
            }
            let now = Timestamp::now();
            for p in policies.store().state() {
                let Some(name) = p.metadata.name.clone() else { continue };
                let interval = self.interval(&p.spec);
                let last = p.status.as_ref().and_then(|s| s.state.last_observed.as_ref()).map(|t| t.0);
                let cached_due = last.is_none_or(|l| next_pass(l, interval) <= now);
                if !cached_due || next_try.get(&name).is_some_and(|t| Instant::now() < *t) {
                    continue;
                }
                let mut retry = instant_after(interval);
                match self.pass(&name, false).await {
                    Ok(PassOutcome::Done(r)) => tracing::info!(
                        policy = %name,
                        dry_run = r.plan.dry_run,
                        planned = r.plan.evictions.len(),
                        evicted = r.outcomes.iter().filter(|(_, o)| *o == Outcome::Evicted).count(),
                        stop = %r.plan.stop,
                        "rebalance pass"
                    ),
                    Ok(PassOutcome::NotDue { next }) => {
                        // The cache was behind the status: try again when the status says.
                        let wait = Duration::try_from(next.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
                        retry = instant_after(wait.min(interval));
                    }
                    Ok(other) => tracing::debug!(policy = %name, outcome = ?other, "rebalance pass skipped"),
                    Err(e) => tracing::warn!(policy = %name, error = %e, "rebalance pass failed"),
                }
                next_try.insert(name, retry);
            }
            let names: std::collections::BTreeSet<String> =
                policies.store().state().iter().filter_map(|p| p.metadata.name.clone()).collect();
            next_try.retain(|name, _| {
                let keep = names.contains(name);
                if !keep {
                    self.metrics.forget(name);
                }
                keep
            });
        }
    }

    /// One pass for the policy `name`. Without `force`, a policy whose interval has not passed since
    /// its last observation is left alone. Runs in a `rebalance_pass` span naming the policy.
    #[tracing::instrument(name = "rebalance_pass", skip_all, fields(policy = %name, force = force))]
    pub async fn pass(&self, name: &str, force: bool) -> Result<PassOutcome> {
        let started = Instant::now();
        let result = self.pass_inner(name, force).await;
        self.metrics
            .duration
            .get_or_create(&PolicyLabels { policy: name.into() })
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics.error(name, e.metric_label());
            self.report_failure(name, e).await;
        }
        result
    }

    /// Makes a failed pass visible in status (`Ready=False`, reason `PassFailed`, the error as the
    /// message) and as a warning Event. Conflicts are transient (the next pass starts over) and an
    /// invalid spec has its own condition, so neither is reported here. Best effort.
    async fn report_failure(&self, name: &str, error: &Error) {
        if matches!(error, Error::Spec { .. }) || error.metric_label() == "conflict" || !self.ctx.leadership.is_leader()
        {
            return;
        }
        let api = Api::<RebalancePolicy>::all(self.ctx.client.clone());
        let Ok(policy) = api.get(name).await else { return };
        let message = format!("the last pass failed: {error}");
        self.ctx
            .events
            .publish(
                &policy_ref(&policy),
                Note { warning: true, reason: "PassFailed".into(), action: "Plan".into(), note: message.clone() },
            )
            .await;
        let mut status = policy.status.clone().unwrap_or_default();
        let condition = Condition::new(
            "Ready",
            ConditionStatus::False,
            "PassFailed",
            message,
            policy.metadata.generation,
            pass::now_seconds(Timestamp::now()),
        );
        if !set_condition(&mut status.conditions, condition) {
            return;
        }
        let mut object = policy;
        object.metadata.managed_fields = None;
        object.status = Some(status);
        if let Err(e) = api.replace_status(name, &PostParams::default(), &object).await {
            tracing::warn!(policy = %name, error = %e, "could not report the failed pass in status");
        }
    }

    /// One pass: read (the policy, then usage and guard rails), plan (the pure pass), write (reserve the
    /// plan in status, evict, settle), report (metrics, Events, guard-rail statuses).
    async fn pass_inner(&self, name: &str, force: bool) -> Result<PassOutcome> {
        if !self.ctx.leadership.is_leader() {
            return Ok(PassOutcome::NotLeader);
        }
        if !self.ctx.index.is_ready() {
            return Ok(PassOutcome::IndexNotReady);
        }
        let api = Api::<RebalancePolicy>::all(self.ctx.client.clone());
        let policy = api.get(name).await.map_err(|e| Error::kube(format!("reading RebalancePolicy {name}"), e))?;
        let now = pass::now_seconds(Timestamp::now());
        let previous = policy.status.clone().unwrap_or_default();
        let core = self.valid_spec(&api, &policy, &previous, now).await?;
        if !force && let Some(last) = previous.state.last_observed.as_ref().map(|t| t.0) {
            let next = next_pass(last, self.interval(&policy.spec));
            if next > now {
                return Ok(PassOutcome::NotDue { next });
            }
        }
        let read = self.read_inputs(name, &core).await?;

        let result = pass::run(&core, &state::load(&previous.state, core.dry_run), &read.inputs, now, 1);
        let plan = result.plan;
        let generation = policy.metadata.generation;
        let mut status = state::reserve(&previous, &result.observed, &plan, &read.inputs.notes, generation, now).status;

        let Some(written) = self.reserve_in_status(&api, &policy, &status).await? else {
            return Ok(PassOutcome::NotLeader);
        };
        let outcomes = if plan.dry_run {
            self.announce_dry_run(name, &plan).await;
            Vec::new()
        } else {
            let Some(outcomes) = self.evict_planned(name, &plan, &mut status, now).await else {
                return Ok(PassOutcome::NotLeader);
            };
            self.settle_in_status(&api, name, written, &status, !outcomes.is_empty()).await;
            outcomes
        };

        self.record_plan(name, &plan, &status, &read.inputs.cluster_history, &core, now).await;
        self.report_guard_rails(name, &read.slos, &read.classes, &read.inputs, now).await;
        Ok(PassOutcome::Done(Box::new(PassReport { plan, outcomes, status, notes: read.inputs.notes })))
    }

    /// The policy's spec in the core's terms; an invalid one is reported (status, Event) and fails the
    /// pass with an error naming the field.
    async fn valid_spec(
        &self,
        api: &Api<RebalancePolicy>,
        policy: &RebalancePolicy,
        previous: &RebalancePolicyStatus,
        now: Timestamp,
    ) -> Result<CorePolicy> {
        let e = match policy.spec.to_core() {
            Ok(core) => return Ok(core),
            Err(e) => e,
        };
        self.write_invalid(api, policy, previous, &e, now).await;
        let note = Note {
            warning: true,
            reason: REASON_INVALID_SPEC.into(),
            action: "Plan".into(),
            note: format!("not planning: {e}"),
        };
        self.ctx.events.publish(&policy_ref(policy), note).await;
        let name = policy.metadata.name.clone().unwrap_or_default();
        Err(Error::Spec { object: format!("RebalancePolicy {name}"), source: e })
    }

    /// What a pass plans from: usage (when the policy measures it), the guard rails, the other
    /// policies' evictions, and the index's snapshot, read last so that it is the freshest.
    async fn read_inputs(&self, name: &str, core: &CorePolicy) -> Result<PassInputs> {
        let client = &self.ctx.client;
        let metrics = match core.source {
            UtilizationSource::Metrics => {
                let fetch = observe::fetch_metrics(self.evictor.client());
                Some(tokio::time::timeout(METRICS_TIMEOUT, fetch).await.map_err(|_| {
                    Error::Metrics(format!("metrics.k8s.io did not answer within {METRICS_TIMEOUT:?}"))
                })??)
            }
            UtilizationSource::Requests => None,
        };
        let (slos, classes) = observe::fetch_guard_rails(client).await?;
        let selectors = observe::fetch_selectors(client, &observe::slo_targets(&slos)).await?;
        let cluster_history = observe::others_history(&observe::fetch_policies(client).await?, name);
        let mut inputs = Inputs { snapshot: self.ctx.index.read().snapshot(), cluster_history, ..Inputs::default() };
        let claims = observe::fetch_claims(client, &inputs.snapshot).await.map_err(|e| e.to_string());
        observe::resolve_claims(&mut inputs, claims);
        if let Some((nodes, pods)) = &metrics {
            observe::attach_usage(&mut inputs, nodes, pods);
        }
        observe::add_slos(&mut inputs, &slos, &selectors);
        observe::add_classes(&mut inputs, &classes);
        Ok(PassInputs { inputs, slos, classes })
    }

    /// Writes the reserved status (the plan's evictions in the history before the first one), with the
    /// resourceVersion read: a status changed meanwhile gives 409 and the pass evicts nothing. `None`
    /// once leadership is lost.
    async fn reserve_in_status(
        &self,
        api: &Api<RebalancePolicy>,
        policy: &RebalancePolicy,
        status: &RebalancePolicyStatus,
    ) -> Result<Option<RebalancePolicy>> {
        if !self.ctx.leadership.is_leader() {
            return Ok(None);
        }
        let name = policy.metadata.name.clone().unwrap_or_default();
        let mut object = policy.clone();
        object.metadata.managed_fields = None;
        object.status = Some(status.clone());
        let written = api
            .replace_status(&name, &PostParams::default(), &object)
            .await
            .map_err(|e| Error::kube(format!("writing the status of RebalancePolicy {name} before evicting"), e))?;
        Ok(Some(written))
    }

    /// Evicts the plan's pods in order, publishing and counting each outcome ([`outcome::of_eviction`])
    /// and settling `status`. `None` if leadership is lost midway: the rest stay reserved, not done.
    async fn evict_planned(
        &self,
        name: &str,
        plan: &Plan,
        status: &mut RebalancePolicyStatus,
        now: Timestamp,
    ) -> Option<Vec<(PodKey, Outcome)>> {
        let mut outcomes = Vec::new();
        let mut settled = Vec::new();
        for e in &plan.evictions {
            if !self.ctx.leadership.is_leader() {
                tracing::warn!(policy = %name, "leadership lost during a pass: the remaining evictions stay reserved, not done");
                return None;
            }
            let result = self.evictor.evict(&e.pod, e.uid.as_deref()).await;
            let consequence = outcome::of_eviction(&result, &e.reason);
            let mode = metrics::mode(false);
            let labels =
                EvictionLabels { policy: name.into(), mode: mode.into(), outcome: result.metric_label().into() };
            self.metrics.evictions.get_or_create(&labels).inc();
            if let Some(budget) = consequence.blocked {
                let labels = BlockedLabels { policy: name.into(), mode: mode.into(), budget: budget.into() };
                self.metrics.blocked.get_or_create(&labels).inc();
            }
            self.ctx.events.publish(&pod_ref(&e.pod), consequence.note).await;
            settled.push((e.pod.clone(), e.from.clone(), consequence.settled));
            outcomes.push((e.pod.clone(), result));
        }
        state::settle(status, &settled, now);
        Some(outcomes)
    }

    /// Writes the settled status over the reserved one. Best effort: if it fails, the reservations
    /// stay and the budgets are over-counted until they age out.
    async fn settle_in_status(
        &self,
        api: &Api<RebalancePolicy>,
        name: &str,
        mut written: RebalancePolicy,
        status: &RebalancePolicyStatus,
        anything_settled: bool,
    ) {
        if !anything_settled || !self.ctx.leadership.is_leader() {
            return;
        }
        written.metadata.managed_fields = None;
        written.status = Some(status.clone());
        if let Err(e) = api.replace_status(name, &PostParams::default(), &written).await {
            let e = Error::kube(format!("writing the status of RebalancePolicy {name} after evicting"), e);
            tracing::warn!(policy = %name, error = %e, "could not settle the pass");
            self.metrics.error(name, e.metric_label());
        }
    }

    /// A dry run's Events and counters: what would have been evicted, and why.
    async fn announce_dry_run(&self, name: &str, plan: &Plan) {
        for e in &plan.evictions {
            self.metrics.dry_run_evictions.get_or_create(&PolicyLabels { policy: name.into() }).inc();
            let labels =
                EvictionLabels { policy: name.into(), mode: metrics::mode(true).into(), outcome: "would_evict".into() };
            self.metrics.evictions.get_or_create(&labels).inc();
            self.ctx.events.publish(&pod_ref(&e.pod), outcome::of_dry_run(&e.reason)).await;
        }
    }

    /// Gauges, blocked counters and blocked Events for a plan.
    async fn record_plan(
        &self,
        name: &str,
        plan: &Plan,
        status: &RebalancePolicyStatus,
        others: &[placement_core::rebalance::EvictionRecord],
        limits: &CorePolicy,
        now: Timestamp,
    ) {
        let m = &self.metrics;
        let policy = PolicyLabels { policy: name.into() };
        let scores: Vec<(String, f64)> = plan.nodes.iter().map(|n| (n.node.clone(), n.before)).collect();
        m.set_node_scores(name, &scores);
        m.sigma.get_or_create(&SigmaLabels { policy: name.into(), when: "before".into() }).set(plan.sigma_before);
        m.sigma.get_or_create(&SigmaLabels { policy: name.into(), when: "after".into() }).set(plan.sigma_after);
        m.hot_nodes.get_or_create(&policy).set(plan.hot_nodes().count() as i64);
        m.cold_nodes.get_or_create(&policy).set(plan.cold_nodes().count() as i64);
        let mode = metrics::mode(plan.dry_run);
        let mut published = 0;
        for s in plan.skipped.iter().filter(|s| s.reason.is_budget()) {
            m.blocked
                .get_or_create(&BlockedLabels {
                    policy: name.into(),
                    mode: mode.into(),
                    budget: s.reason.metric_label().into(),
                })
                .inc();
            if published < BLOCKED_EVENTS_PER_PASS {
                published += 1;
                let reason = if plan.dry_run { "DryRunEvictionBlocked" } else { "EvictionBlocked" };
                let note = Note {
                    warning: false,
                    reason: reason.into(),
                    action: "Evict".into(),
                    note: format!("not evicted from hot node {}: {}", s.node, s.why),
                };
                self.ctx.events.publish(&pod_ref(&s.pod), note).await;
            }
        }
        // Budgets remaining for the next pass, counted as the planner counts them.
        let minute_ago = now - SignedDuration::from_secs(60);
        let used_minute = (status.state.history.iter().filter(|e| e.at.0 > minute_ago && (plan.dry_run || !e.dry_run)))
            .count() as i64
            + others.iter().filter(|r| r.at > minute_ago).count() as i64;
        let remaining = [
            ("cluster_per_minute", i64::from(limits.max_evictions_per_minute) - used_minute),
            ("plan", i64::from(limits.max_evictions_per_plan) - plan.evictions.len() as i64),
        ];
        for (budget, left) in remaining {
            m.budget_remaining
                .get_or_create(&BudgetLabels { policy: name.into(), budget: budget.into() })
                .set(left.max(0));
        }
    }

    /// Writes the WorkloadSLO and NodeClass statuses (see [`super::report`]); best effort.
    async fn report_guard_rails(
        &self,
        name: &str,
        slos: &[WorkloadSLO],
        classes: &[NodeClass],
        inputs: &Inputs,
        now: Timestamp,
    ) {
        if (slos.is_empty() && classes.is_empty()) || !self.ctx.leadership.is_leader() {
            return;
        }
        // Evictions of every policy count for an SLO's hour.
        let history: Vec<EvictionEntry> = match Api::<RebalancePolicy>::all(self.ctx.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items.into_iter().filter_map(|p| p.status).flat_map(|s| s.state.history).collect(),
            Err(e) => {
                tracing::warn!(policy = %name, error = %e, "could not list RebalancePolicies for the WorkloadSLO status");
                self.metrics.error(name, "guard_rail_status");
                return;
            }
        };
        let slo_updates = report::slo_statuses(slos, inputs, &history, now);
        let class_updates = report::class_statuses(classes, inputs, now);
        if report::write(&self.ctx.client, slo_updates, class_updates).await > 0 {
            self.metrics.error(name, "guard_rail_status");
        }
    }

    async fn write_invalid(
        &self,
        api: &Api<RebalancePolicy>,
        policy: &RebalancePolicy,
        previous: &RebalancePolicyStatus,
        error: &placement_kube::crd::CrdError,
        now: Timestamp,
    ) {
        let mut status = previous.clone();
        status.record_invalid_spec(error, policy.metadata.generation, now);
        if status == *previous || !self.ctx.leadership.is_leader() {
            return;
        }
        let mut object = policy.clone();
        object.metadata.managed_fields = None;
        object.status = Some(status);
        let name = policy.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api.replace_status(&name, &PostParams::default(), &object).await {
            tracing::warn!(policy = %name, error = %e, "could not report the invalid spec in status");
        }
    }
}

/// When the pass after one at `last` is due. `last` comes from the policy's status, which anyone with
/// status rights can write (`9999-12-31T23:59:59Z`): the sum saturates rather than panics.
fn next_pass(last: Timestamp, interval: Duration) -> Timestamp {
    let interval = SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX);
    last.checked_add(interval).unwrap_or(Timestamp::MAX)
}

/// `wait` from now, or a year from now if that is later than the clock can say.
fn instant_after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_from_a_status_or_a_spec_saturates() {
        let day = Duration::from_secs(86_400);
        assert_eq!(next_pass(Timestamp::MAX, day), Timestamp::MAX);
        assert_eq!(next_pass(Timestamp::UNIX_EPOCH, Duration::MAX), Timestamp::MAX);
        let t: Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
        assert_eq!(next_pass(t, day).to_string(), "2026-12-08T00:00:00Z");
        assert!(instant_after(Duration::MAX) > Instant::now() + day);
    }
}
