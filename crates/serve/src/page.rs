//! The page at `/`: one HTML file with inline CSS and JS, so that it works without any external
//! asset; a Content-Security-Policy forbids loading anything from elsewhere.
//!
//! Demo and test feature: `/#text=...&autorun=1` fills the text box from the URL fragment and presses
//! the button. The fragment never leaves the browser (it is not sent to the server), and the page
//! removes it from the address bar once read.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("page.html");

const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub(crate) async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
