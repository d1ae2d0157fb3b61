//! A bounded load test of a running `orrery serve`: CLIENTS clients for SECONDS seconds, each submitting a tiny
//! job, polling it until it is final (and listing jobs every fifth poll), then the next. It prints throughput and
//! p50/p99 latency per call, then waits for the queue to drain and checks that every accepted job is listed
//! exactly once and succeeded (and, given the data folder, the same in the database).
//!
//! ```sh
//! orrery serve --addr 127.0.0.1:8080 --data /tmp/load &
//! cargo run --release -p orrery-server --example loadtest -- 127.0.0.1:8080 50 60 /tmp/load
//! ```

#[path = "../tests/common/http.rs"]
mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::Client;
use serde_json::json;

const PROMPT: &str = "The video shows a red ball above the floor. The red ball lands on the floor.";

#[derive(Default)]
struct Tally {
    latencies: HashMap<&'static str, Vec<Duration>>,
    failures: HashMap<&'static str, usize>,
    submitted: Vec<String>,
}

impl Tally {
    fn call(
        &mut self,
        kind: &'static str,
        f: impl FnOnce() -> http::Response,
    ) -> Option<http::Response> {
        let start = Instant::now();
        let r = f();
        self.latencies
            .entry(kind)
            .or_default()
            .push(start.elapsed());
        if r.status >= 400 {
            *self.failures.entry(kind).or_default() += 1;
            return None;
        }
        Some(r)
    }
}

fn client_loop(c: &Client, seed: u64, until: Instant) -> Tally {
    let mut t = Tally::default();
    let job = |seed: u64| json!({"prompt": PROMPT, "frames": 1, "steps": 1, "size": "16x16", "seed": seed});
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let Some(r) = t.call("submit", || {
            c.post_json("/v1/jobs", &job(seed * 1_000_000 + n))
        }) else {
            continue;
        };
        let id = r.json()["id"].as_str().expect("an id").to_owned();
        t.submitted.push(id.clone());
        let mut polls = 0;
        while Instant::now() < until {
            polls += 1;
            let Some(r) = t.call("poll", || c.get(&format!("/v1/jobs/{id}"))) else {
                break;
            };
            if polls % 5 == 0 {
                t.call("list", || c.get("/v1/jobs?limit=20"));
            }
            if matches!(
                r.json()["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                break;
            }
        }
    }
    t
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: loadtest ADDR [CLIENTS] [SECONDS] [DATA_DIR]";
    let addr: SocketAddr = args.get(1).expect(usage).parse().expect(usage);
    let clients: u64 = args.get(2).map_or(50, |s| s.parse().expect(usage));
    let seconds: u64 = args.get(3).map_or(60, |s| s.parse().expect(usage));
    let data = args.get(4).map(PathBuf::from);
    let c = Client::new(addr);
    assert_eq!(c.get("/healthz").status, 200, "no server at {addr}");

    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let c = c.clone();
                s.spawn(move || client_loop(&c, i, until))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();

    let mut all = Tally::default();
    for t in tallies {
        for (k, v) in t.latencies {
            all.latencies.entry(k).or_default().extend(v);
        }
        for (k, v) in t.failures {
            *all.failures.entry(k).or_default() += v;
        }
        all.submitted.extend(t.submitted);
    }
    let total: usize = all.latencies.values().map(Vec::len).sum();
    println!(
        "{clients} clients, {elapsed:.1} s: {total} calls, {:.0} calls/s",
        total as f64 / elapsed
    );
    println!(
        "{:<8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "call", "count", "per s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for kind in ["submit", "poll", "list"] {
        let mut v = all.latencies.remove(kind).unwrap_or_default();
        if v.is_empty() {
            continue;
        }
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{kind:<8} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            v.len(),
            v.len() as f64 / elapsed,
            ms(percentile(&v, 0.5)),
            ms(percentile(&v, 0.99)),
            ms(*v.last().unwrap()),
            all.failures.get(kind).copied().unwrap_or(0)
        );
    }

    // Drain: every accepted job must finish, and be listed exactly once.
    let drain = Instant::now();
    for id in &all.submitted {
        c.wait_final(id, Duration::from_secs(600));
    }
    println!(
        "queue drained {:.1} s after the load stopped",
        drain.elapsed().as_secs_f64()
    );
    let mut listed: HashMap<String, (usize, String)> = HashMap::new();
    let mut path = "/v1/jobs?limit=200".to_owned();
    loop {
        let page = c.get(&path).json();
        for j in page["jobs"].as_array().expect("jobs") {
            let e = listed
                .entry(j["id"].as_str().unwrap().to_owned())
                .or_insert((0, String::new()));
            e.0 += 1;
            e.1 = j["status"].as_str().unwrap().to_owned();
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/jobs?limit=200&before={next}"),
            None => break,
        }
    }
    let duplicated = listed.values().filter(|(n, _)| *n > 1).count();
    let lost = all
        .submitted
        .iter()
        .filter(|id| !listed.contains_key(*id))
        .count();
    let unfinished = all
        .submitted
        .iter()
        .filter(|id| listed.get(*id).is_none_or(|(_, s)| s != "succeeded"))
        .count();
    let unique: std::collections::HashSet<&String> = all.submitted.iter().collect();
    println!(
        "jobs accepted {}, distinct ids {}, listed {}, lost {lost}, listed twice {duplicated}, not succeeded {unfinished}",
        all.submitted.len(),
        unique.len(),
        listed.len()
    );
    let mut ok =
        lost == 0 && duplicated == 0 && unfinished == 0 && unique.len() == all.submitted.len();
    if let Some(data) = data {
        let db = rusqlite::Connection::open(data.join("jobs.sqlite3")).expect("the job database");
        let (rows, distinct, succeeded): (i64, i64, i64) = db
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT id), SUM(status = 'succeeded') FROM jobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("counts");
        let once: i64 = db
            .query_row("SELECT COUNT(*) FROM jobs WHERE attempts = 1", [], |r| {
                r.get(0)
            })
            .expect("attempts");
        println!("database: {rows} rows, {distinct} distinct ids, {succeeded} succeeded, {once} run exactly once");
        ok &= rows == all.submitted.len() as i64
            && rows == distinct
            && succeeded == rows
            && once == rows;
    }
    println!(
        "{}",
        if ok {
            "OK: no job lost or duplicated"
        } else {
            "FAILED"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
