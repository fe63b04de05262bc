//! The network edge: the listener accepts TCP connections and runs one [`session`] per socket.
//!
//! Data flows: socket -> session (WebSocket upgrade, hello) -> once joined, the lane (plain-TCP
//! binary sessions) or the session (TLS, JSON) decodes and validates, through the connection's
//! [`gate`] -> the client's bounded queue to the tick thread; and the tick thread -> the lane
//! (or the client's bounded outbox -> the session) -> socket.
//!
//! - [`listener`]: the game port's accept loop and its connection caps.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`).
//! - [`http`]: the request head, routing, and the upgrade response.
//! - [`session`]: one connection from the first byte to the close.
//! - [`gate`]: what a connection's messages pass before the world (budget, rules, backlog).
//! - [`rate`]: per-connection message rate limits.
//! - [`tls`]: loading the certificate and key for `wss://`.
//! - [`web`]: the browser client's files, embedded.
//! - [`wire`]: the fast send path of plain-TCP sessions (lanes write every client's frames).

pub mod admin;
pub(crate) mod gate;
pub mod http;
pub mod listener;
pub mod rate;
pub mod session;
pub mod tls;
pub mod web;
pub mod wire;
