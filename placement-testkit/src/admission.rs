//! Mutating admission, as the API server runs it on CREATE: read the stored
//! `MutatingWebhookConfiguration`s, pick the webhooks whose rules, namespaceSelector and objectSelector
//! match, call each over HTTPS with an `AdmissionReview` v1, and apply the returned JSON Patch.
//!
//! The rules that decide whether a request goes through are the real server's:
//! * a webhook that cannot be called, times out, or answers with something that is not a valid
//!   `AdmissionReview` for this request (wrong uid, wrong kind, a `patch` field that does not decode as
//!   bytes, a `patch` without `patchType` or the reverse, a patch type other than `JSONPatch`) is a *call
//!   failure*: with `failurePolicy: Ignore` the request goes on unmutated, with `Fail` (the default) it
//!   is rejected (500);
//! * `allowed: false` rejects the request with the webhook's status code (400 if below 400) and message;
//! * decoded patch bytes that are not a JSON Patch, or a patch that does not apply, reject the request
//!   whatever the failure policy (500), as does a patch that changes the object's kind, name or namespace;
//! * `patch` is a Go `[]byte`: a base64 string, or (Go's decoder takes it too) an array of byte values,
//!   which is how kube-core 5 serializes `AdmissionResponse::patch` (kube-rs issue 1781);
//! * a `dryRun` request is sent only to webhooks with `sideEffects: None` or `NoneOnDryRun`; any other
//!   matching webhook rejects it;
//! * `reinvocationPolicy: IfNeeded` webhooks are called once more if a later webhook changed the object.
//!
//! Rules match as the server matches them: `scope` (a Namespace is cluster-scoped), `*` for every
//! resource but no subresource, `*/*` and `pods/*`. A namespaceSelector is matched against the labels of
//! the request's namespace, of the Namespace itself when one is created, and never exempts another
//! cluster-scoped object.
//!
//! A `clientConfig.service` is reached at the address the test maps it to
//! ([`super::FakeConfig::services`]) and its certificate is verified for `<name>.<namespace>.svc`, as the
//! real server does; a `clientConfig.url` is called as is. `matchConditions` (CEL) are not evaluated:
//! a webhook with match conditions is treated as matching.

use super::selectors::selector_object_matches;
use super::status::ApiError;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// One webhook to call, resolved from a stored configuration.
#[derive(Clone, Debug)]
pub struct Hook {
    pub name: String,
    /// Address to connect to (`host:port`).
    address: String,
    /// Name the server certificate must be valid for.
    server_name: String,
    path: String,
    ca_bundle: Vec<u8>,
    timeout: Duration,
    fail_closed: bool,
    dry_run_safe: bool,
    reinvoke: bool,
}

/// What the request is, for matching and for the AdmissionReview.
pub struct AdmissionRequest<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub namespace_labels: BTreeMap<String, String>,
    pub dry_run: bool,
}

/// The admitted object and the warnings to pass on to the client.
#[derive(Debug)]
pub struct Admitted {
    pub object: Value,
    pub warnings: Vec<String>,
    /// Names of the webhooks called, in order (reinvocations included).
    pub called: Vec<String>,
}

fn str_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Whether the request is for a namespaced object; a Namespace itself is cluster-scoped.
fn namespaced(req: &AdmissionRequest<'_>) -> bool {
    !is_namespace(req) && !req.namespace.is_empty()
}

fn is_namespace(req: &AdmissionRequest<'_>) -> bool {
    req.group.is_empty() && req.resource == "namespaces"
}

/// `resources` entries are `resource[/subresource]`, either part may be `*`: `*` matches every
/// resource but no subresource, `*/*` everything, `pods/*` pods and all their subresources.
fn resource_matches(pattern: &str, resource: &str) -> bool {
    let (p_res, p_sub) = pattern.split_once('/').unwrap_or((pattern, ""));
    let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
    (p_res == "*" || p_res == res) && (p_sub == "*" || p_sub == sub)
}

fn rule_matches(rule: &Value, req: &AdmissionRequest<'_>) -> bool {
    let any = |list: Vec<&str>, want: &str| list.iter().any(|x| *x == "*" || *x == want);
    let scope = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => namespaced(req),
        "Cluster" => !namespaced(req),
        _ => true,
    };
    scope
        && any(str_list(rule.get("operations")), "CREATE")
        && any(str_list(rule.get("apiGroups")), req.group)
        && any(str_list(rule.get("apiVersions")), req.version)
        && str_list(rule.get("resources")).iter().any(|p| resource_matches(p, req.resource))
}

/// The webhooks of the stored configurations (sorted by name, as the server orders them) that match.
pub fn matching_hooks(
    configurations: &[Value],
    req: &AdmissionRequest<'_>,
    object: &Value,
    services: &HashMap<String, String>,
) -> Result<Vec<Hook>, ApiError> {
    let object_labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default();
    // What a namespaceSelector is matched against: the labels of the request's namespace; for a
    // Namespace, its own labels; a cluster-scoped object is never exempted by a namespaceSelector.
    let selected_namespace_labels = if is_namespace(req) {
        let mut labels = object_labels.clone();
        if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
            labels.entry("kubernetes.io/metadata.name".into()).or_insert_with(|| name.into());
        }
        Some(labels)
    } else if req.namespace.is_empty() {
        None
    } else {
        Some(req.namespace_labels.clone())
    };
    let mut configs: Vec<&Value> = configurations.iter().collect();
    configs.sort_by_key(|c| c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string());
    let mut hooks = Vec::new();
    for config in configs {
        for wh in config.get("webhooks").and_then(Value::as_array).into_iter().flatten() {
            let name = wh.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let rules = wh.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
            if !rules.iter().any(|r| rule_matches(r, req)) {
                continue;
            }
            if let Some(sel) = wh.get("namespaceSelector")
                && let Some(labels) = &selected_namespace_labels
                && !selector_object_matches(sel, labels)
            {
                continue;
            }
            if let Some(sel) = wh.get("objectSelector")
                && !selector_object_matches(sel, &object_labels)
            {
                continue;
            }
            let fail_closed = wh.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
            let side_effects = wh.get("sideEffects").and_then(Value::as_str).unwrap_or("Unknown");
            let dry_run_safe = matches!(side_effects, "None" | "NoneOnDryRun");
            let timeout =
                Duration::from_secs(wh.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(10).clamp(1, 30));
            let reinvoke = wh.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded");
            let cc = wh.get("clientConfig").cloned().unwrap_or(Value::Null);
            let ca_bundle = match cc.get("caBundle").and_then(Value::as_str) {
                Some(b) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| {
                    ApiError::internal(format!("webhook {name:?}: clientConfig.caBundle is not base64: {e}"))
                })?,
                None => Vec::new(),
            };
            let (address, server_name, path) = if let Some(url) = cc.get("url").and_then(Value::as_str) {
                let u = url::Url::parse(url)
                    .map_err(|e| ApiError::internal(format!("webhook {name:?}: clientConfig.url {url:?}: {e}")))?;
                let host = u.host_str().unwrap_or("").to_string();
                let port = u.port().unwrap_or(443);
                (format!("{host}:{port}"), host, u.path().to_string())
            } else if let Some(svc) = cc.get("service") {
                let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
                let svc_name = svc.get("name").and_then(Value::as_str).unwrap_or("");
                let address = services.get(&format!("{ns}/{svc_name}")).cloned().unwrap_or_default();
                let path = svc.get("path").and_then(Value::as_str).unwrap_or("/").to_string();
                (address, format!("{svc_name}.{ns}.svc"), path)
            } else {
                (String::new(), String::new(), String::new())
            };
            hooks.push(Hook {
                name,
                address,
                server_name,
                path,
                ca_bundle,
                timeout,
                fail_closed,
                dry_run_safe,
                reinvoke,
            });
        }
    }
    Ok(hooks)
}

/// Runs the matching webhooks over `object`.
pub async fn admit(
    hooks: &[Hook],
    req: &AdmissionRequest<'_>,
    mut object: Value,
    uid_seed: u64,
) -> Result<Admitted, ApiError> {
    let mut warnings = Vec::new();
    let mut called = Vec::new();
    if req.dry_run
        && let Some(h) = hooks.iter().find(|h| !h.dry_run_safe)
    {
        return Err(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run (sideEffects is not None or NoneOnDryRun)",
            h.name
        )));
    }
    // Index of the webhook that last changed the object, and the position in `called` where it did.
    let mut last_change: Option<(usize, usize)> = None;
    let mut first_call: Vec<Option<usize>> = vec![None; hooks.len()];
    for (i, hook) in hooks.iter().enumerate() {
        first_call[i] = Some(called.len());
        let changed = call_one(hook, req, &mut object, &mut warnings, uid_seed + i as u64).await?;
        called.push(hook.name.clone());
        if changed {
            last_change = Some((i, called.len() - 1));
        }
    }
    if let Some((changer, at)) = last_change {
        for (i, hook) in hooks.iter().enumerate() {
            let called_before_change = first_call[i].is_some_and(|c| c < at);
            if hook.reinvoke && i != changer && called_before_change {
                call_one(hook, req, &mut object, &mut warnings, uid_seed + 1000 + i as u64).await?;
                called.push(hook.name.clone());
            }
        }
    }
    Ok(Admitted { object, warnings, called })
}

/// Calls one webhook; returns whether it changed the object.
async fn call_one(
    hook: &Hook,
    req: &AdmissionRequest<'_>,
    object: &mut Value,
    warnings: &mut Vec<String>,
    uid_seed: u64,
) -> Result<bool, ApiError> {
    let uid = format!("00000000-0000-4000-9000-{uid_seed:012x}");
    let gvk = json!({"group": req.group, "version": req.version, "kind": req.kind});
    let gvr = json!({"group": req.group, "version": req.version, "resource": req.resource});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""),
            "namespace": req.namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": object.clone(),
            "oldObject": null,
            "dryRun": req.dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    });
    // A failure to call the webhook or to read its answer: subject to the failure policy.
    let call_failed = |why: String| {
        if hook.fail_closed {
            Err(ApiError::internal(format!("Internal error occurred: failed calling webhook {:?}: {why}", hook.name)))
        } else {
            tracing::warn!(webhook = %hook.name, %why, "failed calling webhook, failing open (failurePolicy Ignore)");
            Ok(false)
        }
    };
    let response = match tokio::time::timeout(hook.timeout, post(hook, &review)).await {
        Ok(Ok(body)) => check_review(&body, &uid),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("context deadline exceeded after {:?}", hook.timeout)),
    };
    let response = match response {
        Ok(r) => r,
        Err(why) => return call_failed(why),
    };
    warnings.extend(response.warnings);
    if !response.allowed {
        return Err(denied(&hook.name, &response.status));
    }
    if response.patch.is_empty() {
        return Ok(false);
    }
    // From here on the answer was read: a patch that is not a JSON Patch, or does not apply, is an
    // internal error whatever the failure policy.
    let bad = |why: String| {
        ApiError::internal(format!(
            "Internal error occurred: admission webhook {:?} returned an invalid patch: {why}",
            hook.name
        ))
    };
    let ops: json_patch::Patch =
        serde_json::from_slice(&response.patch).map_err(|e| bad(format!("not a JSON Patch: {e}")))?;
    if ops.0.is_empty() {
        return Ok(false);
    }
    if response.patch_type != "JSONPatch" {
        return call_failed(format!("unsupported patch type {:?}", response.patch_type));
    }
    let mut next = object.clone();
    json_patch::patch(&mut next, &ops).map_err(|e| bad(e.to_string()))?;
    for ptr in ["/kind", "/apiVersion", "/metadata/name", "/metadata/namespace", "/metadata/generateName"] {
        if next.pointer(ptr) != object.pointer(ptr) {
            return Err(bad(format!("the patch changes {ptr}")));
        }
    }
    let changed = next != *object;
    *object = next;
    Ok(changed)
}

/// The rejection for `allowed: false`, as the API server builds it from the webhook's status.
fn denied(name: &str, status: &Value) -> ApiError {
    // The server never answers a rejection with a code below 400.
    let code = status.get("code").and_then(Value::as_u64).filter(|c| (400..600).contains(c)).unwrap_or(400) as u16;
    let denied_by = format!("admission webhook {name:?} denied the request");
    let text = |k: &str| status.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let message = match text("message").or_else(|| text("reason")) {
        Some(m) => format!("{denied_by}: {m}"),
        None => format!("{denied_by} without explanation"),
    };
    // The server passes the webhook's reason on; `ApiError` carries only static ones: the usual reasons.
    const REASONS: [&str; 10] = [
        "Forbidden",
        "Unauthorized",
        "BadRequest",
        "Invalid",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "TooManyRequests",
        "InternalError",
        "ServiceUnavailable",
    ];
    let reason = text("reason").and_then(|r| REASONS.into_iter().find(|k| *k == r)).unwrap_or("");
    ApiError::new(code, reason, message)
}

/// A webhook's answer, read as the API server reads an `admission.k8s.io/v1` `AdmissionResponse`.
struct ReviewResponse {
    allowed: bool,
    status: Value,
    /// The decoded `patch` bytes (empty when there is none).
    patch: Vec<u8>,
    patch_type: String,
    warnings: Vec<String>,
}

/// The `response` of a well-formed AdmissionReview for request `uid`, or why it is not one (a call
/// failure, subject to the failure policy).
fn check_review(body: &[u8], uid: &str) -> Result<ReviewResponse, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err("expected response.apiVersion admission.k8s.io/v1 and kind AdmissionReview".into());
    }
    let response = review.get("response").filter(|r| !r.is_null()).ok_or("webhook response was absent")?;
    if response.get("uid").and_then(Value::as_str) != Some(uid) {
        return Err(format!("expected response.uid={uid:?}, got {:?}", response.get("uid")));
    }
    let allowed = match response.get("allowed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("response.allowed: cannot unmarshal {other} into a bool")),
    };
    // `patch` is a Go []byte: JSON gives it as a base64 string, and Go's decoder also takes an array of
    // byte values (which is how kube-core 5 serializes it, kube-rs issue 1781). Anything else fails to
    // decode, which the server reports as a failed call.
    let patch = match response.get("patch") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("response.patch: decode base64: {e}"))?,
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| "response.patch: cannot unmarshal an array of non-byte values into []byte".to_string())?,
        Some(other) => return Err(format!("response.patch: cannot unmarshal {other} into []byte")),
    };
    let patch_type = response.get("patchType").and_then(Value::as_str).unwrap_or("").to_string();
    if !patch.is_empty() && patch_type.is_empty() {
        return Err(
            "received invalid webhook response: webhook returned response.patch but not response.patchType".into()
        );
    }
    if patch.is_empty() && !patch_type.is_empty() {
        return Err(
            "received invalid webhook response: webhook returned response.patchType but not response.patch".into()
        );
    }
    Ok(ReviewResponse {
        allowed,
        status: response.get("status").cloned().unwrap_or(Value::Null),
        patch,
        patch_type,
        warnings: str_list(response.get("warnings")).into_iter().map(str::to_string).collect(),
    })
}

/// Keep-alive connections to webhooks, as the API server keeps them: by address, server name and CA.
type PoolKey = (String, String, Vec<u8>);
static IDLE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PoolKey, Vec<Sender>>>> =
    std::sync::LazyLock::new(Default::default);
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn pool_key(hook: &Hook) -> PoolKey {
    (hook.address.clone(), hook.server_name.clone(), hook.ca_bundle.clone())
}

fn idle_connection(hook: &Hook) -> Option<Sender> {
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    let senders = idle.get_mut(&pool_key(hook))?;
    while let Some(send) = senders.pop() {
        if send.is_ready() {
            return Some(send);
        }
    }
    None
}

fn keep_idle(hook: &Hook, send: Sender) {
    if send.is_closed() {
        return;
    }
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    let senders = idle.entry(pool_key(hook)).or_default();
    if senders.len() < 64 {
        senders.push(send);
    }
}

/// A new TLS connection to the webhook, its certificate checked against the caBundle.
async fn connect(hook: &Hook) -> Result<Sender, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&hook.ca_bundle) {
        let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(hook.server_name.clone()).map_err(|e| format!("server name: {e}"))?;
    let tcp =
        tokio::net::TcpStream::connect(&hook.address).await.map_err(|e| format!("dial tcp {}: {e}", hook.address))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn post(hook: &Hook, review: &Value) -> Result<Bytes, String> {
    if hook.address.is_empty() {
        return Err("no address for the webhook's service (FakeConfig::services)".into());
    }
    let mut send = match idle_connection(hook) {
        Some(send) => send,
        None => connect(hook).await?,
    };
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let request = http::Request::post(format!("{}?timeout={}s", hook.path, hook.timeout.as_secs()))
        .header(http::header::HOST, hook.server_name.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = send.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    keep_idle(hook, send);
    if !status.is_success() {
        return Err(format!("the server responded with status {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(bytes)
}
