//! orrery-server: `orrery serve`. An HTTP API ([`api`]) over a persistent job queue ([`db`], SQLite in the data
//! folder) that worker threads ([`worker`]) run through the generation engine ([`backend`]), with progress
//! events ([`events`]), an OpenAPI document ([`openapi`]), a guardrail hook ([`guard`]) and a web page
//! ([`page`]) served from the binary.
//!
//! The data folder holds `jobs.sqlite3`, `videos/<id>.mp4` (with the generation record `<id>.json`) and
//! `uploads/<id>.<ext>`; ids are made by the server, so no part of a request becomes a path.

pub mod api;
pub mod backend;
pub mod db;
mod error;
pub mod events;
pub mod guard;
pub mod openapi;
pub mod page;
pub mod settings;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{broadcast, watch};

pub use backend::{Backend, EngineBackend, Placement, RunJob, Runner};
pub use db::{Job, JobStore, Recovery, Status};
pub use error::{Result, ServerError};
pub use guard::Guard;
pub use settings::{JobMode, JobRequest, JobSettings, Limits};

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data folder (created if missing).
    pub data: PathBuf,
    pub workers: usize,
    /// With a token, every `/v1` request needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Largest request body (uploads included), bytes.
    pub max_upload: usize,
    pub limits: Limits,
    pub guard: Guard,
}

impl ServerConfig {
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            workers: 1,
            token: None,
            max_upload: 64 << 20,
            limits: Limits::default(),
            guard: Guard::default(),
        }
    }
}

/// An exclusive lock on the data folder (`DIR/lock`, `flock`), held while the server runs and released by the
/// system when the process ends, even by `kill -9`: a second server on the same folder would re-queue the
/// first one's running jobs.
struct FolderLock {
    _file: std::fs::File,
}

impl FolderLock {
    fn take(root: &Path) -> Result<Self> {
        let path = root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                    ServerError::Io(format!(
                        "{}: another server uses this data folder",
                        root.display()
                    ))
                } else {
                    ServerError::io(format!("locking {}", path.display()), e)
                });
            }
        }
        Ok(Self { _file: file })
    }
}

/// The data folder's layout.
#[derive(Debug, Clone)]
pub struct DataDirs {
    pub root: PathBuf,
    pub videos: PathBuf,
    pub uploads: PathBuf,
}

impl DataDirs {
    fn create(root: &Path) -> Result<Self> {
        let dirs = Self {
            root: root.to_owned(),
            videos: root.join("videos"),
            uploads: root.join("uploads"),
        };
        for d in [&dirs.root, &dirs.videos, &dirs.uploads] {
            std::fs::create_dir_all(d)
                .map_err(|e| ServerError::io(format!("creating {}", d.display()), e))?;
        }
        Ok(dirs)
    }

    /// The MP4 of job `id` (a server-made id).
    pub fn video(&self, id: &str) -> PathBuf {
        self.videos.join(format!("{id}.mp4"))
    }

    /// Removes what a job that did not succeed may have left.
    fn remove_outputs(&self, id: &str) {
        let video = self.video(id);
        let _ = std::fs::remove_file(video.with_extension("json"));
        let _ = std::fs::remove_file(video);
    }
}

/// What the routes and workers share.
pub struct Shared {
    pub store: JobStore,
    pub dirs: DataDirs,
    pub backend: Arc<dyn Backend>,
    pub config: ServerConfig,
    pub workers: worker::Workers,
    events: broadcast::Sender<events::JobEvent>,
    /// Set when the server stops; ends event streams.
    closing: watch::Sender<bool>,
    _lock: FolderLock,
}

impl Shared {
    fn publish(&self, event: events::JobEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn publish_from_store(&self, id: &str) {
        if let Ok(Some(job)) = self.store.get(id) {
            self.publish(events::JobEvent::of(&job));
        }
    }

    /// Job `id` if the id is well formed and the job exists.
    pub fn job(&self, id: &str) -> Result<Option<Job>> {
        if !api::is_job_id(id) {
            return Ok(None);
        }
        self.store.get(id)
    }
}

/// A server with its store open and its workers started; [`Server::serve`] answers requests.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    pub recovery: Recovery,
}

impl Server {
    /// Opens the data folder and its job store (re-queueing interrupted jobs) and starts the workers.
    pub fn start(config: ServerConfig, backend: Arc<dyn Backend>) -> Result<Self> {
        let dirs = DataDirs::create(&config.data)?;
        let lock = FolderLock::take(&dirs.root)?;
        let (store, recovery) = JobStore::open(&dirs.root.join("jobs.sqlite3"))?;
        if recovery.requeued + recovery.failed > 0 {
            tracing::info!(
                "{} interrupted job(s) back in the queue, {} failed after too many interruptions",
                recovery.requeued,
                recovery.failed
            );
        }
        let (events, _) = broadcast::channel(1024);
        let (closing, _) = watch::channel(false);
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            store,
            dirs,
            backend,
            config,
            workers: worker::Workers::default(),
            events,
            closing,
            _lock: lock,
        });
        let threads = worker::start(&shared, workers)
            .map_err(|e| ServerError::io("starting the workers", e))?;
        Ok(Self {
            shared,
            threads,
            recovery,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The HTTP routes.
    pub fn router(&self) -> axum::Router {
        api::router(Arc::clone(&self.shared))
    }

    /// Answers requests on `listener` until `shutdown` completes, then lets open requests finish, stops the
    /// workers (a running job goes back to the queue) and waits for them.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let closing = self.shared.closing.clone();
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
                let _ = closing.send_replace(true);
            })
            .await
            .map_err(|e| ServerError::io("serving", e));
        // Joining the workers blocks: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || self.stop()).await;
        served
    }

    /// Stops the workers and waits for them.
    pub fn stop(self) {
        let _ = self.shared.closing.send_replace(true);
        self.shared.workers.stop();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Binds `addr` and serves until SIGINT or SIGTERM, on a runtime of its own; `on_listening` gets the bound
/// address (port 0 picks a free one).
pub fn run(server: Server, addr: SocketAddr, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orrery-http")
        .build()
        .map_err(|e| ServerError::io("starting the runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::io(format!("binding {addr}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| ServerError::io("reading the bound address", e))?;
        on_listening(bound);
        server.serve(listener, shutdown_signal()).await
    })
}
