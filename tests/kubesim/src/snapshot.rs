//! Snapshots of every object, and their differences, so tests can assert that nothing in
//! the cluster changed (or exactly what did).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::store::ObjectKey;

/// Every object at one moment, keyed by group, resource, namespace and name.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub objects: BTreeMap<ObjectKey, Value>,
}

/// What differs between two snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<ObjectKey>,
    pub removed: Vec<ObjectKey>,
    pub changed: Vec<ObjectKey>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn name(k: &ObjectKey) -> String {
    let gr = if k.group.is_empty() {
        k.resource.clone()
    } else {
        format!("{}.{}", k.resource, k.group)
    };
    if k.namespace.is_empty() {
        format!("{gr}/{}", k.name)
    } else {
        format!("{gr}/{}/{}", k.namespace, k.name)
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for k in &self.added {
            writeln!(f, "+ {}", name(k))?;
        }
        for k in &self.removed {
            writeln!(f, "- {}", name(k))?;
        }
        for k in &self.changed {
            writeln!(f, "~ {}", name(k))?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// Differences from `self` (before) to `after`. Objects count as changed when their
    /// resourceVersion moved.
    pub fn diff(&self, after: &Snapshot) -> Diff {
        let mut d = Diff::default();
        for (k, v) in &after.objects {
            match self.objects.get(k) {
                None => d.added.push(k.clone()),
                Some(old) if old["metadata"]["resourceVersion"] != v["metadata"]["resourceVersion"] => {
                    d.changed.push(k.clone())
                }
                Some(_) => {}
            }
        }
        d.removed = self
            .objects
            .keys()
            .filter(|k| !after.objects.contains_key(*k))
            .cloned()
            .collect();
        d
    }
}
