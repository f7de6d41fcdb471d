//! Weighted distribution with an optional base (`docs/semantics.md#2-weighted-distribution-with-base`):
//! how many of `n` pods each ordered group should hold (`target(n)`), which group the next pod goes to
//! from *any* current counts, and in which order pods should go on scale-down.
//!
//! `target` assigns pods one at a time: the base first, then Sainte-Laguë priority `w/(2c+1)` among the
//! groups allowed by Still's quota guard (upper quota, and a look-ahead that every group can still reach
//! its lower quota). The result is house-monotone (no Alabama paradox) and within one pod of the exact
//! quota at every size. The sequence is cached: decisions read one row of a table.
//!
//! # The look-ahead in bounded time
//!
//! Read as written, the look-ahead for group `i` checks every size `t` from `j` (the size the pod
//! makes) until `i`'s lower quota passes its new count, about `W / w_i` sizes: seconds per sequence
//! for weights like fifteen 1s and one 10,000. It reduces to one search per pod, shared by all groups.
//!
//! Write `q_k(t) = floor(w_k t / W)` (lower quota), `c` for the counts after `j - 1` pods, and
//! `D(t) = sum_k max(0, q_k(t) - c_k)`: the pods still owed, at size `t`, to groups below their lower
//! quota. The look-ahead for `i` asks, with `c'` = `c` plus the pod to `i`, that
//! `sum_k max(c'_k, q_k(t)) = j + D'(t) <= t` for each `t` it checks.
//!
//! * **Invariant**: `D(t) <= t - (j - 1)` for every `t >= j - 1` (the remaining pods suffice for every
//!   future lower quota). It holds for `c = 0` (`sum_k q_k(t) <= t`) and is kept by every eligible
//!   choice: where `i`'s look-ahead checked, by the check, and beyond it `D'(t) = D(t) - 1`.
//! * **Lemma**: let `short_i` be the first size with `q_i(t) > c_i`. Below `short_i`, `D'(t) = D(t)`; from
//!   it on, `D'(t) = D(t) - 1`, and there the check holds by the invariant. So `i` passes the
//!   look-ahead exactly when no size `t` in `j..short_i` is **tight**: `D(t) = t - j + 1`.
//! * Hence, with `τ` the first tight size `>= j`, group `i` is eligible exactly when it is within its
//!   upper quota and `q_i(τ) > c_i` (it is short of its lower quota at `τ`). Some group always is:
//!   `τ` exists (every multiple of `W` is tight, below), and if every group short at `τ` were at or
//!   above `w_k j / W`, then `D(τ) <= (τ - j) sum w_k / W < τ - j + 1`. So the guard never has to fall
//!   back to plain Webster ([`Apportionment::guard_fallbacks`] stays 0) and the invariant carries on.
//!
//! Finding `τ`: `t - j + 1 - D(t) = slack(t) - excess(t)`, with `slack(t) = t - sum_k q_k(t)` (the sum of
//! the fractional parts of `w_k t / W`: at most `K - 1` for `K` groups with a weight, 0 exactly at the
//! multiples of `W` since the weights are divided by their gcd, and periodic with period `W`) and
//! `excess(t) = sum_k max(0, c_k - q_k(t))`, which only drops, at most `slack(j)` times (at sizes
//! computed directly). On each stretch of constant excess `e`, the first tight size is the first `t`
//! with `slack(t) <= e`: a descent of a min-tree over one period of slack, built once per extension of
//! the table in O(W) additions (`SlackPeriod`). The search is needed only when Webster's choice (the
//! highest priority within upper quota) is not already short at `j`, and only up to its `short`: if no
//! size there is tight, Webster's choice is eligible and wins; otherwise `τ` decides. Each pod costs
//! O(K) plus at most K tree descents of O(log W).
//!
//! `tests::eligibility_by_the_first_tight_size_equals_the_scan` and
//! `tests/apportion_props.rs::target_equals_the_definition` hold this equal to the definition, checked
//! one size at a time.

use crate::group::Feasibility;
use serde::{Deserialize, Serialize};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// Why an apportionment cannot be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApportionError {
    #[error("no groups")]
    NoGroups,
    #[error("weights must sum to more than zero (groups: {groups})")]
    ZeroWeights { groups: String },
    #[error("base names group {index}, but there are only {groups} groups")]
    BaseOutOfRange { index: usize, groups: usize },
    #[error("{given} counts given for {groups} groups")]
    CountMismatch { given: usize, groups: usize },
}

/// `count` pods that go to group `group` before any weighting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub group: usize,
    pub count: u32,
}

/// What to do when the best group has no node that fits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fallback {
    /// Take the next best feasible group.
    #[default]
    Next,
    /// Leave the pod unmutated and say why.
    None,
}

/// The cached sequence of the weighted part: row `j` holds the counts after `j` weighted pods.
#[derive(Debug, Default)]
struct Table {
    rows: Vec<u32>,
    steps: usize,
}

/// A weighted/base distribution over ordered groups.
#[derive(Debug)]
pub struct Apportionment {
    names: Vec<String>,
    /// Weights divided by their gcd.
    weights: Vec<u64>,
    total: u64,
    base: Option<Base>,
    table: RwLock<Table>,
    guard_fallbacks: AtomicU64,
    look_ahead_work: AtomicU64,
}

impl Clone for Apportionment {
    fn clone(&self) -> Self {
        Apportionment {
            names: self.names.clone(),
            weights: self.weights.clone(),
            total: self.total,
            base: self.base,
            table: RwLock::new(Table::default()),
            guard_fallbacks: AtomicU64::new(0),
            look_ahead_work: AtomicU64::new(0),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Apportionment {
    /// Groups as `(name, weight)` in order, and an optional base.
    pub fn new(groups: Vec<(String, u32)>, base: Option<Base>) -> Result<Self, ApportionError> {
        if groups.is_empty() {
            return Err(ApportionError::NoGroups);
        }
        if let Some(b) = base
            && b.group >= groups.len()
        {
            return Err(ApportionError::BaseOutOfRange { index: b.group, groups: groups.len() });
        }
        let g = groups.iter().fold(0u64, |g, (_, w)| gcd(g, u64::from(*w)));
        if g == 0 {
            let groups = groups.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ApportionError::ZeroWeights { groups });
        }
        let weights: Vec<u64> = groups.iter().map(|(_, w)| u64::from(*w) / g).collect();
        Ok(Apportionment {
            names: groups.into_iter().map(|(n, _)| n).collect(),
            total: weights.iter().sum(),
            weights,
            base,
            table: RwLock::new(Table::default()),
            guard_fallbacks: AtomicU64::new(0),
            look_ahead_work: AtomicU64::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Weights after division by their gcd.
    pub fn weights(&self) -> &[u64] {
        &self.weights
    }

    pub fn base(&self) -> Option<Base> {
        self.base
    }

    fn base_count(&self) -> u32 {
        self.base.map_or(0, |b| b.count)
    }

    /// How many times the quota guard found no eligible group and plain Webster decided instead. Zero
    /// for every input the property tests have tried; exposed so that they can check it.
    #[doc(hidden)]
    pub fn guard_fallbacks(&self) -> u64 {
        self.guard_fallbacks.load(AtomicOrdering::Relaxed)
    }

    /// Work of the quota guard's look-ahead so far: sizes examined one at a time, nodes of the slack
    /// tree visited, and slack table entries built (see the module doc). Exposed so that the tests can
    /// check that the look-ahead stays bounded; time itself is measured by the benches.
    #[doc(hidden)]
    pub fn look_ahead_work(&self) -> u64 {
        self.look_ahead_work.load(AtomicOrdering::Relaxed)
    }

    /// The counts per group for `n` pods.
    pub fn target(&self, n: u32) -> Vec<u32> {
        let mut out = vec![0; self.len()];
        self.target_into(n, &mut out);
        out
    }

    /// Whether [`Self::target`] up to `n` only reads the table (else its first call extends it: up to
    /// about 10 ms for 20,000 pods over 16 groups, docs/performance.md).
    pub fn is_built_for(&self, n: u32) -> bool {
        let weighted = (n - n.min(self.base_count())) as usize;
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        !table.rows.is_empty() && table.steps >= weighted
    }

    /// [`Self::target`] into a caller's buffer (no allocation once the table is warm).
    pub fn target_into(&self, n: u32, out: &mut [u32]) {
        let b = n.min(self.base_count());
        let weighted = (n - b) as usize;
        self.ensure(weighted);
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let k = self.len();
        out.copy_from_slice(&table.rows[weighted * k..(weighted + 1) * k]);
        if let Some(base) = self.base {
            out[base.group] += b;
        }
    }

    fn ensure(&self, steps: usize) {
        let built = |t: &Table| !t.rows.is_empty() && t.steps >= steps;
        if built(&self.table.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if built(&table) {
            // Another thread extended it while this one waited.
            return;
        }
        let k = self.len();
        if table.rows.is_empty() {
            table.rows = vec![0; k];
        }
        let goal = steps.max(table.steps * 2).max(64);
        let counts: Vec<u64> = table.rows[table.steps * k..].iter().map(|&c| u64::from(c)).collect();
        let mut sequence = Sequence::resume(self, table.steps as u64 + 1, counts);
        let more = (goal - table.steps) * k;
        table.rows.reserve(more);
        while table.steps < goal {
            let i = sequence.next_group();
            sequence.give(i);
            table.rows.extend(sequence.counts.iter().map(|&c| u32::try_from(c).unwrap_or(u32::MAX)));
            table.steps += 1;
        }
        self.look_ahead_work.fetch_add(sequence.work, AtomicOrdering::Relaxed);
    }

    /// `a` (earlier) or `b`, by Sainte-Laguë priority `w / (2c + 1)`; ties keep `a`.
    fn better_priority(&self, a: usize, b: usize, counts: &[u64]) -> usize {
        let pa = u128::from(self.weights[a]) * u128::from(2 * counts[b] + 1);
        let pb = u128::from(self.weights[b]) * u128::from(2 * counts[a] + 1);
        if pb > pa { b } else { a }
    }

    /// Plain Webster: the group of highest priority among those with a weight. What the quota guard
    /// would fall back to if no group were eligible (which the module doc proves never happens).
    fn webster(&self, counts: &[u64]) -> usize {
        self.guard_fallbacks.fetch_add(1, AtomicOrdering::Relaxed);
        (0..self.len()).filter(|&i| self.weights[i] > 0).reduce(|a, b| self.better_priority(a, b, counts)).unwrap_or(0)
    }

    /// Choose the group for one more pod, from any current `counts` (pods seen plus reservations, per
    /// group) and each group's feasibility for the pod.
    pub fn choose(
        &self,
        counts: &[u32],
        feasibility: &[Feasibility],
        fallback: Fallback,
    ) -> Result<AdmissionChoice, ApportionError> {
        let k = self.len();
        if counts.len() != k || feasibility.len() != k {
            return Err(ApportionError::CountMismatch { given: counts.len().min(feasibility.len()), groups: k });
        }
        let m = counts.iter().map(|&c| u64::from(c)).sum::<u64>().saturating_add(1).min(u64::from(u32::MAX)) as u32;
        let target = self.target(m);
        let ranking = self.rank(counts, &target, m);
        let describe = |i: usize| {
            format!(
                "{}: shortfall {} (target {} of {m}, has {})",
                self.names[i],
                i64::from(target[i]) - i64::from(counts[i]),
                target[i],
                counts[i]
            )
        };
        let others = |chosen: usize| {
            (0..k)
                .filter(|&i| i != chosen)
                .map(|i| format!("{} {}/{}", self.names[i], counts[i], target[i]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(&best) = ranking.first() else {
            return Ok(AdmissionChoice {
                group: None,
                fell_back: false,
                target: target.clone(),
                reason: "no group may take a pod (every weight is 0 and the base is full)".into(),
            });
        };
        if feasibility[best].feasible() {
            let mut reason = describe(best);
            if k > 1 {
                reason.push_str(&format!("; others (has/target): {}", others(best)));
            }
            return Ok(AdmissionChoice { group: Some(best), fell_back: false, target: target.clone(), reason });
        }
        let blocked = format!("{} infeasible ({})", self.names[best], feasibility[best]);
        let next = ranking.iter().copied().find(|&i| feasibility[i].feasible());
        Ok(match (fallback, next) {
            (Fallback::Next, Some(i)) => AdmissionChoice {
                group: Some(i),
                fell_back: true,
                target: target.clone(),
                reason: format!("{blocked}; next best {}", describe(i)),
            },
            (Fallback::Next, None) => AdmissionChoice {
                group: None,
                fell_back: true,
                target: target.clone(),
                reason: format!("{blocked}; no other group is feasible"),
            },
            (Fallback::None, _) => AdmissionChoice {
                group: None,
                fell_back: false,
                target: target.clone(),
                reason: format!("{blocked}; fallback is none, pod left to the scheduler"),
            },
        })
    }

    /// Groups that may take a pod, best first: largest shortfall, then furthest below the exact share
    /// of the weighted part, then the earlier group.
    fn rank(&self, counts: &[u32], target: &[u32], m: u32) -> Vec<usize> {
        let b = self.base_count();
        let weighted_m = i128::from(m.saturating_sub(b));
        let beyond_base = |i: usize| -> i128 {
            let c = i128::from(counts[i]);
            match self.base {
                Some(base) if base.group == i => c - c.min(i128::from(b)),
                _ => c,
            }
        };
        // Exact share minus pods beyond the base, times W (so that it stays an integer).
        let deficit = |i: usize| i128::from(self.weights[i]) * weighted_m - i128::from(self.total) * beyond_base(i);
        let mut candidates: Vec<usize> = (0..self.len())
            .filter(|&i| self.weights[i] > 0 || self.base.is_some_and(|base| base.group == i && counts[i] < base.count))
            .collect();
        candidates.sort_by(|&x, &y| {
            let sx = i64::from(target[x]) - i64::from(counts[x]);
            let sy = i64::from(target[y]) - i64::from(counts[y]);
            sy.cmp(&sx).then_with(|| deficit(y).cmp(&deficit(x))).then(x.cmp(&y))
        });
        candidates
    }

    /// Scale-down order as `pod-deletion-cost` values (lower is deleted first). `pods` are in the
    /// caller's preferred order within a group (the last of a group goes first); a pod with no group is
    /// cheapest of all. Repeatedly removes from the group furthest above its target for one pod fewer.
    pub fn deletion_costs<K: Clone>(&self, pods: &[(K, Option<usize>)]) -> Vec<DeletionCost<K>> {
        let k = self.len();
        let mut by_group: Vec<Vec<&K>> = vec![Vec::new(); k];
        let mut out = Vec::with_capacity(pods.len());
        for (key, group) in pods {
            match group {
                Some(g) if *g < k => by_group[*g].push(key),
                _ => out.push(DeletionCost { pod: key.clone(), cost: 0, reason: "in no group".into() }),
            }
        }
        let mut counts: Vec<u32> = by_group.iter().map(|g| g.len() as u32).collect();
        let mut target = vec![0; k];
        let b = self.base_count();
        while let n @ 1.. = counts.iter().sum::<u32>() {
            self.target_into(n - 1, &mut target);
            let weighted = i128::from((n - 1).saturating_sub(b));
            let over_share = |i: usize| {
                let c = i128::from(counts[i]);
                let beyond = match self.base {
                    Some(base) if base.group == i => c - c.min(i128::from(b)),
                    _ => c,
                };
                i128::from(self.total) * beyond - i128::from(self.weights[i]) * weighted
            };
            let Some(g) = (0..k).filter(|&i| counts[i] > 0).max_by(|&x, &y| {
                let ex = i64::from(counts[x]) - i64::from(target[x]);
                let ey = i64::from(counts[y]) - i64::from(target[y]);
                ex.cmp(&ey).then_with(|| over_share(x).cmp(&over_share(y))).then(x.cmp(&y))
            }) else {
                break;
            };
            let excess = i64::from(counts[g]) - i64::from(target[g]);
            counts[g] -= 1;
            let Some(pod) = by_group[g].pop() else { break };
            let reason = if excess > 0 {
                format!("{}: {excess} above its target of {} for {} pods", self.names[g], target[g], n - 1)
            } else {
                format!("{}: at target; removed to keep the ratio at {} pods", self.names[g], n - 1)
            };
            out.push(DeletionCost { pod: pod.clone(), cost: 0, reason });
        }
        for (rank, d) in out.iter_mut().enumerate() {
            d.cost = i32::try_from(rank).unwrap_or(i32::MAX);
        }
        out
    }
}

/// `a * b / d` rounded down, in 64 bits when the product fits (the usual case) and 128 otherwise.
fn mul_div_floor(a: u64, b: u64, d: u64) -> u64 {
    match a.checked_mul(b) {
        Some(p) => p / d,
        None => (u128::from(a) * u128::from(b) / u128::from(d)) as u64,
    }
}

/// `a * b / d` rounded up (see [`mul_div_floor`]).
fn mul_div_ceil(a: u64, b: u64, d: u64) -> u64 {
    match a.checked_mul(b) {
        Some(p) => p.div_ceil(d),
        None => (u128::from(a) * u128::from(b)).div_ceil(u128::from(d)) as u64,
    }
}

/// The weighted sequence while it is being extended (see the module doc): the counts after `size - 1`
/// pods, and every group's lower quota at `size`, kept up to date by additions.
struct Sequence<'a> {
    apportionment: &'a Apportionment,
    /// The size the next pod makes (`j` in the module doc).
    size: u64,
    /// Counts after `size - 1` pods.
    counts: Vec<u64>,
    /// Each group's quotas at `size`.
    quotas: Vec<Quota>,
    /// Groups with a weight.
    positive: u64,
    /// `size mod W`.
    offset: u64,
    /// A size `>= size` known to be tight: the last one found, or the next multiple of W. Tight sizes
    /// stay tight when a pod goes to an eligible group, so later searches stop there.
    known_tight: u64,
    /// `slack` over one period, built by the first search that needs it; `Some(None)`: too large to
    /// tabulate, sizes are then computed one by one.
    slack: Option<Option<SlackPeriod>>,
    /// The sizes after `size` where the excess drops (scratch space of `first_tight_size`).
    drops: Vec<u64>,
    /// Sizes looked at one at a time, nodes of the slack tree visited, and table entries built.
    work: u64,
}

/// One group's quotas at the sequence's current size, kept up to date by additions (no division per
/// pod but one for the group that receives it).
struct Quota {
    weight: u64,
    /// `floor(w size / W)`: the lower quota.
    lower: u64,
    /// `w size mod W`: the upper quota `ceil(w size / W)` is `lower + (remainder > 0)`.
    remainder: u64,
    /// The first size at which the group is short of its lower quota at its current count:
    /// `ceil((c + 1) W / w)` (`u64::MAX` for a weight of 0).
    short_from: u64,
    /// The size at which `lower` next rises, `ceil((lower + 1) W / w)`, and the remainder of that
    /// division; `rise_step` and `rise_carry` are `W / w` and `W mod w`, what one rise adds.
    rise: u64,
    rise_rest: u64,
    rise_step: u64,
    rise_carry: u64,
}

impl Quota {
    fn at(weight: u64, count: u64, size: u64, total: u64) -> Self {
        let lower = mul_div_floor(weight, size, total);
        let remainder = (u128::from(weight) * u128::from(size) % u128::from(total)) as u64;
        if weight == 0 {
            return Quota {
                weight,
                lower,
                remainder,
                short_from: u64::MAX,
                rise: u64::MAX,
                rise_rest: 0,
                rise_step: 0,
                rise_carry: 0,
            };
        }
        let numerator = u128::from(lower + 1) * u128::from(total) + u128::from(weight - 1);
        Quota {
            weight,
            lower,
            remainder,
            short_from: mul_div_ceil(count + 1, total, weight),
            rise: (numerator / u128::from(weight)) as u64,
            rise_rest: (numerator % u128::from(weight)) as u64,
            rise_step: total / weight,
            rise_carry: total % weight,
        }
    }

    /// One size more.
    fn advance(&mut self, total: u64) {
        self.remainder += self.weight;
        if self.remainder >= total {
            self.remainder -= total;
            self.lower += 1;
            self.rise += self.rise_step;
            self.rise_rest += self.rise_carry;
            if self.rise_rest >= self.weight {
                self.rise_rest -= self.weight;
                self.rise += 1;
            }
        }
    }

    fn within_upper_quota(&self, count: u64) -> bool {
        self.weight > 0 && count < self.lower + u64::from(self.remainder > 0)
    }
}

/// Searches shorter than this read the slack table entry by entry instead of descending the tree.
const SHORT_SEARCH: u64 = 32;

impl<'a> Sequence<'a> {
    fn resume(apportionment: &'a Apportionment, size: u64, counts: Vec<u64>) -> Self {
        let (weights, total) = (&apportionment.weights, apportionment.total);
        let quotas = weights.iter().zip(&counts).map(|(&w, &c)| Quota::at(w, c, size, total)).collect();
        let offset = size % total;
        Sequence {
            apportionment,
            size,
            counts,
            quotas,
            positive: weights.iter().filter(|&&w| w > 0).count() as u64,
            offset,
            known_tight: size + (total - offset) % total,
            slack: None,
            drops: Vec::new(),
            work: 0,
        }
    }

    /// Give the pod of size `size` to group `i` and move on to the next size.
    fn give(&mut self, i: usize) {
        let total = self.apportionment.total;
        self.counts[i] += 1;
        if self.quotas[i].weight > 0 {
            self.quotas[i].short_from = mul_div_ceil(self.counts[i] + 1, total, self.quotas[i].weight);
        }
        self.size += 1;
        for quota in &mut self.quotas {
            quota.advance(total);
        }
        self.offset += 1;
        if self.offset == total {
            self.offset = 0;
        }
        if self.known_tight < self.size {
            self.known_tight = self.size + (total - self.offset) % total;
        }
    }

    /// The group that receives the pod of size `size`: the highest priority among the eligible groups
    /// (`docs/semantics.md#2-weighted-distribution-with-base`), found as the module doc explains.
    fn next_group(&mut self) -> usize {
        let ap = self.apportionment;
        let Some(webster) = self.best_within_upper_quota(|_| true) else {
            return ap.webster(&self.counts);
        };
        let short = self.quotas[webster].short_from;
        if short <= self.size {
            return webster;
        }
        let tight = match self.first_tight_size(short.min(self.known_tight)) {
            Some(t) => t,
            None if self.known_tight < short => self.known_tight,
            None => return webster,
        };
        self.known_tight = tight;
        // Short of the lower quota at `tight`.
        self.best_within_upper_quota(|k| self.quotas[k].short_from <= tight).unwrap_or_else(|| ap.webster(&self.counts))
    }

    /// The group of highest priority (ties: the earlier) among those within upper quota for which
    /// `also` holds.
    fn best_within_upper_quota(&self, also: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (k, quota) in self.quotas.iter().enumerate() {
            if quota.within_upper_quota(self.counts[k]) && also(k) {
                best = Some(best.map_or(k, |b| self.apportionment.better_priority(b, k, &self.counts)));
            }
        }
        best
    }

    /// The first tight size in `size..end` (`end` at most the next multiple of W): where `slack(t)`
    /// comes down to `excess(t)` (it is never below, by the invariant).
    fn first_tight_size(&mut self, end: u64) -> Option<u64> {
        let total = self.apportionment.total;
        let mut excess: u64 = self.quotas.iter().zip(&self.counts).map(|(q, &c)| c.saturating_sub(q.lower)).sum();
        // excess(t) <= excess(size): no size before the first with slack <= excess(size) is tight.
        let mut from = self.first_slack_at_most(self.size, end, excess)?;
        // The sizes where the excess drops: group k above its lower quota loses one excess pod each
        // time its lower quota rises, at ceil(m W / w_k) for m up to its count (the upper quota keeps
        // it at most one above, so that is the next rise).
        self.drops.clear();
        for (quota, &count) in self.quotas.iter().zip(&self.counts) {
            for m in quota.lower + 1..=count {
                let at = if m == quota.lower + 1 { quota.rise } else { mul_div_ceil(m, total, quota.weight) };
                if at <= from {
                    excess -= 1;
                } else if at < end {
                    self.drops.push(at);
                }
            }
        }
        self.drops.sort_unstable();
        // Stretches of constant excess from `from` on.
        for d in 0..=self.drops.len() {
            let to = self.drops.get(d).copied().unwrap_or(end);
            if from < to
                && let Some(t) = self.first_slack_at_most(from, to, excess)
            {
                return Some(t);
            }
            from = from.max(to);
            excess = excess.saturating_sub(1);
        }
        None
    }

    /// The first size in `from..to` (no multiple of W among them) where `slack` is at most `x`.
    fn first_slack_at_most(&mut self, from: u64, to: u64, x: u64) -> Option<u64> {
        let ap = self.apportionment;
        if x + 1 >= self.positive {
            // slack is a sum of `positive` fractional parts: never more than positive - 1.
            return Some(from);
        }
        if x == 0 {
            // slack is 0 only at the multiples of W.
            return None;
        }
        // Where `from` and `to` fall in the period: slack(t) = slack(t mod W).
        let lo = self.offset + (from - self.size);
        let hi = lo + (to - from);
        debug_assert!(hi <= ap.total, "the range {from}..{to} holds a multiple of W");
        if self.slack.is_none() {
            let table = SlackPeriod::build(&ap.weights, ap.total);
            self.work += table.as_ref().map_or(0, |t| t.period as u64);
            self.slack = Some(table);
        }
        let found = match self.slack.as_ref().and_then(Option::as_ref) {
            Some(table) if hi - lo > SHORT_SEARCH => {
                let (found, visited) = table.first_at_most(lo as usize, hi as usize, x as u8);
                self.work += visited;
                found.map(|u| u as u64)
            }
            Some(table) => {
                let found = (lo..hi).find(|&u| u64::from(table.slack(u as usize)) <= x);
                self.work += found.map_or(hi, |u| u + 1) - lo;
                found
            }
            None => {
                let slack = |u: u64| u - ap.weights.iter().map(|&w| mul_div_floor(w, u, ap.total)).sum::<u64>();
                let found = (lo..hi).find(|&u| slack(u) <= x);
                self.work += found.map_or(hi, |u| u + 1) - lo;
                found
            }
        };
        found.map(|u| from + (u - lo))
    }
}

/// `slack(u) = u - sum_k floor(w_k u / W)` for one period `u` in `0..W`, the leaves of a min-tree, so
/// that the first `u` of a range where slack falls to a given value is found in O(log W).
struct SlackPeriod {
    period: usize,
    /// Leaves start here (a power of two); node `n` has children `2n` and `2n + 1`.
    leaves: usize,
    tree: Vec<u8>,
}

impl SlackPeriod {
    /// Largest period tabulated (2 MiB of tree): a legal rule has at most 16 × 10,000.
    const MAX_PERIOD: u64 = 1 << 20;

    /// `None` when W is above [`Self::MAX_PERIOD`] or slack does not fit a byte (255 groups or more).
    fn build(weights: &[u64], total: u64) -> Option<Self> {
        let positive = weights.iter().filter(|&&w| w > 0).count();
        if total > Self::MAX_PERIOD || positive >= usize::from(u8::MAX) {
            return None;
        }
        let period = total as usize;
        let leaves = period.next_power_of_two();
        let mut tree = vec![u8::MAX; 2 * leaves];
        let slack = &mut tree[leaves..leaves + period];
        slack.fill(0);
        // First count the rises: floor(w u / W) rises at u = ceil(m W / w) for m in 1..w (inside the
        // period), stepped through by additions.
        for &w in weights.iter().filter(|&&w| w > 0 && w < total) {
            let (step, carry) = (total / w, total % w);
            let (mut at, mut rest) = (total.div_ceil(w), (total + w - 1) % w);
            for _ in 1..w {
                slack[at as usize] += 1;
                at += step;
                rest += carry;
                if rest >= w {
                    rest -= w;
                    at += 1;
                }
            }
        }
        // slack(u) = slack(u - 1) + 1 - rises(u), slack(0) = 0.
        let mut previous = 0u8;
        for entry in &mut slack[1..] {
            previous = previous + 1 - *entry;
            *entry = previous;
        }
        for n in (1..leaves).rev() {
            tree[n] = tree[2 * n].min(tree[2 * n + 1]);
        }
        Some(SlackPeriod { period, leaves, tree })
    }

    fn slack(&self, u: usize) -> u8 {
        self.tree[self.leaves + u]
    }

    /// The first `u` in `lo..hi` with `slack(u) <= x`, and the number of tree nodes visited.
    fn first_at_most(&self, lo: usize, hi: usize, x: u8) -> (Option<usize>, u64) {
        let mut visited = 0;
        let found = self.descend(1, 0, self.leaves, lo, hi, x, &mut visited);
        (found, visited)
    }

    #[allow(clippy::too_many_arguments)]
    fn descend(
        &self,
        node: usize,
        node_lo: usize,
        node_hi: usize,
        lo: usize,
        hi: usize,
        x: u8,
        visited: &mut u64,
    ) -> Option<usize> {
        *visited += 1;
        if node_hi <= lo || hi <= node_lo || self.tree[node] > x {
            return None;
        }
        if node_hi - node_lo == 1 {
            return Some(node_lo);
        }
        let mid = node_lo + (node_hi - node_lo) / 2;
        self.descend(2 * node, node_lo, mid, lo, hi, x, visited)
            .or_else(|| self.descend(2 * node + 1, mid, node_hi, lo, hi, x, visited))
    }
}

/// The group chosen for one pod, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionChoice {
    /// `None`: leave the pod unmutated (see `reason`).
    pub group: Option<usize>,
    /// The best group was infeasible and another was taken.
    pub fell_back: bool,
    /// `target(m)` for `m` = pods counted + 1.
    pub target: Vec<u32>,
    pub reason: String,
}

/// A `controller.kubernetes.io/pod-deletion-cost` for one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionCost<K> {
    pub pod: K,
    pub cost: i32,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Apportionment {
        /// Still's look-ahead by its definition, one `t` at a time: the oracle for the first-tight-size
        /// eligibility (module doc).
        fn lower_ok_by_scan(&self, i: usize, j: u64, counts: &[u64]) -> bool {
            let after = counts[i] + 1;
            let mut t = j;
            loop {
                let need: u64 = (0..self.len())
                    .map(|k| {
                        let c = if k == i { after } else { counts[k] };
                        c.max(self.weights[k] * t / self.total)
                    })
                    .sum();
                if need > t {
                    return false;
                }
                if self.weights[i] * t / self.total > after {
                    return true;
                }
                t += 1;
            }
        }
    }

    /// Walks the sequence of `weights` for `n` pods and, at every size, checks the module doc's lemma
    /// against the definition: each group is eligible by the look-ahead scan exactly when it is within
    /// upper quota and short of its lower quota at the first tight size, and the pod goes to the
    /// highest priority among the groups eligible by the scan.
    fn check_eligibility(weights: &[u32], n: u64) -> Result<(), proptest::test_runner::TestCaseError> {
        let a = ap(weights, None);
        let k = a.len();
        let mut sequence = Sequence::resume(&a, 1, vec![0; k]);
        for _ in 0..n {
            let (j, counts) = (sequence.size, sequence.counts.clone());
            // The first tight size: before the one known (the last found, or the next multiple of W).
            let known = sequence.known_tight;
            let tight = sequence.first_tight_size(known).unwrap_or(known);
            let upper = |i: usize| a.weights[i] > 0 && counts[i] < (a.weights[i] * j).div_ceil(a.total);
            let by_scan: Vec<bool> = (0..k).map(|i| upper(i) && a.lower_ok_by_scan(i, j, &counts)).collect();
            let by_tight: Vec<bool> = (0..k).map(|i| upper(i) && a.weights[i] * tight / a.total > counts[i]).collect();
            proptest::prop_assert_eq!(&by_scan, &by_tight, "{:?} {:?} j={} tight={}", weights, counts, j, tight);
            let want = (0..k).filter(|&i| by_scan[i]).reduce(|x, y| a.better_priority(x, y, &counts));
            proptest::prop_assert!(want.is_some(), "nothing eligible: {weights:?} {counts:?}");
            let got = sequence.next_group();
            proptest::prop_assert_eq!(Some(got), want, "{:?} {:?} j={}", weights, counts, j);
            sequence.give(got);
        }
        proptest::prop_assert_eq!(a.guard_fallbacks(), 0);
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(300))]
        /// The first-tight-size eligibility equals the look-ahead scan at every size of the sequence,
        /// with zero weights and weights far apart.
        #[test]
        fn eligibility_by_the_first_tight_size_equals_the_scan(
            weights in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(0u32), 1u32..6, 1u32..60, 200u32..400], 1..7),
            n in 1u64..400,
        ) {
            proptest::prop_assume!(weights.iter().any(|&w| w > 0));
            check_eligibility(&weights, n)?;
        }
    }

    #[test]
    fn is_built_for_says_whether_target_would_extend_the_table() {
        let a = Apportionment::new(vec![("a".into(), 1), ("b".into(), 3)], Some(Base { group: 0, count: 5 })).unwrap();
        assert!(!a.is_built_for(0), "nothing is built before the first call");
        a.target(5);
        assert!(a.is_built_for(5) && a.is_built_for(64 + 5), "the base is not in the table; it grows by 64 first");
        assert!(!a.is_built_for(64 + 6), "one past what is built");
        a.target(200);
        assert!(a.is_built_for(200) && !a.is_built_for(u32::MAX));
    }

    #[test]
    fn eligibility_of_far_apart_weights_equals_the_scan() {
        let shapes: [&[u32]; 4] =
            [&[1, 1, 1, 1, 1, 1, 1, 300], &[1, 300, 300, 300], &[2, 0, 3, 997], &[1, 2, 3, 5, 7, 11, 13, 999]];
        for weights in shapes {
            check_eligibility(weights, 2_500).unwrap();
        }
    }

    #[test]
    fn slack_table_matches_its_definition() {
        for weights in [&[1u64, 1, 1, 10_000][..], &[3, 5, 7], &[1], &[4, 1], &[0, 9, 0, 2]] {
            let total: u64 = weights.iter().sum();
            let table = SlackPeriod::build(weights, total).unwrap();
            for u in 0..total {
                let slack = u - weights.iter().map(|&w| w * u / total).sum::<u64>();
                assert_eq!(u64::from(table.slack(u as usize)), slack, "{weights:?} u={u}");
            }
            // The tree finds the first entry at most x in any range.
            for (lo, hi, x) in [(0, total, 0), (1, total, 1), (1, total, 2), (total / 3, total, 1)] {
                let want = (lo..hi).find(|&u| u64::from(table.slack(u as usize)) <= x);
                let (got, _) = table.first_at_most(lo as usize, hi as usize, x as u8);
                assert_eq!(got.map(|u| u as u64), want, "{weights:?} {lo}..{hi} <= {x}");
            }
        }
    }

    #[test]
    fn target_of_nothing_does_not_grow_the_table() {
        // target(n) for n within the base asks for 0 weighted pods: the table is built once.
        let a = ap(&[1, 2], Some((0, 10)));
        for _ in 0..40 {
            assert_eq!(a.target(5), vec![5, 0]);
            assert_eq!(a.target(0), vec![0, 0]);
        }
        assert_eq!(a.table.read().unwrap().steps, 64);
    }

    fn ap(weights: &[u32], base: Option<(usize, u32)>) -> Apportionment {
        Apportionment::new(
            weights.iter().enumerate().map(|(i, w)| (format!("g{i}"), *w)).collect(),
            base.map(|(group, count)| Base { group, count }),
        )
        .unwrap()
    }

    fn all_feasible(k: usize) -> Vec<Feasibility> {
        vec![Feasibility::assumed(); k]
    }

    #[test]
    fn versprei_80_20_sequence() {
        // Worked by hand in docs/semantics.md.
        let a = ap(&[80, 20], None);
        let want = [[1, 0], [2, 0], [2, 1], [3, 1], [4, 1], [5, 1], [6, 1], [6, 2], [7, 2], [8, 2]];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(a.target(n as u32 + 1), w.to_vec(), "n={}", n + 1);
        }
        assert_eq!(a.weights(), &[4, 1], "divided by the gcd");
    }

    #[test]
    fn smart_scheduler_readme_example() {
        // base=1 on ondemand, then 1:2: spot, ondemand, spot, spot, ondemand.
        let a = ap(&[1, 2], Some((0, 1)));
        assert_eq!(a.target(6), vec![3, 3]);
        assert_eq!(a.target(1), vec![1, 0]);
        assert_eq!(a.target(2), vec![1, 1]);
    }

    #[test]
    fn zero_weight_never_and_validation() {
        let a = ap(&[1, 0, 1], None);
        for n in 0..50 {
            assert_eq!(a.target(n)[1], 0);
        }
        assert!(matches!(Apportionment::new(vec![("a".into(), 0)], None), Err(ApportionError::ZeroWeights { .. })));
        assert!(matches!(
            Apportionment::new(vec![("a".into(), 1)], Some(Base { group: 3, count: 1 })),
            Err(ApportionError::BaseOutOfRange { index: 3, groups: 1 })
        ));
        assert_eq!(Apportionment::new(vec![], None).unwrap_err(), ApportionError::NoGroups);
    }

    #[test]
    fn base_group_with_weight_zero_takes_only_its_base() {
        let a = ap(&[0, 1], Some((0, 2)));
        assert_eq!(a.target(5), vec![2, 3]);
        let c = a.choose(&[2, 0], &all_feasible(2), Fallback::Next).unwrap();
        assert_eq!(c.group, Some(1));
        let c = a.choose(&[0, 3], &all_feasible(2), Fallback::Next).unwrap();
        assert_eq!(c.group, Some(0), "the base is still owed");
    }

    #[test]
    fn admission_from_skewed_state_and_fallback() {
        let a = ap(&[80, 20], None);
        // 10 pods all on spot after an outage: the next goes on-demand.
        let c = a.choose(&[0, 10], &all_feasible(2), Fallback::Next).unwrap();
        assert_eq!(c.group, Some(0));
        assert!(c.reason.starts_with("g0: shortfall 9 (target 9 of 11, has 0)"), "{}", c.reason);
        let infeasible =
            Feasibility { node: None, nodes: 2, why_not: Some("n1: node not Ready".into()), new_node: false };
        let feas = vec![infeasible.clone(), Feasibility::assumed()];
        let c = a.choose(&[0, 0], &feas, Fallback::Next).unwrap();
        assert_eq!((c.group, c.fell_back), (Some(1), true));
        assert!(c.reason.contains("g0 infeasible"), "{}", c.reason);
        let c = a.choose(&[0, 0], &feas, Fallback::None).unwrap();
        assert_eq!(c.group, None);
        assert!(c.reason.contains("fallback is none"));
        let both = vec![infeasible.clone(), infeasible];
        assert_eq!(a.choose(&[0, 0], &both, Fallback::Next).unwrap().group, None);
        assert!(matches!(a.choose(&[0], &both, Fallback::Next), Err(ApportionError::CountMismatch { .. })));
    }

    #[test]
    fn ties_go_to_the_group_furthest_below_its_share_then_earlier() {
        let a = ap(&[1, 1], None);
        // m = 3: target (2,1). counts (1,1): shortfalls 1, 0 -> g0.
        assert_eq!(a.choose(&[1, 1], &all_feasible(2), Fallback::Next).unwrap().group, Some(0));
        // counts (0,0): m=1, target (1,0) -> g0.
        assert_eq!(a.choose(&[0, 0], &all_feasible(2), Fallback::Next).unwrap().group, Some(0));
        // counts (3,0): m=4, target (2,2): shortfalls -1, 2 -> g1.
        assert_eq!(a.choose(&[3, 0], &all_feasible(2), Fallback::Next).unwrap().group, Some(1));
    }

    #[test]
    fn deletion_costs_remove_excess_first_and_base_last() {
        let a = ap(&[1, 2], Some((0, 1)));
        // ondemand has 4 (target for 6 is 3), spot 2 (target 3), one pod in no group.
        let pods: Vec<(&str, Option<usize>)> = vec![
            ("od-1", Some(0)),
            ("od-2", Some(0)),
            ("od-3", Some(0)),
            ("od-4", Some(0)),
            ("sp-1", Some(1)),
            ("sp-2", Some(1)),
            ("stray", None),
        ];
        let costs = a.deletion_costs(&pods);
        let order: Vec<&str> = costs.iter().map(|c| c.pod).collect();
        assert_eq!(order[0], "stray");
        assert_eq!(order[1], "od-4", "on-demand is above its target");
        assert_eq!(costs.iter().map(|c| c.cost).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
        // The last pod standing is the base pod.
        assert_eq!(*order.last().unwrap(), "od-1");
    }
}
