//! Geo commands over sorted sets: GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH,
//! GEOSEARCHSTORE, GEORADIUS, GEORADIUSBYMEMBER and their `_RO` forms.
//!
//! Contract:
//! - A position is stored as a sorted-set member whose score is Redis's 52-bit interleaved
//!   geohash, so a geo key is a sorted set (TYPE `zset`, every ZSET command works on it) and
//!   merges by the sorted-set rules: GEOADD of one member in two regions is a score write, the
//!   later one wins. GEOADD is ZADD with computed scores; the STORE forms replace the
//!   destination like ZRANGESTORE.
//! - Encoding, decoding, distances (haversine on a sphere of 6372797.560856 m) and number
//!   formats are Redis 7.0's, so positions, distances and hashes are byte-identical.
//! - Searches scan the members and keep those within the radius or box of the centre, as
//!   Redis's neighbour-box search does for every point it visits. Without ASC/DESC Redis returns
//!   members in the order its neighbour boxes are visited; here they come in score order. With
//!   `COUNT … ANY`, the first matches in score order are returned.

use super::*;
use crate::crdt::{Value, NEW_SLOT};
use crate::resp::Protocol;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("geoadd", -5, "write denyoom", 1, 1, 1, "geo", "Adds one or more members to a geospatial index. The key is created if it doesn't exist.", geoadd),
        cmd("geopos", -2, "readonly", 1, 1, 1, "geo", "Returns the longitude and latitude of members from a geospatial index.", geopos),
        cmd("geodist", -4, "readonly", 1, 1, 1, "geo", "Returns the distance between two members of a geospatial index.", geodist),
        cmd("geohash", -2, "readonly", 1, 1, 1, "geo", "Returns members from a geospatial index as geohash strings.", geohash),
        cmd("geosearch", -7, "readonly", 1, 1, 1, "geo", "Queries a geospatial index for members inside an area of a box or a circle.", geosearch),
        cmd("geosearchstore", -8, "write denyoom", 1, 2, 1, "geo", "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result.", geosearchstore),
        cmd("georadius", -6, "write denyoom", 1, 1, 1, "geo", "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result.", georadius),
        cmd("georadiusbymember", -5, "write denyoom", 1, 1, 1, "geo", "Queries a geospatial index for members within a distance from a member, optionally stores the result.", georadiusbymember),
        cmd("georadius_ro", -6, "readonly", 1, 1, 1, "geo", "Returns members from a geospatial index that are within a distance from a coordinate.", georadius_ro),
        cmd("georadiusbymember_ro", -5, "readonly", 1, 1, 1, "geo", "Returns members from a geospatial index that are within a distance from a member.", georadiusbymember_ro),
    ]
}

/// Keys of GEORADIUS and GEORADIUSBYMEMBER: the source and the STORE/STOREDIST destination.
pub fn georadius_keys(args: &[Bytes]) -> Vec<usize> {
    let mut keys = vec![1];
    let mut i = 2;
    while i + 1 < args.len() {
        if is(&args[i], "store") || is(&args[i], "storedist") {
            keys.push(i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    keys.retain(|k| *k < args.len());
    keys
}

const LONG_MIN: f64 = -180.0;
const LONG_MAX: f64 = 180.0;
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const STEP: u32 = 26;
const EARTH_RADIUS_M: f64 = 6372797.560856;

fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

fn squash(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

/// The 52-bit hash of a position within the given latitude range (Redis's geohashEncode).
fn encode(lon: f64, lat: f64, lat_min: f64, lat_max: f64) -> u64 {
    let lat_offset = (lat - lat_min) / (lat_max - lat_min) * f64::from(1u32 << STEP);
    let lon_offset = (lon - LONG_MIN) / (LONG_MAX - LONG_MIN) * f64::from(1u32 << STEP);
    spread(lat_offset as u32) | (spread(lon_offset as u32) << 1)
}

/// The centre of the cell of a stored score: (longitude, latitude).
fn decode(score: f64) -> (f64, f64) {
    let bits = score as u64;
    let ilat = f64::from(squash(bits));
    let ilon = f64::from(squash(bits >> 1));
    let cells = f64::from(1u32 << STEP);
    let lat_lo = LAT_MIN + (ilat / cells) * (LAT_MAX - LAT_MIN);
    let lat_hi = LAT_MIN + ((ilat + 1.0) / cells) * (LAT_MAX - LAT_MIN);
    let lon_lo = LONG_MIN + (ilon / cells) * (LONG_MAX - LONG_MIN);
    let lon_hi = LONG_MIN + ((ilon + 1.0) / cells) * (LONG_MAX - LONG_MIN);
    let lon = ((lon_lo + lon_hi) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((lat_lo + lat_hi) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

fn deg_rad(d: f64) -> f64 {
    d * (std::f64::consts::PI / 180.0)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Redis 7.0's geohashGetDistance.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((deg_rad(lon2) - deg_rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// A long double printed the way Redis's "human" format does: 17 decimals, trailing zeros
/// removed.
fn human(v: f64) -> String {
    let text = format!("{v:.17}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

fn write_human(out: &mut ReplyWriter<'_>, v: f64) {
    let text = human(v);
    if out.proto == Protocol::Resp3 {
        out.raw(format!(",{text}\r\n").as_bytes());
    } else {
        out.bulk(text.as_bytes());
    }
}

fn write_distance(out: &mut ReplyWriter<'_>, d: f64) {
    out.bulk(format!("{d:.4}").as_bytes());
}

/// A longitude/latitude pair at `args[0..2]`, checked against Redis's limits.
fn lon_lat(args: &[Bytes]) -> Result<(f64, f64), CmdError> {
    let lon = float_arg(&args[0])?;
    let lat = float_arg(&args[1])?;
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(Cow::Owned(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// Meters per unit.
fn unit(arg: &[u8]) -> Result<f64, CmdError> {
    let u = lower(arg);
    Ok(match u.as_str() {
        "m" => 1.0,
        "km" => 1000.0,
        "ft" => 0.3048,
        "mi" => 1609.34,
        _ => {
            return Err(Cow::Borrowed(
                "ERR unsupported unit provided. please use M, KM, FT, MI",
            ))
        }
    })
}

/// The sorted set of a geo key for reading: `None` when absent, WRONGTYPE otherwise.
fn geo_set<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'a crate::crdt::types::ZSetValue>, CmdError> {
    match ks.get(key, now_ms) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// The score of `member`, if present.
fn score_of(z: &crate::crdt::types::ZSetValue, member: &[u8]) -> Option<f64> {
    z.members.get(member).map(|r| r.score())
}

fn geoadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut at = 2;
    let (mut nx, mut xx) = (false, false);
    while at < args.len() {
        if is(&args[at], "nx") {
            nx = true;
        } else if is(&args[at], "xx") {
            xx = true;
        } else if !is(&args[at], "ch") {
            break;
        }
        at += 1;
    }
    if !(args.len() - at).is_multiple_of(3) || (nx && xx) {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    }
    let mut zadd: Vec<Bytes> = vec![Bytes::from_static(b"zadd")];
    zadd.extend(args[1..at].iter().cloned());
    for triple in args[at..].chunks(3) {
        let (lon, lat) = lon_lat(triple)?;
        let bits = encode(lon, lat, LAT_MIN, LAT_MAX);
        zadd.push(Bytes::from(bits.to_string()));
        zadd.push(triple[2].clone());
    }
    let Some(command) = lookup(b"zadd") else {
        return Err(Cow::Borrowed("ERR ZADD is not available"));
    };
    (command.handler)(ctx, &zadd)
}

fn geopos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = geo_set(&ctx.db.ks, &args[1], ctx.now_ms)?;
    let positions: Vec<Option<(f64, f64)>> = args[2..]
        .iter()
        .map(|m| z.and_then(|z| score_of(z, m)).map(decode))
        .collect();
    ctx.out.array(positions.len());
    for p in positions {
        match p {
            None => ctx.out.null_array(),
            Some((lon, lat)) => {
                ctx.out.array(2);
                write_human(&mut ctx.out, lon);
                write_human(&mut ctx.out, lat);
            }
        }
    }
    Ok(())
}

fn geodist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let to_meters = match args.len() {
        4 => 1.0,
        5 => unit(&args[4])?,
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    let z = geo_set(&ctx.db.ks, &args[1], ctx.now_ms)?;
    let a = z.and_then(|z| score_of(z, &args[2])).map(decode);
    let b = z.and_then(|z| score_of(z, &args[3])).map(decode);
    match (a, b) {
        (Some((lon1, lat1)), Some((lon2, lat2))) => {
            write_distance(&mut ctx.out, distance(lon1, lat1, lon2, lat2) / to_meters)
        }
        _ => ctx.out.null(),
    }
    Ok(())
}

fn geohash(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let z = geo_set(&ctx.db.ks, &args[1], ctx.now_ms)?;
    let hashes: Vec<Option<String>> = args[2..]
        .iter()
        .map(|m| {
            z.and_then(|z| score_of(z, m)).map(|score| {
                let (lon, lat) = decode(score);
                // The standard geohash uses latitudes -90..90.
                let bits = encode(lon, lat, -90.0, 90.0);
                (0..11)
                    .map(|i| {
                        let idx = if i == 10 {
                            0
                        } else {
                            ((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize
                        };
                        ALPHABET[idx] as char
                    })
                    .collect()
            })
        })
        .collect();
    ctx.out.array(hashes.len());
    for h in hashes {
        ctx.out.bulk_or_null(h.as_deref().map(str::as_bytes));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Searches

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Radius,
    RadiusByMember,
    Search,
    SearchStore,
}

#[derive(Clone, Copy)]
enum Shape {
    Circle { radius_m: f64 },
    Box { width_m: f64, height_m: f64 },
}

fn georadius(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::Radius, true)
}

fn georadiusbymember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::RadiusByMember, true)
}

fn georadius_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::Radius, false)
}

fn georadiusbymember_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::RadiusByMember, false)
}

fn geosearch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::Search, false)
}

fn geosearchstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    search(ctx, args, Form::SearchStore, true)
}

/// Radius `args[0]` in unit `args[1]`: (radius in meters, meters per unit).
fn radius_arg(args: &[Bytes]) -> Result<(f64, f64), CmdError> {
    let r = float_arg(&args[0]).map_err(|_| Cow::Borrowed("ERR need numeric radius"))?;
    if r < 0.0 {
        return Err(Cow::Borrowed("ERR radius cannot be negative"));
    }
    let u = unit(&args[1])?;
    Ok((r * u, u))
}

/// The GEORADIUS/GEOSEARCH family (Redis's georadiusGeneric, in the same order of checks).
fn search(ctx: &mut Ctx<'_>, args: &[Bytes], form: Form, may_store: bool) -> CmdResult {
    let src = if form == Form::SearchStore { 2 } else { 1 };
    let now = ctx.now_ms;
    let z = geo_set(&ctx.db.ks, &args[src], now)?;
    let mut center: Option<(f64, f64)> = None;
    let mut shape: Option<Shape> = None;
    let mut to_meters = 1.0;
    let base = match form {
        Form::Radius => {
            center = Some(lon_lat(&args[2..4])?);
            let (r, u) = radius_arg(&args[4..6])?;
            shape = Some(Shape::Circle { radius_m: r });
            to_meters = u;
            6
        }
        Form::RadiusByMember => {
            if let Some(z) = z {
                let Some(score) = score_of(z, &args[2]) else {
                    return Err(Cow::Borrowed("ERR could not decode requested zset member"));
                };
                center = Some(decode(score));
                let (r, u) = radius_arg(&args[3..5])?;
                shape = Some(Shape::Circle { radius_m: r });
                to_meters = u;
            }
            5
        }
        Form::Search => 2,
        Form::SearchStore => 3,
    };
    let searching = matches!(form, Form::Search | Form::SearchStore);
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort: Option<bool> = None; // Some(true): ascending
    let mut count: i64 = 0;
    let mut store: Option<Bytes> = if form == Form::SearchStore {
        Some(args[1].clone())
    } else {
        None
    };
    let mut storedist = false;
    let rest = &args[base..];
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        let left = rest.len() - i - 1;
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            sort = Some(true);
        } else if is(a, "desc") {
            sort = Some(false);
        } else if is(a, "count") && left >= 1 {
            count = int_arg(&rest[i + 1])?;
            if count <= 0 {
                return Err(Cow::Borrowed("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && may_store && !searching {
            store = Some(rest[i + 1].clone());
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && form == Form::SearchStore {
            storedist = true;
        } else if is(a, "frommember") && left >= 1 && searching && !fromloc {
            if let Some(z) = z {
                let Some(score) = score_of(z, &rest[i + 1]) else {
                    return Err(Cow::Borrowed("ERR could not decode requested zset member"));
                };
                center = Some(decode(score));
            }
            frommember = true;
            i += 1;
        } else if is(a, "fromlonlat") && left >= 2 && searching && !frommember {
            center = Some(lon_lat(&rest[i + 1..i + 3])?);
            fromloc = true;
            i += 2;
        } else if is(a, "byradius") && left >= 2 && searching && !bybox {
            let (r, u) = radius_arg(&rest[i + 1..i + 3])?;
            shape = Some(Shape::Circle { radius_m: r });
            to_meters = u;
            byradius = true;
            i += 2;
        } else if is(a, "bybox") && left >= 3 && searching && !byradius {
            let w = float_arg(&rest[i + 1]).map_err(|_| Cow::Borrowed("ERR need numeric width"))?;
            let h =
                float_arg(&rest[i + 2]).map_err(|_| Cow::Borrowed("ERR need numeric height"))?;
            if w < 0.0 || h < 0.0 {
                return Err(Cow::Borrowed("ERR height or width cannot be negative"));
            }
            let u = unit(&rest[i + 3])?;
            shape = Some(Shape::Box {
                width_m: w * u,
                height_m: h * u,
            });
            to_meters = u;
            bybox = true;
            i += 3;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        return Err(Cow::Owned(format!(
            "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if form == Form::SearchStore {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
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
    let (Some(z), Some((cx, cy)), Some(shape)) = (z, center, shape) else {
        // No source key.
        return match store {
            Some(dst) => {
                if ctx.db.ks.raw_entry(&dst).is_some() {
                    ctx.write(vec![op(&dst, OpKind::Del)]);
                }
                ctx.out.int(0);
                Ok(())
            }
            None => {
                ctx.out.array(0);
                Ok(())
            }
        };
    };
    if count != 0 && sort.is_none() && !any {
        sort = Some(true);
    }
    // (member, score, distance in meters, lon, lat)
    let mut found: Vec<(&[u8], f64, f64, f64, f64)> = Vec::new();
    for (score, member) in &z.order {
        let (lon, lat) = decode(score.0);
        let hit = match shape {
            Shape::Circle { radius_m } => {
                let d = distance(cx, cy, lon, lat);
                (d <= radius_m).then_some(d)
            }
            Shape::Box { width_m, height_m } => {
                if lat_distance(lat, cy) > height_m / 2.0
                    || distance(lon, lat, cx, lat) > width_m / 2.0
                {
                    None
                } else {
                    Some(distance(cx, cy, lon, lat))
                }
            }
        };
        if let Some(d) = hit {
            found.push((&member[..], score.0, d, lon, lat));
            if any && found.len() as i64 >= count {
                break;
            }
        }
    }
    match sort {
        Some(true) => found.sort_by(|a, b| a.2.total_cmp(&b.2)),
        Some(false) => found.sort_by(|a, b| b.2.total_cmp(&a.2)),
        None => {}
    }
    if count > 0 {
        found.truncate(count as usize);
    }
    let Some(dst) = store else {
        let options = usize::from(withdist) + usize::from(withhash) + usize::from(withcoord);
        let rows: Vec<(Bytes, f64, f64, f64, f64)> = found
            .iter()
            .map(|(m, s, d, lon, lat)| (Bytes::copy_from_slice(m), *s, *d, *lon, *lat))
            .collect();
        ctx.out.array(rows.len());
        for (member, score, d, lon, lat) in rows {
            if options > 0 {
                ctx.out.array(options + 1);
            }
            ctx.out.bulk(&member);
            if withdist {
                write_distance(&mut ctx.out, d / to_meters);
            }
            if withhash {
                ctx.out.int(score as i64);
            }
            if withcoord {
                ctx.out.array(2);
                write_human(&mut ctx.out, lon);
                write_human(&mut ctx.out, lat);
            }
        }
        return Ok(());
    };
    let mut ops = Vec::with_capacity(found.len() + 1);
    if ctx.db.ks.raw_entry(&dst).is_some() {
        ops.push(op(&dst, OpKind::Del));
    }
    for (member, score, d, _, _) in &found {
        ops.push(op(
            &dst,
            OpKind::ZAdd {
                slot: NEW_SLOT,
                member: Bytes::copy_from_slice(member),
                score: if storedist { d / to_meters } else { *score },
            },
        ));
    }
    let n = found.len() as i64;
    if !ops.is_empty() {
        ctx.write(ops);
    }
    ctx.out.int(n);
    Ok(())
}
