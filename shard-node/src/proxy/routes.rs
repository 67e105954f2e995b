//! The proxy's view of its region: which shard serves each slot, and which node of each shard
//! takes its requests.
//!
//! Contract:
//! - [`Routes`] is immutable; a change (a push, a file, a discovered promotion) builds a new
//!   one and swaps it in whole, so a request is routed against one consistent view.
//! - A pushed map replaces the view only when its version is newer ([`Routes::replace`]); a
//!   promotion discovered by the proxy itself keeps the version and only moves which node of
//!   the shard takes requests ([`Routes::with_primary`]), and a later push overrides it.
//! - [`parse_topology_file`] reads `VERSION SHARD-MAP` (one line, `#` comments allowed).

use crate::cluster::{ShardMap, TopologyError, SLOTS};

/// Where each slot's requests go.
#[derive(Clone, Debug)]
pub struct Routes {
    pub version: u64,
    pub map: ShardMap,
    owner: Vec<u16>,
    /// The node of each shard that takes requests: its primary, as last pushed or discovered.
    primaries: Vec<String>,
}

impl Routes {
    /// The routes of `map` at `version`, every shard served by its listed primary.
    pub fn new(version: u64, map: ShardMap) -> Result<Routes, TopologyError> {
        let owner = map.owners()?;
        let primaries = map.shards.iter().map(|s| s.primary.clone()).collect();
        Ok(Routes {
            version,
            map,
            owner,
            primaries,
        })
    }

    /// The routes of `map` at `version` when that is newer than these.
    pub fn replace(&self, version: u64, map: ShardMap) -> Result<Routes, TopologyError> {
        if version <= self.version {
            return Err(TopologyError::Stale {
                offered: version,
                current: self.version,
            });
        }
        Routes::new(version, map)
    }

    /// The same routes with `addr` taking shard `shard`'s requests.
    pub fn with_primary(&self, shard: usize, addr: &str) -> Routes {
        let mut next = self.clone();
        if let Some(p) = next.primaries.get_mut(shard) {
            *p = addr.to_string();
        }
        next
    }

    /// The shard serving `slot`, if any.
    pub fn shard_of(&self, slot: u16) -> Option<usize> {
        match self.owner.get(usize::from(slot)).copied() {
            Some(u16::MAX) | None => None,
            Some(i) => Some(usize::from(i)),
        }
    }

    /// The node taking shard `shard`'s requests.
    pub fn primary(&self, shard: usize) -> Option<&str> {
        self.primaries.get(shard).map(String::as_str)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.map.shards.len()
    }

    /// Every node of shard `shard` the proxy may ask who the primary is: the one it uses now
    /// first, then the rest of the shard's listed nodes.
    pub fn candidates(&self, shard: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .primary(shard)
            .map(str::to_string)
            .into_iter()
            .collect();
        if let Some(entry) = self.map.shards.get(shard) {
            for n in entry.nodes() {
                if !out.iter().any(|o| o == n) {
                    out.push(n.to_string());
                }
            }
        }
        out
    }

    /// The shard whose listed nodes include `addr`.
    pub fn shard_with_node(&self, addr: &str) -> Option<usize> {
        self.map
            .shards
            .iter()
            .position(|s| s.nodes().any(|n| n == addr))
    }

    /// Number of slots some shard serves.
    pub fn served_slots(&self) -> usize {
        self.owner.iter().filter(|o| **o != u16::MAX).count()
    }

    /// True when every slot is served.
    pub fn complete(&self) -> bool {
        self.served_slots() == usize::from(SLOTS)
    }
}

/// Reads a topology file: `VERSION SHARD-MAP` on its first line that is not blank or a comment.
pub fn parse_topology_file(text: &str) -> Result<(u64, ShardMap), String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("the topology file is empty")?;
    let (version, map) = line
        .split_once(char::is_whitespace)
        .ok_or("the topology file must hold 'VERSION SHARD-MAP' on one line")?;
    let version: u64 = version
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("topology version {version:?} is not a positive integer"))?;
    let map = ShardMap::parse(map).map_err(|e| e.to_string())?;
    Ok((version, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "0-8191=127.0.0.1:7000|127.0.0.1:7100,8192-16382=127.0.0.1:7001";

    #[test]
    fn slots_route_to_their_shard_and_promotions_move_only_the_primary() {
        let r = Routes::new(1, ShardMap::parse(MAP).unwrap()).unwrap();
        assert_eq!(r.shard_of(0), Some(0));
        assert_eq!(r.shard_of(8192), Some(1));
        assert_eq!(r.shard_of(16383), None);
        assert!(!r.complete());
        assert_eq!(r.primary(0), Some("127.0.0.1:7000"));
        let promoted = r.with_primary(0, "127.0.0.1:7100");
        assert_eq!(promoted.primary(0), Some("127.0.0.1:7100"));
        assert_eq!(promoted.version, 1);
        assert_eq!(
            promoted.candidates(0),
            vec!["127.0.0.1:7100".to_string(), "127.0.0.1:7000".to_string()]
        );
        assert_eq!(r.shard_with_node("127.0.0.1:7100"), Some(0));
        assert_eq!(r.shard_with_node("127.0.0.1:9"), None);
    }

    #[test]
    fn only_newer_maps_replace_the_routes() {
        let r = Routes::new(3, ShardMap::parse(MAP).unwrap()).unwrap();
        let same = ShardMap::parse("0-16383=127.0.0.1:7000").unwrap();
        assert!(r.replace(3, same.clone()).is_err());
        let next = r.replace(4, same).unwrap();
        assert!(next.complete());
        assert_eq!(next.shards(), 1);
    }

    #[test]
    fn topology_files_hold_a_version_and_a_map() {
        let (v, map) =
            parse_topology_file(&format!("# pushed by the operator\n7 {MAP}\n")).unwrap();
        assert_eq!(v, 7);
        assert_eq!(map.shards.len(), 2);
        for (text, needle) in [
            ("", "empty"),
            ("7", "'VERSION SHARD-MAP'"),
            ("x 0-1=h:1", "not a positive integer"),
            ("0 0-1=h:1", "not a positive integer"),
            ("3 0-1=h", "not HOST:PORT"),
        ] {
            let err = parse_topology_file(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
