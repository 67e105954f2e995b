//! RESP wire codec: the request parser and the reply writer of shard-node.
//!
//! Contract:
//! - [`RequestParser`] turns the bytes a client sends into commands (argument vectors) exactly
//!   the way Redis 7.0 does (`processMultibulkBuffer` / `processInlineBuffer` in
//!   `networking.c`): same accepted inputs, same protocol error texts ([`ProtocolError`]),
//!   incremental and linear in the input size however the bytes are chunked.
//! - [`ReplyWriter`] appends RESP2 or RESP3 replies to a [`bytes::BytesMut`] with the exact bytes
//!   Redis 7.0 sends for the same logical reply (`addReply*` in `networking.c`).
//! - [`format_double_g17`], [`format_double_human`], [`parse_i64_strict`] and
//!   [`parse_f64_strict`] reproduce Redis's number conversions (`%.17g`, INCRBYFLOAT output,
//!   `string2ll`, `string2d`).
//!
//! Nothing in this module panics on any input.

mod double;
mod number;
mod parse;
mod write;

pub use double::{format_double_g17, format_double_human, parse_f64_strict};
pub use number::parse_i64_strict;
pub use parse::{
    Limits, ProtocolError, RequestParser, DEFAULT_MAX_BULK_LEN, DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_MULTIBULK_LEN, UNAUTHENTICATED_MAX_BULK_LEN, UNAUTHENTICATED_MAX_MULTIBULK_LEN,
};
pub use write::{write_command, ReplyWriter};

/// The reply protocol a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3, selected with `HELLO 3`.
    Resp3,
}
