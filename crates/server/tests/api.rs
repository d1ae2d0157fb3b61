//! The API on loopback with the embedded model: submit, poll, download, events, cancel, bad inputs, the token,
//! the guardrail, a worker panic and a restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::http::{multipart, sse_events};
use common::{engine, quick, slow, TestServer, JOB_TIMEOUT, PROMPT};
use orrery_server::{
    Backend, Guard, JobMode, JobRequest, JobSettings, RunJob, Runner, ServerConfig,
};
use serde_json::json;

fn config(dir: &Path) -> ServerConfig {
    ServerConfig::new(dir.join("data"))
}

#[test]
fn a_text2world_job_is_queued_run_and_its_video_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    let health = c.get("/healthz");
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );

    let r = c.post_json("/v1/jobs", &quick(3));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/jobs/{id}").as_str())
    );

    let job = c.wait_final(&id, JOB_TIMEOUT);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["error"], serde_json::Value::Null);
    assert_eq!(job["video"], format!("/v1/jobs/{id}/video"));
    let s = &job["settings"];
    assert_eq!(
        (
            &s["mode"],
            &s["prompt"],
            &s["seed"],
            &s["frames"],
            &s["width"],
            &s["height"],
            &s["steps"]
        ),
        (
            &json!("text2world"),
            &json!(PROMPT),
            &json!(3),
            &json!(5),
            &json!(64),
            &json!(64),
            &json!(2)
        )
    );
    // The model's defaults fill the rest: its guidance for Text2World and its own (empty) negative prompt.
    assert_eq!(s["guidance"], serde_json::Value::Null);
    assert_eq!(s["sampling"]["guidance"], 2.0);
    assert_eq!(s["sampling"]["negative_prompt"], "");
    for time in ["created", "started", "finished"] {
        let t = job[time].as_str().unwrap();
        assert!(t.len() == 24 && t.ends_with('Z'), "{time}: {t}");
    }

    let video = c.get(&format!("/v1/jobs/{id}/video"));
    assert_eq!(video.status, 200);
    assert_eq!(video.header("content-type"), Some("video/mp4"));
    assert_eq!(video.header("accept-ranges"), Some("bytes"));
    let ranged = common::http::request(
        server.addr,
        "GET",
        &format!("/v1/jobs/{id}/video"),
        &[("Range", "bytes=4-11")],
        b"",
    )
    .unwrap();
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, &video.body[4..12]);
    assert_eq!(
        ranged.header("content-range"),
        Some(format!("bytes 4-11/{}", video.body.len()).as_str())
    );
    let beyond = format!("bytes={}-", video.body.len());
    let r = common::http::request(
        server.addr,
        "GET",
        &format!("/v1/jobs/{id}/video"),
        &[("Range", &beyond)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 416);
    r.error();
    let frames = common::decode_mp4(dir.path(), &video.body);
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0].dimensions(), (64, 64));
    // The generation record is kept beside the video.
    let record = dir.path().join(format!("data/videos/{id}.json"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    assert_eq!(
        (record["seed"].clone(), record["steps"].clone()),
        (json!(3), json!(2))
    );

    // A finished job's events: its final state, then the stream ends.
    let events = c.get(&format!("/v1/jobs/{id}/events"));
    assert_eq!(events.status, 200);
    assert!(events
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&events.text());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], "succeeded");

    // The same seed gives the same video.
    let again = c.submit(&quick(3));
    assert_eq!(c.wait_final(&again, JOB_TIMEOUT)["status"], "succeeded");
    let second = c.get(&format!("/v1/jobs/{again}/video"));
    assert_eq!(common::decode_mp4(dir.path(), &second.body), frames);

    let list = c.get("/v1/jobs").json();
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [again.as_str(), id.as_str()], "newest first");
    assert_eq!(list["next"], serde_json::Value::Null);
}

#[test]
fn events_follow_a_job_from_the_queue_to_its_video() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    let id = c.submit(&json!({"prompt": PROMPT, "frames": 5, "steps": 6, "size": "64x64"}));
    let body = c.get(&format!("/v1/jobs/{id}/events")).text();
    let events = sse_events(&body);
    assert!(events.len() >= 2, "{body}");
    assert!(events.iter().all(|e| e["id"] == id.as_str()));
    let last = events.last().unwrap();
    assert_eq!(
        (last["status"].clone(), last["progress"].clone()),
        (json!("succeeded"), json!(1.0))
    );
    let progress: Vec<f64> = events
        .iter()
        .map(|e| e["progress"].as_f64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // An event after each sampler step while it runs.
    assert!(
        events
            .iter()
            .any(|e| e["status"] == "running" && e["progress"].as_f64().unwrap() > 0.0),
        "{body}"
    );
}

#[test]
fn image2world_and_video2world_take_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    let settings = json!({"prompt": PROMPT, "frames": 33, "seed": 2}).to_string();
    let image = common::png(dir.path());
    let (ct, body) = multipart(&[
        ("settings", None, settings.as_bytes()),
        ("image", Some("first.png"), &image),
    ]);
    let r = c.send("POST", "/v1/jobs", Some(&ct), &body);
    assert_eq!(r.status, 202, "{}", r.text());
    let from_image = r.json()["id"].as_str().unwrap().to_owned();
    let job = c.wait_final(&from_image, JOB_TIMEOUT);
    assert_eq!(
        (job["status"].clone(), job["settings"]["mode"].clone()),
        (json!("succeeded"), json!("image2world")),
        "{job}"
    );
    // The model's Image2World settings: 1 step without guidance.
    assert_eq!(job["settings"]["sampling"]["steps"], 1);
    let uploads: Vec<_> = std::fs::read_dir(dir.path().join("data/uploads"))
        .unwrap()
        .collect();
    assert_eq!(uploads.len(), 1);
    let video = c.get(&format!("/v1/jobs/{from_image}/video")).body;
    assert_eq!(common::decode_mp4(dir.path(), &video).len(), 33);

    // A video whose frames decode to more than the server accepts is refused from its header.
    let mut small = config(dir.path());
    small.data = dir.path().join("small");
    small.limits.max_input_video_bytes = 64 * 64 * 3 * 32;
    let strict = TestServer::start(small, engine());
    let (ct, body) = multipart(&[
        ("settings", None, settings.as_bytes()),
        ("video", Some("clip.mp4"), &video),
    ]);
    let r = strict.client().send("POST", "/v1/jobs", Some(&ct), &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("33 frames of 64x64"), "{}", r.error());
    drop(strict);

    // The Image2World output conditions a Video2World job.
    let (ct, body) = multipart(&[
        ("video", Some("clip.mp4"), &video),
        ("settings", None, settings.as_bytes()),
    ]);
    let r = c.send("POST", "/v1/jobs", Some(&ct), &body);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let job = c.wait_final(&id, JOB_TIMEOUT);
    assert_eq!(
        (job["status"].clone(), job["settings"]["mode"].clone()),
        (json!("succeeded"), json!("video2world")),
        "{job}"
    );
    assert_eq!(
        common::decode_mp4(dir.path(), &c.get(&format!("/v1/jobs/{id}/video")).body).len(),
        33
    );
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_upload = 256 << 10;
    let server = TestServer::start(cfg, engine());
    let c = server.client();
    let post = |body: &[u8]| c.send("POST", "/v1/jobs", Some("application/json"), body);
    for (body, status, expect) in [
        (&b"{\"prompt\": "[..], 400, "request body"),
        (b"[1, 2]", 400, "request body"),
        (
            br#"{"prompt": "a ball", "colour": "red"}"#,
            400,
            "unknown field `colour`",
        ),
        (br#"{"seed": 4}"#, 400, "prompt"),
        (br#"{"prompt": ""}"#, 400, "prompt: must not be empty"),
        (
            br#"{"prompt": "a ball", "size": "100000x100000"}"#,
            400,
            "pixels",
        ),
        (
            br#"{"prompt": "a ball", "size": "64x60"}"#,
            400,
            "multiples of 16",
        ),
        (br#"{"prompt": "a ball", "size": "wide"}"#, 400, "WxH"),
        (br#"{"prompt": "a ball", "frames": 1000000}"#, 400, "frames"),
        (br#"{"prompt": "a ball", "frames": 10}"#, 400, "1 + 4k"),
        (br#"{"prompt": "a ball", "steps": 0}"#, 400, "steps"),
        (br#"{"prompt": "a ball", "steps": 1e9}"#, 400, "steps"),
        (br#"{"prompt": "a ball", "seed": -1}"#, 400, "seed"),
        (br#"{"prompt": "a ball", "guidance": -1}"#, 400, "guidance"),
    ] {
        let r = post(body);
        assert_eq!(
            r.status,
            status,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        let e = r.error();
        assert!(e.contains(expect), "{}: {e}", String::from_utf8_lossy(body));
    }
    let r = c.send("POST", "/v1/jobs", Some("text/plain"), b"a ball");
    assert_eq!((r.status, r.error().contains("Content-Type")), (400, true));

    // Bodies over the limit: 413, for JSON and for uploads.
    let big = format!(r#"{{"prompt": "{}"}}"#, "a ".repeat(200_000));
    assert_eq!(post(big.as_bytes()).status, 413);
    let settings = br#"{"prompt": "a ball"}"#;
    let huge = vec![0x89u8; 300 << 10];
    let (ct, body) = multipart(&[
        ("settings", None, settings),
        ("image", Some("big.png"), &huge),
    ]);
    let r = c.send("POST", "/v1/jobs", Some(&ct), &body);
    assert_eq!(r.status, 413, "{}", r.text());
    r.error();

    // Unreadable media: refused when submitted, nothing kept.
    let mut broken_png = common::png(dir.path());
    broken_png.truncate(60);
    let broken_mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2 and then nothing".to_vec();
    let garbage = b"not an image at all".to_vec();
    let png = common::png(dir.path());
    for (parts, expect) in [
        (
            vec![
                ("settings", None, &settings[..]),
                ("image", Some("a.png"), &broken_png[..]),
            ],
            "image",
        ),
        (
            vec![
                ("settings", None, &settings[..]),
                ("video", Some("a.mp4"), &broken_mp4[..]),
            ],
            "video",
        ),
        (
            vec![
                ("settings", None, &settings[..]),
                ("image", Some("a.png"), &garbage[..]),
            ],
            "expected a PNG",
        ),
        (
            vec![
                ("settings", None, &settings[..]),
                ("video", Some("a.mp4"), &png[..]),
            ],
            "expected an MP4",
        ),
        (
            vec![
                ("settings", None, &settings[..]),
                ("sound", Some("a.wav"), &garbage[..]),
            ],
            "unknown part",
        ),
        (vec![("image", Some("a.png"), &png[..])], "settings"),
        (
            vec![
                ("settings", None, &settings[..]),
                ("image", Some("a.png"), &png[..]),
                ("video", Some("b.mp4"), &broken_mp4[..]),
            ],
            "more than one",
        ),
        (
            vec![
                ("settings", None, &b"{\"prompt\": 3}"[..]),
                ("image", Some("a.png"), &png[..]),
            ],
            "prompt",
        ),
    ] {
        let (ct, body) = multipart(&parts);
        let r = c.send("POST", "/v1/jobs", Some(&ct), &body);
        assert_eq!(r.status, 400, "{expect}: {}", r.text());
        let e = r.error();
        assert!(e.contains(expect), "{expect}: {e}");
        assert!(
            !e.contains(&dir.path().display().to_string()),
            "no server path in {e}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/uploads"))
            .unwrap()
            .count(),
        0
    );

    // Ids: unknown, malformed (never a path), and the states that refuse a request.
    for path in [
        "/v1/jobs/00000000000000000000000000000000",
        "/v1/jobs/..%2F..%2Fjobs.sqlite3",
        "/v1/jobs/abc/video",
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        r.error();
    }
    assert_eq!(
        c.delete("/v1/jobs/00000000000000000000000000000000").status,
        404
    );
    let r = c.get("/nowhere");
    assert_eq!((r.status, r.error()), (404, "no such route".to_owned()));
    assert_eq!(c.send("PUT", "/v1/jobs", None, b"").status, 405);
    for query in [
        "?limit=0",
        "?limit=100000",
        "?limit=x",
        "?page=2",
        "?before=../x",
    ] {
        let r = c.get(&format!("/v1/jobs{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        r.error();
    }
    let id = c.submit(&quick(1));
    let early = c.get(&format!("/v1/jobs/{id}/video"));
    if early.status != 200 {
        assert_eq!(early.status, 409, "{}", early.text());
    }
    assert_eq!(c.wait_final(&id, JOB_TIMEOUT)["status"], "succeeded");
    let r = c.delete(&format!("/v1/jobs/{id}"));
    assert_eq!(
        (r.status, r.error().contains("already succeeded")),
        (409, true)
    );
    // Nothing above broke the server.
    assert_eq!(c.get("/healthz").status, 200);
}

#[test]
fn the_token_guards_every_v1_route_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.token = Some("s3cret-token".into());
    let server = TestServer::start(cfg, engine());
    let mut c = server.client();
    let id = "0123456789abcdef0123456789abcdef";
    let routes = [
        ("GET", "/v1/jobs".to_owned()),
        ("POST", "/v1/jobs".to_owned()),
        ("GET", format!("/v1/jobs/{id}")),
        ("DELETE", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/video")),
        ("GET", format!("/v1/jobs/{id}/events")),
    ];
    for token in [None, Some("wrong"), Some("s3cret-token-and-more"), Some("")] {
        c.token = token.map(str::to_owned);
        for (method, path) in &routes {
            let r = c.send(
                method,
                path,
                Some("application/json"),
                quick(1).to_string().as_bytes(),
            );
            assert_eq!(r.status, 401, "{method} {path} with {token:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            r.error();
        }
    }
    // Not "Bearer": refused too.
    let r = common::http::request(
        server.addr,
        "GET",
        "/v1/jobs",
        &[("Authorization", "Basic czNjcmV0LXRva2Vu")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401);
    for open in ["/healthz", "/", "/app.js", "/style.css", "/openapi.json"] {
        assert_eq!(c.get(open).status, 200, "{open}");
    }
    c.token = Some("s3cret-token".into());
    assert_eq!(c.get("/v1/jobs").status, 200);
    let job = c.submit(&quick(1));
    assert_eq!(c.wait_final(&job, JOB_TIMEOUT)["status"], "succeeded");
    assert_eq!(c.get(&format!("/v1/jobs/{job}/video")).status, 200);
    assert_eq!(c.get(&format!("/v1/jobs/{id}")).status, 404);
}

#[test]
fn cancelling_stops_a_running_job_at_its_next_step_and_drops_a_queued_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    let running = c.submit(&slow());
    let queued = c.submit(&slow());
    c.wait_for(&running, JOB_TIMEOUT, |j| {
        j["progress"].as_f64().unwrap() > 0.0
    });
    let r = c.delete(&format!("/v1/jobs/{queued}"));
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("cancelled")),
        "{}",
        r.text()
    );
    let r = c.delete(&format!("/v1/jobs/{running}"));
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("cancelled")),
        "{}",
        r.text()
    );
    // The worker is free at once for the next job: it stopped at the next step, not after 400.
    let cancelled = std::time::Instant::now();
    let next = c.submit(&quick(1));
    let job = c.wait_final(&next, JOB_TIMEOUT);
    assert_eq!(job["status"], "succeeded");
    assert!(
        cancelled.elapsed() < Duration::from_secs(20),
        "{:?}",
        cancelled.elapsed()
    );
    for id in [&running, &queued] {
        let job = c.job(id);
        assert_eq!(job["status"], "cancelled");
        assert!(job["progress"].as_f64().unwrap() < 1.0, "{job}");
        assert!(job["finished"].is_string());
        assert_eq!(c.get(&format!("/v1/jobs/{id}/video")).status, 409);
        assert!(!dir.path().join(format!("data/videos/{id}.mp4")).exists());
        assert_eq!(c.delete(&format!("/v1/jobs/{id}")).status, 409);
    }
}

/// The engine, except that a prompt with "explode" panics the worker.
struct Explosive(Arc<dyn Backend>);

struct ExplosiveRunner(Box<dyn Runner>);

impl Backend for Explosive {
    fn resolve(&self, request: &JobRequest, mode: JobMode) -> Result<JobSettings, String> {
        self.0.resolve(request, mode)
    }

    fn runner(&self) -> Box<dyn Runner> {
        Box::new(ExplosiveRunner(self.0.runner()))
    }
}

impl Runner for ExplosiveRunner {
    fn run(
        &mut self,
        job: &RunJob<'_>,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(), String> {
        let exploding = job.settings.prompt.contains("explode");
        self.0.run(job, &mut |done, total| {
            on_step(done, total);
            assert!(!exploding, "the worker exploded at step {done}");
        })
    }
}

#[test]
fn a_worker_panic_fails_that_job_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), Arc::new(Explosive(engine())));
    let c = server.client();
    let before = c.submit(&quick(1));
    let mut exploding = quick(2);
    exploding["prompt"] = json!("The red ball will explode.");
    let bad = c.submit(&exploding);
    let after = c.submit(&quick(3));
    let job = c.wait_final(&bad, JOB_TIMEOUT);
    assert_eq!(job["status"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("panicked") && error.contains("exploded at step 1"),
        "{error}"
    );
    for id in [&before, &after] {
        assert_eq!(c.wait_final(id, JOB_TIMEOUT)["status"], "succeeded");
    }
    assert!(!dir.path().join(format!("data/videos/{bad}.mp4")).exists());
}

#[test]
fn the_guardrail_refuses_blocked_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.guard = Guard::new("green cube\n", None, Duration::from_secs(5));
    let server = TestServer::start(cfg, engine());
    let c = server.client();
    let r = c.post_json("/v1/jobs", &json!({"prompt": "A GREEN cube slides."}));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("blocked phrase \"green cube\""));
    assert_eq!(c.get("/v1/jobs").json()["jobs"], json!([]));
    assert_eq!(c.post_json("/v1/jobs", &quick(1)).status, 202);
}

#[test]
fn a_stopped_server_puts_its_running_job_back_and_a_new_one_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    let job = json!({"prompt": PROMPT, "frames": 33, "steps": 40});
    let interrupted = c.submit(&job);
    let waiting = c.submit(&quick(2));
    c.wait_for(&interrupted, JOB_TIMEOUT, |j| {
        j["progress"].as_f64().unwrap() > 0.0
    });
    // A client following the job's events: the stream ends when the server stops (else shutdown would wait).
    let following = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        let get = format!(
            "GET /v1/jobs/{interrupted}/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(get.as_bytes()).unwrap();
        // Connected and subscribed: the first event (the job's state) has arrived.
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("data:") {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the stream closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        std::thread::spawn(move || {
            stream.read_to_end(&mut seen).unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        })
    };
    // One server per data folder.
    let Err(second) = orrery_server::Server::start(config(dir.path()), engine()) else {
        panic!("a second server started on the same data folder");
    };
    assert!(
        second
            .to_string()
            .contains("another server uses this data folder"),
        "{second}"
    );
    server.stop();
    let text = following.join().unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert!(!events.is_empty(), "{text}");
    assert!(events.iter().all(|e| e["status"] == "running"), "{text}");
    // Stopped gracefully: the job went back to the queue at its next step, and left no video.
    let db = rusqlite::Connection::open(dir.path().join("data/jobs.sqlite3")).unwrap();
    let (status, progress): (String, f64) = db
        .query_row(
            "SELECT status, progress FROM jobs WHERE id = ?1",
            [&interrupted],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), progress), ("queued", 0.0));
    drop(db);
    assert!(!dir
        .path()
        .join(format!("data/videos/{interrupted}.mp4"))
        .exists());
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    for id in [&interrupted, &waiting] {
        let job = c.wait_final(id, JOB_TIMEOUT);
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let list = c.get("/v1/jobs").json();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
}

#[test]
fn jobs_are_listed_newest_first_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let c = server.client();
    let ids: Vec<String> = (0..5).map(|i| c.submit(&quick(i))).collect();
    let mut seen = Vec::new();
    let mut path = "/v1/jobs?limit=2".to_owned();
    loop {
        let page = c.get(&path).json();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/jobs?limit=2&before={next}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    for id in &ids {
        c.delete(&format!("/v1/jobs/{id}"));
    }
}

#[test]
fn the_openapi_document_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path()), engine());
    let doc = server.client().get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    documented.sort();
    let routes = [
        ("DELETE", "/v1/jobs/{id}"),
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/events"),
        ("GET", "/v1/jobs/{id}/video"),
        ("POST", "/v1/jobs"),
    ];
    let routes: Vec<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes);
    // Every reference resolves.
    let text = doc.to_string();
    for name in text.split("#/components/schemas/").skip(1) {
        let name = name.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    // The documented routes exist: each answers something other than "no such route".
    let c = server.client();
    for (method, path) in &routes {
        let path = path.replace("{id}", "0123456789abcdef0123456789abcdef");
        let r = c.send(method, &path, Some("application/json"), b"{}");
        assert_ne!(r.text(), r#"{"error":"no such route"}"#, "{method} {path}");
    }
}
