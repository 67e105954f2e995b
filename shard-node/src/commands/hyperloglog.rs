//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE.
//!
//! Contract: the registers, hash and estimator are Redis 7.0's (`crdt::types::hll`), so counts
//! are Redis's for the same elements. PFADD and PFMERGE write one [`OpKind::HllRaise`] of the
//! registers they raise; registers merge by maximum across regions and deletes win (see
//! docs/semantics.md, HyperLogLog). A key holding a plain string is "not a valid HyperLogLog
//! string value"; other types get the usual WRONGTYPE. `TYPE` of a HyperLogLog is `string` and
//! `GET` returns Redis's dense encoding of it.

use super::*;
use crate::crdt::types::hll::{self, Registers};
use crate::crdt::{Stamp, Value, NEW_SLOT};

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("pfadd", -2, "write denyoom fast", 1, 1, 1, "hyperloglog", "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.", pfadd),
        cmd("pfcount", -2, "readonly", 1, -1, 1, "hyperloglog", "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).", pfcount),
        cmd("pfmerge", -2, "write denyoom", 1, -1, 1, "hyperloglog", "Merges one or more HyperLogLog values into a single key.", pfmerge),
    ]
}

const ERR_NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// The registers at `key` (`None` when absent) with the slot stamp writes must carry.
fn registers_of<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<(Stamp, Option<&'a Registers>), CmdError> {
    match ks.get(key, now_ms) {
        None => Ok((NEW_SLOT, None)),
        Some(slot) => match &slot.value {
            Value::Hll(h) => Ok((slot.created, Some(&h.regs))),
            Value::Str(_) => Err(Cow::Borrowed(ERR_NOT_HLL)),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// The HyperLogLog at `key` as stored, visible or not (a deleted one keeps its epoch until
/// every participant has seen the delete).
fn stored<'a>(ks: &'a Keyspace, key: &[u8]) -> Option<&'a crate::crdt::types::HllValue> {
    ks.raw_entry(key)?
        .slots
        .iter()
        .find_map(|s| match &s.value {
            Value::Hll(h) => Some(&**h),
            _ => None,
        })
}

/// The epoch a raise of `key` is made in.
fn epoch_of(ks: &Keyspace, key: &[u8]) -> u64 {
    stored(ks, key).map_or(0, |h| h.epoch)
}

/// The epoch of `key` after a delete of it in the same effect (RENAME, COPY … REPLACE).
pub fn epoch_after_delete(ks: &Keyspace, key: &[u8]) -> u64 {
    stored(ks, key).map_or(0, |h| h.epoch + u64::from(h.exists()))
}

fn pfadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (slot, regs) = registers_of(&ctx.db.ks, key, ctx.now_ms)?;
    let mut raised: Vec<(u16, u8)> = Vec::new();
    for element in &args[2..] {
        let (index, value) = hll::pattern(element);
        let current = regs.map_or(0, |r| r.get(index));
        let pending = raised.iter_mut().find(|(i, _)| *i == index);
        match pending {
            Some((_, v)) if *v < value => *v = value,
            Some(_) => {}
            None if value > current => raised.push((index, value)),
            None => {}
        }
    }
    let created = regs.is_none();
    if raised.is_empty() && !created {
        ctx.out.int(0);
        return Ok(());
    }
    raised.sort();
    ctx.out.int(1);
    let epoch = epoch_of(&ctx.db.ks, key);
    ctx.write(vec![op(
        key,
        OpKind::HllRaise {
            slot,
            epoch,
            registers: raised,
        },
    )]);
    Ok(())
}

/// The register-wise maximum of the HyperLogLogs at `keys` (absent keys count as empty).
fn union(ctx: &Ctx<'_>, keys: &[Bytes]) -> Result<Vec<u8>, CmdError> {
    let mut all = vec![0u8; hll::REGISTERS];
    for key in keys {
        if let (_, Some(regs)) = registers_of(&ctx.db.ks, key, ctx.now_ms)? {
            for (i, r) in regs.nonzero() {
                let slot = &mut all[usize::from(i)];
                *slot = (*slot).max(r);
            }
        }
    }
    Ok(all)
}

fn pfcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let all = union(ctx, &args[1..])?;
    ctx.out.int(hll::count(&all) as i64);
    Ok(())
}

fn pfmerge(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let dest = &args[1];
    let all = union(ctx, &args[1..])?;
    let (slot, current) = registers_of(&ctx.db.ks, dest, ctx.now_ms)?;
    let raised: Vec<(u16, u8)> = all
        .iter()
        .enumerate()
        .filter(|(i, r)| **r > current.map_or(0, |c| c.get(*i as u16)))
        .map(|(i, r)| (i as u16, *r))
        .collect();
    ctx.out.simple("OK");
    if raised.is_empty() && current.is_some() {
        return Ok(());
    }
    let epoch = epoch_of(&ctx.db.ks, dest);
    ctx.write(vec![op(
        dest,
        OpKind::HllRaise {
            slot,
            epoch,
            registers: raised,
        },
    )]);
    Ok(())
}
