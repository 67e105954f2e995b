//! Geospatial commands over sorted sets: GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH,
//! GEOSEARCHSTORE, GEORADIUS, GEORADIUSBYMEMBER and their `_RO` forms (`geo.c`).
//!
//! Contract:
//! - A position is stored as a sorted-set member whose score is the 52-bit interleaved geohash
//!   of its longitude and latitude, exactly as Redis encodes it, so GEOADD is ZADD (and
//!   replicates and merges as ZADD, docs/semantics.md, Sorted sets) and every sorted-set
//!   command works on the key. The store forms replace the destination like ZRANGESTORE.
//! - Coordinates are decoded, distances computed (haversine on Redis's Earth radius) and
//!   printed as Redis does: positions with up to 17 decimals, distances with 4.
//! - A search examines every member of the set and keeps those within the shape (Redis scans
//!   the geohash boxes around it and applies the same test, so the members found are the
//!   same). Results without ASC, DESC or COUNT are returned nearest first (Redis returns them
//!   in the order of the boxes it scanned); COUNT … ANY returns the first members found in
//!   geohash order.

use super::add::zadd;
use super::*;

const LONG_MIN: f64 = -180.0;
const LONG_MAX: f64 = 180.0;
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const STEP: u32 = 26;
const EARTH_RADIUS_IN_METERS: f64 = 6372797.560856;
const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
const ERR_UNIT: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";
const ERR_MEMBER: &str = "ERR could not decode requested zset member";

// ---------------------------------------------------------------------------------------------
// Geohash (geohash.c)

/// Spreads the 32 bits of `v` to the even bit positions.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bit positions of `v`.
fn squash(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

/// `geohashEncode` at `STEP` bits per coordinate within the given latitude range.
fn encode(lon: f64, lat: f64, lat_min: f64, lat_max: f64) -> Option<u64> {
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_min || lat > lat_max {
        return None;
    }
    let scale = f64::from(1u32 << STEP);
    let lat_offset = (lat - lat_min) / (lat_max - lat_min) * scale;
    let lon_offset = (lon - LONG_MIN) / (LONG_MAX - LONG_MIN) * scale;
    Some(spread(lat_offset as u32) | (spread(lon_offset as u32) << 1))
}

/// `decodeGeohash`: the centre of the cell a score names, clamped to the valid ranges.
fn decode(score: f64) -> (f64, f64) {
    let bits = score as u64;
    let lat_cell = squash(bits);
    let lon_cell = squash(bits >> 1);
    let cells = (1u64 << STEP) as f64;
    let lat_scale = LAT_MAX - LAT_MIN;
    let lon_scale = LONG_MAX - LONG_MIN;
    let lat_lo = LAT_MIN + (f64::from(lat_cell) * 1.0 / cells) * lat_scale;
    let lat_hi = LAT_MIN + ((f64::from(lat_cell) + 1.0) * 1.0 / cells) * lat_scale;
    let lon_lo = LONG_MIN + (f64::from(lon_cell) * 1.0 / cells) * lon_scale;
    let lon_hi = LONG_MIN + ((f64::from(lon_cell) + 1.0) * 1.0 / cells) * lon_scale;
    let lon = ((lon_lo + lon_hi) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((lat_lo + lat_hi) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

fn deg_rad(a: f64) -> f64 {
    a * (std::f64::consts::PI / 180.0)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_IN_METERS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// `geohashGetDistance` (haversine).
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((deg_rad(lon2) - deg_rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
}

// ---------------------------------------------------------------------------------------------
// Replies and arguments

/// `addReplyHumanLongDouble`: `%.17Lf` without trailing zeros (RESP3: a double).
fn reply_coordinate(out: &mut ReplyWriter<'_>, v: f64) {
    let mut text = format!("{v:.17}");
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    if out.proto == Protocol::Resp3 {
        out.raw(format!(",{text}\r\n").as_bytes());
    } else {
        out.bulk(text.as_bytes());
    }
}

/// `addReplyDoubleDistance`: four decimals.
fn reply_distance(out: &mut ReplyWriter<'_>, d: f64) {
    out.bulk(format!("{d:.4}").as_bytes());
}

/// `extractLongLatOrReply`.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), CmdError> {
    let (lon, lat) = (float_arg(lon)?, float_arg(lat)?);
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(Cow::Owned(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// `extractUnitOrReply`: meters per unit.
fn unit(arg: &[u8]) -> Result<f64, CmdError> {
    if is(arg, "m") {
        Ok(1.0)
    } else if is(arg, "km") {
        Ok(1000.0)
    } else if is(arg, "ft") {
        Ok(0.3048)
    } else if is(arg, "mi") {
        Ok(1609.34)
    } else {
        Err(Cow::Borrowed(ERR_UNIT))
    }
}

fn float_or(arg: &[u8], message: &'static str) -> Result<f64, CmdError> {
    crate::resp::parse_f64_strict(arg).ok_or(Cow::Borrowed(message))
}

// ---------------------------------------------------------------------------------------------
// GEOADD, GEOPOS, GEODIST, GEOHASH

pub(super) fn geoadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx) = (false, false);
    let mut first = 2;
    while first < args.len() {
        let a = &args[first];
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if !is(a, "ch") {
            break;
        }
        first += 1;
    }
    if !(args.len() - first).is_multiple_of(3) || (xx && nx) {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    }
    let mut zargs: Vec<Bytes> = Vec::with_capacity(first + (args.len() - first) / 3 * 2);
    zargs.push(Bytes::from_static(b"zadd"));
    zargs.extend(args[1..first].iter().cloned());
    for triple in args[first..].chunks(3) {
        let (lon, lat) = lon_lat(&triple[0], &triple[1])?;
        let bits = encode(lon, lat, LAT_MIN, LAT_MAX).ok_or_else(|| {
            Cow::Owned(format!(
                "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
            ))
        })?;
        zargs.push(Bytes::from(bits.to_string()));
        zargs.push(triple[2].clone());
    }
    zadd(ctx, &zargs)
}

pub(super) fn geopos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let scores: Vec<Option<f64>> = args[2..]
        .iter()
        .map(|m| z.and_then(|z| z.members.get(&m[..]).map(|c| c.score())))
        .collect();
    ctx.out.array(scores.len());
    for score in scores {
        match score {
            None => ctx.out.null_array(),
            Some(s) => {
                let (lon, lat) = decode(s);
                ctx.out.array(2);
                reply_coordinate(&mut ctx.out, lon);
                reply_coordinate(&mut ctx.out, lat);
            }
        }
    }
    Ok(())
}

pub(super) fn geodist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let to_meter = match args.len() {
        4 => 1.0,
        5 => unit(&args[4])?,
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let score = |m: &[u8]| z.and_then(|z| z.members.get(m).map(|c| c.score()));
    match (score(&args[2]), score(&args[3])) {
        (Some(a), Some(b)) => {
            let (lon1, lat1) = decode(a);
            let (lon2, lat2) = decode(b);
            reply_distance(&mut ctx.out, distance(lon1, lat1, lon2, lat2) / to_meter);
        }
        _ => ctx.out.null(),
    }
    Ok(())
}

pub(super) fn geohash(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let scores: Vec<Option<f64>> = args[2..]
        .iter()
        .map(|m| z.and_then(|z| z.members.get(&m[..]).map(|c| c.score())))
        .collect();
    ctx.out.array(scores.len());
    for score in scores {
        let Some(s) = score else {
            ctx.out.null();
            continue;
        };
        let (lon, lat) = decode(s);
        // The standard geohash uses latitudes -90..90.
        let bits = encode(lon, lat, -90.0, 90.0).unwrap_or(0);
        let mut text = [b'0'; 11];
        for (i, c) in text.iter_mut().enumerate().take(10) {
            let idx = (bits >> (52 - (i + 1) * 5)) & 0x1f;
            *c = ALPHABET[idx as usize];
        }
        ctx.out.bulk(&text);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Searches

#[derive(Clone, Copy, PartialEq)]
enum Sort {
    None,
    Asc,
    Desc,
}

#[derive(Clone, Copy)]
enum Shape {
    Radius(f64),
    Box(f64, f64),
}

/// Which command a search is.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Radius,
    RadiusRo,
    ByMember,
    ByMemberRo,
    Search,
    SearchStore,
}

pub(super) fn georadius(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::Radius)
}
pub(super) fn georadius_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::RadiusRo)
}
pub(super) fn georadiusbymember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::ByMember)
}
pub(super) fn georadiusbymember_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::ByMemberRo)
}
pub(super) fn geosearch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::Search)
}
pub(super) fn geosearchstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::SearchStore)
}

/// The STORE / STOREDIST key of GEORADIUS and GEORADIUSBYMEMBER (`georadiusGetKeys`): the
/// last one given from the sixth argument on.
pub fn radius_store_key(args: &[Bytes]) -> Option<usize> {
    let mut found = None;
    let mut i = 5;
    while i < args.len() {
        if (is(&args[i], "store") || is(&args[i], "storedist")) && i + 1 < args.len() {
            found = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    found
}

/// A radius and its unit (`extractDistanceOrReply`): (radius, meters per unit).
fn radius_arg(r: &[u8], u: &[u8]) -> Result<(f64, f64), CmdError> {
    let d = float_or(r, "ERR need numeric radius")?;
    if d < 0.0 {
        return Err(Cow::Borrowed("ERR radius cannot be negative"));
    }
    Ok((d, unit(u)?))
}

/// A box and its unit (`extractBoxOrReply`): (width, height, meters per unit).
fn box_arg(w: &[u8], h: &[u8], u: &[u8]) -> Result<(f64, f64, f64), CmdError> {
    let w = float_or(w, "ERR need numeric width")?;
    let h = float_or(h, "ERR need numeric height")?;
    if h < 0.0 || w < 0.0 {
        return Err(Cow::Borrowed("ERR height or width cannot be negative"));
    }
    Ok((w, h, unit(u)?))
}

/// One member found by a search.
struct Found {
    member: Bytes,
    score: f64,
    lon: f64,
    lat: f64,
    dist: f64,
}

/// `georadiusGeneric`.
fn search(ctx: &mut Ctx<'_>, args: &[Bytes], form: Form) -> CmdResult {
    let src = if form == Form::SearchStore { 2 } else { 1 };
    let now = ctx.now_ms;
    let mut center: Option<(f64, f64)> = None;
    let mut shape: Option<Shape> = None;
    let mut conversion = 1.0;
    let mut store: Option<Bytes> = if form == Form::SearchStore {
        Some(args[1].clone())
    } else {
        None
    };
    let mut storedist = false;
    // Positions come from the source set; it is read once, here.
    let positions: Option<Vec<(Bytes, f64)>> = {
        let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[src], now)?;
        z.map(|z| {
            z.order
                .iter()
                .map(|(s, m)| (Bytes::copy_from_slice(m), s.0))
                .collect()
        })
    };
    let member_position = |m: &[u8]| -> Result<(f64, f64), CmdError> {
        positions
            .as_ref()
            .and_then(|p| p.iter().find(|(x, _)| &x[..] == m).map(|(_, s)| decode(*s)))
            .ok_or(Cow::Borrowed(ERR_MEMBER))
    };
    let base = match form {
        Form::Radius | Form::RadiusRo => {
            center = Some(lon_lat(&args[2], &args[3])?);
            let (r, c) = radius_arg(&args[4], &args[5])?;
            shape = Some(Shape::Radius(r));
            conversion = c;
            6
        }
        Form::ByMember | Form::ByMemberRo => {
            if positions.is_some() {
                center = Some(member_position(&args[2])?);
                let (r, c) = radius_arg(&args[3], &args[4])?;
                shape = Some(Shape::Radius(r));
                conversion = c;
            }
            5
        }
        Form::Search => 2,
        Form::SearchStore => 3,
    };
    let searching = matches!(form, Form::Search | Form::SearchStore);
    let may_store = matches!(form, Form::Radius | Form::ByMember);
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut count: i64 = 0;
    let remaining = args.len().saturating_sub(base);
    let mut i = 0;
    while i < remaining {
        let a = &args[base + i];
        let arg = |k: usize| &args[base + i + k];
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            sort = Sort::Asc;
        } else if is(a, "desc") {
            sort = Sort::Desc;
        } else if is(a, "count") && i + 1 < remaining {
            count = int_arg(arg(1))?;
            if count <= 0 {
                return Err(Cow::Borrowed("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && i + 1 < remaining && may_store {
            store = Some(arg(1).clone());
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && form == Form::SearchStore {
            storedist = true;
        } else if is(a, "frommember") && i + 1 < remaining && searching && !fromloc {
            if positions.is_some() {
                center = Some(member_position(arg(1))?);
            }
            frommember = true;
            i += 1;
        } else if is(a, "fromlonlat") && i + 2 < remaining && searching && !frommember {
            center = Some(lon_lat(arg(1), arg(2))?);
            fromloc = true;
            i += 2;
        } else if is(a, "byradius") && i + 2 < remaining && searching && !bybox {
            let (r, c) = radius_arg(arg(1), arg(2))?;
            shape = Some(Shape::Radius(r));
            conversion = c;
            byradius = true;
            i += 2;
        } else if is(a, "bybox") && i + 3 < remaining && searching && !byradius {
            let (w, h, c) = box_arg(arg(1), arg(2), arg(3))?;
            shape = Some(Shape::Box(w, h));
            conversion = c;
            bybox = true;
            i += 3;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        let what = if form == Form::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Cow::Owned(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let name = String::from_utf8_lossy(&args[0]).into_owned();
    if searching && !(frommember || fromloc) {
        return Err(Cow::Owned(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if searching && !(byradius || bybox) {
        return Err(Cow::Owned(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(Cow::Borrowed(
            "ERR the ANY argument requires COUNT argument",
        ));
    }
    let (Some(positions), Some((lon0, lat0)), Some(shape)) = (positions, center, shape) else {
        // No source set.
        match store {
            Some(dest) => {
                if ctx.db.ks.raw_entry(&dest).is_some() {
                    ctx.write(vec![op(&dest, OpKind::Del)]);
                }
                ctx.out.int(0);
            }
            None => ctx.out.array(0),
        }
        return Ok(());
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let mut found: Vec<Found> = Vec::new();
    for (member, score) in positions {
        let (lon, lat) = decode(score);
        let dist = match shape {
            Shape::Radius(r) => {
                let d = distance(lon0, lat0, lon, lat);
                if d > r * conversion {
                    continue;
                }
                d
            }
            Shape::Box(w, h) => {
                if lat_distance(lat, lat0) > h * conversion / 2.0
                    || distance(lon, lat, lon0, lat) > w * conversion / 2.0
                {
                    continue;
                }
                distance(lon0, lat0, lon, lat)
            }
        };
        found.push(Found {
            member,
            score,
            lon,
            lat,
            dist,
        });
        if any && found.len() as i64 >= count {
            break;
        }
    }
    match sort {
        Sort::Desc => found.sort_by(|a, b| b.dist.total_cmp(&a.dist)),
        // Nearest first also when no order was asked for (see the module contract).
        Sort::Asc => found.sort_by(|a, b| a.dist.total_cmp(&b.dist)),
        Sort::None if !any => found.sort_by(|a, b| a.dist.total_cmp(&b.dist)),
        Sort::None => {}
    }
    if count > 0 {
        found.truncate(usize::try_from(count).unwrap_or(usize::MAX));
    }
    match store {
        None => {
            let options = usize::from(withdist) + usize::from(withhash) + usize::from(withcoord);
            ctx.out.array(found.len());
            for f in &found {
                if options > 0 {
                    ctx.out.array(options + 1);
                }
                ctx.out.bulk(&f.member);
                if withdist {
                    reply_distance(&mut ctx.out, f.dist / conversion);
                }
                if withhash {
                    ctx.out.int(f.score as i64);
                }
                if withcoord {
                    ctx.out.array(2);
                    reply_coordinate(&mut ctx.out, f.lon);
                    reply_coordinate(&mut ctx.out, f.lat);
                }
            }
        }
        Some(dest) => {
            let mut ops = Vec::new();
            if ctx.db.ks.raw_entry(&dest).is_some() {
                ops.push(op(&dest, OpKind::Del));
            }
            for f in &found {
                let score = if storedist {
                    f.dist / conversion
                } else {
                    f.score
                };
                ops.push(op(
                    &dest,
                    OpKind::ZAdd {
                        slot: NEW_SLOT,
                        member: f.member.clone(),
                        score: stored(score),
                    },
                ));
            }
            if !ops.is_empty() {
                ctx.write(ops);
            }
            ctx.out.int(found.len() as i64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_round_trips() {
        for v in [0u32, 1, 0xdead_beef, u32::MAX, 0x0123_4567] {
            assert_eq!(squash(spread(v)), v);
            assert_eq!(squash(spread(v) << 1 >> 1), v);
        }
    }

    #[test]
    fn encode_matches_redis_for_a_known_point() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo" stores 3479099956230698.
        let bits = encode(13.361389, 38.115556, LAT_MIN, LAT_MAX);
        assert_eq!(bits, Some(3479099956230698));
        let (lon, lat) = decode(3479099956230698.0);
        assert!((lon - 13.361389).abs() < 1e-5 && (lat - 38.115556).abs() < 1e-5);
    }
}
