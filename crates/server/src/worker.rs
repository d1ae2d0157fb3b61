//! Worker threads: each takes the oldest queued job from the store, runs it through its own [`Runner`] and
//! records the outcome. A panic fails that job alone (the worker starts a fresh runner); cancellation and
//! shutdown are checked after every model call.

use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{RunJob, Runner};
use crate::db::{Job, Status};
use crate::events::JobEvent;
use crate::Shared;

const KEEP_GOING: u8 = 0;
const CANCEL: u8 = 1;
const SHUT_DOWN: u8 = 2;

/// Unwinds a running generation from its step callback (raised with `resume_unwind`, so no panic message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    Cancel,
    ShutDown,
}

/// The jobs workers are running, each with its interrupt flag, and the signal that wakes idle workers.
#[derive(Default)]
pub struct Workers {
    running: Mutex<HashMap<String, Arc<AtomicU8>>>,
    /// True once the server stops.
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Workers {
    /// Wakes idle workers (a job was queued).
    pub fn notify(&self) {
        let _guard = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }

    /// Asks the worker running job `id` to stop it; false if no worker runs it.
    pub fn cancel(&self, id: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get(id) {
            Some(flag) => {
                flag.store(CANCEL, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Stops taking jobs and interrupts the running ones (they go back to the queue).
    pub fn stop(&self) {
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        *stopping = true;
        for flag in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            flag.store(SHUT_DOWN, Ordering::SeqCst);
        }
        self.wake.notify_all();
    }

    fn stopping(&self) -> bool {
        *self.stopping.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a wake-up, at most `timeout` (a poll in case a notification was missed).
    fn idle(&self, timeout: Duration) {
        let stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        if !*stopping {
            let _ = self.wake.wait_timeout(stopping, timeout);
        }
    }
}

/// Starts `n` worker threads.
pub fn start(shared: &Arc<Shared>, n: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let shared = Arc::clone(shared);
            std::thread::Builder::new()
                .name(format!("orrery-worker-{i}"))
                .spawn(move || work(&shared))
        })
        .collect()
}

fn work(shared: &Shared) {
    let mut runner = shared.backend.runner();
    while !shared.workers.stopping() {
        match shared.store.claim_next() {
            Ok(Some(job)) => run_one(shared, &mut runner, job),
            Ok(None) => shared.workers.idle(Duration::from_secs(1)),
            Err(e) => {
                tracing::error!("taking a job: {e}");
                shared.workers.idle(Duration::from_secs(1));
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn run_one(shared: &Shared, runner: &mut Box<dyn Runner>, job: Job) {
    let id = job.id.clone();
    let flag = Arc::new(AtomicU8::new(KEEP_GOING));
    shared
        .workers
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), Arc::clone(&flag));
    if shared.workers.stopping() {
        flag.store(SHUT_DOWN, Ordering::SeqCst);
    }
    // A cancellation between taking the job and registering its flag is in the store.
    if let Ok(Some(now)) = shared.store.get(&id) {
        if now.status == Status::Cancelled {
            flag.store(CANCEL, Ordering::SeqCst);
        }
    }
    tracing::info!("job {id}: running ({:?})", job.settings.mode);
    shared.publish(JobEvent::of(&job));
    let out = shared.dirs.video(&id);
    let input = job
        .input
        .as_deref()
        .map(|name| shared.dirs.uploads.join(name));
    let run = RunJob {
        settings: &job.settings,
        input: input.as_deref(),
        out: &out,
    };
    let mut on_step = |done: usize, total: usize| {
        match flag.load(Ordering::SeqCst) {
            CANCEL => resume_unwind(Box::new(Interrupt::Cancel)),
            SHUT_DOWN => resume_unwind(Box::new(Interrupt::ShutDown)),
            _ => {}
        }
        let progress = (done as f64 / total.max(1) as f64).min(1.0);
        if let Err(e) = shared.store.set_progress(&id, progress) {
            tracing::warn!("job {id}: recording progress: {e}");
        }
        shared.publish(JobEvent {
            id: id.clone(),
            status: Status::Running,
            progress,
            error: None,
        });
    };
    let result = catch_unwind(AssertUnwindSafe(|| runner.run(&run, &mut on_step)));
    shared
        .workers
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    let outcome: Result<(), String> = match result {
        Ok(r) => r,
        Err(payload) => match payload.downcast_ref::<Interrupt>() {
            Some(Interrupt::Cancel) => {
                tracing::info!("job {id}: cancelled while running");
                shared.dirs.remove_outputs(&id);
                shared.publish_from_store(&id);
                return;
            }
            Some(Interrupt::ShutDown) => {
                shared.dirs.remove_outputs(&id);
                match shared.store.requeue(&id) {
                    Ok(_) => tracing::info!("job {id}: back in the queue (shutting down)"),
                    Err(e) => tracing::error!("job {id}: re-queueing: {e}"),
                }
                return;
            }
            None => {
                // The runner's state may be broken half-way; the next job gets a fresh one.
                *runner = shared.backend.runner();
                Err(format!("the worker panicked: {}", panic_message(&*payload)))
            }
        },
    };
    if let Err(e) = &outcome {
        shared.dirs.remove_outputs(&id);
        tracing::warn!("job {id}: failed: {e}");
    }
    match shared
        .store
        .finish(&id, outcome.as_ref().map(|_| ()).map_err(String::as_str))
    {
        Ok(true) => tracing::info!(
            "job {id}: {}",
            if outcome.is_ok() {
                "succeeded"
            } else {
                "failed"
            }
        ),
        // Cancelled after its last step: the cancellation stands and its video goes.
        Ok(false) => shared.dirs.remove_outputs(&id),
        Err(e) => tracing::error!("job {id}: recording the outcome: {e}"),
    }
    shared.publish_from_store(&id);
}
