//! Server-sent progress events: `GET /v1/jobs/{id}/events` sends the job's state at once, then an event at
//! every change (each model call while it runs), and ends when the job is final.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::db::{Job, Status};
use crate::error::{Result, ServerError};
use crate::Shared;

/// A change of one job, as broadcast to event streams (and sent as each event's JSON data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEvent {
    pub id: String,
    pub status: Status,
    pub progress: f64,
    pub error: Option<String>,
}

impl JobEvent {
    pub fn of(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            status: job.status,
            progress: job.progress,
            error: job.error.clone(),
        }
    }

    fn sse(&self) -> Event {
        Event::default()
            .event("job")
            .data(serde_json::to_string(self).expect("plain values"))
    }
}

/// Event streams end when the server stops (graceful shutdown waits for open responses).
type Closing = tokio::sync::watch::Receiver<bool>;

enum Phase {
    First(JobEvent, broadcast::Receiver<JobEvent>, Closing),
    Following(broadcast::Receiver<JobEvent>, Closing),
    Done,
}

pub async fn job_events(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    // Subscribe before reading the store, so no change falls between the two.
    let rx = shared.events.subscribe();
    let closing = shared.closing.subscribe();
    let job = shared
        .job(&id)?
        .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))?;
    let stream = stream::unfold(
        Phase::First(JobEvent::of(&job), rx, closing),
        move |phase| {
            let shared = Arc::clone(&shared);
            let id = id.clone();
            async move {
                match phase {
                    Phase::First(event, rx, closing) => {
                        let next = if event.status.is_final() {
                            Phase::Done
                        } else {
                            Phase::Following(rx, closing)
                        };
                        Some((Ok(event.sse()), next))
                    }
                    Phase::Following(mut rx, mut closing) => loop {
                        let received = tokio::select! {
                            r = rx.recv() => r,
                            _ = closing.wait_for(|c| *c) => return None,
                        };
                        let event = match received {
                            Ok(e) if e.id == id => e,
                            Ok(_) => continue,
                            // Missed events: the store has the latest state.
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                match shared.store.get(&id) {
                                    Ok(Some(job)) => JobEvent::of(&job),
                                    _ => return None,
                                }
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        };
                        let next = if event.status.is_final() {
                            Phase::Done
                        } else {
                            Phase::Following(rx, closing)
                        };
                        return Some((Ok(event.sse()), next));
                    },
                    Phase::Done => None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
