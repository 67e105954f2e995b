//! In-process harness for command tests: a [`Db`] driven through the real dispatcher, with a
//! controllable clock. Used by unit tests and the conflict-rule tests; not part of the server.

use super::{dispatch, ClientState, Db};
use crate::crdt::{Actor, Keyspace};
use bytes::{Bytes, BytesMut};

pub struct TestDb {
    pub db: Db,
    pub client: ClientState,
    pub now_ms: u64,
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDb {
    /// A single-participant database (the behaviour of a standalone node).
    pub fn new() -> Self {
        Self::with_keyspace(Keyspace::new(Actor::new("test", 0, 1), true))
    }

    /// A database of participant `name` in a multi-region deployment.
    pub fn region(name: &str) -> Self {
        Self::with_keyspace(Keyspace::new(Actor::new(name, 0, 1), false))
    }

    pub fn with_keyspace(ks: Keyspace) -> Self {
        TestDb {
            db: new_db(ks),
            client: ClientState::new(1, true),
            now_ms: 1_700_000_000_000,
        }
    }

    /// Runs one command and returns the raw reply bytes.
    pub fn run(&mut self, args: &[&str]) -> Vec<u8> {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut out = BytesMut::new();
        dispatch(&mut self.db, &mut self.client, &args, &mut out, self.now_ms);
        out.to_vec()
    }

    /// Runs one command and returns the reply as text (for readable assertions).
    pub fn text(&mut self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args)).into_owned()
    }
}

/// A fresh [`Db`] around a keyspace, with default settings (see [`Db::new`]).
pub fn new_db(ks: Keyspace) -> Db {
    Db::new(ks)
}
