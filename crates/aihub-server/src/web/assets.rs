//! The dashboard's own CSS and JS, embedded in the binary and served under `/assets/` with a
//! one-year immutable cache. Pages link them with `?v=` and a hash of their content, so a new
//! build is fetched at once.

use std::sync::LazyLock;

use aihub_service::crypto::sha256;
use axum::Router;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

static CSS_URL: LazyLock<String> = LazyLock::new(|| versioned("app.css", CSS));
static JS_URL: LazyLock<String> = LazyLock::new(|| versioned("app.js", JS));

fn versioned(name: &str, content: &str) -> String {
    let digest = sha256(content.as_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("/assets/{name}?v={tag}")
}

/// The stylesheet's URL, with its version.
#[must_use]
pub fn css_url() -> &'static str {
    CSS_URL.as_str()
}

/// The script's URL, with its version.
#[must_use]
pub fn js_url() -> &'static str {
    JS_URL.as_str()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_a_content_version() {
        assert!(css_url().starts_with("/assets/app.css?v="));
        assert_eq!(css_url().len(), "/assets/app.css?v=".len() + 12);
        assert!(js_url().starts_with("/assets/app.js?v="));
    }
}
