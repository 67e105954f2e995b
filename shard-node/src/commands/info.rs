//! INFO: the sections Server, Clients, Memory, Persistence, Stats, Replication, Commandstats,
//! Errorstats, CRDT and Keyspace, built by [`info_text`].
//!
//! Contract: section and field names match Redis 7.0's where Redis has them; the CRDT section
//! and the `shard_node_version` field are shard-node's own.

use super::*;

/// The Redis version shard-node reports to clients (the command set it follows).
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("info", -1, "loading stale", 0, 0, 0, "server", "Returns information and statistics about the server.", info),
    ]
}

/// Formats `bytes` the way Redis's INFO prints memory (`1.50M`).
fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{}B", n as u64)
    } else if n < 1024.0 * 1024.0 {
        format!("{:.2}K", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", n / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", n / 1024.0 / 1024.0 / 1024.0)
    }
}

/// The text of INFO for the requested sections.
pub fn info_text(db: &Db, sections: &[String], now_ms: u64) -> String {
    let everything = sections.is_empty()
        || sections
            .iter()
            .any(|s| s == "all" || s == "everything" || s == "default");
    let want = |name: &str| everything || sections.iter().any(|s| s == name);
    let mut out = String::new();
    let mut section = |title: &str, body: String| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str("# ");
        out.push_str(title);
        out.push_str("\r\n");
        out.push_str(&body);
    };
    let uptime = now_ms.saturating_sub(db.started_ms) / 1000;
    if want("server") {
        section(
            "Server",
            format!(
                "redis_version:{REDIS_COMPAT_VERSION}\r\nshard_node_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:shard-node\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                db.run_id,
                db.tcp_port,
                uptime,
                uptime / 86400
            ),
        );
    }
    if want("clients") {
        let blocked = db.blocked.len();
        section(
            "Clients",
            format!(
                "connected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{blocked}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n",
                db.clients.len(),
                db.settings.maxclients,
                db.channels.len(),
                db.patterns.len()
            ),
        );
    }
    if want("memory") {
        section(
            "Memory",
            format!(
                "used_memory:{}\r\nused_memory_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:noeviction\r\n",
                db.used_memory,
                human_bytes(db.used_memory),
                db.settings.maxmemory,
                human_bytes(db.settings.maxmemory)
            ),
        );
    }
    if want("persistence") {
        section(
            "Persistence",
            format!(
                "loading:0\r\naof_enabled:{}\r\naof_last_write_status:{}\r\n{}{}",
                u8::from(db.settings.appendonly),
                if db.persistence_error.is_some() {
                    "err"
                } else {
                    "ok"
                },
                db.persistence_error
                    .as_ref()
                    .map(|e| format!(
                        "aadb_persistence_error:{}\r\n",
                        e.replace(['\r', '\n'], " ")
                    ))
                    .unwrap_or_default(),
                db.info_extra
                    .get("persistence")
                    .cloned()
                    .unwrap_or_default()
            ),
        );
    }
    if want("stats") {
        section(
            "Stats",
            format!(
                "total_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\ntotal_error_replies:{}\r\n",
                db.stats.total_connections,
                db.stats.total_commands,
                db.stats.rejected_connections,
                db.stats.expired_keys,
                db.stats.evicted_keys,
                db.stats.keyspace_hits,
                db.stats.keyspace_misses,
                db.channels.len(),
                db.stats.error_replies.values().sum::<u64>()
            ),
        );
    }
    if want("replication") {
        section("Replication", db.repl.info(now_ms));
    }
    if want("commandstats") {
        let mut names: Vec<&&'static str> = db.stats.commands.keys().collect();
        names.sort();
        let body: String = names
            .into_iter()
            .map(|n| {
                let (calls, usec) = db.stats.commands[n];
                format!(
                    "cmdstat_{n}:calls={calls},usec={usec},usec_per_call={:.2},rejected_calls=0,failed_calls=0\r\n",
                    usec as f64 / calls.max(1) as f64
                )
            })
            .collect();
        section("Commandstats", body);
    }
    if want("errorstats") {
        let mut names: Vec<&String> = db.stats.error_replies.keys().collect();
        names.sort();
        let body: String = names
            .into_iter()
            .map(|n| format!("errorstat_{n}:count={}\r\n", db.stats.error_replies[n]))
            .collect();
        section("Errorstats", body);
    }
    if want("crdt") {
        let clock: Vec<String> = db
            .ks
            .clock()
            .iter()
            .map(|(a, s)| format!("{a}:{s}"))
            .collect();
        section(
            "CRDT",
            format!(
                "crdt_participant:{}\r\ncrdt_shard:{}\r\ncrdt_epoch:{}\r\ncrdt_actor:{}\r\ncrdt_vector_clock:{}\r\ncrdt_effects_applied:{}\r\ncrdt_tombstones_pending:{}\r\n{}",
                db.ks.actor().participant,
                db.ks.actor().shard,
                crate::crdt::clock::generation_of(db.ks.actor().epoch),
                db.ks.actor_id(),
                clock.join(","),
                db.ks.effects_applied,
                db.ks.tombstones_pending(),
                db.repl.crdt_info(db.ks.clock(), now_ms)
            ),
        );
    }
    if want("keyspace") {
        let body = if db.ks.is_empty() {
            String::new()
        } else {
            format!(
                "db0:keys={},expires={},avg_ttl=0\r\n",
                db.ks.len(),
                db.ks.keys_with_deadline()
            )
        };
        section("Keyspace", body);
    }
    out
}

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sections: Vec<String> = args[1..].iter().map(|a| lower(a)).collect();
    let text = info_text(ctx.db, &sections, ctx.now_ms);
    ctx.out.verbatim("txt", text.as_bytes());
    Ok(())
}
