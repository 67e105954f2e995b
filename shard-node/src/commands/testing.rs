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

#[cfg(test)]
mod arg_fuzz {
    use super::TestDb;

    /// Tokens that probe argument parsing: numbers at the edges, options of every command,
    /// patterns, and the keys the setup creates (one of each type).
    const TOKENS: &[&str] = &[
        "0",
        "1",
        "-1",
        "2",
        "3",
        "-2",
        "7",
        "63",
        "64",
        "65",
        "100",
        "9223372036854775807",
        "-9223372036854775808",
        "4611686018427387904",
        "4294967296",
        "1e3",
        "inf",
        "-inf",
        "nan",
        "1.5",
        "",
        "x",
        "#0",
        "#-1",
        "#9999999999999",
        "i8",
        "u8",
        "i64",
        "u63",
        "u64",
        "i0",
        "GET",
        "SET",
        "INCRBY",
        "OVERFLOW",
        "WRAP",
        "SAT",
        "FAIL",
        "AND",
        "OR",
        "XOR",
        "NOT",
        "BIT",
        "BYTE",
        "WEIGHTS",
        "AGGREGATE",
        "SUM",
        "MIN",
        "MAX",
        "WITHSCORES",
        "LIMIT",
        "COUNT",
        "ANY",
        "ASC",
        "DESC",
        "ALPHA",
        "BY",
        "STORE",
        "STOREDIST",
        "REPLACE",
        "DB",
        "IDX",
        "LEN",
        "MINMATCHLEN",
        "WITHMATCHLEN",
        "FROMMEMBER",
        "FROMLONLAT",
        "BYRADIUS",
        "BYBOX",
        "WITHDIST",
        "WITHCOORD",
        "WITHHASH",
        "km",
        "m",
        "(1",
        "[a",
        "-",
        "+",
        "*",
        "w_*",
        "h_*->f",
        "#",
        "SAMPLES",
        "ENCODING",
        "FREQ",
        "IDLETIME",
        "REFCOUNT",
        "HELP",
        "USAGE",
        "STATS",
        "DOCTOR",
        "LATEST",
        "HISTOGRAM",
        "RESET",
        "ON",
        "OFF",
        "SKIP",
        "s",
        "n",
        "l",
        "st",
        "z",
        "h",
        "g",
        "missing",
        "d",
    ];

    const COMMANDS: &[&str] = &[
        "ZREMRANGEBYRANK",
        "ZREMRANGEBYSCORE",
        "ZREMRANGEBYLEX",
        "ZUNION",
        "ZINTER",
        "ZDIFF",
        "ZINTERCARD",
        "ZUNIONSTORE",
        "ZINTERSTORE",
        "ZDIFFSTORE",
        "ZRANDMEMBER",
        "ZMPOP",
        "SETBIT",
        "GETBIT",
        "BITCOUNT",
        "BITPOS",
        "BITOP",
        "BITFIELD",
        "BITFIELD_RO",
        "COPY",
        "MOVE",
        "SWAPDB",
        "SUBSTR",
        "LCS",
        "SORT",
        "SORT_RO",
        "OBJECT",
        "MEMORY",
        "SLOWLOG",
        "LATENCY",
        "GEOADD",
        "GEOPOS",
        "GEODIST",
        "GEOHASH",
        "GEOSEARCH",
        "GEOSEARCHSTORE",
        "GEORADIUS",
        "GEORADIUS_RO",
        "GEORADIUSBYMEMBER",
        "GEORADIUSBYMEMBER_RO",
        "CONFIG",
    ];

    fn setup(db: &mut TestDb) {
        for cmd in [
            &["SET", "s", "foobar"][..],
            &["SET", "n", "10"],
            &["INCR", "n"],
            &["RPUSH", "l", "3", "1", "2"],
            &["SADD", "st", "1", "x"],
            &["ZADD", "z", "1", "a", "2", "b", "0", "c"],
            &["HSET", "h", "f", "v"],
            &[
                "GEOADD",
                "g",
                "13.361389",
                "38.115556",
                "a",
                "15.087269",
                "37.502669",
                "b",
            ],
            &["SET", "w_1", "5"],
        ] {
            db.run(cmd);
        }
    }

    #[test]
    fn new_commands_never_panic_on_odd_arguments() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut db = TestDb::new();
        setup(&mut db);
        for round in 0..30_000u32 {
            if round % 500 == 0 {
                db = TestDb::new();
                setup(&mut db);
            }
            let name = COMMANDS[(next() % COMMANDS.len() as u64) as usize];
            let n = (next() % 9) as usize;
            let mut args = vec![name];
            for _ in 0..n {
                args.push(TOKENS[(next() % TOKENS.len() as u64) as usize]);
            }
            // Bound sizes that would allocate hundreds of megabytes, as Redis would too.
            if args
                .iter()
                .any(|a| a.starts_with("4294967296") || a.starts_with("4611686018427387904"))
                && matches!(name, "SETBIT" | "BITFIELD")
            {
                continue;
            }
            let reply = db.run(&args);
            if name == "CONFIG" {
                // Put the parameters back so later rounds see defaults.
                db = TestDb::new();
                setup(&mut db);
            }
            assert!(
                !reply.is_empty() || args.len() > 1,
                "{args:?} gave no reply"
            );
        }
    }
}
