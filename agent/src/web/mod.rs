//! The admin web page the agent serves at `/`: plain HTML, CSS and JavaScript embedded in the
//! binary (no build step, no external request of any kind). The page talks only to the
//! documented API under `/api/v1` with `Authorization: Bearer` (the token lives in the tab's
//! `sessionStorage`); the event stream is read with `fetch()` so the header is sent.
//!
//! Every answer carries a strict Content-Security-Policy (same-origin scripts, styles and
//! requests only; no inline script or style, no frames, no forms posting anywhere),
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path under `/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        path: "/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/api.js"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "/upgrade.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/upgrade.js"),
    },
    Asset {
        path: "/backups.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/backups.js"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/favicon.svg"),
    },
];

/// `GET /` and the page's assets. No token is needed to load the page itself: it holds no
/// data; everything it shows comes from the API with the token.
pub fn router() -> Router {
    let mut r = Router::new();
    for a in ASSETS {
        r = r.route(a.path, get(move || async move { serve(a) }));
    }
    r.route(
        "/favicon.ico",
        get(|| async { secured(StatusCode::NOT_FOUND.into_response()) }),
    )
}

fn serve(a: &'static Asset) -> Response {
    let mut resp = a.body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    // The assets change with the binary: always revalidate, never keep a stale page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secured(resp)
}

/// Adds the security headers every page answer carries.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page may not reach anything but its own origin: no `http(s)://` in any asset
    /// (beyond the SVG namespace), no inline script or style the CSP would block.
    #[test]
    fn assets_are_self_contained() {
        for a in ASSETS {
            let text = a.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names a URL",
                a.path
            );
            assert!(!text.contains("style=\""), "{} has an inline style", a.path);
            if a.path == "/" {
                assert!(!text.contains("<script>"), "inline script in the page");
                assert!(!text.contains("<style"), "inline style in the page");
                for handler in [
                    " onclick=",
                    " onload=",
                    " onsubmit=",
                    " oninput=",
                    " onchange=",
                    " onerror=",
                ] {
                    assert!(!text.contains(handler), "inline event handler {handler}");
                }
            }
        }
    }
}
