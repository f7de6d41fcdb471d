//! The fake API server's mutating-admission step, driven with the real kube client against a test
//! webhook served over real TLS (tokio-rustls, ring, a certificate made by rcgen).

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use placement_testkit::{FakeApiServer, FakeConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bound for any single API call of these tests.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

const WEBHOOK_SVC: &str = "webhook.placement-system.svc";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// What the test webhook answers to one call.
struct Reply {
    status: u16,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn json(v: Value) -> Self {
        Reply { status: 200, body: serde_json::to_vec(&v).unwrap(), delay: Duration::ZERO }
    }

    fn http(status: u16, body: &str) -> Self {
        Reply { status, body: body.as_bytes().to_vec(), delay: Duration::ZERO }
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// One request the test webhook received.
#[derive(Clone, Debug)]
struct Seen {
    path_and_query: String,
    content_type: String,
    review: Value,
}

/// A test admission webhook served over HTTPS on 127.0.0.1.
struct Webhook {
    address: SocketAddr,
    /// PEM of the (self-signed) serving certificate: the CA bundle to trust it.
    ca_pem: String,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A self-signed certificate for `names`: (PEM, DER, PKCS#8 key DER).
fn certificate(names: &[&str]) -> (String, CertificateDer<'static>, Vec<u8>) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    (ck.cert.pem(), ck.cert.der().clone(), ck.signing_key.serialize_der())
}

impl Webhook {
    /// Serves `handler` over TLS with a certificate valid for `names`.
    async fn start(names: &[&str], handler: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Webhook {
        let (ca_pem, cert, key) = certificate(names);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let (c, s) = (calls.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, handler, calls, seen) = (acceptor.clone(), handler.clone(), c.clone(), s.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate fails the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let (handler, calls, seen) = (handler.clone(), calls.clone(), seen.clone());
                        async move { Ok::<_, Infallible>(serve(req, &*handler, &calls, &seen).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Webhook { address, ca_pem, calls, seen, task }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `clientConfig` that reaches this webhook by URL (`https://localhost:PORT/mutate`).
    fn url_config(&self) -> Value {
        json!({"url": format!("https://localhost:{}/mutate", self.address.port()), "caBundle": b64(&self.ca_pem)})
    }

    /// `clientConfig` that reaches this webhook as the service `placement-system/webhook` (the fake must
    /// map it: [`Webhook::services`]).
    fn service_config(&self) -> Value {
        json!({"service": {"namespace": "placement-system", "name": "webhook", "path": "/mutate"}, "caBundle": b64(&self.ca_pem)})
    }

    fn services(&self) -> HashMap<String, String> {
        HashMap::from([("placement-system/webhook".to_string(), self.address.to_string())])
    }
}

async fn serve(
    req: http::Request<Incoming>,
    handler: &(dyn Fn(&Value) -> Reply + Send + Sync),
    calls: &AtomicUsize,
    seen: &Mutex<Vec<Seen>>,
) -> http::Response<Full<Bytes>> {
    calls.fetch_add(1, Ordering::SeqCst);
    let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let content_type =
        req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let reply = match serde_json::from_slice::<Value>(&body) {
        Ok(review) => {
            seen.lock().unwrap().push(Seen { path_and_query, content_type, review: review.clone() });
            handler(&review)
        }
        Err(e) => Reply::http(400, &format!("not JSON: {e}")),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = http::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn uid(review: &Value) -> Value {
    review["request"]["uid"].clone()
}

/// An AdmissionReview answer for `review` with the given `response` fields (uid echoed).
fn answer(review: &Value, response: Value) -> Value {
    let mut r = json!({"uid": uid(review), "allowed": true});
    r.as_object_mut().unwrap().extend(response.as_object().unwrap().clone());
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

fn allow(review: &Value) -> Reply {
    Reply::json(answer(review, json!({})))
}

/// Allows with a JSON Patch, base64-encoded as the API server expects.
fn patch(review: &Value, ops: Value) -> Reply {
    Reply::json(answer(review, json!({"patchType": "JSONPatch", "patch": b64(ops.to_string())})))
}

/// A JSON Patch that adds the annotation `placement.dev/mutated: <by>` to an object without annotations.
fn annotate(by: &str) -> Value {
    json!([{"op": "add", "path": "/metadata/annotations", "value": {"placement.dev/mutated": by}}])
}

/// A webhook entry for pod CREATE with the defaults of these tests (Fail, sideEffects None, 5 s).
fn hook(name: &str, client_config: Value) -> Value {
    json!({
        "name": name,
        "clientConfig": client_config,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    })
}

/// Creates a `MutatingWebhookConfiguration` through the kube client.
async fn install(client: &kube::Client, name: &str, webhooks: Vec<Value>) {
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": webhooks,
    }))
    .unwrap();
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.create(&PostParams::default(), &config).await.unwrap();
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }))
    .unwrap()
}

async fn create(api: &Api<Pod>, pp: &PostParams, pod: &Pod) -> kube::Result<Pod> {
    tokio::time::timeout(CALL_TIMEOUT, api.create(pp, pod)).await.expect("the create call finishes in time")
}

fn stored(server: &FakeApiServer, ns: &str, name: &str) -> Option<Value> {
    server.get("v1", "Pod", ns, name)
}

#[derive(Clone, Copy, Debug)]
enum Reach {
    /// `https://localhost:PORT/mutate`
    Url,
    /// `https://127.0.0.1:PORT/mutate`, the certificate valid for that IP address.
    IpUrl,
    /// `placement-system/webhook`, mapped by the fake's configuration.
    Service,
}

/// Starts the fake with the service mapping the webhook needs.
async fn fake_for(webhook: &Webhook) -> FakeApiServer {
    FakeApiServer::start_with(FakeConfig { services: webhook.services(), ..FakeConfig::default() }).await.unwrap()
}

fn client_config(webhook: &Webhook, reach: Reach) -> Value {
    match reach {
        Reach::Url => webhook.url_config(),
        Reach::IpUrl => json!({"url": format!("https://{}/mutate", webhook.address), "caBundle": b64(&webhook.ca_pem)}),
        Reach::Service => webhook.service_config(),
    }
}

#[tokio::test]
async fn create_sends_an_admission_review_and_applies_the_patch() {
    for reach in [Reach::Url, Reach::IpUrl, Reach::Service] {
        let names: &[&str] = match reach {
            Reach::Url => &["localhost"],
            Reach::IpUrl => &["127.0.0.1"],
            Reach::Service => &[WEBHOOK_SVC],
        };
        let webhook = Webhook::start(names, |review| {
            let ops = json!([
                {"op": "add", "path": "/spec/nodeSelector", "value": {"topology.kubernetes.io/zone": "zone-a"}},
                {"op": "add", "path": "/metadata/annotations", "value": {"placement.dev/zone": "zone-a"}},
            ]);
            Reply::json(answer(
                review,
                json!({"patchType": "JSONPatch", "patch": b64(ops.to_string()),
                       "warnings": ["placement: pinned to zone-a", "second \"quoted\" warning"]}),
            ))
        })
        .await;
        let server = fake_for(&webhook).await;
        let client = server.client_without_retry();
        install(&client, "placement", vec![hook("zone.placement.dev", client_config(&webhook, reach))]).await;
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");

        let created = create(&api, &PostParams::default(), &pod("web-1", json!({"app": "web"}))).await.unwrap();
        let zone = created.spec.as_ref().unwrap().node_selector.as_ref().unwrap().get("topology.kubernetes.io/zone");
        assert_eq!(zone.map(String::as_str), Some("zone-a"), "{reach:?}");
        assert_eq!(created.metadata.annotations.as_ref().unwrap()["placement.dev/zone"], "zone-a", "{reach:?}");
        let kept = stored(&server, "default", "web-1").expect("the mutated pod is stored");
        assert_eq!(kept["spec"]["nodeSelector"]["topology.kubernetes.io/zone"], "zone-a");
        assert_eq!(kept["metadata"]["annotations"]["placement.dev/zone"], "zone-a");
        assert_eq!(webhook.calls(), 1, "{reach:?}");

        // The AdmissionReview the webhook got.
        let seen = webhook.seen();
        let call = &seen[0];
        assert!(call.path_and_query.starts_with("/mutate?timeout=5s"), "{reach:?}: {}", call.path_and_query);
        assert!(call.content_type.starts_with("application/json"), "{}", call.content_type);
        let review = &call.review;
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        let request = &review["request"];
        assert!(request["uid"].as_str().is_some_and(|u| !u.is_empty()), "{request}");
        assert_eq!(request["kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(request["resource"], json!({"group": "", "version": "v1", "resource": "pods"}));
        assert_eq!(request["requestKind"], request["kind"]);
        assert_eq!(request["operation"], "CREATE");
        assert_eq!(request["namespace"], "default");
        assert_eq!(request["name"], "web-1");
        assert_eq!(request["dryRun"], false);
        assert_eq!(request["object"]["metadata"]["name"], "web-1");
        assert_eq!(request["object"]["metadata"]["labels"]["app"], "web");
        assert_eq!(request["object"]["spec"]["containers"][0]["image"], "registry.example/app:1");
        assert!(
            request["object"]["spec"].get("nodeSelector").is_none(),
            "the webhook sees the object before its patch"
        );
        assert!(request["oldObject"].is_null());
        // kube-core's own types read it as well.
        let typed: AdmissionReview<DynamicObject> = serde_json::from_value(review.clone()).unwrap();
        let typed: AdmissionRequest<DynamicObject> = typed.try_into().unwrap();
        assert_eq!(typed.operation, Operation::Create);
        assert!(!typed.dry_run);
        assert_eq!(typed.namespace.as_deref(), Some("default"));
        assert_eq!(typed.object.unwrap().metadata.name.as_deref(), Some("web-1"));

        // kube does not surface Warning headers: read them from a raw request sent by the same client.
        let body = serde_json::to_vec(&pod("web-2", json!({"app": "web"}))).unwrap();
        let request = http::Request::post("/api/v1/namespaces/default/pods")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(body))
            .unwrap();
        let response = tokio::time::timeout(CALL_TIMEOUT, client.send(request)).await.unwrap().unwrap();
        assert_eq!(response.status(), http::StatusCode::CREATED);
        let warnings: Vec<&str> =
            response.headers().get_all(http::header::WARNING).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0], "299 - \"placement: pinned to zone-a\"");
        assert!(warnings[1].starts_with("299 - ") && warnings[1].contains("second"), "{warnings:?}");
        assert_eq!(webhook.calls(), 2);
        let uids: Vec<Value> = webhook.seen().iter().map(|s| uid(&s.review)).collect();
        assert_ne!(uids[0], uids[1], "every call has its own uid");
        assert_eq!(
            stored(&server, "default", "web-2").unwrap()["spec"]["nodeSelector"]["topology.kubernetes.io/zone"],
            "zone-a"
        );
    }
}

/// Starts a webhook by URL with `handler`, a fake with one configuration holding it (`failure_policy`),
/// and tries to create the pod `web` in `default`.
async fn try_create(
    failure_policy: &str,
    handler: impl Fn(&Value) -> Reply + Send + Sync + 'static,
) -> (FakeApiServer, Webhook, kube::Result<Pod>) {
    let webhook = Webhook::start(&["localhost"], handler).await;
    let server = fake_for(&webhook).await;
    let client = server.client_without_retry();
    let mut entry = hook("mutate.placement.dev", webhook.url_config());
    entry["failurePolicy"] = json!(failure_policy);
    install(&client, "placement", vec![entry]).await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let result = create(&api, &PostParams::default(), &pod("web", json!({"app": "web"}))).await;
    (server, webhook, result)
}

#[tokio::test]
async fn invalid_patches_are_rejected_whatever_the_failure_policy() {
    let not_json_patch = |r: &Value| {
        Reply::json(answer(r, json!({"patchType": "JSONPatch", "patch": b64(r#"{"op": "add", "path": "/x"}"#)})))
    };
    let not_json = |r: &Value| Reply::json(answer(r, json!({"patchType": "JSONPatch", "patch": b64("zone=a")})));
    let unknown_op = |r: &Value| patch(r, json!([{"op": "merge", "path": "/metadata/labels", "value": {}}]));
    let missing_path =
        |r: &Value| patch(r, json!([{"op": "replace", "path": "/spec/nodeSelector/zone", "value": "zone-a"}]));
    let test_fails = |r: &Value| patch(r, json!([{"op": "test", "path": "/metadata/name", "value": "other"}]));
    let renames = |r: &Value| patch(r, json!([{"op": "replace", "path": "/metadata/name", "value": "renamed"}]));
    let moves = |r: &Value| patch(r, json!([{"op": "add", "path": "/metadata/namespace", "value": "kube-system"}]));
    let rekinds = |r: &Value| patch(r, json!([{"op": "replace", "path": "/kind", "value": "ConfigMap"}]));
    type Case = (&'static str, fn(&Value) -> Reply);
    let cases: [Case; 8] = [
        ("base64 of a JSON object, not a JSON Patch array", not_json_patch),
        ("base64 of text that is not JSON", not_json),
        ("an unknown operation", unknown_op),
        ("replace on a missing path", missing_path),
        ("a failing test operation", test_fails),
        ("a patch that renames the pod", renames),
        ("a patch that moves the pod to another namespace", moves),
        ("a patch that changes the kind", rekinds),
    ];
    for (what, handler) in cases {
        for policy in ["Ignore", "Fail"] {
            let (server, webhook, result) = try_create(policy, handler).await;
            let e = result.expect_err(what);
            assert_eq!(api_code(&e), Some(500), "{what}, {policy}: {e}");
            assert!(e.to_string().contains("mutate.placement.dev"), "{what}, {policy}: {e}");
            assert_eq!(webhook.calls(), 1, "{what}, {policy}");
            assert!(server.list("v1", "Pod", None).is_empty(), "{what}, {policy}: nothing is stored");
        }
    }
}

/// How a create went.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Created without the webhook's change.
    Unmutated,
    /// Created with the annotation the webhook adds.
    Mutated,
    /// Rejected with this code.
    Rejected(u16),
}

fn outcome(server: &FakeApiServer, result: &kube::Result<Pod>) -> Outcome {
    match result {
        Err(e) => {
            assert!(server.list("v1", "Pod", None).is_empty(), "a rejected pod is not stored: {e}");
            Outcome::Rejected(api_code(e).unwrap_or(0))
        }
        Ok(p) => {
            let kept = stored(server, "default", p.metadata.name.as_deref().unwrap()).expect("a created pod is stored");
            if kept.pointer("/metadata/annotations/placement.dev~1mutated").is_some() {
                Outcome::Mutated
            } else {
                Outcome::Unmutated
            }
        }
    }
}

/// What the real API server does with a `patch` field it cannot decode as bytes: its client fails to
/// read the answer, which is a failed call (the failure policy decides). Go decodes a JSON array of
/// byte values into `[]byte` as well, so the kube-core 5 encoding is applied.
#[tokio::test]
async fn patch_fields_decode_as_go_bytes_and_read_failures_follow_the_failure_policy() {
    let ops = annotate("webhook");
    let kube_core = move |r: &Value| {
        // The answer kube-core's own types serialize: `patch` as an array of numbers.
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(r.clone()).unwrap();
        let request: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
        let ops: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
        let response = AdmissionResponse::from(&request).with_patch(ops).unwrap().into_review();
        let v = serde_json::to_value(&response).unwrap();
        assert!(v["response"]["patch"].is_array(), "kube-core 5 writes the patch as numbers: {v}");
        Reply::json(v)
    };
    let numbers = |r: &Value| {
        let bytes: Vec<u8> = annotate("webhook").to_string().into_bytes();
        Reply::json(answer(r, json!({"patchType": "JSONPatch", "patch": bytes})))
    };
    let not_bytes = |r: &Value| Reply::json(answer(r, json!({"patchType": "JSONPatch", "patch": [91, 256, 93]})));
    let not_base64 = |r: &Value| Reply::json(answer(r, json!({"patchType": "JSONPatch", "patch": "%%% not base64"})));
    let raw_json = |r: &Value| Reply::json(answer(r, json!({"patchType": "JSONPatch", "patch": annotate("webhook")})));
    let no_type = |r: &Value| Reply::json(answer(r, json!({"patch": b64(annotate("webhook").to_string())})));
    let type_only = |r: &Value| Reply::json(answer(r, json!({"patchType": "JSONPatch"})));
    let merge_type = |r: &Value| {
        Reply::json(answer(r, json!({"patchType": "MergePatch", "patch": b64(annotate("webhook").to_string())})))
    };
    let empty_ops = |r: &Value| patch(r, json!([]));
    let good = |r: &Value| patch(r, annotate("webhook"));
    type Case = (&'static str, Box<dyn Fn(&Value) -> Reply + Send + Sync>, Outcome, Outcome);
    use Outcome::*;
    let cases: Vec<Case> = vec![
        ("base64 JSON Patch", Box::new(good), Mutated, Mutated),
        ("kube-core 5 AdmissionResponse", Box::new(kube_core), Mutated, Mutated),
        ("array of byte values", Box::new(numbers), Mutated, Mutated),
        ("empty JSON Patch", Box::new(empty_ops), Unmutated, Unmutated),
        ("array with a value above 255", Box::new(not_bytes), Unmutated, Rejected(500)),
        ("string that is not base64", Box::new(not_base64), Unmutated, Rejected(500)),
        ("JSON Patch as a JSON value", Box::new(raw_json), Unmutated, Rejected(500)),
        ("patch without patchType", Box::new(no_type), Unmutated, Rejected(500)),
        ("patchType without patch", Box::new(type_only), Unmutated, Rejected(500)),
        ("patchType MergePatch", Box::new(merge_type), Unmutated, Rejected(500)),
    ];
    for (what, handler, if_ignore, if_fail) in cases {
        let handler: Handler = Arc::from(handler);
        for (policy, expected) in [("Ignore", &if_ignore), ("Fail", &if_fail)] {
            let h = handler.clone();
            let (server, webhook, result) = try_create(policy, move |r| h(r)).await;
            assert_eq!(&outcome(&server, &result), expected, "{what}, {policy}: {result:?}");
            if let Err(e) = &result {
                assert!(e.to_string().contains("failed calling webhook \"mutate.placement.dev\""), "{what}: {e}");
            }
            assert_eq!(webhook.calls(), 1, "{what}, {policy}");
        }
    }
}

/// Ways a webhook call fails.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// Nothing listens on the port.
    Down,
    /// The CA bundle is another certificate's.
    WrongCa,
    /// Reached as a service, with a certificate valid only for `localhost`.
    WrongServiceName,
    /// Answers HTTP 500.
    ServerError,
    /// Echoes another uid (with a patch that must not be applied).
    WrongUid,
    /// Answers JSON that is not an AdmissionReview.
    NotAReview,
    /// Answers an AdmissionReview without a response.
    NoResponse,
    /// Answers after 2 s with `timeoutSeconds: 1`.
    TooSlow,
}

#[tokio::test]
async fn failed_calls_follow_the_failure_policy() {
    use Failure::*;
    for failure in [Down, WrongCa, WrongServiceName, ServerError, WrongUid, NotAReview, NoResponse, TooSlow] {
        for policy in ["Ignore", "Fail"] {
            let names: &[&str] = if matches!(failure, WrongServiceName) { &["localhost"] } else { &[WEBHOOK_SVC] };
            let webhook = Webhook::start(names, move |r| match failure {
                ServerError => Reply::http(500, "internal trouble"),
                WrongUid => {
                    let mut a = answer(r, json!({"patchType": "JSONPatch", "patch": b64(annotate("x").to_string())}));
                    a["response"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
                    Reply::json(a)
                }
                NotAReview => Reply::json(json!({"apiVersion": "v1", "kind": "Status", "status": "Success"})),
                NoResponse => Reply::json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
                TooSlow => patch(r, annotate("late")).after(Duration::from_secs(2)),
                Down | WrongCa | WrongServiceName => patch(r, annotate("x")),
            })
            .await;
            let mut services = webhook.services();
            let mut config = webhook.service_config();
            match failure {
                Down => {
                    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    services.insert("placement-system/webhook".into(), closed.local_addr().unwrap().to_string());
                    drop(closed);
                }
                WrongCa => config["caBundle"] = json!(b64(certificate(&[WEBHOOK_SVC]).0)),
                _ => {}
            }
            let server = FakeApiServer::start_with(FakeConfig { services, ..FakeConfig::default() }).await.unwrap();
            let client = server.client_without_retry();
            let mut entry = hook("failing.placement.dev", config);
            entry["failurePolicy"] = json!(policy);
            if matches!(failure, TooSlow) {
                entry["timeoutSeconds"] = json!(1);
            }
            install(&client, "placement", vec![entry]).await;
            let api: Api<Pod> = Api::namespaced(client, "default");
            let started = std::time::Instant::now();
            let result = create(&api, &PostParams::default(), &pod("web", json!({"app": "web"}))).await;
            let took = started.elapsed();
            let what = format!("{failure:?}, {policy}");
            let expected = if policy == "Ignore" { Outcome::Unmutated } else { Outcome::Rejected(500) };
            assert_eq!(outcome(&server, &result), expected, "{what}: {result:?}");
            if let Err(e) = &result {
                assert!(e.to_string().contains("failed calling webhook \"failing.placement.dev\""), "{what}: {e}");
            }
            let reached_http = !matches!(failure, Down | WrongCa | WrongServiceName);
            assert_eq!(webhook.calls(), usize::from(reached_http), "{what}");
            if matches!(failure, TooSlow) {
                assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(1900), "{what}: {took:?}");
                // The late answer changes nothing afterwards either.
                tokio::time::sleep(Duration::from_millis(1200)).await;
                assert_eq!(outcome(&server, &result), expected, "{what}");
            }
        }
    }
}

#[tokio::test]
async fn denials_carry_the_webhooks_code_and_message() {
    let cases: [(&str, Value, u16, &str, &str); 5] = [
        (
            "403 with a message",
            json!({"code": 403, "reason": "Forbidden", "message": "pods may not run in zone-c"}),
            403,
            "Forbidden",
            "admission webhook \"deny.placement.dev\" denied the request: pods may not run in zone-c",
        ),
        (
            "422",
            json!({"code": 422, "reason": "Invalid", "message": "spec.zone: unknown zone"}),
            422,
            "Invalid",
            "admission webhook \"deny.placement.dev\" denied the request: spec.zone: unknown zone",
        ),
        (
            "no status",
            Value::Null,
            400,
            "",
            "admission webhook \"deny.placement.dev\" denied the request without explanation",
        ),
        (
            "a code below 400",
            json!({"code": 200, "message": "no"}),
            400,
            "",
            "admission webhook \"deny.placement.dev\" denied the request: no",
        ),
        (
            "reason but no message",
            json!({"code": 403, "reason": "Forbidden"}),
            403,
            "Forbidden",
            "admission webhook \"deny.placement.dev\" denied the request: Forbidden",
        ),
    ];
    for (what, status, code, reason, message) in cases {
        for policy in ["Ignore", "Fail"] {
            let status = status.clone();
            let webhook = Webhook::start(&["localhost"], move |r| {
                let mut response = json!({"allowed": false, "warnings": ["denied by placement"]});
                if !status.is_null() {
                    response["status"] = status.clone();
                }
                Reply::json(answer(r, response))
            })
            .await;
            let server = fake_for(&webhook).await;
            let client = server.client_without_retry();
            let mut entry = hook("deny.placement.dev", webhook.url_config());
            entry["failurePolicy"] = json!(policy);
            install(&client, "placement", vec![entry]).await;
            let api: Api<Pod> = Api::namespaced(client, "default");
            let result = create(&api, &PostParams::default(), &pod("web", json!({}))).await;
            let Err(kube::Error::Api(s)) = &result else { panic!("{what}, {policy}: {result:?}") };
            assert_eq!(s.code, code, "{what}, {policy}");
            assert_eq!(s.reason, reason, "{what}, {policy}");
            assert_eq!(s.message, message, "{what}, {policy}");
            assert!(server.list("v1", "Pod", None).is_empty(), "{what}, {policy}");
            assert_eq!(webhook.calls(), 1);
        }
    }
}

#[tokio::test]
async fn rules_and_selectors_decide_which_webhooks_are_called() {
    let not_kube_system = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]});
    let web_only = json!({"matchLabels": {"app": "web"}});
    let no_skip = json!({"matchExpressions": [{"key": "placement.dev/skip", "operator": "DoesNotExist"}]});
    let team_a = json!({"matchLabels": {"team": "a"}});
    // (what, field of the webhook to set and its value, namespace, pod labels, called)
    let cases: Vec<(&str, &str, Value, &str, Value, bool)> = vec![
        (
            "wildcard rules",
            "rules",
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]),
            "default",
            json!({}),
            true,
        ),
        (
            "rules for */*",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/*"]}]),
            "default",
            json!({}),
            true,
        ),
        (
            "rules for pods/*",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*"]}]),
            "default",
            json!({}),
            true,
        ),
        (
            "rules for Cluster scope",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Cluster"}]),
            "default",
            json!({}),
            false,
        ),
        (
            "rules for any scope",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}]),
            "default",
            json!({}),
            true,
        ),
        (
            "rules for deployments",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]),
            "default",
            json!({}),
            false,
        ),
        (
            "rules for UPDATE only",
            "rules",
            json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]),
            "default",
            json!({}),
            false,
        ),
        (
            "rules for pods/status",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/status"]}]),
            "default",
            json!({}),
            false,
        ),
        (
            "rules for another group",
            "rules",
            json!([{"operations": ["CREATE"], "apiGroups": ["placement.dev"], "apiVersions": ["*"], "resources": ["pods"]}]),
            "default",
            json!({}),
            false,
        ),
        (
            "namespaceSelector excludes kube-system: kube-system",
            "namespaceSelector",
            not_kube_system.clone(),
            "kube-system",
            json!({}),
            false,
        ),
        (
            "namespaceSelector excludes kube-system: default",
            "namespaceSelector",
            not_kube_system,
            "default",
            json!({}),
            true,
        ),
        (
            "namespaceSelector on a namespace label: team-a",
            "namespaceSelector",
            team_a.clone(),
            "team-a",
            json!({}),
            true,
        ),
        ("namespaceSelector on a namespace label: default", "namespaceSelector", team_a, "default", json!({}), false),
        ("objectSelector app=web: app=db", "objectSelector", web_only.clone(), "default", json!({"app": "db"}), false),
        ("objectSelector app=web: no labels", "objectSelector", web_only.clone(), "default", json!({}), false),
        ("objectSelector app=web: app=web", "objectSelector", web_only, "default", json!({"app": "web"}), true),
        (
            "objectSelector DoesNotExist: labelled",
            "objectSelector",
            no_skip.clone(),
            "default",
            json!({"placement.dev/skip": "true"}),
            false,
        ),
        (
            "objectSelector DoesNotExist: not labelled",
            "objectSelector",
            no_skip,
            "default",
            json!({"app": "web"}),
            true,
        ),
    ];
    for (what, field, value, ns, labels, called) in cases {
        let webhook = Webhook::start(&["localhost"], |r| patch(r, annotate("selected"))).await;
        let server = fake_for(&webhook).await;
        let client = server.client_without_retry();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let team: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team-a", "labels": {"team": "a"}}})).unwrap();
        namespaces.create(&PostParams::default(), &team).await.unwrap();
        let mut entry = hook("selective.placement.dev", webhook.url_config());
        entry[field] = value;
        install(&client, "placement", vec![entry]).await;
        let api: Api<Pod> = Api::namespaced(client, ns);
        let created = create(&api, &PostParams::default(), &pod("web", labels)).await.unwrap();
        assert_eq!(webhook.calls(), usize::from(called), "{what}");
        let annotated = created.metadata.annotations.is_some_and(|a| a.contains_key("placement.dev/mutated"));
        assert_eq!(annotated, called, "{what}");
        assert!(stored(&server, ns, "web").is_some(), "{what}");
    }
}

#[tokio::test]
async fn dry_run_creates_reach_only_webhooks_without_side_effects() {
    // (sideEffects, accepted)
    for (side_effects, accepted) in [("None", true), ("NoneOnDryRun", true), ("Unknown", false), ("Some", false)] {
        let webhook = Webhook::start(&["localhost"], |r| patch(r, annotate("dry"))).await;
        let server = fake_for(&webhook).await;
        let client = server.client_without_retry();
        let mut entry = hook("dry.placement.dev", webhook.url_config());
        entry["sideEffects"] = json!(side_effects);
        install(&client, "placement", vec![entry]).await;
        let api: Api<Pod> = Api::namespaced(client, "default");
        let dry = PostParams { dry_run: true, ..PostParams::default() };
        let result = create(&api, &dry, &pod("web", json!({}))).await;
        if accepted {
            let p = result.unwrap_or_else(|e| panic!("{side_effects}: {e}"));
            assert_eq!(p.metadata.annotations.unwrap()["placement.dev/mutated"], "dry", "{side_effects}");
            assert_eq!(webhook.calls(), 1, "{side_effects}");
            let review = &webhook.seen()[0].review;
            assert_eq!(review["request"]["dryRun"], true, "{side_effects}");
        } else {
            let e = result.expect_err(side_effects);
            assert_eq!(api_code(&e), Some(400), "{side_effects}: {e}");
            assert!(e.to_string().contains("dry.placement.dev") && e.to_string().contains("dry run"), "{e}");
            assert_eq!(webhook.calls(), 0, "{side_effects}");
        }
        assert!(stored(&server, "default", "web").is_none(), "{side_effects}: a dry run stores nothing");
        // Without dryRun, every side-effect class is called.
        let real = create(&api, &PostParams::default(), &pod("web", json!({}))).await.unwrap();
        assert_eq!(real.metadata.annotations.unwrap()["placement.dev/mutated"], "dry", "{side_effects}");
        assert_eq!(webhook.seen().last().unwrap().review["request"]["dryRun"], false);
        assert!(stored(&server, "default", "web").is_some(), "{side_effects}");
    }
}

#[tokio::test]
async fn if_needed_webhooks_are_reinvoked_after_a_later_change() {
    // (first's reinvocationPolicy, second mutates, calls of first, calls of second)
    let cases = [("IfNeeded", true, 2), ("Never", true, 1), ("IfNeeded", false, 1)];
    for (policy, second_mutates, first_calls) in cases {
        // The first webhook annotates once; the second adds a label.
        let first = Webhook::start(&["localhost"], |r| {
            if r["request"]["object"]["metadata"].get("annotations").is_some() {
                allow(r)
            } else {
                patch(r, annotate("first"))
            }
        })
        .await;
        let second = Webhook::start(&["localhost"], move |r| {
            if second_mutates {
                patch(r, json!([{"op": "add", "path": "/metadata/labels/zone", "value": "zone-a"}]))
            } else {
                allow(r)
            }
        })
        .await;
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client_without_retry();
        let mut a = hook("a-first.placement.dev", first.url_config());
        a["reinvocationPolicy"] = json!(policy);
        let b = hook("b-second.placement.dev", second.url_config());
        install(&client, "placement", vec![a, b]).await;
        let api: Api<Pod> = Api::namespaced(client, "default");
        let created = create(&api, &PostParams::default(), &pod("web", json!({"app": "web"}))).await.unwrap();
        let what = format!("{policy}, second mutates: {second_mutates}");
        assert_eq!(first.calls(), first_calls, "{what}");
        assert_eq!(second.calls(), 1, "{what}");
        assert_eq!(created.metadata.annotations.unwrap()["placement.dev/mutated"], "first", "{what}");
        let labels = created.metadata.labels.unwrap();
        assert_eq!(labels.get("zone").map(String::as_str), second_mutates.then_some("zone-a"), "{what}");
        if first_calls == 2 {
            // The reinvocation sees the object as the second webhook left it.
            let again = &first.seen()[1].review["request"]["object"]["metadata"];
            assert_eq!(again["labels"]["zone"], "zone-a", "{what}");
            assert_eq!(again["annotations"]["placement.dev/mutated"], "first", "{what}");
            assert_ne!(first.seen()[0].review["request"]["uid"], first.seen()[1].review["request"]["uid"]);
        }
    }
}

#[tokio::test]
async fn generate_name_pods_are_reviewed_without_a_name() {
    let webhook = Webhook::start(&["localhost"], |r| patch(r, annotate("generated"))).await;
    let server = fake_for(&webhook).await;
    let client = server.client_without_retry();
    install(&client, "placement", vec![hook("names.placement.dev", webhook.url_config())]).await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("", json!({"app": "web"}));
    p.metadata.name = None;
    p.metadata.generate_name = Some("web-".into());
    let a = create(&api, &PostParams::default(), &p).await.unwrap();
    let b = create(&api, &PostParams::default(), &p).await.unwrap();
    for created in [&a, &b] {
        let name = created.metadata.name.as_deref().unwrap();
        assert!(name.starts_with("web-") && name.len() > "web-".len(), "{name}");
        assert_eq!(created.metadata.annotations.as_ref().unwrap()["placement.dev/mutated"], "generated");
        assert!(stored(&server, "default", name).is_some());
    }
    assert_ne!(a.metadata.name, b.metadata.name);
    assert_eq!(webhook.calls(), 2);
    for seen in webhook.seen() {
        let request = &seen.review["request"];
        assert_eq!(request["name"].as_str().unwrap_or(""), "", "the name is not generated yet: {request}");
        assert_eq!(request["object"]["metadata"]["generateName"], "web-");
        assert!(request["object"]["metadata"].get("name").is_none_or(Value::is_null), "{request}");
    }
}

#[tokio::test]
async fn cluster_scoped_objects_match_namespace_selectors_as_the_server_does() {
    // A Namespace is matched on its own labels; another cluster-scoped object is never exempted by a
    // namespaceSelector; a Namespaced-scope rule does not match either.
    let team_a = json!({"matchLabels": {"team": "a"}});
    let rules = |resource: &str, scope: &str| json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource], "scope": scope}]);
    // (what, rules, object, called)
    let cases = [
        (
            "namespace labelled team=a",
            rules("namespaces", "*"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}}),
            true,
        ),
        (
            "namespace without the label",
            rules("namespaces", "*"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}),
            false,
        ),
        (
            "namespace, Cluster scope",
            rules("namespaces", "Cluster"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}}),
            true,
        ),
        (
            "namespace, Namespaced scope",
            rules("namespaces", "Namespaced"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}}),
            false,
        ),
        (
            "node",
            rules("nodes", "*"),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}),
            true,
        ),
        (
            "node, Namespaced scope",
            rules("nodes", "Namespaced"),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}),
            false,
        ),
    ];
    for (what, rules, object, called) in cases {
        let webhook = Webhook::start(&["localhost"], |r| patch(r, annotate("selected"))).await;
        let server = fake_for(&webhook).await;
        let client = server.client_without_retry();
        let mut entry = hook("cluster.placement.dev", webhook.url_config());
        entry["rules"] = rules;
        entry["namespaceSelector"] = team_a.clone();
        install(&client, "placement", vec![entry]).await;
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let gvk = kube::api::GroupVersionKind::gvk("", "v1", kind);
        let (ar, _) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let api: Api<DynamicObject> = Api::all_with(client, &ar);
        let obj: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        let created = tokio::time::timeout(CALL_TIMEOUT, api.create(&PostParams::default(), &obj)).await.unwrap();
        let created = created.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(webhook.calls(), usize::from(called), "{what}");
        let annotated = created.metadata.annotations.is_some_and(|a| a.contains_key("placement.dev/mutated"));
        assert_eq!(annotated, called, "{what}");
        assert!(server.get("v1", kind, "", name).is_some(), "{what}");
    }
}
