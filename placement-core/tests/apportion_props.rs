//! Property tests of every invariant of the weighted distribution (`docs/semantics.md#invariants`).
#![allow(clippy::needless_range_loop)]

use placement_core::apportion::{Apportionment, Base, Fallback};
use placement_core::group::Feasibility;
use proptest::prelude::*;

fn build(weights: &[u32], base: Option<(usize, u32)>) -> Apportionment {
    Apportionment::new(
        weights.iter().enumerate().map(|(i, w)| (format!("g{i}"), *w)).collect(),
        base.map(|(group, count)| Base { group, count }),
    )
    .expect("valid by construction")
}

/// Weights with at least one positive, and an optional base on one group.
fn arb_rule() -> impl Strategy<Value = (Vec<u32>, Option<(usize, u32)>)> {
    prop::collection::vec(0u32..60, 1..6)
        .prop_filter("some weight positive", |w| w.iter().any(|&x| x > 0))
        .prop_flat_map(|w| {
            let k = w.len();
            (Just(w), prop::option::of((0..k, 0u32..5)))
        })
}

fn feasible(k: usize) -> Vec<Feasibility> {
    vec![Feasibility::assumed(); k]
}

fn infeasible() -> Feasibility {
    Feasibility { node: None, nodes: 1, why_not: Some("full".into()), new_node: false }
}

/// `|beyond * W - w * weighted| <= W`, i.e. within one pod of the exact share.
fn within_one(beyond: u32, w: u64, total: u64, weighted: u32) -> bool {
    let lhs = i128::from(beyond) * i128::from(total);
    let exact = i128::from(w) * i128::from(weighted);
    (lhs - exact).abs() < i128::from(total)
}

proptest! {
    #[test]
    fn admission_from_zero_follows_target_and_quota((weights, base) in arb_rule(), n in 1u32..200) {
        let a = build(&weights, base);
        let k = weights.len();
        let mut counts = vec![0u32; k];
        let b = base.map_or(0, |(_, c)| c);
        for step in 1..=n {
            let choice = a.choose(&counts, &feasible(k), Fallback::Next).unwrap();
            let g = choice.group.expect("a feasible group always exists");
            counts[g] += 1;
            prop_assert_eq!(&counts, &a.target(step), "after {} admissions", step);
            let weighted = step.saturating_sub(b);
            for i in 0..k {
                let beyond = match base { Some((bg, bc)) if bg == i => counts[i] - counts[i].min(bc), _ => counts[i] };
                prop_assert!(within_one(beyond, a.weights()[i], a.weights().iter().sum(), weighted),
                    "group {} has {} beyond base at n={}, weights {:?}", i, beyond, step, weights);
            }
        }
        prop_assert_eq!(a.guard_fallbacks(), 0);
    }

    #[test]
    fn target_is_monotone_sums_to_n_and_skips_zero_weights((weights, base) in arb_rule(), n in 0u32..300) {
        let a = build(&weights, base);
        let t0 = a.target(n);
        let t1 = a.target(n + 1);
        prop_assert_eq!(t0.iter().sum::<u32>(), n);
        prop_assert_eq!(t1.iter().sum::<u32>(), n + 1);
        for i in 0..weights.len() {
            prop_assert!(t1[i] >= t0[i], "house monotone");
            let is_base = base.is_some_and(|(g, _)| g == i);
            if weights[i] == 0 && !is_base {
                prop_assert_eq!(t1[i], 0);
            }
        }
        prop_assert_eq!(a.guard_fallbacks(), 0);
    }

    #[test]
    fn admission_from_any_state_picks_a_group_below_target(
        (weights, base) in arb_rule(),
        counts in prop::collection::vec(0u32..40, 6),
        feasible_mask in prop::collection::vec(any::<bool>(), 6),
    ) {
        let a = build(&weights, base);
        let k = weights.len();
        let counts = &counts[..k];
        let feas: Vec<Feasibility> = feasible_mask[..k].iter().map(|&f| if f { Feasibility::assumed() } else { infeasible() }).collect();
        let m = counts.iter().sum::<u32>() + 1;
        let target = a.target(m);
        let choice = a.choose(counts, &feas, Fallback::Next).unwrap();
        let below: Vec<usize> = (0..k).filter(|&i| feas[i].feasible() && counts[i] < target[i]).collect();
        match choice.group {
            Some(g) => {
                prop_assert!(feas[g].feasible(), "chose an infeasible group");
                let is_base = base.is_some_and(|(bg, _)| bg == g);
                prop_assert!(weights[g] > 0 || is_base, "weight 0 received a pod");
                if !below.is_empty() {
                    prop_assert!(counts[g] < target[g], "chose {} at/above target while {:?} are below", g, below);
                }
            }
            None => prop_assert!(below.is_empty(), "refused while {:?} are below target", below),
        }
        let strict = a.choose(counts, &feas, Fallback::None).unwrap();
        if let Some(g) = strict.group {
            prop_assert!(!strict.fell_back && feas[g].feasible());
        }
    }

    #[test]
    fn two_groups_equal_largest_remainder(w0 in 0u32..100, w1 in 0u32..100, n in 0u32..300) {
        prop_assume!(w0 + w1 > 0);
        let a = build(&[w0, w1], None);
        let total = u64::from(w0 + w1);
        let q0 = u64::from(w0) * u64::from(n);
        let mut t0 = q0 / total;
        let mut t1 = u64::from(w1) * u64::from(n) / total;
        if t0 + t1 < u64::from(n) {
            // One pod left: larger remainder, ties to the earlier group.
            let r0 = q0 % total;
            let r1 = (u64::from(w1) * u64::from(n)) % total;
            if r0 >= r1 { t0 += 1 } else { t1 += 1 }
        }
        prop_assert_eq!(a.target(n), vec![t0 as u32, t1 as u32]);
    }

    #[test]
    fn deletion_costs_are_a_permutation_ending_at_target(
        (weights, base) in arb_rule(),
        counts in prop::collection::vec(0u32..15, 6),
    ) {
        let a = build(&weights, base);
        let k = weights.len();
        let pods: Vec<(usize, Option<usize>)> = (0..k)
            .flat_map(|g| (0..counts[g]).map(move |_| Some(g)))
            .enumerate()
            .collect();
        let costs = a.deletion_costs(&pods);
        prop_assert_eq!(costs.len(), pods.len());
        let mut seen: Vec<i32> = costs.iter().map(|c| c.cost).collect();
        seen.sort();
        prop_assert_eq!(seen, (0..pods.len() as i32).collect::<Vec<_>>());
        // Removing the cheapest pods one by one: once the remaining counts equal target(n), they stay
        // equal to target at every smaller size.
        let mut remaining: Vec<u32> = counts[..k].to_vec();
        let mut reached = false;
        for c in &costs {
            let n: u32 = remaining.iter().sum();
            if remaining == a.target(n) { reached = true; }
            if reached { prop_assert_eq!(&remaining, &a.target(n)); }
            let g = pods[c.pod].1.unwrap();
            remaining[g] -= 1;
        }
    }
}

/// `target(n)` by the definition in `docs/semantics.md#2-weighted-distribution-with-base`, one pod at a
/// time: the base first, then the highest Sainte-Laguë priority among the eligible groups (a weight,
/// within upper quota, and Still's look-ahead checked one size at a time).
fn target_by_definition(weights: &[u32], base: Option<(usize, u32)>, n: u32) -> Vec<u32> {
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
    let w: Vec<u64> = weights.iter().map(|&x| u64::from(x) / g).collect();
    let total: u64 = w.iter().sum();
    let k = w.len();
    let b = base.map_or(0, |(_, c)| c.min(n));
    let mut counts = vec![0u64; k];
    for j in 1..=u64::from(n - b) {
        let upper = |i: usize, counts: &[u64]| counts[i] < (w[i] * j).div_ceil(total);
        // Every group can still reach its lower quota: for t = j, j+1, ... until group i's lower quota
        // passes its new count, sum_k max(c'_k, floor(w_k t / W)) <= t.
        let look_ahead = |i: usize, counts: &[u64]| {
            let after = counts[i] + 1;
            let mut t = j;
            loop {
                let need: u64 = (0..k).map(|x| (if x == i { after } else { counts[x] }).max(w[x] * t / total)).sum();
                if need > t {
                    return false;
                }
                if w[i] * t / total > after {
                    return true;
                }
                t += 1;
            }
        };
        // Highest priority w / (2c + 1) first, ties to the earlier group: the first eligible wins.
        let mut order: Vec<usize> = (0..k).filter(|&i| w[i] > 0).collect();
        order.sort_by(|&x, &y| {
            (u128::from(w[y]) * u128::from(2 * counts[x] + 1))
                .cmp(&(u128::from(w[x]) * u128::from(2 * counts[y] + 1)))
                .then(x.cmp(&y))
        });
        let chosen = order.iter().copied().find(|&i| upper(i, &counts) && look_ahead(i, &counts));
        counts[chosen.expect("Still: some group is always eligible")] += 1;
    }
    let mut out: Vec<u32> = counts.iter().map(|&c| c as u32).collect();
    if let Some((group, _)) = base {
        out[group] += b;
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Up to 16 groups with legal weights (0..=10,000), drawn to include the extremes: many 1s next to a
/// 10,000, near-equal large weights, zeros, anything in between, and a few large weights among many
/// small ones (where plain Webster leaves the quota, so the look-ahead decides).
fn arb_legal_weights() -> impl Strategy<Value = Vec<u32>> {
    let anything = prop_oneof![
        3 => 0u32..=10_000,
        2 => Just(1u32),
        2 => Just(10_000u32),
        1 => Just(0u32),
        1 => 1u32..=5,
        1 => 9_990u32..=10_000,
    ];
    let skewed = prop_oneof![3 => 1u32..=30, 1 => 9_950u32..=10_000];
    prop_oneof![prop::collection::vec(anything, 1..=16), prop::collection::vec(skewed, 2..=16)]
        .prop_filter("some weight positive", |w| w.iter().any(|&x| x > 0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The sequence equals its definition, pod by pod, for legal rules.
    #[test]
    fn target_equals_the_definition(
        weights in arb_legal_weights(),
        base in prop::option::of((0usize..16, 0u32..20)),
        n in 0u32..1_500,
    ) {
        let base = base.map(|(g, c)| (g % weights.len(), c));
        let a = build(&weights, base);
        let want = target_by_definition(&weights, base, n);
        prop_assert_eq!(a.target(n), want, "weights {:?} base {:?} n {}", weights, base, n);
        // Every smaller size too (read from the same table).
        for m in (0..n).step_by(97) {
            prop_assert_eq!(a.target(m), target_by_definition(&weights, base, m), "n {}", m);
        }
        prop_assert_eq!(a.guard_fallbacks(), 0);
    }
}

/// The shapes that made the look-ahead slow, against the definition, at every size up to `n`.
#[test]
fn worst_shapes_equal_the_definition() {
    let many_ones_and_one_big: Vec<u32> = [1; 15].into_iter().chain([10_000]).collect();
    let one_small_and_many_big: Vec<u32> = std::iter::once(1).chain([10_000; 15]).collect();
    let near_primes = vec![9973, 9967, 9949, 9941, 9931, 9929, 9923, 9907, 9901, 9887, 9883, 9871, 9859, 9857, 9851, 1];
    let shapes: [(&[u32], u32); 8] = [
        (&many_ones_and_one_big, 1_200),
        (&one_small_and_many_big, 1_200),
        (&near_primes, 1_200),
        (&[1, 10_000], 3_000),
        (&[1, 2, 3, 10_000, 9_999, 0, 5_000], 1_200),
        // Plain Webster leaves the quota here (found by comparing the two): the look-ahead decides.
        (&[9_999, 21, 21, 16, 21, 13], 1_200),
        (&[24, 15, 21, 26, 22, 7, 17, 9_957, 20, 9_967], 1_200),
        (&[9_978, 27, 16, 29, 9_958, 9_985, 25, 1, 13, 25, 30, 6, 21, 7], 1_200),
    ];
    for (weights, n) in shapes {
        let a = build(weights, None);
        let want: Vec<Vec<u32>> = {
            // One walk of the definition, recording every size.
            let mut rows = Vec::new();
            for m in (0..=n).step_by(10) {
                rows.push(target_by_definition(weights, None, m));
            }
            rows
        };
        for (row, m) in want.iter().zip((0..=n).step_by(10)) {
            assert_eq!(&a.target(m), row, "weights {weights:?} n {m}");
        }
        assert_eq!(a.guard_fallbacks(), 0);
    }
}

/// The look-ahead's work stays bounded (a counter, not a clock): a cold `target(20,000)` for fifteen
/// 1s and one 10,000 (about 10,000 sizes of look-ahead per pod by the definition) examines a few sizes
/// or tree nodes per pod, plus one period of slack (W = 10,015) once.
#[test]
fn look_ahead_work_is_bounded_for_the_worst_shapes() {
    let shapes: [Vec<u32>; 4] = [
        [1; 15].into_iter().chain([10_000]).collect(),
        std::iter::once(1).chain([10_000; 15]).collect(),
        vec![9973, 9967, 9949, 9941, 9931, 9929, 9923, 9907, 9901, 9887, 9883, 9871, 9859, 9857, 9851, 1],
        vec![411, 2329, 1231, 1262, 932, 1276, 6479, 229, 3041, 169, 3191, 4264, 1597, 261, 6556, 970],
    ];
    for weights in &shapes {
        let a = build(weights, None);
        let n = 20_000u64;
        a.target(n as u32);
        let period: u64 = a.weights().iter().sum();
        let work = a.look_ahead_work();
        assert!(work <= period + 40 * n, "{weights:?}: look-ahead work {work} for {n} pods (W = {period})");
        assert_eq!(a.guard_fallbacks(), 0);
    }
    // Weights where Webster's choice is always short already: no search at all.
    let a = build(&[80, 20], None);
    a.target(20_000);
    assert_eq!(a.look_ahead_work(), 0, "80/20 needs no look-ahead search");
}
