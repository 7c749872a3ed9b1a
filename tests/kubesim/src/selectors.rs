//! Label selectors (equality- and set-based) and field selectors, parsed from query strings.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed `labelSelector`; all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for ch in text.chars() {
        match ch {
            '(' => {
                depth += 1;
                current.push(ch);
            }
            ')' => {
                depth -= 1;
                current.push(ch);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(ch),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| ApiError::bad_request(format!("unable to parse requirement: {why}: {text:?}"));
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            if let Some(key) = part.strip_prefix('!') {
                let key = key.trim();
                if !valid_key(key) {
                    return Err(bad("invalid label key"));
                }
                requirements.push(Requirement::NotExists(key.to_string()));
                continue;
            }
            if let Some(open) = part.find('(') {
                let head = part[..open].trim();
                let Some(values) = part[open + 1..].strip_suffix(')') else {
                    return Err(bad("missing closing parenthesis"));
                };
                let values: Vec<String> = values
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                let mut words = head.split_whitespace();
                let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
                    return Err(bad("expected `key in (…)` or `key notin (…)`"));
                };
                if !valid_key(key) {
                    return Err(bad("invalid label key"));
                }
                match op {
                    "in" => requirements.push(Requirement::In(key.to_string(), values)),
                    "notin" => requirements.push(Requirement::NotIn(key.to_string(), values)),
                    _ => return Err(bad("unknown set operator")),
                }
                continue;
            }
            let (key, value, negate) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, v, false)
            } else {
                let key = part.trim();
                if !valid_key(key) {
                    return Err(bad("invalid label key"));
                }
                requirements.push(Requirement::Exists(key.to_string()));
                continue;
            };
            let (key, value) = (key.trim().to_string(), value.trim().to_string());
            if !valid_key(&key) {
                return Err(bad("invalid label key"));
            }
            requirements.push(if negate {
                Requirement::NotEquals(key, value)
            } else {
                Requirement::Equals(key, value)
            });
        }
        Ok(Self { requirements })
    }

    /// Builds a selector from an object's `spec.selector` (`matchLabels` + `matchExpressions`).
    pub fn from_spec(selector: &Value) -> Self {
        let mut requirements = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            for (k, v) in labels {
                requirements.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = selector["matchExpressions"].as_array() {
            for e in exprs {
                let key = e["key"].as_str().unwrap_or_default().to_string();
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|vs| vs.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                requirements.push(match e["operator"].as_str() {
                    Some("In") => Requirement::In(key, values),
                    Some("NotIn") => Requirement::NotIn(key, values),
                    Some("DoesNotExist") => Requirement::NotExists(key),
                    _ => Requirement::Exists(key),
                });
            }
        }
        Self { requirements }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.matches_labels(&labels_of(&object["metadata"]["labels"]))
    }
}

/// A map of string labels from a `metadata.labels`-shaped value.
pub fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed `fieldSelector` (`metadata.name=x,status.phase!=Running`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, value, negate) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {part:?}: expected field=value"
                )));
            };
            let path = path.trim();
            if !path.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(ApiError::bad_request(format!("field label not supported: {path}")));
            }
            terms.push((path.to_string(), value.trim().to_string(), negate));
        }
        Ok(Self { terms })
    }

    /// The name when the selector pins `metadata.name` (as `kubectl wait`/`delete` do).
    pub fn name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(p, _, neg)| p == "metadata.name" && !neg)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, value, negate)| {
            let mut cur = object;
            for seg in path.split('.') {
                cur = &cur[seg];
            }
            let actual = match cur {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (actual == *value) != *negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn set_based_selectors_match_like_the_api_server() {
        let sel = LabelSelector::parse("app in (web, api),tier notin (db),!legacy,env").expect("parses");
        assert!(sel.matches(&obj(json!({"app": "web", "tier": "fe", "env": "x"}))));
        assert!(!sel.matches(&obj(json!({"app": "web", "tier": "db", "env": "x"}))));
        assert!(!sel.matches(&obj(json!({"app": "web", "env": "x", "legacy": "1"}))));
        assert!(!sel.matches(&obj(json!({"app": "other", "env": "x"}))));
        assert!(!sel.matches(&obj(json!({"app": "web"}))));
    }

    #[test]
    fn equality_selectors_and_inequality() {
        let sel = LabelSelector::parse("a=1,b==2,c!=3").expect("parses");
        assert!(sel.matches(&obj(json!({"a": "1", "b": "2"}))));
        assert!(!sel.matches(&obj(json!({"a": "1", "b": "2", "c": "3"}))));
        assert!(LabelSelector::parse("a in (1").is_err());
    }

    #[test]
    fn field_selector_on_name_and_namespace() {
        let sel = FieldSelector::parse("metadata.name=a,metadata.namespace!=other").expect("parses");
        assert_eq!(sel.name(), Some("a"));
        assert!(sel.matches(&obj(json!({}))));
        let sel = FieldSelector::parse("metadata.namespace=other").expect("parses");
        assert!(!sel.matches(&obj(json!({}))));
    }
}
