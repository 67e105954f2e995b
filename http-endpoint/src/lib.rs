//! The one HTTP/1.1 server and client of aadb, on hyper: the operator's `/metrics`,
//! `/healthz` and `/readyz`, the shard-node's and proxy's `/metrics`, the test workload of the
//! local control plane, and the probes of its node agent.
//!
//! Contract of [`serve`]:
//! - It answers HTTP/1.0 and HTTP/1.1 requests on a listener with a handler until `shutdown`
//!   resolves; then it stops accepting and returns. The handler sees a whole [`Request`]
//!   (method, path, query, headers, body) and returns a [`Response`].
//! - The parsing is hyper's: a malformed request gets `400`, a request head over
//!   [`Limits::max_head_bytes`] gets `431`, a body over [`Limits::max_body_bytes`] gets `413`.
//!   `HEAD` is answered with the headers of the handler's response and no body. Nothing a
//!   client sends can make it panic.
//! - A client that does not send a request head within [`Limits::header_read_timeout`] is
//!   disconnected, and so is a client that does not read its response within
//!   [`Limits::write_timeout`]; slow clients never hold up the others.
//! - At most [`Limits::max_connections`] connections are served at once. A connection past
//!   that gets `503` and is closed: a scraper learns it was refused instead of waiting.
//! - Accept errors (running out of file descriptors, say) are logged and retried after a short
//!   pause; they do not end the server.
//!
//! [`client`] sends one request and reads its answer within a deadline.

pub mod client;
mod server;

pub use server::{serve, Limits, Request, Response};
