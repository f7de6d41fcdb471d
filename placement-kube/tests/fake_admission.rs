//! The fake API server's mutating-admission step, driven with the real kube client against a test
//! webhook served over real TLS (tokio-rustls, ring, a certificate made by rcgen).

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use placement_kube::testkit::{FakeApiServer, FakeConfig};
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
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
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
    Url,
    Service,
}

/// Starts the fake with the service mapping the webhook needs.
async fn fake_for(webhook: &Webhook) -> FakeApiServer {
    FakeApiServer::start_with(FakeConfig { services: webhook.services(), ..FakeConfig::default() }).await.unwrap()
}

fn client_config(webhook: &Webhook, reach: Reach) -> Value {
    match reach {
        Reach::Url => webhook.url_config(),
        Reach::Service => webhook.service_config(),
    }
}

#[tokio::test]
async fn create_sends_an_admission_review_and_applies_the_patch() {
    for reach in [Reach::Url, Reach::Service] {
        let names: &[&str] = match reach {
            Reach::Url => &["localhost"],
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
        assert!(request["object"]["spec"].get("nodeSelector").is_none(), "the webhook sees the object before its patch");
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
        assert_eq!(stored(&server, "default", "web-2").unwrap()["spec"]["nodeSelector"]["topology.kubernetes.io/zone"], "zone-a");
    }
}
