//! Reading streams: XLEN, XRANGE, XREVRANGE and XREAD (with BLOCK), and the reply and option
//! helpers XREADGROUP shares.

use super::*;

pub(super) fn xlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = read_stream(&ctx.db.ks, &args[1], ctx.now_ms)?.map_or(0, |x| x.entries.len());
    ctx.out.int(n as i64);
    Ok(())
}

pub(super) fn xrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, false)
}

pub(super) fn xrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, true)
}

pub(super) fn range_generic(ctx: &mut Ctx<'_>, args: &[Bytes], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = bound_arg(start_arg, true)?;
    let end = bound_arg(end_arg, false)?;
    let mut count = None;
    let mut i = 4;
    while i < args.len() {
        if is(&args[i], "count") && i + 1 < args.len() {
            count = Some(int_arg(&args[i + 1])?);
            i += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let x = read_stream(&ctx.db.ks, &args[1], ctx.now_ms)?;
    let (Some(x), Some(start), Some(end)) = (x, start, end) else {
        ctx.out.array(0);
        return Ok(());
    };
    if count.is_some_and(|n| n <= 0) {
        ctx.out.null_array();
        return Ok(());
    }
    let limit = count.filter(|n| *n > 0).map_or(usize::MAX, |n| n as usize);
    if start > end {
        ctx.out.array(0);
        return Ok(());
    }
    let range = x.entries.range(start..=end);
    let picked: Vec<_> = if rev {
        range.rev().take(limit).collect()
    } else {
        range.take(limit).collect()
    };
    ctx.out.array(picked.len());
    for (id, e) in picked {
        write_entry(&mut ctx.out, *id, &e.fields);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XREAD

/// `BLOCK ms`: `None` for no BLOCK, `Some(None)` to wait forever.
pub(super) fn block_arg(arg: &[u8], now_ms: u64) -> Result<Option<u64>, CmdError> {
    let ms = crate::resp::parse_i64_strict(arg).ok_or(Cow::Borrowed(
        "ERR timeout is not an integer or out of range",
    ))?;
    if ms < 0 {
        return Err(Cow::Borrowed("ERR timeout is negative"));
    }
    Ok(if ms == 0 {
        None
    } else {
        Some(now_ms.saturating_add(ms as u64))
    })
}

/// Entries served from one stream: ID and fields (`None`: deleted since it was delivered).
pub(super) type Served = Vec<(StreamId, Option<Vec<crate::crdt::Blob>>)>;

/// Writes the reply of XREAD/XREADGROUP: per stream `[key, entries]` (a map in RESP3).
pub(super) fn write_streams_reply(out: &mut ReplyWriter<'_>, found: &[(Bytes, Served)]) {
    if out.proto == Protocol::Resp3 {
        out.map(found.len());
    } else {
        out.array(found.len());
    }
    for (key, entries) in found {
        if out.proto != Protocol::Resp3 {
            out.array(2);
        }
        out.bulk(key);
        out.array(entries.len());
        for (id, fields) in entries {
            match fields {
                Some(f) => write_entry(out, *id, f),
                None => {
                    out.array(2);
                    out.bulk(id.render().as_bytes());
                    out.null_array();
                }
            }
        }
    }
}

/// The options of XREAD and XREADGROUP before `STREAMS`.
pub(super) struct ReadOptions<'a> {
    pub count: Option<usize>,
    /// `None`: no BLOCK; `Some(None)`: wait forever.
    pub block: Option<Option<u64>>,
    /// XREADGROUP's `GROUP group consumer`.
    pub group: Option<(&'a Bytes, &'a Bytes)>,
    pub noack: bool,
    /// Index of the first key.
    pub streams_at: usize,
}

/// Parses the options of XREAD (`grouped` false: GROUP and NOACK are syntax errors) or
/// XREADGROUP, and checks the keys and IDs after `STREAMS` pair up (`unbalanced` is the error).
pub(super) fn read_options<'a>(
    args: &'a [Bytes],
    now_ms: u64,
    grouped: bool,
    unbalanced: &'static str,
) -> Result<ReadOptions<'a>, CmdError> {
    let mut o = ReadOptions {
        count: None,
        block: None,
        group: None,
        noack: false,
        streams_at: 0,
    };
    let mut i = 1;
    o.streams_at = loop {
        if i >= args.len() {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        let more = args.len() - i - 1;
        if is(&args[i], "count") && more >= 1 {
            o.count = count_arg(&args[i + 1])?;
            i += 2;
        } else if is(&args[i], "block") && more >= 1 {
            o.block = Some(block_arg(&args[i + 1], now_ms)?);
            i += 2;
        } else if grouped && is(&args[i], "group") && more >= 2 {
            o.group = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if grouped && is(&args[i], "noack") {
            o.noack = true;
            i += 1;
        } else if is(&args[i], "streams") {
            break i + 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    };
    let rest = args.len() - o.streams_at;
    if rest == 0 || !rest.is_multiple_of(2) {
        return Err(Cow::Borrowed(unbalanced));
    }
    Ok(o)
}

pub(super) fn xread(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let ReadOptions {
        count,
        block,
        streams_at,
        ..
    } = read_options(
        args,
        ctx.now_ms,
        false,
        "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
    )?;
    let rest = args.len() - streams_at;
    let n = rest / 2;
    let keys = &args[streams_at..streams_at + n];
    // Resolve every ID first (`$`: the stream's last ID now), checking types.
    let mut after = Vec::with_capacity(n);
    for (k, raw) in keys.iter().zip(&args[streams_at + n..]) {
        let x = read_stream(&ctx.db.ks, k, ctx.now_ms)?;
        if &raw[..] == b"$" {
            after.push(x.map_or(StreamId::MIN, |x| x.last_id));
        } else {
            after.push(id_arg(raw)?);
        }
    }
    let mut found = Vec::new();
    for (k, from) in keys.iter().zip(&after) {
        let Some(x) = read_stream(&ctx.db.ks, k, ctx.now_ms)? else {
            continue;
        };
        let Some(first) = from.next() else {
            continue;
        };
        let entries: Vec<_> = x
            .entries
            .range(first..)
            .take(count.unwrap_or(usize::MAX))
            .map(|(id, e)| (*id, Some(e.fields.clone())))
            .collect();
        if !entries.is_empty() {
            found.push((k.clone(), entries));
        }
    }
    if !found.is_empty() {
        write_streams_reply(&mut ctx.out, &found);
        return Ok(());
    }
    let Some(deadline) = block else {
        ctx.out.null_array();
        return Ok(());
    };
    // Wait with `$` replaced by the IDs resolved now.
    let mut waiting = args[..streams_at + n].to_vec();
    waiting.extend(after.iter().map(|id| Bytes::from(id.render())));
    super::blocking::block_unordered(
        ctx,
        &waiting,
        keys.to_vec(),
        deadline,
        super::blocking::NothingReady::NullArray,
    )
}
