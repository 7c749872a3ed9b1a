//! The in-memory object store: objects keyed by group, resource, namespace and name, one
//! global resourceVersion counter, and the event history that watches replay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Where an object lives. Versions of one group-resource share objects, as in etcd.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub resource: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    pub event: EventType,
    pub key: ObjectKey,
    pub object: Value,
    /// The object before a MODIFIED change, so selector watches can see it leave or enter.
    pub previous: Option<Value>,
}

/// Objects, the resourceVersion counter and the watch history.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Watches from a resourceVersion older than this get 410 Gone.
    oldest_watchable: u64,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            objects: BTreeMap::new(),
            resource_version: 1,
            history: VecDeque::new(),
            history_limit,
            oldest_watchable: 1,
            changes,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn oldest_watchable(&self) -> u64 {
        self.oldest_watchable
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one group-resource, optionally in one namespace, in key order.
    pub fn list<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        self.objects.iter().filter(move |(k, _)| {
            k.group == group && k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    pub fn all(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.iter()
    }

    /// Stores an object with a fresh resourceVersion and records the change.
    pub fn put(&mut self, key: ObjectKey, mut object: Value) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let previous = self.objects.insert(key.clone(), object.clone());
        let event = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(event, key, object.clone(), previous);
        object
    }

    /// Removes an object, recording a DELETED change at a fresh resourceVersion.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(EventType::Deleted, key.clone(), object.clone(), None);
        Some(object)
    }

    fn record(&mut self, event: EventType, key: ObjectKey, object: Value, previous: Option<Value>) {
        let change = Arc::new(Change {
            resource_version: self.resource_version,
            event,
            key,
            object,
            previous,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.oldest_watchable = old.resource_version;
            }
        }
        // Nobody listening is fine.
        let _ = self.changes.send(change);
    }

    /// Forgets the whole history, as etcd compaction does: older watches get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_watchable = self.resource_version;
    }

    /// Changes after `after`, or `None` when that resourceVersion was compacted away.
    pub fn changes_since(&self, after: u64) -> Option<Vec<Arc<Change>>> {
        if after < self.oldest_watchable {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|c| c.resource_version > after)
                .cloned()
                .collect(),
        )
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }
}
