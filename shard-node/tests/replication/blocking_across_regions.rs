//! Blocking pops across regions, on real processes: a client blocked in one region is woken by
//! a push made in another region, and when clients of several regions wait on one list, every
//! element pushed is delivered at least once and the regions end with the same state (a pop is
//! an observed-remove, so one element may be delivered in two regions: docs/semantics.md,
//! Blocking pops).

use crate::common::{self, RawConn};
use crate::replication_support::{Cluster, Reply};
use std::collections::BTreeMap;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(15);

fn send(conn: &mut RawConn, args: &[&str]) {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    conn.send(&common::encode(&bytes)).expect("send");
}

fn blocked_clients(cluster: &mut Cluster, region: usize) -> i64 {
    let info = cluster.q((region, 0), &["INFO", "clients"]).text();
    common::info_field(info.as_bytes(), "blocked_clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn wait_blocked(cluster: &mut Cluster, region: usize, n: i64) {
    common::poll_until(DEADLINE, || {
        (blocked_clients(cluster, region) == n).then_some(())
    })
    .unwrap_or_else(|| panic!("region {region}: blocked_clients never became {n}"));
}

#[test]
fn a_client_blocked_in_one_region_is_woken_by_a_push_in_another() {
    let mut cluster = Cluster::start(&["A", "B", "C"], &[0, 1, 0]);
    cluster.wait_links_up(DEADLINE).expect("links up");
    let mut waiter = RawConn::connect(cluster.port((1, 0)));
    waiter.set_read_timeout(DEADLINE);
    send(&mut waiter, &["BLPOP", "jobs", "0"]);
    wait_blocked(&mut cluster, 1, 1);
    cluster.q((0, 0), &["RPUSH", "jobs", "from-A"]);
    let reply = Reply::parse(&waiter.read_frame().expect("BLPOP reply")).unwrap();
    assert_eq!(reply.text(), "[jobs,from-A]");
    // The pop made in B reaches every region: the list is gone everywhere.
    cluster.converge(DEADLINE).expect("converge");
    for id in cluster.ids() {
        assert_eq!(cluster.q(id, &["EXISTS", "jobs"]).int(), Some(0), "{id:?}");
    }
}

#[test]
fn waiters_in_every_region_get_every_element_at_least_once_and_the_regions_converge() {
    let mut cluster = Cluster::start(&["A", "B", "C"], &[0, 0, 0]);
    cluster.wait_links_up(DEADLINE).expect("links up");
    const JOBS: usize = 60;
    // Two workers per region loop on BLPOP until they get the end marker.
    let mut workers = Vec::new();
    for region in 0..3 {
        for _ in 0..2 {
            let port = cluster.port((region, 0));
            workers.push(std::thread::spawn(move || {
                let mut conn = RawConn::connect(port);
                conn.set_read_timeout(DEADLINE);
                let mut got = Vec::new();
                loop {
                    send(&mut conn, &["BLPOP", "work", "2"]);
                    let frame = conn.read_frame().expect("BLPOP reply");
                    let reply = Reply::parse(&frame).unwrap();
                    let items = reply.items();
                    if items.is_empty() {
                        // Timed out: every job has been taken.
                        return got;
                    }
                    got.push(items[1].text());
                }
            }));
        }
    }
    for region in 0..3 {
        wait_blocked(&mut cluster, region, 2);
    }
    // Producers push from every region.
    for i in 0..JOBS {
        let region = i % 3;
        cluster.q((region, 0), &["RPUSH", "work", &format!("job{i}")]);
    }
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers {
        for job in w.join().expect("worker") {
            *delivered.entry(job).or_default() += 1;
        }
    }
    for i in 0..JOBS {
        let job = format!("job{i}");
        assert!(
            delivered.contains_key(&job),
            "{job} was never delivered: {delivered:?}"
        );
    }
    assert_eq!(
        delivered.len(),
        JOBS,
        "unknown elements delivered: {delivered:?}"
    );
    cluster.converge(DEADLINE).expect("converge");
    for id in cluster.ids() {
        assert_eq!(cluster.q(id, &["LLEN", "work"]).int(), Some(0), "{id:?}");
    }
}
