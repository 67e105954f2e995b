//! Blocking commands: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, and the
//! registry of blocked clients that the server and `CLIENT UNBLOCK` share.
//!
//! Contract:
//! - A blocking command first runs like its non-blocking counterpart: when one of its keys
//!   holds a value it is served at once (or answered with the counterpart's error), with
//!   Redis 7.0's replies. Every argument, the timeout included, is checked before anything
//!   blocks.
//! - When none of its keys holds a value, the handler writes no reply and leaves a
//!   [`BlockRequest`] in the client state. The server then parks the connection and runs the
//!   command again each time keys may have become ready (after local writes, and after effects
//!   received from a primary or a peer region) until it is served, its timeout passes (the
//!   null reply of the command), `CLIENT UNBLOCK` ends it, or the client goes away.
//! - Clients blocked on one key in pops are served in the order they blocked: a client runs
//!   its command again only when one of its keys holds a value and no client that blocked
//!   earlier in a pop waits on that key ([`Blocked::may_retry`]). Stream reads (XREAD,
//!   XREADGROUP) take nothing from each other and run again on every change of their keys.
//! - A node that stops being a primary (`REPLICAOF`, fencing) ends every wait with Redis's
//!   `UNBLOCKED … instance state changed` error.
//! - Inside a transaction or a script nothing blocks: an empty key gives the timeout reply at
//!   once, as in Redis.
//! - A pop is an observed-remove like every other pop: two regions serving blocked clients
//!   from the same list at the same time may both deliver the same element (see
//!   docs/semantics.md, Blocking pops).

use super::*;
use crate::crdt::Value;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("blpop", -3, "write noscript blocking", 1, -2, 1, "list", "Removes and returns the first element of the first non-empty list, or blocks until one is available.", super::lists::blpop),
        cmd("brpop", -3, "write noscript blocking", 1, -2, 1, "list", "Removes and returns the last element of the first non-empty list, or blocks until one is available.", super::lists::brpop),
        cmd("blmove", 6, "write denyoom noscript blocking", 1, 2, 1, "list", "Pops an element from a list, pushes it to another list and returns it; blocks until an element is available.", super::lists::blmove),
        cmd("brpoplpush", 4, "write denyoom noscript blocking", 1, 2, 1, "list", "Pops an element from a list, pushes it to another list and returns it; blocks until an element is available.", super::lists::brpoplpush),
        cmd("blmpop", -5, "write blocking", 0, 0, 0, "list", "Pops elements from the first non-empty list, or blocks until one is available.", super::lists::blmpop),
        cmd("bzpopmin", -3, "write noscript blocking fast", 1, -2, 1, "sorted_set", "Removes and returns the member with the lowest score from one or more sorted sets, or blocks until one is available.", bzpopmin),
        cmd("bzpopmax", -3, "write noscript blocking fast", 1, -2, 1, "sorted_set", "Removes and returns the member with the highest score from one or more sorted sets, or blocks until one is available.", bzpopmax),
        cmd("bzmpop", -5, "write blocking", 0, 0, 0, "sorted_set", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise.", bzmpop),
    ]
}

/// What a blocking command answers, without waiting, when nothing is ready inside a
/// transaction or a script. When a wait times out, every blocking command answers a null
/// array, as Redis does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NothingReady {
    /// BLPOP, BRPOP, BLMPOP, BZPOPMIN, BZPOPMAX: a null array.
    NullArray,
    /// BLMOVE, BRPOPLPUSH: a null bulk string.
    NullBulk,
}

impl NothingReady {
    fn write(self, out: &mut ReplyWriter<'_>) {
        match self {
            NothingReady::NullArray => out.null_array(),
            NothingReady::NullBulk => out.null(),
        }
    }
}

/// A command that found none of its keys ready and waits.
#[derive(Clone, Debug)]
pub struct BlockRequest {
    /// The command, run again as is when a key may be ready.
    pub args: Vec<Bytes>,
    /// The keys it waits on, in its order.
    pub keys: Vec<Bytes>,
    /// When it gives up (unix ms); `None`: never.
    pub deadline_ms: Option<u64>,
    /// Served in the order clients blocked (pops); stream reads are not, since serving one
    /// reader takes nothing from the others.
    pub ordered: bool,
}

/// How `CLIENT UNBLOCK` ends a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unblock {
    /// As if the timeout had passed.
    Timeout,
    /// With the `UNBLOCKED` error.
    Error,
}

/// The error of clients still blocked when their node stops being a primary.
pub const ERR_NOT_PRIMARY: &str =
    "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";

/// The error a client unblocked with `CLIENT UNBLOCK … ERROR` receives.
pub const ERR_UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

#[derive(Debug)]
struct Waiter {
    client: u64,
    keys: Vec<Bytes>,
    ordered: bool,
    unblock: Option<Unblock>,
}

/// The clients waiting in blocking commands, in the order they blocked.
#[derive(Debug, Default)]
pub struct Blocked {
    next_seq: u64,
    waiters: BTreeMap<u64, Waiter>,
}

impl Blocked {
    /// Adds a waiter; returns its place in line.
    pub fn register(&mut self, client: u64, keys: Vec<Bytes>, ordered: bool) -> u64 {
        self.next_seq += 1;
        self.waiters.insert(
            self.next_seq,
            Waiter {
                client,
                keys,
                ordered,
                unblock: None,
            },
        );
        self.next_seq
    }

    /// Removes a waiter (served, timed out, unblocked or gone). Waiters behind it may now be
    /// first in line: the caller wakes them.
    pub fn unregister(&mut self, seq: u64) {
        self.waiters.remove(&seq);
    }

    /// Number of blocked clients (INFO `blocked_clients`).
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// True when `client` is blocked.
    pub fn is_blocked(&self, client: u64) -> bool {
        self.waiters.values().any(|w| w.client == client)
    }

    /// Ends the wait of `client` (`CLIENT UNBLOCK`); false when it is not blocked.
    pub fn unblock(&mut self, client: u64, how: Unblock) -> bool {
        let Some(waiter) = self.waiters.values_mut().find(|w| w.client == client) else {
            return false;
        };
        waiter.unblock = Some(how);
        true
    }

    /// The `CLIENT UNBLOCK` request for waiter `seq`, if one came.
    pub fn take_unblock(&mut self, seq: u64) -> Option<Unblock> {
        self.waiters.get_mut(&seq).and_then(|w| w.unblock.take())
    }

    /// Whether waiter `seq` should run its command again: one of its keys holds a value and,
    /// for an ordered waiter, no earlier ordered waiter waits on that key.
    pub fn may_retry(&self, seq: u64, ks: &crate::crdt::Keyspace, now_ms: u64) -> bool {
        let Some(me) = self.waiters.get(&seq) else {
            return false;
        };
        me.keys.iter().any(|key| {
            ks.get(key, now_ms).is_some()
                && !(me.ordered
                    && self
                        .waiters
                        .range(..seq)
                        .any(|(_, earlier)| earlier.ordered && earlier.keys.contains(key)))
        })
    }
}

/// Parses a blocking command's timeout (seconds, may be fractional) into a deadline in unix ms;
/// `None` for 0 (wait forever). Errors as Redis 7.0 gives them: a value that is not a number
/// is "not a float", and a negative one, or one too large to count in milliseconds (which
/// Redis's conversion turns negative), is "negative".
pub fn deadline_arg(arg: &[u8], now_ms: u64) -> Result<Option<u64>, CmdError> {
    let seconds = crate::resp::parse_f64_strict(arg)
        .filter(|s| !s.is_nan())
        .ok_or(Cow::Borrowed("ERR timeout is not a float or out of range"))?;
    let ms = (seconds * 1000.0).ceil();
    if !(0.0..i64::MAX as f64).contains(&ms) {
        return Err(Cow::Borrowed("ERR timeout is negative"));
    }
    let ms = ms as u64;
    Ok(if ms == 0 {
        None
    } else {
        Some(now_ms.saturating_add(ms))
    })
}

/// Nothing was ready: inside a transaction or a script, answers the timeout reply at once;
/// otherwise leaves the request for the server to wait on (and writes no reply).
pub fn block(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    keys: Vec<Bytes>,
    deadline_ms: Option<u64>,
    nothing_ready: NothingReady,
) -> CmdResult {
    if ctx.db.ks.in_batch() {
        nothing_ready.write(&mut ctx.out);
        return Ok(());
    }
    ctx.then(super::AfterReply::Block(BlockRequest {
        args: args.to_vec(),
        keys,
        deadline_ms,
        ordered: true,
    }));
    Ok(())
}

/// Like [`block`] for a command that takes nothing from other waiters (a stream read): it
/// runs again whenever one of its keys changes, whoever blocked first.
pub fn block_unordered(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    keys: Vec<Bytes>,
    deadline_ms: Option<u64>,
    nothing_ready: NothingReady,
) -> CmdResult {
    block(ctx, args, keys, deadline_ms, nothing_ready)?;
    if let Some(request) = ctx.block_request() {
        request.ordered = false;
    }
    Ok(())
}

fn bzpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zset_blocking_pop(ctx, args, false)
}

fn bzpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zset_blocking_pop(ctx, args, true)
}

/// BZPOPMIN / BZPOPMAX: `[key, member, score]` from the first non-empty sorted set.
fn zset_blocking_pop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult {
    let deadline = deadline_arg(&args[args.len() - 1], ctx.now_ms)?;
    let keys = &args[1..args.len() - 1];
    for key in keys {
        let Some(slot) = ctx.db.ks.get(key, ctx.now_ms) else {
            continue;
        };
        let Value::ZSet(z) = &slot.value else {
            return Err(Cow::Borrowed(ERR_WRONGTYPE));
        };
        let first = if max {
            z.order.iter().next_back()
        } else {
            z.order.iter().next()
        };
        let Some((score, member)) = first else {
            continue;
        };
        let (score, member) = (score.0, Bytes::copy_from_slice(member));
        ctx.out.array(3);
        ctx.out.bulk(key);
        ctx.out.bulk(&member);
        ctx.out.double(score);
        ctx.write(vec![op(key, OpKind::ZRem { member })]);
        return Ok(());
    }
    block(ctx, args, keys.to_vec(), deadline, NothingReady::NullArray)
}

/// BZMPOP timeout numkeys key... MIN|MAX [COUNT n]: ZMPOP once a sorted set has members.
fn bzmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let deadline = deadline_arg(&args[1], ctx.now_ms)?;
    let Some(zmpop) = lookup(b"zmpop") else {
        return Err(Cow::Borrowed("ERR ZMPOP is not available"));
    };
    let mut inner: Vec<Bytes> = vec![Bytes::from_static(b"zmpop")];
    inner.extend(args[2..].iter().cloned());
    // ZMPOP checks every argument; with no key ready it pops nothing and its null reply is
    // dropped here.
    let numkeys = crate::resp::parse_i64_strict(&args[2]).unwrap_or(0).max(0) as usize;
    let keys: Vec<Bytes> = args.iter().skip(3).take(numkeys).cloned().collect();
    if keys.iter().any(|k| ctx.db.ks.get(k, ctx.now_ms).is_some()) {
        return (zmpop.handler)(ctx, &inner);
    }
    let mut scratch = bytes::BytesMut::new();
    {
        let mut probe = Ctx {
            db: &mut *ctx.db,
            client: &mut *ctx.client,
            out: ReplyWriter::new(&mut scratch, ctx.out.proto),
            now_ms: ctx.now_ms,
            refused: None,
        };
        (zmpop.handler)(&mut probe, &inner)?;
    }
    block(ctx, args, keys, deadline, NothingReady::NullArray)
}
