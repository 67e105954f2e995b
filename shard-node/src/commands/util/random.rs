//! Random picks with and without repetition (`SRANDMEMBER`, `HRANDFIELD`, `ZRANDMEMBER`…).

use crate::commands::{int_arg, CmdError, CmdResult};
use std::borrow::Cow;

/// Largest number of elements a random pick with repetitions (negative count) may return;
/// larger requests are refused instead of building an unbounded reply.
pub const MAX_RANDOM_REPLY: u64 = 1 << 24;

pub const ERR_COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
const ERR_RANDOM_TOO_MANY: &str = "ERR value is out of range";

/// A SRANDMEMBER / HRANDFIELD count: any integer but `i64::MIN` (Redis's `-LONG_MAX..LONG_MAX`).
pub fn random_count_arg(arg: &[u8]) -> Result<i64, CmdError> {
    let n = int_arg(arg)?;
    if n == i64::MIN {
        return Err(Cow::Borrowed(ERR_COUNT_RANGE));
    }
    Ok(n)
}

/// Refuses a random pick with repetitions larger than [`MAX_RANDOM_REPLY`].
pub fn check_random_reply(count: u64) -> CmdResult {
    if count > MAX_RANDOM_REPLY {
        return Err(Cow::Borrowed(ERR_RANDOM_TOO_MANY));
    }
    Ok(())
}

/// `amount` distinct positions below `len`, ascending (`amount < len`).
pub fn random_positions(len: usize, amount: usize) -> Vec<usize> {
    let mut rng = rand::rng();
    let mut picked = rand::seq::index::sample(&mut rng, len, amount.min(len)).into_vec();
    picked.sort_unstable();
    picked
}

/// The elements of `items` at the ascending `positions`.
pub fn pick_positions<T>(items: impl Iterator<Item = T>, positions: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(positions.len());
    let mut want = positions.iter().peekable();
    for (i, item) in items.enumerate() {
        match want.peek() {
            Some(&&p) if p == i => {
                out.push(item);
                want.next();
            }
            Some(_) => {}
            None => break,
        }
    }
    out
}
