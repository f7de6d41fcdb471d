//! Scenario files: the demo parses and runs; invalid files are rejected with the field path and line.

use placement_operator::simulate::{Scenario, ScenarioError, run};

#[test]
fn the_demo_runs_and_lands_every_burst_on_target() {
    let scenario = Scenario::demo().expect("the embedded demo parses");
    let report = run(&scenario);
    assert_eq!(report.distribution.len(), 2);
    for d in &report.distribution {
        assert_eq!(d.counts, d.target, "{}", d.workload);
        for b in &d.bursts {
            assert_eq!(b.counts, b.target, "{} after {} pods", d.workload, b.total);
        }
    }
    // SmartScheduler's README example: 1 base + 2 on-demand + 3 spot.
    assert_eq!(report.distribution[1].counts, vec![3, 3]);
    // The cache-only replay of the SmartScheduler burst puts all six in one group.
    assert_eq!(report.distribution[1].without_reservations, vec![6, 0]);
    let plan = report.rebalance.as_ref().expect("a rebalance section");
    assert!(plan.dry_run);
    assert!(!plan.evictions.is_empty());
    assert!(plan.sigma_after < plan.sigma_before);
    assert!(plan.skipped.iter().any(|s| s.reason.metric_label() == "pdb"));
    assert!(plan.skipped.iter().any(|s| s.reason.metric_label() == "slo_budget"));
    let zones = report.zones.as_ref().unwrap();
    assert!(zones.decisions.iter().any(|d| d.reason.contains("already pins")));
    let weights: Vec<u32> = report.traffic[0].steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights[1], 16, "the Route53 rebalancer's example: 3000 req/min, target 1000, base 8");
    let text = report.render();
    assert!(text.contains("Eviction plan (dry run)"));
    assert!(serde_json::to_string(&report).is_ok());
}

/// Issue 16: `simulate` shows why pods whose eviction would lose something stay: the demo's hot node
/// carries an Argo Workflow step, a cache with data in a sized emptyDir and a StatefulSet pod on a
/// node-local volume, each listed with its filter and the opt-in in words.
#[test]
fn simulate_shows_the_never_evict_reasons() {
    let report = run(&Scenario::demo().unwrap());
    let plan = report.rebalance.as_ref().unwrap();
    let reason = |pod: &str| {
        plan.skipped.iter().find(|s| s.pod.name.ends_with(pod)).map(|s| (s.reason.metric_label(), s.why.clone()))
    };
    let (label, why) = reason("etl-step").expect("the workflow step is listed");
    assert_eq!(label, "unknown_controller");
    assert!(why.contains("Workflow") && why.contains("allowControllerKinds"), "{why}");
    let (label, why) = reason("cache").expect("the cache is listed");
    assert_eq!(label, "empty_dir");
    assert!(why.contains("scratchEmptyDirs"), "{why}");
    let (label, why) = reason("ledger-0").expect("the ledger is listed");
    assert_eq!(label, "local_volume");
    assert!(why.contains("data-ledger-0"), "{why}");
    assert!(plan.evictions.iter().all(|e| !["etl-step", "cache", "ledger-0"].iter().any(|p| e.pod.name.ends_with(p))));
    let text = report.render();
    for label in ["unknown_controller", "empty_dir", "local_volume"] {
        assert!(text.contains(label), "{label} missing from the report:\n{text}");
    }
}

fn error(yaml: &str) -> String {
    match Scenario::parse("test.yaml", yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e @ ScenarioError::Invalid { .. }) => e.to_string(),
    }
}

const HEAD: &str = "name: t\nnow: \"2026-11-24T12:00:00Z\"\ncluster:\n  nodes:\n    - name: n1\n      allocatable: { cpu: \"4\", memory: 16Gi }\n";

#[test]
fn invalid_files_name_the_field_and_line() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "name: t\nnow: \"2026-11-24T12:00:00Z\"\ncluster:\n  nodes:\n    - name: n1\n      allocatable: { cpu: \"4\", memory: 16Qi }\n".into(),
            "cluster.nodes[0].allocatable.memory",
            "line 6",
        ),
        (format!("{HEAD}      colour: blue\n"), "cluster.nodes[0].colour", "line 7"),
        (format!("{HEAD}distributions:\n  - workload: {{ namespace: a, name: b }}\n    strategy: \"weight=1,nodeSelector=a:b,color=red\"\n    bursts: [1]\n"), "unknown parameter \"color\"", "line 8"),
        (format!("{HEAD}distributions:\n  - workload: {{ namespace: a, name: b }}\n    groups: [ {{ name: x, nodeSelector: {{ matchLabels: {{ a: b }} }}, weight: 0 }} ]\n    bursts: [1]\n"), "weights must sum to more than zero", "line 8"),
        (format!("{HEAD}rebalance:\n  policy: {{ coldThreshold: 0.9 }}\n"), "coldThreshold: 0.9 must be below", "line"),
        (format!("{HEAD}trafficWeights:\n  - name: x\n    initialWeight: 1\n    policy: {{ targetValue: 1000, baseValue: 8, schedules: [ {{ timeZone: Mars/Olympus, start: \"1:00\", end: \"2:00\", value: 1 }} ] }}\n    samples: []\n"), "unknown time zone", "line"),
        (format!("{HEAD}trafficWeights:\n  - name: x\n    initialWeight: 1\n    policy: {{ targetValue: 1000, baseValue: 8 }}\n    samples: [ {{ at: \"2026-11-24T12:00:00Z\", value: NaN }} ]\n"), "not a finite number", "line 11"),
        (format!("{HEAD}zoneBalancer:\n  namespace: t\n  selector: {{ matchExpressions: [ {{ key: a, operator: In, values: [] }} ] }}\n  create: []\n"), "needs at least one value", "line"),
        ("name: t\n".into(), "missing field `now`", "line"),
    ];
    for (yaml, want, line) in cases {
        let e = error(&yaml);
        assert!(e.starts_with("test.yaml: "), "{e}");
        assert!(e.contains(want), "expected {want:?} in: {e}");
        assert!(e.contains(line), "expected {line:?} in: {e}");
    }
}
