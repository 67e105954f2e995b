//! Split brain inside a region, with real processes on loopback: nothing either side
//! acknowledged is lost.
//!
//! Two nodes of one participant; each reaches the other through a fault proxy. Every round:
//! the replica is cut off from its primary and promoted, so both are primaries and both take
//! writes (counters, hash counters, set members and keys of their own). The old primary is
//! sometimes killed and restarted from its data (then it hands over its whole state, since its
//! backlog is new), and sometimes stays up (then it hands over the missing effects). It is then
//! made a replica of the new primary. Both must end identical, holding every acknowledged write
//! of both sides: counters count both, sets hold the union. Roles swap every round.
//!
//! The seed is printed; `SPLIT_SEED=<seed>` replays a run.

use crate::common::{NodeBuilder, ShardNode, XorShift};
use crate::replication_support::{loopback, poll_ok, replica_link_up as link_up, Client, Reply};
use aadb_faultproxy::BlockingFaultProxy;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const ROUNDS: usize = 8;
const LINK_UP: Duration = Duration::from_secs(20);

/// What every acknowledged write adds up to.
#[derive(Default)]
struct Model {
    counter: i64,
    hash: BTreeMap<String, i64>,
    members: BTreeSet<String>,
    keys: BTreeMap<String, String>,
}

fn seed() -> u64 {
    match std::env::var("SPLIT_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("SPLIT_SEED={s:?} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// Random writes on one side; the acknowledged ones go into the model.
fn write_some(c: &mut Client, rng: &mut XorShift, model: &mut Model, side: &str, round: usize) {
    for i in 0..(20 + rng.below(40)) {
        let reply = match rng.below(5) {
            0 => {
                let by = 1 + rng.below(9) as i64;
                let r = c.q(&["INCRBY", "counter", &by.to_string()]);
                if r.int().is_some() {
                    model.counter += by;
                }
                r
            }
            1 => {
                let field = format!("f{}", rng.below(4));
                let by = 1 + rng.below(5) as i64;
                let r = c.q(&["HINCRBY", "hash", &field, &by.to_string()]);
                if r.int().is_some() {
                    *model.hash.entry(field).or_default() += by;
                }
                r
            }
            2 => {
                let member = format!("m{}", rng.below(50));
                let r = c.q(&["SADD", "members", &member]);
                if r.int().is_some() {
                    model.members.insert(member);
                }
                r
            }
            _ => {
                let key = format!("k:{round}:{side}:{i}");
                let value = rng.below(1_000_000).to_string();
                let r = c.q(&["SET", &key, &value]);
                if r.text() == "OK" {
                    model.keys.insert(key, value);
                }
                r
            }
        };
        assert!(
            !matches!(reply, Reply::Error(_)),
            "round {round}, {side}: a write was refused: {}",
            reply.text()
        );
    }
}

fn digest(c: &mut Client) -> Result<String, String> {
    c.call(&["AA.DIGEST"])?
        .string()
        .ok_or_else(|| "no digest".to_owned())
}

/// Every acknowledged write is on the node behind `c`.
fn check(c: &mut Client, model: &Model, who: &str, seed: u64) {
    let counter = c.q(&["GET", "counter"]).int().unwrap_or(0);
    assert_eq!(
        counter, model.counter,
        "SPLIT_SEED={seed}: {who}: the counter must count the increments of both sides"
    );
    for (field, want) in &model.hash {
        let got = c.q(&["HGET", "hash", field]).int().unwrap_or(0);
        assert_eq!(got, *want, "SPLIT_SEED={seed}: {who}: hash field {field}");
    }
    let members: BTreeSet<String> = c
        .q(&["SMEMBERS", "members"])
        .items()
        .iter()
        .map(Reply::text)
        .collect();
    assert_eq!(
        members, model.members,
        "SPLIT_SEED={seed}: {who}: the set must be the union of both sides' members"
    );
    let lost: Vec<&String> = model
        .keys
        .iter()
        .filter(|(k, v)| c.q(&["GET", k]).text() != **v)
        .map(|(k, _)| k)
        .collect();
    assert!(
        lost.is_empty(),
        "SPLIT_SEED={seed}: {who}: {} acknowledged keys lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn both_sides_of_a_split_brain_keep_every_acknowledged_write() {
    let seed = seed();
    eprintln!("SPLIT_SEED={seed} (set it to replay this run)");
    let mut rng = XorShift::new(seed);
    let nowhere = loopback(crate::common::free_port());
    // to[i]: the proxy in front of node i.
    let to = [
        BlockingFaultProxy::start(nowhere).expect("fault proxy"),
        BlockingFaultProxy::start(nowhere).expect("fault proxy"),
    ];
    let mut nodes: Vec<ShardNode> = vec![NodeBuilder::new().participant("A").start()];
    to[0].set_target(loopback(nodes[0].port()));
    nodes.push(
        NodeBuilder::new()
            .participant("A")
            .arg("--replicaof")
            .arg(to[0].addr().to_string())
            .start(),
    );
    to[1].set_target(loopback(nodes[1].port()));
    let mut model = Model::default();
    let (mut primary, mut replica) = (0usize, 1usize);
    let mut merged_whole_states = 0;
    for round in 0..ROUNDS {
        let mut cp = Client::new(nodes[primary].port(), None);
        let mut cr = Client::new(nodes[replica].port(), None);
        poll_ok(LINK_UP, || link_up(&mut cr))
            .unwrap_or_else(|e| panic!("SPLIT_SEED={seed}: round {round}: {e}"));
        write_some(&mut cp, &mut rng, &mut model, "before", round);
        assert_eq!(cp.q(&["WAIT", "1", "5000"]).text(), "1");

        // The replica loses its primary and is promoted; the primary goes on writing.
        to[primary].partition();
        poll_ok(LINK_UP, || match to[primary].connections() {
            0 => Ok(()),
            n => Err(format!("{n} connections still open through the cut")),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cr.q(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
        for _ in 0..(1 + rng.below(3)) {
            write_some(&mut cp, &mut rng, &mut model, "old", round);
            write_some(&mut cr, &mut rng, &mut model, "new", round);
        }
        to[primary].heal();

        // The old primary becomes a replica of the new one, from its data after a restart
        // or as it is.
        let follow = to[replica].addr().to_string();
        if rng.below(2) == 0 {
            drop(cp);
            nodes[primary].kill9();
            nodes[primary].set_extra_args(vec!["--replicaof".into(), follow.clone()]);
            nodes[primary].restart();
            cp = Client::new(nodes[primary].port(), None);
            merged_whole_states += 1;
        } else {
            let (host, port) = follow.rsplit_once(':').expect("host:port");
            assert_eq!(cp.q(&["REPLICAOF", host, port]).text(), "OK");
        }
        poll_ok(LINK_UP, || {
            link_up(&mut cp)?;
            let (a, b) = (digest(&mut cp)?, digest(&mut cr)?);
            if a == b {
                Ok(())
            } else {
                Err(format!("digests differ: {a} vs {b}"))
            }
        })
        .unwrap_or_else(|e| panic!("SPLIT_SEED={seed}: round {round}: {e}"));
        check(&mut cr, &model, "the new primary", seed);
        check(&mut cp, &model, "the demoted primary", seed);
        assert_eq!(
            cp.q(&["SET", "probe", "x"]).text(),
            "-READONLY You can't write against a read only replica."
        );
        std::mem::swap(&mut primary, &mut replica);
    }
    let handovers: usize = nodes
        .iter()
        .map(|n| {
            n.log()
                .matches("handed over what the primary lacked")
                .count()
        })
        .sum();
    eprintln!(
        "SPLIT_SEED={seed}: {ROUNDS} rounds, {merged_whole_states} after a restart, {handovers} handovers logged; counter {}, {} members, {} keys",
        model.counter,
        model.members.len(),
        model.keys.len()
    );
    assert!(
        handovers >= ROUNDS,
        "every demoted primary had something to hand over"
    );
}
