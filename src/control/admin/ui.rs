//! The dashboard's static files (`src/control/admin/ui/`), embedded in the binary: no build
//! step, nothing fetched from elsewhere. `GET /` redirects to `/ui`.

/// The headers every admin response carries: the page runs only its own scripts, is never
/// framed, and sends no referrer; no response is sniffed into another type or embedded by
/// another site.
pub(super) const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("cross-origin-resource-policy", "same-origin"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
];

/// The file served at `path` with its content type, for `GET`.
pub(super) fn file(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/ui" | "/ui/" => ("text/html; charset=utf-8", include_str!("ui/index.html")),
        "/ui/app.js" => ("text/javascript; charset=utf-8", include_str!("ui/app.js")),
        "/ui/render.js" => (
            "text/javascript; charset=utf-8",
            include_str!("ui/render.js"),
        ),
        "/ui/actions.js" => (
            "text/javascript; charset=utf-8",
            include_str!("ui/actions.js"),
        ),
        "/ui/style.css" => ("text/css; charset=utf-8", include_str!("ui/style.css")),
        _ => return None,
    })
}
