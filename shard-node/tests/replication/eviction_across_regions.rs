//! Eviction across regions, on real processes: keys evicted under `maxmemory` in one region
//! stay in the others, and the region's replicas evict them too (docs/semantics.md, Eviction).

use crate::common;
use crate::replication_support::Cluster;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn an_eviction_is_local_to_its_region_and_its_replicas() {
    // Without the effect log: no compaction blurs the memory accounting.
    let mut cluster = Cluster::start_with(&["A", "B"], &[1, 0], None, |b| {
        b.arg("--appendonly").arg("no")
    });
    cluster.wait_links_up(DEADLINE).expect("links up");
    let limit = (16 * 1024 * 1024).to_string();
    assert_eq!(
        cluster
            .q((0, 0), &["CONFIG", "SET", "maxmemory", &limit])
            .text(),
        "OK"
    );
    assert_eq!(
        cluster
            .q(
                (0, 0),
                &["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]
            )
            .text(),
        "OK"
    );
    let value = "v".repeat(16 * 1024);
    let keys: i64 = 4096;
    for i in 0..keys {
        let reply = cluster.q((0, 0), &["SET", &format!("k{i}"), &value]);
        assert_eq!(reply.text(), "OK", "SET k{i}");
    }
    let dbsize = |cluster: &mut Cluster, id| cluster.q(id, &["DBSIZE"]).int().unwrap_or(-1);
    // B received every write and evicted nothing.
    common::poll_until(DEADLINE, || {
        (dbsize(&mut cluster, (1, 0)) == keys).then_some(())
    })
    .expect("region B holds every key");
    let in_a = dbsize(&mut cluster, (0, 0));
    assert!(in_a < keys, "region A evicted nothing ({in_a} keys)");
    // A's replica follows A's evictions.
    common::poll_until(DEADLINE, || {
        (dbsize(&mut cluster, (0, 1)) == in_a).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "A's replica holds {} keys, A {in_a}",
            dbsize(&mut cluster, (0, 1))
        )
    });
}
