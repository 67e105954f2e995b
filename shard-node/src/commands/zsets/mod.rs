//! Sorted-set commands: ZADD (NX XX GT LT CH INCR), ZINCRBY, ZREM, ZSCORE, ZMSCORE, ZCARD,
//! ZRANK, ZREVRANK, ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES), ZRANGESTORE, ZRANGEBYSCORE,
//! ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZREVRANGE, ZCOUNT, ZLEXCOUNT, ZPOPMIN,
//! ZPOPMAX, ZSCAN, ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZUNION, ZINTER, ZDIFF,
//! ZINTERCARD, ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE, ZRANDMEMBER, ZMPOP, and the geospatial
//! commands, which store positions as sorted-set scores (`geo`).
//!
//! Contract:
//! - Membership is an observed-remove set. A plain score write (ZADD) is a register write
//!   ([`OpKind::ZAdd`]); ZADD INCR and ZINCRBY are counter increments ([`OpKind::ZAddDelta`]) so
//!   concurrent increments add up. ZREM and the pops remove what they observed
//!   ([`OpKind::ZRem`]). A command that changes nothing visible writes nothing (a ZADD of the
//!   score a member already has is not an effect), like Redis, which does not count it as a
//!   change either.
//! - Replies and errors are Redis 7.0's, including the order in which arguments are checked.
//!   Score ranges are parsed like Redis's `zslParseRange` (`strtod`: leading blanks, the empty
//!   string and out-of-range values are accepted), lex ranges like `zslParseLexRange`.
//! - Scores are stored with `-0` folded into `0`, as Redis's compact encoding does for every
//!   sorted set that ZSCAN returns in one call.
//! - Lex ranges on a set whose scores differ give the same answer as Redis's compact encoding
//!   (a walk in score order); when every score is equal they are answered through the index.
//! - ZSCAN returns a set of at most 128 members of at most 64 bytes in one call with cursor 0
//!   and scores printed like Redis's compact encoding (exactly Redis's reply). A larger set is
//!   paged by the SCAN family's shared member-hash positions (`util::scan::scan_page`), so every
//!   member present for a whole iteration is returned exactly once whatever its score does.
//! - ZREMRANGEBY* and ZMPOP remove what they observed, like ZREM. The store commands
//!   (ZRANGESTORE, ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE) replace the destination in one effect:
//!   a `Del` of whatever it held, then a `ZAdd` of every member of the result.
//! - Ranks are computed by walking the order index (O(rank)); ZADD, ZSCORE, ZINCRBY and ZREM are
//!   O(log n) in the size of the set.
//!
//! Layout: `add` (ZADD, ZINCRBY), `members` (ZREM, point reads and ranks, pops, ZSCAN),
//! `bounds` (score and lex range parsing and walks), `range` (the ZRANGE family, ZCOUNT,
//! ZLEXCOUNT), `remrange` (ZREMRANGEBY*), `combine` (the union, intersection and difference
//! commands); the lookups every command shares are here.

mod add;
pub(crate) mod bounds;
mod combine;
pub mod geo;
mod members;
mod range;
mod remrange;
#[cfg(test)]
mod tests;

use super::*;
use crate::crdt::value::ZSetValue;
use crate::crdt::{Stamp, Value, NEW_SLOT};
use add::{zadd, zincrby};
use combine::{zdiff, zdiffstore, zinter, zintercard, zinterstore, zunion, zunionstore};
use geo::{
    geoadd, geodist, geohash, geopos, georadius, georadius_ro, georadiusbymember,
    georadiusbymember_ro, geosearch, geosearchstore,
};
use members::{
    zcard, zmpop, zmscore, zpopmax, zpopmin, zrandmember, zrank, zrem, zrevrank, zscan, zscore,
};
use range::{
    zcount, zlexcount, zrange, zrangebylex, zrangebyscore, zrangestore, zrevrange, zrevrangebylex,
    zrevrangebyscore,
};
use remrange::{zremrangebylex, zremrangebyrank, zremrangebyscore};

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("zadd", -4, "write denyoom fast", 1, 1, 1, "sorted_set", "Adds members to a sorted set, or updates their scores.", zadd),
        cmd("zincrby", 4, "write denyoom fast", 1, 1, 1, "sorted_set", "Increments the score of a member of a sorted set.", zincrby),
        cmd("zrem", -3, "write fast", 1, 1, 1, "sorted_set", "Removes members from a sorted set.", zrem),
        cmd("zscore", 3, "readonly fast", 1, 1, 1, "sorted_set", "Returns the score of a member of a sorted set.", zscore),
        cmd("zmscore", -3, "readonly fast", 1, 1, 1, "sorted_set", "Returns the scores of several members of a sorted set.", zmscore),
        cmd("zcard", 2, "readonly fast", 1, 1, 1, "sorted_set", "Returns the number of members of a sorted set.", zcard),
        cmd("zrank", 3, "readonly fast", 1, 1, 1, "sorted_set", "Returns the rank of a member in ascending score order.", zrank),
        cmd("zrevrank", 3, "readonly fast", 1, 1, 1, "sorted_set", "Returns the rank of a member in descending score order.", zrevrank),
        cmd("zrange", -4, "readonly", 1, 1, 1, "sorted_set", "Returns members in a range of ranks, scores or names.", zrange),
        cmd("zrangestore", -5, "write denyoom", 1, 2, 1, "sorted_set", "Stores a range of a sorted set in another key.", zrangestore),
        cmd("zrangebyscore", -4, "readonly", 1, 1, 1, "sorted_set", "Returns members in a range of scores.", zrangebyscore),
        cmd("zrevrangebyscore", -4, "readonly", 1, 1, 1, "sorted_set", "Returns members in a range of scores, highest first.", zrevrangebyscore),
        cmd("zrangebylex", -4, "readonly", 1, 1, 1, "sorted_set", "Returns members in a lexicographical range.", zrangebylex),
        cmd("zrevrangebylex", -4, "readonly", 1, 1, 1, "sorted_set", "Returns members in a lexicographical range, highest first.", zrevrangebylex),
        cmd("zrevrange", -4, "readonly", 1, 1, 1, "sorted_set", "Returns members in a range of ranks, highest score first.", zrevrange),
        cmd("zcount", 4, "readonly fast", 1, 1, 1, "sorted_set", "Counts the members with scores in a range.", zcount),
        cmd("zlexcount", 4, "readonly fast", 1, 1, 1, "sorted_set", "Counts the members in a lexicographical range.", zlexcount),
        cmd("zpopmin", -2, "write fast", 1, 1, 1, "sorted_set", "Removes and returns the members with the lowest scores.", zpopmin),
        cmd("zpopmax", -2, "write fast", 1, 1, 1, "sorted_set", "Removes and returns the members with the highest scores.", zpopmax),
        cmd("zremrangebyscore", 4, "write", 1, 1, 1, "sorted_set", "Removes the members in a range of scores.", zremrangebyscore),
        cmd("zremrangebyrank", 4, "write", 1, 1, 1, "sorted_set", "Removes the members in a range of ranks.", zremrangebyrank),
        cmd("zremrangebylex", 4, "write", 1, 1, 1, "sorted_set", "Removes the members in a lexicographical range.", zremrangebylex),
        cmd("zunion", -3, "readonly", 0, 0, 0, "sorted_set", "Returns the union of sorted sets.", zunion),
        cmd("zinter", -3, "readonly", 0, 0, 0, "sorted_set", "Returns the intersection of sorted sets.", zinter),
        cmd("zdiff", -3, "readonly", 0, 0, 0, "sorted_set", "Returns the difference of sorted sets.", zdiff),
        cmd("zintercard", -3, "readonly", 0, 0, 0, "sorted_set", "Returns the number of members in the intersection of sorted sets.", zintercard),
        cmd("zunionstore", -4, "write denyoom", 1, 1, 1, "sorted_set", "Stores the union of sorted sets in a key.", zunionstore),
        cmd("zinterstore", -4, "write denyoom", 1, 1, 1, "sorted_set", "Stores the intersection of sorted sets in a key.", zinterstore),
        cmd("zdiffstore", -4, "write denyoom", 1, 1, 1, "sorted_set", "Stores the difference of sorted sets in a key.", zdiffstore),
        cmd("zrandmember", -2, "readonly", 1, 1, 1, "sorted_set", "Returns random members of a sorted set.", zrandmember),
        cmd("zmpop", -4, "write", 0, 0, 0, "sorted_set", "Removes and returns members with the lowest or highest scores from the first non-empty sorted set.", zmpop),
        cmd("geoadd", -5, "write denyoom", 1, 1, 1, "geo", "Adds members with their longitude and latitude to a sorted set.", geoadd),
        cmd("geopos", -2, "readonly", 1, 1, 1, "geo", "Returns the longitude and latitude of members.", geopos),
        cmd("geodist", -4, "readonly", 1, 1, 1, "geo", "Returns the distance between two members.", geodist),
        cmd("geohash", -2, "readonly", 1, 1, 1, "geo", "Returns members' positions as geohash strings.", geohash),
        cmd("geosearch", -7, "readonly", 1, 1, 1, "geo", "Returns members within a circle or a box.", geosearch),
        cmd("geosearchstore", -8, "write denyoom", 1, 2, 1, "geo", "Stores the members within a circle or a box in a key.", geosearchstore),
        cmd("georadius", -6, "write denyoom", 1, 1, 1, "geo", "Returns members within a radius of a position, optionally storing them.", georadius),
        cmd("georadius_ro", -6, "readonly", 1, 1, 1, "geo", "Returns members within a radius of a position.", georadius_ro),
        cmd("georadiusbymember", -5, "write denyoom", 1, 1, 1, "geo", "Returns members within a radius of a member, optionally storing them.", georadiusbymember),
        cmd("georadiusbymember_ro", -5, "readonly", 1, 1, 1, "geo", "Returns members within a radius of a member.", georadiusbymember_ro),
        cmd("zscan", -3, "readonly", 1, 1, 1, "sorted_set", "Iterates over the members and scores of a sorted set.", zscan),
    ]
}

// ---------------------------------------------------------------------------------------------
// Lookups

/// The sorted set at `key` for a read command, counting a keyspace hit or miss like Redis's
/// `lookupKeyRead`; WRONGTYPE for another type.
fn read_zset<'a>(
    ks: &'a Keyspace,
    stats: &mut Stats,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'a ZSetValue>, CmdError> {
    match ks.get(key, now_ms) {
        None => {
            stats.keyspace_misses += 1;
            Ok(None)
        }
        Some(slot) => {
            stats.keyspace_hits += 1;
            match &slot.value {
                Value::ZSet(z) => Ok(Some(z)),
                _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
            }
        }
    }
}

/// The sorted set at `key` for a write command, with the slot stamp writes must carry
/// (`NEW_SLOT` when the key is absent); WRONGTYPE for another type.
fn write_zset<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<(Stamp, Option<&'a ZSetValue>), CmdError> {
    match ks.get(key, now_ms) {
        None => Ok((NEW_SLOT, None)),
        Some(slot) => match &slot.value {
            Value::ZSet(z) => Ok((slot.created, Some(z))),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// A key created by this write must not inherit expiry votes left behind by a delete that had
/// not seen them.
fn clear_stale_expiry(ks: &Keyspace, key: &Bytes, ops: &mut Vec<Op>) {
    if ks.raw_entry(key).is_some_and(|e| !e.expiry.is_empty()) {
        ops.push(op(key, OpKind::ClearExpiry));
    }
}

/// Scores are stored with `-0` folded into `0`.
fn stored(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}
