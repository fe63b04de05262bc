//! The browser client: static files from `assets/web/`, embedded at build time so the server
//! serves a playable page with no files around it (`GET /`).

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// Request path.
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

/// Every file of the browser client.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../../assets/web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../assets/web/app.js"),
    },
    Asset {
        path: "/protocol.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../assets/web/protocol.js"),
    },
];

/// The asset served at `path`, if any.
#[must_use]
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}
