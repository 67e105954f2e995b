//! LCS: the longest common subsequence of two strings.

use super::*;

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN] (`lcsCommand`): the classic dynamic
/// programming table, walked back from the end; ranges are reported from the last match to the
/// first, as Redis does. The table must fit in `proto-max-bulk-len` bytes.
pub(super) fn lcs(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut read = |key: &[u8]| -> Result<Vec<u8>, CmdError> {
        match ctx.db.ks.get(key, ctx.now_ms) {
            None => {
                ctx.db.stats.keyspace_misses += 1;
                Ok(Vec::new())
            }
            Some(slot) => {
                ctx.db.stats.keyspace_hits += 1;
                match &slot.value {
                    Value::Str(c) => Ok(c.read().into_owned()),
                    _ => Err(Cow::Borrowed(
                        "ERR The specified keys must contain string values",
                    )),
                }
            }
        }
    };
    let a = read(&args[1]);
    let b = read(&args[2]);
    let (a, b) = (a?, b?);
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let opt = &args[j];
        if is(opt, "idx") {
            getidx = true;
        } else if is(opt, "len") {
            getlen = true;
        } else if is(opt, "withmatchlen") {
            withmatchlen = true;
        } else if is(opt, "minmatchlen") && j + 1 < args.len() {
            minmatchlen = int_arg(&args[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        j += 1;
    }
    if getidx && getlen {
        return Err(Cow::Borrowed(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen + 1).checked_mul(blen + 1);
    let too_big = || {
        Cow::Borrowed(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        )
    };
    let cells = match cells {
        Some(n) if (n as u64).saturating_mul(4) <= ctx.db.settings.proto_max_bulk_len => n,
        _ => return Err(too_big()),
    };
    let mut dp: Vec<u32> = Vec::new();
    dp.try_reserve_exact(cells).map_err(|_| too_big())?;
    dp.resize(cells, 0);
    let at = |i: usize, j: usize| j + i * (blen + 1);
    for i in 1..=alen {
        for j in 1..=blen {
            dp[at(i, j)] = if a[i - 1] == b[j - 1] {
                dp[at(i - 1, j - 1)] + 1
            } else {
                dp[at(i - 1, j)].max(dp[at(i, j - 1)])
            };
        }
    }
    let total = dp[at(alen, blen)] as usize;
    let mut result = vec![0u8; total];
    let mut idx = total;
    // (a start, a end, b start, b end, length) of every emitted range.
    let mut ranges: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    let unset = alen;
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (unset, 0usize, 0usize, 0usize);
    let (mut i, mut j) = (alen, blen);
    let compute = getidx || !getlen;
    while compute && i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if a_start == unset {
                a_start = i - 1;
                a_end = i - 1;
                b_start = j - 1;
                b_end = j - 1;
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if dp[at(i - 1, j)] > dp[at(i, j - 1)] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != unset {
                emit = true;
            }
        }
        let match_len = a_end.wrapping_sub(a_start).wrapping_add(1);
        if emit {
            if minmatchlen == 0 || match_len as i64 >= minmatchlen {
                ranges.push((a_start, a_end, b_start, b_end, match_len));
            }
            a_start = unset;
        }
    }
    if getidx {
        ctx.out.map(2);
        ctx.out.bulk(b"matches");
        ctx.out.array(ranges.len());
        for (a0, a1, b0, b1, len) in ranges {
            ctx.out.array(if withmatchlen { 3 } else { 2 });
            ctx.out.array(2);
            ctx.out.int(a0 as i64);
            ctx.out.int(a1 as i64);
            ctx.out.array(2);
            ctx.out.int(b0 as i64);
            ctx.out.int(b1 as i64);
            if withmatchlen {
                ctx.out.int(len as i64);
            }
        }
        ctx.out.bulk(b"len");
        ctx.out.int(total as i64);
    } else if getlen {
        ctx.out.int(total as i64);
    } else {
        ctx.out.bulk(&result);
    }
    Ok(())
}
