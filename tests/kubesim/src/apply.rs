//! Server-side apply: structured merge with per-manager field ownership, conflicts,
//! `force`, and removal of fields a manager stops applying.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::fields::{
    FieldPath, FieldSet, MergeSchema, PathElement, display_path, fields_of, get_path, merge, remove_path,
};
use crate::managed::{self, ManagedEntry, ownable};
use crate::status::Cause;

/// Who applies, and how.
pub struct ApplyOptions<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub api_version: &'a str,
    /// `""` or `"status"`.
    pub subresource: &'a str,
    pub time: &'a str,
}

/// Fields another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflicts {
    pub message: String,
    pub causes: Vec<Cause>,
}

/// Applies `applied` over `live` (or over nothing, creating) and returns the merged object
/// with updated `managedFields`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    opts: &ApplyOptions<'_>,
    schema: &dyn MergeSchema,
) -> Result<Value, Conflicts> {
    let mut entries = live.map(managed::read).unwrap_or_default();
    let applied_view = ownable(applied, opts.subresource);
    let applied_set = fields_of(&applied_view, schema);
    let empty = json!({});
    let live_view = live
        .map(|l| ownable(l, opts.subresource))
        .unwrap_or_else(|| empty.clone());

    let is_applier =
        |e: &ManagedEntry| e.manager == opts.manager && e.operation == "Apply" && e.subresource == opts.subresource;

    // Conflicts: leaves owned by someone else whose live value differs.
    let mut conflicts: BTreeMap<(String, String), Vec<FieldPath>> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| !is_applier(e) && e.subresource == opts.subresource)
    {
        for p in e.fields.intersection(&applied_set) {
            if matches!(p.last(), Some(PathElement::Key(_))) {
                continue;
            }
            if get_path(&live_view, p, schema) != get_path(&applied_view, p, schema) {
                conflicts
                    .entry((e.manager.clone(), e.api_version.clone()))
                    .or_default()
                    .push(p.clone());
            }
        }
    }
    if !conflicts.is_empty() {
        if !opts.force {
            return Err(describe_conflicts(&conflicts));
        }
        for e in entries.iter_mut().filter(|e| !is_applier(e)) {
            if let Some(paths) = conflicts.get(&(e.manager.clone(), e.api_version.clone())) {
                e.fields.retain(|p| !paths.contains(p));
            }
        }
    }

    // Merge.
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut result = if opts.subresource == "status" {
        let mut r = base.clone();
        r["status"] = merge(
            &base["status"],
            &applied["status"],
            &mut vec!["status".to_string()],
            schema,
        );
        r
    } else {
        let mut r = merge(&base, applied, &mut Vec::new(), schema);
        // Status is never written through the main resource when a subresource exists;
        // the caller restores it. Metadata the server owns stays the server's.
        if let (Some(meta), Some(live_meta)) = (r["metadata"].as_object_mut(), base["metadata"].as_object()) {
            for k in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
            ] {
                match live_meta.get(k) {
                    Some(v) => {
                        meta.insert(k.to_string(), v.clone());
                    }
                    None => {
                        meta.shift_remove(k);
                    }
                }
            }
        }
        r
    };

    // Removal of fields the applier dropped and nobody else owns.
    let previous: FieldSet = entries
        .iter()
        .find(|e| is_applier(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !is_applier(e) && e.subresource == opts.subresource)
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let owned_by_others = |p: &FieldPath| others.iter().any(|o| o.starts_with(p));
    let mut dropped: Vec<&FieldPath> = previous.difference(&applied_set).collect();
    dropped.sort_by_key(|p| p.len());
    let mut removed: Vec<&FieldPath> = Vec::new();
    for d in dropped {
        if owned_by_others(d)
            || applied_set.iter().any(|a| a.starts_with(d))
            || removed.iter().any(|r| d.starts_with(r))
        {
            continue;
        }
        if remove_path(&mut result, d, schema) {
            removed.push(d);
            // Remove parents left empty that nobody owns.
            let mut parent = d.clone();
            while parent.pop().is_some() && !parent.is_empty() {
                let empty_now = get_path(&result, &parent, schema).is_some_and(|v| match v {
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                });
                if !empty_now
                    || owned_by_others(&parent)
                    || applied_set.contains(&parent)
                    || parent == [PathElement::Field("metadata".to_string())]
                {
                    break;
                }
                remove_path(&mut result, &parent, schema);
            }
        }
    }

    // Record ownership.
    let entry = ManagedEntry {
        manager: opts.manager.to_string(),
        operation: "Apply".to_string(),
        api_version: opts.api_version.to_string(),
        time: opts.time.to_string(),
        subresource: opts.subresource.to_string(),
        fields: applied_set,
    };
    match entries.iter_mut().find(|e| is_applier(e)) {
        Some(e) => *e = entry,
        None => entries.push(entry),
    }
    managed::prune_missing(&result, &mut entries, schema);
    managed::write(&mut result, &entries);
    Ok(result)
}

fn describe_conflicts(conflicts: &BTreeMap<(String, String), Vec<FieldPath>>) -> Conflicts {
    let total: usize = conflicts.values().map(Vec::len).sum();
    let mut parts = Vec::new();
    let mut causes = Vec::new();
    for ((manager, api_version), paths) in conflicts {
        let using = if api_version.is_empty() {
            String::new()
        } else {
            format!(" using {api_version}")
        };
        if paths.len() == 1 {
            parts.push(format!(
                "conflict with \"{manager}\"{using}: {}",
                display_path(&paths[0])
            ));
        } else {
            let list: Vec<String> = paths.iter().map(|p| format!("- {}", display_path(p))).collect();
            parts.push(format!("conflicts with \"{manager}\"{using}:\n{}", list.join("\n")));
        }
        for p in paths {
            causes.push(Cause {
                kind: "FieldManagerConflict".to_string(),
                message: format!("conflict with \"{manager}\"{using}"),
                field: display_path(p),
            });
        }
    }
    Conflicts {
        message: format!(
            "Apply failed with {total} conflict{}: {}",
            if total == 1 { "" } else { "s" },
            parts.join("\n")
        ),
        causes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::BuiltinSchema;

    fn schema() -> BuiltinSchema {
        BuiltinSchema {
            kind: "ConfigMap".to_string(),
        }
    }

    fn opts(manager: &str, force: bool) -> ApplyOptions<'_> {
        ApplyOptions {
            manager,
            force,
            api_version: "v1",
            subresource: "",
            time: "2025-01-01T00:00:00Z",
        }
    }

    #[test]
    fn dropped_field_is_removed_unless_another_manager_owns_it() {
        let s = schema();
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1", "b": "2"}});
        let live = apply(None, &first, &opts("one", false), &s).expect("applies");
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"b": "2"}});
        let live = apply(Some(&live), &other, &opts("two", false), &s).expect("shares b");
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {}});
        let live = apply(Some(&live), &second, &opts("one", false), &s).expect("applies");
        assert_eq!(live["data"], json!({"b": "2"}));
    }

    #[test]
    fn conflicting_value_is_refused_without_force_and_taken_with_it() {
        let s = schema();
        let a = json!({"metadata": {"name": "c"}, "data": {"k": "1"}});
        let live = apply(None, &a, &opts("one", false), &s).expect("applies");
        let b = json!({"metadata": {"name": "c"}, "data": {"k": "2"}});
        let err = apply(Some(&live), &b, &opts("two", false), &s).expect_err("conflicts");
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"one\" using v1: .data.k"
        );
        assert_eq!(err.causes[0].field, ".data.k");
        let live = apply(Some(&live), &b, &opts("two", true), &s).expect("forced");
        assert_eq!(live["data"]["k"], "2");
        let owners = managed::read(&live);
        assert_eq!(owners.len(), 1, "one lost its only field: {owners:?}");
        assert_eq!(owners[0].manager, "two");
    }
}
