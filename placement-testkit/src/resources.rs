//! The resource types the fake API server knows, and the discovery documents built from them.
//!
//! Built-in types are listed here once (group, version, kind, plural, scope, short names, subresources);
//! a `CustomResourceDefinition` created through the API registers its served versions, exactly as the real
//! server starts serving a CRD, so tests (and `kubectl apply -f deploy/crds`) install our CRDs the same way a
//! cluster does.

use super::events::View;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One served resource: `group/version`, `kind`, plural name, scope and subresources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Has a `/status` subresource: the main endpoint ignores status changes and the status endpoint
    /// ignores everything else.
    pub status: bool,
    /// Other subresources served for this type (`eviction`, `binding` on pods).
    pub extra_subresources: Vec<&'static str>,
    /// Read-only types (metrics.k8s.io) reject writes through the API; tests set them with the handle.
    pub read_only: bool,
    /// The OpenAPI v3 schema of a custom resource version, served for `kubectl explain`.
    pub schema: Option<Value>,
    /// A custom resource version's `additionalPrinterColumns`, for `kubectl get` tables.
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The key a type is stored under: one version per group and plural; `events.k8s.io` Events are
    /// core Events ([`super::events`]).
    pub fn key(&self) -> TypeKey {
        if self.view() == View::EventsV1 {
            return TypeKey { group: String::new(), plural: "events".into() };
        }
        TypeKey { group: self.group.clone(), plural: self.plural.clone() }
    }

    /// How stored objects are shown through this type.
    pub fn view(&self) -> View {
        if self.group == "events.k8s.io" && self.plural == "events" { View::EventsV1 } else { View::Stored }
    }

    fn discovery_entry(&self) -> Vec<Value> {
        let mut verbs = vec!["get", "list", "watch"];
        if !self.read_only {
            verbs.extend(["create", "update", "patch", "delete", "deletecollection"]);
        }
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "categories": if self.group == "placement.dev" { vec!["placement"] } else { vec![] },
        })];
        if self.status {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        for sub in &self.extra_subresources {
            let (kind, group, version) = match *sub {
                "eviction" => ("Eviction", "policy", "v1"),
                _ => ("Binding", "", "v1"),
            };
            out.push(json!({
                "name": format!("{}/{}", self.plural, sub),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": group,
                "version": version,
                "kind": kind,
                "verbs": ["create"],
            }));
        }
        out
    }
}

/// Where a type's objects live: group and plural (the version is part of the type, not the key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeKey {
    pub group: String,
    pub plural: String,
}

/// The set of served types.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "Namespace", "namespaces", false, &["ns"], true),
    b("", "v1", "Node", "nodes", false, &["no"], true),
    b("", "v1", "Pod", "pods", true, &["po"], true),
    b("", "v1", "Event", "events", true, &["ev"], false),
    b("", "v1", "Secret", "secrets", true, &[], false),
    b("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
    b("", "v1", "Service", "services", true, &["svc"], true),
    b("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], false),
    b("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"], true),
    b("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], true),
    b("apps", "v1", "Deployment", "deployments", true, &["deploy"], true),
    b("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], true),
    b("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"], true),
    b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true),
    b("apps", "v1", "ControllerRevision", "controllerrevisions", true, &[], false),
    b("batch", "v1", "Job", "jobs", true, &[], true),
    b("batch", "v1", "CronJob", "cronjobs", true, &["cj"], true),
    b("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"], true),
    b("coordination.k8s.io", "v1", "Lease", "leases", true, &[], false),
    b("events.k8s.io", "v1", "Event", "events", true, &["ev"], false),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
    ),
    b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[], false),
    b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[], false),
    b("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], false),
    b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[], false),
];

const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin { group, version, kind, plural, namespaced, short, status }
}

impl Registry {
    /// The built-in types plus `metrics.k8s.io/v1beta1` nodes and pods (read-only).
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        for t in BUILTINS {
            r.insert(ResourceType {
                group: t.group.into(),
                version: t.version.into(),
                kind: t.kind.into(),
                plural: t.plural.into(),
                singular: t.kind.to_lowercase(),
                namespaced: t.namespaced,
                short_names: t.short.iter().map(|s| s.to_string()).collect(),
                status: t.status,
                extra_subresources: if t.plural == "pods" { vec!["eviction", "binding"] } else { vec![] },
                read_only: false,
                schema: None,
                printer_columns: Vec::new(),
            });
        }
        for (kind, plural, namespaced) in [("NodeMetrics", "nodes", false), ("PodMetrics", "pods", true)] {
            r.insert(ResourceType {
                group: "metrics.k8s.io".into(),
                version: "v1beta1".into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: String::new(),
                namespaced,
                short_names: vec![],
                status: false,
                extra_subresources: vec![],
                read_only: true,
                schema: None,
                printer_columns: Vec::new(),
            });
        }
        r
    }

    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert((t.group.clone(), t.version.clone(), t.plural.clone()), Arc::new(t));
    }

    /// Removes every version of `group/plural` (a deleted CRD stops being served).
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.types.retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Every served type.
    pub fn all(&self) -> impl Iterator<Item = Arc<ResourceType>> + '_ {
        self.types.values().cloned()
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }

    /// The type of an object body by its `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types.values().find(|t| t.api_version() == api_version && t.kind == kind).cloned()
    }

    /// Registers the served versions of a CRD object; returns the types added.
    pub fn register_crd(&mut self, crd: &Value) -> Result<Vec<Arc<ResourceType>>, String> {
        let spec = crd.get("spec").ok_or("spec is required")?;
        let group = spec.get("group").and_then(Value::as_str).ok_or("spec.group is required")?;
        let names = spec.get("names").ok_or("spec.names is required")?;
        let plural = names.get("plural").and_then(Value::as_str).ok_or("spec.names.plural is required")?;
        let kind = names.get("kind").and_then(Value::as_str).ok_or("spec.names.kind is required")?;
        let singular = names.get("singular").and_then(Value::as_str).unwrap_or(&kind.to_lowercase()).to_string();
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let namespaced = match spec.get("scope").and_then(Value::as_str) {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => return Err(format!("spec.scope must be Namespaced or Cluster, got {other:?}")),
        };
        let versions = spec.get("versions").and_then(Value::as_array).ok_or("spec.versions is required")?;
        let mut added = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            let name =
                v.get("name").and_then(Value::as_str).ok_or_else(|| format!("spec.versions[{i}].name is required"))?;
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let status = v.pointer("/subresources/status").is_some();
            let t = ResourceType {
                group: group.into(),
                version: name.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: singular.clone(),
                namespaced,
                short_names: short_names.clone(),
                status,
                extra_subresources: vec![],
                read_only: false,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            };
            self.insert(t.clone());
            added.push(Arc::new(t));
        }
        Ok(added)
    }

    /// `GET /api`: the core group's versions.
    pub fn api_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })
    }

    /// `GET /apis`: every named group with its versions.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self.groups().into_iter().map(|(g, versions)| group_doc(&g, &versions)).collect();
        json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
    }

    /// `GET /apis/{group}`.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let versions = self.groups().remove(group)?;
        let mut doc = group_doc(group, &versions);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let resources: Vec<Value> = self
            .types
            .values()
            .filter(|t| t.group == group && t.version == version)
            .flat_map(|t| t.discovery_entry())
            .collect();
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }))
    }

    /// `GET /openapi/v3`: one entry per served group-version.
    pub fn openapi_v3_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for t in self.types.values() {
            let key = if t.group.is_empty() {
                format!("api/{}", t.version)
            } else {
                format!("apis/{}/{}", t.group, t.version)
            };
            paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=fake")}));
        }
        json!({ "paths": paths })
    }

    /// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`: the PATCH operation of every
    /// type with its group-version-kind and the `fieldValidation` parameter, which is what kubectl reads
    /// to decide that the server validates fields itself. No schemas are served (kubectl then falls back
    /// to its compiled-in types for strategic merge patches).
    pub fn openapi_v3_group_version(&self, group: &str, version: &str) -> Option<Value> {
        let mut paths = serde_json::Map::new();
        for t in self.types.values().filter(|t| t.group == group && t.version == version) {
            let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
            let path = if t.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
            } else {
                format!("{prefix}/{}/{{name}}", t.plural)
            };
            paths.insert(
                path,
                json!({"patch": {
                    "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}},
                }}),
            );
        }
        if paths.is_empty() {
            return None;
        }
        // Custom resources' schemas, so that `kubectl explain` shows their descriptions.
        let mut schemas = serde_json::Map::new();
        for t in self.types.values().filter(|t| t.group == group && t.version == version) {
            if let Some(schema) = &t.schema {
                let mut s = schema.clone();
                s["x-kubernetes-group-version-kind"] =
                    json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
                let reversed: Vec<&str> = t.group.split('.').rev().collect();
                schemas.insert(format!("{}.{}.{}", reversed.join("."), t.version, t.kind), s);
            }
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (placement fake)", "version": "v1.33.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        }))
    }

    fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values().filter(|t| !t.group.is_empty()) {
            let versions = out.entry(t.group.clone()).or_default();
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        out
    }
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({ "name": group, "versions": vs, "preferredVersion": vs[0] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_named_groups_are_discoverable() {
        let r = Registry::builtin();
        let core = r.resource_list("", "v1").unwrap();
        let names: Vec<&str> =
            core["resources"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"pods/eviction"));
        let groups = r.api_group_list();
        let gnames: Vec<&str> =
            groups["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert!(gnames.contains(&"apps") && gnames.contains(&"metrics.k8s.io"));
        assert!(!gnames.contains(&""));
        let metrics = r.resource_list("metrics.k8s.io", "v1beta1").unwrap();
        assert_eq!(metrics["resources"][0]["verbs"], json!(["get", "list", "watch"]));
    }

    #[test]
    fn a_crd_registers_its_served_versions() {
        let mut r = Registry::builtin();
        let crd = json!({"spec": {"group": "placement.dev", "scope": "Namespaced",
            "names": {"plural": "poddistributions", "kind": "PodDistribution", "shortNames": ["pdist"]},
            "versions": [{"name": "v1alpha1", "served": true, "subresources": {"status": {}}},
                         {"name": "v0", "served": false}]}});
        let added = r.register_crd(&crd).unwrap();
        assert_eq!(added.len(), 1);
        let t = r.get("placement.dev", "v1alpha1", "poddistributions").unwrap();
        assert!(t.status && t.namespaced);
        assert!(r.get("placement.dev", "v0", "poddistributions").is_none());
        assert!(r.register_crd(&json!({"spec": {"group": "x", "names": {"plural": "a", "kind": "A"}, "scope": "Global", "versions": []}})).unwrap_err().contains("spec.scope"));
    }
}
