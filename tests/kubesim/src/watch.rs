//! WATCH: a stream of `{"type": …, "object": …}` lines replayed from the store's history,
//! with bookmarks and `410 Gone` for a compacted resourceVersion.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::kinds::ResourceKind;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Change, EventType};
use crate::table::{self, IncludeObject};

/// What a watch asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub kind: ResourceKind,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
    pub bookmark_interval: Duration,
    /// `Some` when the client asked for Table rows (`kubectl get -w`).
    pub table: Option<IncludeObject>,
}

impl WatchRequest {
    /// The object as this watch shows it: itself, or a one-row Table.
    fn render(&self, object: &Value) -> Value {
        let object = Cluster::present(&self.kind, object);
        match self.table {
            None => object,
            Some(include) => {
                let rv = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                table::table(&self.kind, std::slice::from_ref(&object), rv, include)
            }
        }
    }
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event this watch sees for a change, if any: an object that stops matching the
    /// selectors is DELETED for this watch, one that starts matching is ADDED.
    fn event_for(&self, change: &Change) -> Option<&'static str> {
        if change.key.group != self.kind.group
            || change.key.resource != self.kind.plural
            || self.namespace.as_ref().is_some_and(|ns| *ns != change.key.namespace)
        {
            return None;
        }
        let now = self.selects(&change.object);
        match (change.event, &change.previous) {
            (EventType::Modified, Some(previous)) => match (self.selects(previous), now) {
                (true, true) => Some("MODIFIED"),
                (true, false) => Some("DELETED"),
                (false, true) => Some("ADDED"),
                (false, false) => None,
            },
            (event, _) => now.then_some(event.as_str()),
        }
    }
}

fn line(event: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark(kind: &ResourceKind, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

struct WatchState {
    request: WatchRequest,
    queue: VecDeque<Bytes>,
    receiver: broadcast::Receiver<Arc<Change>>,
    last_rv: u64,
    deadline: Instant,
    next_bookmark: Instant,
    done: bool,
}

/// Starts a watch; the response streams until the timeout or the client leaves.
pub fn start(cluster: &Arc<Mutex<Cluster>>, request: WatchRequest) -> Result<Response, ApiError> {
    let guard = cluster
        .lock()
        .map_err(|_| ApiError::internal("cluster lock poisoned"))?;
    let receiver = guard.store.subscribe();
    let current = guard.store.resource_version();
    let mut queue = VecDeque::new();
    let rv_text = request.resource_version.clone().unwrap_or_default();
    let last_rv;
    if request.send_initial_events || rv_text.is_empty() || rv_text == "0" {
        let objects = guard
            .store
            .list(&request.kind.group, &request.kind.plural, request.namespace.as_deref())
            .filter(|(_, o)| request.labels.matches(o) && request.fields.matches(o))
            .map(|(_, o)| request.render(o));
        for o in objects {
            queue.push_back(line("ADDED", &o));
        }
        if request.send_initial_events {
            queue.push_back(bookmark(&request.kind, current, true));
        }
        last_rv = current;
    } else {
        let since: u64 = rv_text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_text}")))?;
        match guard.store.changes_since(since) {
            Some(changes) => {
                for c in changes.iter() {
                    if let Some(event) = request.event_for(c) {
                        queue.push_back(line(event, &request.render(&c.object)));
                    }
                }
                last_rv = current.max(since);
            }
            None => {
                let gone = ApiError::gone(format!(
                    "too old resource version: {since} ({})",
                    guard.store.oldest_watchable()
                ));
                queue.push_back(line("ERROR", &gone.to_status()));
                last_rv = current;
            }
        }
    }
    drop(guard);
    let gone_now = queue.back().is_some_and(|b| b.starts_with(b"{\"type\":\"ERROR\""));
    let now = Instant::now();
    let state = WatchState {
        deadline: now + request.timeout,
        next_bookmark: now + request.bookmark_interval,
        request,
        queue,
        receiver,
        last_rv,
        done: gone_now,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(bytes) = st.queue.pop_front() {
                return Some((Ok::<Bytes, Infallible>(bytes), st));
            }
            if st.done {
                return None;
            }
            tokio::select! {
                received = st.receiver.recv() => match received {
                    Ok(change) => {
                        if change.resource_version > st.last_rv {
                            st.last_rv = change.resource_version;
                            if let Some(event) = st.request.event_for(&change) {
                                st.queue.push_back(line(event, &st.request.render(&change.object)));
                            }
                        }
                    }
                    Err(_) => return None,
                },
                _ = tokio::time::sleep_until(st.deadline) => return None,
                _ = tokio::time::sleep_until(st.next_bookmark), if st.request.bookmarks => {
                    st.next_bookmark = Instant::now() + st.request.bookmark_interval;
                    st.queue.push_back(bookmark(&st.request.kind, st.last_rv, false));
                }
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(format!("building watch response: {e}")))
}
