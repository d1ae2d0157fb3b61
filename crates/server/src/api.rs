//! The HTTP routes. Every error is `{"error": "..."}` with 400 (bad request), 401 (token), 404 (no such job or
//! route), 409 (wrong state), 413 (too large), 416 (a video range outside it) or 500.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::check_video_size;
use crate::db::{Cancel, Job, Status};
use crate::error::{Result, ServerError};
use crate::events::{job_events, JobEvent};
use crate::settings::{JobMode, JobRequest};
use crate::Shared;

/// Jobs a list returns when not told, and at most.
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 200;

pub fn router(shared: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route("/jobs", get(list_jobs).post(submit))
        .route("/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/jobs/{id}/video", get(video))
        .route("/jobs/{id}/events", get(job_events))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ));
    Router::new()
        .route("/", get(crate::page::index))
        .route("/app.js", get(crate::page::script))
        .route("/style.css", get(crate::page::style))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .nest("/v1", v1)
        .fallback(|| async { ServerError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({ "error": "method not allowed on this route" })),
            )
        })
        .layer(DefaultBodyLimit::max(shared.config.max_upload))
        .with_state(shared)
}

/// Ids are 128 random bits in lower-case hex.
pub fn is_job_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ServerError::Io(format!("random id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &shared.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !given.is_some_and(|g| same_secret(g, token.as_bytes())) {
            return ServerError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// A job as the API shows it: the stored fields and, once it succeeded, where its video is.
pub fn job_json(job: &Job) -> Value {
    let mut v = serde_json::to_value(job).expect("plain values");
    if job.status == Status::Succeeded {
        v["video"] = json!(format!("/v1/jobs/{}/video", job.id));
    }
    v
}

fn found(shared: &Shared, id: &str) -> Result<Job> {
    shared
        .job(id)?
        .ok_or_else(|| ServerError::NotFound(format!("no job {id}")))
}

fn body_error(status: StatusCode, text: String) -> ServerError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ServerError::TooLarge(text)
    } else {
        ServerError::BadRequest(text)
    }
}

/// An uploaded input, recognised by its content.
struct Upload {
    mode: JobMode,
    ext: &'static str,
    bytes: Bytes,
}

fn upload(field: &str, bytes: Bytes) -> Result<Upload> {
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some((JobMode::Image2World, "png"))
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some((JobMode::Image2World, "jpg"))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some((JobMode::Image2World, "gif"))
    } else if bytes.len() >= 8 && &bytes[4..8] == b"ftyp" {
        Some((JobMode::Video2World, "mp4"))
    } else {
        None
    };
    let expected = if field == "image" {
        JobMode::Image2World
    } else {
        JobMode::Video2World
    };
    match kind {
        Some((mode, ext)) if mode == expected => Ok(Upload { mode, ext, bytes }),
        _ => Err(ServerError::BadRequest(format!(
            "{field}: {}",
            if field == "image" {
                "expected a PNG, JPEG or GIF image"
            } else {
                "expected an MP4 video"
            }
        ))),
    }
}

/// The request and upload of a multipart body: a `settings` part (the JSON body) and one `image` or `video`.
async fn read_multipart(mut multipart: Multipart) -> Result<(JobRequest, Option<Upload>)> {
    let mut request = None;
    let mut file = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| body_error(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| body_error(e.status(), format!("{name}: {}", e.body_text())))?;
        match name.as_str() {
            "settings" if request.is_none() => request = Some(JobRequest::from_json(&bytes)?),
            "image" | "video" if file.is_none() => file = Some(upload(&name, bytes)?),
            "settings" | "image" | "video" => {
                return Err(ServerError::BadRequest(format!(
                    "more than one {} part",
                    if name == "settings" {
                        "settings"
                    } else {
                        "image or video"
                    }
                )))
            }
            other => {
                return Err(ServerError::BadRequest(format!(
                    "unknown part {other:?}: expected settings and one image or video"
                )))
            }
        }
    }
    let request = request
        .ok_or_else(|| ServerError::BadRequest("multipart body without a settings part".into()))?;
    Ok((request, file))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Io(format!("a blocking task failed: {e}")))?
}

async fn submit(State(shared): State<Arc<Shared>>, request: Request) -> Result<Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (job_request, file) = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ServerError::BadRequest(e.body_text()))?;
        read_multipart(multipart).await?
    } else if content_type.starts_with("application/json") {
        let bytes = Bytes::from_request(request, &())
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        (JobRequest::from_json(&bytes)?, None)
    } else {
        return Err(ServerError::BadRequest(
            "expected Content-Type application/json or multipart/form-data".into(),
        ));
    };
    job_request.check(&shared.config.limits)?;
    let mode = file.as_ref().map_or(JobMode::Text2World, |f| f.mode);
    let id = new_id()?;
    let settings = {
        let shared = Arc::clone(&shared);
        let job_request = job_request.clone();
        blocking(move || {
            shared.config.guard.check(&job_request.prompt)?;
            shared
                .backend
                .resolve(&job_request, mode)
                .map_err(ServerError::BadRequest)
        })
        .await?
    };
    let input = match file {
        None => None,
        Some(file) => {
            let name = format!("{id}.{}", file.ext);
            let path = shared.dirs.uploads.join(&name);
            let shared = Arc::clone(&shared);
            let field = if mode == JobMode::Image2World {
                "image"
            } else {
                "video"
            };
            blocking(move || {
                orrery_io::write_atomically(&path, &file.bytes)
                    .map_err(|e| ServerError::io(format!("saving the {field}"), e))?;
                let limit = shared.config.limits.max_input_video_bytes;
                let checked = match mode {
                    JobMode::Video2World => check_video_size(&path, field, limit),
                    _ => Ok(()),
                }
                .and_then(|()| shared.backend.check_input(mode, &path, field));
                if let Err(e) = checked {
                    let _ = std::fs::remove_file(&path);
                    return Err(ServerError::BadRequest(e));
                }
                Ok(())
            })
            .await?;
            Some(name)
        }
    };
    let job = shared.store.insert(&id, &settings, input.as_deref())?;
    shared.publish(JobEvent::of(&job));
    shared.workers.notify();
    tracing::info!("job {id}: queued ({:?})", mode);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({ "id": job.id, "status": job.status })),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn get_job(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(job_json(&found(&shared, &id)?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    /// The last id of the previous page.
    before: Option<String>,
}

async fn list_jobs(
    State(shared): State<Arc<Shared>>,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) = query.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ServerError::BadRequest(format!(
            "limit {limit}: expected 1 to {MAX_PAGE}"
        )));
    }
    let before = match q.before.as_deref() {
        Some(id) if !is_job_id(id) => {
            return Err(ServerError::BadRequest(format!(
                "before: {id:?} is not a job id"
            )))
        }
        b => b,
    };
    let jobs = shared
        .store
        .list(limit, before)?
        .ok_or_else(|| ServerError::NotFound(format!("before: no job {}", before.unwrap_or(""))))?;
    let next = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.id.clone()))
        .flatten();
    Ok(Json(json!({
        "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

async fn cancel_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    if !is_job_id(&id) {
        return Err(ServerError::NotFound(format!("no job {id}")));
    }
    match shared.store.cancel(&id)? {
        Cancel::Cancelled { was_running } => {
            if was_running {
                shared.workers.cancel(&id);
            }
            shared.publish_from_store(&id);
            tracing::info!("job {id}: cancelled");
            Ok(Json(job_json(&found(&shared, &id)?)))
        }
        Cancel::AlreadyFinal(status) => Err(ServerError::Conflict(format!(
            "job {id} is already {}",
            status.name()
        ))),
        Cancel::NotFound => Err(ServerError::NotFound(format!("no job {id}"))),
    }
}

/// The bytes `[start, end)` of a body of `len` bytes that a `Range: bytes=...` header asks for (one range;
/// `None` for none or a form not understood, which gets the whole body); `Err` if it lies outside.
fn byte_range(header: Option<&HeaderValue>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) if n > 0 => (len.saturating_sub(n), len),
        (false, Some(a), None) if last.trim().is_empty() => (a, len),
        (false, Some(a), Some(b)) if a <= b => (a, (b + 1).min(len)),
        _ => return Ok(None),
    };
    if range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

async fn video(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request_headers: HeaderMap,
) -> Result<Response> {
    let job = found(&shared, &id)?;
    if job.status != Status::Succeeded {
        return Err(ServerError::Conflict(format!(
            "job {id} is {}: its video exists once it succeeded",
            job.status.name()
        )));
    }
    let path = shared.dirs.video(&job.id);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ServerError::io(format!("reading the video of job {id}"), e))?;
    let len = bytes.len() as u64;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{id}.mp4\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    match byte_range(request_headers.get(header::RANGE), len) {
        Ok(None) => Ok((headers, Body::from(bytes)).into_response()),
        Ok(Some((start, end))) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            let part = bytes[start as usize..end as usize].to_vec();
            Ok((StatusCode::PARTIAL_CONTENT, headers, Body::from(part)).into_response())
        }
        Err(()) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            headers.remove(header::CONTENT_TYPE);
            let body =
                Json(json!({ "error": format!("range outside the {len} bytes of the video") }));
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, headers, body).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex_and_nothing_else_is_an_id() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(is_job_id(&a) && is_job_id(&b) && a != b);
        for bad in [
            "",
            "../../etc/passwd",
            &a.to_uppercase(),
            &a[..31],
            &format!("{a}0"),
        ] {
            assert!(!is_job_id(bad), "{bad}");
        }
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem") && !same_secret(b"token", b"toke"));
    }

    #[test]
    fn one_byte_range_is_served_and_other_forms_get_the_whole_video() {
        let range = |h: &str, len| byte_range(Some(&HeaderValue::from_str(h).unwrap()), len);
        assert_eq!(range("bytes=0-7", 100), Ok(Some((0, 8))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(range("bytes=-1000", 100), Ok(Some((0, 100))));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some((50, 100))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        for whole in [
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=x-",
            "bytes=-0",
        ] {
            assert_eq!(range(whole, 100), Ok(None), "{whole}");
        }
        assert_eq!(byte_range(None, 100), Ok(None));
    }
}
