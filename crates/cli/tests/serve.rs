//! `orrery serve` as a process: jobs survive `kill -9` (each finishes exactly once after a restart), and SIGTERM
//! stops it cleanly.

#[path = "../../server/tests/common/http.rs"]
mod http;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::Client;
use serde_json::json;

const PROMPT: &str = "The video shows a red ball above the floor. The red ball lands on the floor.";
const TIMEOUT: Duration = Duration::from_secs(240);

/// `orrery serve` on a free port of the loopback with the embedded model; returns it and its address.
fn serve(dir: &Path) -> (Child, SocketAddr) {
    serve_with(dir, &[])
}

fn serve_with(dir: &Path, flags: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .args(flags)
        .env("ORRERY_CACHE", dir.join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("orrery serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// (status, attempts) of every job in the store, by id.
fn stored(dir: &Path) -> Vec<(String, String, i64)> {
    let db = rusqlite::Connection::open(dir.join("data/jobs.sqlite3")).unwrap();
    let mut stmt = db
        .prepare("SELECT id, status, attempts FROM jobs ORDER BY seq")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn jobs_survive_kill_9_and_finish_exactly_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = serve(dir.path());
    let c = Client::new(addr);
    let mut ids = vec![c.submit(&json!({"prompt": PROMPT, "frames": 33, "steps": 40}))];
    for seed in 1..=3 {
        ids.push(c.submit(
            &json!({"prompt": PROMPT, "frames": 5, "steps": 2, "seed": seed, "size": "64x64"}),
        ));
    }
    c.wait_for(&ids[0], TIMEOUT, |j| j["progress"].as_f64().unwrap() > 0.0);
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let before: Vec<(String, i64)> = stored(dir.path())
        .into_iter()
        .map(|(_, s, a)| (s, a))
        .collect();
    assert_eq!(before[0], ("running".to_owned(), 1), "killed mid-job");
    assert!(before[1..].iter().all(|(s, _)| s == "queued"), "{before:?}");

    let (mut server, addr) = serve(dir.path());
    let c = Client::new(addr);
    for id in &ids {
        let job = c.wait_final(id, TIMEOUT);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(c.get(&format!("/v1/jobs/{id}/video")).status, 200);
    }
    // Every job once: the same ids, each run to the end once more only if it was interrupted.
    let after = stored(dir.path());
    let stored_ids: Vec<&String> = after.iter().map(|(id, _, _)| id).collect();
    assert_eq!(stored_ids, ids.iter().collect::<Vec<_>>());
    let attempts: Vec<i64> = after.iter().map(|(_, _, a)| *a).collect();
    assert_eq!(attempts, [2, 1, 1, 1]);
    let listed = c.get("/v1/jobs").json();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 4);
    let videos = std::fs::read_dir(dir.path().join("data/videos"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("mp4".as_ref()))
        .count();
    assert_eq!(videos, 4);

    // SIGTERM: a clean exit, with the running job back in the queue.
    let running = c.submit(&json!({"prompt": PROMPT, "frames": 33, "steps": 200}));
    c.wait_for(&running, TIMEOUT, |j| j["progress"].as_f64().unwrap() > 0.0);
    // SAFETY: sends a signal to the child process this test started.
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let last = stored(dir.path()).pop().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        (running.as_str(), "queued")
    );
}

#[test]
fn the_token_comes_from_its_file_and_bad_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token.txt");
    std::fs::write(&token, "from-a-file\nignored second line\n").unwrap();
    let (mut server, addr) = serve_with(dir.path(), &["--token-file", token.to_str().unwrap()]);
    let mut c = Client::new(addr);
    assert_eq!(c.get("/v1/jobs").status, 401);
    assert_eq!(c.get("/healthz").status, 200);
    c.token = Some("from-a-file".into());
    assert_eq!(c.get("/v1/jobs").status, 200);
    server.kill().unwrap();
    server.wait().unwrap();

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("missing.txt");
    for (flags, expect) in [
        (vec!["--token-file", empty.to_str().unwrap()], "empty token"),
        (vec!["--blocklist", missing.to_str().unwrap()], "blocklist"),
        (
            vec!["--guard-command", missing.to_str().unwrap()],
            "guard command",
        ),
        (vec!["--model", missing.to_str().unwrap()], "missing.txt"),
        (vec!["--workers", "0"], "workers"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .args(&flags)
            .env("ORRERY_CACHE", dir.path().join("cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(stderr.contains(expect), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
