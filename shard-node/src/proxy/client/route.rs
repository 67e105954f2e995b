//! Where each command goes: answered here, sent to the shard of its keys, split by shard and
//! merged, fanned out to every shard, or refused.

use super::*;

/// Why `name` is refused through the proxy, if it is: commands of one shard-node (replication,
/// links, topology pushes, shutdown, debugging), commands that would change how a shared
/// connection behaves (`CLIENT REPLY`, `CLIENT PAUSE`…), and passwords of the nodes.
pub(super) fn node_only(name: &str, args: &[Bytes]) -> Option<String> {
    let refused = |what: &str| {
        Some(format!(
            "ERR {what} is a command of one shard-node, not of the database: send it to the node"
        ))
    };
    let sub = || {
        args.get(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
    };
    match name {
        "replicaof" | "slaveof" | "shutdown" | "failover" | "sync" | "psync" | "replconf"
        | "monitor" | "debug" => refused(&name.to_ascii_uppercase()),
        "aa.topology" => None,
        n if n.starts_with("aa.") => refused(&n.to_ascii_uppercase()),
        "client" => match sub().as_deref() {
            Some(s @ ("reply" | "pause" | "unpause" | "kill" | "tracking" | "no-evict")) => {
                refused(&format!("CLIENT {}", s.to_ascii_uppercase()))
            }
            _ => None,
        },
        "config" if sub().as_deref() == Some("set") => {
            let touches_password = args
                .iter()
                .skip(2)
                .step_by(2)
                .any(|p| is_any(p, &["requirepass", "masterauth", "masteruser"]));
            touches_password.then(|| {
                "ERR the nodes' passwords are set by their configuration, not through the proxy"
                    .to_string()
            })
        }
        _ => None,
    }
}

/// How a split command's parts are merged, and whether it writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SplitKind {
    /// `MGET`: values back in key order.
    Mget,
    /// `MSET`: `OK` from every part.
    Ok,
    /// `DEL`, `UNLINK`: counts added up (writes).
    Sum,
    /// `EXISTS`, `TOUCH`: counts added up (reads).
    Count,
}

impl SplitKind {
    fn writes(self) -> bool {
        matches!(self, SplitKind::Ok | SplitKind::Sum)
    }
}

impl Client {
    pub(super) fn command(&mut self, args: Vec<Bytes>) {
        let command = lookup(&args[0]);
        let name = command.map_or("", |c| c.name);
        if !self.authenticated && !matches!(name, "auth" | "hello" | "quit" | "reset") {
            self.error(NOAUTH);
            return;
        }
        if let Some(c) = command {
            let argc = args.len() as i32;
            if (c.arity > 0 && argc != c.arity) || (c.arity < 0 && argc < -c.arity) {
                if c.name == "exec" {
                    // Redis aborts the transaction and says why.
                    if let Some((_, b)) = self.tx.take().and_then(|t| t.pinned) {
                        drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                    }
                    return self.error("EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command");
                }
                self.fail_transaction();
                self.error(&arity_error(c.name));
                return;
            }
        }
        if let Some(c) = command {
            let refused = {
                let acl = self.core.acl.read();
                crate::acl::check(&acl, &self.user, c, &args)
                    .err()
                    .map(|d| (d, acl.user(&self.user).is_none()))
            };
            if let Some((denied, user_removed)) = refused {
                if c.name == "exec" {
                    // Redis aborts the transaction and says why.
                    if let Some((_, b)) = self.tx.take().and_then(|t| t.pinned) {
                        drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                    }
                    let text = format!(
                        "EXECABORT Transaction discarded because of: {}",
                        denied.message()
                    );
                    return self.error(&text);
                }
                self.fail_transaction();
                self.closing |= user_removed;
                return self.error(&denied.message());
            }
        }
        if let Some(why) = node_only(name, &args) {
            self.fail_transaction();
            return self.error(&why);
        }
        match name {
            "quit" => {
                self.reply(|w| w.simple("OK"));
                self.closing = true;
                return;
            }
            "reset" => {
                if let Some((_, b)) = self.tx.take().and_then(|t| t.pinned) {
                    drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                }
                self.proto = Protocol::Resp2;
                self.backends.clear();
                self.blocking.clear();
                self.name = None;
                self.wrote_to.clear();
                self.user = crate::acl::DEFAULT_USER.to_string();
                self.authenticated = self.core.acl.read().default_is_open();
                self.hold_next = true;
                return self.reply(|w| w.simple("RESET"));
            }
            _ => {}
        }
        if matches!(name, "multi" | "exec" | "discard" | "watch" | "unwatch")
            || self.tx.as_ref().is_some_and(|t| t.in_multi)
        {
            self.transaction(command, name, &args);
            return;
        }
        match name {
            "" => self.forward(FIRST_SHARD, &args),
            "ping" if args.len() > 2 => self.error(&arity_error("ping")),
            "ping" => match args.get(1) {
                Some(m) => self.reply(|w| w.bulk(m)),
                None => self.reply(|w| w.simple("PONG")),
            },
            "echo" => self.reply(|w| w.bulk(&args[1])),
            "hello" => self.hello(&args),
            "auth" => self.auth(&args),
            "select" => match crate::resp::parse_i64_strict(&args[1]) {
                Some(0) => self.reply(|w| w.simple("OK")),
                Some(_) => self.error("ERR DB index is out of range"),
                None => self.error("ERR value is not an integer or out of range"),
            },
            "client" => self.client_command(&args),
            "readonly" | "readwrite" | "asking" => self.reply(|w| w.simple("OK")),
            "cluster" => self.cluster(&args),
            "aa.topology" => self.topology_command(&args),
            "acl" => self.acl_command(&args),
            "subscribe" | "psubscribe" => self.subscribe = Some(encode(&args)),
            "publish" | "pubsub" => self.forward(FIRST_SHARD, &args),
            // Not subscribed: nothing to leave. Answered here, as a node would send one reply
            // per channel, which a shared connection cannot carry.
            "unsubscribe" | "punsubscribe" => self.not_subscribed(name, &args),
            "dbsize" => self.fan_out(&args, Merge::Sum),
            "keys" => self.fan_out(&args, Merge::Concat),
            "flushall" | "flushdb" | "save" | "bgsave" | "bgrewriteaof" => {
                self.fan_out(&args, Merge::First)
            }
            "randomkey" => self.fan_out(&args, Merge::Random),
            "info" => self.fan_out(&args, Merge::Info),
            "config" if is_any(&args[1], &["set", "resetstat", "rewrite"]) => {
                self.fan_out(&args, Merge::First)
            }
            // The script cache and the function libraries are per node: loads and flushes go
            // to every shard, so a script or function runs wherever its keys are.
            "script" if args.len() > 2 && is_any(&args[1], &["load", "flush"]) => {
                self.fan_out(&args, Merge::First)
            }
            "script" if args.len() == 2 && is_any(&args[1], &["flush"]) => {
                self.fan_out(&args, Merge::First)
            }
            "function" if is_any(&args[1], &["load", "delete", "flush"]) => {
                self.fan_out(&args, Merge::First)
            }
            "scan" => self.scan(args),
            "wait" => {
                let numbers = [&args[1], &args[2]].map(|a| crate::resp::parse_i64_strict(a));
                match numbers {
                    [Some(_), Some(t)] if t < 0 => return self.error("ERR timeout is negative"),
                    [Some(_), Some(_)] => {}
                    _ => return self.error("ERR value is not an integer or out of range"),
                }
                // The shards written to before this WAIT, not those written after it.
                let shards: Vec<usize> = std::mem::take(&mut self.wrote_to).into_iter().collect();
                let mut p = Pending::parts(Vec::new(), Merge::Min);
                p.deferred = Some(Deferred::Wait(shards, args[1].clone(), args[2].clone()));
                self.push(p);
            }
            "mget" => self.split(&args, 1, SplitKind::Mget),
            "mset" => self.split(&args, 2, SplitKind::Ok),
            "del" | "unlink" => self.split(&args, 1, SplitKind::Sum),
            "exists" | "touch" => self.split(&args, 1, SplitKind::Count),
            _ => self.keyed(command, args),
        }
    }

    /// A command routed by the slot of its keys (shard 0 when it has none).
    pub(super) fn keyed(&mut self, command: Option<&'static Command>, args: Vec<Bytes>) {
        let Some(c) = command else {
            self.forward(FIRST_SHARD, &args);
            return;
        };
        let keys = c.keys_in(&args);
        let Some(target) = self.one_shard(&args, &keys) else {
            return;
        };
        let Some(shard) = target else {
            self.forward(FIRST_SHARD, &args);
            return;
        };
        if c.flags.write {
            self.wrote_to.insert(shard);
        }
        if c.flags.blocking {
            let b = self.blocking_backend(shard);
            self.core.metrics.request(shard);
            let rx = b.send(encode(&args));
            self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
            self.hold_next = true;
            return;
        }
        self.forward(shard, &args);
    }

    /// `MGET`, `MSET`, `DEL`…: one command per shard, merged.
    pub(super) fn split(&mut self, args: &[Bytes], step: usize, kind: SplitKind) {
        if !(args.len() - 1).is_multiple_of(step) {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            return self.error(&arity_error(&name));
        }
        let routes = self.core.routes();
        // (shard, argument indexes of its keys), per shard in order of first appearance.
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut i = 1;
        while i < args.len() {
            let slot = key_slot(&args[i]);
            let Some(shard) = routes.shard_of(slot) else {
                self.error(&format!("CLUSTERDOWN Hash slot {slot} is not served"));
                return;
            };
            match groups.iter_mut().find(|g| g.0 == shard) {
                Some(g) => g.1.push(i),
                None => groups.push((shard, vec![i])),
            }
            i += step;
        }
        if groups.len() == 1 {
            let shard = groups[0].0;
            if kind.writes() {
                self.wrote_to.insert(shard);
            }
            self.forward(shard, args);
            return;
        }
        let mut parts = Vec::with_capacity(groups.len());
        let mut positions = Vec::with_capacity(groups.len());
        for (shard, at) in &groups {
            let mut sub: Vec<&[u8]> = Vec::with_capacity(1 + at.len() * step);
            sub.push(&args[0]);
            for i in at {
                for k in 0..step {
                    sub.push(&args[i + k]);
                }
            }
            let mut buf = BytesMut::new();
            write_command(&mut buf, &sub);
            self.core.metrics.request(*shard);
            if kind.writes() {
                self.wrote_to.insert(*shard);
            }
            parts.push(Part::new(self.backend(*shard).send(buf.freeze())));
            positions.push(at.iter().map(|i| (i - 1) / step).collect());
        }
        let how = match kind {
            SplitKind::Mget => Merge::Mget {
                positions,
                total: (args.len() - 1) / step,
            },
            SplitKind::Ok => Merge::First,
            SplitKind::Sum | SplitKind::Count => Merge::Sum,
        };
        self.push(Pending::parts(parts, how));
    }

    /// `SCAN cursor [options]`: pages of the shard the cursor names, and of the shards after
    /// it when that one is done.
    pub(super) fn scan(&mut self, args: Vec<Bytes>) {
        let shards = self.core.routes().shards();
        let cursor = crate::commands::util::scan::parse_scan_cursor(&args[1]);
        let Some((shard, position)) = cursor.ok().and_then(|c| scan_position(c, shards)) else {
            self.error("ERR invalid cursor");
            return;
        };
        let chain = ScanChain {
            shard,
            shards,
            args,
            carried: Vec::new(),
        };
        let p = self.scan_shard(chain, position);
        self.push(p);
    }

    /// Asks `chain.shard` for the page at `position`.
    pub(super) fn scan_shard(&mut self, mut chain: ScanChain, position: u64) -> Pending {
        chain.args[1] = Bytes::from(position.to_string());
        let frame = encode(&chain.args);
        self.core.metrics.request(chain.shard);
        let rx = self.backend(chain.shard).send(frame);
        let mut p = Pending::parts(vec![Part::new(rx)], Merge::Pass);
        p.scan = Some(chain);
        p
    }

    /// Starts a deferred reply now that every earlier one is in.
    pub(super) fn launch(&mut self, d: Deferred) -> Pending {
        match d {
            Deferred::Wait(mut shards, replicas, timeout) => {
                if shards.is_empty() {
                    // Nothing written through this connection: the replicas every shard has.
                    shards = (0..self.core.routes().shards()).collect();
                }
                let frame = encode(&[Bytes::from_static(b"WAIT"), replicas, timeout]);
                // A connection of its own per shard, so the wait holds up no other client.
                let parts = shards
                    .iter()
                    .map(|s| {
                        let b = Backend::spawn(self.core.clone(), *s, false, false);
                        Part::new(b.send(frame.clone()))
                    })
                    .collect();
                Pending::parts(parts, Merge::Min)
            }
        }
    }

    /// Sends `args` to shard `shard`.
    pub(super) fn forward(&mut self, shard: usize, args: &[Bytes]) {
        let frame = encode(args);
        self.core.metrics.request(shard);
        let rx = self.backend(shard).send(frame);
        self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
    }

    /// Sends one command per shard and merges the replies.
    pub(super) fn fan_out(&mut self, args: &[Bytes], how: Merge) {
        let shards = self.core.routes().shards();
        if shards == 0 {
            self.error("CLUSTERDOWN The proxy has no topology yet");
            return;
        }
        let frame = encode(args);
        let parts = (0..shards)
            .map(|s| {
                self.core.metrics.request(s);
                Part::new(self.backend(s).send(frame.clone()))
            })
            .collect();
        self.push(Pending::parts(parts, how));
    }

    /// The shard serving `slot`, or the `CLUSTERDOWN` reply.
    pub(super) fn shard_for(&mut self, slot: u16) -> Option<usize> {
        let shard = self.core.routes().shard_of(slot);
        if shard.is_none() {
            self.error(&format!("CLUSTERDOWN Hash slot {slot} is not served"));
        }
        shard
    }

    /// The shard serving every key of `keys`; `Some(None)` without keys; `None` after replying
    /// `CROSSSLOT` or `CLUSTERDOWN`.
    pub(super) fn one_shard(&mut self, args: &[Bytes], keys: &[usize]) -> Option<Option<usize>> {
        let routes = self.core.routes();
        let mut target: Option<usize> = None;
        for i in keys {
            let slot = key_slot(&args[*i]);
            let Some(shard) = routes.shard_of(slot) else {
                self.error(&format!("CLUSTERDOWN Hash slot {slot} is not served"));
                return None;
            };
            match target {
                None => target = Some(shard),
                Some(s) if s == shard => {}
                Some(_) => {
                    self.error(ERR_CROSSSLOT_SHARDS);
                    return None;
                }
            }
        }
        Some(target)
    }
}
