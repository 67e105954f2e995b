//! Streams on real processes across regions: automatic IDs made in every region at once are all
//! kept under distinct IDs, a reader blocked in one region is woken by an entry added in
//! another, and a consumer group lives in its region (its primary and replicas) only.

use crate::common::{self, RawConn};
use crate::replication_support::Cluster;
use std::collections::BTreeSet;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(15);

fn send(conn: &mut RawConn, args: &[&str]) {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    conn.send(&common::encode(&bytes)).expect("send");
}

#[test]
fn streams_converge_across_regions_and_groups_stay_in_their_region() {
    let mut cluster = Cluster::start(&["A", "B", "C"], &[1, 0, 0]);
    cluster.wait_links_up(DEADLINE).expect("links up");

    // A reader blocked in C for entries added anywhere.
    let mut reader = RawConn::connect(cluster.port((2, 0)));
    reader.set_read_timeout(DEADLINE);
    send(&mut reader, &["XREAD", "BLOCK", "0", "STREAMS", "log", "$"]);
    common::poll_until(DEADLINE, || {
        let info = cluster.q((2, 0), &["INFO", "clients"]).text();
        (common::info_field(info.as_bytes(), "blocked_clients").as_deref() == Some("1"))
            .then_some(())
    })
    .expect("the reader in C blocks");

    // Every region adds with automatic IDs, at the same time.
    let mut ids = BTreeSet::new();
    for round in 0..20 {
        for region in 0..3 {
            let id = cluster
                .q(
                    (region, 0),
                    &["XADD", "log", "*", "from", &format!("{region}-{round}")],
                )
                .text();
            assert!(ids.insert(id.clone()), "ID {id} made twice");
        }
    }
    let woken = String::from_utf8_lossy(&reader.read_frame().expect("XREAD reply")).into_owned();
    assert!(woken.contains("from"), "{woken}");

    cluster.converge(DEADLINE).expect("converge");
    for id in cluster.ids() {
        assert_eq!(cluster.q(id, &["XLEN", "log"]).int(), Some(60), "{id:?}");
    }

    // A group made in A, with a delivery, reaches A's replica and no other region.
    assert_eq!(
        cluster
            .q((0, 0), &["XGROUP", "CREATE", "log", "g", "0"])
            .text(),
        "OK"
    );
    let delivered = cluster
        .q(
            (0, 0),
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "worker",
                "COUNT",
                "5",
                "STREAMS",
                "log",
                ">",
            ],
        )
        .text();
    assert!(delivered.contains("from"), "{delivered}");
    cluster.converge(DEADLINE).expect("converge");
    common::poll_until(DEADLINE, || {
        let pending = cluster.q((0, 1), &["XPENDING", "log", "g"]);
        (pending.items().first().and_then(|n| n.int()) == Some(5)).then_some(())
    })
    .expect("A's replica holds the group's 5 pending entries");
    for region in 1..3 {
        let reply = cluster.q((region, 0), &["XPENDING", "log", "g"]).text();
        assert!(reply.starts_with("-NOGROUP"), "region {region}: {reply}");
    }
}
