//! Eviction under `maxmemory` on a real shard-node: with an `allkeys-*` policy writes keep
//! succeeding while keys are evicted; `volatile-ttl` evicts only keys with a deadline, nearest
//! first, and refuses writes with `OOM` once none is left; `noeviction` is tested against Redis
//! in `bad_input.rs`. The nodes run without the effect log, so no compaction (during which the
//! server keeps the memory figure it sampled before) blurs the accounting.

use crate::common::{info_field, show, NodeBuilder, RawConn};

const MAXMEMORY: u64 = 32 * 1024 * 1024;
const VALUE: usize = 16 * 1024;

fn int(conn: &mut RawConn, args: &[&str]) -> i64 {
    let r = conn.cmd_str(args);
    String::from_utf8_lossy(&r)
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{args:?}: {}", show(&r)))
}

fn info(conn: &mut RawConn, field: &str) -> u64 {
    let text = conn.cmd_str(&["INFO"]);
    info_field(&text, field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO {field}"))
}

#[test]
fn allkeys_policies_evict_instead_of_refusing_writes() {
    let node = NodeBuilder::new()
        .maxmemory(MAXMEMORY)
        .arg("--appendonly")
        .arg("no")
        .start();
    let mut c = RawConn::connect(node.port());
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        b"+OK\r\n"
    );
    let value = "v".repeat(VALUE);
    let keys = 4 * (MAXMEMORY as usize) / VALUE;
    for i in 0..keys {
        let reply = c.cmd_str(&["SET", &format!("key:{i}"), &value]);
        assert_eq!(reply, b"+OK\r\n", "SET key:{i}: {}", show(&reply));
    }
    let left = int(&mut c, &["DBSIZE"]) as usize;
    let evicted = info(&mut c, "evicted_keys") as usize;
    assert!(
        evicted > 0 && left < keys,
        "{left} keys left of {keys}, {evicted} evicted"
    );
    assert_eq!(left + evicted, keys, "every key is either there or evicted");
    let used = info(&mut c, "used_memory");
    assert!(
        used < 2 * MAXMEMORY,
        "used_memory {used} far above maxmemory {MAXMEMORY}"
    );
}

#[test]
fn volatile_ttl_evicts_keys_with_a_deadline_nearest_first_then_refuses() {
    let node = NodeBuilder::new()
        .maxmemory(MAXMEMORY)
        .arg("--appendonly")
        .arg("no")
        .start();
    let mut c = RawConn::connect(node.port());
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"]),
        b"+OK\r\n"
    );
    let value = "v".repeat(VALUE);
    // A quarter of the budget in keys without a deadline, which must never be evicted.
    let keep = (MAXMEMORY as usize) / 4 / VALUE;
    for i in 0..keep {
        assert_eq!(
            c.cmd_str(&["SET", &format!("keep:{i}"), &value]),
            b"+OK\r\n"
        );
    }
    // Keys with deadlines, each later one expiring later.
    let written = 4 * (MAXMEMORY as usize) / VALUE;
    for i in 0..written {
        let ttl = (1_000 + i).to_string();
        let reply = c.cmd_str(&["SET", &format!("ttl:{i}"), &value, "EX", &ttl]);
        assert_eq!(reply, b"+OK\r\n", "SET ttl:{i}: {}", show(&reply));
    }
    assert!(info(&mut c, "evicted_keys") > 0, "nothing evicted");
    for i in 0..keep {
        assert_eq!(
            int(&mut c, &["EXISTS", &format!("keep:{i}")]),
            1,
            "keep:{i} (no deadline) was evicted"
        );
    }
    // Nearest deadlines first: what is left is the keys written last.
    let present: Vec<bool> = (0..written)
        .map(|i| int(&mut c, &["EXISTS", &format!("ttl:{i}")]) == 1)
        .collect();
    let first_left = present
        .iter()
        .position(|p| *p)
        .expect("some ttl keys are left");
    assert!(first_left > 0, "no key with a deadline was evicted");
    assert!(
        present[first_left..].iter().all(|p| *p),
        "a key with a later deadline was evicted before one with a nearer deadline"
    );
    // Without keys that have a deadline, writes over maxmemory are refused.
    for i in first_left..written {
        c.cmd_str(&["PERSIST", &format!("ttl:{i}")]);
    }
    let mut refused = None;
    for i in 0..written {
        let reply = c.cmd_str(&["SET", &format!("more:{i}"), &value]);
        if reply != b"+OK\r\n" {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("writes past maxmemory with nothing to evict succeeded");
    assert!(refused.starts_with(b"-OOM"), "{}", show(&refused));
}
