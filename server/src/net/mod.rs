//! The network edge: the listener accepts TCP connections and runs one [`session`] per socket.
//!
//! Data flows: socket -> session (WebSocket upgrade, hello, decode, validate) -> the client's
//! bounded queue to the tick thread; and the client's bounded outbox -> session -> socket.
//!
//! - [`listener`]: [`Server`] (start, address, shutdown) and the accept loop.
//! - [`session`]: one connection from upgrade to close.

pub mod listener;
pub mod session;

pub use listener::Server;
