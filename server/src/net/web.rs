//! Files served to browsers: the JavaScript SDK (`sdk/js/`, embedded at build time) under
//! `/sdk/`, and the running game's page, which the game registers ([`crate::GameApp::page`]),
//! so the server serves a playable page with no files around it (`GET /`).

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

impl Asset {
    /// An HTML file served at `path`.
    #[must_use]
    pub const fn html(path: &'static str, body: &'static str) -> Asset {
        Asset {
            path,
            content_type: "text/html; charset=utf-8",
            body,
        }
    }

    /// A JavaScript module served at `path`.
    #[must_use]
    pub const fn script(path: &'static str, body: &'static str) -> Asset {
        Asset {
            path,
            content_type: "text/javascript; charset=utf-8",
            body,
        }
    }
}

/// The JavaScript SDK, for every game's page.
pub const SDK: &[Asset] = &[
    Asset::script(
        "/sdk/tickwire.js",
        include_str!("../../../sdk/js/tickwire.js"),
    ),
    Asset {
        path: "/sdk/tickwire.d.ts",
        content_type: "application/typescript; charset=utf-8",
        body: include_str!("../../../sdk/js/tickwire.d.ts"),
    },
];

/// The asset served at `path`: the game's page files first, then the SDK.
#[must_use]
pub fn asset(page: &'static [Asset], path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    page.iter().chain(SDK).find(|a| a.path == path)
}
