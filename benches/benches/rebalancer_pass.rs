//! One rebalancer pass inside the operator, at 5,000 nodes / 150,000 pods and at 1,000 nodes: the part
//! of `placement_operator::rebalancer::controller`'s pass between "reads done" (the RebalancePolicy,
//! the metrics.k8s.io lists, WorkloadSLOs, NodeClasses and target selectors are in hand) and "evictions
//! to make" (the status with the plan reserved, ready to write), and the memory of a process that holds
//! the index and the metrics and runs a pass. Measured per step (criterion group `rebalancer_pass`):
//!
//! * `snapshot`: `SharedIndex::read().snapshot()` of a `LiveIndex` filled with realistic Kubernetes
//!   objects (`placement_testkit::objects::cluster_objects`, decoded into k8s-openapi types and
//!   applied as watch events would be). The index's read lock is held for this whole step.
//! * `usage`: `observe::attach_usage` over NodeMetrics / PodMetrics objects (one per node with metrics
//!   and per running pod, nanocores and `Ki` as metrics-server writes them, with the object's labels).
//! * `pass`: `observe::add_slos` (20 WorkloadSLOs with `minAvailable`), `observe::add_classes` (2
//!   NodeClasses), `state::load`, `pass::run` (observe + plan) and `state::reserve` (the status to
//!   write), after an hour of passes at the policy's 1-minute interval, so the status carries node state
//!   and an hour of (dry-run) eviction history.
//! * `total`: the three in a row, dropping everything at the end, as the controller does.
//! * `metrics_decode`: decoding the NodeMetricsList and PodMetricsList JSON (the kube client's share of
//!   the reads; not in `total`).
//!
//! The policy is the default one (dry-run, 5 evictions a minute, 10 a plan). (This bench found that the
//! default `minImprovement`, then a threshold on sigma itself, stopped every plan at this size before
//! its first eviction; it is now a drop of n·sigma², and the setup prints what a pass plans.)
//!
//! Memory: the largest size is also loaded into a child process (this binary re-executed with
//! `PLACEMENT_BENCH_MEMORY=1`), which receives the objects as JSON lines on stdin as it would from the
//! API server, so its RSS is the index's, the metrics', and one pass's, without the generator's data.
//! It prints RSS after the index is built, with the metrics too, and the peak of one pass (VmHWM reset
//! through `/proc/self/clear_refs` just before it). Results and the command are in docs/performance.md.
//!
//! ```text
//! cargo bench -p placement-benches --bench rebalancer_pass                             # ~4 minutes
//! PLACEMENT_BENCH_NODES=1000 cargo bench -p placement-benches --bench rebalancer_pass  # one size
//! ```
#![forbid(unsafe_code)]

use criterion::{BatchSize, BenchmarkId, Criterion};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use placement_core::model::{Snapshot, WorkloadKind, WorkloadRef};
use placement_core::rebalance::{Plan, RebalancePolicy as CorePolicy};
use placement_core::selector::LabelSelector;
use placement_core::testing::{ClusterSpec, generate};
use placement_kube::convert::{NodeMetrics, PodMetrics};
use placement_kube::crd::{NodeClass, RebalancePolicy, RebalancePolicyStatus, WorkloadSLO, label_selector_to_core};
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_operator::rebalancer::observe::{self, Inputs};
use placement_operator::rebalancer::{pass, state};
use placement_testkit::objects::cluster_objects;
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sizes, largest first (the memory child is run for the first).
const SIZES: [usize; 2] = [5_000, 1_000];
/// WorkloadSLOs over the largest Deployments.
const SLOS: usize = 20;
/// Passes before the measured one: an hour at the default 1-minute interval.
const WARMUP_PASSES: i64 = 60;
const METRICS_AT: &str = "2026-11-25T11:59:40Z";
const MEMORY_ENV: &str = "PLACEMENT_BENCH_MEMORY";

/// Everything the controller has in hand once its reads are done.
struct Reads {
    index: SharedIndex,
    node_metrics: Vec<NodeMetrics>,
    pod_metrics: Vec<PodMetrics>,
    slos: Vec<WorkloadSLO>,
    selectors: BTreeMap<WorkloadRef, LabelSelector>,
    classes: Vec<NodeClass>,
    /// The RebalancePolicy as read, its status the previous pass's.
    policy: RebalancePolicy,
    core: CorePolicy,
    now: Timestamp,
}

impl Reads {
    fn previous(&self) -> &RebalancePolicyStatus {
        self.policy.status.as_ref().expect("a status")
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The bench's policy: the defaults, or `minImprovement` set.
fn policy(min_improvement: Option<f64>) -> RebalancePolicy {
    let spec = match min_improvement {
        Some(m) => json!({"minImprovement": m}),
        None => json!({}),
    };
    serde_json::from_value(json!({"apiVersion": "placement.dev/v1alpha1", "kind": "RebalancePolicy",
        "metadata": {"name": "default", "generation": 1}, "spec": spec, "status": {}}))
    .expect("RebalancePolicy")
}

/// metrics-server's CPU: nanocores, a little under the millicores (which round back up to them).
fn nanocores(millis: u64, jitter: u64) -> String {
    if millis == 0 { "0".to_string() } else { format!("{}n", millis * 1_000_000 - jitter % 999_983) }
}

fn node_metrics(snapshot: &Snapshot) -> Vec<Value> {
    snapshot
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let u = n.usage?;
            Some(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics",
                "metadata": {"name": n.name, "creationTimestamp": METRICS_AT, "labels": n.labels},
                "timestamp": METRICS_AT, "window": "20.051s",
                "usage": {"cpu": nanocores(u.cpu_millis, i as u64 * 7_919), "memory": format!("{}Ki", u.memory_bytes / 1024)}}))
        })
        .collect()
}

fn pod_metrics(snapshot: &Snapshot) -> impl Iterator<Item = Value> + '_ {
    snapshot.pods.iter().enumerate().filter_map(|(i, p)| {
        let u = p.usage?;
        Some(json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": p.name, "namespace": p.namespace, "creationTimestamp": METRICS_AT, "labels": p.labels},
            "timestamp": METRICS_AT, "window": "18.265s",
            "containers": [{"name": "app",
                "usage": {"cpu": nanocores(u.cpu_millis, i as u64 * 104_729), "memory": format!("{}Ki", u.memory_bytes / 1024)}}]}))
    })
}

/// WorkloadSLOs on the `SLOS` largest Deployments (`minAvailable: 90%`, 5 evictions an hour), and two
/// NodeClasses (spot nodes less preferred as targets).
fn guard_rails(snapshot: &Snapshot) -> Vec<Value> {
    let mut deployments: Vec<_> =
        snapshot.workloads.iter().filter(|w| w.workload.kind == WorkloadKind::Deployment && w.replicas > 1).collect();
    deployments.sort_by_key(|w| (Reverse(w.replicas), w.workload.name.clone()));
    let slos = deployments.into_iter().take(SLOS).map(|w| {
        json!({"apiVersion": "placement.dev/v1alpha1", "kind": "WorkloadSLO",
            "metadata": {"name": format!("{}-slo", w.workload.name), "namespace": w.workload.namespace},
            "spec": {"targetRef": {"kind": "Deployment", "name": w.workload.name},
                "maxEvictionsPerHour": 5, "minAvailable": "90%"}})
    });
    let classes = [("ondemand", 100), ("spot", 60)].into_iter().map(|(name, weight)| {
        json!({"apiVersion": "placement.dev/v1alpha1", "kind": "NodeClass", "metadata": {"name": name},
            "spec": {"nodeSelector": {"matchLabels": {"node-type": name}}, "weight": weight}})
    });
    slos.chain(classes).collect()
}

/// Builds the reads from objects as the API server would serve them: each decoded from its JSON into
/// its type and applied (index) or kept (metrics, guard rails), as the watchers and the pass do.
#[derive(Default)]
struct Loader {
    index: LiveIndex,
    node_metrics: Vec<NodeMetrics>,
    pod_metrics: Vec<PodMetrics>,
    slos: Vec<WorkloadSLO>,
    classes: Vec<NodeClass>,
    targets: BTreeSet<WorkloadRef>,
    /// The SLOs' target Deployments' pod selectors (what `observe::fetch_selectors` reads).
    selectors: BTreeMap<WorkloadRef, LabelSelector>,
    policy: Option<RebalancePolicy>,
}

impl Loader {
    /// Guard rails must come before the Deployments (their selectors are kept for the SLOs' targets).
    fn add(&mut self, o: Value) {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Node" => self.index.apply_node(&serde_json::from_value::<Node>(o).expect("Node")),
            "Pod" => self.index.apply_pod(&serde_json::from_value::<Pod>(o).expect("Pod")),
            "ReplicaSet" => self.index.apply_replicaset(&serde_json::from_value::<ReplicaSet>(o).expect("ReplicaSet")),
            "StatefulSet" => {
                self.index.apply_statefulset(&serde_json::from_value::<StatefulSet>(o).expect("StatefulSet"))
            }
            "PodDisruptionBudget" => {
                self.index.apply_pdb(&serde_json::from_value::<PodDisruptionBudget>(o).expect("PodDisruptionBudget"))
            }
            "Deployment" => {
                let d: Deployment = serde_json::from_value(o).expect("Deployment");
                let w = WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    namespace: d.metadata.namespace.clone().unwrap_or_default(),
                    name: d.metadata.name.clone().unwrap_or_default(),
                };
                if self.targets.contains(&w)
                    && let Some(s) = d.spec.as_ref().map(|s| &s.selector)
                {
                    self.selectors.insert(w, label_selector_to_core("spec.selector", s).expect("selector"));
                }
                self.index.apply_deployment(&d);
            }
            "NodeMetrics" => self.node_metrics.push(serde_json::from_value(o).expect("NodeMetrics")),
            "PodMetrics" => self.pod_metrics.push(serde_json::from_value(o).expect("PodMetrics")),
            "WorkloadSLO" => {
                self.slos.push(serde_json::from_value(o).expect("WorkloadSLO"));
                self.targets = observe::slo_targets(&self.slos);
            }
            "NodeClass" => self.classes.push(serde_json::from_value(o).expect("NodeClass")),
            "RebalancePolicy" => self.policy = Some(serde_json::from_value(o).expect("RebalancePolicy")),
            _ => {}
        }
    }

    fn done(self) -> Reads {
        let policy = self.policy.expect("a RebalancePolicy");
        let core = policy.spec.to_core().expect("a valid policy");
        let last = policy.status.as_ref().and_then(|s| s.state.last_observed.as_ref()).map(|t| t.0);
        let now = last.map_or("2026-11-25T11:00:00Z".parse().expect("time"), |t| t + SignedDuration::from_secs(60));
        Reads {
            index: SharedIndex::from_index(self.index),
            node_metrics: self.node_metrics,
            pod_metrics: self.pod_metrics,
            slos: self.slos,
            selectors: self.selectors,
            classes: self.classes,
            policy,
            core,
            now,
        }
    }
}

/// The index as the controller reads it, "as late as possible".
fn step_snapshot(r: &Reads) -> Inputs {
    Inputs { snapshot: r.index.read().snapshot(), ..Inputs::default() }
}

fn step_usage(r: &Reads, inputs: &mut Inputs) {
    observe::attach_usage(inputs, &r.node_metrics, &r.pod_metrics);
}

/// The rest of the controller's pass up to the status write, in its order (`Rebalancer::pass_inner`).
fn step_pass(r: &Reads, inputs: &mut Inputs) -> (Plan, RebalancePolicyStatus) {
    observe::add_slos(inputs, &r.slos, &r.selectors);
    observe::add_classes(inputs, &r.classes);
    let previous = r.previous();
    let loaded = state::load(&previous.state, r.core.dry_run);
    let result = pass::run(&r.core, &loaded, inputs, r.now, 1);
    let status =
        state::reserve(previous, &result.observed, &result.plan, &inputs.notes, r.policy.metadata.generation, r.now)
            .status;
    (result.plan, status)
}

fn total(r: &Reads) -> (Plan, RebalancePolicyStatus) {
    let mut inputs = step_snapshot(r);
    step_usage(r, &mut inputs);
    step_pass(r, &mut inputs)
}

/// The reads for `nodes`, after an hour of passes; for the first size, the memory child too.
fn setup(nodes: usize, memory: bool) -> Reads {
    let started = Instant::now();
    let snapshot = generate(&ClusterSpec::scaled(nodes));
    let mut loader = Loader::default();
    let rails = guard_rails(&snapshot);
    for o in rails.iter().cloned().chain(cluster_objects(&snapshot)).chain(node_metrics(&snapshot)) {
        loader.add(o);
    }
    for o in pod_metrics(&snapshot) {
        loader.add(o);
    }
    loader.policy = Some(policy(None));
    let mut r = loader.done();

    // An hour of passes over the same cluster: the status carries node state and an hour of history.
    let mut base = step_snapshot(&r);
    step_usage(&r, &mut base);
    let t0 = r.now;
    for k in 0..WARMUP_PASSES {
        r.now = t0 + SignedDuration::from_secs(60 * k);
        let status = step_pass(&r, &mut base.clone()).1;
        r.policy.status = Some(status);
    }
    r.now = t0 + SignedDuration::from_secs(60 * WARMUP_PASSES);
    let s = Instant::now();
    let (plan, status) = total(&r);
    let once = s.elapsed();
    let i = r.index.read();
    println!(
        "rebalancer_pass/{nodes}: {} nodes, {} pods, {} NodeMetrics, {} PodMetrics, {} WorkloadSLOs ({} targets found), \
         {} NodeClasses; set up in {:.1} s",
        i.node_count(),
        i.pod_count(),
        r.node_metrics.len(),
        r.pod_metrics.len(),
        r.slos.len(),
        r.selectors.len(),
        r.classes.len(),
        started.elapsed().as_secs_f64()
    );
    drop(i);
    let mut object = r.policy.clone();
    object.status = Some(status.clone());
    let status_bytes = serde_json::to_vec(&object).map(|v| v.len()).unwrap_or(0);
    println!(
        "  measured pass ({} ms once): {} hot / {} cold nodes, sigma {:.4} -> {:.4}, {} evictions planned, {} candidates \
         skipped, stop: {}",
        once.as_millis(),
        plan.hot_nodes().count(),
        plan.cold_nodes().count(),
        plan.sigma_before,
        plan.sigma_after,
        plan.evictions.len(),
        plan.skipped.len(),
        plan.stop,
    );
    println!(
        "  status written: {} node entries, {} history entries, {} KB of RebalancePolicy JSON",
        status.state.nodes.len(),
        status.state.history.len(),
        status_bytes / 1000
    );
    breakdown(&r, &base);
    // The same pass with the shipped defaults (minImprovement 0.001).
    let bench_core = std::mem::replace(&mut r.core, policy(None).spec.to_core().expect("the defaults"));
    let (plan, _) = total(&r);
    println!(
        "  the same pass with the default minImprovement {}: {} evictions planned, stop: {}",
        r.core.min_improvement,
        plan.evictions.len(),
        plan.stop
    );
    r.core = bench_core;
    if memory {
        measure_memory(&snapshot, &rails, &r.policy);
    }
    r
}

/// Where `pass` goes, timed by hand (median of 5), and what freeing a pass's snapshot costs.
fn breakdown(r: &Reads, base: &Inputs) {
    let mut times: [Vec<Duration>; 5] = Default::default();
    for _ in 0..5 {
        let mut inputs = base.clone();
        let t = Instant::now();
        observe::add_slos(&mut inputs, &r.slos, &r.selectors);
        times[0].push(t.elapsed());
        let t = Instant::now();
        observe::add_classes(&mut inputs, &r.classes);
        let previous = r.previous();
        let loaded = state::load(&previous.state, r.core.dry_run);
        times[1].push(t.elapsed());
        let t = Instant::now();
        let result = pass::run(&r.core, &loaded, &inputs, r.now, 1);
        times[2].push(t.elapsed());
        let t = Instant::now();
        let status = state::reserve(previous, &result.observed, &result.plan, &inputs.notes, Some(1), r.now);
        times[3].push(t.elapsed());
        let t = Instant::now();
        drop((inputs, result, status));
        times[4].push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let [a, b, c, d, e] = &mut times;
    println!(
        "  pass breakdown (median of 5): add_slos {:.1} ms, add_classes + state::load {:.1} ms, pass::run {:.1} ms, \
         state::reserve {:.1} ms; freeing the inputs {:.1} ms",
        median(a),
        median(b),
        median(c),
        median(d),
        median(e)
    );
}

/// Parent: streams the objects to a fresh child process and relays its report.
fn measure_memory(snapshot: &Snapshot, rails: &[Value], policy: &RebalancePolicy) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env(MEMORY_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the memory child");
    {
        let mut w = BufWriter::new(child.stdin.take().expect("child stdin"));
        let mut line = |o: &Value| {
            serde_json::to_writer(&mut w, o).expect("write");
            w.write_all(b"\n").expect("write");
        };
        rails.iter().for_each(&mut line);
        line(&serde_json::to_value(policy).expect("policy"));
        cluster_objects(snapshot).for_each(|o| line(&o));
        line(&json!({"kind": "IndexDone"}));
        node_metrics(snapshot).iter().for_each(&mut line);
        pod_metrics(snapshot).for_each(|o| line(&o));
        w.flush().expect("flush");
    }
    for l in BufReader::new(child.stdout.take().expect("child stdout")).lines() {
        println!("{}", l.expect("child output"));
    }
    let _ = child.wait();
}

/// Child: loads the objects from stdin, then reports RSS and one pass's peak.
fn memory_child() {
    let start = status_kib("VmRSS:");
    let mut loader = Loader::default();
    let mut index_only = 0;
    for l in std::io::stdin().lock().lines() {
        let o: Value = serde_json::from_str(&l.expect("stdin")).expect("a JSON line");
        if o["kind"] == "IndexDone" {
            index_only = status_kib("VmRSS:");
            continue;
        }
        loader.add(o);
    }
    let r = loader.done();
    let holding = status_kib("VmRSS:");
    let load_peak = status_kib("VmHWM:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let s = Instant::now();
    let out = total(&r);
    let elapsed = s.elapsed();
    let pass_peak = status_kib("VmHWM:");
    drop(out);
    let after = status_kib("VmRSS:");
    let out = total(&r);
    drop(out);
    let after2 = status_kib("VmRSS:");
    let mb = |kib: u64| kib / 1024;
    println!("  memory (a child process holding only what the operator holds; {} MB at start):", mb(start));
    println!("    RSS with the live index built:              {} MB", mb(index_only));
    println!(
        "    RSS with the metrics objects too:           {} MB (+{} MB for {} NodeMetrics and {} PodMetrics)",
        mb(holding),
        mb(holding.saturating_sub(index_only)),
        r.node_metrics.len(),
        r.pod_metrics.len()
    );
    println!("    peak RSS while loading:                     {} MB", mb(load_peak));
    if reset {
        println!(
            "    peak RSS during one pass:                   {} MB (+{} MB; that pass took {} ms)",
            mb(pass_peak),
            mb(pass_peak.saturating_sub(holding)),
            elapsed.as_millis()
        );
    } else {
        println!("    peak RSS during one pass: unknown (/proc/self/clear_refs not writable)");
    }
    println!("    RSS after one pass / after a second:        {} MB / {} MB", mb(after), mb(after2));
}

fn bench(c: &mut Criterion, r: &Reads, nodes: usize) {
    let mut g = c.benchmark_group("rebalancer_pass");
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(2));
    g.bench_function(BenchmarkId::new("snapshot", nodes), |b| b.iter_with_large_drop(|| step_snapshot(black_box(r))));
    let mut inputs = step_snapshot(r);
    g.bench_function(BenchmarkId::new("usage", nodes), |b| {
        b.iter(|| {
            inputs.notes.clear();
            step_usage(black_box(r), &mut inputs)
        })
    });
    g.bench_function(BenchmarkId::new("pass", nodes), |b| {
        b.iter_batched(
            || inputs.clone(),
            |mut i| {
                let out = step_pass(black_box(r), &mut i);
                (i, out)
            },
            BatchSize::LargeInput,
        )
    });
    drop(inputs);
    g.bench_function(BenchmarkId::new("total", nodes), |b| b.iter(|| total(black_box(r))));
    // The client's share: the JSON of both lists, decoded as `Api::list` decodes it.
    let list = |kind: &str, items: Value| {
        serde_json::to_vec(
            &json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": kind, "metadata": {}, "items": items}),
        )
        .expect("list JSON")
    };
    let nodes_json = list("NodeMetricsList", serde_json::to_value(&r.node_metrics).expect("nodes"));
    let pods_json = list("PodMetricsList", serde_json::to_value(&r.pod_metrics).expect("pods"));
    println!(
        "rebalancer_pass/{nodes}: the metrics lists are {} KB (nodes) and {} KB (pods) of JSON",
        nodes_json.len() / 1000,
        pods_json.len() / 1000
    );
    g.bench_function(BenchmarkId::new("metrics_decode", nodes), |b| {
        b.iter_with_large_drop(|| {
            let n: kube::core::ObjectList<NodeMetrics> = serde_json::from_slice(black_box(&nodes_json)).expect("nodes");
            let p: kube::core::ObjectList<PodMetrics> = serde_json::from_slice(black_box(&pods_json)).expect("pods");
            (n, p)
        })
    });
    g.finish();
}

fn main() {
    if std::env::var_os(MEMORY_ENV).is_some() {
        memory_child();
        return;
    }
    let sizes: Vec<usize> = match std::env::var("PLACEMENT_BENCH_NODES") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => SIZES.to_vec(),
    };
    let mut c = Criterion::default().configure_from_args();
    for (i, &nodes) in sizes.iter().enumerate() {
        let reads = setup(nodes, i == 0);
        bench(&mut c, &reads, nodes);
    }
    c.final_summary();
}
