//! Weighted distribution with an optional base (`docs/semantics.md#2-weighted-distribution-with-base`):
//! how many of `n` pods each ordered group should hold (`target(n)`), which group the next pod goes to
//! from *any* current counts, and in which order pods should go on scale-down.
//!
//! `target` assigns pods one at a time: the base first, then Sainte-Laguë priority `w/(2c+1)` among the
//! groups allowed by Still's quota guard (upper quota, and a look-ahead that every group can still reach
//! its lower quota). The result is house-monotone (no Alabama paradox) and within one pod of the exact
//! quota at every size. The sequence is cached: decisions read one row of a table.

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

    /// The counts per group for `n` pods.
    pub fn target(&self, n: u32) -> Vec<u32> {
        let mut out = vec![0; self.len()];
        self.target_into(n, &mut out);
        out
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
        if self.table.read().unwrap_or_else(|e| e.into_inner()).steps >= steps && steps > 0 {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let k = self.len();
        if table.rows.is_empty() {
            table.rows = vec![0; k];
        }
        let goal = steps.max(table.steps * 2).max(64);
        let mut counts: Vec<u64> = table.rows[table.steps * k..].iter().map(|&c| u64::from(c)).collect();
        while table.steps < goal {
            let j = table.steps as u64 + 1;
            let i = self.next_group(j, &counts);
            counts[i] += 1;
            table.rows.extend(counts.iter().map(|&c| u32::try_from(c).unwrap_or(u32::MAX)));
            table.steps += 1;
        }
    }

    /// The group that receives the `j`-th weighted pod, given counts after `j - 1`.
    fn next_group(&self, j: u64, counts: &[u64]) -> usize {
        let eligible = |i: usize| self.weights[i] > 0 && self.upper_ok(i, j, counts) && self.lower_ok(i, j, counts);
        let best = (0..self.len()).filter(|&i| eligible(i)).reduce(|a, b| self.better_priority(a, b, counts));
        match best {
            Some(i) => i,
            None => {
                self.guard_fallbacks.fetch_add(1, AtomicOrdering::Relaxed);
                (0..self.len())
                    .filter(|&i| self.weights[i] > 0)
                    .reduce(|a, b| self.better_priority(a, b, counts))
                    .unwrap_or(0)
            }
        }
    }

    /// `a` (earlier) or `b`, by Sainte-Laguë priority `w / (2c + 1)`; ties keep `a`.
    fn better_priority(&self, a: usize, b: usize, counts: &[u64]) -> usize {
        let pa = u128::from(self.weights[a]) * u128::from(2 * counts[b] + 1);
        let pb = u128::from(self.weights[b]) * u128::from(2 * counts[a] + 1);
        if pb > pa { b } else { a }
    }

    /// Upper quota: `c_i + 1 <= ceil(w_i j / W)`.
    fn upper_ok(&self, i: usize, j: u64, counts: &[u64]) -> bool {
        counts[i] < (self.weights[i] * j).div_ceil(self.total)
    }

    /// Still's look-ahead: after giving group `i` the pod, for every `t = j, j+1, …` up to the first `t`
    /// at which `floor(w_i t / W) > c_i + 1`, `sum_k max(c'_k, floor(w_k t / W)) <= t`.
    ///
    /// That range is about `2W / w_i` long, so checking one `t` at a time costs seconds for weights
    /// like 1 and 10,000. It is checked by segments instead. Write `need(t) - t = excess(t) -
    /// slack(t)`, where `excess(t) = sum_k max(0, c'_k - floor(w_k t / W))` only falls as `t` grows and
    /// changes at most `excess(j)` times, and `slack(t) = t - sum_k floor(w_k t / W)`, the sum of the
    /// fractional parts, lies in `0..=K-1` (K groups with a weight) and is 0 exactly at the multiples of
    /// W (the weights are divided by their gcd). On a segment of constant excess `e`: `e = 0` holds
    /// there and ever after; `e >= K` fails at once; `e = 1` fails exactly when the segment holds a
    /// multiple of W; otherwise the segment is scanned (it ends when a group's floor next rises, so it is
    /// at most `W / w_k` long for that group). `lower_ok_by_scan` in the tests is the definition, and a
    /// property test holds the two equal.
    fn lower_ok(&self, i: usize, j: u64, counts: &[u64]) -> bool {
        let (w, total) = (&self.weights, u128::from(self.total));
        let after = |k: usize| u128::from(if k == i { counts[k] + 1 } else { counts[k] });
        let floor = |k: usize, t: u128| u128::from(w[k]) * t / total;
        let weighted = w.iter().filter(|&&x| x > 0).count() as u128;
        // The last t to check: the first at which group i is past its count (at least j).
        let last = ((after(i) + 1) * total).div_ceil(u128::from(w[i])).max(u128::from(j));
        let mut t = u128::from(j);
        loop {
            let (mut excess, mut next) = (0u128, u128::MAX);
            for (k, &weight) in w.iter().enumerate() {
                let (c, f) = (after(k), floor(k, t));
                if c > f {
                    excess += c - f;
                    if weight > 0 {
                        next = next.min(((f + 1) * total).div_ceil(u128::from(weight)));
                    }
                }
            }
            let end = next.min(last + 1); // this segment is t..end
            let holds_multiple = t.div_ceil(total) * total < end;
            let fails = match excess {
                0 => return true,
                e if e >= weighted => true,
                1 => holds_multiple,
                e => (t..end).any(|u| u - (0..w.len()).map(|k| floor(k, u)).sum::<u128>() < e),
            };
            if fails {
                return false;
            }
            if end > last {
                return true;
            }
            t = end;
        }
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
        /// Still's look-ahead by its definition, one `t` at a time: the oracle for `lower_ok`.
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

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]
        /// The segment-wise look-ahead equals the definition, from any counts (not only the ones the
        /// sequence reaches), with zero weights and weights far apart.
        #[test]
        fn the_look_ahead_by_segments_equals_the_scan(
            weights in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(0u32), 1u32..6, 1u32..60, 200u32..400], 1..6),
            extra in proptest::collection::vec(0u64..4, 6),
            pick in 0usize..6,
        ) {
            proptest::prop_assume!(weights.iter().any(|&w| w > 0));
            let a = Apportionment::new(weights.iter().enumerate().map(|(k, &w)| (format!("g{k}"), w)).collect(), None).unwrap();
            let i = pick % weights.len();
            proptest::prop_assume!(a.weights[i] > 0);
            // Counts near the exact quota of some size, perturbed.
            let size: u64 = extra.iter().sum::<u64>() * 7;
            let counts: Vec<u64> = (0..weights.len())
                .map(|k| (a.weights[k] * size / a.total + extra[k]).saturating_sub(1))
                .collect();
            let j = counts.iter().sum::<u64>() + 1;
            proptest::prop_assert_eq!(a.lower_ok(i, j, &counts), a.lower_ok_by_scan(i, j, &counts), "{:?} {:?} i={}", weights, counts, i);
        }
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
        let infeasible = Feasibility { node: None, nodes: 2, why_not: Some("n1: node not Ready".into()) };
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
