//! In-process admission handling at 5,000 nodes and 150,000 pods: `Admission::review` on the pod CREATE
//! AdmissionReview a ReplicaSet controller sends, for a Deployment with a strategy annotation and for a
//! single-replica workload under a ZoneBalancer, and the parts one review is made of (reading the
//! review, deciding, writing the patch and the response). No HTTP, no TLS: `webhook_load` measures those.
//!
//! Dry runs reserve nothing, so they are the steady state. A real admission records a reservation that
//! the next decision counts; `review_reserve` sends a fresh uid each time and empties the ledger every
//! 1,000 admissions, outside the timed part. `ledger_expiry` times the reservation expiry the server
//! runs every 500 ms under the index write lock. Results are in docs/performance.md.
//!
//! ```text
//! cargo bench -p placement-benches --bench webhook
//! PLACEMENT_BENCH_NODES=500 cargo bench -p placement-benches --bench webhook -- --quick
//! ```

#[allow(dead_code)] // shared with webhook_load, which uses other parts
mod webhook_setup;

use criterion::{Criterion, criterion_group, criterion_main};
use placement_core::ledger::{Ledger, Reservation};
use placement_core::model::WorkloadRef;
use placement_kube::live::SharedIndex;
use placement_webhook::admission::{Admission, placement};
use placement_webhook::decide::{Candidate, Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use placement_webhook::patch::plan_patch_json;
use placement_webhook::review::{Response, parse_review};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use webhook_setup::{Cluster, ReviewBody};

/// Admissions between two emptyings of the ledger in `review_reserve`.
const LEDGER_FLUSH: usize = 1_000;

fn nodes() -> usize {
    std::env::var("PLACEMENT_BENCH_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000)
}

/// What a review answered: whether it carries a patch, and its warnings.
fn outcome(answer: &[u8]) -> String {
    let v: Value = serde_json::from_slice(answer).expect("response JSON");
    let patched = v.pointer("/response/patch").is_some();
    let warnings = v.pointer("/response/warnings").map(Value::to_string).unwrap_or_default();
    format!("{} {warnings}", if patched { "patched" } else { "NOT patched" })
}

fn admission(c: &mut Criterion) {
    let started = Instant::now();
    let cluster = Cluster::generate(nodes());
    let index = cluster.index();
    let (pods, node_count) = (index.pod_count(), index.node_count());
    let zone_balancer = cluster.zone_balancer();
    let rules =
        StaticRules { zone_balancers: zone_balancer.into_iter().map(Arc::new).collect(), ..StaticRules::default() };
    let decider = Arc::new(Decider::new(SharedIndex::from_index(index), Arc::new(rules), Duration::from_secs(30)));
    let metrics = AdmissionMetrics::register(&mut Registry::default());
    let admission = Admission::new(decider.clone(), metrics, Duration::from_millis(1_500));
    eprintln!("index: {node_count} nodes, {pods} pods (built in {:.1} s)", started.elapsed().as_secs_f64());

    let capacity = &cluster.strategy_pods[0];
    let zones = &cluster.strategy_pods[1];
    let zone_pod = cluster.zone_pod.as_ref().expect("a single-replica Deployment");
    let cases = [("strategy_capacity", capacity), ("strategy_zones", zones), ("zone_balancer", zone_pod)];
    let bodies: Vec<(&str, ReviewBody)> = cases.iter().map(|(name, pod)| (*name, ReviewBody::new(pod, true))).collect();
    for ((name, pod), (_, body)) in cases.iter().zip(&bodies) {
        eprintln!(
            "{name}: {}, review {} bytes: {}",
            pod.label,
            body.bytes.len(),
            outcome(&admission.review(&body.bytes))
        );
    }

    let mut g = c.benchmark_group("webhook");
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    for (name, body) in &bodies {
        g.bench_function(format!("review_dry_run/{name}"), |b| b.iter(|| admission.review(black_box(&body.bytes))));
    }

    // What one hostile review costs: a 1 MiB `request.uid` (the answer must echo it), read and answered
    // on the blocking pool by the server.
    let huge_uid = bodies[0].1.with_uid(&"f".repeat(1 << 20));
    g.bench_function("hostile/huge_uid", |b| b.iter(|| admission.review(black_box(&huge_uid))));

    // Real admissions: a fresh uid each, the ledger emptied now and then (untimed).
    let mut wet = ReviewBody::new(capacity, false);
    eprintln!("strategy_capacity (not a dry run): {}", outcome(&admission.review(&wet.bytes)));
    let mut uid = 1u64;
    g.bench_function("review_reserve/strategy_capacity", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                uid += 1;
                wet.set_uid(uid);
                let t = Instant::now();
                black_box(admission.review(black_box(&wet.bytes)));
                total += t.elapsed();
                if uid.is_multiple_of(LEDGER_FLUSH as u64) {
                    decider.index().write().ledger_mut().expire(jiff::Timestamp::MAX);
                }
            }
            total
        })
    });
    decider.index().write().ledger_mut().expire(jiff::Timestamp::MAX);

    // The parts of one dry-run review of `strategy_capacity`.
    let body = &bodies[0].1.bytes;
    g.bench_function("part/parse_review", |b| b.iter(|| parse_review(black_box(body)).expect("review")));
    let request = parse_review(body).expect("review");
    let pod = request.pod().expect("pod");
    let namespace = request.namespace.clone().unwrap_or_default();
    let candidate = Candidate { pod, namespace: &namespace, uid: &request.uid, dry_run: true };
    g.bench_function("part/decide", |b| b.iter(|| decider.decide(black_box(&candidate)).expect("decision")));
    let decision = decider.decide(&candidate).expect("decision");
    let raw = request.object.as_ref().expect("object").raw();
    g.bench_function("part/patch_and_response", |b| {
        b.iter(|| {
            let plan = plan_patch_json(black_box(raw), &placement(&decision)).expect("patch");
            Response::allow(request.uid.clone()).with_patch(&plan.patch).with_warnings(plan.notes).to_review_json()
        })
    });
    g.finish();
}

/// The reservation expiry the server runs every 500 ms under the index write lock: with nothing due,
/// among 300,000 active reservations or 1,000,000 tombstones of confirmed ones, and in the steady state
/// at 10,000 admissions/s, where each tick drops the 5,000 that are due.
fn ledger_expiry(c: &mut Criterion) {
    let now = jiff::Timestamp::now();
    let later = now.saturating_add(jiff::SignedDuration::from_mins(10)).expect("timestamp");
    let workload = WorkloadRef::deployment("team-00", "web");
    let reservation = |i: usize, expires: jiff::Timestamp| Reservation {
        id: format!("00000000-0000-4000-9000-{i:012x}"),
        workload: workload.clone(),
        revision: Some("abc123".into()),
        group: if i.is_multiple_of(4) { "ondemand".into() } else { "spot".into() },
        pod: None,
        expires,
    };
    let mut g = c.benchmark_group("ledger_expiry");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    // 10,000 admissions/s whose pods never appear, under the default 30 s TTL.
    let mut active = Ledger::new();
    for i in 0..300_000 {
        active.add(reservation(i, later));
    }
    g.bench_function("nothing_due/300k_active", |b| b.iter(|| active.expire(black_box(now))));
    drop(active);
    // 10,000 admissions/s whose pods appear: tombstones are kept 5 minutes (here 100 s worth).
    let mut confirmed = Ledger::new();
    for i in 0..1_000_000 {
        confirmed.add(reservation(i, later));
        confirmed.confirm(&reservation(i, later).id, later);
    }
    g.bench_function("nothing_due/1m_tombstones", |b| b.iter(|| confirmed.expire(black_box(now))));
    drop(confirmed);
    // The steady state at 10,000/s and a 30 s TTL: one entry expiring every 100 µs, each tick 500 ms
    // later than the last. Adding the next 5,000 is not timed.
    let step = jiff::SignedDuration::from_micros(100);
    let at = |i: usize| now.saturating_add(step * i as i32).expect("timestamp");
    // 1,000,000 tombstones (100 s worth), the 5,000 oldest due at each tick.
    let mut tombstones = Ledger::new();
    for i in 0..1_000_000 {
        tombstones.confirm(&reservation(i, later).id, at(i));
    }
    let mut next = 1_000_000;
    g.bench_function("tick_5k_due_of_1m_tombstones", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for i in next..next + 5_000 {
                    tombstones.confirm(&reservation(i, later).id, at(i));
                }
                next += 5_000;
                let tick = at(next - 1_000_000 - 1);
                let t = Instant::now();
                black_box(tombstones.expire(black_box(tick)));
                total += t.elapsed();
                assert!(!tombstones.is_confirmed(&reservation(next - 1_000_000 - 1, later).id));
            }
            total
        })
    });
    drop(tombstones);
    // 300,000 active reservations whose pods never appear, the 5,000 oldest due at each tick; expiry
    // returns them, and the server frees them after releasing the lock.
    let mut rolling = Ledger::new();
    for i in 0..300_000 {
        rolling.add(reservation(i, at(i)));
    }
    let mut next = 300_000;
    g.bench_function("tick_5k_due_of_300k_active", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for i in next..next + 5_000 {
                    rolling.add(reservation(i, at(i)));
                }
                next += 5_000;
                let tick = at(next - 300_000 - 1);
                let t = Instant::now();
                let gone = rolling.expire(black_box(tick));
                total += t.elapsed();
                assert_eq!(gone.len(), 5_000);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, admission, ledger_expiry);
criterion_main!(benches);
