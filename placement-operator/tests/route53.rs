//! The Route53 actuator against a real AWS API emulator: `moto_server` on 127.0.0.1, started once per test
//! binary (install it with `pip install 'moto[server]'`; `.ci/run` does). Zones and records are created
//! with the SDK itself; every test uses its own hosted zone. Throttling is produced by a small HTTP proxy
//! in front of moto that answers `400 Throttling` (or `PriorRequestNotComplete`) a set number of times and
//! forwards everything else, counting requests, so the tests also see how many calls a write makes.
#![forbid(unsafe_code)]

mod common;

use common::moto::moto_url;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover,
    RrType,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use placement_operator::traffic::actuator::{Actuator, ActuatorError, Weights, WriteOutcome};
use placement_operator::traffic::route53::{
    ClientSettings, CredentialSource, RecordPager, RecordRef, RetryPolicy, Route53Actuator, StaticCredentials,
    sdk_client,
};

// ---------------------------------------------------------------------------------------------------------
// Helpers: clients, zones, records.

fn settings(url: &str) -> ClientSettings {
    let mut s = ClientSettings::new(CredentialSource::Static(StaticCredentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    }));
    s.region = Some("us-east-1".into());
    s.endpoint_url = Some(url.to_string());
    s
}

async fn client_for(url: &str) -> aws_sdk_route53::Client {
    sdk_client(&settings(url)).await
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, initial_delay: Duration::from_millis(20), max_delay: Duration::from_millis(100) }
}

static ZONES: AtomicU32 = AtomicU32::new(0);

/// A new hosted zone with a unique name; returns (zone id, zone name with trailing dot).
async fn new_zone(client: &aws_sdk_route53::Client) -> (String, String) {
    let n = ZONES.fetch_add(1, Ordering::SeqCst);
    let name = format!("z{n}-{}.example.com.", std::process::id());
    let out = client
        .create_hosted_zone()
        .name(&name)
        .caller_reference(format!("placement-test-{n}-{}", std::process::id()))
        .send()
        .await
        .expect("create hosted zone in moto");
    let id = out.hosted_zone().expect("zone in answer").id().to_string();
    (id, name)
}

fn weighted(name: &str, id: &str, weight: i64, ttl: i64, values: &[&str]) -> ResourceRecordSet {
    let mut b = ResourceRecordSet::builder().name(name).r#type(RrType::A).set_identifier(id).weight(weight).ttl(ttl);
    for v in values {
        b = b.resource_records(ResourceRecord::builder().value(*v).build().unwrap());
    }
    b.build().unwrap()
}

async fn upsert_all(client: &aws_sdk_route53::Client, zone: &str, records: Vec<ResourceRecordSet>) {
    let mut batch = ChangeBatch::builder();
    for r in records {
        batch = batch.changes(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(batch.build().unwrap())
        .send()
        .await
        .expect("upsert records in moto");
}

/// The record with this name, type A and SetIdentifier, as Route53 lists it now.
async fn get_record(client: &aws_sdk_route53::Client, zone: &str, name: &str, id: &str) -> ResourceRecordSet {
    let all = RecordPager::new(client, zone, None, 300, fast_retry(1)).collect_all().await.unwrap();
    all.into_iter()
        .find(|r| r.name.trim_end_matches('.') == name.trim_end_matches('.') && r.set_identifier.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("record {name} {id} not in zone {zone}"))
}

fn record_ref(zone: &str, name: &str, managed: &str, base: &str) -> RecordRef {
    RecordRef {
        hosted_zone_id: zone.to_string(),
        name: name.to_string(),
        record_type: "A".into(),
        set_identifier: managed.into(),
        base_set_identifier: base.into(),
    }
}

/// A zone with `app.<zone>` A records "canary" (weight 8, TTL 60, two values) and "stable" (weight 100).
async fn canary_zone(client: &aws_sdk_route53::Client) -> (String, String) {
    let (zone, zone_name) = new_zone(client).await;
    let name = format!("app.{zone_name}");
    upsert_all(
        client,
        &zone,
        vec![
            weighted(&name, "stable", 100, 300, &["10.0.0.1"]),
            weighted(&name, "canary", 8, 60, &["10.0.0.2", "10.0.0.3"]),
            ResourceRecordSet::builder()
                .name(format!("other.{zone_name}"))
                .r#type(RrType::A)
                .ttl(30)
                .resource_records(ResourceRecord::builder().value("10.9.9.9").build().unwrap())
                .build()
                .unwrap(),
        ],
    )
    .await;
    (zone, name)
}

// ---------------------------------------------------------------------------------------------------------
// A proxy in front of moto: throttles the first N matching requests, forwards the rest, counts them.

#[derive(Default)]
struct ProxyState {
    /// Requests still to refuse, and the code to refuse them with.
    throttle_left: AtomicU32,
    throttle_code: Mutex<String>,
    /// The HTTP status of refusals (400 when 0).
    refuse_status: std::sync::atomic::AtomicU16,
    /// Only requests with this method are throttled.
    throttle_method: Mutex<String>,
    /// ChangeResourceRecordSets calls seen (POST .../rrset), throttled or not.
    change_calls: AtomicU32,
    /// Every request seen.
    all_calls: AtomicU32,
}

async fn start_proxy(upstream: String, state: Arc<ProxyState>) -> String {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let state = state.clone();
            let client = client.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    let client = client.clone();
                    let upstream = upstream.clone();
                    async move { proxy_one(req, &state, &client, &upstream).await }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn proxy_one(
    req: hyper::Request<hyper::body::Incoming>,
    state: &ProxyState,
    client: &hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: &str,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    state.all_calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    if parts.method == hyper::Method::POST && parts.uri.path().ends_with("/rrset") {
        state.change_calls.fetch_add(1, Ordering::SeqCst);
    }
    let throttle = parts.method.as_str() == state.throttle_method.lock().unwrap().as_str()
        && state.throttle_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if throttle {
        let code = state.throttle_code.lock().unwrap().clone();
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
             <Error><Type>Sender</Type><Code>{code}</Code><Message>Rate exceeded</Message></Error>\
             <RequestId>proxy</RequestId></ErrorResponse>"
        );
        let status = match state.refuse_status.load(Ordering::SeqCst) {
            0 => 400,
            s => s,
        };
        return Ok(hyper::Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(xml)))
            .unwrap());
    }
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = hyper::Request::builder().method(parts.method.clone()).uri(format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        if k != hyper::header::HOST {
            out = out.header(k, v);
        }
    }
    let resp = match client.request(out.body(Full::new(body)).unwrap()).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(hyper::Response::builder().status(502).body(Full::new(Bytes::from(e.to_string()))).unwrap());
        }
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok(hyper::Response::from_parts(parts, Full::new(body)))
}

async fn proxy(throttles: u32, code: &str, method: &str) -> (String, Arc<ProxyState>) {
    let state = Arc::new(ProxyState::default());
    state.throttle_left.store(throttles, Ordering::SeqCst);
    *state.throttle_code.lock().unwrap() = code.to_string();
    *state.throttle_method.lock().unwrap() = method.to_string();
    let url = start_proxy(moto_url(), state.clone()).await;
    (url, state)
}

// ---------------------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn reads_the_managed_and_the_base_weight() {
    let client = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&client).await;
    // Name without trailing dot and in upper case, type in lower case, zone id with its prefix: all match.
    let mut r = record_ref(&zone, &name.trim_end_matches('.').to_ascii_uppercase(), "canary", "stable");
    r.record_type = "a".into();
    assert!(zone.starts_with("/hostedzone/"), "moto returns prefixed ids: {zone}");
    let act = Route53Actuator::new(client.clone(), &r).unwrap();
    assert_eq!(act.read().await.unwrap(), Weights { managed: 8, base: 100 });
    assert_eq!(act.weight_range(), 0..=255);

    // Swapped roles read the other way round: the weights come from Route53, not from the configuration.
    let act = Route53Actuator::new(client, &record_ref(&zone, &name, "stable", "canary")).unwrap();
    assert_eq!(act.read().await.unwrap(), Weights { managed: 100, base: 8 });
}

#[tokio::test]
async fn upsert_changes_only_the_weight_in_one_call() {
    let direct = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&direct).await;
    let before = get_record(&direct, &zone, &name, "canary").await;
    let stable_before = get_record(&direct, &zone, &name, "stable").await;

    let (url, state) = proxy(0, "Throttling", "POST").await;
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable")).unwrap();
    assert_eq!(act.write(16, false).await.unwrap(), WriteOutcome::Changed { from: 8, to: 16 });
    assert_eq!(state.change_calls.load(Ordering::SeqCst), 1, "one ChangeResourceRecordSets call per write");

    let after = get_record(&direct, &zone, &name, "canary").await;
    assert_eq!(after.weight, Some(16));
    let mut expected = before.clone();
    expected.weight = Some(16);
    assert_eq!(after, expected, "only the weight changed (TTL and values kept)");
    assert_eq!(after.ttl, Some(60));
    assert_eq!(after.resource_records().len(), 2);
    assert_eq!(get_record(&direct, &zone, &name, "stable").await, stable_before, "the base record is untouched");
    assert_eq!(act.read().await.unwrap(), Weights { managed: 16, base: 100 });

    // The same weight again sends nothing.
    assert_eq!(act.write(16, false).await.unwrap(), WriteOutcome::Unchanged { weight: 16 });
    assert_eq!(state.change_calls.load(Ordering::SeqCst), 1);

    // Down to 0 (a valid Route53 weight) and back.
    assert_eq!(act.write(0, false).await.unwrap(), WriteOutcome::Changed { from: 16, to: 0 });
    assert_eq!(act.read().await.unwrap(), Weights { managed: 0, base: 100 });
    assert_eq!(act.write(255, false).await.unwrap(), WriteOutcome::Changed { from: 0, to: 255 });
    assert_eq!(act.read().await.unwrap().managed, 255);
}

#[tokio::test]
async fn upsert_keeps_alias_target_and_health_check() {
    let client = client_for(&moto_url()).await;
    let (zone, zone_name) = new_zone(&client).await;
    let name = format!("www.{zone_name}");
    let zone_bare = zone.trim_start_matches("/hostedzone/").to_string();
    let alias = ResourceRecordSet::builder()
        .name(&name)
        .r#type(RrType::A)
        .set_identifier("blue")
        .weight(5)
        .health_check_id("11111111-2222-3333-4444-555555555555")
        .alias_target(
            AliasTarget::builder()
                .hosted_zone_id(&zone_bare)
                .dns_name(format!("other.{zone_name}"))
                .evaluate_target_health(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    upsert_all(&client, &zone, vec![alias, weighted(&name, "green", 50, 60, &["10.1.1.1"])]).await;
    let before = get_record(&client, &zone, &name, "blue").await;
    assert!(before.alias_target.is_some() && before.health_check_id.is_some(), "moto kept them: {before:?}");

    let act = Route53Actuator::new(client.clone(), &record_ref(&zone, &name, "blue", "green")).unwrap();
    assert_eq!(act.write(7, false).await.unwrap(), WriteOutcome::Changed { from: 5, to: 7 });
    let mut expected = before;
    expected.weight = Some(7);
    assert_eq!(get_record(&client, &zone, &name, "blue").await, expected);
}

#[tokio::test]
async fn a_missing_record_is_a_clear_error() {
    let client = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&client).await;
    let zone_bare = zone.trim_start_matches("/hostedzone/");
    let missing = name.replace("app.", "nope.");
    let act = Route53Actuator::new(client.clone(), &record_ref(&zone, &missing, "canary", "stable")).unwrap();
    for err in [act.read().await.unwrap_err(), act.write(10, false).await.unwrap_err()] {
        assert_eq!(err.metric_label(), "not_found", "{err}");
        let msg = err.to_string();
        for part in [zone_bare, missing.as_str(), " A ", "\"canary\"", "no record with this name and type"] {
            assert!(msg.contains(part), "{msg:?} should name {part:?}");
        }
    }
    // Same name, other type.
    let mut r = record_ref(&zone, &name, "canary", "stable");
    r.record_type = "AAAA".into();
    let err = Route53Actuator::new(client.clone(), &r).unwrap().read().await.unwrap_err();
    assert_eq!(err.metric_label(), "not_found", "{err}");
    assert!(err.to_string().contains("AAAA"), "{err}");
}

#[tokio::test]
async fn a_wrong_set_identifier_lists_the_ones_that_exist() {
    let client = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&client).await;
    let act = Route53Actuator::new(client.clone(), &record_ref(&zone, &name, "Canary", "stable")).unwrap();
    let err = act.read().await.unwrap_err();
    assert_eq!(err.metric_label(), "not_found", "{err}");
    let msg = err.to_string();
    assert!(msg.contains("\"Canary\""), "{msg}");
    assert!(msg.contains("\"canary\"") && msg.contains("\"stable\""), "the existing identifiers are listed: {msg}");
    // A wrong base identifier is reported as such.
    let act = Route53Actuator::new(client, &record_ref(&zone, &name, "canary", "stabel")).unwrap();
    let err = act.read().await.unwrap_err();
    assert!(err.to_string().contains("\"stabel\""), "{err}");
}

#[tokio::test]
async fn a_record_without_weight_is_not_weighted() {
    let client = client_for(&moto_url()).await;
    let (zone, zone_name) = new_zone(&client).await;
    let name = format!("fo.{zone_name}");
    let failover = |id: &str, role: ResourceRecordSetFailover, ip: &str| {
        ResourceRecordSet::builder()
            .name(&name)
            .r#type(RrType::A)
            .set_identifier(id)
            .failover(role)
            .ttl(60)
            .resource_records(ResourceRecord::builder().value(ip).build().unwrap())
            .build()
            .unwrap()
    };
    upsert_all(
        &client,
        &zone,
        vec![
            failover("primary", ResourceRecordSetFailover::Primary, "10.0.0.1"),
            failover("secondary", ResourceRecordSetFailover::Secondary, "10.0.0.2"),
        ],
    )
    .await;
    let act = Route53Actuator::new(client.clone(), &record_ref(&zone, &name, "primary", "secondary")).unwrap();
    let err = act.read().await.unwrap_err();
    assert_eq!(err.metric_label(), "not_weighted", "{err}");
    assert!(err.to_string().contains("\"primary\"") && err.to_string().contains("not a weighted"), "{err}");
    let err = act.write(3, false).await.unwrap_err();
    assert_eq!(err.metric_label(), "not_weighted", "{err}");
    assert_eq!(get_record(&client, &zone, &name, "primary").await.weight, None, "nothing was written");
}

#[tokio::test]
async fn weights_outside_0_to_255_are_rejected_without_a_call() {
    let direct = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&direct).await;
    let (url, state) = proxy(0, "Throttling", "POST").await;
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable")).unwrap();
    for w in [256, 1000, u32::MAX] {
        let err = act.write(w, false).await.unwrap_err();
        assert_eq!(err.metric_label(), "invalid_weight", "{err}");
        assert!(err.to_string().contains(&format!("weight {w} is outside 0..=255")), "{err}");
    }
    assert_eq!(state.all_calls.load(Ordering::SeqCst), 0, "no request for an invalid weight");
    assert_eq!(get_record(&direct, &zone, &name, "canary").await.weight, Some(8));
}

#[tokio::test]
async fn invalid_configuration_is_rejected_up_front() {
    let client = client_for(&moto_url()).await;
    let ok = record_ref("/hostedzone/Z1", "a.example.com", "x", "y");
    assert!(Route53Actuator::new(client.clone(), &ok).is_ok());
    let bad = [
        RecordRef { record_type: "AX".into(), ..ok.clone() },
        RecordRef { base_set_identifier: "x".into(), ..ok.clone() },
        RecordRef { set_identifier: String::new(), ..ok.clone() },
        RecordRef { name: ".".into(), ..ok.clone() },
        RecordRef { hosted_zone_id: "a/b".into(), ..ok.clone() },
    ];
    for r in bad {
        match Route53Actuator::new(client.clone(), &r) {
            Err(e) => assert_eq!(e.metric_label(), "invalid", "{e}"),
            Ok(_) => panic!("accepted {r:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_hosted_zone_is_not_found() {
    let client = client_for(&moto_url()).await;
    let act = Route53Actuator::new(client, &record_ref("ZNOSUCHZONE", "a.example.com", "x", "y")).unwrap();
    let err = act.read().await.unwrap_err();
    assert_eq!(err.metric_label(), "not_found", "{err}");
    assert!(err.to_string().contains("ZNOSUCHZONE"), "{err}");
}

#[tokio::test]
async fn paging_reads_every_record_once() {
    let client = client_for(&moto_url()).await;
    let (zone, zone_name) = new_zone(&client).await;
    let records: Vec<_> =
        (0..400).map(|i| weighted(&format!("r{i:03}.{zone_name}"), "w", 1, 60, &["10.0.0.1"])).collect();
    upsert_all(&client, &zone, records).await;
    let mut pager = RecordPager::new(&client, &zone, None, 100, fast_retry(1));
    let all = pager.collect_all().await.unwrap();
    // 400 records plus the zone's SOA and NS.
    assert_eq!(all.len(), 402);
    assert_eq!(pager.pages(), 5);
    assert!(!pager.stopped_on_repeated_token());
    let mut keys: Vec<_> = all.iter().map(|r| (r.name.clone(), r.r#type.as_str().to_string())).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 402, "no record listed twice");

    // The actuator finds a record past the first 300 records of the zone (listing starts at its name).
    let name = format!("r399.{zone_name}");
    upsert_all(&client, &zone, vec![weighted(&name, "base", 30, 60, &["10.0.0.2"])]).await;
    let act = Route53Actuator::new(client, &record_ref(&zone, &name, "w", "base")).unwrap().with_page_size(100);
    assert_eq!(act.read().await.unwrap(), Weights { managed: 1, base: 30 });
}

#[tokio::test]
async fn paging_stops_on_a_repeated_token() {
    // 150 weighted records with one name and type, pages of 100: real Route53 returns
    // NextRecordIdentifier for the second page; moto does not and ignores StartRecordIdentifier, so its
    // second page would be the first one again. The pager must stop, and the actuator must say why.
    let client = client_for(&moto_url()).await;
    let (zone, zone_name) = new_zone(&client).await;
    let name = format!("many.{zone_name}");
    let records: Vec<_> = (0..150).map(|i| weighted(&name, &format!("s{i:03}"), 1, 60, &["10.0.0.1"])).collect();
    upsert_all(&client, &zone, records).await;

    let mut pager = RecordPager::new(&client, &zone, Some((&name, Some("A"))), 100, fast_retry(1));
    let listed = tokio::time::timeout(Duration::from_secs(30), pager.collect_all()).await.expect("pager ended");
    assert_eq!(listed.unwrap().len(), 100);
    assert!(pager.stopped_on_repeated_token());
    assert_eq!(pager.pages(), 1);

    // Within the first page: found.
    let act =
        Route53Actuator::new(client.clone(), &record_ref(&zone, &name, "s010", "s020")).unwrap().with_page_size(100);
    assert_eq!(act.read().await.unwrap(), Weights { managed: 1, base: 1 });
    // Beyond it (unreachable in moto): a not-found error that says the listing was cut short.
    let act = Route53Actuator::new(client, &record_ref(&zone, &name, "s120", "s020")).unwrap().with_page_size(100);
    let err = act.read().await.unwrap_err();
    assert_eq!(err.metric_label(), "not_found", "{err}");
    assert!(err.to_string().contains("same page token twice"), "{err}");
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let direct = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&direct).await;
    let (url, state) = proxy(2, "Throttling", "POST").await;
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable"))
        .unwrap()
        .with_retry_policy(RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        });
    let started = Instant::now();
    assert_eq!(act.write(16, false).await.unwrap(), WriteOutcome::Changed { from: 8, to: 16 });
    assert!(started.elapsed() >= Duration::from_millis(300), "waited 100 + 200 ms: {:?}", started.elapsed());
    assert_eq!(state.change_calls.load(Ordering::SeqCst), 3, "two refused, the third forwarded");
    assert_eq!(get_record(&direct, &zone, &name, "canary").await.weight, Some(16));

    // Reads are retried too (ListResourceRecordSets is a GET).
    let (url, state) = proxy(2, "PriorRequestNotComplete", "GET").await;
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable"))
        .unwrap()
        .with_retry_policy(fast_retry(3));
    assert_eq!(act.read().await.unwrap(), Weights { managed: 16, base: 100 });
    assert_eq!(state.all_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn throttling_gives_up_after_the_allowed_attempts() {
    let direct = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&direct).await;
    let (url, state) = proxy(100, "PriorRequestNotComplete", "POST").await;
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable"))
        .unwrap()
        .with_retry_policy(fast_retry(3));
    let err = act.write(16, false).await.unwrap_err();
    assert_eq!(err.metric_label(), "throttled", "{err}");
    assert!(
        matches!(&err, ActuatorError::Throttled { attempts: 3, code, .. } if code == "PriorRequestNotComplete"),
        "{err:?}"
    );
    assert_eq!(state.change_calls.load(Ordering::SeqCst), 3);
    assert_eq!(get_record(&direct, &zone, &name, "canary").await.weight, Some(8), "nothing written");
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let direct = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&direct).await;
    let (url, state) = proxy(0, "Throttling", "POST").await;
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable")).unwrap();
    assert_eq!(act.write(20, true).await.unwrap(), WriteOutcome::DryRun { from: 8, to: 20 });
    assert_eq!(state.change_calls.load(Ordering::SeqCst), 0, "no ChangeResourceRecordSets in a dry run");
    assert_eq!(get_record(&direct, &zone, &name, "canary").await.weight, Some(8));
    // A dry run still reports a missing record.
    let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "gone", "stable")).unwrap();
    assert_eq!(act.write(20, true).await.unwrap_err().metric_label(), "not_found");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transport_error() {
    // A port nothing listens on (bound, then closed).
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = client_for(&format!("http://127.0.0.1:{port}")).await;
    let act = Route53Actuator::new(client, &record_ref("Z1", "a.example.com", "x", "y")).unwrap();
    let err = act.read().await.unwrap_err();
    assert_eq!(err.metric_label(), "transport", "{err}");
}

#[tokio::test]
async fn other_api_errors_are_classified_and_not_retried() {
    let direct = client_for(&moto_url()).await;
    let (zone, name) = canary_zone(&direct).await;
    let cases = [
        ("AccessDenied", 403, "GET", "auth"),
        ("SignatureDoesNotMatch", 403, "GET", "auth"),
        ("InvalidChangeBatch", 400, "POST", "invalid"),
        ("ServiceUnavailable", 503, "POST", "api"),
    ];
    for (code, status, method, label) in cases {
        let (url, state) = proxy(100, code, method).await;
        state.refuse_status.store(status, Ordering::SeqCst);
        let act = Route53Actuator::new(client_for(&url).await, &record_ref(&zone, &name, "canary", "stable"))
            .unwrap()
            .with_retry_policy(fast_retry(5));
        let err = act.write(9, false).await.unwrap_err();
        assert_eq!(err.metric_label(), label, "{code}: {err}");
        assert!(err.to_string().contains(code), "{err}");
        // One refused call, no retry: a GET refusal stops the lookup, a POST refusal the write.
        let refused = if method == "GET" {
            state.all_calls.load(Ordering::SeqCst)
        } else {
            state.change_calls.load(Ordering::SeqCst)
        };
        assert_eq!(refused, 1, "{code} is not retried");
    }
    assert_eq!(get_record(&direct, &zone, &name, "canary").await.weight, Some(8));
}
