//! Helpers shared by the server's tests: a server on a free loopback port, the embedded model, inputs.
#![allow(dead_code)]

pub mod http;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use orrery_server::{Backend, EngineBackend, Server, ServerConfig};
use serde_json::json;

pub use http::Client;

/// orrery-physics-nano, the embedded default model (64x64, 33 frames a chunk).
pub fn nano() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/orrery-physics-nano")
}

pub fn engine() -> Arc<dyn Backend> {
    Arc::new(EngineBackend::open(&nano()).expect("the embedded model opens"))
}

pub const PROMPT: &str =
    "The video shows a red ball above the floor. The red ball lands on the floor.";

/// A quick Text2World job of the nano model: 5 frames, 2 steps.
pub fn quick(seed: u64) -> serde_json::Value {
    json!({"prompt": PROMPT, "frames": 5, "steps": 2, "seed": seed, "size": "64x64"})
}

/// Long enough to be caught running (minutes): two chunks of 33 frames, 200 steps each.
pub fn slow() -> serde_json::Value {
    json!({"prompt": PROMPT, "frames": 65, "steps": 200})
}

pub const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// A server answering on a free loopback port from a thread of its own; stopped (gracefully) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(config: ServerConfig, backend: Arc<dyn Backend>) -> Self {
        let server = Server::start(config, backend).expect("server starts");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                server
                    .serve(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serves");
            });
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Graceful shutdown: waits until the server and its workers have stopped.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the server thread ends cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A 64x64 PNG with a ball on it.
pub fn png(dir: &Path) -> Vec<u8> {
    let mut image = orrery_media::RgbImage::from_pixel(64, 64, orrery_media::Rgb([40, 40, 48]));
    for y in 20..30 {
        for x in 28..38 {
            image.put_pixel(x, y, orrery_media::Rgb([220, 30, 30]));
        }
    }
    let path = dir.join("input.png");
    orrery_media::write_png(&path, &image).unwrap();
    std::fs::read(&path).unwrap()
}

/// The frames of an MP4 given as bytes.
pub fn decode_mp4(dir: &Path, bytes: &[u8]) -> Vec<orrery_media::RgbImage> {
    let path = dir.join("decoded.mp4");
    std::fs::write(&path, bytes).unwrap();
    orrery_media::read_video(&path)
        .expect("a readable MP4")
        .frames
}
