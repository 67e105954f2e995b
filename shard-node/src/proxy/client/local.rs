//! Commands the proxy answers by itself: connection state (`HELLO`, `AUTH`, `CLIENT`), the
//! Cluster API presenting the proxy as the one node, and `AA.TOPOLOGY`.

use super::*;

impl Client {
    /// `UNSUBSCRIBE`/`PUNSUBSCRIBE` from a client that subscribed to nothing: one reply per
    /// name (one with a null name without names), each counting 0 subscriptions.
    pub(super) fn not_subscribed(&mut self, name: &str, args: &[Bytes]) {
        let names: Vec<Option<&[u8]>> = if args.len() > 1 {
            args[1..].iter().map(|a| Some(&a[..])).collect()
        } else {
            vec![None]
        };
        let resp3 = self.proto == Protocol::Resp3;
        self.reply(|w| {
            for n in names {
                if resp3 {
                    w.push(3);
                } else {
                    w.array(3);
                }
                w.bulk(name.as_bytes());
                w.bulk_or_null(n);
                w.int(0);
            }
        });
    }

    pub(super) fn hello(&mut self, args: &[Bytes]) {
        let mut proto = self.proto;
        let mut i = 1;
        if let Some(v) = args.get(1) {
            proto = match crate::resp::parse_i64_strict(v) {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return self.error("NOPROTO unsupported protocol version"),
                None => {
                    return self.error("ERR Protocol version is not an integer or out of range")
                }
            };
            i = 2;
        }
        let mut name = None;
        while i < args.len() {
            let more = args.len() - i - 1;
            if args[i].eq_ignore_ascii_case(b"auth") && more >= 2 {
                if let Err(e) = self.check_password(&args[i + 1], &args[i + 2]) {
                    return self.error(e);
                }
                i += 3;
            } else if args[i].eq_ignore_ascii_case(b"setname") && more >= 1 {
                if let Err(e) = crate::commands::client::validate_client_name(&args[i + 1]) {
                    return self.error(&e);
                }
                name = Some(args[i + 1].clone());
                i += 2;
            } else {
                let text = format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                );
                return self.error(&text);
            }
        }
        if !self.authenticated {
            return self.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        if name.is_some() {
            self.name = name.filter(|n| !n.is_empty());
        }
        if proto != self.proto {
            // Later requests use connections of the other protocol: they wait for the replies
            // of the earlier ones, so order is kept.
            self.backends.clear();
            self.blocking.clear();
            self.hold_next = true;
        }
        self.proto = proto;
        let id = self.id;
        self.reply(|w| {
            w.map(7);
            w.bulk(b"server");
            w.bulk(b"redis");
            w.bulk(b"version");
            w.bulk(crate::commands::info::REDIS_COMPAT_VERSION.as_bytes());
            w.bulk(b"proto");
            w.int(if proto == Protocol::Resp3 { 3 } else { 2 });
            w.bulk(b"id");
            w.int(id as i64);
            w.bulk(b"mode");
            w.bulk(b"standalone");
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"modules");
            w.array(0);
        });
    }

    /// Authenticates the client as `user` if `password` opens it.
    pub(super) fn check_password(
        &mut self,
        user: &[u8],
        password: &[u8],
    ) -> Result<(), &'static str> {
        let name = self
            .core
            .acl
            .read()
            .authenticate(user, password)
            .map(|u| u.name.clone())?;
        self.user = name;
        self.authenticated = true;
        Ok(())
    }

    pub(super) fn auth(&mut self, args: &[Bytes]) {
        let default_open = self.core.acl.read().default_is_open();
        let result = match args.len() {
            2 if default_open => Err(NO_PASSWORD),
            2 => self.check_password(crate::acl::DEFAULT_USER.as_bytes(), &args[1]),
            3 => self.check_password(&args[1], &args[2]),
            _ => Err("ERR syntax error"),
        };
        match result {
            Ok(()) => self.reply(|w| w.simple("OK")),
            Err(e) => self.error(e),
        }
    }

    /// `ACL …`, on this proxy's users.
    pub(super) fn acl_command(&mut self, args: &[Bytes]) {
        let core = self.core.clone();
        let user = self.user.clone();
        let mut out = BytesMut::new();
        let result = {
            let mut acl = core.acl.write();
            let mut w = crate::resp::ReplyWriter::new(&mut out, self.proto);
            crate::acl::command::run(
                &mut acl,
                &user,
                args,
                core.acl_file.as_deref(),
                &crate::commands::is_command,
                &mut w,
            )
        };
        match result {
            Ok(_) => self.reply(|w| w.raw(&out)),
            Err(e) => self.error(&e),
        }
    }

    pub(super) fn client_command(&mut self, args: &[Bytes]) {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("setname", 3) => match crate::commands::client::validate_client_name(&args[2]) {
                Ok(()) => {
                    self.name = Some(args[2].clone()).filter(|n| !n.is_empty());
                    self.reply(|w| w.simple("OK"));
                }
                Err(e) => self.error(&e),
            },
            ("getname", 2) => {
                let name = self.name.clone();
                self.reply(|w| w.bulk_or_null(name.as_deref()));
            }
            ("id", 2) => {
                let id = self.id as i64;
                self.reply(|w| w.int(id));
            }
            ("setinfo", 4) => self.reply(|w| w.simple("OK")),
            ("setname" | "getname" | "id" | "setinfo", _) => {
                self.error(&arity_error(&format!("client|{sub}")))
            }
            // LIST, INFO, HELP… describe shard 0's connections (the proxy's among them).
            _ => self.forward(FIRST_SHARD, args),
        }
    }

    /// The Cluster API: the proxy is the one node, serving every slot.
    pub(super) fn cluster(&mut self, args: &[Bytes]) {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        let me = self.core.announced().unwrap_or_else(|| self.local.clone());
        let id = node_id(&me);
        let (host, port) = match me.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<i64>().unwrap_or(0)),
            None => (me.clone(), 0),
        };
        let routes = self.core.routes();
        match (sub.as_str(), args.len()) {
            ("keyslot", 3) => {
                let slot = key_slot(&args[2]);
                self.reply(|w| w.int(i64::from(slot)));
            }
            ("myid", 2) => self.reply(|w| w.bulk(id.as_bytes())),
            ("info", 2) => {
                let state = if routes.complete() { "ok" } else { "fail" };
                let text = format!(
                    "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{n}\r\ncluster_slots_ok:{n}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:{v}\r\ncluster_my_epoch:{v}\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
                    n = routes.served_slots(),
                    v = routes.version
                );
                self.reply(|w| w.verbatim("txt", text.as_bytes()));
            }
            ("nodes", 2) => {
                let text = format!(
                    "{id} {host}:{port}@{} myself,master - 0 0 1 connected 0-{}\n",
                    port + 10000,
                    SLOTS - 1
                );
                self.reply(|w| w.verbatim("txt", text.as_bytes()));
            }
            ("slots", 2) => self.reply(|w| {
                w.array(1);
                w.array(3);
                w.int(0);
                w.int(i64::from(SLOTS - 1));
                w.array(3);
                w.bulk(host.as_bytes());
                w.int(port);
                w.bulk(id.as_bytes());
            }),
            ("shards", 2) => self.reply(|w| {
                w.array(1);
                w.map(2);
                w.bulk(b"slots");
                w.array(2);
                w.int(0);
                w.int(i64::from(SLOTS - 1));
                w.bulk(b"nodes");
                w.array(1);
                w.map(7);
                w.bulk(b"id");
                w.bulk(id.as_bytes());
                w.bulk(b"port");
                w.int(port);
                w.bulk(b"ip");
                w.bulk(host.as_bytes());
                w.bulk(b"endpoint");
                w.bulk(host.as_bytes());
                w.bulk(b"role");
                w.bulk(b"master");
                w.bulk(b"replication-offset");
                w.int(0);
                w.bulk(b"health");
                w.bulk(b"online");
            }),
            ("countkeysinslot", 3) | ("getkeysinslot", 4) => {
                match crate::resp::parse_i64_strict(&args[2]) {
                    Some(s) if (0..i64::from(SLOTS)).contains(&s) => {
                        if let Some(shard) = self.shard_for(s as u16) {
                            self.forward(shard, args);
                        }
                    }
                    _ => self.error("ERR Invalid or out of range slot"),
                }
            }
            _ => self.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLUSTER HELP."
            )),
        }
    }

    pub(super) fn topology_command(&mut self, args: &[Bytes]) {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("set", 4) => {
                let version = match crate::resp::parse_i64_strict(&args[2]) {
                    Some(v) if v > 0 => v as u64,
                    _ => return self.error("ERR topology version must be a positive integer"),
                };
                let parsed = std::str::from_utf8(&args[3])
                    .map_err(|_| "the shard map is not UTF-8 text".to_string())
                    .and_then(|m| crate::cluster::ShardMap::parse(m).map_err(|e| e.to_string()))
                    .and_then(|map| self.core.install(version, map).map_err(|e| e.to_string()));
                match parsed {
                    Ok(()) => self.reply(|w| w.simple("OK")),
                    Err(e) => self.error(&format!("ERR topology refused: {e}")),
                }
            }
            ("announce", 3) => {
                let addr = String::from_utf8_lossy(&args[2]).into_owned();
                match self.core.set_announce(&addr) {
                    Ok(()) => self.reply(|w| w.simple("OK")),
                    Err(e) => self.error(&format!("ERR announce refused: {e}")),
                }
            }
            ("get", 2) => {
                let routes = self.core.routes();
                let text = routes.map.to_text();
                self.reply(|w| {
                    w.array(3);
                    w.int(routes.version as i64);
                    w.bulk(text.as_bytes());
                    w.int(-1);
                });
            }
            _ => self.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try AA.TOPOLOGY SET <version> <shard-map>, GET or ANNOUNCE <host:port>."
            )),
        }
    }
}
