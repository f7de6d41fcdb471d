//! Fail-open for every review: whatever is wrong with a body, a body with a readable `request.uid` is
//! answered `allowed: true`, unmutated, echoing the uid, with one bounded warning naming what was wrong,
//! and the metrics count exactly that. A body without a readable uid is answered `allowed: true` with an
//! empty uid (the API server cannot match it and applies the webhook's failurePolicy).
//!
//! The two bodies found on 2026-12-07 (`testdata/fail_open/`: a pod with `containerPort: "80"`, and a
//! review with `operation: PATCH`) were answered `allowed: false`, code 400: the pod was rejected. They
//! are replayed here in process and through the real TLS server, and a pod with the string port is
//! created through the fake API server.

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_testkit::FakeApiServer;
use placement_webhook::admission::Admission;
use placement_webhook::decide::{Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use placement_webhook::review::MAX_WARNING_CHARS;
use prometheus_client::registry::Registry;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{certificates, register_webhook, start_webhook};

const STRATEGY: &str = "base=1,weight=1,nodeSelector=capacity:on-demand;weight=3,nodeSelector=capacity:spot";
/// Found 2026-12-07: a pod k8s-openapi cannot read (`containerPort` is a string).
const CONTAINER_PORT_STRING: &str = include_str!("../testdata/fail_open/container_port_string.json");
/// Found 2026-12-07: an operation the AdmissionReview API does not have.
const OPERATION_PATCH: &str = include_str!("../testdata/fail_open/operation_patch.json");

fn cluster() -> Vec<Value> {
    let node = |name: &str, capacity: &str| {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"capacity": capacity}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                       "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        node("od-a", "on-demand"),
        node("spot-b", "spot"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "annotations": {"placement.dev/strategy": STRATEGY}},
            "spec": {"replicas": 8, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-h1", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}]}}),
    ]
}

fn admission() -> (Admission, Registry) {
    let mut index = LiveIndex::new();
    for o in cluster() {
        match o["kind"].as_str().unwrap() {
            "Node" => index.apply_node(&serde_json::from_value(o).unwrap()),
            "Deployment" => index.apply_deployment(&serde_json::from_value(o).unwrap()),
            "ReplicaSet" => index.apply_replicaset(&serde_json::from_value(o).unwrap()),
            _ => {}
        }
    }
    let decider =
        Decider::new(SharedIndex::from_index(index), Arc::new(StaticRules::default()), Duration::from_secs(60));
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    (Admission::new(Arc::new(decider), metrics, Duration::from_secs(5)), registry)
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The samples of one metric family, without comments.
fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(family)).collect()
}

/// A valid pod CREATE review of a `web` pod, to be broken.
fn good() -> Value {
    let mut review: Value = serde_json::from_str(CONTAINER_PORT_STRING).unwrap();
    review["request"]["uid"] = json!("u-good");
    review["request"]["object"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(80);
    review
}

fn edit(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = good();
    f(&mut review);
    serde_json::to_vec(&review).unwrap()
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    /// The uid the answer echoes ("" when the body has none that can be read).
    uid: &'static str,
    /// `placement_webhook_admissions_total`'s outcome.
    outcome: &'static str,
    /// `placement_webhook_fail_open_total`'s reason, when it counts one.
    reason: Option<&'static str>,
    /// What the warning must say.
    warning: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |name, body, uid, outcome, reason, warning| Case { name, body, uid, outcome, reason, warning };
    vec![
        case(
            "found: containerPort \"80\"",
            CONTAINER_PORT_STRING.as_bytes().to_vec(),
            "7f3c2a10-5d1e-4c8b-9a61-2b7e0c4d9f01",
            "malformed",
            Some("object_not_pod"),
            "request.object.spec.containers[0].ports[0].containerPort",
        ),
        case(
            "found: operation PATCH",
            OPERATION_PATCH.as_bytes().to_vec(),
            "7f3c2a10-5d1e-4c8b-9a61-2b7e0c4d9f02",
            "malformed",
            Some("invalid_request"),
            "request.operation",
        ),
        case(
            "UPDATE of a pod",
            edit(|r| r["request"]["operation"] = json!("UPDATE")),
            "u-good",
            "ignored",
            None,
            "pods are placed only at CREATE; this request is a pod UPDATE",
        ),
        case(
            "DELETE of a pod",
            edit(|r| {
                r["request"]["operation"] = json!("DELETE");
                r["request"]["oldObject"] = r["request"]["object"].take();
            }),
            "u-good",
            "ignored",
            None,
            "a pod DELETE",
        ),
        case(
            "CONNECT to pods/exec",
            edit(|r| {
                r["request"]["operation"] = json!("CONNECT");
                r["request"]["subResource"] = json!("exec");
                r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "PodExecOptions"});
                r["request"]["object"] = json!({"kind": "PodExecOptions", "command": ["sh"]});
            }),
            "u-good",
            "ignored",
            None,
            "kind core/v1/PodExecOptions",
        ),
        case(
            "CREATE on a subresource",
            edit(|r| r["request"]["subResource"] = json!("ephemeralcontainers")),
            "u-good",
            "ignored",
            None,
            "the subresource pods/ephemeralcontainers",
        ),
        case(
            "a Deployment",
            edit(|r| {
                r["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
                r["request"]["resource"] = json!({"group": "apps", "version": "v1", "resource": "deployments"});
                r["request"]["object"] = json!({"spec": {"replicas": "many"}});
            }),
            "u-good",
            "ignored",
            None,
            "kind apps/v1/Deployment, resource apps/v1/deployments",
        ),
        case(
            "a Pod kind on another resource",
            edit(|r| r["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "podtemplates"})),
            "u-good",
            "ignored",
            None,
            "resource core/v1/podtemplates",
        ),
        case(
            "CREATE without an object",
            edit(|r| r["request"]["object"] = Value::Null),
            "u-good",
            "malformed",
            Some("missing_object"),
            "request.object is missing for a CREATE request",
        ),
        case(
            "object of another kind than the review says",
            edit(|r| r["request"]["object"]["kind"] = json!("Service")),
            "u-good",
            "malformed",
            Some("object_not_pod"),
            "not a core/v1 Pod",
        ),
        case(
            "v1beta1 envelope",
            edit(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            "u-good",
            "malformed",
            Some("wrong_api_version"),
            "admission.k8s.io/v1beta1",
        ),
        case(
            "no request.kind",
            edit(|r| {
                r["request"].as_object_mut().unwrap().remove("kind");
            }),
            "u-good",
            "malformed",
            Some("invalid_request"),
            "missing field `kind`",
        ),
        case(
            "a huge unknown operation",
            edit(|r| r["request"]["operation"] = json!("X".repeat(1 << 20))),
            "u-good",
            "malformed",
            Some("invalid_request"),
            "request.operation",
        ),
        case("not JSON", b"{\"request\": {\"uid\": \"u-".to_vec(), "", "no_uid", Some("not_json"), "not JSON"),
        case(
            "no request",
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(),
            "",
            "no_uid",
            Some("missing_request"),
            "no request object",
        ),
        case(
            "a numeric uid",
            edit(|r| r["request"]["uid"] = json!(7)),
            "",
            "no_uid",
            Some("invalid_uid"),
            "request.uid must be a string",
        ),
        case(
            "an empty uid in a dry run",
            edit(|r| {
                r["request"]["uid"] = json!("");
                r["request"]["dryRun"] = json!(true);
            }),
            "",
            "no_uid",
            Some("missing_uid"),
            "request.uid is missing or empty",
        ),
    ]
}

/// Checks one answer: allowed, unmutated, the uid, one bounded warning.
fn check_answer(name: &str, answer: &[u8], uid: &str, needle: &str) {
    let answer: Value = serde_json::from_slice(answer).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{name}");
    assert_eq!(answer["kind"], "AdmissionReview", "{name}");
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{name}: {response}");
    assert_eq!(response["uid"], uid, "{name}");
    for absent in ["patch", "patchType", "status"] {
        assert_eq!(response.get(absent), None, "{name}: {absent} in {response}");
    }
    let warnings = response["warnings"].as_array().unwrap_or_else(|| panic!("{name}: no warnings: {response}"));
    assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    assert!(warning.starts_with("placement: "), "{name}: {warning}");
    assert!(warning.contains(needle), "{name}: {warning:?} does not say {needle:?}");
    assert!(warning.chars().count() <= MAX_WARNING_CHARS, "{name}: {} chars", warning.chars().count());
}

#[test]
fn every_bad_review_is_admitted_unmutated_with_a_warning_and_counted_as_what_happened() {
    for Case { name, body, uid, outcome, reason, warning } in cases() {
        let (admission, registry) = admission();
        check_answer(name, &admission.review(&body), uid, warning);
        let text = metrics_text(&registry);
        let dry_run = name.contains("dry run");
        assert_eq!(
            samples(&text, "placement_webhook_admissions_total"),
            [format!(r#"placement_webhook_admissions_total{{rule="none",outcome="{outcome}",dry_run="{dry_run}"}} 1"#)],
            "{name}"
        );
        let want: Vec<String> =
            reason.map(|r| format!(r#"placement_webhook_fail_open_total{{reason="{r}"}} 1"#)).into_iter().collect();
        assert_eq!(samples(&text, "placement_webhook_fail_open_total"), want, "{name}");
        assert_eq!(admission.decider().index().read().ledger().len(), 0, "{name}: nothing reserved");
    }
}

#[test]
fn the_good_review_the_cases_break_is_placed() {
    let (admission, registry) = admission();
    let answer: Value = serde_json::from_slice(&admission.review(&serde_json::to_vec(&good()).unwrap())).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    let text = metrics_text(&registry);
    assert!(text.contains(r#"placement_webhook_admissions_total{rule="strategy",outcome="placed",dry_run="false"} 1"#));
}

#[tokio::test]
async fn the_found_inputs_are_admitted_by_the_async_path_too() {
    for (body, uid) in [
        (CONTAINER_PORT_STRING, "7f3c2a10-5d1e-4c8b-9a61-2b7e0c4d9f01"),
        (OPERATION_PATCH, "7f3c2a10-5d1e-4c8b-9a61-2b7e0c4d9f02"),
    ] {
        let (admission, _) = admission();
        check_answer(uid, &admission.review_async(body.as_bytes()).await, uid, "malformed AdmissionReview");
    }
}

/// POSTs `body` to the webhook's `/mutate` over TLS, trusting `cert_pem`: the status and the body.
async fn post_mutate(address: std::net::SocketAddr, cert_pem: &str, body: &[u8]) -> (http::StatusCode, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("/mutate?timeout=3s")
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::copy_from_slice(body)))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// A plain HTTP GET on the probe listener.
async fn get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_served_webhook_admits_every_bad_review_and_the_api_server_creates_the_pod() {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    for object in cluster() {
        fake.put(object).unwrap();
    }
    let (certs, cert_pem) = certificates();
    let webhook = start_webhook(&fake, certs.path(), |_| {}).await;

    // Every case, straight to /mutate over TLS: HTTP 200 and the same answer as in process.
    let cases = cases();
    for Case { name, body, uid, warning, .. } in &cases {
        let (status, answer) = post_mutate(webhook.address, &cert_pem, body).await;
        assert_eq!(status, http::StatusCode::OK, "{name}");
        check_answer(name, &answer, uid, warning);
    }
    let metrics = get(webhook.probe_address, "/metrics").await;
    for outcome in ["malformed", "ignored", "no_uid"] {
        let want = cases.iter().filter(|c| c.outcome == outcome && !c.name.contains("dry run")).count();
        let series =
            format!(r#"placement_webhook_admissions_total{{rule="none",outcome="{outcome}",dry_run="false"}} {want}"#);
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }

    // Through the API server, as the cluster that found it: the pod with the string port is created,
    // unmutated (it was rejected, 400).
    register_webhook(&fake, webhook.address.port(), &cert_pem);
    let found: Value = serde_json::from_str(CONTAINER_PORT_STRING).unwrap();
    let client = fake.client();
    let request = http::Request::post("/api/v1/namespaces/shop/pods")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&found["request"]["object"]).unwrap())
        .unwrap();
    let created: Value = client.request(request).await.expect("the pod is created, not rejected");
    assert_eq!(created["spec"]["containers"][0]["ports"][0]["containerPort"], "80");
    assert_eq!(created["spec"].get("nodeSelector"), None, "admitted unmutated: {created}");
    let metrics = get(webhook.probe_address, "/metrics").await;
    let posted = cases.iter().filter(|c| c.reason == Some("object_not_pod")).count();
    let series = format!(r#"placement_webhook_fail_open_total{{reason="object_not_pod"}} {}"#, posted + 1);
    assert!(metrics.contains(&series), "the posted ones and the one from the API server: {series} in {metrics}");
    webhook.shutdown().await;
}
