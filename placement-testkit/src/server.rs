//! The HTTP side of the fake API server: routing of the Kubernetes REST paths, verbs, query parameters,
//! content types, watch streams, and the handle tests use to start, seed, inspect and break it.

use super::admission::{self, AdmissionRequest};
use super::events::{self, View};
use super::eviction;
use super::faults::{Faults, Verb};
use super::patch::{self, PatchKind};
use super::resources::{Registry, ResourceType};
use super::selectors::{FieldQuery, LabelQuery};
use super::status::{ApiError, success_status};
use super::store::{State, Stored, WatchFilter};
use super::table;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How the fake server is set up.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Events kept for watch replay; older versions get 410 Gone.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks receives one.
    pub bookmark_interval: Duration,
    /// Recompute PodDisruptionBudget status when pods change, as the disruption controller does.
    pub pdb_controller: bool,
    /// Where admission webhooks given by `clientConfig.service` are reached: `"namespace/name"` to
    /// `"host:port"`.
    pub services: HashMap<String, String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 100_000,
            bookmark_interval: Duration::from_secs(5),
            pdb_controller: true,
            services: HashMap::new(),
            max_body_bytes: 16 << 20,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Namespaces whose PDB status must be recomputed (pods or PDBs changed there).
    dirty_pdbs: Mutex<std::collections::BTreeSet<String>>,
    faults: Faults,
    config: FakeConfig,
    requests: AtomicU64,
    admission_uid: AtomicU64,
    address: SocketAddr,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the fake; keep serving rather than poisoning tests.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl FakeApiServer {
    /// Starts a server with the default configuration on 127.0.0.1 and a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(FakeConfig::default()).await
    }

    pub async fn start_with(config: FakeConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(Registry::builtin(), config.history_limit)),
            dirty_pdbs: Mutex::new(Default::default()),
            faults: Faults::default(),
            config,
            requests: AtomicU64::new(0),
            admission_uid: AtomicU64::new(0),
            address,
        });
        for ns in ["default", "kube-system"] {
            let _ = shared_create(&shared, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        let (shutdown, mut stop) = watch::channel(false);
        if shared.config.pdb_controller {
            // The disruption controller runs beside the API server: PDB status follows pod changes
            // within a tick, and at once for anyone who reads a PDB or evicts.
            let weak = Arc::downgrade(&shared);
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => break,
                    }
                    let Some(shared) = weak.upgrade() else { break };
                    flush_pdbs(&shared);
                }
            });
        }
        let accept_shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = stop.changed() => break,
                };
                let Ok((stream, _)) = conn else { continue };
                let shared = accept_shared.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        Ok(FakeApiServer { shared, shutdown })
    }

    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.address)
    }

    /// The kube client configuration for this server (default namespace `default`). kube 5 retries
    /// 429, 503 and 504 answers by itself (`default_retry`, up to 15 times with backoff); set it to
    /// false to see those answers.
    pub fn kube_config(&self) -> kube::Config {
        let uri: http::Uri = self.url().parse().expect("a socket address is a valid URI");
        kube::Config::new(uri)
    }

    /// A real kube client talking to this server, configured as kube's defaults are.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config()).expect("a plain-HTTP kube config always builds a client")
    }

    /// A real kube client that does not retry 429/503/504 by itself.
    pub fn client_without_retry(&self) -> kube::Client {
        let mut config = self.kube_config();
        config.default_retry = false;
        kube::Client::try_from(config).expect("a plain-HTTP kube config always builds a client")
    }

    /// A kubeconfig that points kubectl or any client at this server.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Starts the stand-ins for the controller manager and scheduler ([`super::workloads`]): from now on
    /// Deployments get ReplicaSets and pods (through admission), and pods get nodes. They stop when the
    /// returned value is dropped.
    pub fn start_workload_controllers(&self) -> super::workloads::WorkloadControllers {
        super::workloads::spawn(self.client())
    }

    /// Starts the node autoscaler stand-in ([`super::autoscaler`]) with `options`; it stops when the
    /// returned value is dropped. Pods are marked unschedulable by the scheduler stand-in
    /// ([`Self::start_workload_controllers`]), so both run together.
    pub fn start_autoscaler(&self, options: super::autoscaler::AutoscalerOptions) -> super::autoscaler::Autoscaler {
        super::autoscaler::spawn(self.client(), options)
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Forgets the event log: watches from older versions get 410 Gone and must relist.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Closes every open watch stream; returns how many were open.
    pub fn drop_watches(&self) -> usize {
        self.shared.lock().drop_watches()
    }

    /// Open watch streams.
    pub fn watch_count(&self) -> usize {
        self.shared.lock().watch_count()
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    /// Requests served so far.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Creates or replaces an object directly, status included, without admission: for seeding test
    /// clusters (nodes with capacity, running pods, metrics). Returns the stored object.
    pub fn put(&self, object: Value) -> Result<Value, ApiError> {
        let (t, ns, name) = self.locate(&object)?;
        let mut state = self.shared.lock();
        let stored = match state.get(&t, &ns, &name) {
            Ok(_) => {
                let mut obj = object;
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let status = obj.get("status").cloned();
                let main = state.update(&t, &ns, &name, obj.clone(), false, false)?;
                match status {
                    Some(_) if t.status => state.update(&t, &ns, &name, obj, true, false)?,
                    _ => main,
                }
            }
            Err(_) => state.create(&t, &ns, object, false)?,
        };
        drop(state);
        self.after_write(&t, &ns);
        Ok(stored.value())
    }

    /// Seeds every object of a multi-document YAML or JSON text with [`Self::put`].
    pub fn put_yaml(&self, text: &str) -> Result<usize, String> {
        let mut n = 0;
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
            let items = match v.get("kind").and_then(Value::as_str) {
                Some(k) if k.ends_with("List") => v.get("items").and_then(Value::as_array).cloned().unwrap_or_default(),
                None if v.is_null() => continue,
                _ => vec![v],
            };
            for item in items {
                self.put(item).map_err(|e| format!("document {}: {e}", i + 1))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reads an object directly.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.lock();
        let t = state.registry.by_kind(api_version, kind)?;
        state.get(&t, if t.namespaced { namespace } else { "" }, name).ok().map(|s| s.value())
    }

    /// Lists objects directly (all namespaces when `namespace` is `None`).
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let state = self.shared.lock();
        let Some(t) = state.registry.by_kind(api_version, kind) else { return Vec::new() };
        state.objects(&t.key(), namespace).map(|s| s.value()).collect()
    }

    /// Deletes an object directly (finalizers respected).
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Result<(), ApiError> {
        let t = {
            let state = self.shared.lock();
            state.registry.by_kind(api_version, kind).ok_or_else(|| ApiError::not_found("", kind, name))?
        };
        let ns = if t.namespaced { namespace } else { "" };
        self.shared.lock().delete(&t, ns, name, None, false)?;
        self.after_write(&t, ns);
        Ok(())
    }

    fn locate(&self, object: &Value) -> Result<(Arc<ResourceType>, String, String), ApiError> {
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let t = self.shared.lock().registry.by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("no resource type is served for {api_version}, Kind={kind}"))
        })?;
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let ns = if t.namespaced {
            object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string()
        } else {
            String::new()
        };
        Ok((t, ns, name))
    }

    fn after_write(&self, t: &ResourceType, namespace: &str) {
        after_write(&self.shared, t, namespace);
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.shared.lock().drop_watches();
    }
}

fn shared_create(shared: &Shared, object: Value) -> Result<Arc<Stored>, ApiError> {
    let mut state = shared.lock();
    let t = state.registry.by_kind("v1", "Namespace").ok_or_else(|| ApiError::internal("no namespaces"))?;
    state.create(&t, "", object, false)
}

fn is_pods(t: &ResourceType) -> bool {
    t.group.is_empty() && t.plural == "pods"
}

fn is_pdbs(t: &ResourceType) -> bool {
    t.group == "policy" && t.plural == "poddisruptionbudgets"
}

/// Controllers that the real cluster runs next to the API server, told about a write.
fn after_write(shared: &Shared, t: &ResourceType, namespace: &str) {
    if shared.config.pdb_controller && (is_pods(t) || is_pdbs(t)) {
        shared.dirty_pdbs.lock().unwrap_or_else(|e| e.into_inner()).insert(namespace.to_string());
    }
}

/// Recomputes the PDB status of every namespace where pods or PDBs changed.
fn flush_pdbs(shared: &Shared) {
    let dirty = std::mem::take(&mut *shared.dirty_pdbs.lock().unwrap_or_else(|e| e.into_inner()));
    if dirty.is_empty() {
        return;
    }
    let mut state = shared.lock();
    for ns in dirty {
        eviction::refresh_pdbs(&mut state, &ns);
    }
}

/// The parsed target of a request.
enum Route {
    Json(Value),
    Text(&'static str),
    Resource { t: Arc<ResourceType>, namespace: Option<String>, name: Option<String>, sub: Option<String> },
}

fn route(shared: &Shared, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let state = shared.lock();
    let reg = &state.registry;
    let not_found =
        || ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({path})"));
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["healthz" | "readyz" | "livez", ..] => return Ok(Route::Text("ok")),
        ["version"] => {
            return Ok(Route::Json(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-placement-fake", "platform": "linux/amd64",
                "goVersion": "go1.24", "compiler": "gc", "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            })));
        }
        ["openapi", "v3"] => return Ok(Route::Json(reg.openapi_v3_root())),
        ["openapi", "v3", "api", v] => {
            return reg.openapi_v3_group_version("", v).map(Route::Json).ok_or_else(not_found);
        }
        ["openapi", "v3", "apis", g, v] => {
            return reg.openapi_v3_group_version(g, v).map(Route::Json).ok_or_else(not_found);
        }
        ["api"] => return Ok(Route::Json(reg.api_versions(&shared.address.to_string()))),
        ["apis"] => return Ok(Route::Json(reg.api_group_list())),
        ["api", "v1"] => return reg.resource_list("", "v1").map(Route::Json).ok_or_else(not_found),
        ["apis", g] => return reg.api_group(g).map(Route::Json).ok_or_else(not_found),
        ["apis", g, v] => return reg.resource_list(g, v).map(Route::Json).ok_or_else(not_found),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(not_found()),
    };
    let lookup = |plural: &str| reg.get(group, version, plural);
    let resource =
        |t: Arc<ResourceType>, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Route::Resource {
            t,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
        };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|t| t.namespaced) => {
            let t = lookup(plural).expect("checked");
            match tail {
                [] => Ok(resource(t, Some(ns), None, None)),
                [name] => Ok(resource(t, Some(ns), Some(name), None)),
                [name, sub] => Ok(resource(t, Some(ns), Some(name), Some(sub))),
                _ => Err(not_found()),
            }
        }
        [plural, tail @ ..] => {
            let t = lookup(plural).ok_or_else(not_found)?;
            match tail {
                [] => Ok(resource(t, None, None, None)),
                [name] if !t.namespaced => Ok(resource(t, None, Some(name), None)),
                [name, sub] if !t.namespaced => Ok(resource(t, None, Some(name), Some(sub))),
                _ => Err(not_found()),
            }
        }
        [] => Err(not_found()),
    }
}

fn json_response(code: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn value_response(code: StatusCode, v: &Value) -> Response<Body> {
    json_response(code, Bytes::from(serde_json::to_vec(v).expect("JSON")))
}

fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    value_response(code, &e.to_status())
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace(['"', '\n', '\r'], "'"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(url::form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect())
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| !v.is_empty())
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let as_table = table::wants_table(req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""));
    if content_type.starts_with("application/vnd.kubernetes.protobuf") || content_type.starts_with("application/cbor") {
        return error_response(&ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the fake API server speaks JSON only, not {content_type}"),
        ));
    }
    let r = match route(&shared, &path) {
        Ok(Route::Json(v)) if method == Method::GET => return value_response(StatusCode::OK, &v),
        Ok(Route::Text(t)) => {
            let mut r = Response::new(Full::new(Bytes::from_static(t.as_bytes())).boxed_unsync());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return r;
        }
        Ok(Route::Json(_)) => {
            return error_response(&ApiError::method_not_allowed(format!("{method} is not allowed on {path}")));
        }
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let Route::Resource { t, namespace, name, sub } = r else { unreachable!("handled above") };
    let verb = match (&method, name.is_some(), sub.as_deref()) {
        (&Method::GET, false, _) if query.flag("watch") => Verb::Watch,
        (&Method::GET, false, _) => Verb::List,
        (&Method::GET, true, _) => Verb::Get,
        (&Method::POST, false, _) => Verb::Create,
        (&Method::POST, true, Some("eviction")) => Verb::Evict,
        (&Method::POST, true, Some("binding")) => Verb::Create,
        (&Method::PUT, true, _) => Verb::Update,
        (&Method::PATCH, true, _) => Verb::Patch,
        (&Method::DELETE, true, _) => Verb::Delete,
        (&Method::DELETE, false, _) => Verb::DeleteCollection,
        _ => return error_response(&ApiError::method_not_allowed(format!("{method} is not allowed on {path}"))),
    };
    let resource_name = match &sub {
        Some(s) => format!("{}/{s}", t.plural),
        None => t.plural.clone(),
    };
    let (delay, injected) = shared.faults.check(verb, &resource_name);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(e) = injected {
        return error_response(&e);
    }
    if let Some(s) = sub.as_deref() {
        let allowed = (s == "status" && t.status) || t.extra_subresources.contains(&s);
        if !allowed {
            return error_response(&ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ));
        }
    }
    if t.read_only && verb.is_write() {
        return error_response(&ApiError::method_not_allowed(format!("{} is read-only through the API", t.plural)));
    }
    let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        match Limited::new(req.into_body(), shared.config.max_body_bytes).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error_response(&ApiError::new(413, "RequestEntityTooLarge", format!("request body: {e}")));
            }
        }
    } else {
        Bytes::new()
    };
    let ns = namespace.clone().unwrap_or_default();
    if is_pdbs(&t) || verb == Verb::Evict {
        flush_pdbs(&shared);
    }
    let result = match verb {
        Verb::List => list(&shared, &t, namespace.as_deref(), &query, as_table),
        Verb::Watch => return watch(&shared, t, namespace, &query),
        Verb::Get => {
            let got = shared.lock().get(&t, &ns, name.as_deref().unwrap_or(""));
            got.map(|s| {
                if as_table {
                    let rv = s.rv;
                    value_response(StatusCode::OK, &table::table(&t, &[t.view().value(s.value())], rv, None))
                } else {
                    json_response(StatusCode::OK, t.view().bytes(&s.json))
                }
            })
        }
        Verb::Create if sub.as_deref() == Some("binding") => {
            bind(&shared, &t, &ns, name.as_deref().unwrap_or(""), &body)
        }
        Verb::Create => create(&shared, &t, &ns, &body, &query).await,
        Verb::Update => {
            update(&shared, &t, &ns, name.as_deref().unwrap_or(""), sub.as_deref() == Some("status"), &body, &query)
        }
        Verb::Patch => {
            patch_object(&shared, &t, &ns, name.as_deref().unwrap_or(""), sub.as_deref(), &content_type, &body, &query)
        }
        Verb::Delete => delete(&shared, &t, &ns, name.as_deref().unwrap_or(""), &body, &query),
        Verb::DeleteCollection => delete_collection(&shared, &t, namespace.as_deref(), &query),
        Verb::Evict => evict(&shared, &t, &ns, name.as_deref().unwrap_or(""), &body, &query),
    };
    if verb.is_write() || verb == Verb::DeleteCollection {
        after_write(&shared, &t, &ns);
    }
    result.unwrap_or_else(|e| error_response(&e))
}

fn selectors(t: &ResourceType, query: &Query) -> Result<(LabelQuery, FieldQuery), ApiError> {
    let labels = LabelQuery::parse(query.get("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
    let mut fields = FieldQuery::parse(query.get("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
    if t.view() == View::EventsV1 {
        fields = fields.renamed(events::core_field_path);
    }
    Ok((labels, fields))
}

/// The type objects of `t` are written as (core Events for `events.k8s.io` Events).
fn storage_type(shared: &Shared, t: &ResourceType) -> Result<Arc<ResourceType>, ApiError> {
    let state = shared.lock();
    let found = match t.view() {
        View::Stored => state.registry.get(&t.group, &t.version, &t.plural),
        View::EventsV1 => state.registry.get("", "v1", "events"),
    };
    found.ok_or_else(|| ApiError::internal(format!("{} is not served", t.plural)))
}

fn list(
    shared: &Shared,
    t: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(t, query)?;
    let limit = match query.get("limit") {
        Some(l) => Some(l.parse::<usize>().map_err(|_| ApiError::bad_request(format!("limit: invalid value {l:?}")))?)
            .filter(|l| *l > 0),
        None => None,
    };
    let result =
        shared.lock().list(t, namespace, &labels, &fields, limit, query.get("continue").filter(|c| !c.is_empty()))?;
    if as_table {
        let objects: Vec<Value> = result.items.iter().map(|i| t.view().value(i.value())).collect();
        return Ok(value_response(
            StatusCode::OK,
            &table::table(t, &objects, result.rv, result.continue_token.as_deref()),
        ));
    }
    let mut meta = json!({"resourceVersion": result.rv.to_string()});
    if let Some(c) = &result.continue_token {
        meta["continue"] = json!(c);
    }
    let mut out = Vec::with_capacity(result.items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            t.kind,
            t.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, item) in result.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&t.view().bytes(&item.json));
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, Bytes::from(out)))
}

fn watch(shared: &Arc<Shared>, t: Arc<ResourceType>, namespace: Option<String>, query: &Query) -> Response<Body> {
    let (labels, fields) = match selectors(&t, query) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let from_rv = match query.get("resourceVersion").filter(|v| !v.is_empty() && *v != "0") {
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return error_response(&ApiError::bad_request(format!("resourceVersion: invalid value {v:?}"))),
        },
        None => None,
    };
    let send_initial = query.flag("sendInitialEvents");
    if send_initial && query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return error_response(&ApiError::invalid(
            "ListOptions",
            "",
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs);
    let filter = WatchFilter { key: t.key(), view: t.view(), namespace, labels, fields };
    // With sendInitialEvents the stream starts with the current state whatever the version given.
    let start_rv = if send_initial { None } else { from_rv };
    let started = shared.lock().watch(&t, filter, start_rv, send_initial);
    let start = match started {
        Ok(s) => s,
        // The real server answers a watch from a compacted version with 200 and an ERROR event.
        Err(e) if e.code == 410 => {
            let line = super::store::event_line("ERROR", &serde_json::to_vec(&e.to_status()).expect("JSON"));
            return json_response(StatusCode::OK, line);
        }
        Err(e) => return error_response(&e),
    };
    struct WatchState {
        rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
        deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
        ticker: tokio::time::Interval,
        bookmarks: bool,
        shared: Arc<Shared>,
        t: Arc<ResourceType>,
        id: u64,
    }
    let interval = shared.config.bookmark_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let st = WatchState {
        rx: start.rx,
        deadline: Box::pin(tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(1800)))),
        ticker,
        bookmarks,
        shared: shared.clone(),
        t,
        id: start.id,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            tokio::select! {
                line = st.rx.recv() => return line.map(|l| (Ok::<_, Infallible>(Frame::data(l)), st)),
                _ = &mut st.deadline => {
                    st.shared.lock().end_watch(st.id);
                    return None;
                }
                _ = st.ticker.tick(), if st.bookmarks => {
                    st.shared.lock().bookmark(&st.t, st.id);
                }
            }
        }
    });
    let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON or YAML: {e}")))
}

async fn create(
    shared: &Arc<Shared>,
    t: &Arc<ResourceType>,
    ns: &str,
    body: &[u8],
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let view = t.view();
    let mut obj = view.incoming(parse_body(body)?);
    let t = &storage_type(shared, t)?;
    let dry_run = query.dry_run();
    // As the real server does before admission: the object's namespace is the request's.
    if t.namespaced
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), json!(ns));
    }
    // Clients cannot set the status of types that have a status subresource on create.
    if t.status
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    let (hooks, ns_labels) = {
        let state = shared.lock();
        if t.namespaced
            && let Some(nst) = state.registry.get("", "v1", "namespaces")
            && state.get(&nst, "", ns).is_err()
        {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        let mwc = state.registry.get("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations");
        let configs: Vec<Value> =
            mwc.map(|m| state.objects(&m.key(), None).map(|o| o.value()).collect()).unwrap_or_default();
        let ns_labels = namespace_labels(&state, ns);
        let req = admission_request(t, ns, ns_labels.clone(), dry_run);
        (admission::matching_hooks(&configs, &req, &obj, &shared.config.services)?, ns_labels)
    };
    let mut warnings = Vec::new();
    if !hooks.is_empty() {
        let req = admission_request(t, ns, ns_labels, dry_run);
        let uid = shared.admission_uid.fetch_add(2000, Ordering::Relaxed);
        let admitted = admission::admit(&hooks, &req, obj, uid).await?;
        obj = admitted.object;
        warnings = admitted.warnings;
    }
    let stored = shared.lock().create(t, ns, obj, dry_run)?;
    Ok(with_warnings(json_response(StatusCode::CREATED, view.bytes(&stored.json)), &warnings))
}

fn admission_request<'a>(
    t: &'a ResourceType,
    ns: &'a str,
    namespace_labels: BTreeMap<String, String>,
    dry_run: bool,
) -> AdmissionRequest<'a> {
    AdmissionRequest {
        group: &t.group,
        version: &t.version,
        kind: &t.kind,
        resource: &t.plural,
        namespace: ns,
        namespace_labels,
        dry_run,
    }
}

fn namespace_labels(state: &State, ns: &str) -> BTreeMap<String, String> {
    let mut labels = state
        .registry
        .get("", "v1", "namespaces")
        .and_then(|t| state.get(&t, "", ns).ok())
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.into());
    labels
}

fn update(
    shared: &Shared,
    t: &ResourceType,
    ns: &str,
    name: &str,
    status_only: bool,
    body: &[u8],
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let view = t.view();
    let obj = view.incoming(parse_body(body)?);
    let t = &storage_type(shared, t)?;
    let stored = shared.lock().update(t, ns, name, obj, status_only, query.dry_run())?;
    Ok(json_response(StatusCode::OK, view.bytes(&stored.json)))
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    shared: &Shared,
    t: &ResourceType,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &[u8],
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let kind = PatchKind::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format ({content_type:?}); accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"))
    })?;
    if kind == PatchKind::Strategic && !t.group.is_empty() && t.group.contains('.') && !is_builtin_group(&t.group) {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "strategic merge patch is not supported for custom resources; use a merge patch",
        ));
    }
    let status_only = sub == Some("status");
    let view = t.view();
    let t = &storage_type(shared, t)?;
    let mut state = shared.lock();
    let current = match state.get(t, ns, name) {
        Ok(c) => view.value(c.value()),
        Err(e) if kind == PatchKind::Apply && !status_only => {
            let mut obj = patch::parse_object(kind, body)?;
            if obj.pointer("/metadata/name").is_none() {
                return Err(e);
            }
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let stored = state.create(t, ns, view.incoming(obj), query.dry_run())?;
            return Ok(json_response(StatusCode::CREATED, view.bytes(&stored.json)));
        }
        Err(e) => return Err(e),
    };
    let mut next = current.clone();
    patch::apply(kind, &mut next, body)
        .map_err(|e| ApiError { message: format!("{} \"{name}\": {}", t.kind, e.message), ..e })?;
    if kind == PatchKind::Apply && query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PATCH with application/apply-patch+yaml requires the fieldManager parameter",
        ));
    }
    let stored = state.update(t, ns, name, view.incoming(next), status_only, query.dry_run())?;
    Ok(json_response(StatusCode::OK, view.bytes(&stored.json)))
}

fn is_builtin_group(group: &str) -> bool {
    group.ends_with(".k8s.io") && group != "metrics.k8s.io"
}

fn delete_options(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))
}

fn delete(
    shared: &Shared,
    t: &ResourceType,
    ns: &str,
    name: &str,
    body: &[u8],
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(body)?;
    let dry_run = query.dry_run() || opts.get("dryRun").and_then(Value::as_array).is_some_and(|d| !d.is_empty());
    let stored = shared.lock().delete(t, ns, name, opts.get("preconditions"), dry_run)?;
    let v = stored.value();
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(json_response(StatusCode::OK, t.view().bytes(&stored.json)));
    }
    let uid = v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    Ok(value_response(StatusCode::OK, &success_status(&t.group, &t.plural, name, uid)))
}

fn delete_collection(
    shared: &Shared,
    t: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(t, query)?;
    let mut state = shared.lock();
    let items = state.list(t, namespace, &labels, &fields, None, None)?.items;
    let mut deleted = Vec::new();
    for item in items {
        let v = item.value();
        let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let ns = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        deleted.push(t.view().value(state.delete(t, &ns, &name, None, query.dry_run())?.value()));
    }
    let rv = state.resource_version();
    Ok(value_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}

fn evict(
    shared: &Shared,
    t: &ResourceType,
    ns: &str,
    name: &str,
    body: &[u8],
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let eviction = parse_body(body)?;
    eviction::evict(&mut shared.lock(), t, ns, name, &eviction, query.dry_run())?;
    Ok(value_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn bind(shared: &Shared, t: &ResourceType, ns: &str, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let binding = parse_body(body)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("Binding", name, "target.name: Required value"))?;
    let mut state = shared.lock();
    let mut pod = state.get(t, ns, name)?.value();
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            &t.group,
            &t.plural,
            name,
            &format!("pod {name} is already assigned to node {:?}", pod["spec"]["nodeName"]),
        ));
    }
    pod["spec"]["nodeName"] = json!(node);
    if let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    state.update(t, ns, name, pod, false, false)?;
    Ok(value_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
