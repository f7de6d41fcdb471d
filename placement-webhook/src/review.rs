//! The AdmissionReview v1 wire format, both ways.
//!
//! What this module decides, and why:
//!
//! * **Only `admission.k8s.io/v1` is accepted.** A `v1beta1` review (or anything else) is an error that
//!   says so, because the response must carry the request's apiVersion and this server only speaks v1
//!   (the webhook configuration must list `admissionReviewVersions: ["v1"]`).
//! * **The uid survives as much damage as possible.** The API server discards a response whose uid does
//!   not match its request, so the body is first read as plain JSON and `request.uid` taken from there;
//!   the rest is validated afterwards. [`recover_uid`] and [`Response::for_invalid`] use the same rule
//!   for bodies that fail validation further down.
//! * **A response never denies.** There is no way to write `allowed: false` here: the webhook fails open
//!   (docs/webhook.md, "Failure behaviour"), so a body that is not a usable review is answered
//!   `allowed: true`, unmutated, with a warning naming what is wrong ([`Response::for_invalid`]).
//! * **Errors name what is wrong** (JSON line/column, the field path inside `request.object` through
//!   `serde_path_to_error`) and carry a short, fixed [`ReviewError::metric_label`]. Values quoted from the
//!   input, field paths and serde's messages (which quote unknown variants whole) are bounded, so a
//!   hostile body cannot produce an unbounded log line.
//! * **Nothing here panics on input.** Depth is bounded by serde_json's recursion limit (a too-deep body
//!   is a "not JSON" error); the size of the body is the HTTP layer's business.
//! * **The response is written by hand, not with kube-core's `AdmissionResponse`**, which serializes
//!   `patch` as an array of numbers (kube-rs issue 1781). Here `patch` is the base64 *string* of the JSON
//!   Patch and `patchType` is `"JSONPatch"`; an empty patch emits neither field. Every response echoes the
//!   uid and carries `apiVersion`/`kind`. Warnings are bounded in number and length.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The only AdmissionReview version this server reads and writes.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The kind of the review envelope.
pub const KIND: &str = "AdmissionReview";
/// At most this many warnings are sent back; the rest are dropped.
pub const MAX_WARNINGS: usize = 8;
/// A warning longer than this many characters is cut (ending with `…`).
pub const MAX_WARNING_CHARS: usize = 256;
/// Values quoted from the input inside error messages are cut to this many characters.
const MAX_EXCERPT_CHARS: usize = 64;
/// A field path inside an error message is cut to this many characters (map keys come from the input).
const MAX_PATH_CHARS: usize = 128;
/// A deserializer's message inside an error is cut to this many characters (it may quote the input).
const MAX_MESSAGE_CHARS: usize = 160;

/// Why a body is not a usable AdmissionReview v1 request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The body is not JSON at all (or nests deeper than serde_json's recursion limit).
    #[error("body is not JSON: {message} (line {line}, column {column})")]
    NotJson { line: usize, column: usize, message: String },
    /// The body is JSON but not an object.
    #[error("body is JSON {found}, not an AdmissionReview object")]
    NotAnObject { found: &'static str },
    /// `apiVersion` is missing or is not `admission.k8s.io/v1`.
    #[error(
        "apiVersion is {found}, expected \"admission.k8s.io/v1\" (list only v1 in the webhook's admissionReviewVersions)"
    )]
    WrongApiVersion { found: String },
    /// `kind` is missing or is not `AdmissionReview`.
    #[error("kind is {found}, expected \"AdmissionReview\"")]
    WrongKind { found: String },
    /// The envelope has no `request` object.
    #[error("AdmissionReview has no request object (request is {found})")]
    MissingRequest { found: String },
    /// `request.uid` is absent or empty.
    #[error("request.uid is missing or empty")]
    MissingUid,
    /// `request.uid` is not a string.
    #[error("request.uid must be a string, found {found}")]
    InvalidUid { found: &'static str },
    /// A field of the request (other than the object) has the wrong shape.
    #[error("request field {path} is invalid: {message}")]
    InvalidRequest { path: String, message: String },
    /// A CREATE or UPDATE without `request.object`.
    #[error("request.object is missing for a {operation} request")]
    MissingObject { operation: String },
    /// The review says the object is a core/v1 Pod but it does not read as one.
    #[error("request.object is not a core/v1 Pod: at {path}: {message}")]
    ObjectNotPod { path: String, message: String },
}

impl ReviewError {
    /// A short, fixed label for metrics (bounded cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::NotJson { .. } => "not_json",
            ReviewError::NotAnObject { .. } => "not_an_object",
            ReviewError::WrongApiVersion { .. } => "wrong_api_version",
            ReviewError::WrongKind { .. } => "wrong_kind",
            ReviewError::MissingRequest { .. } => "missing_request",
            ReviewError::MissingUid => "missing_uid",
            ReviewError::InvalidUid { .. } => "invalid_uid",
            ReviewError::InvalidRequest { .. } => "invalid_request",
            ReviewError::MissingObject { .. } => "missing_object",
            ReviewError::ObjectNotPod { .. } => "object_not_pod",
        }
    }
}

/// The object under review.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// The review's kind is core/v1 Pod: the typed pod, and what a JSON Patch is planned against (see
    /// `patch::plan_patch_json`): the object as the API server sent it, or, when the review was read
    /// straight into the typed pod, the parts of it the planner reads (`metadata.annotations`,
    /// `spec.nodeSelector`, `spec.affinity`, from the typed pod; that pod has no `managedFields`).
    Pod { pod: Box<Pod>, raw: Value },
    /// Any other kind, kept as sent.
    Other(Value),
}

impl Object {
    /// The typed pod, when the object is one.
    pub fn pod(&self) -> Option<&Pod> {
        match self {
            Object::Pod { pod, .. } => Some(pod),
            Object::Other(_) => None,
        }
    }

    /// The object as the API server sent it; for a pod, possibly only the parts a patch is planned
    /// against (see [`Object::Pod`]).
    pub fn raw(&self) -> &Value {
        match self {
            Object::Pod { raw, .. } | Object::Other(raw) => raw,
        }
    }
}

/// An AdmissionReview v1 request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response.
    pub uid: String,
    /// Kind of the object (for pods: group "", version "v1", kind "Pod").
    pub kind: GroupVersionKind,
    /// Resource being requested (for pods: group "", version "v1", resource "pods").
    pub resource: GroupVersionResource,
    /// Subresource, e.g. `ephemeralcontainers`; `None` for the main resource.
    pub sub_resource: Option<String>,
    /// Namespace of the object; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name of the object; empty on CREATE with `generateName`.
    pub name: String,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Operation,
    /// A dry-run request must have no side effects (no reservations recorded).
    pub dry_run: bool,
    /// The new object (absent on DELETE and usually on CONNECT).
    pub object: Option<Object>,
    /// The old object on UPDATE and DELETE, as sent.
    pub old_object: Option<Value>,
    /// The operation's options (e.g. `CreateOptions`), as sent.
    pub options: Option<Value>,
}

impl Request {
    /// The typed pod, when the object is one.
    pub fn pod(&self) -> Option<&Pod> {
        self.object.as_ref().and_then(Object::pod)
    }

    /// Whether the review is about a core/v1 Pod.
    pub fn is_pod(&self) -> bool {
        is_core_v1_pod(&self.kind)
    }
}

/// The request fields read with serde. The typed path reads the uid and the pod here; the checked path
/// takes both out of the JSON value first (to name their errors and keep the uid), so they are absent
/// when it reads the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<O> {
    #[serde(default)]
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default = "Option::default")]
    object: Option<O>,
    #[serde(default)]
    old_object: Option<Value>,
    #[serde(default)]
    options: Option<Value>,
}

impl<O> WireRequest<O> {
    /// The request, with the uid and the object as read (empty strings and nulls mean absent).
    fn into_request(self, uid: String, object: Option<Object>) -> Request {
        Request {
            uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource.filter(|s| !s.is_empty()),
            namespace: self.namespace.filter(|s| !s.is_empty()),
            name: self.name.unwrap_or_default(),
            operation: self.operation,
            dry_run: self.dry_run.unwrap_or(false),
            object,
            old_object: self.old_object.filter(|v| !v.is_null()),
            options: self.options.filter(|v| !v.is_null()),
        }
    }
}

fn is_core_v1_pod(kind: &GroupVersionKind) -> bool {
    kind.group.is_empty() && kind.version == "v1" && kind.kind == "Pod"
}

/// The JSON type of a value, for messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value quoted from the input, bounded in length.
fn excerpt(value: Option<&Value>) -> String {
    match value {
        None => "missing".to_owned(),
        Some(value) => bounded(&value.to_string(), MAX_EXCERPT_CHARS),
    }
}

/// How a fail-open warning ends.
pub const ADMITTED_UNMUTATED: &str = "the pod is admitted unmutated";

/// A warning `placement: <why>; <then>` of at most [`MAX_WARNING_CHARS`] characters: `why` is cut (ending
/// with `…`) so that `then`, what happens to the pod, is always read.
pub fn warning(why: &str, then: &str) -> String {
    let room = MAX_WARNING_CHARS.saturating_sub("placement: ; ".chars().count() + then.chars().count());
    format!("placement: {}; {then}", bounded(why, room))
}

/// `text` cut to at most `max` characters (the last one `…` when cut).
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The path reported by `serde_path_to_error`, under a prefix (`"."` is its root), bounded.
fn join_path(prefix: &str, path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    let joined = if path == "." { prefix.to_owned() } else { format!("{prefix}.{path}") };
    bounded(&joined, MAX_PATH_CHARS)
}

/// A deserializer's message, bounded.
fn message_of(error: impl std::fmt::Display) -> String {
    bounded(&error.to_string(), MAX_MESSAGE_CHARS)
}

/// Reads a body as JSON, or says where it stops being JSON.
fn read_json(body: &[u8]) -> Result<Value, ReviewError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's Display appends " at line L column C"; keep the message without it.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(at) => full[..at].to_owned(),
            None => full,
        };
        ReviewError::NotJson { line: e.line(), column: e.column(), message: bounded(&message, MAX_MESSAGE_CHARS) }
    })
}

/// Takes `request.uid` from an already parsed body, if it is a non-empty string.
fn uid_of(review: &Value) -> Option<&str> {
    review.get("request")?.get("uid")?.as_str().filter(|uid| !uid.is_empty())
}

/// The uid of a body that may be invalid in other ways: `request.uid` when the body is JSON and it is a
/// non-empty string.
pub fn recover_uid(body: &[u8]) -> Option<String> {
    let review: Value = serde_json::from_slice(body).ok()?;
    uid_of(&review).map(str::to_owned)
}

/// What can be read of a body that [`parse_review`] rejected, for its answer and its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// `request.uid`, when the body is JSON and it is a non-empty string.
    pub uid: Option<String>,
    /// `request.dryRun`, when it is `true`.
    pub dry_run: bool,
}

/// [`recover_uid`], and whether the request says it is a dry run.
pub fn recover(body: &[u8]) -> Recovered {
    let Ok(review) = serde_json::from_slice::<Value>(body) else { return Recovered::default() };
    let dry_run = review.get("request").and_then(|r| r.get("dryRun")).and_then(Value::as_bool).unwrap_or(false);
    Recovered { uid: uid_of(&review).map(str::to_owned), dry_run }
}

/// Parses and validates an AdmissionReview v1 request body.
///
/// A pod CREATE as the API server sends it is read straight into the typed request ([`PodReview`]);
/// anything that path does not take whole (an error anywhere, another kind, a pod without metadata or
/// spec, a duplicate key, an escaped `apiVersion`) is read again through a JSON value, which keeps the
/// uid through any damage and names what is wrong. Both give the same request (tested): the first is only
/// faster, by not building a JSON value of the pod and not tracking field paths. (It skips the fields
/// nobody reads without validating them, so an invalid escape there is not an error on that path.)
pub fn parse_review(body: &[u8]) -> Result<Request, ReviewError> {
    match parse_pod_review(body) {
        Some(request) => Ok(request),
        None => parse_review_checked(body),
    }
}

/// The envelope of a pod review, typed.
#[derive(Deserialize)]
struct PodReview<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: &'a str,
    #[serde(borrow)]
    kind: &'a str,
    request: WireRequest<PodObject>,
}

/// A pod as k8s-openapi reads it (its spec and status are read by k8s-openapi itself), but for
/// `metadata.managedFields`, which nothing here reads: a field manager's entry holds a JSON tree of
/// field names, and reading those trees was a fifth of the cost of reading a pod.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodObject {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<PodMetadata>,
    #[serde(default)]
    spec: Option<k8s_openapi::api::core::v1::PodSpec>,
    #[serde(default)]
    status: Option<k8s_openapi::api::core::v1::PodStatus>,
}

/// `ObjectMeta` without `managedFields`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMetadata {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl PodObject {
    /// The typed pod, if `apiVersion` and `kind` (when given) say it is one, as k8s-openapi requires.
    fn into_pod(self) -> Option<Pod> {
        if self.api_version.as_ref().is_some_and(|v| v != "v1") || self.kind.as_ref().is_some_and(|k| k != "Pod") {
            return None;
        }
        let metadata = self.metadata.map(|m| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        });
        Some(Pod { metadata: metadata.unwrap_or_default(), spec: self.spec, status: self.status })
    }
}

/// A review of a core/v1 Pod with a uid, metadata and a spec, read straight into the typed request
/// (without `metadata.managedFields`, see [`PodObject`]); `None` for anything else (which
/// [`parse_review_checked`] reads).
fn parse_pod_review(body: &[u8]) -> Option<Request> {
    // Skipped fields are not validated: invalid UTF-8 in one would pass here and fail the checked path.
    let body = std::str::from_utf8(body).ok()?;
    let review: PodReview<'_> = serde_json::from_str(body).ok()?;
    let mut wire = review.request;
    if review.api_version != API_VERSION || review.kind != KIND || wire.uid.is_empty() || !is_core_v1_pod(&wire.kind) {
        return None;
    }
    let pod = wire.object.take()?.into_pod()?;
    if pod.spec.is_none() || pod.metadata == Default::default() {
        return None;
    }
    // Typed values are those the JSON had: metadata and spec were objects, and the planner reads only these.
    let raw = patch_view(&pod).ok()?;
    let uid = std::mem::take(&mut wire.uid);
    Some(wire.into_request(uid, Some(Object::Pod { pod: Box::new(pod), raw })))
}

/// What a patch is planned against, from a typed pod that has metadata and a spec: `metadata.annotations`,
/// `spec.nodeSelector` and `spec.affinity`, those it has.
fn patch_view(pod: &Pod) -> Result<Value, serde_json::Error> {
    let mut metadata = Map::new();
    if let Some(annotations) = &pod.metadata.annotations {
        metadata.insert("annotations".to_owned(), serde_json::to_value(annotations)?);
    }
    let mut spec = Map::new();
    if let Some(pod_spec) = &pod.spec {
        if let Some(selector) = &pod_spec.node_selector {
            spec.insert("nodeSelector".to_owned(), serde_json::to_value(selector)?);
        }
        if let Some(affinity) = &pod_spec.affinity {
            spec.insert("affinity".to_owned(), serde_json::to_value(affinity)?);
        }
    }
    let mut view = Map::new();
    view.insert("metadata".to_owned(), Value::Object(metadata));
    view.insert("spec".to_owned(), Value::Object(spec));
    Ok(Value::Object(view))
}

/// [`parse_review`] through a JSON value: every error named, the uid kept whatever else is wrong.
pub fn parse_review_checked(body: &[u8]) -> Result<Request, ReviewError> {
    let review = read_json(body)?;
    let Value::Object(mut envelope) = review else {
        return Err(ReviewError::NotAnObject { found: json_type(&review) });
    };

    match envelope.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        other => return Err(ReviewError::WrongApiVersion { found: excerpt(other) }),
    }
    match envelope.get("kind") {
        Some(Value::String(k)) if k == KIND => {}
        other => return Err(ReviewError::WrongKind { found: excerpt(other) }),
    }
    let mut request = match envelope.remove("request") {
        Some(Value::Object(request)) => request,
        other => return Err(ReviewError::MissingRequest { found: excerpt(other.as_ref()) }),
    };

    let uid = match request.remove("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => uid,
        None | Some(Value::Null) | Some(Value::String(_)) => return Err(ReviewError::MissingUid),
        Some(other) => return Err(ReviewError::InvalidUid { found: json_type(&other) }),
    };

    let object = match request.remove("object") {
        None | Some(Value::Null) => None,
        Some(object) => Some(object),
    };

    let wire: WireRequest<Value> = serde_path_to_error::deserialize(Value::Object(request)).map_err(|e| {
        ReviewError::InvalidRequest { path: join_path("request", e.path()), message: message_of(e.into_inner()) }
    })?;

    if object.is_none() && matches!(wire.operation, Operation::Create | Operation::Update) {
        return Err(ReviewError::MissingObject { operation: operation_name(&wire.operation).to_owned() });
    }

    let object = match object {
        None => None,
        Some(raw) if is_core_v1_pod(&wire.kind) => {
            let pod: Pod = serde_path_to_error::deserialize(&raw).map_err(|e| ReviewError::ObjectNotPod {
                path: join_path("request.object", e.path()),
                message: message_of(e.into_inner()),
            })?;
            Some(Object::Pod { pod: Box::new(pod), raw })
        }
        Some(raw) => Some(Object::Other(raw)),
    };

    Ok(wire.into_request(uid, object))
}

/// The wire name of an operation.
pub fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// An AdmissionReview v1 response, built step by step and written with [`Response::to_review_json`].
/// It always says `allowed: true`: this webhook fails open and has no way to deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    uid: String,
    patch: Option<String>,
    warnings: Vec<String>,
    audit_annotations: BTreeMap<String, String>,
}

impl Response {
    /// Admits the request unchanged (add a patch with [`Response::with_patch`]).
    pub fn allow(uid: impl Into<String>) -> Self {
        Response { uid: uid.into(), patch: None, warnings: Vec::new(), audit_annotations: BTreeMap::new() }
    }

    /// The answer to a body that [`parse_review`] rejected: allowed, unmutated, with a warning naming the
    /// error, echoing the uid when it can be recovered from the body ([`recover_uid`]). Without one the
    /// uid is empty: the API server discards an answer whose uid is not its request's, counts the call as
    /// failed and applies the webhook's `failurePolicy` (`Ignore`: the pod is created unmutated), so the
    /// answer is `allowed: true` all the same, for any other caller.
    pub fn for_invalid(body: &[u8], error: &ReviewError) -> Self {
        Response::for_invalid_uid(recover_uid(body), error)
    }

    /// [`Response::for_invalid`] with the uid already recovered.
    pub fn for_invalid_uid(uid: Option<String>, error: &ReviewError) -> Self {
        let why = format!("malformed AdmissionReview: {error}");
        let warning = match &uid {
            Some(_) => warning(&why, ADMITTED_UNMUTATED),
            None => warning(&why, "no readable request.uid, so the API server applies the webhook's failurePolicy"),
        };
        Response::allow(uid.unwrap_or_default()).with_warnings(vec![warning])
    }

    /// Sets the JSON Patch to apply (base64 of its JSON, `patchType: JSONPatch`). An empty patch sends no
    /// patch fields.
    pub fn with_patch(mut self, ops: &json_patch::Patch) -> Self {
        if ops.0.is_empty() {
            self.patch = None;
            return self;
        }
        match serde_json::to_vec(ops) {
            Ok(json) => self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json)),
            Err(error) => {
                // Not reachable for patches of JSON values; never send a half-written patch.
                tracing::error!(%error, "could not serialize the JSON Patch; admitting without it");
                self.patch = None;
            }
        }
        self
    }

    /// Adds warnings shown to the client (kubectl prints them). At most [`MAX_WARNINGS`] are kept in
    /// all, each cut to [`MAX_WARNING_CHARS`] characters; control characters become spaces and empty
    /// warnings are dropped.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        for warning in warnings {
            if self.warnings.len() >= MAX_WARNINGS {
                break;
            }
            let clean: String =
                warning.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned();
            if clean.is_empty() {
                continue;
            }
            self.warnings.push(bounded(&clean, MAX_WARNING_CHARS));
        }
        self
    }

    /// Adds audit annotations (the API server prefixes each key with the webhook's name).
    pub fn with_audit_annotations(mut self, annotations: impl IntoIterator<Item = (String, String)>) -> Self {
        self.audit_annotations.extend(annotations);
        self
    }

    /// The uid echoed.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The base64 JSON Patch, if any.
    pub fn patch_base64(&self) -> Option<&str> {
        self.patch.as_deref()
    }

    /// The warnings as they will be sent.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The response as a JSON value (the full AdmissionReview envelope).
    pub fn to_review_value(&self) -> Value {
        let mut response = Map::new();
        response.insert("uid".into(), Value::String(self.uid.clone()));
        response.insert("allowed".into(), Value::Bool(true));
        if let Some(patch) = &self.patch {
            response.insert("patchType".into(), Value::String("JSONPatch".into()));
            response.insert("patch".into(), Value::String(patch.clone()));
        }
        if !self.warnings.is_empty() {
            response.insert("warnings".into(), self.warnings.iter().cloned().map(Value::String).collect());
        }
        if !self.audit_annotations.is_empty() {
            let annotations =
                self.audit_annotations.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            response.insert("auditAnnotations".into(), Value::Object(annotations));
        }
        let mut review = Map::new();
        review.insert("apiVersion".into(), Value::String(API_VERSION.into()));
        review.insert("kind".into(), Value::String(KIND.into()));
        review.insert("response".into(), Value::Object(response));
        Value::Object(review)
    }

    /// The response body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{…}}`,
    /// [`Self::to_review_value`] written straight from the response (no JSON value built on the way).
    pub fn to_review_json(&self) -> Vec<u8> {
        let review = ReviewOut {
            api_version: API_VERSION,
            kind: KIND,
            response: ResponseOut {
                uid: &self.uid,
                allowed: true,
                patch_type: self.patch.as_ref().map(|_| "JSONPatch"),
                patch: self.patch.as_deref(),
                warnings: &self.warnings,
                audit_annotations: &self.audit_annotations,
            },
        };
        // Strings, a bool and a map of strings: nothing here can fail to serialize.
        serde_json::to_vec(&review).unwrap_or_else(|_| self.to_review_value().to_string().into_bytes())
    }
}

/// The envelope of an answer, as written.
#[derive(serde::Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

/// An answer's `response`, as written.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
}

#[cfg(test)]
mod tests;
