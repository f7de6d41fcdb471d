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
    Feasibility { node: None, nodes: 1, why_not: Some("full".into()) }
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
