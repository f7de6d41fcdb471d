//! Strict mode: several webhook replicas share one reservation ledger through the `status` of the
//! resource that places the pod (`PodDistribution` or `ZoneBalancer` with `spec.strict: true`), as
//! OpenKruise's WorkloadSpread does.
//!
//! A round reads the resource, makes the local ledger's reservations for it exactly the shared ones
//! ([`Decider::sync_shared_ledger`]), decides, and writes the ledger back with the resource's
//! `resourceVersion` as a precondition. A 409 means another replica wrote first: the round's
//! reservations are dropped and the round is done again with the fresh status, until each request's
//! deadline. So a replica's decision counts every reservation another replica has made, even before
//! that pod reaches its watch, and keeps counting it until its own watch shows the pod.
//!
//! A replica starts a round from the resource as it last wrote it, so while it is the only writer a
//! round is one request; it reads only after a 409.
//!
//! Within one replica the admissions for one resource are *group-committed*: while a round is in
//! flight, new admissions queue; the next round decides the whole queue in arrival order and writes
//! once. One round per resource at a time also means no round can publish another's half-made
//! decision. A round runs as its own task, so an admission whose client hung up does not cut it short;
//! a decision whose admission has already given up (the deadline) is released, and the next write
//! drops it from the status.
//!
//! Bounds: every call to the API server has a timeout, the remaining time of the latest deadline among
//! the round's admissions, so a hung API server ends a round by its admissions' deadlines. At most
//! [`StrictLimits::per_resource`] admissions wait for or are in a round on one resource, and
//! [`StrictLimits::overall`] over all resources; one more is shed (admitted unmutated at once, counted as
//! `placement_webhook_shed_total{reason="strict_queue"}`). An admission that gives up (its deadline, or
//! its request went away) takes itself out of the queue, so nothing stale counts against the bounds.
//!
//! Tracing: a round is its own task, so it gets its own span, `strict_round` (the ledger's key, how many
//! admissions it serves and their uids), which follows from the admission that started it; each
//! admission's decision inside the round runs in an `admission` span with that admission's uid, so its
//! log lines carry the uid as they would outside strict mode.

use crate::decide::{Candidate, DecideError, Decider, Decision, SharedIn, StrictTarget};
use crate::metrics::{AdmissionMetrics, StrictWrite};
use crate::shed::Shed;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use placement_core::ledger::LedgerState;
use placement_core::model::WorkloadRef;
use placement_kube::crd::{PodDistribution, SharedLedger, ZoneBalancer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::Instrument;

/// How many uids a `strict_round` span lists (the count is always there).
const ROUND_SPAN_UIDS: usize = 8;

/// How many strict-mode admissions may wait for (or be in) a round at once on one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrictLimits {
    /// On one resource (one shared ledger).
    pub per_resource: usize,
    /// Over all resources.
    pub overall: usize,
}

impl Default for StrictLimits {
    /// Per resource 32: a round decides its whole batch and writes once, so the batch size is what one
    /// write carries, and 32 is more than a ReplicaSet controller sends at once (kube-controller-manager's
    /// default `--kube-api-burst` is 30) even if every one of them lands on this replica. Overall 128:
    /// half of the listener's default 256 requests in flight, so strict admissions stuck behind a hung
    /// API server leave the other half to everything else (which needs no API call). Each waiting
    /// admission holds a copy of its pod.
    fn default() -> Self {
        StrictLimits { per_resource: 32, overall: 128 }
    }
}

/// Strict-mode decisions of one webhook replica.
pub struct StrictMode {
    client: kube::Client,
    decider: Arc<Decider>,
    metrics: AdmissionMetrics,
    /// One queue per shared ledger (`PodDistribution/shop/web`).
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    limits: StrictLimits,
    /// Admissions waiting for or in a round, over all queues.
    pending: Arc<AtomicUsize>,
    next_job: AtomicU64,
}

/// Admissions waiting for the next round on one shared ledger.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Vec<Job>>,
    /// Held by the round in flight.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The resource as this replica last wrote it: the next round starts from it instead of reading,
    /// and reads only when another replica wrote in between (409).
    last_written: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// Admissions waiting for or in a round on this resource.
    pending: Arc<AtomicUsize>,
}

/// One admission's place under the bounds, given back when its job is dropped (answered or withdrawn).
struct Ticket {
    resource: Arc<AtomicUsize>,
    overall: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.resource.fetch_sub(1, Ordering::AcqRel);
        self.overall.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one from `counter` if it is below `max`.
fn take_one(counter: &AtomicUsize, max: usize) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
}

/// Takes a job out of its queue when its admission stops waiting (answered, past its deadline, or
/// dropped because its request went away); a no-op once a round has taken it.
struct Withdraw<'a> {
    queue: &'a Queue,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.queue.waiting.lock().unwrap_or_else(|e| e.into_inner()).retain(|j| j.id != self.id);
    }
}

/// One admission in a round.
struct Job {
    id: u64,
    _ticket: Ticket,
    pod: Pod,
    namespace: String,
    uid: String,
    dry_run: bool,
    deadline: Instant,
    answer: oneshot::Sender<Result<Decision, DecideError>>,
}

impl Job {
    fn candidate(&self) -> Candidate<'_> {
        Candidate { pod: &self.pod, namespace: &self.namespace, uid: &self.uid, dry_run: self.dry_run }
    }

    /// The span this admission's decision runs in, inside a round.
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "admission",
            uid = crate::admission::uid_field(&self.uid),
            namespace = crate::admission::span_field(&self.namespace),
            workload = tracing::field::Empty
        )
    }
}

/// The span of one round: its own task, following from the admission that started it.
fn round_span(key: &str, jobs: &[Job]) -> tracing::Span {
    let mut uids: Vec<String> = jobs.iter().take(ROUND_SPAN_UIDS).map(|j| crate::review::bounded(&j.uid, 64)).collect();
    if jobs.len() > ROUND_SPAN_UIDS {
        uids.push("…".into());
    }
    let span = tracing::info_span!(parent: None, "strict_round", ledger = crate::admission::span_field(key),
        admissions = jobs.len(), uids = %uids.join(","));
    span.follows_from(tracing::Span::current());
    span
}

impl StrictMode {
    pub fn new(client: kube::Client, decider: Arc<Decider>, metrics: AdmissionMetrics) -> Self {
        StrictMode {
            client,
            decider,
            metrics,
            queues: Mutex::new(HashMap::new()),
            limits: StrictLimits::default(),
            pending: Arc::new(AtomicUsize::new(0)),
            next_job: AtomicU64::new(0),
        }
    }

    /// Other bounds than [`StrictLimits::default`].
    pub fn with_limits(mut self, limits: StrictLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Admissions waiting for or in a round now, over all resources.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// A place under the bounds for one more admission on `queue`, or why there is none.
    fn admit(&self, key: &str, queue: &Queue) -> Result<Ticket, String> {
        let StrictLimits { per_resource, overall } = self.limits;
        if !take_one(&self.pending, overall) {
            return Err(format!(
                "{overall} admissions already wait for strict-mode rounds on this replica (the bound over all \
                 resources); shed"
            ));
        }
        if !take_one(&queue.pending, per_resource) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(format!(
                "{per_resource} admissions already wait for a round on {key} (the bound per resource); shed"
            ));
        }
        Ok(Ticket { resource: queue.pending.clone(), overall: self.pending.clone() })
    }

    /// Decides for a pod against the ledger shared in `target`'s status, by `deadline`.
    pub async fn decide(
        &self,
        c: &Candidate<'_>,
        target: StrictTarget,
        deadline: Instant,
    ) -> Result<Decision, DecideError> {
        let key = target.key();
        let queue = self.queue(&key);
        let ticket = match self.admit(&key, &queue) {
            Ok(ticket) => ticket,
            Err(why) => {
                self.metrics.shed().shed(Shed::StrictQueue);
                return Err(DecideError::Strict(why));
            }
        };
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let _withdraw = Withdraw { queue: &queue, id };
        let (answer, mut answered) = oneshot::channel();
        queue.waiting.lock().unwrap_or_else(|e| e.into_inner()).push(Job {
            id,
            _ticket: ticket,
            pod: c.pod.clone(),
            namespace: c.namespace.to_string(),
            uid: c.uid.to_string(),
            dry_run: c.dry_run,
            deadline,
            answer,
        });
        let too_late = tokio::time::sleep_until(deadline.into());
        tokio::pin!(too_late);
        loop {
            tokio::select! {
                biased;
                decided = &mut answered => {
                    return decided.unwrap_or_else(|_| Err(DecideError::Strict(format!("the round for {key} was abandoned"))));
                }
                _ = &mut too_late => {
                    return Err(DecideError::Strict(format!("no answer from the shared ledger in {key} before the deadline")));
                }
                turn = queue.turn.clone().lock_owned() => {
                    let jobs = std::mem::take(&mut *queue.waiting.lock().unwrap_or_else(|e| e.into_inner()));
                    if jobs.is_empty() {
                        // An earlier round took this admission along; its answer is waiting.
                        continue;
                    }
                    let round = Round {
                        queue: queue.clone(),
                        client: self.client.clone(),
                        decider: self.decider.clone(),
                        metrics: self.metrics.clone(),
                        target: target.clone(),
                    };
                    let span = round_span(&key, &jobs);
                    tokio::spawn(
                        async move {
                            round.run(jobs).await;
                            drop(turn);
                        }
                        .instrument(span),
                    );
                }
            }
        }
    }

    fn queue(&self, key: &str) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if queues.len() > 1_000 {
            // Resources come and go; drop the idle queues.
            queues.retain(|_, q| Arc::strong_count(q) > 1);
        }
        queues.entry(key.to_string()).or_default().clone()
    }
}

/// Folds the shared ledger in and decides every job of a batch, in arrival order, on a blocking thread.
/// `None` if that thread panicked (the jobs are dropped, so their admissions fail open).
async fn decide_batch(
    decider: Arc<Decider>,
    key: WorkloadRef,
    shared: LedgerState,
    jobs: Vec<Job>,
) -> Option<(Vec<Job>, Vec<Result<Decision, DecideError>>)> {
    // The round's span and the caller's subscriber go with the work (a thread-local default would not).
    let round = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let decide = move || {
        let _subscriber = tracing::dispatcher::set_default(&dispatch);
        round.in_scope(|| {
            decider.sync_shared_ledger(&key, &shared);
            let decisions = jobs.iter().map(|j| j.span().in_scope(|| decider.decide(&j.candidate()))).collect();
            (jobs, decisions)
        })
    };
    tokio::task::spawn_blocking(decide).await.ok()
}

/// One read-decide-write cycle (repeated on conflict) over a batch of admissions.
struct Round {
    queue: Arc<Queue>,
    client: kube::Client,
    decider: Arc<Decider>,
    metrics: AdmissionMetrics,
    target: StrictTarget,
}

impl Round {
    async fn run(self, jobs: Vec<Job>) {
        match &self.target.holder {
            SharedIn::PodDistribution(pd) => {
                self.run_on(api_for::<PodDistribution>(&self.client, &pd.metadata), jobs).await
            }
            SharedIn::ZoneBalancer(zb) => self.run_on(api_for::<ZoneBalancer>(&self.client, &zb.metadata), jobs).await,
        }
    }

    async fn run_on<K>(&self, (api, name): (Api<K>, String), mut jobs: Vec<Job>)
    where
        K: kube::Resource + SharedLedger + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
    {
        let key: &WorkloadRef = &self.target.ledger_key;
        let mut conflicts = 0;
        loop {
            let now = Instant::now();
            let (late, on_time): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.deadline <= now);
            jobs = on_time;
            for job in late {
                let why = format!("{conflicts} conflicting writes to {name}'s status before the deadline");
                let _ = job.answer.send(Err(DecideError::Strict(why)));
            }
            if jobs.is_empty() {
                return;
            }
            // No API call outlives the admissions it is for: the latest of their deadlines.
            let until = tokio::time::Instant::from_std(jobs.iter().map(|j| j.deadline).max().unwrap_or(now));
            let cached = self.queue.last_written.lock().unwrap_or_else(|e| e.into_inner()).take();
            let current = match cached.and_then(|c| c.downcast::<K>().ok()) {
                Some(current) => *current,
                None => match tokio::time::timeout_at(until, api.get_status(&name)).await {
                    Ok(Ok(current)) => current,
                    Ok(Err(e)) => {
                        self.metrics.strict_write(StrictWrite::Error);
                        return fail_all(jobs, &format!("reading {name}: {e}"));
                    }
                    Err(_) => {
                        self.metrics.strict_write(StrictWrite::Error);
                        return fail_all(jobs, &format!("reading {name}: no answer from the API server in time"));
                    }
                },
            };
            let shared = current.shared_ledger();
            // Off the runtime's workers, which serve TLS, probes and watches: a batch decides up to 32 pods.
            let Some((decided_jobs, decisions)) =
                decide_batch(self.decider.clone(), key.clone(), shared.clone(), jobs).await
            else {
                // The batch's jobs were dropped with it: each admission sees its round abandoned and fails open.
                return;
            };
            jobs = decided_jobs;
            let reserved: Vec<String> =
                decisions.iter().filter_map(|d| d.as_ref().ok().and_then(|d| d.reservation.clone())).collect();
            if reserved.is_empty() {
                return self.answer_all(jobs, decisions);
            }
            let mut next = current;
            next.set_shared_ledger(&self.decider.shared_state(key, &shared));
            next.meta_mut().managed_fields = None;
            let write_started = Instant::now();
            let params = PostParams {
                field_manager: Some(placement_kube::field_manager::WEBHOOK.into()),
                ..PostParams::default()
            };
            let written = match tokio::time::timeout_at(until, api.replace_status(&name, &params, &next)).await {
                Ok(written) => written,
                Err(_) => {
                    // It may still be applied: the reservations are in the status then, and this replica's
                    // next write drops them (released here, they are not in its ledger any more).
                    for id in &reserved {
                        self.decider.release(id);
                    }
                    self.metrics.strict_write(StrictWrite::Error);
                    return fail_all(jobs, &format!("writing {name}'s status: no answer from the API server in time"));
                }
            };
            match written {
                Ok(written) => {
                    *self.queue.last_written.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(written));
                    self.metrics.strict_write(StrictWrite::Written);
                    if conflicts > 0 {
                        tracing::debug!(conflicts, decisions = jobs.len(), "strict mode: written after conflicts");
                    }
                    return self.answer_all(jobs, decisions);
                }
                Err(e) => {
                    for id in &reserved {
                        self.decider.release(id);
                    }
                    if is_conflict(&e) {
                        self.metrics.strict_write(StrictWrite::Conflict);
                        conflicts += 1;
                        // Take along what queued meanwhile: one more round serves everyone waiting.
                        jobs.append(&mut self.queue.waiting.lock().unwrap_or_else(|e| e.into_inner()));
                        // Replicas that lost together would otherwise retry together.
                        tokio::time::sleep(jitter(write_started.elapsed())).await;
                    } else {
                        self.metrics.strict_write(StrictWrite::Error);
                        return fail_all(jobs, &format!("writing {name}'s status: {e}"));
                    }
                }
            }
        }
    }

    /// Hands each admission its decision; one whose admission gave up meanwhile is released.
    fn answer_all(&self, jobs: Vec<Job>, decisions: Vec<Result<Decision, DecideError>>) {
        for (job, decided) in jobs.into_iter().zip(decisions) {
            if let Err(Ok(Decision { reservation: Some(id), .. })) = job.answer.send(decided) {
                self.decider.release(&id);
            }
        }
    }
}

fn api_for<K>(client: &kube::Client, meta: &kube::api::ObjectMeta) -> (Api<K>, String)
where
    K: kube::Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    (Api::namespaced(client.clone(), namespace), meta.name.clone().unwrap_or_default())
}

fn fail_all(jobs: Vec<Job>, why: &str) {
    for job in jobs {
        let _ = job.answer.send(Err(DecideError::Strict(why.to_string())));
    }
}

/// A pause between zero and `up_to` (capped at 20 ms), varying from call to call.
fn jitter(up_to: std::time::Duration) -> std::time::Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let cap = up_to.min(std::time::Duration::from_millis(20));
    cap.mul_f64(f64::from(nanos % 1_000) / 1_000.0)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
