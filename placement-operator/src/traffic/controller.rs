//! One evaluation of one TrafficWeight: check the spec, connect (Secrets of the resource's namespace),
//! query the metric, read the managed and base weights, apply the core tracking step
//! (`docs/semantics.md#5-target-tracking-traffic-weights`), write the new weight if the step says so
//! (unless dry-run), then record the status, the metrics and an Event for every change.
//!
//! Every failure stops the evaluation where it happens and leaves the weight alone: a metric that is
//! NaN, empty or unreachable, a record that is missing, a throttled API. It becomes a condition, an
//! error count and a warning Event (one per distinct problem, not one per interval), and the next
//! evaluation comes one interval later. The status is read fresh before each evaluation, because the
//! cooldown starts at `status.lastChange`, which our own last write may have just moved.
//!
//! Leadership is checked at the start and again **right before every write**: the weight (through the
//! actuator's [`WriteGate`]), the status and each Event. An instance that lost its Lease during an
//! evaluation (a slow query, a long listing) stops there and writes nothing; the new leader evaluates.
//! Every message it writes or logs is cut to [`status::MAX_MESSAGE_CHARS`].

use super::Options;
use super::actuator::{ActuatorError, WriteGate, WriteOutcome};
use super::connect::{self, Connections, SetupError};
use super::metrics::TrafficMetrics;
use super::status::{self, Evaluated, Stage};
use crate::runtime::events::Note;
use crate::{Context, Error, Result};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use placement_core::tracking::step;
use placement_kube::crd::{TrafficWeight, TrafficWeightStatus};
use placement_kube::field_manager;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What every evaluation shares.
pub struct State {
    pub ctx: Context,
    pub metrics: TrafficMetrics,
    pub options: Options,
    /// The controller's store, to drop the metric series of deleted TrafficWeights.
    pub store: OnceLock<Store<TrafficWeight>>,
    /// The TrafficWeights that have metric series.
    labelled: Mutex<HashSet<(String, String)>>,
    /// The last warning published per TrafficWeight (uid): a lasting problem is one Event.
    warned: Mutex<HashMap<String, String>>,
}

impl State {
    pub fn new(ctx: Context, metrics: TrafficMetrics, options: Options) -> Self {
        State {
            ctx,
            metrics,
            options,
            store: OnceLock::new(),
            labelled: Mutex::new(HashSet::new()),
            warned: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes a warning unless the same one was the last published for this object.
    async fn warn(&self, tw: &TrafficWeight, reason: &str, note: String) {
        if !self.ctx.leadership.is_leader() {
            return;
        }
        let note = status::bounded(&note);
        let uid = tw.uid().unwrap_or_default();
        let key = format!("{reason}/{note}");
        {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.get(&uid) == Some(&key) {
                return;
            }
            warned.insert(uid, key);
        }
        let note = Note { warning: true, reason: reason.into(), action: "Evaluate".into(), note };
        self.ctx.events.publish(&tw.object_ref(&()), note).await;
    }

    /// The evaluation worked: the next warning, even a repeat of an old one, is published.
    fn healthy(&self, tw: &TrafficWeight) {
        self.warned.lock().unwrap_or_else(|e| e.into_inner()).remove(&tw.uid().unwrap_or_default());
    }

    async fn normal(&self, object: &ObjectReference, reason: &str, note: String) {
        if !self.ctx.leadership.is_leader() {
            return;
        }
        let note = status::bounded(&note);
        let note = Note { warning: false, reason: reason.into(), action: "SetWeight".into(), note };
        self.ctx.events.publish(object, note).await;
    }

    /// Forgets the metric series of TrafficWeights no longer in the store.
    fn prune(&self, current: (&str, &str)) {
        let mut labelled = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        labelled.insert((current.0.to_string(), current.1.to_string()));
        let Some(store) = self.store.get() else { return };
        let live: HashSet<(String, String)> =
            store.state().iter().map(|t| (t.namespace().unwrap_or_default(), t.name_any())).collect();
        labelled.retain(|k| {
            let keep = live.contains(k) || (k.0 == current.0 && k.1 == current.1);
            if !keep {
                self.metrics.forget(&k.0, &k.1);
            }
            keep
        });
    }
}

/// Evaluates one TrafficWeight, with metrics, in a `reconcile` span naming it.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "TrafficWeight", object = %key_of(&tw)))]
pub async fn reconcile(tw: Arc<TrafficWeight>, st: Arc<State>) -> Result<Action> {
    let started = Instant::now();
    let out = evaluate(&tw, &st).await;
    st.metrics.observe(started.elapsed().as_secs_f64());
    if let Err(e) = &out {
        st.metrics.error("status", e.metric_label());
        let error = status::bounded(&e.to_string());
        tracing::warn!(trafficweight = %key_of(&tw), %error, "traffic weight evaluation failed");
    }
    out
}

/// What the controller does after a failed reconcile (a failed status write or read).
pub fn error_policy(_tw: Arc<TrafficWeight>, _e: &Error, st: Arc<State>) -> Action {
    Action::requeue(st.options.error_backoff)
}

fn key_of(tw: &TrafficWeight) -> String {
    format!("{}/{}", tw.namespace().unwrap_or_default(), tw.name_any())
}

async fn evaluate(cached: &TrafficWeight, st: &State) -> Result<Action> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    st.prune((&ns, &name));
    if !st.ctx.leadership.is_leader() {
        // A standby neither queries nor writes; leadership gained triggers every TrafficWeight.
        return Ok(Action::await_change());
    }
    let api: Api<TrafficWeight> = Api::namespaced(st.ctx.client.clone(), &ns);
    let tw = match api.get(&name).await {
        Ok(tw) => tw,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(Error::kube(format!("reading TrafficWeight {ns}/{name}"), e)),
    };
    let generation = tw.meta().generation;
    let previous = tw.status.as_ref();
    let now = Timestamp::now();
    let spec = &tw.spec;

    // Evaluate only when due: our own status write triggers this reconcile too.
    if let Some(wait) = not_due(&tw, now) {
        return Ok(Action::requeue(wait));
    }
    // The spec, with a placeholder base (the real one is read from the target below).
    if let Err(e) = spec.to_core(0) {
        st.metrics.error("spec", "invalid");
        let invalid = status::invalid(previous, &e, generation, now);
        if Some(&invalid) != previous {
            write_status(st, &api, &ns, &name, &invalid).await?;
        }
        st.warn(&tw, "InvalidSpec", format!("TrafficWeight {ns}/{name} is not in effect: {e}")).await;
        return Ok(Action::await_change());
    }
    let interval = spec.interval().unwrap_or(Duration::from_secs(60));
    let next = Action::requeue(interval);
    let fail = |stage: Stage, class: &'static str, message: String| {
        let message = status::bounded(&message);
        let stage_label = stage.label();
        st.metrics.error(stage_label, class);
        tracing::warn!(trafficweight = %format!("{ns}/{name}"), stage = stage_label, class, error = %message, "weight left unchanged");
        (status::failed(previous, stage, class, &message, generation, now), message)
    };

    let leadership = st.ctx.leadership.clone();
    let gate = WriteGate::new(move || leadership.is_leader());
    let Connections { metric, actuator } =
        match connect::connect(&st.ctx.client, &ns, spec, &st.options.connect, gate).await {
            Ok(c) => c,
            Err(e) => {
                let (stage, event) = match &e {
                    SetupError::Secret { .. } => (Stage::Secret, "ConfigurationError"),
                    SetupError::Metric(_) => (Stage::Metric, "ConfigurationError"),
                    SetupError::Target(_) => (Stage::Target, "ConfigurationError"),
                    SetupError::NotAllowed(_) => (Stage::NotAllowed, "NotAllowed"),
                };
                let (s, message) = fail(stage, e.metric_label(), e.to_string());
                write_status(st, &api, &ns, &name, &s).await?;
                st.warn(&tw, event, message).await;
                return Ok(next);
            }
        };
    let sample = match metric.query().await {
        Ok(s) => s,
        Err(e) => {
            let (s, message) = fail(Stage::Metric, e.metric_label(), e.to_string());
            write_status(st, &api, &ns, &name, &s).await?;
            st.warn(&tw, "MetricUnavailable", format!("weight left unchanged: {message}")).await;
            return Ok(next);
        }
    };
    let target = actuator.describe();
    let weights = match actuator.read().await {
        Ok(w) => w,
        Err(e) => {
            let (s, message) = fail(Stage::Target, e.metric_label(), e.to_string());
            write_status(st, &api, &ns, &name, &s).await?;
            st.warn(&tw, "TargetUnavailable", format!("weight left unchanged: {message}")).await;
            return Ok(next);
        }
    };
    let policy = spec.to_core(weights.base).map_err(|e| e.to_string());
    let policy = match policy.and_then(|p| p.compile().map_err(|e| e.to_string())) {
        Ok(p) => p,
        Err(e) => {
            let (s, message) = fail(Stage::Target, "invalid", e.to_string());
            write_status(st, &api, &ns, &name, &s).await?;
            st.warn(&tw, "TargetUnavailable", message).await;
            return Ok(next);
        }
    };
    let state = previous.map(TrafficWeightStatus::tracking_state).unwrap_or_default();
    let decision = step(&policy, &state, sample.value, weights.managed, now);
    let outcome = match decision.apply {
        None => None,
        Some(w) => match actuator.write(w, spec.dry_run).await {
            Ok(o) => Some(o),
            Err(ActuatorError::NotLeader { .. }) => {
                tracing::info!(trafficweight = %format!("{ns}/{name}"), "lost leadership during the evaluation: nothing written");
                return Ok(Action::await_change());
            }
            Err(e) => {
                let (s, message) = fail(Stage::Write, e.metric_label(), e.to_string());
                write_status(st, &api, &ns, &name, &s).await?;
                st.warn(&tw, "WriteFailed", format!("weight {} -> {w} not written: {message}", weights.managed)).await;
                return Ok(next);
            }
        },
    };
    let metric_text = sample.value.normalize().to_string();
    let origin = metric.config().origin().to_string();
    let e = Evaluated {
        metric: &metric_text,
        metric_origin: &origin,
        weights,
        decision: &decision,
        outcome,
        target: &target,
    };
    let new_status = status::evaluated(previous, &e, generation, now);
    write_status(st, &api, &ns, &name, &new_status).await?;
    st.healthy(&tw);

    let actual = new_status.current_weight.unwrap_or(weights.managed);
    st.metrics.weights(&ns, &name, decision.desired, actual);
    st.metrics.metric_value(&ns, &name, f64::try_from(sample.value).unwrap_or(f64::NAN));
    let object = tw.object_ref(&());
    match outcome {
        Some(WriteOutcome::Changed { from, to }) => {
            st.metrics.changed(to > from, false);
            let reason = status::bounded(&decision.reason);
            tracing::info!(trafficweight = %format!("{ns}/{name}"), from, to, %reason, "weight changed");
            let note = format!("{target}: weight {from} -> {to}; {}", decision.reason);
            st.normal(&object, "WeightChanged", note).await;
        }
        Some(WriteOutcome::DryRun { from, to }) if !same_dry_run(previous, to) => {
            st.metrics.changed(to > from, true);
            tracing::info!(trafficweight = %format!("{ns}/{name}"), from, to, "dry run: weight not written");
            let note = format!("dry run, nothing written: {target}: weight {from} -> {to}; {}", decision.reason);
            st.normal(&object, "WeightChangeDryRun", note).await;
        }
        _ => {}
    }
    Ok(next)
}

/// How long until the next evaluation is due, or `None` if it is due now: the spec changed since the
/// last evaluation (or there was none), or the last one was an interval ago.
pub fn not_due(tw: &TrafficWeight, now: Timestamp) -> Option<Duration> {
    let status = tw.status.as_ref()?;
    if status.observed_generation != tw.meta().generation {
        return None;
    }
    let last = status.last_evaluated.as_ref()?.0;
    let interval = tw.spec.interval().ok()?;
    let due = last.checked_add(jiff::SignedDuration::try_from(interval).ok()?).ok()?;
    let wait = Duration::try_from(due.duration_since(now)).ok()?;
    (!wait.is_zero()).then_some(wait)
}

/// Whether the previous evaluation was already a dry run wanting `to` (its Event was published then).
fn same_dry_run(previous: Option<&TrafficWeightStatus>, to: u32) -> bool {
    previous.is_some_and(|p| {
        p.desired_weight == Some(to)
            && placement_kube::crd::conditions::find_condition(&p.conditions, placement_kube::crd::conditions::READY)
                .is_some_and(|c| c.reason == "DryRun")
    })
}

/// Writes the whole status by server-side apply (the controller is its only writer), only while this
/// instance leads (asked right before the write).
async fn write_status(
    st: &State,
    api: &Api<TrafficWeight>,
    ns: &str,
    name: &str,
    status: &TrafficWeightStatus,
) -> Result<()> {
    if !st.ctx.leadership.is_leader() {
        tracing::info!(trafficweight = %format!("{ns}/{name}"), "no longer the leader: status not written");
        return Ok(());
    }
    let body = json!({
        "apiVersion": "placement.dev/v1alpha1",
        "kind": "TrafficWeight",
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(field_manager::OPERATOR).force(), &Patch::Apply(body))
        .await
        .map_err(|e| Error::kube(format!("writing the status of TrafficWeight {ns}/{name}"), e))?;
    Ok(())
}
