//! `GET /api/v1/events`: the release's progress as server-sent events.
//!
//! On connecting the client gets one `status` and one `progress` event (where things stand),
//! then a `progress` event on every change the engine publishes and a `status` event when the
//! release's state changes (phase, running operation, current or desired version, the active
//! condition's message) — seen on progress changes and by looking once a second. A comment
//! line (`: heartbeat`) goes out after every `heartbeatSeconds` without an event, so proxies
//! keep the connection and clients notice a dead one. Tokens only in `Authorization`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use super::release::{Release, ReleaseView};
use super::{ApiError, ErrorBody, caller};
use crate::release::engine::Engine;
use crate::release::resource::Progress;

/// Heartbeat interval unless the client asks for another.
pub const HEARTBEAT_SECONDS: u64 = 15;
/// How often the release's state is looked at between progress changes.
const STATUS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Seconds without an event before a heartbeat comment (1–300, default 15).
    #[param(minimum = 1, maximum = 300)]
    heartbeat_seconds: Option<u64>,
}

/// Streams the release's progress: `event: status` with the release as `GET /api/v1/release`
/// shows it, `event: progress` with the engine's progress, and `: heartbeat` comments.
#[utoipa::path(get, path = "/api/v1/events", tag = "release", params(EventsQuery),
    responses(
        (status = 200, description = "A stream of `status` (data: ReleaseView JSON) and `progress` \
            (data: Progress JSON) events and heartbeat comments", content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorBody)))]
pub(crate) async fn events(
    State(r): State<Release>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller(&r.agent, &headers, "events", false)?;
    // A token offered in the URL is refused above (no header); other unknown parameters too.
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{e}; the only parameter is heartbeatSeconds (tokens go in the Authorization header)"),
        )
    })?;
    let heartbeat = Duration::from_secs(q.heartbeat_seconds.unwrap_or(HEARTBEAT_SECONDS).clamp(1, 300));
    Ok(Sse::new(stream(r.engine)).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

/// What, of the release, makes a new `status` event.
fn key(view: &ReleaseView) -> String {
    let active = view
        .status
        .conditions
        .iter()
        .find(|c| c.type_ != "Ready" && c.status == "True")
        .map(|c| (c.reason.as_str(), c.message.as_str()));
    serde_json::json!([
        view.status.phase,
        view.running,
        view.status.current_version,
        view.status.desired_version,
        active,
    ])
    .to_string()
}

fn status_event(view: &ReleaseView) -> Event {
    Event::default()
        .event("status")
        .json_data(view)
        .unwrap_or_else(|_| Event::default().event("status"))
}

fn progress_event(p: &Progress) -> Event {
    Event::default()
        .event("progress")
        .json_data(p)
        .unwrap_or_else(|_| Event::default().event("progress"))
}

struct Follow {
    engine: Arc<Engine>,
    progress: tokio::sync::watch::Receiver<Progress>,
    tick: tokio::time::Interval,
    last: Option<String>,
    queue: VecDeque<Event>,
    started: bool,
}

impl Follow {
    /// Queues a `status` event if the release's state changed since the last one.
    async fn look(&mut self) {
        let view = ReleaseView::of(&self.engine).await;
        let k = key(&view);
        if self.last.as_deref() != Some(k.as_str()) {
            self.last = Some(k);
            self.queue.push_back(status_event(&view));
        }
    }
}

/// The event stream of one client; it ends when the engine goes away, and is dropped (with
/// everything it holds) when the client disconnects.
fn stream(engine: Arc<Engine>) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follow = Follow {
        progress: engine.subscribe(),
        engine,
        tick,
        last: None,
        queue: VecDeque::new(),
        started: false,
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.queue.pop_front() {
                return Some((Ok(event), f));
            }
            if !f.started {
                f.started = true;
                f.look().await;
                let p = f.progress.borrow_and_update().clone();
                f.queue.push_back(progress_event(&p));
                continue;
            }
            tokio::select! {
                changed = f.progress.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let p = f.progress.borrow_and_update().clone();
                    f.queue.push_back(progress_event(&p));
                    f.look().await;
                }
                _ = f.tick.tick() => f.look().await,
            }
        }
    })
}
