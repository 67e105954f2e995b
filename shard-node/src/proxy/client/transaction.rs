//! Transactions: `WATCH`, `MULTI`…`EXEC` pinned to one shard on a connection of their own.

use super::*;

/// A transaction pinned to one shard.
#[derive(Default)]
pub(super) struct Transaction {
    pub(super) pinned: Option<(usize, Backend)>,
    pub(super) in_multi: bool,
    /// `MULTI` was answered by the proxy and is still to be sent when the shard is known.
    pub(super) multi_owed: bool,
    /// Keyless commands queued (answered `QUEUED` by the proxy) before a key chose the shard.
    pub(super) held: Vec<Bytes>,
    pub(super) failed: bool,
}

impl Client {
    pub(super) fn transaction(
        &mut self,
        command: Option<&'static Command>,
        name: &str,
        args: &[Bytes],
    ) {
        let tx = self.tx.get_or_insert_with(Transaction::default);
        match name {
            "multi" if tx.in_multi => self.error("ERR MULTI calls can not be nested"),
            "multi" => {
                tx.in_multi = true;
                if let Some((shard, b)) = &tx.pinned {
                    let (shard, b) = (*shard, b.clone());
                    self.core.metrics.request(shard);
                    let rx = b.send(encode(args));
                    self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
                } else {
                    tx.multi_owed = true;
                    self.reply(|w| w.simple("OK"));
                }
            }
            "exec" | "discard" if !tx.in_multi => {
                let text = format!("ERR {} without MULTI", name.to_ascii_uppercase());
                self.error(&text)
            }
            "exec" | "discard" => {
                if name == "exec" && tx.pinned.is_none() && !tx.held.is_empty() && !tx.failed {
                    // Only keyless commands: they run on the first shard.
                    self.pin(FIRST_SHARD);
                }
                self.hold_next = true;
                let tx = self.tx.take().unwrap_or_default();
                match tx.pinned {
                    Some((_, b)) if tx.failed => {
                        drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                        if name == "exec" {
                            self.error(
                                "EXECABORT Transaction discarded because of previous errors.",
                            );
                        } else {
                            self.reply(|w| w.simple("OK"));
                        }
                    }
                    Some((shard, b)) => {
                        self.core.metrics.request(shard);
                        let rx = b.send(encode(args));
                        self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
                    }
                    None if tx.failed && name == "exec" => {
                        self.error("EXECABORT Transaction discarded because of previous errors.")
                    }
                    None if name == "exec" => self.reply(|w| w.array(0)),
                    None => self.reply(|w| w.simple("OK")),
                }
            }
            "watch" if tx.in_multi => self.error("ERR WATCH inside MULTI is not allowed"),
            "unwatch" if !tx.in_multi => {
                self.hold_next = true;
                let tx = self.tx.take().unwrap_or_default();
                match tx.pinned {
                    Some((_, b)) => {
                        let rx = b.send(encode(args));
                        self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
                    }
                    None => self.reply(|w| w.simple("OK")),
                }
            }
            _ => {
                // WATCH, or a command queued in MULTI: on the transaction's shard.
                let keys = command.map(|c| c.keys_in(args)).unwrap_or_default();
                let Some(target) = self.one_shard(args, &keys) else {
                    self.fail_transaction();
                    return;
                };
                let pinned = self
                    .tx
                    .as_ref()
                    .and_then(|t| t.pinned.as_ref().map(|p| p.0));
                let shard = match (target, pinned) {
                    (Some(shard), _) => shard,
                    (None, Some(shard)) => shard,
                    (None, None) if command.is_some() && name != "watch" => {
                        // Keyless, and no key has chosen the shard yet: queued here until one
                        // does (or EXEC sends them to the first shard).
                        if let Some(t) = self.tx.as_mut() {
                            t.held.push(encode(args));
                        }
                        return self.reply(|w| w.simple("QUEUED"));
                    }
                    (None, None) => FIRST_SHARD,
                };
                let Some(b) = self.pin(shard) else {
                    return;
                };
                self.core.metrics.request(shard);
                let rx = b.send(encode(args));
                self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
            }
        }
    }

    pub(super) fn fail_transaction(&mut self) {
        if let Some(t) = self.tx.as_mut() {
            if t.in_multi {
                t.failed = true;
            }
        }
    }

    /// The transaction's connection, opened on `shard` if it has none; refuses (and fails
    /// the transaction) when it is pinned to another shard.
    pub(super) fn pin(&mut self, shard: usize) -> Option<Backend> {
        let core = self.core.clone();
        let resp3 = self.proto == Protocol::Resp3;
        let tx = self.tx.get_or_insert_with(Transaction::default);
        match &tx.pinned {
            Some((s, b)) if *s == shard => Some(b.clone()),
            Some((s, _)) => {
                let text = format!(
                    "CROSSSLOT Keys in a transaction must all be served by one shard (this one is on shard {s}, the keys are on shard {shard})"
                );
                self.fail_transaction();
                self.error(&text);
                None
            }
            None => {
                let b = Backend::spawn(core, shard, resp3, false);
                if tx.multi_owed {
                    // The client already has its +OK, and its QUEUED for the held commands.
                    drop(b.send(encode(&[Bytes::from_static(b"MULTI")])));
                    for frame in tx.held.drain(..) {
                        drop(b.send(frame));
                    }
                    tx.multi_owed = false;
                }
                tx.pinned = Some((shard, b.clone()));
                Some(b)
            }
        }
    }
}
