//! Issue 16's TrafficWeight rows, played as a tenant against the real `placement-operator run` binary:
//! the fake API server (through a kubeconfig), local listeners that record every request and header
//! they receive, the moto AWS emulator, and a Route53 stand-in whose listing never ends. Each test names
//! the row it replays and shows the bounded behaviour: what reaches no server, what the status says.
//! The last test runs the controller in process, to take leadership away in the middle of an evaluation.
//!
//! Every wait is bounded (`WAIT`); nothing asserts on durations.

mod common;

use common::moto::moto_url;
use common::recorder::{self, Recorder, Seen, scalar};
use placement_core::tracking::access::{AccessPolicy, CREDENTIALS_LABEL};
use placement_operator::traffic::status::MAX_MESSAGE_CHARS;
use placement_testkit::FakeApiServer;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const NS: &str = "traffic";
const WAIT: Duration = Duration::from_secs(40);

// ---- the cluster, the binary ----

/// The operator process and its log; `None` for the in-process tests, which have no log to show.
struct Operator(Option<(Child, std::path::PathBuf, tempfile::TempDir)>);

impl Operator {
    fn log(&self) -> String {
        self.0.as_ref().and_then(|(_, log, _)| std::fs::read_to_string(log).ok()).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some((child, _, _)) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn http_route_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
        "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
            "names": {"plural": "httproutes", "singular": "httproute", "kind": "HTTPRoute", "listKind": "HTTPRouteList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

async fn cluster(namespaces: &[&str]) -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    server.put(http_route_crd()).unwrap();
    for ns in ["placement-system"].iter().chain(namespaces) {
        server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).unwrap();
    }
    server
}

/// `placement-operator run` against `server`, with these extra flags and environment.
fn operator(server: &FakeApiServer, flags: &[String], env: &[(&str, &str)]) -> Operator {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let log = dir.path().join("stderr.log");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_placement-operator"));
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--probe-listen", &probe.to_string(), "--log-format", "text"])
        .args(flags)
        .env("PLACEMENT_LEASE_DURATION_SECONDS", "4")
        .env("PLACEMENT_LEASE_RENEW_SECONDS", "2")
        .env("POD_NAME", "placement-operator-tenant-test")
        .env("RUST_LOG", "info,placement_operator=debug")
        .env_remove("KUBECONFIG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        // No instance-metadata lookups from the default chain in a test.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    Operator(Some((cmd.spawn().unwrap(), log, dir)))
}

fn allow(entries: &[String]) -> Vec<String> {
    vec!["--traffic-allowed-endpoints".into(), entries.join(",")]
}

fn secret(server: &FakeApiServer, ns: &str, name: &str, opted_in: bool, data: Value) {
    let labels = if opted_in { json!({CREDENTIALS_LABEL: "true"}) } else { json!({"team": "shop"}) };
    server
        .put(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": labels}, "stringData": data}))
        .unwrap();
}

fn traffic_weight(ns: &str, name: &str, prometheus: Value, target: Value) -> Value {
    json!({"apiVersion": "placement.dev/v1alpha1", "kind": "TrafficWeight",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"interval": "10s", "cooldown": "5m", "policy": {"targetValue": 1000},
            "metric": {"prometheus": prometheus}, "target": target}})
}

fn prom(address: &str) -> Value {
    json!({"address": address, "query": "sum(rate(requests_total[5m])) * 60", "timeout": "5s"})
}

fn route_target() -> Value {
    json!({"httpRoute": {"name": "web", "backendRefName": "canary", "baseBackendRefName": "stable"}})
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == type_).cloned().unwrap_or(Value::Null)
}

/// Waits until the status of `ns/name` satisfies `ok`, then returns it; panics with the operator's log.
async fn wait_status(
    server: &FakeApiServer,
    op: &Operator,
    ns: &str,
    name: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let s = server.get("placement.dev/v1alpha1", "TrafficWeight", ns, name).map(|o| o["status"].clone());
        if let Some(s) = s.as_ref().filter(|s| ok(s)) {
            return s.clone();
        }
        assert!(
            started.elapsed() < WAIT,
            "{ns}/{name}: the status never came; last: {s:#?}\noperator log:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `ready(&recorder.seen())`.
async fn wait_seen(rec: &Recorder, op: &Operator, what: &str, ready: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let started = Instant::now();
    loop {
        let seen = rec.seen();
        if ready(&seen) {
            return seen;
        }
        assert!(started.elapsed() < WAIT, "{what}: never seen; seen {seen:#?}\noperator log:\n{}", op.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn not_allowed(s: &Value) -> Option<String> {
    let ready = condition(s, "Ready");
    (ready["status"] == "False" && ready["reason"] == "NotAllowed")
        .then(|| ready["message"].as_str().unwrap_or("").to_string())
}

fn events(server: &FakeApiServer, ns: &str) -> Vec<Value> {
    server.list("v1", "Event", Some(ns))
}

// ---- Route53 ----

async fn route53() -> aws_sdk_route53::Client {
    use placement_operator::traffic::route53::{ClientSettings, CredentialSource, StaticCredentials, sdk_client};
    let mut s = ClientSettings::new(CredentialSource::Static(StaticCredentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    }));
    s.endpoint_url = Some(moto_url());
    sdk_client(&s).await
}

static ZONES: AtomicU32 = AtomicU32::new(0);

/// A zone with weighted A records `base` (8) and `aws` (1); its id and the record name.
async fn zone() -> (String, String) {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    let r53 = route53().await;
    let n = ZONES.fetch_add(1, Ordering::SeqCst);
    let zone_name = format!("tenant{n}-{}.example.com.", std::process::id());
    let zone = r53.create_hosted_zone().name(&zone_name).caller_reference(&zone_name).send().await.unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().to_string();
    let mut batch = ChangeBatch::builder();
    for (id, weight, ip) in [("base", 8, "192.0.2.1"), ("aws", 1, "192.0.2.2")] {
        let rr = ResourceRecordSet::builder()
            .name(format!("api.{zone_name}"))
            .r#type(RrType::A)
            .set_identifier(id)
            .weight(weight)
            .ttl(60)
            .resource_records(ResourceRecord::builder().value(ip).build().unwrap())
            .build()
            .unwrap();
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

async fn weight(zone: &str, name: &str) -> i64 {
    let out = route53().await.list_resource_record_sets().hosted_zone_id(zone).send().await.unwrap();
    out.resource_record_sets()
        .iter()
        .find(|r| r.name() == name && r.set_identifier() == Some("aws"))
        .and_then(|r| r.weight())
        .unwrap_or(-1)
}

fn route53_target(zone: &str, name: &str, endpoint: &str, secret: Option<&str>) -> Value {
    let mut r = json!({"hostedZoneId": zone, "recordName": name, "recordType": "A", "setIdentifier": "aws",
        "baseSetIdentifier": "base", "region": "us-east-1", "endpoint": endpoint});
    if let Some(s) = secret {
        r["credentialsSecretRef"] = json!({"name": s});
    }
    json!({"route53": r})
}

fn aws_keys() -> Value {
    json!({"accessKeyId": "testing", "secretAccessKey": "testing"})
}

/// `http://127.0.0.1:PORT` of a URL on 127.0.0.1: the admin's explicit loopback entry for one server.
fn entry(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

// ---- the rows ----

/// Row: "a TrafficWeight with `bearerTokenSecretRef` naming any Secret in its namespace and `address:
/// http://anywhere` makes the operator send that Secret's value as `Authorization: Bearer` to the tenant's
/// host". Now the token leaves only from a Secret labelled for it, and only to an allowlisted address;
/// the listeners record every header they receive. Also: a Prometheus error body of 200,000 characters
/// reaches the status and Events cut to `MAX_MESSAGE_CHARS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_leaves_only_from_an_opted_in_secret_to_an_allowlisted_address() {
    let allowed = recorder::start(|seen| {
        if seen.path.starts_with("/huge/") {
            (500, "text/plain", "E".repeat(200_000))
        } else if seen.path.starts_with("/query-error/") {
            let error = "x".repeat(200_000);
            (422, "application/json", format!(r#"{{"status":"error","errorType":"execution","error":"{error}"}}"#))
        } else {
            scalar("3000")
        }
    })
    .await;
    let elsewhere = recorder::start(|_| scalar("3000")).await;
    let server = cluster(&[NS]).await;
    secret(&server, NS, "plain", false, json!({"token": "token-of-an-unlabelled-secret"}));
    secret(&server, NS, "opted", true, json!({"token": "token-opted-in"}));
    let op = operator(&server, &allow(&[entry(&allowed.url)]), &[]);

    let with_token = |path: &str, secret: &str| {
        let mut p = prom(&format!("{}{path}", allowed.url));
        p["bearerTokenSecretRef"] = json!({"name": secret, "key": "token"});
        p
    };
    server.put(traffic_weight(NS, "unlabelled", with_token("/unlabelled", "plain"), route_target())).unwrap();
    let mut outside = prom(&elsewhere.url);
    outside["bearerTokenSecretRef"] = json!({"name": "opted", "key": "token"});
    server.put(traffic_weight(NS, "elsewhere", outside, route_target())).unwrap();
    server.put(traffic_weight(NS, "opted", with_token("/opted", "opted"), route_target())).unwrap();
    server.put(traffic_weight(NS, "huge", prom(&format!("{}/huge", allowed.url)), route_target())).unwrap();
    server
        .put(traffic_weight(NS, "query-error", prom(&format!("{}/query-error", allowed.url)), route_target()))
        .unwrap();

    let s = wait_status(&server, &op, NS, "unlabelled", |s| not_allowed(s).is_some()).await;
    let message = not_allowed(&s).unwrap();
    assert!(
        message.contains("Secret traffic/plain is not labelled placement.dev/traffic-credentials=\"true\"")
            && message.contains("spec.metric.prometheus.bearerTokenSecretRef"),
        "{message}"
    );
    let s = wait_status(&server, &op, NS, "elsewhere", |s| not_allowed(s).is_some()).await;
    let message = not_allowed(&s).unwrap();
    assert!(message.contains(&format!("{} is not an allowed endpoint", elsewhere.url)), "{message}");
    assert!(
        events(&server, NS).iter().any(|e| e["reason"] == "NotAllowed" && e["type"] == "Warning"),
        "no NotAllowed Event: {:#?}",
        events(&server, NS)
    );

    // The opted-in Secret to the allowlisted address: the token is sent.
    let seen =
        wait_seen(&allowed, &op, "the opted-in query", |seen| seen.iter().any(|r| r.path.starts_with("/opted/"))).await;
    let opted = seen.iter().find(|r| r.path.starts_with("/opted/api/v1/query")).expect("the query path");
    assert_eq!(opted.header("authorization"), Some("Bearer token-opted-in"));

    // The bounded error bodies.
    for name in ["huge", "query-error"] {
        let s = wait_status(&server, &op, NS, name, |s| condition(s, "MetricAvailable")["status"] == "False").await;
        for c in s["conditions"].as_array().unwrap() {
            let n = c["message"].as_str().unwrap_or("").chars().count();
            assert!(n <= MAX_MESSAGE_CHARS, "{name}: condition {} has {n} characters", c["type"]);
        }
        assert!(condition(&s, "MetricAvailable")["message"].as_str().unwrap().contains('…'), "{s:#}");
    }
    for e in events(&server, NS) {
        let n = e["note"].as_str().unwrap_or("").chars().count();
        assert!(n <= MAX_MESSAGE_CHARS, "an Event note has {n} characters: {}", e["reason"]);
    }
    let log = op.log();
    assert!(!log.contains(&"E".repeat(MAX_MESSAGE_CHARS + 1)), "an error body reached the log uncut");

    // Nothing else was ever sent: no request for the unlabelled Secret's TrafficWeight, none to the
    // address outside the allowlist, and the unlabelled Secret's value nowhere.
    let seen = allowed.seen();
    assert!(!seen.iter().any(|r| r.path.starts_with("/unlabelled")), "{seen:#?}");
    assert!(elsewhere.seen().is_empty(), "{:#?}", elsewhere.seen());
    for r in &seen {
        match r.header("authorization") {
            None => assert!(!r.path.starts_with("/opted/"), "{r:?}"),
            Some(v) => assert!(v == "Bearer token-opted-in" && r.path.starts_with("/opted/"), "{r:?}"),
        }
    }
    assert!(!log.contains("token-of-an-unlabelled-secret") && !log.contains("token-opted-in"));
}

/// Row: "a TrafficWeight for Route53 without `credentialsSecretRef` makes the operator write with its
/// own AWS identity to any zone the spec names, and to any `endpoint` URL". The operator's identity here
/// is the default chain's environment credentials; only the namespace the admin listed gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_identity_is_used_only_in_listed_namespaces_and_only_at_allowlisted_endpoints() {
    let metric = recorder::start(|_| scalar("3000")).await;
    let foreign = recorder::start(|_| (500, "text/plain", "must not be reached".into())).await;
    let moto = moto_url();
    let (tenant_zone, tenant_name) = zone().await;
    let (listed_zone, listed_name) = zone().await;
    let server = cluster(&[NS, "dns"]).await;
    secret(&server, NS, "aws-opted", true, aws_keys());
    secret(&server, NS, "aws-plain", false, aws_keys());
    let mut flags = allow(&[entry(&moto), entry(&metric.url)]);
    flags.extend(["--traffic-default-credentials-namespaces".to_string(), "dns".to_string()]);
    let op = operator(&server, &flags, &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")]);

    let p = prom(&metric.url);
    server
        .put(traffic_weight(NS, "own-identity", p.clone(), route53_target(&tenant_zone, &tenant_name, &moto, None)))
        .unwrap();
    let unlabelled = route53_target(&tenant_zone, &tenant_name, &moto, Some("aws-plain"));
    server.put(traffic_weight(NS, "unlabelled", p.clone(), unlabelled)).unwrap();
    let foreign_endpoint = route53_target(&tenant_zone, &tenant_name, &foreign.url, Some("aws-opted"));
    server.put(traffic_weight(NS, "foreign-endpoint", p.clone(), foreign_endpoint)).unwrap();
    server.put(traffic_weight("dns", "listed", p, route53_target(&listed_zone, &listed_name, &moto, None))).unwrap();

    // The listed namespace: the operator's identity writes (metric 3000, target 1000, base 8: 16).
    wait_status(&server, &op, "dns", "listed", |s| s["currentWeight"] == 16).await;
    assert_eq!(weight(&listed_zone, &listed_name).await, 16);

    let s = wait_status(&server, &op, NS, "own-identity", |s| not_allowed(s).is_some()).await;
    let message = not_allowed(&s).unwrap();
    assert!(
        message.contains("spec.target.route53.credentialsSecretRef is not set")
            && message.contains("namespace \"traffic\" may not use the operator's own AWS identity"),
        "{message}"
    );
    let s = wait_status(&server, &op, NS, "unlabelled", |s| not_allowed(s).is_some()).await;
    assert!(not_allowed(&s).unwrap().contains("Secret traffic/aws-plain is not labelled"), "{s:#}");
    let s = wait_status(&server, &op, NS, "foreign-endpoint", |s| not_allowed(s).is_some()).await;
    let message = not_allowed(&s).unwrap();
    assert!(
        message.contains("spec.target.route53.endpoint") && message.contains("not an allowed endpoint"),
        "{message}"
    );

    // Nothing was written for the tenant, and the foreign endpoint heard nothing.
    assert_eq!(weight(&tenant_zone, &tenant_name).await, 1);
    assert!(foreign.seen().is_empty(), "{:#?}", foreign.seen());
}

/// The Route53 stand-in: every ListResourceRecordSets page is truncated and points to a next one that
/// is new, with records of the looked-up name and type but neither SetIdentifier; zone `ZHUGE` answers
/// an error whose message has 100,000 characters. Counts lists and changes.
async fn endless_route53(lists: Arc<AtomicU32>, changes: Arc<AtomicU32>) -> Recorder {
    recorder::start(move |seen| {
        if seen.method == "POST" {
            changes.fetch_add(1, Ordering::SeqCst);
            return (500, "text/xml", "<ErrorResponse><Error><Code>Unexpected</Code></Error></ErrorResponse>".into());
        }
        if seen.path.contains("/ZHUGE/") {
            let message = "m".repeat(100_000);
            return (
                400,
                "text/xml",
                format!(
                    "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
                     <Error><Type>Sender</Type><Code>InvalidInput</Code><Message>{message}</Message></Error>\
                     <RequestId>standin</RequestId></ErrorResponse>"
                ),
            );
        }
        let n = lists.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <ListResourceRecordSetsResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
             <ResourceRecordSets><ResourceRecordSet><Name>api.endless.example.com.</Name><Type>A</Type>\
             <SetIdentifier>other-{n}</SetIdentifier><Weight>1</Weight><TTL>60</TTL>\
             <ResourceRecords><ResourceRecord><Value>192.0.2.9</Value></ResourceRecord></ResourceRecords>\
             </ResourceRecordSet></ResourceRecordSets><IsTruncated>true</IsTruncated>\
             <NextRecordName>api.endless.example.com.</NextRecordName><NextRecordType>A</NextRecordType>\
             <NextRecordIdentifier>other-{}</NextRecordIdentifier><MaxItems>300</MaxItems>\
             </ListResourceRecordSetsResponse>",
            n + 1
        );
        (200, "text/xml", body)
    })
    .await
}

/// Issue 16: "Route53 listing has no page cap and no deadline per evaluation (an endpoint that answers
/// truncated pages for ever loops the leader until it runs out of memory)". With a cap of 7 pages the
/// evaluation ends in `TargetAvailable=False` (`Limit`) after 7 lists, and nothing is written; an AWS
/// error message of 100,000 characters reaches the status cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route53_listing_that_never_ends_stops_at_the_page_cap() {
    let metric = recorder::start(|_| scalar("3000")).await;
    let (lists, changes) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let standin = endless_route53(Arc::clone(&lists), Arc::clone(&changes)).await;
    let server = cluster(&[NS]).await;
    secret(&server, NS, "aws", true, aws_keys());
    let mut flags = allow(&[entry(&standin.url), entry(&metric.url)]);
    flags.extend(["--traffic-route53-max-pages".to_string(), "7".to_string()]);
    let op = operator(&server, &flags, &[]);
    let target = route53_target("ZENDLESS", "api.endless.example.com", &standin.url, Some("aws"));
    server.put(traffic_weight(NS, "endless", prom(&metric.url), target)).unwrap();
    let target = route53_target("ZHUGE", "api.endless.example.com", &standin.url, Some("aws"));
    server.put(traffic_weight(NS, "aws-error", prom(&metric.url), target)).unwrap();

    let s = wait_status(&server, &op, NS, "endless", |s| condition(s, "TargetAvailable")["status"] == "False").await;
    let target = condition(&s, "TargetAvailable");
    assert_eq!(target["reason"], "Limit", "{s:#}");
    assert!(target["message"].as_str().unwrap().contains("still truncated after 7 page(s)"), "{target:#}");
    let listed = lists.load(Ordering::SeqCst);
    assert!(listed >= 7, "{listed} lists");
    assert_eq!(changes.load(Ordering::SeqCst), 0, "a write was sent");

    let s = wait_status(&server, &op, NS, "aws-error", |s| condition(s, "TargetAvailable")["status"] == "False").await;
    let message = condition(&s, "TargetAvailable")["message"].as_str().unwrap().to_string();
    assert!(message.contains("InvalidInput") && message.chars().count() <= MAX_MESSAGE_CHARS, "{message}");
}

/// The same row, for time: a Route53 endpoint that never answers its first page ends the evaluation at
/// the listing deadline (1 s here), before the SDK's own 20 s attempt timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route53_listing_that_never_ends_stops_at_the_deadline() {
    let metric = recorder::start(|_| scalar("3000")).await;
    let (lists, changes) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let standin = endless_route53(Arc::clone(&lists), Arc::clone(&changes)).await;
    standin.hold(true);
    let server = cluster(&[NS]).await;
    secret(&server, NS, "aws", true, aws_keys());
    let mut flags = allow(&[entry(&standin.url), entry(&metric.url)]);
    flags.extend(["--traffic-route53-list-deadline-seconds".to_string(), "1".to_string()]);
    let op = operator(&server, &flags, &[]);
    let target = route53_target("ZSLOW", "api.endless.example.com", &standin.url, Some("aws"));
    server.put(traffic_weight(NS, "slow", prom(&metric.url), target)).unwrap();

    let s = wait_status(&server, &op, NS, "slow", |s| condition(s, "TargetAvailable")["status"] == "False").await;
    let target = condition(&s, "TargetAvailable");
    assert_eq!(target["reason"], "Limit", "{s:#}");
    assert!(target["message"].as_str().unwrap().contains("did not end within 1s (0 page(s) read)"), "{target:#}");
    assert_eq!(changes.load(Ordering::SeqCst), 0);
    standin.hold(false);
}

/// Row: "a TrafficWeight whose address is `http://169.254.169.254`, `127.0.0.1:PORT`, another tenant's
/// Prometheus is queried". Even with the admin's allowlist naming them, the metadata address and a name
/// that resolves to loopback are refused after resolution, before any connection; the listener behind
/// `localhost` hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_loopback_addresses_are_refused_after_resolution_even_when_allowlisted() {
    let behind_localhost = recorder::start(|_| scalar("3000")).await;
    let port = behind_localhost.addr.port();
    let server = cluster(&[NS]).await;
    let op = operator(&server, &allow(&["http://169.254.169.254".into(), format!("http://localhost:{port}")]), &[]);
    server
        .put(traffic_weight(NS, "metadata", prom("http://169.254.169.254/latest/meta-data"), route_target()))
        .unwrap();
    server.put(traffic_weight(NS, "localhost", prom(&format!("http://localhost:{port}")), route_target())).unwrap();

    let refused = |s: &Value| condition(s, "MetricAvailable")["reason"] == "Refused";
    let s = wait_status(&server, &op, NS, "metadata", refused).await;
    let message = condition(&s, "MetricAvailable")["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("resolves to 169.254.169.254, which is a cloud metadata address")
            && message.contains("refused before connecting"),
        "{message}"
    );
    let s = wait_status(&server, &op, NS, "localhost", refused).await;
    let message = condition(&s, "MetricAvailable")["message"].as_str().unwrap().to_string();
    assert!(message.contains("which is loopback") && message.contains("refused before connecting"), "{message}");
    assert!(behind_localhost.seen().is_empty(), "{:#?}", behind_localhost.seen());
}

/// The same row with no allowlist set: only in-cluster Services over https are allowed, so
/// `127.0.0.1:PORT` and a plain-http Service are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_allowlist_only_in_cluster_https_services_are_allowed() {
    let local = recorder::start(|_| scalar("3000")).await;
    let server = cluster(&[NS]).await;
    let op = operator(&server, &[], &[]);
    server.put(traffic_weight(NS, "loopback", prom(&local.url), route_target())).unwrap();
    let plain = prom("http://prometheus.other-tenant.svc:9090");
    server.put(traffic_weight(NS, "plain-http", plain, route_target())).unwrap();
    for name in ["loopback", "plain-http"] {
        let s = wait_status(&server, &op, NS, name, |s| not_allowed(s).is_some()).await;
        let message = not_allowed(&s).unwrap();
        assert!(
            message.contains("is not an allowed endpoint")
                && message.contains("https://*.svc, https://*.svc.cluster.local"),
            "{name}: {message}"
        );
    }
    assert!(local.seen().is_empty(), "{:#?}", local.seen());
    assert!(AccessPolicy::default().rules().len() == 2);
}

/// Issue 16: "an old TrafficWeight leader can still write after a failover (leadership is checked only
/// at the start)". In process, so leadership can be taken away at a chosen moment: the evaluation starts
/// as the leader, its Prometheus query is held, leadership is lost, the answer is released. The
/// evaluation then ends (its duration is observed) without writing the weight, the status or an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_loses_leadership_during_an_evaluation_writes_nothing() {
    use placement_operator::Leadership;
    use placement_operator::traffic::Options;

    let metric = recorder::start(|_| scalar("3000")).await;
    metric.hold(true);
    let (zone_id, name) = zone().await;
    let rules = vec![entry(&metric.url).parse().unwrap(), entry(&moto_url()).parse().unwrap()];
    let mut options = Options::default();
    options.connect.access = Arc::new(AccessPolicy::new(rules, Default::default()));
    let (lead, leadership) = Leadership::channel();
    lead.send(true).unwrap();
    let c = in_process(options, leadership).await;
    let (server, registry) = (&c.server, &c.registry);
    let target = route53_target(&zone_id, &name, &moto_url(), Some("aws"));
    server.put(traffic_weight(NS, "failover", prom(&metric.url), target)).unwrap();
    let started = Instant::now();
    while metric.seen().is_empty() {
        assert!(started.elapsed() < WAIT, "the evaluation never queried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A standby takes over while this instance waits for Prometheus.
    lead.send(false).unwrap();
    metric.hold(false);
    let evaluations = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find(|l| l.starts_with("placement_traffic_weight_evaluation_duration_seconds_count"))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let started = Instant::now();
    while evaluations() == 0 {
        assert!(started.elapsed() < WAIT, "the evaluation never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.controller.abort();
    assert_eq!(weight(&zone_id, &name).await, 1, "the old leader wrote the weight");
    let tw = server.get("placement.dev/v1alpha1", "TrafficWeight", NS, "failover").unwrap();
    assert!(tw["status"].is_null(), "the old leader wrote a status: {:#}", tw["status"]);
    assert!(events(server, NS).is_empty(), "the old leader published Events: {:#?}", events(server, NS));
}

/// The TrafficWeight controller in process, with `options`: the fake API server, the namespace and an
/// opted-in Secret `aws` with moto's keys.
struct InProcess {
    server: FakeApiServer,
    registry: prometheus_client::registry::Registry,
    controller: tokio::task::JoinHandle<()>,
    _watchers: placement_kube::live::Watchers,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

async fn in_process(
    options: placement_operator::traffic::Options,
    leadership: placement_operator::Leadership,
) -> InProcess {
    use placement_kube::live::{self, WatchOptions};
    use placement_operator::runtime::events::Events;
    let server = cluster(&[NS]).await;
    secret(&server, NS, "aws", true, aws_keys());
    let (index, watchers) = live::spawn(server.client(), WatchOptions::default());
    let ctx = placement_operator::Context {
        client: server.client(),
        eviction_client: server.client_without_retry(),
        index,
        events: Events::new(server.client(), "placement-operator", Some("in-process".into())),
        leadership,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let controller = tokio::spawn(placement_operator::traffic::controller_with(ctx, &mut registry, options));
    InProcess { server, registry, controller, _watchers: watchers }
}

/// A resolver that answers from a table: the injection point that makes a name resolve to the metadata
/// address without contacting it.
#[derive(Debug)]
struct Table(Vec<(&'static str, Vec<std::net::IpAddr>)>);

impl placement_operator::traffic::egress::Resolve for Table {
    fn resolve<'a>(&'a self, host: &'a str) -> futures::future::BoxFuture<'a, std::io::Result<Vec<std::net::IpAddr>>> {
        let found = self.0.iter().find(|(h, _)| *h == host).map(|(_, ips)| ips.clone());
        Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such host in the table")) })
    }
}

/// The same row through names: with `http://*.test` allowlisted, a Prometheus name that resolves to
/// 169.254.169.254, and one that resolves to a public address and to the metadata address (what a
/// rebinding DNS server answers), are refused before any connection; so is a Route53 `endpoint` whose
/// name resolves to the metadata address (the AWS SDK's resolver is the same check). The listener the
/// names would otherwise reach hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_resolve_to_refused_addresses_are_refused_for_prometheus_and_route53() {
    use placement_operator::Leadership;
    use placement_operator::traffic::Options;
    let listener = recorder::start(|_| scalar("3000")).await;
    let port = listener.addr.port();
    let metadata: std::net::IpAddr = "169.254.169.254".parse().unwrap();
    let table = Table(vec![
        ("metadata.test", vec![metadata]),
        ("rebinding.test", vec!["93.184.216.34".parse().unwrap(), metadata]),
        ("route53.test", vec![metadata]),
    ]);
    let mut options = Options::default();
    let rules = vec!["http://*.test".parse().unwrap(), entry(&listener.url).parse().unwrap()];
    options.connect.access = Arc::new(AccessPolicy::new(rules, Default::default()));
    options.connect.resolver = Arc::new(table);
    let c = in_process(options, Leadership::always()).await;
    let op = Operator(None);
    for name in ["metadata", "rebinding"] {
        let address = format!("http://{name}.test:{port}");
        c.server.put(traffic_weight(NS, name, prom(&address), route_target())).unwrap();
    }
    let endpoint = format!("http://route53.test:{port}");
    let target = route53_target("ZMETA", "api.example.com", &endpoint, Some("aws"));
    c.server.put(traffic_weight(NS, "route53-endpoint", prom(&listener.url), target)).unwrap();

    for name in ["metadata", "rebinding"] {
        let s = wait_status(&c.server, &op, NS, name, |s| condition(s, "MetricAvailable")["reason"] == "Refused").await;
        let message = condition(&s, "MetricAvailable")["message"].as_str().unwrap().to_string();
        assert!(message.contains("resolves to 169.254.169.254, which is a cloud metadata address"), "{message}");
    }
    let s =
        wait_status(&c.server, &op, NS, "route53-endpoint", |s| condition(s, "TargetAvailable")["status"] == "False")
            .await;
    let message = condition(&s, "TargetAvailable")["message"].as_str().unwrap().to_string();
    assert!(message.contains("169.254.169.254") && message.contains("refused before connecting"), "{message}");
    // Only the Route53 TrafficWeight's metric query reached the listener (its address is allowlisted
    // as an IP); nothing went to it through the refused names.
    let seen = listener.seen();
    assert!(seen.iter().all(|r| r.path.starts_with("/api/v1/query")), "{seen:#?}");
    assert!(seen.iter().all(|r| r.method == "GET"), "{seen:#?}");
}
