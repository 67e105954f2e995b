//! Keeping each region's topology current on its shard-nodes and proxies.
//!
//! Contract:
//! - A region's shard map is built from what the tick saw: per shard in order, its slot range,
//!   the address of the pod answering as its primary, then its other pods' addresses
//!   ([`shard_map`]). Without an address for every shard's primary there is no map (nothing is
//!   pushed until every shard has one).
//! - A map different from the last one gets a new version: the wall clock in milliseconds,
//!   at least one above the previous version, so versions keep growing across operator
//!   restarts and a stale push is refused by the nodes.
//! - The map is pushed (`AA.TOPOLOGY SET`) to every shard-node and proxy of the region that has
//!   not acknowledged this version, and again to every one of them after
//!   [`REPUSH_AFTER`], so a restarted pod gets it back. A target holding a newer version counts
//!   as acknowledged.
//! - The status reports the version once every target acknowledged it, and the proxies
//!   ready out of those desired.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::tick::Loop;

/// How long an acknowledgement is trusted before the map is pushed again.
pub(super) const REPUSH_AFTER: Duration = Duration::from_secs(3);

/// One shard of a region as the tick saw it.
pub(super) struct ShardPlacement {
    pub(super) slots: (u32, u32),
    pub(super) primary: Option<String>,
    pub(super) replicas: Vec<String>,
}

/// The region's `--shard-map` text, or `None` while a shard has no primary address.
pub(super) fn shard_map(shards: &[ShardPlacement]) -> Option<String> {
    let mut entries = Vec::with_capacity(shards.len());
    for s in shards {
        let primary = s.primary.as_ref()?;
        let mut nodes = vec![primary.clone()];
        nodes.extend(s.replicas.iter().filter(|r| *r != primary).cloned());
        entries.push(format!("{}-{}={}", s.slots.0, s.slots.1, nodes.join("|")));
    }
    if entries.is_empty() {
        return None;
    }
    Some(entries.join(","))
}

/// The version for a new map: the clock, and always above `previous`.
pub(super) fn next_version(previous: u64, now_ms: u64) -> u64 {
    now_ms.max(previous + 1)
}

/// What the supervisor remembers of one region's topology.
#[derive(Default, Debug)]
pub(super) struct RegionTopology {
    pub(super) version: u64,
    pub(super) map: String,
    /// Targets (addresses) that acknowledged `version`, and when.
    pub(super) acked: HashMap<String, Instant>,
}

impl Loop {
    /// Brings every target of `participant` (a region, or a region's nodes or proxies when
    /// they get different maps) to `map`; returns whether all of them acknowledged the
    /// version now in force, and that version.
    pub(super) async fn push_topology(
        &mut self,
        participant: &str,
        map: String,
        targets: &[String],
        errors: &mut Vec<String>,
    ) -> (bool, u64) {
        let now = Instant::now();
        let region = self.topologies.entry(participant.to_string()).or_default();
        if region.map != map {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            region.version = next_version(region.version, now_ms);
            region.map = map;
            region.acked.clear();
            tracing::info!(participant, version = region.version, map = %region.map, "new region topology");
        }
        region
            .acked
            .retain(|_, at| now.duration_since(*at) < REPUSH_AFTER);
        let (version, map) = (region.version, region.map.clone());
        let due: Vec<String> = targets
            .iter()
            .filter(|t| !region.acked.contains_key(*t))
            .cloned()
            .collect();
        let pushes = due.iter().map(|addr| {
            let nodes = self.nodes.clone();
            let map = map.clone();
            async move { (addr.clone(), nodes.set_topology(addr, version, &map).await) }
        });
        let results = futures::future::join_all(pushes).await;
        let region = self.topologies.entry(participant.to_string()).or_default();
        for (addr, r) in results {
            match r {
                Ok(_) => {
                    region.acked.insert(addr, Instant::now());
                }
                Err(e) => errors.push(format!("{participant}: topology push to {addr}: {e}")),
            }
        }
        let all = targets.iter().all(|t| region.acked.contains_key(t));
        (all, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_list_every_shard_with_its_primary_first() {
        let shards = [
            ShardPlacement {
                slots: (0, 8191),
                primary: Some("10.0.0.1:6379".into()),
                replicas: vec!["10.0.0.2:6379".into()],
            },
            ShardPlacement {
                slots: (8192, 16383),
                primary: Some("10.0.0.3:6379".into()),
                replicas: vec![],
            },
        ];
        assert_eq!(
            shard_map(&shards).as_deref(),
            Some("0-8191=10.0.0.1:6379|10.0.0.2:6379,8192-16383=10.0.0.3:6379")
        );
        let missing = [ShardPlacement {
            slots: (0, 16383),
            primary: None,
            replicas: vec!["10.0.0.2:6379".into()],
        }];
        assert_eq!(shard_map(&missing), None);
        assert_eq!(shard_map(&[]), None);
    }

    #[test]
    fn versions_follow_the_clock_and_always_grow() {
        assert_eq!(next_version(0, 1_000), 1_000);
        assert_eq!(next_version(1_000, 1_000), 1_001);
        assert_eq!(next_version(5_000, 1_000), 5_001);
    }
}
