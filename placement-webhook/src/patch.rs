//! The JSON Patch that places a pod.
//!
//! What this module decides, and why:
//!
//! * **Only `add` operations, and only where nothing is.** A `replace` fails on a missing path, and
//!   replacing `spec.nodeSelector` or `spec.affinity` wholesale drops what the user wrote (both were bugs
//!   of the tools this project replaces). Here a missing (or `null`) object or array is created with one
//!   `add` of its smallest missing ancestor; an existing object gets one `add` per new member; an existing
//!   array is appended to with `/-`. An existing member is never overwritten.
//! * **The plan is made against the JSON the API server will patch.** [`plan_patch_json`] reads the
//!   object exactly as it came in the review, so a `null` or an omitted list (which k8s-openapi reads as
//!   an empty one) cannot produce a path that does not exist. [`plan_patch`] takes the typed pod and plans
//!   against its k8s-openapi serialization.
//! * **Idempotent.** What is already there with the same value adds nothing, so a reinvocation (or a
//!   second webhook pass) on a patched pod yields an empty patch.
//! * **A pod that already decides differently is left alone.** A nodeSelector key pinned to another
//!   value, or required node affinity in which no term admits the chosen values, is a [`Conflict`]: no
//!   mutation at all, and the caller says why in a warning ("pod pins zone=a but placement chose b").
//!   Required node affinity terms are ORed, so one admitting term is enough. An annotation that already
//!   holds another value is kept as it is and reported in [`PatchPlan::notes`]: it records, it does not
//!   place.
//! * **Pointer tokens are escaped by [`placement_kube::patch`]** (`placement.dev/decision` becomes
//!   `placement.dev~1decision`), never by string concatenation.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::{Patch, PatchOperation};
use k8s_openapi::api::core::v1::Pod;
use placement_kube::patch::{add as add_op, pointer};
use serde_json::{Map, Value, json};

use crate::review::bounded;

/// Values quoted from the pod in messages are cut to this many characters.
const MAX_QUOTE_CHARS: usize = 64;
/// Kubernetes bounds the weight of a preferred scheduling term.
const WEIGHT_RANGE: std::ops::RangeInclusive<i32> = 1..=100;

/// A node selector requirement with operator `In`: the node's label `key` has one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub values: Vec<String>,
}

impl Requirement {
    /// `key In (values)`.
    pub fn is_in(key: impl Into<String>, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Requirement { key: key.into(), values: values.into_iter().map(Into::into).collect() }
    }

    fn to_json(&self) -> Value {
        json!({"key": self.key, "operator": "In", "values": self.values})
    }
}

/// A preferred node affinity term: `weight` (1..=100) for nodes matching all `match_expressions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreferredTerm {
    pub weight: i32,
    pub match_expressions: Vec<Requirement>,
}

impl PreferredTerm {
    fn to_json(&self) -> Value {
        let expressions: Vec<Value> = self.match_expressions.iter().map(Requirement::to_json).collect();
        json!({"weight": self.weight, "preference": {"matchExpressions": expressions}})
    }
}

/// What a placement decision wants added to a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Entries to add to `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Preferred node affinity terms to append.
    pub preferred_terms: Vec<PreferredTerm>,
    /// Expressions to add to every existing required node selector term (or to a new term when there is
    /// none).
    pub required_term_exprs: Vec<Requirement>,
    /// Annotations to add, e.g. `placement.dev/decision`.
    pub annotations: BTreeMap<String, String>,
}

/// The patch to send, and what was deliberately left as it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchPlan {
    /// Only `add` operations; empty when the pod already has everything.
    pub patch: Patch,
    /// Things the placement wanted that the pod already has differently and that were kept (annotations).
    pub notes: Vec<String>,
}

impl PatchPlan {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// Why a pod is not mutated at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The pod's nodeSelector already pins a key to another value.
    #[error("pod pins {key}={existing} but placement chose {chosen}")]
    NodeSelector { key: String, existing: String, chosen: String },
    /// No term of the pod's required node affinity admits the chosen values.
    #[error("pod's required node affinity admits no node with {chosen}")]
    RequiredAffinity { chosen: String },
    /// The placement itself cannot be written into a valid pod.
    #[error("placement is invalid: {reason}")]
    InvalidPlacement { reason: String },
    /// The object has a non-object/non-array where the patch must add beneath it.
    #[error("cannot add under {path}: it is {found}")]
    Unpatchable { path: String, found: String },
}

impl Conflict {
    /// A short, fixed label for metrics (bounded cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Conflict::NodeSelector { .. } => "node_selector",
            Conflict::RequiredAffinity { .. } => "required_affinity",
            Conflict::InvalidPlacement { .. } => "invalid_placement",
            Conflict::Unpatchable { .. } => "unpatchable",
        }
    }
}

/// Plans the patch for a typed pod, against its k8s-openapi serialization. When the raw object of the
/// review is at hand, [`plan_patch_json`] on it is exact; this is for pods that exist only typed.
pub fn plan_patch(pod: &Pod, placement: &Placement) -> Result<PatchPlan, Conflict> {
    let object = serde_json::to_value(pod).map_err(|e| Conflict::Unpatchable {
        path: String::new(),
        found: bounded(&format!("a pod that does not serialize ({e})"), 200),
    })?;
    plan_patch_json(&object, placement)
}

/// Plans the patch for a pod object as JSON (the `request.object` the API server sent).
pub fn plan_patch_json(object: &Value, placement: &Placement) -> Result<PatchPlan, Conflict> {
    let allowed = allowed_values(placement)?;
    let Value::Object(root) = object else {
        return Err(Conflict::Unpatchable { path: String::new(), found: json_type(object).to_owned() });
    };
    let spec = present(root.get("spec"));

    check_node_selector(spec, &allowed)?;
    let node_affinity = spec.and_then(|s| member(s, "affinity")).and_then(|a| member(a, "nodeAffinity"));
    let required = node_affinity.and_then(|n| member(n, "requiredDuringSchedulingIgnoredDuringExecution"));
    let terms = required.and_then(|r| member(r, "nodeSelectorTerms")).and_then(Value::as_array);
    check_required_affinity(terms, &allowed)?;

    let mut notes = Vec::new();
    let mut root_add = BTreeMap::new();
    let annotations = plan_annotations(present(root.get("metadata")), placement, &mut notes);
    if !annotations.is_empty() {
        root_add.insert("metadata".to_owned(), Add::Members(BTreeMap::from([("annotations".to_owned(), annotations)])));
    }

    let mut spec_add = BTreeMap::new();
    let existing_selector = spec.and_then(|s| member(s, "nodeSelector"));
    let selector: BTreeMap<String, Add> = placement
        .node_selector
        .iter()
        .filter(|(key, _)| existing_selector.and_then(|s| member(s, key)).is_none())
        .map(|(key, value)| (key.clone(), Add::Set(Value::String(value.clone()))))
        .collect();
    spec_add.insert("nodeSelector".to_owned(), Add::Members(selector));

    let mut node_affinity_add = BTreeMap::new();
    let preferred = node_affinity.and_then(|n| member(n, "preferredDuringSchedulingIgnoredDuringExecution"));
    node_affinity_add.insert(
        "preferredDuringSchedulingIgnoredDuringExecution".to_owned(),
        Add::Append(new_preferred_terms(preferred, &placement.preferred_terms)),
    );
    if !placement.required_term_exprs.is_empty() {
        node_affinity_add.insert(
            "requiredDuringSchedulingIgnoredDuringExecution".to_owned(),
            required_additions(terms, &placement.required_term_exprs),
        );
    }
    spec_add.insert(
        "affinity".to_owned(),
        Add::Members(BTreeMap::from([("nodeAffinity".to_owned(), Add::Members(node_affinity_add))])),
    );
    root_add.insert("spec".to_owned(), Add::Members(spec_add));

    let mut ops = Vec::new();
    emit(Some(object), &mut Vec::new(), &Add::Members(root_add), &mut ops)?;
    Ok(PatchPlan { patch: Patch(ops), notes })
}

/// What to add at one location of the document.
#[derive(Debug)]
enum Add {
    /// Members of an object, which is created when missing.
    Members(BTreeMap<String, Add>),
    /// Elements appended to an array, which is created when missing.
    Append(Vec<Value>),
    /// Additions inside elements of an existing array, by index.
    Items(BTreeMap<usize, Add>),
    /// A value where there is none.
    Set(Value),
}

impl Add {
    fn is_empty(&self) -> bool {
        match self {
            Add::Members(members) => members.values().all(Add::is_empty),
            Add::Append(values) => values.is_empty(),
            Add::Items(items) => items.values().all(Add::is_empty),
            Add::Set(_) => false,
        }
    }

    /// The value to add when nothing exists at this location.
    fn materialize(&self, path: &[String]) -> Result<Value, Conflict> {
        match self {
            Add::Members(members) => {
                let mut object = Map::new();
                for (key, add) in members.iter().filter(|(_, add)| !add.is_empty()) {
                    object.insert(key.clone(), add.materialize(path)?);
                }
                Ok(Value::Object(object))
            }
            Add::Append(values) => Ok(Value::Array(values.clone())),
            Add::Set(value) => Ok(value.clone()),
            Add::Items(_) => Err(Conflict::Unpatchable { path: pointer(path).to_string(), found: "missing".into() }),
        }
    }
}

/// Turns the additions into `add` operations against what `node` holds at `path`.
fn emit(
    node: Option<&Value>,
    path: &mut Vec<String>,
    add: &Add,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), Conflict> {
    if add.is_empty() {
        return Ok(());
    }
    let unpatchable = |path: &[String], found: &Value| Conflict::Unpatchable {
        path: pointer(path).to_string(),
        found: json_type(found).to_owned(),
    };
    match (present(node), add) {
        (None, add) => ops.push(add_op(path, add.materialize(path)?)),
        (Some(Value::Object(object)), Add::Members(members)) => {
            for (key, add) in members {
                path.push(key.clone());
                let result = emit(object.get(key), path, add, ops);
                path.pop();
                result?;
            }
        }
        (Some(Value::Array(_)), Add::Append(values)) => {
            path.push("-".to_owned());
            ops.extend(values.iter().map(|value| add_op(path, value.clone())));
            path.pop();
        }
        (Some(Value::Array(array)), Add::Items(items)) => {
            for (index, add) in items {
                path.push(index.to_string());
                let result = match array.get(*index) {
                    Some(element) => emit(Some(element), path, add, ops),
                    None => Err(Conflict::Unpatchable { path: pointer(path).to_string(), found: "missing".into() }),
                };
                path.pop();
                result?;
            }
        }
        // Planned only where nothing is; an identical value is already there.
        (Some(existing), Add::Set(value)) if existing == value => {}
        (Some(existing), _) => return Err(unpatchable(path, existing)),
    }
    Ok(())
}

/// `None` for a missing member and for `null` (an `add` replaces a `null`, which is "not set").
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

fn member<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    present(value.get(key))
}

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

/// Per constrained label key, the values the placement admits (nodeSelector entries and required
/// expressions together), after checking that the placement can be written into a valid pod.
fn allowed_values(placement: &Placement) -> Result<BTreeMap<&str, BTreeSet<&str>>, Conflict> {
    let invalid = |reason: String| Conflict::InvalidPlacement { reason: bounded(&reason, 200) };
    let check = |requirement: &Requirement| {
        if requirement.key.is_empty() {
            Err(invalid("a node selector requirement has an empty key".into()))
        } else if requirement.values.is_empty() {
            Err(invalid(format!("requirement {} In () has no values", bounded(&requirement.key, MAX_QUOTE_CHARS))))
        } else {
            Ok(())
        }
    };
    for term in &placement.preferred_terms {
        if !WEIGHT_RANGE.contains(&term.weight) {
            return Err(invalid(format!("preferred term weight {} is outside 1..=100", term.weight)));
        }
        term.match_expressions.iter().try_for_each(check)?;
    }
    placement.required_term_exprs.iter().try_for_each(check)?;
    if placement.node_selector.keys().any(String::is_empty) {
        return Err(invalid("a nodeSelector key is empty".into()));
    }

    let mut allowed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let constraints =
        placement.node_selector.iter().map(|(key, value)| (key.as_str(), BTreeSet::from([value.as_str()]))).chain(
            placement
                .required_term_exprs
                .iter()
                .map(|r| (r.key.as_str(), r.values.iter().map(String::as_str).collect())),
        );
    for (key, values) in constraints {
        let entry = allowed.entry(key).or_insert_with(|| values.clone());
        entry.retain(|value| values.contains(value));
        if entry.is_empty() {
            return Err(invalid(format!(
                "no value of {} satisfies all its requirements",
                bounded(key, MAX_QUOTE_CHARS)
            )));
        }
    }
    Ok(allowed)
}

/// `zone=a`, or `zone in (a, b)` when several values are admitted.
fn describe_values(values: &BTreeSet<&str>) -> String {
    let quoted: Vec<String> = values.iter().map(|v| bounded(v, MAX_QUOTE_CHARS)).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        many => format!("one of ({})", many.join(", ")),
    }
}

fn describe(allowed: &BTreeMap<&str, BTreeSet<&str>>) -> String {
    let parts: Vec<String> = allowed
        .iter()
        .map(|(key, values)| match values.len() {
            1 => format!("{}={}", bounded(key, MAX_QUOTE_CHARS), describe_values(values)),
            _ => format!("{} in {}", bounded(key, MAX_QUOTE_CHARS), describe_values(values)),
        })
        .collect();
    parts.join(", ")
}

/// A key of the pod's own nodeSelector set to a value the placement does not admit is a conflict.
fn check_node_selector(spec: Option<&Value>, allowed: &BTreeMap<&str, BTreeSet<&str>>) -> Result<(), Conflict> {
    let Some(Value::Object(selector)) = spec.and_then(|s| member(s, "nodeSelector")) else {
        return Ok(());
    };
    for (key, values) in allowed {
        let existing = match present(selector.get(*key)) {
            None => continue,
            Some(Value::String(existing)) if values.contains(existing.as_str()) => continue,
            Some(Value::String(existing)) => bounded(existing, MAX_QUOTE_CHARS),
            Some(other) => bounded(&other.to_string(), MAX_QUOTE_CHARS),
        };
        return Err(Conflict::NodeSelector {
            key: bounded(key, MAX_QUOTE_CHARS),
            existing,
            chosen: describe_values(values),
        });
    }
    Ok(())
}

/// Required node selector terms are ORed: a conflict when there are terms and none admits the chosen
/// values.
fn check_required_affinity(
    terms: Option<&Vec<Value>>,
    allowed: &BTreeMap<&str, BTreeSet<&str>>,
) -> Result<(), Conflict> {
    match terms {
        Some(terms) if !terms.is_empty() && !allowed.is_empty() => {
            if terms.iter().any(|term| term_admits(term, allowed)) {
                Ok(())
            } else {
                Err(Conflict::RequiredAffinity { chosen: describe(allowed) })
            }
        }
        _ => Ok(()),
    }
}

/// Whether a node selector term's expressions leave, for every constrained key, some admitted value.
/// Expressions this code cannot read (malformed, unknown operators) are not held against the term.
fn term_admits(term: &Value, allowed: &BTreeMap<&str, BTreeSet<&str>>) -> bool {
    let expressions = member(term, "matchExpressions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    allowed.iter().all(|(key, values)| {
        values.iter().any(|value| {
            expressions
                .iter()
                .filter(|e| e.get("key").and_then(Value::as_str) == Some(*key))
                .all(|e| expression_accepts(e, value))
        })
    })
}

/// Whether a node whose label has `value` satisfies one node selector requirement on that label.
fn expression_accepts(expression: &Value, value: &str) -> bool {
    let values: Vec<&str> = expression
        .get("values")
        .and_then(Value::as_array)
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let number = |text: &str| text.trim().parse::<i64>().ok();
    match expression.get("operator").and_then(Value::as_str) {
        Some("In") => values.contains(&value),
        Some("NotIn") => !values.contains(&value),
        Some("Exists") => true,
        Some("DoesNotExist") => false,
        Some("Gt") => {
            matches!((number(value), values.first().and_then(|v| number(v))), (Some(v), Some(bound)) if v > bound)
        }
        Some("Lt") => {
            matches!((number(value), values.first().and_then(|v| number(v))), (Some(v), Some(bound)) if v < bound)
        }
        _ => true,
    }
}

/// The annotations to add; an existing identical one adds nothing, an existing different one is kept
/// and noted.
fn plan_annotations(metadata: Option<&Value>, placement: &Placement, notes: &mut Vec<String>) -> Add {
    let existing = metadata.and_then(|m| member(m, "annotations"));
    let mut members = BTreeMap::new();
    for (key, value) in &placement.annotations {
        match existing.and_then(|a| member(a, key)) {
            None => {
                members.insert(key.clone(), Add::Set(Value::String(value.clone())));
            }
            Some(Value::String(current)) if current == value => {}
            Some(current) => notes.push(format!(
                "annotation {} is already {}, kept (placement wanted {})",
                bounded(key, MAX_QUOTE_CHARS),
                bounded(&current.to_string(), MAX_QUOTE_CHARS),
                bounded(&Value::String(value.clone()).to_string(), MAX_QUOTE_CHARS),
            )),
        }
    }
    Add::Members(members)
}

/// A requirement as a comparable value: (key, operator, sorted values).
type NormalRequirement = (String, String, Vec<String>);

fn normalize_expression(expression: &Value) -> Option<NormalRequirement> {
    let key = expression.get("key")?.as_str()?.to_owned();
    let operator = expression.get("operator")?.as_str()?.to_owned();
    let mut values: Vec<String> = match member(expression, "values") {
        None => Vec::new(),
        Some(values) => values.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<_>>()?,
    };
    values.sort();
    values.dedup();
    Some((key, operator, values))
}

/// All expressions of a list, sorted; `None` when any cannot be read.
fn normalize_expressions(expressions: Option<&Value>) -> Option<Vec<NormalRequirement>> {
    let mut normal = match present(expressions) {
        None => Vec::new(),
        Some(list) => list.as_array()?.iter().map(normalize_expression).collect::<Option<Vec<_>>>()?,
    };
    normal.sort();
    Some(normal)
}

fn normalize_requirement(requirement: &Requirement) -> NormalRequirement {
    let mut values = requirement.values.clone();
    values.sort();
    values.dedup();
    (requirement.key.clone(), "In".to_owned(), values)
}

/// A preferred term as a comparable value: (weight, normalized expressions), `None` when it has match
/// fields or cannot be read (then it matches none of ours).
fn normalize_preferred(term: &Value) -> Option<(i64, Vec<NormalRequirement>)> {
    let weight = term.get("weight")?.as_i64()?;
    let preference = member(term, "preference");
    let fields = preference.and_then(|p| member(p, "matchFields"));
    if fields.and_then(Value::as_array).is_some_and(|f| !f.is_empty()) {
        return None;
    }
    Some((weight, normalize_expressions(preference.and_then(|p| p.get("matchExpressions")))?))
}

/// The placement's preferred terms that the pod does not have yet (each once).
fn new_preferred_terms(existing: Option<&Value>, wanted: &[PreferredTerm]) -> Vec<Value> {
    let mut seen: BTreeSet<(i64, Vec<NormalRequirement>)> =
        existing.and_then(Value::as_array).into_iter().flatten().filter_map(normalize_preferred).collect();
    let mut terms = Vec::new();
    for term in wanted {
        let mut expressions: Vec<NormalRequirement> =
            term.match_expressions.iter().map(normalize_requirement).collect();
        expressions.sort();
        if seen.insert((i64::from(term.weight), expressions)) {
            terms.push(term.to_json());
        }
    }
    terms
}

/// The required expressions go into every existing term that lacks them, or into a new term when the
/// pod has none.
fn required_additions(terms: Option<&Vec<Value>>, wanted: &[Requirement]) -> Add {
    let mut unique: Vec<&Requirement> = Vec::new();
    for requirement in wanted {
        if !unique.iter().any(|r| normalize_requirement(r) == normalize_requirement(requirement)) {
            unique.push(requirement);
        }
    }
    match terms {
        Some(terms) if !terms.is_empty() => {
            let mut items = BTreeMap::new();
            for (index, term) in terms.iter().enumerate() {
                let have: Vec<NormalRequirement> = member(term, "matchExpressions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(normalize_expression)
                    .collect();
                let missing: Vec<Value> =
                    unique.iter().filter(|r| !have.contains(&normalize_requirement(r))).map(|r| r.to_json()).collect();
                items.insert(
                    index,
                    Add::Members(BTreeMap::from([("matchExpressions".to_owned(), Add::Append(missing))])),
                );
            }
            Add::Members(BTreeMap::from([("nodeSelectorTerms".to_owned(), Add::Items(items))]))
        }
        _ => {
            let expressions: Vec<Value> = unique.iter().map(|r| r.to_json()).collect();
            let term = json!({ "matchExpressions": expressions });
            Add::Members(BTreeMap::from([("nodeSelectorTerms".to_owned(), Add::Append(vec![term]))]))
        }
    }
}

#[cfg(test)]
mod tests;
