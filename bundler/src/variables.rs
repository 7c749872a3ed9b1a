//! Finds where each site variable lands in the render.
//!
//! The chart is rendered with two sets of typed sentinels (A, B) and with the defaults.
//! Every place A's sentinels appear is a slot. Filling A's slots with B's sentinels must
//! give exactly render B, and putting A's slot scalars into the default render must give
//! exactly render A: so every difference between renders is a recorded slot.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use base64::Engine as _;
use schemas::release::{NamespaceVariable, ObjectRef, Slot, SlotForm, Variable, VariableSpec, VariableType, Variables};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::render::Document;

/// Pattern recorded for string variables with a substring slot and no pattern of their own:
/// no newlines or other control characters.
pub const DEFAULT_SUBSTRING_PATTERN: &str = "^[^\\x00-\\x1f\\x7f]*$";

/// Which sentinel set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    A,
    B,
}

/// Who a sentinel stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Namespace,
    Var(usize),
}

/// A unique lowercase DNS-safe token of at most 20 characters.
pub fn string_sentinel(set: Set, owner_name: &str) -> String {
    let tag = match set {
        Set::A => "a",
        Set::B => "b",
    };
    let h = Sha256::digest(format!("{tag}/{owner_name}").as_bytes());
    format!("slv{tag}{}", &hex::encode(h)[..12])
}

/// A unique 6-digit number (Helm passes numbers through float64; 6 digits print plainly).
pub fn integer_sentinel(set: Set, index: usize) -> i64 {
    let base = match set {
        Set::A => 731_000,
        Set::B => 862_000,
    };
    base + 37 * index as i64 + 11
}

/// The sentinel for variable `index` as a JSON value of its type.
pub fn sentinel(set: Set, index: usize, spec: &VariableSpec) -> Value {
    match spec.ty {
        VariableType::String => Value::String(string_sentinel(set, spec.name.as_str())),
        VariableType::Integer => Value::from(integer_sentinel(set, index)),
    }
}

/// The namespace used for a sentinel render.
pub fn namespace_sentinel(set: Set) -> String {
    string_sentinel(set, "namespace")
}

/// A values document setting each variable's `valuesPath` to `value(index, spec)`.
pub fn values_document(vars: &[VariableSpec], mut value: impl FnMut(usize, &VariableSpec) -> Option<Value>) -> Value {
    let mut root = Value::Object(Default::default());
    for (i, v) in vars.iter().enumerate() {
        let Some(val) = value(i, v) else { continue };
        let mut node = &mut root;
        let parts: Vec<&str> = v.values_path.split('.').collect();
        for (j, part) in parts.iter().enumerate() {
            let map = match node {
                Value::Object(m) => m,
                _ => unreachable!("values path nodes are objects"),
            };
            if j + 1 == parts.len() {
                map.insert((*part).to_owned(), val.clone());
                break;
            }
            node = map
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Default::default()));
            if !node.is_object() {
                *node = Value::Object(Default::default());
            }
        }
    }
    root
}

struct Token {
    text: String,
    owner: Owner,
    integer: Option<i64>,
}

fn tokens(set: Set, vars: &[VariableSpec]) -> Vec<Token> {
    let mut out = vec![Token {
        text: namespace_sentinel(set),
        owner: Owner::Namespace,
        integer: None,
    }];
    for (i, v) in vars.iter().enumerate() {
        let (text, integer) = match v.ty {
            VariableType::String => (string_sentinel(set, v.name.as_str()), None),
            VariableType::Integer => {
                let n = integer_sentinel(set, i);
                (n.to_string(), Some(n))
            }
        };
        out.push(Token {
            text,
            owner: Owner::Var(i),
            integer,
        });
    }
    out
}

fn owner_name(owner: Owner, vars: &[VariableSpec]) -> &str {
    match owner {
        Owner::Namespace => "namespace",
        Owner::Var(i) => vars[i].name.as_str(),
    }
}

/// Escapes `$` and writes each token occurrence as `${name}`. Returns the owners found.
fn template(text: &str, toks: &[Token], vars: &[VariableSpec]) -> (String, Vec<Owner>) {
    let mut out = String::new();
    let mut owners = Vec::new();
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for t in toks {
            if let Some(after) = rest.strip_prefix(t.text.as_str()) {
                out.push_str("${");
                out.push_str(owner_name(t.owner, vars));
                out.push('}');
                if !owners.contains(&t.owner) {
                    owners.push(t.owner);
                }
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_else(|| unreachable!("non-empty"));
        if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    (out, owners)
}

/// Fills a template with each owner's text.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').unwrap_or(r.len());
            out.push_str(&value(&r[..end]));
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

struct Found {
    owner: Owner,
    slot: Slot,
}

/// Walks one document of render A and records every slot.
fn find_slots(doc_index: usize, doc: &Document, toks: &[Token], vars: &[VariableSpec]) -> Result<Vec<Found>> {
    let object = ObjectRef {
        api_version: doc.api_version().to_owned(),
        kind: doc.kind().to_owned(),
        name: doc.name().to_owned(),
    };
    let secret = doc.kind() == "Secret" && doc.api_version() == "v1";
    let mut found = Vec::new();
    let mut stack = vec![(String::new(), &doc.object)];
    while let Some((pointer, value)) = stack.pop() {
        let slot = |form, base64| Slot {
            document: doc_index as u32,
            object: object.clone(),
            pointer: pointer.clone(),
            form,
            base64,
        };
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    if let Some(t) = toks.iter().find(|t| k.contains(&t.text)) {
                        bail!(
                            "variable {} lands in a map key at {pointer} of {}; variables may only set values",
                            owner_name(t.owner, vars),
                            doc.describe()
                        );
                    }
                    stack.push((format!("{pointer}/{}", escape_pointer(k)), v));
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    stack.push((format!("{pointer}/{i}"), v));
                }
            }
            Value::Number(n) => {
                if let Some(t) = toks.iter().find(|t| t.integer.is_some() && t.integer == n.as_i64()) {
                    found.push(Found {
                        owner: t.owner,
                        slot: slot(SlotForm::Whole, false),
                    });
                }
            }
            Value::String(s) => {
                let decoded = if secret && pointer.starts_with("/data/") {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                } else {
                    None
                };
                let (text, base64) = match &decoded {
                    Some(d) if toks.iter().any(|t| d.contains(&t.text)) => (d.as_str(), true),
                    _ => (s.as_str(), false),
                };
                if let Some(t) = toks.iter().find(|t| t.text == text) {
                    found.push(Found {
                        owner: t.owner,
                        slot: slot(SlotForm::Whole, base64),
                    });
                    continue;
                }
                let (tpl, owners) = template(text, toks, vars);
                for owner in owners {
                    found.push(Found {
                        owner,
                        slot: slot(SlotForm::Substring { template: tpl.clone() }, base64),
                    });
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    found.sort_by(|a, b| (a.owner, &a.slot.pointer).cmp(&(b.owner, &b.slot.pointer)));
    Ok(found)
}

/// The scalar a slot of `owner` holds when every owner named `n` takes `text(n)`.
fn slot_value(slot: &Slot, owner: &str, original: &Value, text: &dyn Fn(&str) -> String) -> Value {
    let raw = match &slot.form {
        SlotForm::Whole => None,
        SlotForm::Substring { template } => Some(fill(template, text)),
    };
    let encode = |s: String| {
        if slot.base64 {
            base64::engine::general_purpose::STANDARD.encode(s)
        } else {
            s
        }
    };
    match (&slot.form, raw) {
        (_, Some(s)) => Value::String(encode(s)),
        (SlotForm::Whole, None) => {
            let s = text(owner);
            match original {
                Value::Number(_) => s.parse::<i64>().map(Value::from).unwrap_or(Value::String(s)),
                _ => Value::String(encode(s)),
            }
        }
        (SlotForm::Substring { .. }, None) => unreachable!("substring slots have text"),
    }
}

/// The first JSON pointer at which two values differ.
pub fn first_difference(a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(p) = first_difference(v, w) {
                            return Some(format!("/{}{p}", escape_pointer(k)));
                        }
                    }
                    None => return Some(format!("/{}", escape_pointer(k))),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("/{}", escape_pointer(k)))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(p) = first_difference(v, w) {
                    return Some(format!("/{i}{p}"));
                }
            }
            (x.len() != y.len()).then(|| format!("/{}", x.len().min(y.len())))
        }
        _ => (a != b).then(String::new),
    }
}

/// The three renders to compare.
pub struct Renders<'a> {
    pub a: &'a [Document],
    pub b: &'a [Document],
    pub defaults: &'a [Document],
    pub namespace: &'a str,
    pub release_name: &'a str,
}

/// The templates that render a different number of objects in the three renders.
fn templates_with_other_counts(r: &Renders<'_>) -> Vec<String> {
    fn count(docs: &[Document]) -> BTreeMap<&str, usize> {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for d in docs {
            *m.entry(d.source.as_str()).or_default() += 1;
        }
        m
    }
    let (a, b, d) = (count(r.a), count(r.b), count(r.defaults));
    let mut sources: Vec<&str> = a.keys().chain(b.keys()).chain(d.keys()).copied().collect();
    sources.sort_unstable();
    sources.dedup();
    sources
        .into_iter()
        .filter(|s| {
            let n = |m: &BTreeMap<&str, usize>| m.get(s).copied().unwrap_or(0);
            n(&a) != n(&d) || n(&b) != n(&d)
        })
        .map(str::to_owned)
        .collect()
}

/// Records every slot, or fails naming the template or variable that breaks the rules.
pub fn analyze(vars: &[VariableSpec], r: &Renders<'_>) -> Result<Variables> {
    if r.a.len() != r.b.len() || r.a.len() != r.defaults.len() {
        bail!(
            "variables change which objects the chart renders ({} objects with defaults, {} and {} with test values, from {}); \
             variables may only set values — structure is the vendor's decision",
            r.defaults.len(),
            r.a.len(),
            r.b.len(),
            templates_with_other_counts(r).join(", ")
        );
    }
    let toks_a = tokens(Set::A, vars);
    let toks_b = tokens(Set::B, vars);
    let default_text: String = r.defaults.iter().map(|d| d.text.as_str()).collect();
    for t in toks_a.iter().chain(&toks_b) {
        if default_text.contains(&t.text) {
            bail!(
                "the default render already contains the test value {} of {}",
                t.text,
                owner_name(t.owner, vars)
            );
        }
    }
    let mut slots: BTreeMap<Owner, Vec<Slot>> = BTreeMap::new();
    for (i, ((a, b), d)) in r.a.iter().zip(r.b).zip(r.defaults).enumerate() {
        if a.source != b.source || a.source != d.source || a.kind() != d.kind() {
            bail!(
                "variables change which objects {} renders; variables may only set values",
                d.source
            );
        }
        let found = find_slots(i, a, &toks_a, vars)?;
        // A's slots filled with B's sentinels must be exactly render B.
        let mut expect_b = a.object.clone();
        for f in &found {
            let original = a.object.pointer(&f.slot.pointer).cloned().unwrap_or(Value::Null);
            let text = |name: &str| {
                toks_b
                    .iter()
                    .find(|t| owner_name(t.owner, vars) == name)
                    .map(|t| t.text.clone())
                    .unwrap_or_default()
            };
            if let Some(slot) = expect_b.pointer_mut(&f.slot.pointer) {
                *slot = slot_value(&f.slot, owner_name(f.owner, vars), &original, &text);
            }
        }
        if let Some(p) = first_difference(&expect_b, &b.object) {
            bail!(
                "{} renders differently with other variable values outside any recorded slot, at {p}; \
                 a variable must reach the render only as a value",
                a.describe()
            );
        }
        // The default render with A's slot scalars put in must be exactly render A.
        let mut expect_a = d.object.clone();
        for f in &found {
            let Some(target) = expect_a.pointer_mut(&f.slot.pointer) else {
                bail!(
                    "{}: slot {} of {} is missing from the default render",
                    d.describe(),
                    f.slot.pointer,
                    owner_name(f.owner, vars)
                );
            };
            *target = a.object.pointer(&f.slot.pointer).cloned().unwrap_or(Value::Null);
        }
        if let Some(p) = first_difference(&expect_a, &a.object) {
            bail!(
                "{} differs between the default render and the test render outside any recorded slot, at {p}",
                d.describe()
            );
        }
        for f in found {
            slots.entry(f.owner).or_default().push(f.slot);
        }
    }
    let mut variables = Vec::new();
    for (i, spec) in vars.iter().enumerate() {
        let var_slots = slots.remove(&Owner::Var(i)).unwrap_or_default();
        if var_slots.is_empty() {
            bail!(
                "variable {} (valuesPath {}) does not appear in the render; remove it or use it in a template",
                spec.name,
                spec.values_path
            );
        }
        let mut declaration = spec.clone();
        let substring = var_slots.iter().any(|s| matches!(s.form, SlotForm::Substring { .. }));
        if substring && spec.ty == VariableType::String && declaration.pattern.is_none() {
            declaration.pattern = Some(DEFAULT_SUBSTRING_PATTERN.to_owned());
        }
        variables.push(Variable {
            declaration,
            slots: var_slots,
        });
    }
    Ok(Variables {
        release_name: r.release_name.to_owned(),
        namespace: NamespaceVariable {
            default: r.namespace.to_owned(),
            slots: slots.remove(&Owner::Namespace).unwrap_or_default(),
        },
        variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_are_short_unique_and_dns_safe() {
        let a = string_sentinel(Set::A, "hostname");
        let b = string_sentinel(Set::B, "hostname");
        assert_ne!(a, b);
        assert!(a.len() <= 20 && a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(integer_sentinel(Set::A, 0).to_string().len(), 6);
        assert_eq!(integer_sentinel(Set::B, 99).to_string().len(), 6);
    }

    #[test]
    fn templates_escape_dollars_and_fill_back() {
        let vars = vec![];
        let toks = vec![Token {
            text: "slvaX".into(),
            owner: Owner::Namespace,
            integer: None,
        }];
        let (t, owners) = template("$x https://slvaX/api", &toks, &vars);
        assert_eq!(t, "$$x https://${namespace}/api");
        assert_eq!(owners, vec![Owner::Namespace]);
        assert_eq!(fill(&t, |_| "ns".into()), "$x https://ns/api");
    }
}
