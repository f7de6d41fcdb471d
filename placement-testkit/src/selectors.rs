//! Label and field selectors as they arrive in query strings (`labelSelector=app=web,tier!=db`,
//! `fieldSelector=metadata.name=x,spec.nodeName=n1`), parsed once per request and matched per object.
//!
//! Label selectors support the whole string syntax (`=`, `==`, `!=`, `in`, `notin`, existence and
//! `!key`). Field selectors support `=`, `==` and `!=` on any dotted path of the object, which covers the
//! fields the real server indexes (`metadata.name`, `metadata.namespace`, `spec.nodeName`,
//! `status.phase`, `involvedObject.*`) and more.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelTerm {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelQuery(Vec<LabelTerm>);

impl LabelQuery {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            terms.push(parse_label_term(part)?);
        }
        Ok(LabelQuery(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            LabelTerm::Eq(k, v) => labels.get(k) == Some(v),
            LabelTerm::NotEq(k, v) => labels.get(k) != Some(v),
            LabelTerm::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelTerm::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelTerm::Exists(k) => labels.contains_key(k),
            LabelTerm::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_label_term(part: &str) -> Result<LabelTerm, String> {
    let bad = || format!("invalid label selector term {part:?}");
    if let Some(k) = part.strip_prefix('!') {
        return Ok(LabelTerm::NotExists(valid_key(k.trim()).ok_or_else(bad)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(LabelTerm::NotEq(valid_key(k.trim()).ok_or_else(bad)?, v.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(LabelTerm::Eq(valid_key(k.trim()).ok_or_else(bad)?, v.trim().to_string()));
    }
    for (word, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(word) {
            let rest = rest.trim();
            let inner = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
            let values: Vec<String> =
                inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            let key = valid_key(k.trim()).ok_or_else(bad)?;
            return Ok(if notin { LabelTerm::NotIn(key, values) } else { LabelTerm::In(key, values) });
        }
    }
    Ok(LabelTerm::Exists(valid_key(part).ok_or_else(bad)?))
}

fn valid_key(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !k.starts_with('/');
    ok.then(|| k.to_string())
}

/// Whether a `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`) selects `labels`.
/// An empty selector selects everything; a malformed one selects nothing.
pub fn selector_object_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if labels.get(k).map(String::as_str) != v.as_str() {
                return false;
            }
        }
    }
    for e in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let got = labels.get(key).map(String::as_str);
        let ok = match e.get("operator").and_then(Value::as_str) {
            Some("In") => got.is_some_and(|g| values.contains(&g)),
            Some("NotIn") => got.is_none_or(|g| !values.contains(&g)),
            Some("Exists") => got.is_some(),
            Some("DoesNotExist") => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A parsed `fieldSelector`; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldQuery(Vec<(String, bool, String)>);

impl FieldQuery {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector term {part:?}: expected key=value or key!=value"));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldQuery(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same query with every path passed through `rename`.
    pub fn renamed(self, rename: impl Fn(&str) -> String) -> Self {
        FieldQuery(self.0.into_iter().map(|(p, eq, v)| (rename(&p), eq, v)).collect())
    }

    /// Missing fields compare as the empty string, as on the real server (`spec.nodeName=` selects
    /// unbound pods).
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let mut cur = Some(object);
            for seg in path.split('.') {
                cur = cur.and_then(|v| v.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selector_table() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app in (db, web)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing,app=web,tier in (front,back)", true),
            ("app=web,tier=back", false),
        ];
        for (q, want) in cases {
            assert_eq!(LabelQuery::parse(q).unwrap().matches(&l), want, "{q}");
        }
        assert!(LabelQuery::parse("app in web").is_err());
        assert!(LabelQuery::parse("a b").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let l = labels(&[("app", "web")]);
        let sel = |v: serde_json::Value| selector_object_matches(&v, &l);
        assert!(sel(json!({})));
        assert!(sel(json!({"matchLabels": {"app": "web"}})));
        assert!(!sel(json!({"matchLabels": {"app": "db"}})));
        assert!(sel(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]})));
        assert!(!sel(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})));
        assert!(!sel(json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]})));
    }

    #[test]
    fn field_selector_table() {
        let o = json!({"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {}});
        let cases = [
            ("metadata.name=p1", true),
            ("metadata.name==p2", false),
            ("metadata.namespace=ns,spec.nodeName=n1", true),
            ("spec.nodeName!=n1", false),
            ("status.phase=", true),
        ];
        for (q, want) in cases {
            assert_eq!(FieldQuery::parse(q).unwrap().matches(&o), want, "{q}");
        }
        assert!(FieldQuery::parse("metadata.name").is_err());
    }
}
