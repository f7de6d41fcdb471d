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
use super::actuator::{ActuatorError, Weights, WriteGate, WriteOutcome};
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
use placement_core::tracking::{TrackingDecision, step};
use placement_kube::crd::{CrdError, TrafficWeight, TrafficWeightStatus};
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
    let Some(tw) = read(cached, st).await? else { return Ok(Action::await_change()) };
    let now = Timestamp::now();
    // Evaluate only when due: our own status write triggers this reconcile too.
    if let Some(wait) = not_due(&tw, now) {
        return Ok(Action::requeue(wait));
    }
    // The spec, with a placeholder base (the real one is read from the target in `run`).
    if let Err(e) = tw.spec.to_core(0) {
        return report_invalid(&tw, st, &e, now).await;
    }
    let next = Action::requeue(tw.spec.interval().unwrap_or(Duration::from_secs(60)));
    match run(&tw, st, now).await {
        Ok(Some(done)) => report(&tw, st, &done, now).await?,
        // Leadership was lost before the write: nothing is written, the new leader evaluates.
        Ok(None) => return Ok(Action::await_change()),
        Err(stop) => report_stop(&tw, st, stop, now).await?,
    }
    Ok(next)
}

/// The TrafficWeight as stored now (the cache may predate our last status write), or `None` when it is
/// gone or this instance is a standby (which neither queries nor writes; leadership gained triggers
/// every TrafficWeight).
async fn read(cached: &TrafficWeight, st: &State) -> Result<Option<TrafficWeight>> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    st.prune((&ns, &name));
    if !st.ctx.leadership.is_leader() {
        return Ok(None);
    }
    match api_of(st, &ns).get(&name).await {
        Ok(tw) => Ok(Some(tw)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(Error::kube(format!("reading TrafficWeight {ns}/{name}"), e)),
    }
}

fn api_of(st: &State, ns: &str) -> Api<TrafficWeight> {
    Api::namespaced(st.ctx.client.clone(), ns)
}

/// Where and why an evaluation stopped: what its status, error count and Warning say.
struct Stop {
    stage: Stage,
    class: &'static str,
    message: String,
    event: &'static str,
    /// The Warning's note, before the message.
    note_prefix: String,
}

impl Stop {
    fn new(stage: Stage, class: &'static str, message: String, event: &'static str, note_prefix: &str) -> Self {
        Stop { stage, class, message, event, note_prefix: note_prefix.to_string() }
    }

    fn setup(e: SetupError) -> Self {
        let (stage, event) = match &e {
            SetupError::Secret { .. } => (Stage::Secret, "ConfigurationError"),
            SetupError::Metric(_) => (Stage::Metric, "ConfigurationError"),
            SetupError::Target(_) => (Stage::Target, "ConfigurationError"),
            SetupError::NotAllowed(_) => (Stage::NotAllowed, "NotAllowed"),
        };
        Stop::new(stage, e.metric_label(), e.to_string(), event, "")
    }
}

/// What a complete evaluation saw and did.
struct Done {
    metric: String,
    origin: String,
    weights: Weights,
    decision: TrackingDecision,
    outcome: Option<WriteOutcome>,
    target: String,
}

/// The outside world, in order: connect (the admin's policy decides what may be used), query the
/// metric, read the weights, decide (the core's `step`), write the weight unless the decision holds it.
/// `Ok(None)`: leadership was lost before the write, and nothing was written.
async fn run(tw: &TrafficWeight, st: &State, now: Timestamp) -> Result<Option<Done>, Stop> {
    let (ns, spec) = (tw.namespace().unwrap_or_default(), &tw.spec);
    let leadership = st.ctx.leadership.clone();
    let gate = WriteGate::new(move || leadership.is_leader());
    let Connections { metric, actuator } =
        connect::connect(&st.ctx.client, &ns, spec, &st.options.connect, gate).await.map_err(Stop::setup)?;
    let unchanged = "weight left unchanged: ";
    let sample = metric
        .query()
        .await
        .map_err(|e| Stop::new(Stage::Metric, e.metric_label(), e.to_string(), "MetricUnavailable", unchanged))?;
    let weights = actuator
        .read()
        .await
        .map_err(|e| Stop::new(Stage::Target, e.metric_label(), e.to_string(), "TargetUnavailable", unchanged))?;
    let policy = spec.to_core(weights.base).map_err(|e| e.to_string());
    let policy = policy
        .and_then(|p| p.compile().map_err(|e| e.to_string()))
        .map_err(|e| Stop::new(Stage::Target, "invalid", e, "TargetUnavailable", ""))?;
    let state = tw.status.as_ref().map(TrafficWeightStatus::tracking_state).unwrap_or_default();
    let decision = step(&policy, &state, sample.value, weights.managed, now);
    let outcome = match decision.apply {
        None => None,
        Some(w) => match actuator.write(w, spec.dry_run).await {
            Ok(o) => Some(o),
            Err(ActuatorError::NotLeader { .. }) => {
                tracing::info!(trafficweight = %key_of(tw), "lost leadership during the evaluation: nothing written");
                return Ok(None);
            }
            Err(e) => {
                let note = format!("weight {} -> {w} not written: ", weights.managed);
                return Err(Stop::new(Stage::Write, e.metric_label(), e.to_string(), "WriteFailed", &note));
            }
        },
    };
    Ok(Some(Done {
        metric: sample.value.normalize().to_string(),
        origin: metric.config().origin().to_string(),
        weights,
        decision,
        outcome,
        target: actuator.describe(),
    }))
}

/// The spec is invalid: `Ready=False` `InvalidSpec` (written only when it changes) and a Warning; nothing
/// is evaluated until the spec changes.
async fn report_invalid(tw: &TrafficWeight, st: &State, e: &CrdError, now: Timestamp) -> Result<Action> {
    let (ns, name) = (tw.namespace().unwrap_or_default(), tw.name_any());
    st.metrics.error("spec", "invalid");
    let previous = tw.status.as_ref();
    let invalid = status::invalid(previous, e, tw.meta().generation, now);
    if Some(&invalid) != previous {
        write_status(st, &api_of(st, &ns), &ns, &name, &invalid).await?;
    }
    st.warn(tw, "InvalidSpec", format!("TrafficWeight {ns}/{name} is not in effect: {e}")).await;
    Ok(Action::await_change())
}

/// The evaluation stopped: the weight is left alone; the status, the error count, a log line and a
/// Warning say where and why, every message cut to [`status::MAX_MESSAGE_CHARS`].
async fn report_stop(tw: &TrafficWeight, st: &State, stop: Stop, now: Timestamp) -> Result<()> {
    let (ns, name) = (tw.namespace().unwrap_or_default(), tw.name_any());
    let message = status::bounded(&stop.message);
    let stage = stop.stage.label();
    st.metrics.error(stage, stop.class);
    tracing::warn!(trafficweight = %key_of(tw), stage, class = stop.class, error = %message, "weight left unchanged");
    let failed = status::failed(tw.status.as_ref(), stop.stage, stop.class, &message, tw.meta().generation, now);
    write_status(st, &api_of(st, &ns), &ns, &name, &failed).await?;
    st.warn(tw, stop.event, format!("{}{message}", stop.note_prefix)).await;
    Ok(())
}

/// The evaluation completed: the status, the gauges, and an Event for a change (or a new dry run).
async fn report(tw: &TrafficWeight, st: &State, done: &Done, now: Timestamp) -> Result<()> {
    let (ns, name) = (tw.namespace().unwrap_or_default(), tw.name_any());
    let previous = tw.status.as_ref();
    let (decision, target) = (&done.decision, &done.target);
    let e = Evaluated {
        metric: &done.metric,
        metric_origin: &done.origin,
        weights: done.weights,
        decision,
        outcome: done.outcome,
        target,
    };
    let new_status = status::evaluated(previous, &e, tw.meta().generation, now);
    write_status(st, &api_of(st, &ns), &ns, &name, &new_status).await?;
    st.healthy(tw);
    let actual = new_status.current_weight.unwrap_or(done.weights.managed);
    st.metrics.weights(&ns, &name, decision.desired, actual);
    let value = done.metric.parse::<f64>().unwrap_or(f64::NAN);
    st.metrics.metric_value(&ns, &name, value);
    let object = tw.object_ref(&());
    match done.outcome {
        Some(WriteOutcome::Changed { from, to }) => {
            st.metrics.changed(to > from, false);
            let reason = status::bounded(&decision.reason);
            tracing::info!(trafficweight = %key_of(tw), from, to, %reason, "weight changed");
            st.normal(&object, "WeightChanged", format!("{target}: weight {from} -> {to}; {}", decision.reason)).await;
        }
        Some(WriteOutcome::DryRun { from, to }) if !same_dry_run(previous, to) => {
            st.metrics.changed(to > from, true);
            tracing::info!(trafficweight = %key_of(tw), from, to, "dry run: weight not written");
            let note = format!("dry run, nothing written: {target}: weight {from} -> {to}; {}", decision.reason);
            st.normal(&object, "WeightChangeDryRun", note).await;
        }
        _ => {}
    }
    Ok(())
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
