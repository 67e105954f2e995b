//! Score and lex ranges as Redis parses them (`zslParseRange`, `zslParseLexRange`), and the
//! walks over the order index they select.

use super::*;
use crate::crdt::value::{Blob, Score};
use std::cmp::Ordering;
use std::ops::Bound;

const ERR_MINMAX_FLOAT: &str = "ERR min or max is not a float";
const ERR_MINMAX_LEX: &str = "ERR min or max not valid string range item";

/// A score interval as `zslParseRange` reads it.
#[derive(Clone, Copy, Debug)]
pub(super) struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    pub(super) fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
        let err = || Cow::Borrowed(ERR_MINMAX_FLOAT);
        let (min, minex) = parse_score_bound(min).ok_or_else(err)?;
        let (max, maxex) = parse_score_bound(max).ok_or_else(err)?;
        Ok(ScoreRange {
            min,
            max,
            minex,
            maxex,
        })
    }

    fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// Ranges that can hold nothing (`zslIsInRange`).
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }

    /// Members in the range, in ascending (or with `reverse` descending) order.
    pub(super) fn iter<'a>(&self, z: &'a ZSetValue, reverse: bool) -> ZIter<'a> {
        let r = *self;
        if r.is_empty() {
            return Box::new(std::iter::empty());
        }
        if reverse {
            let hi = if r.max == f64::INFINITY {
                Bound::Unbounded
            } else {
                Bound::Excluded((Score(r.max.next_up()), Blob::default()))
            };
            Box::new(
                z.order
                    .range((Bound::Unbounded, hi))
                    .rev()
                    .skip_while(move |(s, _)| !r.lte_max(s.0))
                    .take_while(move |(s, _)| r.gte_min(s.0)),
            )
        } else {
            // `-0` sorts before `0` in the index but compares equal to it.
            let start = if r.min == 0.0 { -0.0 } else { r.min };
            let lo = Bound::Included((Score(start), Blob::default()));
            Box::new(
                z.order
                    .range((lo, Bound::Unbounded))
                    .skip_while(move |(s, _)| !r.gte_min(s.0))
                    .take_while(move |(s, _)| r.lte_max(s.0)),
            )
        }
    }
}

/// One end of a score range: `(` marks it exclusive, the rest is read with C's `strtod`, which
/// accepts leading blanks, the empty string (0) and values beyond the double range (±inf or 0).
/// Like C, the argument ends at its first NUL byte.
pub(super) fn parse_score_bound(arg: &[u8]) -> Option<(f64, bool)> {
    let arg = match arg.iter().position(|&b| b == 0) {
        Some(end) => &arg[..end],
        None => arg,
    };
    let (text, exclusive) = match arg.split_first() {
        Some((b'(', rest)) => (rest, true),
        _ => (arg, false),
    };
    c_strtod(text).map(|v| (v, exclusive))
}

/// `strtod` over the whole of `text` (the end pointer must reach the end); `None` for NaN.
pub(crate) fn c_strtod(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let start = text
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let body = &text[start..];
    let unsigned = match body.first() {
        Some(b'+') | Some(b'-') => &body[1..],
        _ => body,
    };
    let v = if unsigned.len() > 2 && unsigned[0] == b'0' && (unsigned[1] | 0x20) == b'x' {
        crate::resp::parse_f64_strict(body)?
    } else {
        std::str::from_utf8(body).ok()?.parse::<f64>().ok()?
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// One end of a lex range.
#[derive(Clone, Copy, Debug)]
enum LexItem<'a> {
    /// `-`: below every string.
    Min,
    /// `+`: above every string.
    Max,
    Value(&'a [u8]),
}

/// `sdscmplex`.
fn cmp_lex(a: LexItem<'_>, b: LexItem<'_>) -> Ordering {
    match (a, b) {
        (LexItem::Min, LexItem::Min) | (LexItem::Max, LexItem::Max) => Ordering::Equal,
        (LexItem::Min, _) | (_, LexItem::Max) => Ordering::Less,
        (LexItem::Max, _) | (_, LexItem::Min) => Ordering::Greater,
        (LexItem::Value(x), LexItem::Value(y)) => x.cmp(y),
    }
}

/// A walk over the order index.
pub(super) type ZIter<'z> = Box<dyn Iterator<Item = &'z (Score, Blob)> + 'z>;

/// A lex interval as `zslParseLexRange` reads it.
#[derive(Clone, Copy, Debug)]
pub(super) struct LexRange<'a> {
    min: LexItem<'a>,
    max: LexItem<'a>,
    minex: bool,
    maxex: bool,
}

impl<'a> LexRange<'a> {
    pub(super) fn parse(min: &'a [u8], max: &'a [u8]) -> Result<LexRange<'a>, CmdError> {
        let err = || Cow::Borrowed(ERR_MINMAX_LEX);
        let (min, minex) = parse_lex_item(min).ok_or_else(err)?;
        let (max, maxex) = parse_lex_item(max).ok_or_else(err)?;
        Ok(LexRange {
            min,
            max,
            minex,
            maxex,
        })
    }

    fn gte_min(&self, v: &[u8]) -> bool {
        let c = cmp_lex(LexItem::Value(v), self.min);
        if self.minex {
            c == Ordering::Greater
        } else {
            c != Ordering::Less
        }
    }

    pub(super) fn lte_max(&self, v: &[u8]) -> bool {
        let c = cmp_lex(LexItem::Value(v), self.max);
        if self.maxex {
            c == Ordering::Less
        } else {
            c != Ordering::Greater
        }
    }

    /// `zzlIsInLexRange`: false when the range is empty or misses the set's ends.
    fn touches(&self, z: &ZSetValue) -> bool {
        let c = cmp_lex(self.min, self.max);
        if c == Ordering::Greater || (c == Ordering::Equal && (self.minex || self.maxex)) {
            return false;
        }
        match (z.order.first(), z.order.last()) {
            (Some(first), Some(last)) => self.gte_min(&last.1) && self.lte_max(&first.1),
            _ => false,
        }
    }

    /// Members from the first one in range, walking in score order like Redis's compact
    /// encoding (`zzlFirstInLexRange` / `zzlLastInLexRange`); the caller stops at the first
    /// member past the other end. With equal scores the walk starts through the index.
    pub(super) fn start<'z>(&self, z: &'z ZSetValue, reverse: bool) -> Option<ZIter<'z>>
    where
        'a: 'z,
    {
        if !self.touches(z) {
            return None;
        }
        let r = *self;
        let uniform = match (z.order.first(), z.order.last()) {
            (Some(a), Some(b)) => a.0 == b.0,
            _ => false,
        };
        // With one score for every member the index is in name order: seek to the bound.
        let seek = |item: LexItem<'_>, exclusive: bool| match (uniform, item) {
            (true, LexItem::Value(v)) => {
                let score = z.order.first().map(|e| e.0).unwrap_or(Score(0.0));
                let bound = (score, Blob::from(v));
                if exclusive {
                    Bound::Excluded(bound)
                } else {
                    Bound::Included(bound)
                }
            }
            _ => Bound::Unbounded,
        };
        let mut it: ZIter<'z> = if reverse {
            let hi = seek(r.max, r.maxex);
            Box::new(
                z.order
                    .range((Bound::Unbounded, hi))
                    .rev()
                    .skip_while(move |(_, m)| !r.lte_max(m)),
            )
        } else {
            let lo = seek(r.min, r.minex);
            Box::new(
                z.order
                    .range((lo, Bound::Unbounded))
                    .skip_while(move |(_, m)| !r.gte_min(m)),
            )
        };
        // The first member reached must also be within the other end.
        let first = it.next()?;
        if !r.still_in(&first.1, reverse) {
            return None;
        }
        Some(Box::new(std::iter::once(first).chain(it)))
    }

    /// `still_in(m)`: the test that ends a walk started by [`LexRange::start`].
    pub(super) fn still_in(&self, m: &[u8], reverse: bool) -> bool {
        if reverse {
            self.gte_min(m)
        } else {
            self.lte_max(m)
        }
    }
}

/// `zslParseLexRangeItem`: `(x` / `[x`, or exactly `-` / `+`. Like C, `+` and `-` are checked
/// up to the first NUL byte.
fn parse_lex_item(arg: &[u8]) -> Option<(LexItem<'_>, bool)> {
    match arg.split_first() {
        Some((b'+', rest)) if rest.first().is_none_or(|&b| b == 0) => Some((LexItem::Max, true)),
        Some((b'-', rest)) if rest.first().is_none_or(|&b| b == 0) => Some((LexItem::Min, true)),
        Some((b'(', rest)) => Some((LexItem::Value(rest), true)),
        Some((b'[', rest)) => Some((LexItem::Value(rest), false)),
        _ => None,
    }
}
