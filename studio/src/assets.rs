//! Static files compiled into the binary, so the studio runs from any folder and offline.

use axum::{http::header, response::IntoResponse};

const MERMAID: &[u8] = include_bytes!("../assets/mermaid.min.js");
const ERD_JS: &[u8] = include_bytes!("../assets/erd.js");

fn javascript(body: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

pub async fn mermaid() -> impl IntoResponse {
    javascript(MERMAID)
}

pub async fn erd_js() -> impl IntoResponse {
    javascript(ERD_JS)
}
