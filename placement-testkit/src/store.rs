//! The fake server's storage: objects by type, a global resourceVersion, the event log that watches are
//! replayed from, and the open watches.
//!
//! Every write takes the one lock, bumps the resourceVersion, stores the object, appends to the log and
//! fans the event out to the open watches, in that order. A watch that starts from version `N` takes the
//! backlog (`rv > N`) and subscribes under the same lock, so no event is lost or seen twice between the
//! list and the watch. The log keeps the last `history_limit` events; a watch from an older version gets
//! `410 Gone`, as after etcd compaction.
//!
//! Objects are kept as their serialized JSON (plus labels for selectors): lists and watches copy bytes,
//! and 150,000 pods fit in a few hundred megabytes.

use super::events::View;
use super::resources::{Registry, ResourceType, TypeKey};
use super::selectors::{FieldQuery, LabelQuery};
use super::status::ApiError;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Namespace and name: where an object sits in its collection (namespace empty when cluster-scoped).
type Key = (String, String);

fn object_name(o: &Stored) -> String {
    #[derive(serde::Deserialize)]
    struct Meta {
        metadata: Name,
    }
    #[derive(serde::Deserialize)]
    struct Name {
        #[serde(default)]
        name: String,
    }
    serde_json::from_slice::<Meta>(&o.json).map(|m| m.metadata.name).unwrap_or_default()
}

/// One stored object version.
#[derive(Debug)]
pub struct Stored {
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    pub rv: u64,
}

impl Stored {
    fn new(value: &Value, rv: u64) -> Arc<Self> {
        let labels = value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
            .unwrap_or_default();
        let json = Bytes::from(serde_json::to_vec(value).expect("a JSON value always serializes"));
        Arc::new(Stored { json, labels, rv })
    }

    /// The object as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("stored bytes are JSON written by this module")
    }
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

struct LogEntry {
    rv: u64,
    key: TypeKey,
    namespace: String,
    name: String,
    etype: EventType,
    object: Arc<Stored>,
    /// The version before a modification: a watch with a selector turns a change that leaves (or enters)
    /// the selection into DELETED (or ADDED), as the real server does.
    old: Option<Arc<Stored>>,
}

/// What a watch selects.
#[derive(Clone, Debug)]
pub struct WatchFilter {
    pub key: TypeKey,
    /// How the watcher sees the objects (events.k8s.io Events are stored as core Events).
    pub view: View,
    pub namespace: Option<String>,
    pub labels: LabelQuery,
    pub fields: FieldQuery,
}

impl WatchFilter {
    fn matches(&self, namespace: &str, object: &Stored) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        if !self.labels.matches(&object.labels) {
            return false;
        }
        self.fields.is_empty() || self.fields.matches(&object.value())
    }
}

struct Watcher {
    id: u64,
    filter: WatchFilter,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// A list result: the matching objects at `rv`, and a continue token when `limit` cut it short.
pub struct ListResult {
    pub items: Vec<Arc<Stored>>,
    pub rv: u64,
    pub continue_token: Option<String>,
}

/// A started watch: the receiving end of its event lines.
pub struct WatchStart {
    pub id: u64,
    pub rx: mpsc::UnboundedReceiver<Bytes>,
}

/// The whole mutable state of the fake server.
pub struct State {
    pub registry: Registry,
    rv: u64,
    /// Events with `rv > oldest_rv` are in the log; a watch from an older version is answered with 410.
    oldest_rv: u64,
    log: VecDeque<LogEntry>,
    history_limit: usize,
    collections: HashMap<TypeKey, BTreeMap<(String, String), Arc<Stored>>>,
    watchers: Vec<Watcher>,
    next_watcher: u64,
    next_uid: u64,
}

/// One event line as the watch protocol sends it.
pub fn event_line(etype: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(etype.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn ensure_metadata(v: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    let obj = v.as_object_mut().ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    meta.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// DNS-1123 subdomain, as the server requires of most names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
fn spec_part(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    c
}

/// Equality ignoring the fields the server owns, to detect no-op writes.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
            m.remove("generation");
        }
        c
    };
    strip(a) == strip(b)
}

impl State {
    pub fn new(registry: Registry, history_limit: usize) -> Self {
        State {
            registry,
            rv: 1,
            oldest_rv: 1,
            log: VecDeque::new(),
            history_limit: history_limit.max(1),
            collections: HashMap::new(),
            watchers: Vec::new(),
            next_watcher: 0,
            next_uid: 0,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Forgets the whole event log: every watch from an older version gets 410 Gone.
    pub fn compact(&mut self) {
        self.log.clear();
        self.oldest_rv = self.rv;
    }

    /// Closes every open watch; clients see the stream end and must re-watch.
    pub fn drop_watches(&mut self) -> usize {
        let n = self.watchers.len();
        self.watchers.clear();
        n
    }

    pub fn watch_count(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Result<Arc<Stored>, ApiError> {
        self.collections
            .get(&t.key())
            .and_then(|c| c.get(&(namespace.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, name))
    }

    /// Objects of a type, optionally in one namespace, in key order.
    pub fn objects<'a>(&'a self, key: &TypeKey, namespace: Option<&'a str>) -> impl Iterator<Item = &'a Arc<Stored>> {
        self.collections
            .get(key)
            .into_iter()
            .flat_map(|c| c.iter())
            .filter(move |((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, v)| v)
    }

    pub fn list(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelQuery,
        fields: &FieldQuery,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListResult, ApiError> {
        let (list_rv, after) = match continue_token {
            Some(tok) => {
                let (rv, ns, name) = decode_continue(tok)?;
                if rv < self.oldest_rv {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result.",
                    ));
                }
                (rv, Some((ns, name)))
            }
            None => (self.rv, None),
        };
        let empty = BTreeMap::new();
        let coll = self.collections.get(&t.key()).unwrap_or(&empty);
        // Later pages are served as of the first page's version: objects changed since are read as they
        // were then, from the event log (the version before their earliest later change).
        let mut overlay: BTreeMap<Key, Option<Arc<Stored>>> = BTreeMap::new();
        if list_rv < self.rv {
            let tkey = t.key();
            for e in self.log.iter().rev().take_while(|e| e.rv > list_rv).filter(|e| e.key == tkey) {
                overlay.insert((e.namespace.clone(), e.name.clone()), e.old.clone());
            }
        }
        // Start after the continue key, and at the namespace when listing one.
        let floor: Key = match namespace {
            Some(ns) => (ns.to_string(), String::new()),
            None => (String::new(), String::new()),
        };
        let lower = match &after {
            Some(k) if *k >= floor => Bound::Excluded(k.clone()),
            _ => Bound::Included(floor),
        };
        let mut current = coll.range((lower.clone(), Bound::Unbounded)).peekable();
        let mut then = overlay.range((lower, Bound::Unbounded)).peekable();
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        loop {
            // Merge the two ordered key streams; the overlay wins where both have a key.
            let (key, obj): (&Key, Option<&Arc<Stored>>) = match (current.peek(), then.peek()) {
                (None, None) => break,
                (Some((ck, _)), Some((ok, _))) if ck == ok => {
                    current.next();
                    let (k, o) = then.next().expect("peeked");
                    (k, o.as_ref())
                }
                (Some((ck, _)), Some((ok, _))) if ok < ck => {
                    let (k, o) = then.next().expect("peeked");
                    (k, o.as_ref())
                }
                (Some(_), _) => {
                    let (k, o) = current.next().expect("peeked");
                    (k, Some(o))
                }
                (None, Some(_)) => {
                    let (k, o) = then.next().expect("peeked");
                    (k, o.as_ref())
                }
            };
            if namespace.is_some_and(|want| want != key.0) {
                break;
            }
            let Some(obj) = obj else { continue };
            if !labels.matches(&obj.labels) || (!fields.is_empty() && !fields.matches(&obj.value())) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                break;
            }
            items.push(obj.clone());
            last_key = Some(key.clone());
        }
        let continue_token = if more { last_key.map(|(ns, name)| encode_continue(list_rv, &ns, &name)) } else { None };
        Ok(ListResult { items, rv: list_rv, continue_token })
    }

    /// Starts a watch from `from_rv` (`None`: the current state as synthetic ADDED events, then changes).
    /// With `initial_events_end`, a bookmark annotated `k8s.io/initial-events-end` follows the initial
    /// events (streaming lists).
    pub fn watch(
        &mut self,
        t: &ResourceType,
        filter: WatchFilter,
        from_rv: Option<u64>,
        initial_events_end: bool,
    ) -> Result<WatchStart, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        match from_rv {
            None => {
                for obj in self.objects(&filter.key, filter.namespace.as_deref()) {
                    if filter.labels.matches(&obj.labels)
                        && (filter.fields.is_empty() || filter.fields.matches(&obj.value()))
                    {
                        let _ = tx.send(event_line("ADDED", &filter.view.bytes(&obj.json)));
                    }
                }
                if initial_events_end {
                    let _ = tx.send(bookmark_line(t, self.rv, true));
                }
            }
            Some(rv) if rv < self.oldest_rv => {
                return Err(ApiError::gone(format!("too old resource version: {rv} ({})", self.oldest_rv)));
            }
            Some(rv) => {
                for e in self.log.iter().filter(|e| e.rv > rv && e.key == filter.key) {
                    if let Some(line) = render_for(&filter, e) {
                        let _ = tx.send(line);
                    }
                }
            }
        }
        self.next_watcher += 1;
        let id = self.next_watcher;
        self.watchers.push(Watcher { id, filter, tx });
        Ok(WatchStart { id, rx })
    }

    /// Sends a bookmark at the current version to watch `id` (all events up to it were already sent).
    pub fn bookmark(&mut self, t: &ResourceType, id: u64) -> bool {
        let line = bookmark_line(t, self.rv, false);
        match self.watchers.iter().find(|w| w.id == id) {
            Some(w) => w.tx.send(line).is_ok(),
            None => false,
        }
    }

    pub fn end_watch(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    fn next_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    fn generated_name(&self, t: &ResourceType, namespace: &str, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut seed = (self.rv ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        loop {
            let suffix: String = (0..5)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char
                })
                .collect();
            let name = format!("{prefix}{suffix}");
            if self.get(t, namespace, &name).is_err() {
                return name;
            }
        }
    }

    fn record(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        etype: EventType,
        object: Arc<Stored>,
        old: Option<Arc<Stored>>,
    ) {
        let name = object_name(&object);
        let entry =
            LogEntry { rv: object.rv, key: t.key(), namespace: namespace_key(t, namespace), name, etype, object, old };
        self.watchers.retain(|w| {
            if w.filter.key != entry.key {
                return !w.tx.is_closed();
            }
            match render_for(&w.filter, &entry) {
                Some(line) => w.tx.send(line).is_ok(),
                None => !w.tx.is_closed(),
            }
        });
        self.log.push_back(entry);
        while self.log.len() > self.history_limit {
            if let Some(e) = self.log.pop_front() {
                self.oldest_rv = e.rv;
            }
        }
    }

    /// Creates an object: name or generateName, uid, creationTimestamp, resourceVersion, generation.
    pub fn create(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        check_type(t, &obj)?;
        let name = match meta_str(&obj, "name") {
            Some(n) => n.to_string(),
            None => match meta_str(&obj, "generateName") {
                Some(prefix) => self.generated_name(t, namespace, prefix),
                None => {
                    return Err(ApiError::invalid(
                        &t.kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                &t.kind,
                &name,
                "metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
            ));
        }
        if self.get(t, namespace, &name).is_ok() {
            return Err(ApiError::already_exists(&t.group, &t.plural, &name));
        }
        let body_ns = meta_str(&obj, "namespace").map(str::to_string);
        if t.namespaced {
            if body_ns.as_deref().is_some_and(|ns| ns != namespace) {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        } else if body_ns.is_some() {
            // The real server clears the namespace of cluster-scoped objects.
        }
        let uid = self.next_uid();
        let has_spec = obj.get("spec").is_some();
        let meta = ensure_metadata(&mut obj)?;
        meta.insert("name".into(), json!(name));
        if t.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
        meta.remove("managedFields");
        if has_spec {
            meta.insert("generation".into(), json!(1));
        }
        apply_defaults(t, &mut obj, &name);
        if t.key() == crd_key() {
            // Validate before anything is stored; registration happens after the write.
            self.registry.clone().register_crd(&obj).map_err(|e| ApiError::invalid(&t.kind, &name, e))?;
        }
        if dry_run {
            obj["metadata"]["resourceVersion"] = json!("");
            return Ok(Stored::new(&obj, self.rv));
        }
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if t.key() == crd_key() {
            mark_crd_established(&mut obj);
            self.registry.register_crd(&obj).map_err(|e| ApiError::invalid(&t.kind, &name, e))?;
        }
        let stored = Stored::new(&obj, rv);
        self.collections.entry(t.key()).or_default().insert((namespace_key(t, namespace), name), stored.clone());
        self.record(t, namespace, EventType::Added, stored.clone(), None);
        Ok(stored)
    }

    /// Replaces an object (or, with `status_only`, its status). A non-empty `metadata.resourceVersion`
    /// that is not the current one is a 409 Conflict; an unchanged object is not written again.
    pub fn update(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        check_type(t, &obj)?;
        let current = self.get(t, namespace, name)?;
        let cur = current.value();
        if let Some(body_name) = meta_str(&obj, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && rv != current.rv.to_string()
        {
            return Err(ApiError::conflict(
                &t.group,
                &t.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if status_only {
            let status = obj.get("status").cloned();
            obj = cur.clone();
            match status {
                Some(s) => obj["status"] = s,
                None => {
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        } else {
            if t.status {
                match cur.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(o) = obj.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            // Server-owned metadata survives a replace.
            let meta = ensure_metadata(&mut obj)?;
            for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                match cur["metadata"].get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.insert("name".into(), json!(name));
            if t.namespaced {
                meta.insert("namespace".into(), json!(namespace));
            }
            meta.remove("managedFields");
            apply_defaults(t, &mut obj, name);
            if spec_part(&obj) != spec_part(&cur) && cur["metadata"].get("generation").is_some() {
                let g = cur["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                obj["metadata"]["generation"] = json!(g);
            }
        }
        obj["metadata"]["resourceVersion"] = json!(current.rv.to_string());
        if same_content(&obj, &cur) {
            return Ok(current);
        }
        if dry_run {
            return Ok(Stored::new(&obj, current.rv));
        }
        let finalized = obj["metadata"].get("deletionTimestamp").is_some()
            && obj["metadata"].get("finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty());
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let stored = Stored::new(&obj, rv);
        let key = (namespace_key(t, namespace), name.to_string());
        if finalized {
            self.collections.entry(t.key()).or_default().remove(&key);
            self.after_delete(t, &obj);
            self.record(t, namespace, EventType::Deleted, stored.clone(), Some(current));
        } else {
            self.collections.entry(t.key()).or_default().insert(key, stored.clone());
            self.record(t, namespace, EventType::Modified, stored.clone(), Some(current));
        }
        Ok(stored)
    }

    /// Deletes an object: with finalizers it only gains a deletionTimestamp (and is removed when the last
    /// finalizer goes); otherwise it is removed at once. `preconditions` are checked first.
    pub fn delete(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        preconditions: Option<&Value>,
        dry_run: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        let current = self.get(t, namespace, name)?;
        let mut obj = current.value();
        if let Some(p) = preconditions {
            if let Some(uid) = p.get("uid").and_then(Value::as_str)
                && meta_str(&obj, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(
                    &t.group,
                    &t.plural,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}"),
                ));
            }
            if let Some(rv) = p.get("resourceVersion").and_then(Value::as_str)
                && rv != current.rv.to_string()
            {
                return Err(ApiError::conflict(
                    &t.group,
                    &t.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.rv
                    ),
                ));
            }
        }
        if dry_run {
            return Ok(current);
        }
        let has_finalizers = obj["metadata"].get("finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (namespace_key(t, namespace), name.to_string());
        if has_finalizers {
            if obj["metadata"].get("deletionTimestamp").is_some() {
                self.rv -= 1;
                return Ok(current);
            }
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let stored = Stored::new(&obj, rv);
            self.collections.entry(t.key()).or_default().insert(key, stored.clone());
            self.record(t, namespace, EventType::Modified, stored.clone(), Some(current));
            return Ok(stored);
        }
        self.collections.entry(t.key()).or_default().remove(&key);
        let stored = Stored::new(&obj, rv);
        self.after_delete(t, &obj);
        self.record(t, namespace, EventType::Deleted, stored.clone(), Some(current));
        Ok(stored)
    }

    fn after_delete(&mut self, t: &ResourceType, obj: &Value) {
        if t.key() == crd_key()
            && let (Some(group), Some(plural)) = (
                obj.pointer("/spec/group").and_then(Value::as_str),
                obj.pointer("/spec/names/plural").and_then(Value::as_str),
            )
        {
            self.registry.remove(group, plural);
            self.collections.remove(&TypeKey { group: group.into(), plural: plural.into() });
        }
        if t.key() == (TypeKey { group: String::new(), plural: "namespaces".into() })
            && let Some(ns) = meta_str(obj, "name")
        {
            // The namespace controller's job, done at once: everything in the namespace goes too.
            let types: Vec<Arc<ResourceType>> =
                self.collections.keys().filter_map(|k| self.type_for_key(k)).filter(|ty| ty.namespaced).collect();
            for ty in types {
                let names: Vec<String> = self
                    .objects(&ty.key(), Some(ns))
                    .filter_map(|o| meta_str(&o.value(), "name").map(str::to_string))
                    .collect();
                for n in names {
                    let _ = self.force_delete(&ty, ns, &n);
                }
            }
        }
    }

    fn force_delete(&mut self, t: &ResourceType, namespace: &str, name: &str) -> Result<(), ApiError> {
        let current = self.get(t, namespace, name)?;
        let mut obj = current.value();
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.collections.entry(t.key()).or_default().remove(&(namespace.to_string(), name.to_string()));
        let stored = Stored::new(&obj, self.rv);
        self.record(t, namespace, EventType::Deleted, stored, Some(current));
        Ok(())
    }

    /// The served type stored under `key` (any served version).
    pub fn type_for_key(&self, key: &TypeKey) -> Option<Arc<ResourceType>> {
        self.registry.by_key(key)
    }
}

fn namespace_key(t: &ResourceType, namespace: &str) -> String {
    if t.namespaced { namespace.to_string() } else { String::new() }
}

fn crd_key() -> TypeKey {
    TypeKey { group: "apiextensions.k8s.io".into(), plural: "customresourcedefinitions".into() }
}

fn check_type(t: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let kind = obj.get("kind").and_then(Value::as_str);
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    if kind.is_some_and(|k| k != t.kind) || api_version.is_some_and(|v| v != t.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}), or the kind ({}) does not match {}",
            api_version.unwrap_or(""),
            t.api_version(),
            kind.unwrap_or(""),
            t.kind
        )));
    }
    Ok(())
}

/// The defaults the real server (or its controllers, at once) would fill in.
fn apply_defaults(t: &ResourceType, obj: &mut Value, name: &str) {
    if obj.get("kind").is_none() {
        obj["kind"] = json!(t.kind);
    }
    if obj.get("apiVersion").is_none() {
        obj["apiVersion"] = json!(t.api_version());
    }
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") if obj.pointer("/status/phase").is_none() => {
            if !obj.get("status").is_some_and(Value::is_object) {
                obj["status"] = json!({});
            }
            obj["status"]["phase"] = json!("Pending");
        }
        ("", "namespaces") => {
            if !obj["metadata"].get("labels").is_some_and(Value::is_object) {
                obj["metadata"]["labels"] = json!({});
            }
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
}

fn mark_crd_established(obj: &mut Value) {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let now = now_rfc3339();
    obj["status"] = json!({
        "acceptedNames": names,
        "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array)
            .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    });
}

/// The line a watch with `filter` sees for `e`, if any.
fn render_for(filter: &WatchFilter, e: &LogEntry) -> Option<Bytes> {
    let now = filter.matches(&e.namespace, &e.object);
    let before = e.old.as_ref().is_some_and(|o| filter.matches(&e.namespace, o));
    let etype = match (e.etype, before, now) {
        (EventType::Added, _, true) => EventType::Added,
        (EventType::Modified, true, true) => EventType::Modified,
        (EventType::Modified, false, true) => EventType::Added,
        (EventType::Modified, true, false) => EventType::Deleted,
        (EventType::Deleted, true, _) => EventType::Deleted,
        _ => return None,
    };
    Some(event_line(etype.as_str(), &filter.view.bytes(&e.object.json)))
}

fn bookmark_line(t: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": meta});
    event_line("BOOKMARK", &serde_json::to_vec(&obj).expect("JSON"))
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = serde_json::to_vec(&json!({"rv": rv, "ns": ns, "name": name})).expect("JSON");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(tok: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {tok:?}"));
    if !tok.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..tok.len()).step_by(2).map(|i| u8::from_str_radix(&tok[i..i + 2], 16)).collect();
    let v: Value = serde_json::from_slice(&bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let ns = v.get("ns").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}

impl Registry {
    /// The served type stored under `key` (the first served version).
    pub fn by_key(&self, key: &TypeKey) -> Option<Arc<ResourceType>> {
        self.all().find(|t| t.group == key.group && t.plural == key.plural)
    }
}
