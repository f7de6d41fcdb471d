//! Deployments and StatefulSets as the zone balancer sees them: whether the pod template already pins a
//! zone (and how), the decision annotation this operator leaves on a workload, and the JSON Patches that
//! pin or re-pin one.
//!
//! A template **pins** a zone through a `nodeSelector` entry on the topology key, a required node
//! affinity of one term with `key In [zone]`, or a preferred term with `key In [zone]`. Any other use of
//! the key (several terms, several values, `NotIn`, ...) is a user constraint we must not combine with a
//! zone of our own (the intersection could be empty): the workload is left alone.
//!
//! The patches are JSON Patches (RFC 6902) that touch exactly one nodeSelector key, one preferred term,
//! and one annotation, and start with a `test` of the `resourceVersion` read: if anything changed the
//! workload since the plan was made (the user pinned it meanwhile), the API server refuses the patch and
//! the next reconcile plans again. A merge patch would replace the whole preferred-term list; server-side
//! apply would take ownership of that list (it is atomic): both could clobber user fields.

use json_patch::PatchOperation;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use placement_core::model::{WorkloadKind, WorkloadRef};
use placement_kube::patch::{add, replace, unchanged_since};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The annotation recording this operator's decision on a workload (JSON, see [`ZoneDecision`]).
pub const DECISION_ANNOTATION: &str = "placement.dev/zone-decision";

/// What this operator decided for a workload, kept in [`DECISION_ANNOTATION`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneDecision {
    /// The ZoneBalancer (same namespace) that decided.
    pub balancer: String,
    pub zone: String,
    /// `pin` (first decision) or `move` (rebalancing).
    pub action: DecisionAction,
    /// The zone before a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub reason: String,
    pub at: jiff::Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DecisionAction {
    Pin,
    Move,
}

/// How a template pins its zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    NodeSelector,
    RequiredAffinity,
    /// The preferred term at this index.
    Preferred(usize),
}

/// What a template says about the topology key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePin {
    None,
    Zone {
        zone: String,
        via: Via,
    },
    /// Used otherwise; the text says how.
    Constrained(String),
}

/// A term `key In [zone]` with nothing else, as this operator writes it.
fn single_zone(exprs: &[k8s_openapi::api::core::v1::NodeSelectorRequirement], key: &str) -> Option<String> {
    match exprs.iter().filter(|e| e.key == key).collect::<Vec<_>>().as_slice() {
        [e] if e.operator == "In" && e.values.as_ref().is_some_and(|v| v.len() == 1) => {
            e.values.as_ref().and_then(|v| v.first().cloned())
        }
        _ => None,
    }
}

/// Reads the zone pin of a pod template.
pub fn template_pin(spec: Option<&PodSpec>, key: &str) -> TemplatePin {
    let Some(spec) = spec else { return TemplatePin::None };
    if let Some(zone) = spec.node_selector.as_ref().and_then(|s| s.get(key)) {
        return TemplatePin::Zone { zone: zone.clone(), via: Via::NodeSelector };
    }
    let node_affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
    if let Some(required) = node_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()) {
        let terms = &required.node_selector_terms;
        let uses_key =
            terms.iter().any(|t| t.match_expressions.as_deref().unwrap_or_default().iter().any(|e| e.key == key));
        if uses_key {
            if let [term] = terms.as_slice()
                && let Some(zone) = single_zone(term.match_expressions.as_deref().unwrap_or_default(), key)
            {
                return TemplatePin::Zone { zone, via: Via::RequiredAffinity };
            }
            return TemplatePin::Constrained(format!("its required node affinity constrains {key}"));
        }
    }
    let preferred = node_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref());
    let mut zones = Vec::new();
    for (i, term) in preferred.unwrap_or_default().iter().enumerate() {
        let exprs = term.preference.match_expressions.as_deref().unwrap_or_default();
        if exprs.iter().any(|e| e.key == key) {
            match single_zone(exprs, key) {
                Some(zone) => zones.push((i, zone)),
                None => return TemplatePin::Constrained(format!("a preferred node-affinity term uses {key}")),
            }
        }
    }
    match zones.as_slice() {
        [] => TemplatePin::None,
        [(i, zone)] => TemplatePin::Zone { zone: zone.clone(), via: Via::Preferred(*i) },
        _ => TemplatePin::Constrained(format!("several preferred node-affinity terms name a {key}")),
    }
}

/// A Deployment or StatefulSet, reduced to what the balancer reads.
#[derive(Clone, Debug)]
pub struct Observed {
    pub kind: WorkloadKind,
    pub meta: ObjectMeta,
    /// `spec.replicas` (1 when unset).
    pub replicas: i32,
    pub template: PodTemplateSpec,
}

impl Observed {
    pub fn from_deployment(d: Deployment) -> Self {
        let spec = d.spec.unwrap_or_default();
        Observed {
            kind: WorkloadKind::Deployment,
            meta: d.metadata,
            replicas: spec.replicas.unwrap_or(1),
            template: spec.template,
        }
    }

    pub fn from_statefulset(s: StatefulSet) -> Self {
        let spec = s.spec.unwrap_or_default();
        Observed {
            kind: WorkloadKind::StatefulSet,
            meta: s.metadata,
            replicas: spec.replicas.unwrap_or(1),
            template: spec.template,
        }
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    /// `Deployment/web`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name())
    }

    pub fn workload_ref(&self, namespace: &str) -> WorkloadRef {
        WorkloadRef::new(self.kind.clone(), namespace, self.name())
    }

    pub fn labels(&self) -> placement_core::Labels {
        self.meta.labels.clone().unwrap_or_default()
    }

    /// Our decision annotation, when present and readable.
    pub fn decision(&self) -> Option<ZoneDecision> {
        let text = self.meta.annotations.as_ref()?.get(DECISION_ANNOTATION)?;
        serde_json::from_str(text).ok()
    }

    pub fn pin(&self, key: &str) -> TemplatePin {
        template_pin(self.template.spec.as_ref(), key)
    }

    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some(self.kind.to_string()),
            name: self.meta.name.clone(),
            namespace: self.meta.namespace.clone(),
            uid: self.meta.uid.clone(),
            resource_version: self.meta.resource_version.clone(),
            ..ObjectReference::default()
        }
    }
}

fn preferred_term(key: &str, zone: &str) -> Value {
    json!({"weight": 100, "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": [zone]}]}})
}

fn annotation_op(w: &Observed, decision: &ZoneDecision) -> PatchOperation {
    let text = serde_json::to_string(decision).unwrap_or_default();
    if w.meta.annotations.is_some() {
        add(&["metadata", "annotations", DECISION_ANNOTATION], json!(text))
    } else {
        add(&["metadata", "annotations"], json!({DECISION_ANNOTATION: text}))
    }
}

fn precondition(w: &Observed) -> PatchOperation {
    unchanged_since(w.meta.resource_version.as_deref().unwrap_or_default())
}

const TEMPLATE_SPEC: [&str; 3] = ["spec", "template", "spec"];
const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";

/// `spec.template.spec` followed by `rest`.
fn in_template<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    TEMPLATE_SPEC.iter().copied().chain(rest.iter().copied()).collect()
}

/// The patch that pins an unpinned workload: a nodeSelector entry (`preferred == false`) or one more
/// preferred node-affinity term, and the decision annotation.
pub fn pin_patch(w: &Observed, key: &str, preferred: bool, decision: &ZoneDecision) -> json_patch::Patch {
    let spec = w.template.spec.as_ref();
    let zone = decision.zone.as_str();
    let mut ops = vec![precondition(w)];
    if !preferred {
        if spec.and_then(|s| s.node_selector.as_ref()).is_some() {
            ops.push(add(&in_template(&["nodeSelector", key]), json!(zone)));
        } else {
            ops.push(add(&in_template(&["nodeSelector"]), json!({key: zone})));
        }
    } else {
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let term = preferred_term(key, zone);
        let op = if affinity.is_none() {
            add(&in_template(&["affinity"]), json!({"nodeAffinity": {PREFERRED: [term]}}))
        } else if node_affinity.is_none() {
            add(&in_template(&["affinity", "nodeAffinity"]), json!({PREFERRED: [term]}))
        } else if node_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()).is_none()
        {
            add(&in_template(&["affinity", "nodeAffinity", PREFERRED]), json!([term]))
        } else {
            add(&in_template(&["affinity", "nodeAffinity", PREFERRED, "-"]), term)
        };
        ops.push(op);
    }
    ops.push(annotation_op(w, decision));
    json_patch::Patch(ops)
}

/// The patch that re-pins a workload this operator pinned (`via` is how its template pins now), and
/// the decision annotation. `None` when the pin is of a kind this operator never writes.
pub fn move_patch(w: &Observed, key: &str, via: &Via, decision: &ZoneDecision) -> Option<json_patch::Patch> {
    let zone = decision.zone.as_str();
    let op = match via {
        Via::NodeSelector => replace(&in_template(&["nodeSelector", key]), json!(zone)),
        Via::Preferred(i) => replace(
            &in_template(&["affinity", "nodeAffinity", PREFERRED, i.to_string().as_str()]),
            preferred_term(key, zone),
        ),
        Via::RequiredAffinity => return None,
    };
    Some(json_patch::Patch(vec![precondition(w), op, annotation_op(w, decision)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "topology.kubernetes.io/zone";

    fn deployment(template_spec: Value, annotations: Option<Value>) -> Observed {
        let mut meta = json!({"name": "web", "namespace": "shop", "resourceVersion": "7"});
        if let Some(a) = annotations {
            meta["annotations"] = a;
        }
        let d: Deployment = serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta,
            "spec": {"selector": {}, "template": {"spec": template_spec}}}))
        .unwrap();
        Observed::from_deployment(d)
    }

    fn spec(v: Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    fn decision(zone: &str) -> ZoneDecision {
        ZoneDecision {
            balancer: "spread".into(),
            zone: zone.into(),
            action: DecisionAction::Pin,
            from: None,
            reason: "zone b: fewest workloads (0)".into(),
            at: jiff::Timestamp::from_second(0).unwrap(),
        }
    }

    fn applied(w: &Observed, patch: &json_patch::Patch) -> Value {
        let mut doc = json!({"metadata": serde_json::to_value(&w.meta).unwrap(),
            "spec": {"template": serde_json::to_value(&w.template).unwrap()}});
        json_patch::patch(&mut doc, patch).unwrap();
        doc
    }

    #[test]
    fn pins_read_from_templates() {
        let expr = |op: &str, values: Value| json!({"key": KEY, "operator": op, "values": values});
        let cases = vec![
            (json!({}), TemplatePin::None),
            (json!({"nodeSelector": {"disk": "ssd"}}), TemplatePin::None),
            (json!({"nodeSelector": {KEY: "b"}}), TemplatePin::Zone { zone: "b".into(), via: Via::NodeSelector }),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expr("In", json!(["c"]))]}]}}}}),
                TemplatePin::Zone { zone: "c".into(), via: Via::RequiredAffinity },
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expr("In", json!(["a", "b"]))]}]}}}}),
                TemplatePin::Constrained(format!("its required node affinity constrains {KEY}")),
            ),
            (
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
                    {"weight": 100, "preference": {"matchExpressions": [expr("In", json!(["a"]))]}}]}}}),
                TemplatePin::Zone { zone: "a".into(), via: Via::Preferred(1) },
            ),
            (
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "preference": {"matchExpressions": [expr("NotIn", json!(["a"]))]}}]}}}),
                TemplatePin::Constrained(format!("a preferred node-affinity term uses {KEY}")),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(template_pin(Some(&spec(s.clone())), KEY), want, "{s}");
        }
    }

    #[test]
    fn a_required_pin_adds_one_key_and_keeps_the_users() {
        let w = deployment(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}), Some(json!({"team": "x"})));
        let doc = applied(&w, &pin_patch(&w, KEY, false, &decision("b")));
        assert_eq!(doc["spec"]["template"]["spec"]["nodeSelector"], json!({"disk": "ssd", KEY: "b"}));
        assert_eq!(doc["metadata"]["annotations"]["team"], "x");
        let d: ZoneDecision =
            serde_json::from_str(doc["metadata"]["annotations"][DECISION_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(d, decision("b"));

        let bare = deployment(json!({"containers": []}), None);
        let doc = applied(&bare, &pin_patch(&bare, KEY, false, &decision("a")));
        assert_eq!(doc["spec"]["template"]["spec"]["nodeSelector"], json!({KEY: "a"}));
        assert!(doc["metadata"]["annotations"][DECISION_ANNOTATION].is_string());
    }

    #[test]
    fn a_stale_resource_version_fails_the_patch() {
        let w = deployment(json!({"containers": []}), None);
        let patch = pin_patch(&w, KEY, false, &decision("a"));
        let mut doc = json!({"metadata": {"resourceVersion": "8"}, "spec": {"template": {"spec": {}}}});
        assert!(json_patch::patch(&mut doc, &patch).is_err());
    }

    #[test]
    fn a_preferred_pin_appends_a_term_and_a_move_replaces_only_ours() {
        let user_term = json!({"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}});
        let w = deployment(
            json!({"containers": [], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [user_term.clone()]}}}),
            None,
        );
        let doc = applied(&w, &pin_patch(&w, KEY, true, &decision("c")));
        let terms = &doc["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(terms[0], user_term);
        assert_eq!(terms[1], preferred_term(KEY, "c"));

        let pinned: PodTemplateSpec = serde_json::from_value(doc["spec"]["template"].clone()).unwrap();
        let w2 = Observed { template: pinned, ..w.clone() };
        let TemplatePin::Zone { via, .. } = w2.pin(KEY) else { panic!("pinned") };
        assert_eq!(via, Via::Preferred(1));
        let mut d = decision("a");
        d.action = DecisionAction::Move;
        d.from = Some("c".into());
        let doc = applied(&w2, &move_patch(&w2, KEY, &via, &d).unwrap());
        let terms = &doc["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(terms.as_array().unwrap().len(), 2);
        assert_eq!(terms[0], user_term);
        assert_eq!(terms[1], preferred_term(KEY, "a"));

        let bare = deployment(json!({"containers": []}), None);
        let doc = applied(&bare, &pin_patch(&bare, KEY, true, &decision("b")));
        assert_eq!(
            doc["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0],
            preferred_term(KEY, "b")
        );
    }
}
