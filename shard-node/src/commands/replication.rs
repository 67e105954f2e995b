//! Replication commands: REPLICAOF/SLAVEOF, ROLE, WAIT, REPLCONF, AA.PEER, AA.PEERS and the
//! link handshake (AA.HELLO, AA.HANDOFF, AA.SYNC, AA.PULL) used between nodes.
//!
//! Contract: these commands only change `db.repl` and queue [`ReplAction`]s; the network
//! layer starts and stops link tasks. AA.SYNC and AA.PULL turn the connection into a
//! replication stream (see `repl/serve.rs`) and write no reply themselves. AA.HANDOFF either
//! answers that nothing is needed or hands the connection to `repl/handoff.rs` for one
//! handover.

use super::*;
use crate::repl::LinkRequest;
use crate::repl::{LinkState, PeerInfo, ReplAction, Role, WaitRequest, LINK_PROTOCOL_VERSION};

pub fn commands() -> Vec<Command> {
    vec![
        cmd(
            "replicaof",
            3,
            "admin noscript stale",
            0,
            0,
            0,
            "server",
            "Makes the server a replica of another, or a primary.",
            replicaof,
        ),
        cmd(
            "slaveof",
            3,
            "admin noscript stale",
            0,
            0,
            0,
            "server",
            "Makes the server a replica of another, or a primary.",
            replicaof,
        ),
        cmd(
            "role",
            1,
            "fast noscript loading stale",
            0,
            0,
            0,
            "server",
            "Returns the replication role.",
            role,
        ),
        cmd(
            "wait",
            3,
            "noscript",
            0,
            0,
            0,
            "generic",
            "Waits for replicas to acknowledge the writes made so far.",
            wait,
        ),
        cmd(
            "replconf",
            -1,
            "admin noscript loading stale",
            0,
            0,
            0,
            "server",
            "An internal command for replication.",
            replconf,
        ),
        cmd(
            "aa.peers",
            1,
            "admin stale",
            0,
            0,
            0,
            "crdt",
            "Lists the peer links of this shard.",
            peers,
        ),
        cmd(
            "aa.peer",
            -3,
            "admin stale",
            0,
            0,
            0,
            "crdt",
            "Adds, changes or removes a peer link.",
            peer,
        ),
        cmd(
            "aa.hello",
            6,
            "admin stale",
            0,
            0,
            0,
            "crdt",
            "Starts a replication link handshake.",
            hello,
        ),
        cmd(
            "aa.handoff",
            2,
            "admin stale",
            0,
            0,
            0,
            "crdt",
            "Takes what a node about to follow this primary has and this primary lacks.",
            handoff,
        ),
        cmd(
            "aa.sync",
            3,
            "admin stale",
            0,
            0,
            0,
            "crdt",
            "Streams this node's effects to a replica.",
            sync,
        ),
        cmd(
            "aa.pull",
            2,
            "admin stale",
            0,
            0,
            0,
            "crdt",
            "Streams this node's effects to a peer.",
            pull,
        ),
    ]
}

/// Validates `host` and `port` of REPLICAOF / AA.PEER.
fn parse_port(arg: &[u8]) -> Result<u16, CmdError> {
    let port = int_arg(arg)?;
    u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(Cow::Borrowed("ERR Invalid master port"))
}

fn replicaof(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    // Told its role: a restarted node's hold on writes ends.
    ctx.db.repl.write_hold_until_ms = 0;
    if is(&args[1], "no") && is(&args[2], "one") {
        if !ctx.db.repl.is_primary() {
            promote(ctx.db);
        }
        ctx.out.simple("OK");
        return Ok(());
    }
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    let port = parse_port(&args[2])?;
    if let Role::Replica { host: h, port: p } = &ctx.db.repl.role {
        if *h == host && *p == port {
            ctx.out.simple("OK Already connected to specified master");
            return Ok(());
        }
    }
    follow(ctx.db, host, port);
    ctx.out.simple("OK");
    Ok(())
}

/// Makes this node a replica of `host:port` (the link task is started by the network layer).
pub fn follow(db: &mut Db, host: String, port: u16) {
    let generation = db.repl.generation();
    db.repl.role = Role::Replica { host, port };
    db.repl.master = Some(crate::repl::MasterLink {
        state: LinkState::Connecting,
        master_replid: None,
        master_offset: None,
        last_io_ms: 0,
        last_error: String::new(),
        generation,
    });
    // A replica keeps removed state until its primary says every participant has seen it, so
    // later effects that refer to removed list elements find them.
    db.ks.set_single_participant(false);
    db.requests.links.push(ReplAction::FollowPrimary);
    // Clients blocked in pops stop waiting: a replica serves no writes.
    db.requests.wake_blocked = true;
}

/// Turns this node into a primary with a new epoch of its shard's actor.
pub fn promote(db: &mut Db) {
    let generation = db.ks.highest_own_generation() + 1;
    let epoch = db.ks.fresh_epoch(generation);
    db.ks.set_epoch(epoch);
    db.repl.role = Role::Primary;
    db.repl.master = None;
    // The primary this node replaces may have written what this node never received, and will
    // hand it over when it is demoted: from now on increments are written as increments, so
    // that those concurrent ones add up instead of one side's result replacing the other's.
    db.ks.set_single_participant(false);
    // A new history starts here; replicas of the old primary resynchronise.
    let clock = db.ks.clock().clone();
    db.repl.backlog.reset(clock);
    db.requests.links.push(ReplAction::FollowPrimary);
    tracing::warn!(generation, epoch, "promoted to primary with a new epoch");
}

fn role(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let repl = &ctx.db.repl;
    match &repl.role {
        Role::Primary => {
            let replicas: Vec<(String, String, u64)> = repl
                .replicas
                .values()
                .map(|r| {
                    let (ip, port) = r.addr.rsplit_once(':').unwrap_or((&r.addr, "0"));
                    (ip.to_string(), port.to_string(), r.ack_offset)
                })
                .collect();
            let offset = repl.backlog.next_offset();
            ctx.out.array(3);
            ctx.out.bulk(b"master");
            ctx.out.int(offset as i64);
            ctx.out.array(replicas.len());
            for (ip, port, off) in replicas {
                ctx.out.array(3);
                ctx.out.bulk(ip.as_bytes());
                ctx.out.bulk(port.as_bytes());
                ctx.out.bulk(off.to_string().as_bytes());
            }
        }
        Role::Replica { host, port } => {
            let link = repl.master.as_ref();
            let state = match link.map(|l| &l.state) {
                Some(LinkState::Up) => "connected",
                Some(LinkState::Syncing) => "sync",
                Some(LinkState::Connecting) => "connecting",
                _ => "connect",
            };
            let offset = link
                .and_then(|l| l.master_offset)
                .map(|o| o as i64)
                .unwrap_or(-1);
            let (host, port) = (host.clone(), *port);
            ctx.out.array(5);
            ctx.out.bulk(b"slave");
            ctx.out.bulk(host.as_bytes());
            ctx.out.int(i64::from(port));
            ctx.out.bulk(state.as_bytes());
            ctx.out.int(offset);
        }
        Role::Fenced => {
            ctx.out.array(5);
            ctx.out.bulk(b"slave");
            ctx.out.bulk(b"");
            ctx.out.int(0);
            ctx.out.bulk(b"connect");
            ctx.out.int(-1);
        }
    }
    Ok(())
}

fn wait(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let wanted = int_arg(&args[1])?;
    let timeout = int_arg(&args[2])?;
    if timeout < 0 {
        return Err(Cow::Borrowed("ERR timeout is negative"));
    }
    if !ctx.db.repl.is_primary() {
        return Err(Cow::Borrowed(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    // Writes earlier in the same batch are still in the outbox (they reach the backlog when the
    // batch ends): each takes one offset, and WAIT must cover them too.
    let offset = ctx.db.repl.backlog.next_offset() + ctx.db.ks.outbox.len() as u64;
    let have = ctx.db.repl.replicas_at(offset);
    if wanted <= 0 || have >= wanted as usize || ctx.client.multi.is_some() {
        ctx.out.int(have as i64);
        return Ok(());
    }
    // The network layer completes the reply when enough replicas acknowledge or on timeout.
    ctx.then(super::AfterReply::Wait(WaitRequest {
        replicas: wanted as usize,
        timeout_ms: timeout as u64,
        offset,
    }));
    Ok(())
}

fn replconf(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    }
    for pair in args[1..].chunks(2) {
        if is(&pair[0], "listening-port") {
            ctx.client.listening_port = Some(parse_port(&pair[1])?);
        }
    }
    ctx.out.simple("OK");
    Ok(())
}

fn peers(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let mine = ctx.db.ks.clock().clone();
    let tls = ctx.db.repl.links_use_tls;
    let rows: Vec<(String, PeerInfo)> = ctx
        .db
        .repl
        .peers
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    ctx.out.array(rows.len());
    for (name, p) in rows {
        let lag = crate::repl::ReplState::lag_effects(&mine, &p.their_clock);
        let lag_ms = if lag == 0 {
            0
        } else {
            now.saturating_sub(p.caught_up_ms)
        };
        ctx.out.map(7);
        ctx.out.bulk(b"name");
        ctx.out.bulk(name.as_bytes());
        ctx.out.bulk(b"transport");
        ctx.out.bulk(if tls { b"tls" } else { b"tcp" });
        ctx.out.bulk(b"address");
        ctx.out.bulk(p.addr.as_bytes());
        ctx.out.bulk(b"state");
        ctx.out.bulk(p.state.name().as_bytes());
        ctx.out.bulk(b"lag_effects");
        ctx.out.int(lag as i64);
        ctx.out.bulk(b"lag_ms");
        ctx.out.int(lag_ms as i64);
        ctx.out.bulk(b"last_error");
        ctx.out.bulk(p.last_error.as_bytes());
    }
    Ok(())
}

/// Checks `host:port`.
pub fn parse_peer_addr(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("peer address '{text}' is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("peer address '{text}' has an invalid port"))?;
    if host.is_empty() {
        return Err(format!("peer address '{text}' has no host"));
    }
    Ok((host.to_string(), port))
}

/// Adds or changes a peer link (used by AA.PEER SET and `--peer`).
pub fn set_peer(db: &mut Db, name: String, addr: String) {
    let generation = db.repl.generation();
    let entry = db
        .repl
        .peers
        .entry(name.clone())
        .or_insert_with(|| PeerInfo {
            addr: addr.clone(),
            state: LinkState::Connecting,
            last_error: String::new(),
            their_clock: crate::crdt::VectorClock::new(),
            acked_clock: None,
            caught_up_ms: 0,
            generation,
            full_merges: 0,
        });
    entry.addr = addr;
    entry.generation = generation;
    entry.state = LinkState::Connecting;
    db.ks.set_single_participant(false);
    db.requests.links.push(ReplAction::PeerChanged(name));
}

fn peer(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "set" if args.len() == 4 => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            if name.is_empty() || name == ctx.db.participant {
                return Err(Cow::Owned(format!(
                    "ERR peer name '{name}' must be another participant's name"
                )));
            }
            let addr = String::from_utf8_lossy(&args[3]).into_owned();
            parse_peer_addr(&addr).map_err(|e| Cow::Owned(format!("ERR {e}")))?;
            set_peer(ctx.db, name, addr);
            ctx.out.simple("OK");
        }
        "del" if args.len() == 3 => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            if ctx.db.repl.peers.remove(&name).is_some() {
                ctx.db.requests.links.push(ReplAction::PeerChanged(name));
                ctx.out.int(1);
            } else {
                ctx.out.int(0);
            }
        }
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try AA.PEER SET name host:port or AA.PEER DEL name.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let version = int_arg(&args[1])?;
    if version != i64::from(LINK_PROTOCOL_VERSION) {
        return Err(Cow::Owned(format!(
            "ERR link protocol version {version} is not supported: this node speaks version {LINK_PROTOCOL_VERSION}"
        )));
    }
    let kind = lower(&args[4]);
    if kind != "replica" && kind != "peer" {
        return Err(Cow::Borrowed("ERR link kind must be 'replica' or 'peer'"));
    }
    let shard = int_arg(&args[3])?;
    if shard != i64::from(ctx.db.ks.actor().shard) {
        return Err(Cow::Owned(format!(
            "ERR this node serves shard {}, not shard {shard}",
            ctx.db.ks.actor().shard
        )));
    }
    let participant = String::from_utf8_lossy(&args[2]).into_owned();
    if kind == "peer" && participant == ctx.db.participant {
        return Err(Cow::Borrowed(
            "ERR a peer link must connect two different participants",
        ));
    }
    if kind == "replica" && participant != ctx.db.participant {
        return Err(Cow::Owned(format!(
            "ERR a replica must belong to participant '{}', not '{participant}'",
            ctx.db.participant
        )));
    }
    ctx.client.link_hello = Some((kind, String::from_utf8_lossy(&args[5]).into_owned()));
    ctx.out.simple("OK");
    Ok(())
}

fn handoff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !matches!(&ctx.client.link_hello, Some((k, _)) if k == "replica") {
        return Err(Cow::Borrowed(
            "ERR AA.HANDOFF needs AA.HELLO ... replica first",
        ));
    }
    let theirs: crate::crdt::VectorClock = postcard::from_bytes(&args[1])
        .map_err(|_| Cow::Borrowed("ERR AA.HANDOFF: malformed vector clock"))?;
    if ctx.db.ks.clock().dominates(&theirs) {
        ctx.out.simple("OK");
    } else if !ctx.db.repl.is_primary() {
        return Err(Cow::Borrowed(
            "NOTPRIMARY this node is not a primary and lacks effects the connecting node holds",
        ));
    } else {
        ctx.then(super::AfterReply::Handoff);
    }
    Ok(())
}

fn sync(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !matches!(&ctx.client.link_hello, Some((k, _)) if k == "replica") {
        return Err(Cow::Borrowed(
            "ERR AA.SYNC needs AA.HELLO ... replica first",
        ));
    }
    let replid = String::from_utf8_lossy(&args[1]).into_owned();
    let offset = crate::resp::parse_i64_strict(&args[2])
        .filter(|o| *o >= 0)
        .map(|o| o as u64);
    ctx.then(super::AfterReply::ServeLink(LinkRequest::Sync {
        replid,
        offset,
    }));
    Ok(())
}

fn pull(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !matches!(&ctx.client.link_hello, Some((k, _)) if k == "peer") {
        return Err(Cow::Borrowed("ERR AA.PULL needs AA.HELLO ... peer first"));
    }
    let clock: crate::crdt::VectorClock = postcard::from_bytes(&args[1])
        .map_err(|_| Cow::Borrowed("ERR AA.PULL: malformed vector clock"))?;
    ctx.then(super::AfterReply::ServeLink(LinkRequest::Pull { clock }));
    Ok(())
}
