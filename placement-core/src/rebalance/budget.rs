//! Budgets and backoff for one plan. Every budget counts the evictions already in the history window
//! *and* those planned earlier in the same pass: the cluster rate is a 60-second window, not a count
//! per reconcile; namespace and WorkloadSLO budgets are one-hour windows; PDBs give
//! `disruptionsAllowed`; a workload may not lose more than its `maxUnavailable` (minus pods already not
//! Ready). Backoff is keyed by workload and by node, never by pod name, so a recreated pod with a new
//! name is still protected.

use super::filters::SkipReason;
use super::observe::EvictionRecord;
use super::policy::{RebalancePolicy, WorkloadSlo};
use crate::model::{Pod, Snapshot, WorkloadRef};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;

pub(crate) struct Budgets<'a> {
    policy: &'a RebalancePolicy,
    slos: &'a [WorkloadSlo],
    snapshot: &'a Snapshot,
    history: &'a [EvictionRecord],
    now: Timestamp,
    planned: Vec<EvictionRecord>,
    pdb_used: HashMap<usize, u32>,
    unready: HashMap<&'a WorkloadRef, u32>,
    pdbs_by_namespace: HashMap<&'a str, Vec<usize>>,
    max_unavailable: HashMap<&'a WorkloadRef, u32>,
}

/// `secs` before `now`, or the earliest time there is. Time arithmetic here never panics, whatever
/// the policy says: an absurd backoff means "never again", not a crash.
fn since(now: Timestamp, secs: u64) -> Timestamp {
    now.checked_sub(SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))).unwrap_or(Timestamp::MIN)
}

/// `secs` after `t`, or the latest time there is.
fn after(t: Timestamp, secs: u64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))).unwrap_or(Timestamp::MAX)
}

impl<'a> Budgets<'a> {
    pub(crate) fn new(
        policy: &'a RebalancePolicy,
        slos: &'a [WorkloadSlo],
        snapshot: &'a Snapshot,
        history: &'a [EvictionRecord],
        now: Timestamp,
    ) -> Self {
        let mut unready: HashMap<&WorkloadRef, u32> = HashMap::new();
        for p in snapshot.pods.iter().filter(|p| p.counts() && !p.ready) {
            if let Some(w) = &p.workload {
                *unready.entry(w).or_insert(0) += 1;
            }
        }
        let mut pdbs_by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, pdb) in snapshot.pdbs.iter().enumerate() {
            pdbs_by_namespace.entry(pdb.namespace.as_str()).or_default().push(i);
        }
        let max_unavailable = snapshot.workloads.iter().map(|w| (&w.workload, w.max_unavailable)).collect();
        Budgets {
            policy,
            slos,
            snapshot,
            history,
            now,
            planned: Vec::new(),
            pdb_used: HashMap::new(),
            unready,
            pdbs_by_namespace,
            max_unavailable,
        }
    }

    fn all(&self) -> impl Iterator<Item = &EvictionRecord> {
        self.history.iter().chain(&self.planned)
    }

    fn count_since(&self, secs: u64, pred: impl Fn(&EvictionRecord) -> bool) -> u32 {
        let from = since(self.now, secs);
        self.all().filter(|r| r.at > from && pred(r)).count() as u32
    }

    pub(crate) fn slo_of(&self, pod: &Pod) -> Option<&'a WorkloadSlo> {
        self.slos.iter().find(|s| s.covers(pod))
    }

    /// Does the plan-wide budget still allow an eviction?
    pub(crate) fn plan_allows(&self) -> Result<(), SkipReason> {
        if self.planned.len() as u32 >= self.policy.max_evictions_per_plan {
            return Err(SkipReason::PlanLimit { limit: self.policy.max_evictions_per_plan });
        }
        if self.count_since(60, |_| true) >= self.policy.max_evictions_per_minute {
            return Err(SkipReason::ClusterRateLimit { limit: self.policy.max_evictions_per_minute });
        }
        Ok(())
    }

    /// The PDBs covering `pod` (computed once per candidate).
    pub(crate) fn covering_pdbs(&self, pod: &Pod) -> Vec<usize> {
        self.pdbs_of(pod).map(|(i, _)| i).collect()
    }

    /// The first budget or backoff that forbids evicting `pod` (covered by `pdbs`) from `node` now.
    pub(crate) fn allows(&self, pod: &Pod, node: &str, pdbs: &[usize]) -> Result<(), SkipReason> {
        self.plan_allows()?;
        if let Some(limit) = self.policy.max_evictions_per_namespace_per_hour
            && self.count_since(3600, |r| r.pod.namespace == pod.namespace) >= limit
        {
            return Err(SkipReason::NamespaceBudget { namespace: pod.namespace.clone(), limit });
        }
        if let Some(slo) = self.slo_of(pod)
            && self.count_since(3600, |r| r.slo.as_deref() == Some(&slo.name) && r.pod.namespace == slo.namespace)
                >= slo.max_disruptions_per_hour
        {
            return Err(SkipReason::SloBudget { slo: slo.name.clone(), limit: slo.max_disruptions_per_hour });
        }
        for &i in pdbs {
            let pdb = &self.snapshot.pdbs[i];
            if self.pdb_used.get(&i).copied().unwrap_or(0) >= pdb.disruptions_allowed {
                return Err(SkipReason::PdbExhausted { pdb: format!("{}/{}", pdb.namespace, pdb.name) });
            }
        }
        if let Some(w) = &pod.workload {
            let max = self.max_unavailable.get(w).copied().unwrap_or(1);
            let planned = self.planned.iter().filter(|r| r.workload.as_ref() == Some(w)).count() as u32;
            if self.unready.get(w).copied().unwrap_or(0) + planned >= max {
                return Err(SkipReason::WorkloadMaxUnavailable { max_unavailable: max });
            }
            let from = since(self.now, self.policy.workload_backoff_seconds);
            if let Some(last) =
                self.history.iter().filter(|r| r.workload.as_ref() == Some(w) && r.at > from).map(|r| r.at).max()
            {
                let until = after(last, self.policy.workload_backoff_seconds);
                return Err(SkipReason::WorkloadBackoff { until: until.to_string() });
            }
        }
        let from = since(self.now, self.policy.node_backoff_seconds);
        if let Some(last) = self.history.iter().filter(|r| r.from == node && r.at > from).map(|r| r.at).max() {
            let until = after(last, self.policy.node_backoff_seconds);
            return Err(SkipReason::NodeBackoff { until: until.to_string() });
        }
        Ok(())
    }

    fn pdbs_of<'p>(&'p self, pod: &'p Pod) -> impl Iterator<Item = (usize, &'a crate::model::Pdb)> + 'p {
        self.pdbs_by_namespace
            .get(pod.namespace.as_str())
            .into_iter()
            .flatten()
            .map(|&i| (i, &self.snapshot.pdbs[i]))
            .filter(|(_, pdb)| pdb.covers(pod))
    }

    /// Count a planned eviction against every budget.
    pub(crate) fn consume(&mut self, record: EvictionRecord, pdbs: &[usize]) {
        for &i in pdbs {
            *self.pdb_used.entry(i).or_insert(0) += 1;
        }
        self.planned.push(record);
    }
}
