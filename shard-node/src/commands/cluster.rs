//! The Redis Cluster API and the topology admin command: CLUSTER (KEYSLOT, MYID, INFO, SLOTS,
//! SHARDS, NODES, COUNTKEYSINSLOT, GETKEYSINSLOT), READONLY, READWRITE, ASKING, AA.TOPOLOGY.
//!
//! Contract:
//! - A node holding a topology (`--shard-map`, or `AA.TOPOLOGY SET`) answers the cluster
//!   commands from it, as Redis Cluster would: every shard of the region is a master with its
//!   slot ranges, its replicas are slaves, node ids come from addresses
//!   ([`crate::cluster::node_id`]). A node without one answers like a Redis server with
//!   cluster support disabled.
//! - `AA.TOPOLOGY SET <version> <shard-map>` replaces the topology when the version is newer
//!   and the map parses and names this node's shard; otherwise it answers one error sentence
//!   and keeps the old one. `AA.TOPOLOGY GET` answers `[version, shard map, shard]`, or an
//!   empty array without a topology. `AA.TOPOLOGY SHARDWIDE` lets this connection's commands
//!   span the slots of this node's shard; `AA.TOPOLOGY SUBSCRIBEONLY` restricts it to the
//!   commands of a subscribed connection (a proxy's subscribers), in RESP3 too.
//! - Key routing ([`route`]) runs in the dispatcher before a command runs or is queued in a
//!   transaction. Under a topology: keys of one command in different slots get `CROSSSLOT`;
//!   a slot of another shard gets `-MOVED <slot> <host>:<port>` naming that shard's primary;
//!   a slot no shard owns gets `CLUSTERDOWN`; on a replica, a write, or a read from a
//!   connection that did not send `READONLY`, gets `MOVED` to its own shard's primary. Without
//!   a topology every key is served here. A connection that sent `AA.TOPOLOGY SHARDWIDE` (a
//!   proxy's) may send commands whose keys are in several slots, all of this node's shard.

use super::*;
use crate::cluster::{key_slot, node_id, ShardEntry, ShardMap, Topology, SLOTS};

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("cluster", -2, "", 0, 0, 0, "cluster", "A container for Redis Cluster commands.", cluster),
        cmd("readonly", 1, "fast loading stale", 0, 0, 0, "cluster", "Enables read-only queries for a connection to a Redis Cluster replica node.", readonly),
        cmd("readwrite", 1, "fast loading stale", 0, 0, 0, "cluster", "Enables read-write queries for a connection to a Redis Cluster replica node.", readwrite),
        cmd("asking", 1, "fast", 0, 0, 0, "cluster", "Signals that a cluster client is following an -ASK redirect.", asking),
        cmd("aa.topology", -2, "admin stale loading", 0, 0, 0, "server", "Sets or shows the shard map of this node's region.", aa_topology),
    ]
}

const ERR_DISABLED: &str = "ERR This instance has cluster support disabled";

/// The topology, or the error Redis gives without cluster support.
fn topology<'a>(ctx: &'a Ctx<'_>) -> Result<&'a Topology, CmdError> {
    ctx.db.topology.as_ref().ok_or(Cow::Borrowed(ERR_DISABLED))
}

/// This node's own address in the topology: the announced one (`AA.TOPOLOGY ANNOUNCE`) when
/// the shard lists it; otherwise the shard's primary when it is a primary, else the replica
/// entry with its port (or the first replica).
fn my_address<'a>(ctx: &Ctx<'_>, t: &'a Topology) -> &'a str {
    let mine = t.mine();
    if let Some(me) = mine
        .nodes()
        .find(|addr| ctx.db.announced.as_deref() == Some(*addr))
    {
        return me;
    }
    if ctx.db.repl.is_primary() {
        return &mine.primary;
    }
    let port = format!(":{}", ctx.db.tcp_port);
    mine.replicas
        .iter()
        .find(|r| r.ends_with(&port))
        .or(mine.replicas.first())
        .map(String::as_str)
        .unwrap_or(&mine.primary)
}

fn split_address(addr: &str) -> (&str, i64) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(0)),
        None => (addr, 0),
    }
}

fn slot_arg(arg: &[u8]) -> Result<u16, CmdError> {
    match crate::resp::parse_i64_strict(arg) {
        Some(n) if (0..i64::from(SLOTS)).contains(&n) => Ok(n as u16),
        _ => Err(Cow::Borrowed("ERR Invalid or out of range slot")),
    }
}

/// Visible keys of this node in `slot`, at most `limit`.
fn keys_in_slot(ctx: &Ctx<'_>, slot: u16, limit: usize) -> Vec<Bytes> {
    ctx.db
        .ks
        .entries()
        .filter(|(k, _)| key_slot(k) == slot)
        .filter(|(k, _)| ctx.db.ks.get(k, ctx.now_ms).is_some())
        .take(limit)
        .map(|(k, _)| Bytes::copy_from_slice(k))
        .collect()
}

fn cluster(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    let wrong_args = || {
        Cow::Owned(format!(
            "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLUSTER HELP."
        ))
    };
    match (sub.as_str(), args.len()) {
        ("help", 2) => {
            let lines = [
                "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "KEYSLOT <key>",
                "    Return the hash slot for <key>.",
                "MYID",
                "    Return the node id.",
                "INFO",
                "    Return information about the cluster.",
                "SLOTS",
                "    Return information about slots range mappings.",
                "SHARDS",
                "    Return information about slot range mappings and the nodes of each shard.",
                "NODES",
                "    Return cluster configuration seen by node.",
                "COUNTKEYSINSLOT <slot>",
                "    Return the number of keys in <slot>.",
                "GETKEYSINSLOT <slot> <count>",
                "    Return key names stored by current node in a slot.",
                "HELP",
                "    Print this help.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l);
            }
            Ok(())
        }
        ("keyslot", 3) => {
            topology(ctx)?;
            ctx.out.int(i64::from(key_slot(&args[2])));
            Ok(())
        }
        ("myid", 2) => {
            let t = topology(ctx)?;
            let id = node_id(my_address(ctx, t));
            ctx.out.bulk(id.as_bytes());
            Ok(())
        }
        ("info", 2) => {
            let text = cluster_info(topology(ctx)?);
            ctx.out.verbatim("txt", text.as_bytes());
            Ok(())
        }
        ("nodes", 2) => {
            let t = topology(ctx)?;
            let text = cluster_nodes(t, my_address(ctx, t));
            ctx.out.verbatim("txt", text.as_bytes());
            Ok(())
        }
        ("slots", 2) => {
            let t = topology(ctx)?.clone();
            cluster_slots(ctx, &t);
            Ok(())
        }
        ("shards", 2) => {
            let t = topology(ctx)?.clone();
            cluster_shards(ctx, &t);
            Ok(())
        }
        ("countkeysinslot", 3) => {
            topology(ctx)?;
            let slot = slot_arg(&args[2])?;
            let n = keys_in_slot(ctx, slot, usize::MAX).len();
            ctx.out.int(n as i64);
            Ok(())
        }
        ("getkeysinslot", 4) => {
            topology(ctx)?;
            let slot = slot_arg(&args[2])?;
            let count = match crate::resp::parse_i64_strict(&args[3]) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(Cow::Borrowed("ERR Invalid number of keys")),
            };
            let keys = keys_in_slot(ctx, slot, count);
            ctx.out.array(keys.len());
            for k in keys {
                ctx.out.bulk(&k);
            }
            Ok(())
        }
        _ => Err(wrong_args()),
    }
}

fn cluster_info(t: &Topology) -> String {
    let assigned = t.assigned_slots();
    let nodes: usize = t.map.shards.iter().map(|s| s.nodes().count()).sum();
    let serving = t.map.shards.iter().filter(|s| !s.ranges.is_empty()).count();
    let state = if assigned == usize::from(SLOTS) {
        "ok"
    } else {
        "fail"
    };
    format!(
        "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{nodes}\r\ncluster_size:{serving}\r\ncluster_current_epoch:{v}\r\ncluster_my_epoch:{v}\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
        v = t.version
    )
}

fn ranges_text(shard: &ShardEntry) -> Vec<String> {
    shard.ranges.iter().map(ToString::to_string).collect()
}

fn cluster_nodes(t: &Topology, me: &str) -> String {
    let mut out = String::new();
    for (i, shard) in t.map.shards.iter().enumerate() {
        let primary_id = node_id(&shard.primary);
        for (k, addr) in shard.nodes().enumerate() {
            let (host, port) = split_address(addr);
            let role = if k == 0 { "master" } else { "slave" };
            let flags = if addr == me {
                format!("myself,{role}")
            } else {
                role.to_string()
            };
            let master = if k == 0 { "-" } else { primary_id.as_str() };
            out.push_str(&format!(
                "{} {host}:{port}@{} {flags} {master} 0 0 {} connected",
                node_id(addr),
                port + 10000,
                i + 1
            ));
            if k == 0 {
                for r in ranges_text(shard) {
                    out.push(' ');
                    out.push_str(&r);
                }
            }
            out.push('\n');
        }
    }
    out
}

fn node_triple(ctx: &mut Ctx<'_>, addr: &str) {
    let (host, port) = split_address(addr);
    ctx.out.array(3);
    ctx.out.bulk(host.as_bytes());
    ctx.out.int(port);
    ctx.out.bulk(node_id(addr).as_bytes());
}

fn cluster_slots(ctx: &mut Ctx<'_>, t: &Topology) {
    let entries: Vec<(&ShardEntry, u16, u16)> = t
        .map
        .shards
        .iter()
        .flat_map(|s| s.ranges.iter().map(move |r| (s, r.start, r.end)))
        .collect();
    ctx.out.array(entries.len());
    for (shard, start, end) in entries {
        ctx.out.array(2 + shard.nodes().count());
        ctx.out.int(i64::from(start));
        ctx.out.int(i64::from(end));
        for addr in shard.nodes() {
            node_triple(ctx, addr);
        }
    }
}

fn cluster_shards(ctx: &mut Ctx<'_>, t: &Topology) {
    let offset = ctx.db.repl.backlog.next_offset() as i64;
    ctx.out.array(t.map.shards.len());
    for shard in &t.map.shards {
        ctx.out.map(2);
        ctx.out.bulk(b"slots");
        ctx.out.array(shard.ranges.len() * 2);
        for r in &shard.ranges {
            ctx.out.int(i64::from(r.start));
            ctx.out.int(i64::from(r.end));
        }
        ctx.out.bulk(b"nodes");
        ctx.out.array(shard.nodes().count());
        for (k, addr) in shard.nodes().enumerate() {
            let (host, port) = split_address(addr);
            ctx.out.map(7);
            ctx.out.bulk(b"id");
            ctx.out.bulk(node_id(addr).as_bytes());
            ctx.out.bulk(b"port");
            ctx.out.int(port);
            ctx.out.bulk(b"ip");
            ctx.out.bulk(host.as_bytes());
            ctx.out.bulk(b"endpoint");
            ctx.out.bulk(host.as_bytes());
            ctx.out.bulk(b"role");
            ctx.out.bulk(if k == 0 {
                &b"master"[..]
            } else {
                &b"replica"[..]
            });
            ctx.out.bulk(b"replication-offset");
            ctx.out.int(offset);
            ctx.out.bulk(b"health");
            ctx.out.bulk(b"online");
        }
    }
}

fn readonly(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    topology(ctx)?;
    ctx.client.readonly = true;
    ctx.out.simple("OK");
    Ok(())
}

fn readwrite(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    topology(ctx)?;
    ctx.client.readonly = false;
    ctx.out.simple("OK");
    Ok(())
}

fn asking(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    topology(ctx)?;
    ctx.out.simple("OK");
    Ok(())
}

/// Where the keys of `args` are served (see the module contract): `Ok` to run here, or the
/// redirection or error to answer instead.
pub fn route(db: &Db, client: &ClientState, command: &Command, args: &[Bytes]) -> CmdResult {
    let Some(t) = &db.topology else {
        return Ok(());
    };
    let mut slots = command
        .keys_in(args)
        .into_iter()
        .map(|i| key_slot(&args[i]));
    let Some(slot) = slots.next() else {
        return Ok(());
    };
    let mut others = slots.filter(|other| *other != slot).peekable();
    if others.peek().is_some() {
        let mine = |s: u16| t.place(s) == crate::cluster::Placement::Here;
        if !(client.shard_wide && mine(slot) && others.all(mine)) {
            return Err(Cow::Borrowed(
                "CROSSSLOT Keys in request don't hash to the same slot",
            ));
        }
    }
    match t.place(slot) {
        crate::cluster::Placement::Here => {
            if !db.repl.is_primary() && (command.flags.write || !client.readonly) {
                return Err(Cow::Owned(format!("MOVED {slot} {}", t.mine().primary)));
            }
            Ok(())
        }
        crate::cluster::Placement::Elsewhere(addr) => {
            Err(Cow::Owned(format!("MOVED {slot} {addr}")))
        }
        crate::cluster::Placement::Unserved => Err(Cow::Owned(format!(
            "CLUSTERDOWN Hash slot {slot} not served"
        ))),
    }
}

/// Installs `map` at `version` for shard `shard` (the `--shard-map` and `AA.TOPOLOGY SET`
/// path): refused, with the reason, when it does not parse, does not name the shard, or is
/// not newer than the topology in force.
pub fn install_topology(db: &mut Db, version: u64, map: &str, shard: u32) -> Result<(), String> {
    if let Some(current) = &db.topology {
        current.accepts(version).map_err(|e| e.to_string())?;
    }
    let map = ShardMap::parse(map).map_err(|e| e.to_string())?;
    let t = Topology::new(version, map, shard).map_err(|e| e.to_string())?;
    db.topology = Some(t);
    Ok(())
}

fn aa_topology(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("set", 4) => {
            let version = match crate::resp::parse_i64_strict(&args[2]) {
                Some(v) if v > 0 => v as u64,
                _ => {
                    return Err(Cow::Borrowed(
                        "ERR topology version must be a positive integer",
                    ))
                }
            };
            let map = std::str::from_utf8(&args[3])
                .map_err(|_| Cow::Borrowed("ERR the shard map is not UTF-8 text"))?;
            let shard = ctx.db.ks.actor().shard;
            install_topology(ctx.db, version, map, shard)
                .map_err(|e| Cow::Owned(format!("ERR topology refused: {e}")))?;
            tracing::info!(version, map, "topology installed");
            ctx.out.simple("OK");
            Ok(())
        }
        ("announce", 3) => {
            let addr = std::str::from_utf8(&args[2])
                .map_err(|_| Cow::Borrowed("ERR the announced address is not UTF-8 text"))?;
            crate::commands::replication::parse_peer_addr(addr)
                .map_err(|e| Cow::Owned(format!("ERR announce refused: {e}")))?;
            ctx.db.announced = Some(addr.to_string());
            ctx.out.simple("OK");
            Ok(())
        }
        ("shardwide", 2) => {
            ctx.client.shard_wide = true;
            ctx.out.simple("OK");
            Ok(())
        }
        ("subscribeonly", 2) => {
            ctx.client.subscribe_only = true;
            ctx.out.simple("OK");
            Ok(())
        }
        ("get", 2) => {
            match &ctx.db.topology {
                None => ctx.out.array(0),
                Some(t) => {
                    let (version, text, me) = (t.version, t.map.to_text(), t.me);
                    ctx.out.array(3);
                    ctx.out.int(version as i64);
                    ctx.out.bulk(text.as_bytes());
                    ctx.out.int(me as i64);
                }
            }
            Ok(())
        }
        _ => Err(Cow::Owned(format!(
            "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try AA.TOPOLOGY SET <version> <shard-map>, GET, ANNOUNCE <host:port>, SHARDWIDE or SUBSCRIBEONLY."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::TestDb;

    #[test]
    fn without_a_topology_the_cluster_api_is_disabled_like_redis() {
        let mut db = TestDb::new();
        assert_eq!(
            db.text(&["CLUSTER", "SLOTS"]),
            format!("-{ERR_DISABLED}\r\n")
        );
        assert_eq!(db.text(&["READONLY"]), format!("-{ERR_DISABLED}\r\n"));
        assert_eq!(db.text(&["AA.TOPOLOGY", "GET"]), "*0\r\n");
    }

    #[test]
    fn a_node_finds_itself_by_its_announced_address_when_ports_repeat() {
        let mut db = TestDb::new();
        let map = "0-16383=10.0.0.1:6379|10.0.0.2:6379|10.0.0.3:6379";
        assert_eq!(db.text(&["AA.TOPOLOGY", "SET", "1", map]), "+OK\r\n");
        assert!(db
            .text(&["AA.TOPOLOGY", "ANNOUNCE", "nohost"])
            .starts_with("-ERR announce refused"));
        assert_eq!(
            db.text(&["AA.TOPOLOGY", "ANNOUNCE", "10.0.0.3:6379"]),
            "+OK\r\n"
        );
        let nodes = db.text(&["CLUSTER", "NODES"]);
        let mine: Vec<&str> = nodes.lines().filter(|l| l.contains("myself")).collect();
        assert_eq!(mine.len(), 1, "{nodes}");
        assert!(
            mine[0].contains("10.0.0.3:6379@16379 myself,slave"),
            "{nodes}"
        );
        let id = node_id("10.0.0.3:6379");
        assert_eq!(
            db.text(&["CLUSTER", "MYID"]),
            format!("${}\r\n{id}\r\n", id.len())
        );
    }

    #[test]
    fn topology_pushes_are_checked_and_stale_ones_refused() {
        let mut db = TestDb::new();
        let map = "0-8191=127.0.0.1:7000,8192-16383=127.0.0.1:7001";
        assert_eq!(db.text(&["AA.TOPOLOGY", "SET", "2", map]), "+OK\r\n");
        assert!(db
            .text(&["AA.TOPOLOGY", "SET", "2", map])
            .starts_with("-ERR topology refused: topology version 2 is not newer"));
        assert!(db
            .text(&["AA.TOPOLOGY", "SET", "3", "0-8191=nohost"])
            .contains("\"nohost\" is not HOST:PORT"));
        assert_eq!(
            db.text(&["AA.TOPOLOGY", "GET"]),
            format!("*3\r\n:2\r\n${}\r\n{map}\r\n:0\r\n", map.len())
        );
        assert_eq!(db.text(&["CLUSTER", "KEYSLOT", "foo"]), ":12182\r\n");
        let nodes = db.text(&["CLUSTER", "NODES"]);
        assert!(
            nodes.contains("127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191"),
            "{nodes}"
        );
        assert!(
            nodes.contains("127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383"),
            "{nodes}"
        );
        assert!(db.text(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
        assert!(db
            .text(&["CLUSTER", "COUNTKEYSINSLOT", "16384"])
            .starts_with("-ERR Invalid or out of range slot"));
    }
}
