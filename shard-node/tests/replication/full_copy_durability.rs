//! A replica's full copy is durable before the replica counts as caught up: killed right after
//! its link comes up, it restarts with everything the copy brought, never with a state whose
//! clock claims writes it does not hold (a later merge of such a state would drop those writes
//! on the primary).

use crate::common::{NodeBuilder, ShardNode};
use crate::replication_support::{poll_ok, replica_link_up as link_up, Client};
use std::time::Duration;

const KEYS: i64 = 300;

fn start_primary() -> (ShardNode, Client) {
    let primary = NodeBuilder::new().participant("A").start();
    let mut c = Client::new(primary.port(), None);
    for i in 0..KEYS {
        assert_eq!(c.q(&["SET", &format!("k{i}"), &i.to_string()]).text(), "OK");
        assert!(c.q(&["INCRBY", "counter", "1"]).int().is_some());
    }
    (primary, c)
}

#[test]
fn a_replica_killed_right_after_its_full_copy_keeps_the_copy() {
    for round in 0..3 {
        let (primary, mut cp) = start_primary();
        let mut replica = NodeBuilder::new()
            .participant("A")
            .arg("--replicaof")
            .arg(format!("127.0.0.1:{}", primary.port()))
            .start();
        let mut cr = Client::new(replica.port(), None);
        poll_ok(Duration::from_secs(20), || link_up(&mut cr))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Writes that reach the replica after the copy, logged on top of it.
        for i in 0..20 {
            assert!(cp.q(&["INCRBY", "counter", "1"]).int().is_some(), "{i}");
        }
        assert_eq!(cp.q(&["WAIT", "1", "5000"]).text(), "1");
        replica.kill9();
        replica.set_extra_args(Vec::new());
        replica.restart();
        let mut cr = Client::new(replica.port(), None);
        assert_eq!(
            cr.q(&["DBSIZE"]).int(),
            Some(KEYS + 1),
            "round {round}: the restarted replica lost keys of its full copy"
        );
        assert_eq!(
            cr.q(&["GET", "counter"]).text(),
            (KEYS + 20).to_string(),
            "round {round}: the counter after the restart"
        );
    }
}
