//! The web UI's files, embedded in the binary at build time (`include_str!`):
//! plain HTML, CSS and JavaScript from `appliance/web/`, no build step.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Request path.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

/// Every file of the UI.
pub const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("../../web/index.html") },
    Asset { path: "/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../web/app.js") },
    Asset { path: "/style.css", content_type: "text/css; charset=utf-8", body: include_str!("../../web/style.css") },
];

/// The asset at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
