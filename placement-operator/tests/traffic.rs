//! The TrafficWeight controller end to end against real servers on 127.0.0.1: a real Prometheus (scraping
//! an endpoint whose values each test sets), the moto AWS API emulator for Route53, and the fake API
//! server (real kube client and Controller) for the resource, its Secrets, its status, Events and
//! Gateway API HTTPRoutes. Every wait is bounded.
//!
//! An evaluation runs when a TrafficWeight is created or its spec changes (and then every interval, at
//! least 10 s); the tests change the spec to make the next evaluation come at once.

mod common;

use common::moto::moto_url;
use placement_core::tracking::access::{AccessPolicy, CREDENTIALS_LABEL, Permit};
use placement_kube::live::{self, WatchOptions, Watchers};
use placement_operator::runtime::events::Events;
use placement_operator::traffic::egress::Egress;
use placement_operator::traffic::prometheus::{PrometheusClient, PrometheusConfig, PrometheusError};
use placement_operator::traffic::route53::{ClientSettings, CredentialSource, StaticCredentials, sdk_client};
use placement_operator::traffic::{self, Options};
use placement_operator::{Context, Leadership};
use placement_testkit::FakeApiServer;
use prometheus_client::registry::Registry;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const NS: &str = "traffic";
const WAIT: Duration = Duration::from_secs(30);

// ---- the metric: one series per test case, `tw_load{case="..."}` ----

static SERIES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

fn exposition() -> String {
    let mut text = String::from("# TYPE tw_load gauge\n");
    for (case, value) in SERIES.lock().unwrap().iter() {
        text.push_str(&format!("tw_load{{case=\"{case}\"}} {value}\n"));
    }
    text
}

fn query(case: &str) -> String {
    format!("tw_load{{case=\"{case}\"}}")
}

/// Serves `value` for `case` and waits until Prometheus answers it (a scrape or two).
async fn set_metric(case: &str, value: &str) -> &'static str {
    SERIES.lock().unwrap().insert(case.to_string(), value.to_string());
    let prom = common::prometheus::shared(&exposition()).await;
    prom.set_exposition(&exposition());
    let mut config = PrometheusConfig::new(&prom.address, query(case)).unwrap();
    config.egress = Egress::new(Permit::any_loopback("the test's Prometheus"));
    let client = PrometheusClient::new(config).unwrap();
    let want: Option<Decimal> = value.parse().ok();
    let started = Instant::now();
    loop {
        let got = client.query().await;
        let done = match (&got, want) {
            (Ok(s), Some(w)) => s.value == w,
            (Err(PrometheusError::NotFinite { .. }), None) => true, // NaN
            _ => false,
        };
        if done {
            return &prom.address;
        }
        assert!(started.elapsed() < WAIT, "Prometheus never answered {value} for {case}: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- the cluster and the controller ----

struct Cluster {
    server: FakeApiServer,
    registry: Registry,
    controller: JoinHandle<()>,
    _watchers: Watchers,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

/// The HTTPRoute type, as a minimal CRD (the fake serves any CRD created through it).
fn http_route_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
        "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
            "names": {"plural": "httproutes", "singular": "httproute", "kind": "HTTPRoute", "listKind": "HTTPRouteList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

async fn cluster() -> Cluster {
    cluster_led_by(Leadership::always()).await
}

async fn cluster_led_by(leadership: Leadership) -> Cluster {
    let server = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    server.put(http_route_crd()).unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    server
        .put(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws", "namespace": NS, "labels": {CREDENTIALS_LABEL: "true"}},
            "stringData": {"accessKeyId": "testing", "secretAccessKey": "testing"}}))
        .unwrap();
    let (index, watchers) = live::spawn(server.client(), WatchOptions::default());
    let client = server.client();
    let ctx = Context {
        client: client.clone(),
        eviction_client: server.client_without_retry(),
        index,
        events: Events::new(client, "placement-operator", Some("test-0".into())),
        leadership,
    };
    let mut registry = Registry::default();
    let mut options = Options { error_backoff: Duration::from_millis(200), ..Options::default() };
    options.connect.route53_retry.initial_delay = Duration::from_millis(20);
    // Prometheus and moto listen on 127.0.0.1: the admin's explicit loopback entry.
    let local = vec!["http://127.0.0.1".parse().unwrap()];
    options.connect.access = std::sync::Arc::new(AccessPolicy::new(local, Default::default()));
    let controller = tokio::spawn(traffic::controller_with(ctx, &mut registry, options));
    Cluster { server, registry, controller, _watchers: watchers }
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

fn status(c: &Cluster, name: &str) -> Value {
    c.server
        .get("placement.dev/v1alpha1", "TrafficWeight", NS, name)
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == type_).cloned().unwrap_or(Value::Null)
}

/// Waits until the status satisfies `ok`; panics with the last status otherwise.
async fn wait_status(c: &Cluster, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let s = status(c, name);
        if ok(&s) {
            return s;
        }
        assert!(started.elapsed() < WAIT, "{what}: never happened; last status:\n{s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events(c: &Cluster, reason: &str) -> Vec<Value> {
    c.server.list("v1", "Event", Some(NS)).into_iter().filter(|e| e["reason"] == reason).collect()
}

/// How many times Events of `reason` were published: kube's recorder (like client-go's) publishes a
/// repeat of the same reason about the same object as `series.count` of the first Event.
fn published(c: &Cluster, reason: &str) -> u64 {
    events(c, reason).iter().map(|e| e["series"]["count"].as_u64().unwrap_or(1)).sum()
}

fn traffic_weight(name: &str, prometheus: &str, case: &str, target: Value) -> Value {
    json!({"apiVersion": "placement.dev/v1alpha1", "kind": "TrafficWeight",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"interval": "10s", "cooldown": "5m",
            "policy": {"targetValue": 1000},
            "metric": {"prometheus": {"address": prometheus, "query": query(case), "timeout": "5s"}},
            "target": target}})
}

/// Changes the spec (so the next evaluation comes at once) with a JSON merge patch.
async fn patch_spec(c: &Cluster, name: &str, spec: Value) {
    let api: kube::Api<placement_kube::crd::TrafficWeight> = kube::Api::namespaced(c.server.client(), NS);
    api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(json!({"spec": spec}))).await.unwrap();
}

// ---- Route53 in moto ----

async fn route53() -> aws_sdk_route53::Client {
    let mut s = ClientSettings::new(CredentialSource::Static(StaticCredentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    }));
    s.endpoint_url = Some(moto_url());
    sdk_client(&s).await
}

static ZONES: AtomicU32 = AtomicU32::new(0);

/// A new zone with `example` A records "base" (weight 8) and "aws" (weight `managed`); returns the zone id.
async fn zone_with_records(managed: i64) -> (String, String) {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    let r53 = route53().await;
    let n = ZONES.fetch_add(1, Ordering::SeqCst);
    let zone_name = format!("tw{n}-{}.example.com.", std::process::id());
    let zone = r53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(format!("tw-{n}-{}", std::process::id()))
        .send()
        .await
        .unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().to_string();
    let record = |id: &str, weight: i64, ip: &str| {
        ResourceRecordSet::builder()
            .name(format!("api.{zone_name}"))
            .r#type(RrType::A)
            .set_identifier(id)
            .weight(weight)
            .ttl(60)
            .resource_records(ResourceRecord::builder().value(ip).build().unwrap())
            .build()
            .unwrap()
    };
    let mut batch = ChangeBatch::builder();
    for rr in [record("base", 8, "192.0.2.1"), record("aws", managed, "192.0.2.2")] {
        batch = batch.changes(Change::builder().action(ChangeAction::Upsert).resource_record_set(rr).build().unwrap());
    }
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(batch.build().unwrap())
        .send()
        .await
        .unwrap();
    (zone_id, format!("api.{zone_name}"))
}

async fn route53_weight(zone: &str, name: &str, id: &str) -> i64 {
    let out = route53().await.list_resource_record_sets().hosted_zone_id(zone).send().await.unwrap();
    out.resource_record_sets()
        .iter()
        .find(|r| r.name() == name && r.set_identifier() == Some(id))
        .and_then(|r| r.weight())
        .unwrap_or(-1)
}

fn route53_target(zone: &str, name: &str, set_identifier: &str) -> Value {
    json!({"route53": {"hostedZoneId": zone, "recordName": name, "recordType": "A",
        "setIdentifier": set_identifier, "baseSetIdentifier": "base", "region": "us-east-1",
        "endpoint": moto_url(), "credentialsSecretRef": {"name": "aws"}}})
}

// ---- the tests ----

/// The Route53 rebalancer's README example: 3000 req/min against a target of 1000 with a base record of
/// weight 8 gives 16.
/// Then the load falls: the decrease waits for the cooldown; with a short cooldown it applies.
#[tokio::test]
async fn readme_example_3000_per_minute_target_1000_base_8_gives_16() {
    let started = Instant::now();
    let prom = set_metric("seed", "3000").await;
    let (zone, name) = zone_with_records(1).await;
    let c = cluster().await;
    c.server.put(traffic_weight("aws-env", prom, "seed", route53_target(&zone, &name, "aws"))).unwrap();

    let s = wait_status(&c, "aws-env", "weight 16", |s| s["currentWeight"] == 16).await;
    assert_eq!(route53_weight(&zone, &name, "aws").await, 16, "Route53 has the new weight");
    assert_eq!(route53_weight(&zone, &name, "base").await, 8, "the base record is never written");
    assert_eq!(
        (s["baseWeight"].clone(), s["desiredWeight"].clone(), s["metricValue"].clone()),
        (json!(8), json!(16), json!("3000"))
    );
    assert_eq!(condition(&s, "Ready")["status"], "True");
    assert_eq!(condition(&s, "Ready")["reason"], "Tracking");
    assert!(s["lastChange"].is_string(), "{s:#}");
    let changed = events(&c, "WeightChanged");
    assert_eq!(changed.len(), 1, "{changed:#?}");
    let note = changed[0]["message"].as_str().unwrap();
    assert!(note.contains("weight 1 -> 16") && note.contains("metric 3000 vs target 1000: law gives 16"), "{note}");
    let text = metrics_text(&c.registry);
    assert!(text.contains("placement_traffic_weight_desired{namespace=\"traffic\",name=\"aws-env\"} 16"), "{text}");
    assert!(text.contains("placement_traffic_weight_actual{namespace=\"traffic\",name=\"aws-env\"} 16"), "{text}");
    assert!(
        text.contains("placement_traffic_weight_changes_total{direction=\"increase\",mode=\"applied\"} 1"),
        "{text}"
    );

    // Load falls to 1200: the law gives 2, but the cooldown (5 min) holds 16.
    set_metric("seed", "1200").await;
    patch_spec(&c, "aws-env", json!({"deadband": 1})).await;
    let s = wait_status(&c, "aws-env", "decrease held", |s| s["metricValue"] == "1200").await;
    assert_eq!((s["currentWeight"].clone(), s["desiredWeight"].clone()), (json!(16), json!(2)));
    assert!(s["lastReason"].as_str().unwrap().contains("held: cooldown until"), "{s:#}");
    assert_eq!(route53_weight(&zone, &name, "aws").await, 16);

    // A cooldown of 0: the decrease applies.
    patch_spec(&c, "aws-env", json!({"cooldown": "0s"})).await;
    wait_status(&c, "aws-env", "decrease applied", |s| s["currentWeight"] == 2).await;
    assert_eq!(route53_weight(&zone, &name, "aws").await, 2);
    assert_eq!(published(&c, "WeightChanged"), 2);
    eprintln!("README example end to end: {:?}", started.elapsed());
}

/// Dry run computes and reports, writes nothing, and says so once.
#[tokio::test]
async fn dry_run_reports_and_writes_nothing() {
    let prom = set_metric("dry", "3000").await;
    let (zone, name) = zone_with_records(1).await;
    let c = cluster().await;
    let mut tw = traffic_weight("dry", prom, "dry", route53_target(&zone, &name, "aws"));
    tw["spec"]["dryRun"] = json!(true);
    c.server.put(tw).unwrap();
    let s = wait_status(&c, "dry", "dry run evaluated", |s| s["desiredWeight"] == 16).await;
    assert_eq!(s["currentWeight"], 1);
    assert_eq!(condition(&s, "Ready")["reason"], "DryRun");
    assert!(s.get("lastChange").is_none_or(Value::is_null), "a dry run changes nothing: {s:#}");
    assert_eq!(route53_weight(&zone, &name, "aws").await, 1);
    // A second evaluation wanting the same: no second Event.
    patch_spec(&c, "dry", json!({"deadband": 1})).await;
    wait_status(&c, "dry", "second evaluation", |s| s["observedGeneration"] == 2).await;
    assert_eq!(published(&c, "WeightChangeDryRun"), 1);
    assert!(events(&c, "WeightChanged").is_empty());
    assert_eq!(route53_weight(&zone, &name, "aws").await, 1);
}

/// Prometheus down, NaN and an empty result: conditions and Events, never a weight change.
#[tokio::test]
async fn metric_failures_leave_the_weight_alone() {
    let prom = set_metric("nan", "NaN").await;
    let (zone, name) = zone_with_records(5).await;
    let c = cluster().await;
    c.server.put(traffic_weight("nan", prom, "nan", route53_target(&zone, &name, "aws"))).unwrap();
    let s = wait_status(&c, "nan", "NaN reported", |s| condition(s, "MetricAvailable")["status"] == "False").await;
    assert_eq!(condition(&s, "MetricAvailable")["reason"], "NotFinite");
    assert_eq!(condition(&s, "Ready")["reason"], "MetricUnavailable");
    assert!(condition(&s, "Ready")["message"].as_str().unwrap().starts_with("weight left unchanged"), "{s:#}");

    // Nothing matches: empty.
    patch_spec(&c, "nan", json!({"metric": {"prometheus": {"query": query("no-such-case")}}})).await;
    let s = wait_status(&c, "nan", "empty reported", |s| condition(s, "MetricAvailable")["reason"] == "Empty").await;
    assert!(condition(&s, "MetricAvailable")["message"].as_str().unwrap().contains("empty result"), "{s:#}");

    // Prometheus down: a port nothing listens on.
    let closed = format!("http://127.0.0.1:{}", common::prometheus::free_port().unwrap());
    patch_spec(&c, "nan", json!({"metric": {"prometheus": {"address": closed}}})).await;
    let s = wait_status(&c, "nan", "down reported", |s| condition(s, "MetricAvailable")["reason"] == "Connect").await;
    assert!(condition(&s, "MetricAvailable")["message"].as_str().unwrap().contains("cannot connect"), "{s:#}");
    assert_eq!(route53_weight(&zone, &name, "aws").await, 5, "the weight was never touched");
    assert!(s.get("currentWeight").is_none_or(Value::is_null), "never read: {s:#}");
    assert_eq!(published(&c, "MetricUnavailable"), 3, "one warning per distinct problem");
    let text = metrics_text(&c.registry);
    for class in ["not_finite", "empty", "connect"] {
        assert!(
            text.contains(&format!("placement_traffic_weight_errors_total{{stage=\"metric\",class=\"{class}\"}} 1")),
            "{class}: {text}"
        );
    }
}

/// A missing record, a missing Secret and an invalid spec are clear errors naming what is wrong.
#[tokio::test]
async fn missing_record_secret_and_invalid_spec() {
    let prom = set_metric("missing", "3000").await;
    let (zone, name) = zone_with_records(3).await;
    let c = cluster().await;
    c.server.put(traffic_weight("missing", prom, "missing", route53_target(&zone, &name, "gcp"))).unwrap();
    let s =
        wait_status(&c, "missing", "missing record", |s| condition(s, "TargetAvailable")["status"] == "False").await;
    let cond = condition(&s, "TargetAvailable");
    assert_eq!(cond["reason"], "NotFound");
    let message = cond["message"].as_str().unwrap();
    assert!(message.contains("SetIdentifier \"gcp\""), "{message}");
    assert!(
        message.contains("\"base\"") && message.contains("\"aws\""),
        "lists the SetIdentifiers that exist: {message}"
    );
    assert_eq!(condition(&s, "Ready")["reason"], "TargetUnavailable");
    assert_eq!(published(&c, "TargetUnavailable"), 1);

    let mut target = route53_target(&zone, &name, "aws");
    target["route53"]["credentialsSecretRef"]["name"] = json!("nope");
    patch_spec(&c, "missing", json!({"target": target})).await;
    let s =
        wait_status(&c, "missing", "missing Secret", |s| condition(s, "Ready")["reason"] == "SecretUnavailable").await;
    let message = condition(&s, "Ready")["message"].as_str().unwrap().to_string();
    assert!(message.contains("spec.target.route53.credentialsSecretRef: Secret traffic/nope not found"), "{message}");

    patch_spec(
        &c,
        "missing",
        json!({"schedules": [{"start": "22:00", "end": "06:00", "timeZone": "Mars/Olympus", "value": 1}]}),
    )
    .await;
    let s = wait_status(&c, "missing", "invalid spec", |s| condition(s, "Ready")["reason"] == "InvalidSpec").await;
    assert_eq!(condition(&s, "Ready")["message"], "spec.schedules[0].timeZone: unknown time zone \"Mars/Olympus\"");
    assert_eq!(route53_weight(&zone, &name, "aws").await, 3, "never written");
    assert_eq!(published(&c, "InvalidSpec"), 1);
}

/// An HTTPRoute backend: the weight follows the metric relative to the base backend, a schedule that
/// crosses midnight raises it, and a float edge case gives 1, not 2.
#[tokio::test]
async fn http_route_backend_weight_follows_the_metric() {
    let prom = set_metric("route", "3000").await;
    let c = cluster().await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": "stable", "port": 80, "weight": 10}, {"name": "canary", "port": 80, "weight": 0}]}]}});
    c.server.put(route).unwrap();
    let target = json!({"httpRoute": {"name": "web", "backendRefName": "canary", "baseBackendRefName": "stable"}});
    let mut tw = traffic_weight("canary", prom, "route", target);
    tw["spec"]["cooldown"] = json!("0s");
    c.server.put(tw).unwrap();
    let backends = || {
        let r = c.server.get("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "web").unwrap();
        r["spec"]["rules"][0]["backendRefs"].clone()
    };
    wait_status(&c, "canary", "weight 20", |s| s["currentWeight"] == 20).await;
    let b = backends();
    assert_eq!((b[0]["weight"].clone(), b[1]["weight"].clone()), (json!(10), json!(20)), "{b:#}");
    assert_eq!(b[1]["port"], 80, "other fields are kept");

    // 1100 against 1000 with base 10: exactly 1 (a float computation gives 2).
    set_metric("route", "1100").await;
    patch_spec(&c, "canary", json!({"deadband": 0, "interval": "11s"})).await;
    wait_status(&c, "canary", "weight 1", |s| s["currentWeight"] == 1).await;
    assert_eq!(backends()[1]["weight"], 1);

    // A window that contains now and crosses midnight (from 2 h ahead to 1 h ahead, 23 h long).
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let hhmm = |h: i64| now.checked_add(jiff::SignedDuration::from_hours(h)).unwrap().strftime("%H:%M").to_string();
    let schedule = json!([{"start": hhmm(2), "end": hhmm(1), "timeZone": "UTC", "value": 7}]);
    set_metric("route", "0").await;
    patch_spec(&c, "canary", json!({"schedules": schedule})).await;
    let s = wait_status(&c, "canary", "schedule minimum", |s| s["currentWeight"] == 7).await;
    assert_eq!((s["lawWeight"].clone(), s["activeSchedule"].clone()), (json!(0), json!(0)), "{s:#}");
    assert_eq!(backends()[1]["weight"], 7);
}

/// Route53 clamps at 255: a huge load gives 255, never more.
#[tokio::test]
async fn route53_weights_are_clamped_to_255() {
    let prom = set_metric("clamp", "1000000").await;
    let (zone, name) = zone_with_records(1).await;
    let c = cluster().await;
    c.server.put(traffic_weight("clamp", prom, "clamp", route53_target(&zone, &name, "aws"))).unwrap();
    let s = wait_status(&c, "clamp", "clamped", |s| s["currentWeight"] == 255).await;
    assert_eq!(s["lawWeight"], 255, "the law is capped at the range: {s:#}");
    assert_eq!(route53_weight(&zone, &name, "aws").await, 255);
}

/// A standby neither queries nor writes; it evaluates as soon as it becomes the leader.
#[tokio::test]
async fn only_the_leader_evaluates() {
    let prom = set_metric("standby", "3000").await;
    let (zone, name) = zone_with_records(1).await;
    let (lead, leadership) = Leadership::channel();
    let c = cluster_led_by(leadership).await;
    c.server.put(traffic_weight("standby", prom, "standby", route53_target(&zone, &name, "aws"))).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(status(&c, "standby").is_null(), "a standby wrote a status: {:#}", status(&c, "standby"));
    assert_eq!(route53_weight(&zone, &name, "aws").await, 1);
    lead.send(true).unwrap();
    wait_status(&c, "standby", "leader evaluates", |s| s["currentWeight"] == 16).await;
    assert_eq!(route53_weight(&zone, &name, "aws").await, 16);
}
