//! The Gateway API actuator: the `weight` of one `backendRef` of an `HTTPRoute`, read and patched through
//! the kube client.
//!
//! What it decides, and why:
//! - **No Gateway API crate.** The route is a [`DynamicObject`] of `gateway.networking.k8s.io/v1`
//!   `HTTPRoute`; only `spec.rules[].backendRefs[].{name,weight}` are read, and only `weight` is written,
//!   so every other field (matches, filters, ports, fields of newer Gateway API versions) is untouched.
//! - **Which backend.** A backendRef is matched by `name` (and must be a Service: no `group`/`kind`, or
//!   the core group and `Service`). With `ruleIndex` only that rule counts; without it, every rule that
//!   lists the managed backend does, and each of them must also list the base backend. A rule listing
//!   the same backend name twice is ambiguous and an error, never a guess.
//! - **The base weight is read** from the base backendRef of the first counted rule. Rules that disagree
//!   on the base weight are an error that asks for `ruleIndex`: the law would otherwise follow whichever
//!   rule came first. A missing `weight` is Gateway API's default, 1.
//! - **Writes are one JSON Patch** guarded by a `test` of the route's `resourceVersion`, setting the
//!   managed backend's weight in every counted rule. A route changed between our read and our patch makes
//!   the API server refuse it (409 or 422); the write then reads again, a few times at most.
//! - **Only while leading**: the [`WriteGate`] is asked right before each patch.
//! - The weight range is Gateway API's: 0..=1,000,000.
#![forbid(unsafe_code)]

use std::ops::RangeInclusive;

use futures::future::BoxFuture;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use super::actuator::{Actuator, ActuatorError, Weights, WriteGate, WriteOutcome};

/// Gateway API's largest backend weight.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// A backendRef without `weight` has this weight (Gateway API's default).
pub const DEFAULT_WEIGHT: u32 = 1;
/// Reads and patches tried when the route keeps changing under us.
const WRITE_ATTEMPTS: u32 = 3;

/// Which backend of which route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendRef {
    pub namespace: String,
    /// The HTTPRoute's name.
    pub route: String,
    /// The backendRef whose weight is managed.
    pub backend: String,
    /// The backendRef whose weight is read as the base.
    pub base_backend: String,
    /// Only this rule (0-based); `None`: every rule listing `backend`.
    pub rule_index: Option<usize>,
}

/// The Gateway API `HTTPRoute` type as a dynamic resource.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// Where the managed and base weights sit in the route: one entry per counted rule.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Located {
    resource_version: String,
    /// (rule index, managed backendRef index, its weight if set, base weight)
    rules: Vec<(usize, usize, Option<u32>, u32)>,
}

impl Located {
    fn managed(&self) -> u32 {
        self.rules[0].2.unwrap_or(DEFAULT_WEIGHT)
    }
}

/// Reads and writes one HTTPRoute backend weight; see the module docs.
pub struct HttpRouteActuator {
    api: Api<DynamicObject>,
    target: BackendRef,
    gate: WriteGate,
}

impl HttpRouteActuator {
    pub fn new(client: kube::Client, target: BackendRef) -> Self {
        let api = Api::namespaced_with(client, &target.namespace, &http_route_resource());
        HttpRouteActuator { api, target, gate: WriteGate::open() }
    }

    /// Asked right before every patch; a closed gate sends nothing.
    pub fn with_write_gate(mut self, gate: WriteGate) -> Self {
        self.gate = gate;
        self
    }

    fn route_desc(&self) -> String {
        format!("HTTPRoute {}/{}", self.target.namespace, self.target.route)
    }

    fn kube_error(&self, action: &str, e: kube::Error) -> ActuatorError {
        let target = self.route_desc();
        match e {
            kube::Error::Api(s) if s.code == 404 => ActuatorError::NotFound {
                what: target,
                detail: " (is the Gateway API HTTPRoute CRD, gateway.networking.k8s.io/v1, installed?)".into(),
            },
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
                ActuatorError::Auth { target, message: format!("{action}: {}", s.message) }
            }
            kube::Error::Api(s) if s.code == 429 => {
                ActuatorError::Throttled { target, code: "429".into(), attempts: 1, message: s.message }
            }
            kube::Error::Api(s) => ActuatorError::Api { target, code: s.code.to_string(), message: s.message },
            other => ActuatorError::Transport { target, message: format!("{action}: {other}") },
        }
    }

    async fn locate(&self) -> Result<Located, ActuatorError> {
        let route = self.api.get(&self.target.route).await.map_err(|e| self.kube_error("reading", e))?;
        locate(&route, &self.target, &self.route_desc())
    }

    async fn write_weight(&self, weight: u32, dry_run: bool) -> Result<WriteOutcome, ActuatorError> {
        super::actuator::check_weight(self, weight)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let found = self.locate().await?;
            let from = found.managed();
            if found.rules.iter().all(|r| r.2.unwrap_or(DEFAULT_WEIGHT) == weight) {
                return Ok(WriteOutcome::Unchanged { weight });
            }
            if dry_run {
                return Ok(WriteOutcome::DryRun { from, to: weight });
            }
            let patch = weight_patch(&found, weight);
            let params = PatchParams {
                field_manager: Some(placement_kube::field_manager::OPERATOR.into()),
                ..PatchParams::default()
            };
            if !self.gate.is_open() {
                return Err(ActuatorError::NotLeader { target: self.describe() });
            }
            match self.api.patch(&self.target.route, &params, &Patch::Json::<()>(patch)).await {
                Ok(_) => return Ok(WriteOutcome::Changed { from, to: weight }),
                // Changed since we read it: the resourceVersion test failed.
                Err(kube::Error::Api(s)) if (s.code == 409 || s.code == 422) && attempt < WRITE_ATTEMPTS => continue,
                Err(e) => return Err(self.kube_error("patching", e)),
            }
        }
    }
}

/// A JSON Patch setting the managed weight in every located rule, guarded by the resourceVersion.
fn weight_patch(found: &Located, weight: u32) -> json_patch::Patch {
    use placement_kube::patch::{add, replace, test, unchanged_since};
    let mut ops = vec![unchanged_since(&found.resource_version)];
    for (rule, backend, current, _) in &found.rules {
        let (rule, backend) = (rule.to_string(), backend.to_string());
        let path = ["spec", "rules", rule.as_str(), "backendRefs", backend.as_str(), "weight"];
        match current {
            Some(w) => {
                ops.push(test(&path, json!(w)));
                ops.push(replace(&path, json!(weight)));
            }
            None => ops.push(add(&path, json!(weight))),
        }
    }
    json_patch::Patch(ops)
}

/// Whether a backendRef is a Service (the only kind whose weight we manage).
fn is_service(b: &Value) -> bool {
    let group = b.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
    group.is_empty() && kind == "Service"
}

/// Index of the backendRef named `name` in `refs`: `Ok(None)` if absent, an error if listed twice.
fn find_backend(refs: &[Value], name: &str, what: &str) -> Result<Option<usize>, ActuatorError> {
    let hits: Vec<usize> = refs
        .iter()
        .enumerate()
        .filter(|(_, b)| b.get("name").and_then(Value::as_str) == Some(name) && is_service(b))
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(ActuatorError::Invalid {
            target: what.to_string(),
            message: format!(
                "backendRef {name:?} is listed {} times in one rule; which one is meant is ambiguous",
                hits.len()
            ),
        }),
    }
}

fn weight_of(b: &Value, what: &str, path: &str) -> Result<Option<u32>, ActuatorError> {
    match b.get("weight") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().and_then(|w| u32::try_from(w).ok()).filter(|w| *w <= MAX_WEIGHT).map(Some).ok_or_else(|| {
                ActuatorError::Invalid {
                    target: what.to_string(),
                    message: format!("{path}.weight is {v}, not a weight in 0..=1000000"),
                }
            })
        }
    }
}

/// Finds the managed and base backendRefs in `route` (see the module docs for the rules).
fn locate(route: &DynamicObject, t: &BackendRef, what: &str) -> Result<Located, ActuatorError> {
    let resource_version = route.metadata.resource_version.clone().unwrap_or_default();
    let empty = Vec::new();
    let rules = route.data.pointer("/spec/rules").and_then(Value::as_array).unwrap_or(&empty);
    let candidates: Vec<usize> = match t.rule_index {
        Some(i) if i < rules.len() => vec![i],
        Some(i) => {
            return Err(ActuatorError::NotFound {
                what: format!("{what} rule {i}"),
                detail: format!(" (the route has {} rule(s))", rules.len()),
            });
        }
        None => (0..rules.len()).collect(),
    };
    let mut located = Vec::new();
    for i in candidates {
        let refs = rules[i].get("backendRefs").and_then(Value::as_array).unwrap_or(&empty);
        let Some(m) = find_backend(refs, &t.backend, what)? else {
            if t.rule_index.is_some() {
                return Err(ActuatorError::NotFound {
                    what: format!("backendRef {:?} in {what} rule {i}", t.backend),
                    detail: String::new(),
                });
            }
            continue;
        };
        let Some(b) = find_backend(refs, &t.base_backend, what)? else {
            return Err(ActuatorError::NotFound {
                what: format!("base backendRef {:?} in {what} rule {i}", t.base_backend),
                detail: format!(" (the rule lists the managed backend {:?} but not the base)", t.backend),
            });
        };
        let path = format!("spec.rules[{i}].backendRefs");
        let managed = weight_of(&refs[m], what, &format!("{path}[{m}]"))?;
        let base = weight_of(&refs[b], what, &format!("{path}[{b}]"))?.unwrap_or(DEFAULT_WEIGHT);
        located.push((i, m, managed, base));
    }
    let Some(first) = located.first() else {
        return Err(ActuatorError::NotFound {
            what: format!("backendRef {:?} in {what}", t.backend),
            detail: format!(" (no rule of {} lists it)", rules.len()),
        });
    };
    if let Some(other) = located.iter().find(|r| r.3 != first.3) {
        return Err(ActuatorError::Invalid {
            target: what.to_string(),
            message: format!(
                "rules {} and {} give the base backend {:?} different weights ({} and {}); set ruleIndex",
                first.0, other.0, t.base_backend, first.3, other.3
            ),
        });
    }
    Ok(Located { resource_version, rules: located })
}

impl Actuator for HttpRouteActuator {
    fn describe(&self) -> String {
        let rule = self.target.rule_index.map(|i| format!(" rule {i}")).unwrap_or_default();
        format!("{}{rule} backend {:?}", self.route_desc(), self.target.backend)
    }

    fn weight_range(&self) -> RangeInclusive<u32> {
        0..=MAX_WEIGHT
    }

    fn read(&self) -> BoxFuture<'_, Result<Weights, ActuatorError>> {
        Box::pin(async move {
            let found = self.locate().await?;
            Ok(Weights { managed: found.managed(), base: found.rules[0].3 })
        })
    }

    fn write(&self, weight: u32, dry_run: bool) -> BoxFuture<'_, Result<WriteOutcome, ActuatorError>> {
        Box::pin(self.write_weight(weight, dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rules: Value) -> DynamicObject {
        let mut o = DynamicObject::new("web", &http_route_resource()).within("shop");
        o.metadata.resource_version = Some("7".into());
        o.data = json!({"spec": {"rules": rules}});
        o
    }

    fn target(rule_index: Option<usize>) -> BackendRef {
        BackendRef {
            namespace: "shop".into(),
            route: "web".into(),
            backend: "canary".into(),
            base_backend: "stable".into(),
            rule_index,
        }
    }

    fn err(rules: Value, rule_index: Option<usize>) -> String {
        locate(&route(rules), &target(rule_index), "HTTPRoute shop/web").unwrap_err().to_string()
    }

    #[test]
    fn finds_weights_with_gateway_api_defaults() {
        let r = route(json!([
            {"backendRefs": [{"name": "other"}]},
            {"backendRefs": [{"name": "stable", "port": 80, "weight": 8}, {"name": "canary", "port": 80}]},
            {"backendRefs": [{"name": "canary", "weight": 3}, {"name": "stable", "weight": 8}]},
        ]));
        let found = locate(&r, &target(None), "x").unwrap();
        assert_eq!(found.rules, vec![(1, 1, None, 8), (2, 0, Some(3), 8)]);
        assert_eq!(found.managed(), DEFAULT_WEIGHT, "a missing weight is 1");
        let only = locate(&r, &target(Some(2)), "x").unwrap();
        assert_eq!(only.rules, vec![(2, 0, Some(3), 8)]);
        let patch = serde_json::to_value(weight_patch(&found, 16)).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "add", "path": "/spec/rules/1/backendRefs/1/weight", "value": 16},
                {"op": "test", "path": "/spec/rules/2/backendRefs/0/weight", "value": 3},
                {"op": "replace", "path": "/spec/rules/2/backendRefs/0/weight", "value": 16},
            ])
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            err(json!([{"backendRefs": [{"name": "stable"}]}]), None),
            "backendRef \"canary\" in HTTPRoute shop/web not found (no rule of 1 lists it)"
        );
        assert_eq!(
            err(json!([{"backendRefs": [{"name": "canary"}]}]), None),
            "base backendRef \"stable\" in HTTPRoute shop/web rule 0 not found (the rule lists the managed backend \"canary\" but not the base)"
        );
        assert_eq!(
            err(json!([{"backendRefs": [{"name": "canary"}, {"name": "stable"}]}]), Some(3)),
            "HTTPRoute shop/web rule 3 not found (the route has 1 rule(s))"
        );
        assert!(
            err(json!([{"backendRefs": [{"name": "canary"}, {"name": "canary"}, {"name": "stable"}]}]), None)
                .contains("is listed 2 times in one rule")
        );
        assert!(
            err(
                json!([
                    {"backendRefs": [{"name": "canary"}, {"name": "stable", "weight": 8}]},
                    {"backendRefs": [{"name": "canary"}, {"name": "stable", "weight": 9}]},
                ]),
                None
            )
            .ends_with("rules 0 and 1 give the base backend \"stable\" different weights (8 and 9); set ruleIndex")
        );
        assert!(
            err(json!([{"backendRefs": [{"name": "canary", "weight": -1}, {"name": "stable"}]}]), None)
                .contains("spec.rules[0].backendRefs[0].weight is -1")
        );
        // A backendRef of another kind with the same name is not the Service.
        assert!(
            err(
                json!([{"backendRefs": [{"name": "canary", "kind": "Bucket", "group": "x.io"}, {"name": "stable"}]}]),
                None
            )
            .contains("not found")
        );
    }
}
