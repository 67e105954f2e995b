//! Hash slots and the shard map: which shard of a region owns which keys, and where its
//! primary and replicas are.
//!
//! Contract:
//! - A key's slot is CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384, exactly
//!   as Redis Cluster computes it ([`key_slot`]).
//! - A shard map is written `RANGES=PRIMARY[|REPLICA…]` per shard, entries separated by
//!   commas and in shard order; RANGES is `A-B` or `A`, several joined by `+`
//!   (`0-99+200-300`); addresses are `HOST:PORT`. [`ShardMap::parse`] refuses anything else
//!   with one sentence naming the part at fault, and refuses two shards owning one slot.
//!   Slots no shard owns are allowed: they are unserved (`CLUSTERDOWN`).
//! - A [`Topology`] is a shard map, the index of this node's shard in it, and a version; a node
//!   holding one answers only for its own shard's slots. A newer version replaces an older one;
//!   a push with a version not above the current one is refused (a stale push).
//! - Node ids (for `CLUSTER NODES`, `SHARDS`, `SLOTS`) are derived from the address alone, so
//!   every node of a region names every other node alike.

use crate::crdt::clock::fnv1a;

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16 (XMODEM), the hash Redis Cluster uses for key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for b in bytes {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key (0..16384), honouring `{hash tags}` like Redis Cluster.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|b| *b == b'}')
            .filter(|close| *close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// Why a shard map or a topology push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("the shard map is empty")]
    Empty,
    #[error("shard map entry {entry} ({text:?}) is not RANGES=PRIMARY[|REPLICA...]")]
    Entry { entry: usize, text: String },
    #[error(
        "shard map entry {entry}: {range:?} is not a slot range (A-B or A, 0 <= A <= B <= 16383)"
    )]
    Range { entry: usize, range: String },
    #[error("shard map entry {entry}: {addr:?} is not HOST:PORT")]
    Address { entry: usize, addr: String },
    #[error("slot {slot} is owned by both shard {first} and shard {second}")]
    Overlap {
        slot: u16,
        first: usize,
        second: usize,
    },
    #[error("this node serves shard {shard}, but the shard map has {shards} shards")]
    NoSuchShard { shard: u32, shards: usize },
    #[error("topology version {offered} is not newer than the current version {current}")]
    Stale { offered: u64, current: u64 },
}

/// An inclusive range of slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
}

/// `A` for a single slot, `A-B` otherwise (as in a shard map and `CLUSTER NODES`).
impl std::fmt::Display for SlotRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One shard: its slots, its primary and its replicas (`HOST:PORT` each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardEntry {
    pub ranges: Vec<SlotRange>,
    pub primary: String,
    pub replicas: Vec<String>,
}

impl ShardEntry {
    /// Every node of the shard, primary first.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.as_str()).chain(self.replicas.iter().map(String::as_str))
    }
}

/// The shards of one region, in shard order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    pub shards: Vec<ShardEntry>,
}

fn parse_address(entry: usize, text: &str) -> Result<String, TopologyError> {
    let bad = || TopologyError::Address {
        entry,
        addr: text.to_string(),
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(text.to_string())
}

fn parse_range(entry: usize, text: &str) -> Result<SlotRange, TopologyError> {
    let bad = || TopologyError::Range {
        entry,
        range: text.to_string(),
    };
    let number = |s: &str| -> Result<u16, TopologyError> {
        s.parse::<u16>().ok().filter(|n| *n < SLOTS).ok_or_else(bad)
    };
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if start > end {
        return Err(bad());
    }
    Ok(SlotRange { start, end })
}

impl ShardMap {
    /// Parses the `--shard-map` text (see the module contract).
    pub fn parse(text: &str) -> Result<ShardMap, TopologyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TopologyError::Empty);
        }
        let mut shards = Vec::new();
        for (entry, part) in text.split(',').map(str::trim).enumerate() {
            let bad = || TopologyError::Entry {
                entry,
                text: part.to_string(),
            };
            let (ranges, nodes) = part.split_once('=').ok_or_else(bad)?;
            let ranges = ranges
                .split('+')
                .map(|r| parse_range(entry, r.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut nodes = nodes.split('|').map(str::trim);
            let primary = parse_address(entry, nodes.next().ok_or_else(bad)?)?;
            let replicas = nodes
                .map(|n| parse_address(entry, n))
                .collect::<Result<Vec<_>, _>>()?;
            shards.push(ShardEntry {
                ranges,
                primary,
                replicas,
            });
        }
        let map = ShardMap { shards };
        map.owners()?;
        Ok(map)
    }

    /// The map written back in `--shard-map` form.
    pub fn to_text(&self) -> String {
        self.shards
            .iter()
            .map(|s| {
                let ranges: Vec<String> = s.ranges.iter().map(SlotRange::to_string).collect();
                let nodes: Vec<&str> = s.nodes().collect();
                format!("{}={}", ranges.join("+"), nodes.join("|"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The owning shard of every slot (`u16::MAX`: unserved), or the first overlap.
    pub fn owners(&self) -> Result<Vec<u16>, TopologyError> {
        let mut owner = vec![u16::MAX; usize::from(SLOTS)];
        for (i, shard) in self.shards.iter().enumerate() {
            for r in &shard.ranges {
                for slot in r.start..=r.end {
                    let cell = &mut owner[usize::from(slot)];
                    if *cell != u16::MAX && usize::from(*cell) != i {
                        return Err(TopologyError::Overlap {
                            slot,
                            first: usize::from(*cell),
                            second: i,
                        });
                    }
                    *cell = i as u16;
                }
            }
        }
        Ok(owner)
    }
}

/// What a node knows of its region's shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub version: u64,
    pub map: ShardMap,
    /// This node's shard.
    pub me: usize,
    owner: Vec<u16>,
}

/// Where a key's slot is served, seen from this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// This node's shard.
    Here,
    /// Another shard, whose primary is at this address.
    Elsewhere(&'a str),
    /// No shard.
    Unserved,
}

impl Topology {
    /// The topology of shard `me` in `map`, at `version`.
    pub fn new(version: u64, map: ShardMap, me: u32) -> Result<Topology, TopologyError> {
        if me as usize >= map.shards.len() {
            return Err(TopologyError::NoSuchShard {
                shard: me,
                shards: map.shards.len(),
            });
        }
        let owner = map.owners()?;
        Ok(Topology {
            version,
            map,
            me: me as usize,
            owner,
        })
    }

    /// Checks that `offered` may replace this topology.
    pub fn accepts(&self, offered: u64) -> Result<(), TopologyError> {
        if offered <= self.version {
            return Err(TopologyError::Stale {
                offered,
                current: self.version,
            });
        }
        Ok(())
    }

    /// Where `slot` is served.
    pub fn place(&self, slot: u16) -> Placement<'_> {
        match self.owner.get(usize::from(slot)).copied() {
            Some(i) if usize::from(i) == self.me => Placement::Here,
            Some(u16::MAX) | None => Placement::Unserved,
            Some(i) => Placement::Elsewhere(&self.map.shards[usize::from(i)].primary),
        }
    }

    /// This node's shard.
    pub fn mine(&self) -> &ShardEntry {
        &self.map.shards[self.me]
    }

    /// Number of slots some shard owns.
    pub fn assigned_slots(&self) -> usize {
        self.owner.iter().filter(|o| **o != u16::MAX).count()
    }
}

/// The 40-hex-digit node id of the node at `addr` (the same on every node).
pub fn node_id(addr: &str) -> String {
    (0u8..5)
        .map(|salt| {
            let mut bytes = vec![salt];
            bytes.extend_from_slice(addr.as_bytes());
            format!("{:08x}", fnv1a(&bytes) as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis_cluster() {
        // Values from Redis Cluster (CLUSTER KEYSLOT).
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(key_slot(b"{}foo"), crc16(b"{}foo") % SLOTS);
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
    }

    #[test]
    fn shard_maps_parse_and_print_back() {
        let text = "0-5460=127.0.0.1:7000|127.0.0.1:7100,5461-10922=h2:7001,10923-16383+42=h3:7002";
        let err = ShardMap::parse(text).unwrap_err();
        assert_eq!(
            err,
            TopologyError::Overlap {
                slot: 42,
                first: 0,
                second: 2
            }
        );
        let text = "0-5460=127.0.0.1:7000|127.0.0.1:7100,5461-10922=h2:7001,10923-16383=h3:7002";
        let map = ShardMap::parse(text).unwrap();
        assert_eq!(map.shards.len(), 3);
        assert_eq!(map.shards[0].replicas, vec!["127.0.0.1:7100".to_string()]);
        assert_eq!(map.to_text(), text);
        let t = Topology::new(1, map, 1).unwrap();
        assert_eq!(t.place(0), Placement::Elsewhere("127.0.0.1:7000"));
        assert_eq!(t.place(5461), Placement::Here);
        assert_eq!(t.assigned_slots(), 16384);
        assert!(t.accepts(2).is_ok());
        assert!(t.accepts(1).is_err());
    }

    #[test]
    fn bad_maps_are_refused_with_the_part_at_fault() {
        let cases = [
            ("", "the shard map is empty"),
            ("0-10", "entry 0 (\"0-10\") is not RANGES=PRIMARY"),
            ("0-16384=h:1", "\"0-16384\" is not a slot range"),
            ("10-5=h:1", "\"10-5\" is not a slot range"),
            ("0-5=h", "\"h\" is not HOST:PORT"),
            ("0-5=h:0", "\"h:0\" is not HOST:PORT"),
            ("0-5=h:1|", "\"\" is not HOST:PORT"),
        ];
        for (text, needle) in cases {
            let err = ShardMap::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let map = ShardMap::parse("0-16383=h:1").unwrap();
        assert!(Topology::new(1, map, 1).is_err());
    }

    #[test]
    fn unserved_slots_are_placed_nowhere() {
        let t = Topology::new(1, ShardMap::parse("0-99=h:1").unwrap(), 0).unwrap();
        assert_eq!(t.place(99), Placement::Here);
        assert_eq!(t.place(100), Placement::Unserved);
        assert_eq!(t.assigned_slots(), 100);
    }

    #[test]
    fn node_ids_are_forty_hex_digits_and_depend_on_the_address() {
        let a = node_id("127.0.0.1:7000");
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, node_id("127.0.0.1:7000"));
        assert_ne!(a, node_id("127.0.0.1:7001"));
    }
}
