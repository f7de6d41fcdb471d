//! What the webhook decides for one pod at CREATE, and the reservation that makes the next decision see it.
//!
//! Which rule applies (a PodDistribution, the strategy annotation, a ZoneBalancer, or none) is decided by
//! [`placement_core::resolve`], for local and strict decisions alike; this module gathers what that needs
//! from the rule stores and the index, then decides by the rule.
//!
//! Counts are the live index's pods plus the reservations in flight, read and updated under one write
//! lock, so a burst of admissions for one ReplicaSet lands exactly on target. Everything else a decision
//! costs (converting the pod, building the rule and its table, looking for nodes that fit) runs before
//! that lock, under the read lock or none, so no admission waits for another workload's work. A decision
//! is recorded as a reservation keyed by the AdmissionReview uid; the pod carries that id in
//! `placement.dev/reservation`, and the live index confirms the reservation when the pod appears.
//! Dry-run requests reserve nothing.

use crate::steer::{SteerTo, Steering};
use placement_core::Labels;
use placement_core::admission::{
    DistributionRule, counted, decide_distribution_with, decide_zone_with, distribution_feasibility, zone_feasibility,
    zone_scope_key,
};
use placement_core::apportion::Fallback;
use placement_core::index::{ScopeId, TooManyScopes, ZoneScope};
use placement_core::ledger::{LedgerState, RESERVATION_ANNOTATION, Reservation, is_reservation_id};
use placement_core::model::{Pod, WorkloadRef};
use placement_core::resolve::{AppliedRule, DistributionView, NoRule, WorkloadView, ZoneBalancerView, resolve};
use placement_core::strategy::{LEGACY_STRATEGY_ANNOTATION, STRATEGY_ANNOTATION, Strategy};
use placement_kube::convert::OwnerLookup;
use placement_kube::crd::pod_distribution::Enforcement;
use placement_kube::crd::zone_balancer::{ZoneAffinity, ZoneBalancerConfig, ZoneMode};
use placement_kube::crd::{PodDistribution, RebalancePolicy, ZoneBalancer};
use placement_kube::live::{LiveIndex, SharedIndex};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which rule placed a pod; bounded, for metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    PodDistribution,
    Strategy,
    ZoneBalancer,
    /// No rule applied, but a rebalancer plan steers the pod to a node.
    Steering,
    None,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::PodDistribution => "pod_distribution",
            RuleKind::Strategy => "strategy",
            RuleKind::ZoneBalancer => "zone_balancer",
            RuleKind::Steering => "steering",
            RuleKind::None => "none",
        }
    }
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub rule: RuleKind,
    /// Where the rule came from (`PodDistribution shop/web`), empty when no rule applied.
    pub source: String,
    /// nodeSelector entries to add (required placement).
    pub required: Labels,
    /// Labels of one preferred node-affinity term to add (preferred placement).
    pub preferred: Labels,
    /// Why, in words (`spot: shortfall 1 (target 4 of 20, has 3)`).
    pub reason: String,
    /// The reservation id recorded (the AdmissionReview uid), when the pod was placed and not a dry run.
    pub reservation: Option<String>,
    /// The node a rebalancer plan moved a pod of this workload to: a preferred term (see [`crate::steer`]).
    pub steer: Option<SteerTo>,
}

impl Decision {
    fn none(reason: impl Into<String>) -> Self {
        Decision {
            rule: RuleKind::None,
            source: String::new(),
            required: Labels::new(),
            preferred: Labels::new(),
            reason: reason.into(),
            reservation: None,
            steer: None,
        }
    }

    /// Whether the pod gets a placement.
    pub fn places(&self) -> bool {
        !self.required.is_empty() || !self.preferred.is_empty() || self.steer.is_some()
    }
}

/// Where the webhook reads its custom resources from (reflector stores in the server, plain lists in
/// tests).
pub trait RuleSource: Send + Sync {
    fn distributions(&self, namespace: &str) -> Vec<Arc<PodDistribution>>;
    fn zone_balancers(&self, namespace: &str) -> Vec<Arc<ZoneBalancer>>;
    /// The rebalancer's policies, whose status steers replacement pods.
    fn rebalance_policies(&self) -> Vec<Arc<RebalancePolicy>>;
}

/// Fixed lists of resources.
#[derive(Default)]
pub struct StaticRules {
    pub distributions: Vec<Arc<PodDistribution>>,
    pub zone_balancers: Vec<Arc<ZoneBalancer>>,
    pub rebalance_policies: Vec<Arc<RebalancePolicy>>,
}

fn in_namespace<K: kube::Resource>(items: &[Arc<K>], namespace: &str) -> Vec<Arc<K>> {
    items.iter().filter(|o| o.meta().namespace.as_deref() == Some(namespace)).cloned().collect()
}

impl RuleSource for StaticRules {
    fn distributions(&self, namespace: &str) -> Vec<Arc<PodDistribution>> {
        in_namespace(&self.distributions, namespace)
    }

    fn zone_balancers(&self, namespace: &str) -> Vec<Arc<ZoneBalancer>> {
        in_namespace(&self.zone_balancers, namespace)
    }

    fn rebalance_policies(&self) -> Vec<Arc<RebalancePolicy>> {
        self.rebalance_policies.clone()
    }
}

/// The rule that applies to a pod, with the object it comes from.
enum Applicable {
    Distribution(Arc<PodDistribution>),
    /// The annotation's text.
    Strategy(String),
    ZoneBalancer(Arc<ZoneBalancer>, ZoneBalancerConfig),
    None(NoRule),
}

/// Runs `f`, which may take a while (a table built, a test hook), where it cannot hold up a runtime
/// worker. On a worker of a multi-thread runtime that is `block_in_place`: the worker's other tasks (TLS,
/// other admissions, probes, watches) move to another thread while `f` runs on this one. Anywhere else
/// (tokio's blocking pool, where strict rounds decide; a plain thread; a current-thread runtime in tests)
/// it runs right here.
fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A test hook run where a decision does its expensive work ([`Decider::set_expensive_phase_hook`]).
pub type ExpensivePhaseHook = Arc<dyn Fn(&WorkloadRef) + Send + Sync>;

/// How far past the next size a rule's table is built before the write lock is taken, so that the
/// admissions of a burst racing for that lock find it built.
const TABLE_HEADROOM: u32 = 64;

/// A distribution rule that applies to a pod, and where it came from.
struct ChosenRule {
    rule: Arc<DistributionRule>,
    kind: RuleKind,
    source: String,
    enforcement: Enforcement,
}

/// Decides placements against a live index.
pub struct Decider {
    index: SharedIndex,
    rules: Arc<dyn RuleSource>,
    reservation_ttl: Duration,
    /// Parsed rules by their source text (a strategy annotation or a PodDistribution's uid+generation):
    /// parsing and group membership are cached, not redone per admission.
    rule_cache: Mutex<HashMap<String, Arc<DistributionRule>>>,
    /// Zone scopes registered in the index, by balancer and its scope.
    scopes: Mutex<HashMap<(String, String), (ZoneScope, ScopeId)>>,
    /// Reservations this replica dropped after deciding (a pin conflict, the deadline, a lost write),
    /// until they would have expired: strict mode must not share them again.
    released: Mutex<HashMap<String, jiff::Timestamp>>,
    steering: Steering,
    /// See [`Decider::set_expensive_phase_hook`].
    expensive_phase_hook: Mutex<Option<ExpensivePhaseHook>>,
}

/// What is known of the pod under admission.
pub struct Candidate<'a> {
    pub pod: &'a k8s_openapi::api::core::v1::Pod,
    /// The request's namespace (the pod's own is often empty at CREATE).
    pub namespace: &'a str,
    /// The AdmissionReview uid: the reservation id.
    pub uid: &'a str,
    pub dry_run: bool,
}

impl Decider {
    pub fn new(index: SharedIndex, rules: Arc<dyn RuleSource>, reservation_ttl: Duration) -> Self {
        Decider {
            index,
            rules,
            reservation_ttl,
            rule_cache: Mutex::new(HashMap::new()),
            scopes: Mutex::new(HashMap::new()),
            released: Mutex::new(HashMap::new()),
            steering: Steering::default(),
            expensive_phase_hook: Mutex::new(None),
        }
    }

    pub fn index(&self) -> &SharedIndex {
        &self.index
    }

    /// Decides, and reserves unless it is a dry run. Errors are the caller's to fail open on.
    ///
    /// Locks: the pod's ReplicaSet owner and the rule's inputs are read under the index's read lock,
    /// briefly; converting the pod, building the rule and its table, and checking which groups have a
    /// node that fits happen under no lock that another workload's admission needs. Only counting,
    /// choosing and reserving take the write lock, together, which keeps a burst of one ReplicaSet
    /// exactly on target.
    pub fn decide(&self, c: &Candidate<'_>) -> Result<Decision, DecideError> {
        if let Some(why) = left_as_it_is(c.pod) {
            return Ok(Decision::none(why));
        }
        let pod = self.convert(c)?;
        let Some(workload) = pod.workload.clone() else {
            return Ok(Decision::none("pod has no controller: left alone"));
        };
        // The caller's span (`admission`, or a strict round's per-admission span) names the workload.
        tracing::Span::current().record("workload", tracing::field::display(&workload));
        let mut decision = match self.applicable(c.namespace, &pod, &workload)? {
            Applicable::Distribution(pd) => {
                let chosen = self.distribution_rule(&pd, &workload)?;
                self.place_distributed(c, &pod, &workload, chosen)?
            }
            Applicable::Strategy(text) => {
                let chosen = self.strategy_rule(&text, &workload)?;
                self.place_distributed(c, &pod, &workload, chosen)?
            }
            Applicable::ZoneBalancer(zb, config) => self.place_zone(c, &pod, &workload, &zb, config)?,
            Applicable::None(NoRule::NotPlaced) => {
                // A DaemonSet pod belongs on its own node, a Job's pods are not spread: never add a selector.
                Decision::none(format!("{} pods are not placed: left alone", workload.kind))
            }
            Applicable::None(why) => Decision::none(why.to_string()),
        };
        self.steer(c, &workload, &mut decision);
        tracing::debug!(rule = decision.rule.as_str(), reason = %decision.reason, "decided");
        Ok(decision)
    }

    /// The pod in core terms. Only its ReplicaSet's owner is looked up under the index's read lock; the
    /// conversion itself runs outside it.
    fn convert(&self, c: &Candidate<'_>) -> Result<Pod, DecideError> {
        let with_namespace;
        let object = if c.pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            // The namespace is the request's when the object does not carry it.
            let mut p = c.pod.clone();
            p.metadata.namespace = Some(c.namespace.to_string());
            with_namespace = p;
            &with_namespace
        } else {
            c.pod
        };
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let owner_name = placement_kube::convert::owners::controller_ref(&object.metadata).map(|o| o.name.clone());
        let owner = owner_name.as_deref().and_then(|rs| self.index.read().owners().replicaset_owner(&namespace, rs));
        let lookup =
            |ns: &str, rs: &str| (ns == namespace && Some(rs) == owner_name.as_deref()).then(|| owner.clone())?;
        let mut pod = placement_kube::convert::pod(object, &lookup).map_err(DecideError::Convert)?;
        pod.namespace = c.namespace.to_string();
        Ok(pod)
    }

    /// The rule that applies to the pod ([`placement_core::resolve`]), with what deciding by it needs.
    fn applicable(&self, namespace: &str, pod: &Pod, workload: &WorkloadRef) -> Result<Applicable, DecideError> {
        let distributions = oldest_first(self.rules.distributions(namespace));
        let balancers = self.rules.zone_balancers(namespace);
        let targets: Vec<DistributionView> = distributions
            .iter()
            .map(|pd| DistributionView {
                target: WorkloadRef::new(pd.spec.target_ref.kind.to_core(), namespace, &pd.spec.target_ref.name),
                strict: pd.spec.strict,
            })
            .collect();
        let configs: Vec<_> = balancers.iter().map(|zb| zb.spec.to_core()).collect();
        let views: Vec<ZoneBalancerView> = configs
            .iter()
            .zip(&balancers)
            .map(|(config, zb)| match config {
                Ok(c) => ZoneBalancerView {
                    webhook_mode: c.mode == ZoneMode::Webhook,
                    selects_pod: c.selector.matches(&pod.labels),
                    strict: zb.spec.strict,
                },
                // An unreadable balancer might select the pod: if it is the one that applies, its error
                // fails the pod open (below) instead of another rule placing it.
                Err(_) => ZoneBalancerView { webhook_mode: true, selects_pod: true, strict: false },
            })
            .collect();
        let (strategy, replicas) = {
            let index = self.index.read();
            let w = index.workload(workload);
            let text = w
                .and_then(|w| w.annotations.get(STRATEGY_ANNOTATION).or(w.annotations.get(LEGACY_STRATEGY_ANNOTATION)));
            (text.cloned(), w.map(|w| w.replicas))
        };
        let view = WorkloadView { workload, has_strategy: strategy.is_some(), replicas };
        Ok(match resolve(&view, &targets, &views) {
            AppliedRule::Distribution { index, .. } => Applicable::Distribution(distributions[index].clone()),
            AppliedRule::Strategy => Applicable::Strategy(strategy.unwrap_or_default()),
            AppliedRule::ZoneBalancer { index, .. } => {
                let zb = balancers[index].clone();
                let config = configs
                    .into_iter()
                    .nth(index)
                    .expect("one config per balancer")
                    .map_err(|e| DecideError::Rule(format!("ZoneBalancer {namespace}/{}: {e}", name_of(&*zb))))?;
                Applicable::ZoneBalancer(zb, config)
            }
            AppliedRule::None(why) => Applicable::None(why),
        })
    }

    /// The rule of a PodDistribution, cached by its uid and generation.
    fn distribution_rule(&self, pd: &PodDistribution, workload: &WorkloadRef) -> Result<ChosenRule, DecideError> {
        let config = pd
            .spec
            .to_core(&workload.namespace)
            .map_err(|e| DecideError::Rule(format!("PodDistribution {}/{}: {e}", workload.namespace, name_of(pd))))?;
        let key =
            format!("pd/{}/{}", pd.metadata.uid.as_deref().unwrap_or(""), pd.metadata.generation.unwrap_or_default());
        let rule = self.cached(key, || Ok(config.rule.clone()))?;
        let source = format!("PodDistribution {}/{}", workload.namespace, name_of(pd));
        Ok(ChosenRule { rule, kind: RuleKind::PodDistribution, source, enforcement: config.enforcement })
    }

    /// The rule of a strategy annotation, cached by a hash of the annotation.
    fn strategy_rule(&self, text: &str, workload: &WorkloadRef) -> Result<ChosenRule, DecideError> {
        let rule = self.cached(strategy_cache_key(text), || {
            let strategy: Strategy = text.parse().map_err(|e| DecideError::Rule(format!("{workload}: {e}")))?;
            DistributionRule::from_strategy(&strategy, Fallback::Next).map_err(|e| DecideError::Rule(e.to_string()))
        })?;
        let source = format!("strategy annotation on {workload}");
        Ok(ChosenRule { rule, kind: RuleKind::Strategy, source, enforcement: Enforcement::Required })
    }

    /// Adds the rebalancer's steering to a decision, when a plan moved a pod of this workload.
    fn steer(&self, c: &Candidate<'_>, workload: &WorkloadRef, decision: &mut Decision) {
        let policies = self.rules.rebalance_policies();
        if policies.is_empty() {
            return;
        }
        let Some(steer) = self.steering.choose(&policies, workload, &self.index.read(), c.dry_run) else { return };
        if decision.rule == RuleKind::None {
            decision.rule = RuleKind::Steering;
            decision.source = steer.source.clone();
            decision.reason = steer.reason.clone();
        } else {
            decision.reason = format!("{}; {}", decision.reason, steer.reason);
        }
        decision.steer = Some(steer);
    }

    /// The rule under `key`, built by `build` on a miss. The cache's lock is not held while building:
    /// an expensive rule delays only the admissions that need it.
    fn cached(
        &self,
        key: String,
        build: impl FnOnce() -> Result<DistributionRule, DecideError>,
    ) -> Result<Arc<DistributionRule>, DecideError> {
        if let Some(r) = self.rule_cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(r.clone());
        }
        let rule = Arc::new(build()?);
        let mut cache = self.rule_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        Ok(cache.entry(key).or_insert(rule).clone())
    }

    /// Places a pod of a distributed workload: feasibility and the rule's table are worked out under the
    /// read lock or none; counting, choosing and reserving under the write lock.
    fn place_distributed(
        &self,
        c: &Candidate<'_>,
        pod: &Pod,
        workload: &WorkloadRef,
        chosen: ChosenRule,
    ) -> Result<Decision, DecideError> {
        let ChosenRule { rule, kind, source, enforcement } = chosen;
        let (feasibility, counted) = {
            let index = self.index.read();
            let (counts, ledger) = index.counts_and_ledger();
            (distribution_feasibility(counts, &rule, pod), counted(counts, ledger, &rule, pod))
        };
        // The table up to a little past the next size, so that the write lock below only reads it.
        let ahead = counted.saturating_add(TABLE_HEADROOM);
        self.expensive_phase(workload, rule.apportionment.is_built_for(ahead), || {
            rule.apportionment.target(ahead);
        });
        let mut index = self.index.write();
        let (counts, ledger) = index.counts_and_ledger();
        let d = decide_distribution_with(counts, ledger, &rule, pod, &feasibility)
            .map_err(|e| DecideError::Rule(e.to_string()))?;
        let Some(group) = d.group_name.clone() else {
            return Ok(Decision { rule: kind, source, ..Decision::none(d.reason) });
        };
        let reservation = self.reserve(&mut index, c, workload, pod.revision.clone(), group);
        let (required, preferred) = match enforcement {
            Enforcement::Required => (d.node_selector, Labels::new()),
            Enforcement::Preferred => (Labels::new(), d.node_selector),
        };
        Ok(Decision { rule: kind, source, required, preferred, reason: d.reason, reservation, steer: None })
    }

    /// Places a single-replica pod by a ZoneBalancer, with the same lock discipline.
    fn place_zone(
        &self,
        c: &Candidate<'_>,
        pod: &Pod,
        workload: &WorkloadRef,
        zb: &ZoneBalancer,
        config: ZoneBalancerConfig,
    ) -> Result<Decision, DecideError> {
        let name = name_of(zb);
        let scope = ZoneScope {
            namespace: c.namespace.to_string(),
            selector: config.selector.clone(),
            topology_key: config.topology_key.clone(),
        };
        let scope_id = self.scope(c.namespace, &name, scope).map_err(|e| DecideError::Rule(e.to_string()))?;
        let key = zone_scope_key(c.namespace, &name);
        let feasibility = zone_feasibility(self.index.read().counts(), scope_id, &config.zones, pod);
        self.expensive_phase(workload, true, || ());
        let mut index = self.index.write();
        let (counts, ledger) = index.counts_and_ledger();
        let d = decide_zone_with(counts, ledger, scope_id, &key, feasibility, pod);
        let source = format!("ZoneBalancer {}/{name}", c.namespace);
        let Some(zone) = d.zone.clone() else {
            return Ok(Decision { rule: RuleKind::ZoneBalancer, source, ..Decision::none(d.reason) });
        };
        let reservation = self.reserve(&mut index, c, &key, None, zone.clone());
        let labels = Labels::from([(config.topology_key.clone(), zone)]);
        let (required, preferred) = match config.affinity {
            ZoneAffinity::Required => (labels, Labels::new()),
            ZoneAffinity::Preferred => (Labels::new(), labels),
        };
        Ok(Decision {
            rule: RuleKind::ZoneBalancer,
            source,
            required,
            preferred,
            reason: d.reason,
            reservation,
            steer: None,
        })
    }

    /// Where a decision does its work outside the index's locks (`work`; `done` when there is none
    /// left, as when the rule's table is already built): off the runtime's worker when there is work,
    /// so that admissions of other workloads, probes and watches go on meanwhile (see [`off_worker`]).
    /// A test hook can make one workload's admissions slow here, to show that others do not wait for
    /// them.
    fn expensive_phase(&self, workload: &WorkloadRef, done: bool, work: impl FnOnce()) {
        // Cloned out first: the hook's lock must not be held while the hook runs.
        let hook = self.expensive_phase_hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if done && hook.is_none() {
            return;
        }
        off_worker(|| {
            if let Some(hook) = hook {
                hook(workload);
            }
            work();
        });
    }

    /// Test hook: `hook` runs in every decision where its expensive work runs, outside the index's locks.
    #[doc(hidden)]
    pub fn set_expensive_phase_hook(&self, hook: ExpensivePhaseHook) {
        *self.expensive_phase_hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// The index scope of a zone balancer, registered on first use; when its scope changed, the old one
    /// is removed. Fails past the index's bound on scopes ([`placement_core::index::MAX_ZONE_SCOPES`]).
    fn scope(&self, namespace: &str, name: &str, scope: ZoneScope) -> Result<ScopeId, TooManyScopes> {
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if let Some((s, id)) = scopes.get(&key)
            && *s == scope
        {
            return Ok(*id);
        }
        let mut index = self.index.write();
        if let Some((_, old)) = scopes.remove(&key) {
            index.remove_zone_scope(old);
        }
        let id = index.add_zone_scope(scope.clone())?;
        scopes.insert(key, (scope, id));
        Ok(id)
    }

    /// Unregisters the zone scopes of balancers that are gone (the upkeep loop calls it now and then).
    /// Returns how many were removed.
    pub fn forget_unused_scopes(&self) -> usize {
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<(String, String)> = scopes
            .keys()
            .filter(|(ns, name)| !self.rules.zone_balancers(ns).iter().any(|zb| name_of(&**zb) == *name))
            .cloned()
            .collect();
        if gone.is_empty() {
            return 0;
        }
        let mut index = self.index.write();
        for key in &gone {
            if let Some((_, id)) = scopes.remove(key) {
                index.remove_zone_scope(id);
            }
        }
        gone.len()
    }

    /// Zone scopes registered by this decider.
    pub fn zone_scope_count(&self) -> usize {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn reserve(
        &self,
        index: &mut LiveIndex,
        c: &Candidate<'_>,
        workload: &WorkloadRef,
        revision: Option<String>,
        group: String,
    ) -> Option<String> {
        if c.dry_run || !is_reservation_id(c.uid) {
            // A uid the API server would not send (not a UUID): decided, but never stored.
            return None;
        }
        let now = jiff::Timestamp::now();
        let ttl = jiff::SignedDuration::try_from(self.reservation_ttl).unwrap_or(jiff::SignedDuration::from_secs(30));
        let expires = now.saturating_add(ttl).unwrap_or(now);
        let r = Reservation { id: c.uid.to_string(), workload: workload.clone(), revision, group, pod: None, expires };
        self.released.lock().unwrap_or_else(|e| e.into_inner()).remove(c.uid);
        index.ledger_mut().add(r);
        Some(c.uid.to_string())
    }

    /// The resource whose status shares the ledger for this pod's decision, when the rule that
    /// applies to it asks for strict mode (see [`crate::strict`]). `None` for everything decided
    /// locally, including reinvocations and pods that no rule places.
    pub fn strict_target(&self, c: &Candidate<'_>) -> Option<StrictTarget> {
        let distributions = self.rules.distributions(c.namespace);
        let balancers = self.rules.zone_balancers(c.namespace);
        if !distributions.iter().any(|pd| pd.spec.strict) && !balancers.iter().any(|zb| zb.spec.strict) {
            return None;
        }
        if left_as_it_is(c.pod).is_some() {
            return None;
        }
        let pod = self.convert(c).ok()?;
        let workload = pod.workload.clone()?;
        // The rule `decide` will apply: the same resolution, so both paths always agree.
        match self.applicable(c.namespace, &pod, &workload).ok()? {
            Applicable::Distribution(pd) if pd.spec.strict => {
                Some(StrictTarget { ledger_key: workload, holder: SharedIn::PodDistribution(pd) })
            }
            Applicable::ZoneBalancer(zb, _) if zb.spec.strict => Some(StrictTarget {
                ledger_key: zone_scope_key(c.namespace, &name_of(&*zb)),
                holder: SharedIn::ZoneBalancer(zb),
            }),
            _ => None,
        }
    }

    /// Makes the local ledger's reservations for `key` exactly those shared in `shared` (minus what is
    /// expired, released here, or already seen as a pod here): strict mode calls it after reading the
    /// status and before deciding. A shared reservation stays counted here until this replica's own
    /// watch shows its pod, whichever replica saw it first.
    pub fn sync_shared_ledger(&self, key: &WorkloadRef, shared: &LedgerState) {
        let now = jiff::Timestamp::now();
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let live: HashMap<&str, &Reservation> = shared
            .reservations
            .iter()
            .filter(|r| r.workload == *key && still_shared(r, shared, &released, now))
            .map(|r| (r.id.as_str(), r))
            .collect();
        drop(released);
        let mut index = self.index.write();
        let ledger = index.ledger_mut();
        for r in ledger.state().reservations {
            if r.workload == *key && !live.contains_key(r.id.as_str()) {
                ledger.release(&r.id);
            }
        }
        for r in live.into_values() {
            ledger.add(r.clone());
        }
    }

    /// The shared ledger to write for `key` after deciding: what `shared` listed that still counts,
    /// plus this replica's new reservations. A reservation this replica has seen as a pod is marked
    /// confirmed and stays listed for [`CONFIRMED_LISTED_FOR`], so replicas whose watches are behind
    /// keep counting it.
    pub fn shared_state(&self, key: &WorkloadRef, shared: &LedgerState) -> LedgerState {
        let now = jiff::Timestamp::now();
        let grace = jiff::SignedDuration::try_from(CONFIRMED_LISTED_FOR).unwrap_or_default();
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.index.read();
        let ledger = index.ledger();
        let mut reservations: std::collections::BTreeMap<String, Reservation> = std::collections::BTreeMap::new();
        let mut confirmed = std::collections::BTreeMap::new();
        for r in shared.reservations.iter().filter(|r| r.workload == *key) {
            if !still_shared(r, shared, &released, now) {
                continue;
            }
            if let Some(until) = shared.confirmed.get(&r.id) {
                confirmed.insert(r.id.clone(), *until);
            } else if ledger.is_confirmed(&r.id) {
                let until = now.saturating_add(grace).unwrap_or(now).min(r.expires);
                confirmed.insert(r.id.clone(), until);
            }
            reservations.insert(r.id.clone(), r.clone());
        }
        for r in ledger.state().reservations {
            if r.workload == *key && r.expires > now && !released.contains_key(&r.id) {
                reservations.entry(r.id.clone()).or_insert(r);
            }
        }
        LedgerState { reservations: reservations.into_values().collect(), confirmed }
    }

    /// Drops one reservation (a decision that was not applied), and remembers not to share it again.
    pub fn release(&self, id: &str) {
        let dropped = self.index.write().ledger_mut().release(id);
        let until = dropped.map(|r| r.expires).unwrap_or_else(|| {
            let ttl = jiff::SignedDuration::try_from(self.reservation_ttl).unwrap_or_default();
            jiff::Timestamp::now().saturating_add(ttl).unwrap_or_else(|_| jiff::Timestamp::now())
        });
        self.released.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), until);
    }

    /// Drops reservations whose pods never appeared.
    pub fn expire_reservations(&self) -> usize {
        let now = jiff::Timestamp::now();
        {
            let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
            if !released.is_empty() {
                released.retain(|_, until| *until > now);
            }
        }
        // A statement of its own, so that the write lock is released before the dropped reservations
        // are freed.
        let expired = self.index.write().ledger_mut().expire(now);
        expired.len()
    }
}

/// How long a shared reservation stays listed after some replica saw its pod: a bound on how far one
/// replica's pod watch may lag another's.
pub const CONFIRMED_LISTED_FOR: Duration = Duration::from_secs(5);

/// Whether a reservation read from a shared ledger still counts.
fn still_shared(
    r: &Reservation,
    shared: &LedgerState,
    released: &HashMap<String, jiff::Timestamp>,
    now: jiff::Timestamp,
) -> bool {
    shared.counts(r, now) && !released.contains_key(&r.id)
}

/// The resource whose status holds a shared ledger.
#[derive(Clone, Debug)]
pub enum SharedIn {
    PodDistribution(Arc<PodDistribution>),
    ZoneBalancer(Arc<ZoneBalancer>),
}

/// Where strict mode shares the reservations of one decision.
#[derive(Clone, Debug)]
pub struct StrictTarget {
    /// The resource whose status is the shared ledger.
    pub holder: SharedIn,
    /// The ledger's workload key: the PodDistribution's target, or the ZoneBalancer's zone scope.
    pub ledger_key: WorkloadRef,
}

impl StrictTarget {
    /// `PodDistribution/shop/web`: one shared ledger, one queue of decisions per replica.
    pub fn key(&self) -> String {
        let (kind, meta) = match &self.holder {
            SharedIn::PodDistribution(pd) => ("PodDistribution", &pd.metadata),
            SharedIn::ZoneBalancer(zb) => ("ZoneBalancer", &zb.metadata),
        };
        format!("{kind}/{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
    }
}

/// Why a pod is left as it is before any rule is looked at, if it is: a reinvocation (the pod carries
/// this webhook's reservation or decision already, so nothing is reserved or steered twice), or a pod
/// bound to a node by its creator (`spec.nodeName`: the scheduler is not involved, a selector could only
/// make the kubelet reject it).
fn left_as_it_is(pod: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let annotations = pod.metadata.annotations.as_ref();
    if let Some(id) = annotations.and_then(|a| a.get(RESERVATION_ANNOTATION)) {
        return Some(format!("already placed (reservation {})", crate::review::bounded(id, 64)));
    }
    if annotations.is_some_and(|a| a.contains_key(crate::admission::DECISION_ANNOTATION)) {
        return Some("already decided by placement (a reinvocation): left as it is".into());
    }
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())?;
    Some(format!("bound to node {} by its creator: left alone", crate::review::bounded(node, 253)))
}

/// The rule cache's key for a strategy annotation: 128 bits of keyed SipHash of its text rather than the
/// text (up to 4 KiB, times up to 10,000 entries). The keys are random per process and never leave it,
/// so no annotation can be written to collide with another's (SipHash is a keyed pseudo-random
/// function), and by chance two of 10,001 texts collide with probability about 10,001² / 2^129, under
/// 10^-30. (A collision would give one workload the other's rule.)
fn strategy_cache_key(text: &str) -> String {
    use std::hash::BuildHasher;
    static HASHER: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let hasher = HASHER.get_or_init(std::hash::RandomState::new);
    let (high, low) = (hasher.hash_one((0u8, text)), hasher.hash_one((1u8, text)));
    format!("strategy/{high:016x}{low:016x}")
}

/// PodDistributions in the order they apply when several target one workload: the oldest, then the
/// first by name (the operator's upkeep uses the same rule, so both always agree on which applies).
fn oldest_first(mut distributions: Vec<Arc<PodDistribution>>) -> Vec<Arc<PodDistribution>> {
    distributions.sort_by_key(|pd| (pd.metadata.creation_timestamp.clone().map(|t| t.0), name_of(&**pd)));
    distributions
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// Why no decision could be made (the caller fails open).
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("the pod cannot be read: {0}")]
    Convert(placement_kube::convert::ConvertError),
    #[error("invalid placement rule: {0}")]
    Rule(String),
    #[error("strict mode: {0}")]
    Strict(String),
}

impl DecideError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            DecideError::Convert(_) => "convert",
            DecideError::Rule(_) => "rule",
            DecideError::Strict(_) => "strict",
        }
    }
}
