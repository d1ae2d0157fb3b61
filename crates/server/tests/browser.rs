//! The web page in headless Chromium, driven through WebDriver (chromedriver): enter the token, type a prompt,
//! submit, follow the job to its video and play it, upload an image, cancel a job; screenshots are saved as
//! `target/tmp/orrery-serve-page*.png`. Without chromium and chromedriver the test says so and passes, unless
//! `ORRERY_REQUIRE_BROWSER` is set (CI sets it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::http::request;
use common::{engine, TestServer, PROMPT};
use orrery_server::ServerConfig;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver and one browser session; both end on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let path = format!("/session/{}{path}", self.session);
        let r = request(
            self.addr,
            method,
            &path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let v = r.json();
        assert_eq!(r.status, 200, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while request(addr, "GET", "/status", &[], b"")
            .map(|r| r.json()["value"]["ready"] != true)
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver is not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1100,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let r = request(
            addr,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            caps.to_string().as_bytes(),
        )
        .unwrap();
        let v = r.json();
        assert_eq!(r.status, 200, "new session: {v}");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Self {
            driver,
            addr,
            session,
            _profile: profile,
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Saves a screenshot of the window as `target/tmp/NAME`.
    fn screenshot(&self, name: &str) {
        let shot = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().expect("base64 PNG"))
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&out, &png).unwrap();
        eprintln!("screenshot: {}", out.display());
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `script` until `done` holds for its value; returns it.
    fn until(&self, script: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let v = self.script(script);
            if done(&v) {
                return v;
            }
            assert!(start.elapsed() < timeout, "waited {timeout:?}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            b"",
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_page_submits_a_prompt_follows_the_job_and_plays_the_video() {
    let (Some(chromium), Some(chromedriver)) = (
        find(&["chromium", "chromium-browser", "google-chrome"]),
        find(&["chromedriver"]),
    ) else {
        assert!(
            std::env::var_os("ORRERY_REQUIRE_BROWSER").is_none(),
            "ORRERY_REQUIRE_BROWSER is set but chromium or chromedriver is not on PATH"
        );
        eprintln!("skipped: chromium and chromedriver are needed (apt-get install chromium chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.token = Some("page-token".into());
    let server = TestServer::start(config, engine());
    let browser = Browser::start(&chromium, &chromedriver);
    browser.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{}/", server.addr)})),
    );

    // Without the token the page says the server refused it.
    let refused = browser.until(
        "return document.getElementById('form-error').textContent",
        Duration::from_secs(20),
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
    );
    assert!(refused.as_str().unwrap().contains("token"), "{refused}");
    // The token is taken when the field changes (Tab leaves it).
    browser.type_into("#token", "page-token\u{E004}");
    browser.until(
        "return document.getElementById('form-error').textContent",
        Duration::from_secs(20),
        |v| v == "",
    );

    browser.type_into("#prompt", PROMPT);
    browser.type_into("#frames", "9");
    browser.type_into("#steps", "4");
    browser.click("#submit");

    // Progress shows while it runs; then the gallery's video loads and plays.
    let state = "const c = document.querySelector('#gallery .card'); if (!c) return null; \
        const v = c.querySelector('video'); \
        return {status: c.dataset.status, progress: c.querySelector('progress').value, \
                prompt: c.querySelector('.prompt').textContent, error: c.querySelector('.error').textContent, \
                ready: v ? v.readyState : -1, duration: v ? v.duration : 0, width: v ? v.videoWidth : 0, \
                time: v ? v.currentTime : 0, mediaError: v && v.error ? v.error.code : null}";
    let done = browser.until(state, Duration::from_secs(180), |v| {
        v["status"] == "failed"
            || v["mediaError"].is_number()
            || v["ready"].as_i64().unwrap_or(-1) >= 2
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["prompt"], PROMPT);
    assert_eq!(
        done["mediaError"],
        Value::Null,
        "Chromium could not play the MP4: {done}"
    );
    assert_eq!(done["width"], 64, "{done}");
    // 9 frames at 16 fps.
    let duration = done["duration"].as_f64().unwrap();
    assert!((duration - 9.0 / 16.0).abs() < 0.1, "{done}");
    let playing = browser.until(state, Duration::from_secs(20), |v| {
        v["time"].as_f64().unwrap_or(0.0) > 0.0
    });
    assert!(playing["time"].as_f64().unwrap() > 0.0);
    browser.screenshot("orrery-serve-page.png");

    // Image2World: a PNG chosen in the file field goes up with the settings (the model's frames and steps).
    let png = dir.path().join("first.png");
    std::fs::write(&png, common::png(dir.path())).unwrap();
    browser.script("document.getElementById('steps').value = ''; document.getElementById('frames').value = '';");
    browser.type_into("#input-file", png.to_str().unwrap());
    browser.click("#submit");
    let newest = "const c = document.querySelector('#gallery .card'); \
        const v = c.querySelector('video'); \
        return {count: document.querySelectorAll('#gallery .card').length, status: c.dataset.status, \
                meta: c.querySelector('.meta').textContent, error: c.querySelector('.error').textContent, \
                ready: v ? v.readyState : -1, width: v ? v.videoWidth : 0}";
    let image = browser.until(newest, Duration::from_secs(180), |v| {
        v["count"] == 2 && (v["status"] == "failed" || v["ready"].as_i64().unwrap_or(-1) >= 2)
    });
    assert_eq!(image["status"], "succeeded", "{image}");
    assert!(
        image["meta"]
            .as_str()
            .unwrap()
            .starts_with("image2world · 64x64 · 33 frames · seed 1 · 1 step ·"),
        "{image}"
    );
    assert_eq!(image["width"], 64);

    // A job queued from the page, cancelled from its card.
    browser.script(
        "document.getElementById('input-file').value = ''; \
         document.getElementById('steps').value = '200'; document.getElementById('frames').value = '33';",
    );
    browser.click("#submit");
    browser.until(
        "return document.querySelectorAll('#gallery .card').length",
        Duration::from_secs(20),
        |v| v == 3,
    );
    let first_card_status = "return document.querySelector('#gallery .card').dataset.status";
    browser.until(first_card_status, Duration::from_secs(60), |v| {
        v == "running"
    });
    browser.click("#gallery .card button");
    browser.until(first_card_status, Duration::from_secs(30), |v| {
        v == "cancelled"
    });

    browser.screenshot("orrery-serve-page-cancelled.png");
}
