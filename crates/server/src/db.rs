//! The job store: one SQLite database (`DIR/jobs.sqlite3`, write-ahead log) that survives crashes.
//!
//! A job moves `queued -> running -> succeeded | failed`, or to `cancelled` from `queued` or `running`. Every
//! change is one statement guarded by the status it expects, so a worker that finishes a job cancelled meanwhile
//! changes nothing. Opening the store puts jobs left `running` by a process that died back in the queue.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::{Result, ServerError};
use crate::settings::JobSettings;

/// Times a job may be interrupted (the process killed while it runs) before it is failed instead of re-queued.
pub const MAX_ATTEMPTS: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Status::Queued,
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

/// A job as stored (and as the API shows it, less `input` and `attempts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: String,
    pub status: Status,
    /// Sampler steps done over steps to do, 0 to 1.
    pub progress: f64,
    pub error: Option<String>,
    pub settings: JobSettings,
    /// RFC 3339 UTC times.
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// The uploaded input's file name under `uploads/` (server-made).
    #[serde(skip)]
    pub input: Option<String>,
    /// Times the job was started.
    #[serde(skip)]
    pub attempts: i64,
}

/// What a cancellation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// Cancelled now; `was_running` when a worker holds it.
    Cancelled {
        was_running: bool,
    },
    /// Already final: nothing changed.
    AlreadyFinal(Status),
    NotFound,
}

/// What reopening the store did to jobs a dead process left running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    pub requeued: usize,
    /// Interrupted [`MAX_ATTEMPTS`] times: failed rather than started again.
    pub failed: usize,
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const COLUMNS: &str =
    "id, status, progress, error, settings, created, started, finished, input, attempts";

pub struct JobStore {
    conn: Mutex<Connection>,
}

fn db_error(e: rusqlite::Error) -> ServerError {
    ServerError::Database(e.to_string())
}

impl JobStore {
    /// Opens (or creates) the store at `path` and recovers the jobs a previous process left running.
    pub fn open(path: &Path) -> Result<(Self, Recovery)> {
        let conn = Connection::open(path)
            .map_err(|e| ServerError::Database(format!("opening {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_error)?;
        // WAL with synchronous=NORMAL: a commit survives the process being killed (the log is in the OS's
        // cache); only a power cut may lose the last commits, never corrupt the file.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_error)?;
        if mode != "wal" {
            return Err(ServerError::Database(format!(
                "{}: journal mode {mode}, expected wal",
                path.display()
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS jobs (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 status TEXT NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                 progress REAL NOT NULL DEFAULT 0,
                 error TEXT,
                 settings TEXT NOT NULL,
                 created TEXT NOT NULL,
                 started TEXT,
                 finished TEXT,
                 input TEXT,
                 attempts INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);",
        )
        .map_err(db_error)?;
        let store = Self {
            conn: Mutex::new(conn),
        };
        let recovery = store.recover()?;
        Ok((store, recovery))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock is held leaves SQLite consistent (each change is one statement).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recover(&self) -> Result<Recovery> {
        let conn = self.conn();
        let failed = conn
            .execute(
                &format!(
                    "UPDATE jobs SET status = 'failed', finished = {NOW},
                     error = 'interrupted ' || attempts || ' times (the server stopped while it ran)'
                     WHERE status = 'running' AND attempts >= ?1"
                ),
                params![MAX_ATTEMPTS],
            )
            .map_err(db_error)?;
        let requeued = conn
            .execute(
                "UPDATE jobs SET status = 'queued', progress = 0, started = NULL WHERE status = 'running'",
                [],
            )
            .map_err(db_error)?;
        Ok(Recovery { requeued, failed })
    }

    /// Adds a queued job.
    pub fn insert(&self, id: &str, settings: &JobSettings, input: Option<&str>) -> Result<Job> {
        let json = serde_json::to_string(settings).expect("plain values");
        let conn = self.conn();
        conn.execute(
            &format!(
                "INSERT INTO jobs (id, status, settings, created, input) VALUES (?1, 'queued', ?2, {NOW}, ?3)"
            ),
            params![id, json, input],
        )
        .map_err(db_error)?;
        get(&conn, id)?.ok_or_else(|| ServerError::Database(format!("job {id} vanished")))
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>> {
        get(&self.conn(), id)
    }

    /// Up to `limit` jobs, newest first, older than the job `before` where given (`None` if it does not exist).
    pub fn list(&self, limit: usize, before: Option<&str>) -> Result<Option<Vec<Job>>> {
        let conn = self.conn();
        let below = match before {
            None => i64::MAX,
            Some(id) => {
                match conn
                    .query_row("SELECT seq FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                    .optional()
                    .map_err(db_error)?
                {
                    Some(seq) => seq,
                    None => return Ok(None),
                }
            }
        };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
            ))
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![below, limit as i64], job_from_row)
            .map_err(db_error)?;
        let jobs = rows
            .map(|r| r.map_err(db_error).and_then(|j| j))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(jobs))
    }

    /// Counts of jobs by status.
    pub fn counts(&self) -> Result<Vec<(Status, i64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db_error)?;
        let mut out = Vec::new();
        for row in rows {
            let (s, n) = row.map_err(db_error)?;
            let status = Status::parse(&s)
                .ok_or_else(|| ServerError::Database(format!("unknown status {s:?}")))?;
            out.push((status, n));
        }
        Ok(out)
    }

    /// Takes the oldest queued job and marks it running.
    pub fn claim_next(&self) -> Result<Option<Job>> {
        let conn = self.conn();
        let id: Option<String> = conn
            .query_row(
                &format!(
                    "UPDATE jobs SET status = 'running', started = {NOW}, progress = 0,
                     attempts = attempts + 1
                     WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)
                     RETURNING id"
                ),
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        match id {
            Some(id) => get(&conn, &id),
            None => Ok(None),
        }
    }

    /// Records progress of a running job; false if it is no longer running.
    pub fn set_progress(&self, id: &str, progress: f64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE jobs SET progress = ?2 WHERE id = ?1 AND status = 'running'",
                params![id, progress],
            )
            .map_err(db_error)?;
        Ok(n == 1)
    }

    /// Ends a running job; false (and nothing changed) if it is no longer running (cancelled meanwhile).
    pub fn finish(&self, id: &str, outcome: std::result::Result<(), &str>) -> Result<bool> {
        let (status, progress, error) = match outcome {
            Ok(()) => (Status::Succeeded, Some(1.0), None),
            Err(e) => (Status::Failed, None, Some(e)),
        };
        let n = self
            .conn()
            .execute(
                &format!(
                    "UPDATE jobs SET status = ?2, progress = COALESCE(?3, progress), error = ?4,
                     finished = {NOW} WHERE id = ?1 AND status = 'running'"
                ),
                params![id, status.name(), progress, error],
            )
            .map_err(db_error)?;
        Ok(n == 1)
    }

    /// Puts a running job back in the queue (the server stops while it runs).
    pub fn requeue(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE jobs SET status = 'queued', progress = 0, started = NULL
                 WHERE id = ?1 AND status = 'running'",
                [id],
            )
            .map_err(db_error)?;
        Ok(n == 1)
    }

    /// Cancels a queued or running job.
    pub fn cancel(&self, id: &str) -> Result<Cancel> {
        // One connection behind one lock: nothing changes the job between the read and the update.
        let conn = self.conn();
        let Some(job) = get(&conn, id)? else {
            return Ok(Cancel::NotFound);
        };
        if job.status.is_final() {
            return Ok(Cancel::AlreadyFinal(job.status));
        }
        conn.execute(
            &format!("UPDATE jobs SET status = 'cancelled', finished = {NOW} WHERE id = ?1"),
            [id],
        )
        .map_err(db_error)?;
        Ok(Cancel::Cancelled {
            was_running: job.status == Status::Running,
        })
    }
}

fn get(conn: &Connection, id: &str) -> Result<Option<Job>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(db_error)?;
    stmt.query_row([id], job_from_row)
        .optional()
        .map_err(db_error)?
        .transpose()
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Job>> {
    let id: String = r.get(0)?;
    let status: String = r.get(1)?;
    let settings: String = r.get(4)?;
    let Some(status) = Status::parse(&status) else {
        return Ok(Err(ServerError::Database(format!(
            "job {id}: unknown status {status:?}"
        ))));
    };
    let settings = match serde_json::from_str(&settings) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Err(ServerError::Database(format!(
                "job {id}: settings: {e}"
            ))))
        }
    };
    Ok(Ok(Job {
        status,
        progress: r.get(2)?,
        error: r.get(3)?,
        settings,
        created: r.get(5)?,
        started: r.get(6)?,
        finished: r.get(7)?,
        input: r.get(8)?,
        attempts: r.get(9)?,
        id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{JobMode, JobSettings, ResolvedSampling};

    fn settings(prompt: &str) -> JobSettings {
        JobSettings {
            mode: JobMode::Text2World,
            prompt: prompt.into(),
            negative_prompt: None,
            seed: 1,
            frames: 5,
            width: 64,
            height: 64,
            fps: 16.0,
            steps: Some(2),
            guidance: None,
            truncate: false,
            sampling: ResolvedSampling {
                steps: 2,
                guidance: 2.0,
                negative_prompt: Some(String::new()),
                calls: 3,
            },
        }
    }

    #[test]
    fn jobs_run_in_order_and_a_cancelled_job_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (store, recovery) = JobStore::open(&dir.path().join("jobs.sqlite3")).unwrap();
        assert_eq!(recovery, Recovery::default());
        for id in ["a", "b", "c"] {
            let job = store.insert(id, &settings(id), None).unwrap();
            assert_eq!((job.status, job.attempts), (Status::Queued, 0));
            assert!(job.created.ends_with('Z'), "{}", job.created);
        }
        let first = store.claim_next().unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.status), ("a", Status::Running));
        assert!(store.set_progress("a", 0.5).unwrap());
        assert_eq!(store.get("a").unwrap().unwrap().progress, 0.5);
        assert_eq!(
            store.cancel("a").unwrap(),
            Cancel::Cancelled { was_running: true }
        );
        assert!(
            !store.finish("a", Ok(())).unwrap(),
            "cancelled stays cancelled"
        );
        assert!(!store.set_progress("a", 0.9).unwrap());
        assert_eq!(store.get("a").unwrap().unwrap().status, Status::Cancelled);
        assert_eq!(
            store.cancel("a").unwrap(),
            Cancel::AlreadyFinal(Status::Cancelled)
        );
        assert_eq!(store.cancel("zz").unwrap(), Cancel::NotFound);
        assert_eq!(
            store.cancel("c").unwrap(),
            Cancel::Cancelled { was_running: false }
        );
        let second = store.claim_next().unwrap().unwrap();
        assert_eq!(second.id, "b");
        assert!(store.finish("b", Err("boom")).unwrap());
        let b = store.get("b").unwrap().unwrap();
        assert_eq!(
            (b.status, b.error.as_deref()),
            (Status::Failed, Some("boom"))
        );
        assert!(store.claim_next().unwrap().is_none(), "c was cancelled");
        let all = store.list(10, None).unwrap().unwrap();
        let ids: Vec<&str> = all.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"], "newest first");
        let page = store.list(1, Some("c")).unwrap().unwrap();
        assert_eq!(page[0].id, "b");
        assert!(store.list(1, Some("nope")).unwrap().is_none());
    }

    #[test]
    fn reopening_requeues_running_jobs_and_fails_those_interrupted_too_often() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite3");
        {
            let (store, _) = JobStore::open(&path).unwrap();
            store.insert("a", &settings("a"), Some("a.png")).unwrap();
            store.insert("b", &settings("b"), None).unwrap();
            store.claim_next().unwrap().unwrap();
        }
        for attempt in 1..=MAX_ATTEMPTS {
            let (store, recovery) = JobStore::open(&path).unwrap();
            if attempt < MAX_ATTEMPTS {
                assert_eq!(
                    recovery,
                    Recovery {
                        requeued: 1,
                        failed: 0
                    }
                );
                let job = store.claim_next().unwrap().unwrap();
                assert_eq!((job.id.as_str(), job.attempts), ("a", attempt + 1));
                assert_eq!(job.input.as_deref(), Some("a.png"));
            } else {
                assert_eq!(
                    recovery,
                    Recovery {
                        requeued: 0,
                        failed: 1
                    }
                );
                let a = store.get("a").unwrap().unwrap();
                assert_eq!(a.status, Status::Failed);
                assert!(a.error.unwrap().contains("interrupted 3 times"));
                assert_eq!(store.get("b").unwrap().unwrap().status, Status::Queued);
            }
        }
    }
}
