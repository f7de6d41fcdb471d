//! Tune and property-test your own placement policy with the harness placement-core uses for its own.
//!
//! ```text
//! cargo run -p placement-examples --example tune_policy [SEED]
//! ```
//!
//! 1. Generate a seeded synthetic cluster (same seed, same cluster) and print its shape.
//! 2. Run a policy (here a toy "least allocated node that fits") on a new pod of a real workload.
//! 3. Property-test invariants over many small random clusters with a proptest `TestRunner`: first a
//!    sanity invariant of the input ("no node is overcommitted"), then the policy's own contract
//!    ("it only chooses nodes the pod fits, and finds one whenever one exists"), then a deliberately
//!    broken policy, to show the shrunk counterexample proptest reports.
//!
//! Replace `least_allocated_node` with your policy and the invariants with its contract.

use placement_core::fit;
use placement_core::model::{Node, Pod, Snapshot};
use placement_core::testing::{
    ClusterSpec, arb_cluster, arb_pod_on, cluster_shape, generate, hot_nodes, largest_workload, overcommitted_nodes,
    pick_pending_pod,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRng, TestRunner};
use std::time::Instant;

/// The policy under test: among the nodes the pod fits (Ready, schedulable, taints tolerated,
/// selector matched, room left), the one with the smallest allocated cpu fraction after placing it.
fn least_allocated_node<'a>(snapshot: &'a Snapshot, pod: &Pod) -> Option<&'a Node> {
    snapshot.nodes.iter().filter(|n| fit::check(n, pod).is_ok()).min_by_key(|n| {
        // Per mille, integer: no float comparison in the ordering.
        let after = n.requested.cpu_millis + pod.requests.cpu_millis;
        after * 1000 / n.allocatable.cpu_millis.max(1)
    })
}

/// A broken policy: forgets taints, readiness and selectors, and only checks room.
fn careless_node<'a>(snapshot: &'a Snapshot, pod: &Pod) -> Option<&'a Node> {
    snapshot.nodes.iter().find(|n| fit::check_room(n, n.requested, n.pod_count, pod.requests).is_ok())
}

/// A small cluster and a pending pod to place in it.
fn cluster_and_pod() -> impl Strategy<Value = (Snapshot, Pod)> {
    // `arb_pod_on(&[])` has no node to bind to: the pod is pending, as an admission request is.
    (arb_cluster(8, 40), arb_pod_on(&[]))
}

/// The policy's contract: a chosen node fits; no choice only when no node fits.
fn check_contract(
    policy: impl for<'a> Fn(&'a Snapshot, &Pod) -> Option<&'a Node>,
    snapshot: &Snapshot,
    pod: &Pod,
) -> Result<(), TestCaseError> {
    match policy(snapshot, pod) {
        Some(node) => {
            if let Err(why) = fit::check(node, pod) {
                return Err(TestCaseError::fail(format!(
                    "chose {} for {}/{}, which does not fit: {why}",
                    node.name, pod.namespace, pod.name
                )));
            }
        }
        None => {
            prop_assert!(snapshot.nodes.iter().all(|n| fit::check(n, pod).is_err()), "found no node although one fits")
        }
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        // This is an example, not a test suite: no regression files written next to it.
        failure_persistence: None,
        ..Config::default()
    };
    // A fixed RNG: the same run every time, like the seeded generator.
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}

fn report<T: std::fmt::Debug>(name: &str, result: Result<(), TestError<T>>, show: impl Fn(&T)) {
    match result {
        Ok(()) => println!("  PASS  {name}"),
        Err(TestError::Abort(why)) => println!("  ABORT {name}: {why}"),
        Err(TestError::Fail(why, minimal)) => {
            println!("  FAIL  {name}: {why}");
            show(&minimal);
        }
    }
}

fn main() {
    let seed = std::env::args().nth(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(42);

    // 1. A seeded cluster.
    let spec = ClusterSpec::medium().with_seed(seed);
    let started = Instant::now();
    let snapshot = generate(&spec);
    println!("generated ClusterSpec::medium() seed {seed} in {:?}:", started.elapsed());
    println!("{}", cluster_shape(&snapshot));
    println!(
        "hot nodes (usage score > 0.8): {}; overcommitted nodes: {}",
        hot_nodes(&snapshot, 0.8),
        overcommitted_nodes(&snapshot).len()
    );

    // 2. The policy on a new pod of the largest workload.
    if let Some(workload) = largest_workload(&snapshot)
        && let Some(pod) = pick_pending_pod(&snapshot, &workload.workload)
    {
        let started = Instant::now();
        let choice = least_allocated_node(&snapshot, &pod);
        let elapsed = started.elapsed();
        match choice {
            Some(node) => println!(
                "\nnew pod {}/{} of {} ({} replicas, requests {}): least allocated node {} \
                 (requested {} of {}), decided in {elapsed:?}",
                pod.namespace,
                pod.name,
                workload.workload,
                workload.replicas,
                pod.requests,
                node.name,
                node.requested,
                node.allocatable
            ),
            None => println!("\nnew pod {}/{}: no node fits", pod.namespace, pod.name),
        }
    }

    // 3. Properties over small random clusters.
    println!("\nproperty tests:");
    let result = runner(256).run(&arb_cluster(12, 80), |s| {
        let over = overcommitted_nodes(&s);
        prop_assert!(over.is_empty(), "overcommitted: {}", over[0].name);
        Ok(())
    });
    report("no node is overcommitted (256 clusters)", result, |_| {});

    let result = runner(256).run(&cluster_and_pod(), |(s, pod)| check_contract(least_allocated_node, &s, &pod));
    report("least_allocated_node only chooses nodes that fit (256 cases)", result, |_| {});

    let result = runner(256).run(&cluster_and_pod(), |(s, pod)| check_contract(careless_node, &s, &pod));
    report("careless_node (expected to fail: it ignores taints and readiness)", result, |(s, pod)| {
        println!(
            "        shrunk to {} node(s), {} pod(s); pod tolerations {:?}",
            s.nodes.len(),
            s.pods.len(),
            pod.tolerations
        );
        for n in &s.nodes {
            println!("        {}: ready {}, unschedulable {}, taints {:?}", n.name, n.ready, n.unschedulable, n.taints);
        }
    });
}
