//! Turning what went wrong on a call into a [`WiringError`] that names the node and the command.

use super::WiringError;
use redis::{ErrorKind, RedisError, Value};
use std::time::Duration;

/// A failed dial: a refused password is [`WiringError::Auth`], the handshake running out of
/// time [`WiringError::Timeout`], a handshake reply that is not RESP [`WiringError::Protocol`],
/// anything else (refused, reset, no route) [`WiringError::Connect`].
pub(super) fn dial_error(addr: &str, e: RedisError, timeout: Duration) -> WiringError {
    if is_auth_error(&e) {
        return WiringError::Auth {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
    }
    if e.is_timeout() {
        return WiringError::Timeout {
            addr: addr.to_string(),
            command: "connect".to_string(),
            after: timeout,
        };
    }
    if !e.is_io_error() {
        return WiringError::Protocol {
            addr: addr.to_string(),
            command: "connect".to_string(),
            reason: e.to_string(),
        };
    }
    WiringError::Connect {
        addr: addr.to_string(),
        reason: e.to_string(),
    }
}

pub(super) fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// A failed command: the node's error reply, an authentication error, or a broken connection.
pub(super) fn command_error(addr: &str, command: &str, e: RedisError) -> WiringError {
    if is_auth_error(&e) {
        return WiringError::Auth {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
    }
    let server_reply = !e.is_io_error()
        && !matches!(
            e.kind(),
            ErrorKind::ParseError | ErrorKind::ClientError | ErrorKind::TypeError
        )
        && e.code().is_some();
    if server_reply {
        return WiringError::Refused {
            addr: addr.to_string(),
            command: command.to_string(),
            message: e.to_string(),
        };
    }
    WiringError::Protocol {
        addr: addr.to_string(),
        command: command.to_string(),
        reason: e.to_string(),
    }
}

/// An error reply (`-CODE detail`).
pub(super) fn server_error(
    addr: &str,
    command: &str,
    code: &str,
    detail: Option<&str>,
) -> WiringError {
    let message = match detail {
        Some(d) => format!("{code} {d}"),
        None => code.to_string(),
    };
    if matches!(code, "NOAUTH" | "WRONGPASS") {
        return WiringError::Auth {
            addr: addr.to_string(),
            reason: message,
        };
    }
    WiringError::Refused {
        addr: addr.to_string(),
        command: command.to_string(),
        message,
    }
}

pub(super) fn unexpected(addr: &str, command: &str, detail: String) -> WiringError {
    WiringError::UnexpectedReply {
        addr: addr.to_string(),
        command: command.to_string(),
        detail,
    }
}

/// A short description of a reply for error messages (never the whole of a large reply).
pub(super) fn describe(value: &Value) -> String {
    let mut text = format!("{value:?}");
    if text.len() > 120 {
        let mut cut = 120;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `+OK`, or a status line starting with `OK` (`OK Already connected to specified master`).
pub(super) fn expect_ok(addr: &str, command: &str, reply: &Value) -> Result<(), WiringError> {
    match reply {
        Value::Okay => Ok(()),
        Value::SimpleString(s) if s == "OK" || s.starts_with("OK ") => Ok(()),
        other => Err(unexpected(
            addr,
            command,
            format!("expected OK, got {}", describe(other)),
        )),
    }
}
