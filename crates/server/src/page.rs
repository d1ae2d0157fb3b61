//! The web page at `/`: plain HTML, CSS and JavaScript compiled into the binary (no CDN, works offline). It
//! asks for the token where the server has one and sends it with every `/v1` call; videos and progress events
//! are fetched with it too (a `<video src>` or `EventSource` cannot send headers).

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

fn text(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub async fn index() -> impl IntoResponse {
    text("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> impl IntoResponse {
    text("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    text("text/css; charset=utf-8", STYLE)
}
