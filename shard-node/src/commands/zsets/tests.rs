//! End-to-end tests of the sorted-set commands through `TestDb`, and of the C number parsers
//! the score ranges use.

use super::bounds::{c_strtod, parse_score_bound};
use super::testing::TestDb;
use crate::crdt::Effect;
use crate::resp::Protocol;

const WRONGTYPE: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

fn t(db: &mut TestDb, args: &[&str]) -> String {
    db.text(args)
}

/// Moves every effect `from` has made so far to `to` (causal order is the outbox order).
fn ship(from: &mut TestDb, to: &mut TestDb) {
    let effects: Vec<Effect> = std::mem::take(&mut from.db.ks.outbox);
    for e in &effects {
        to.db.ks.apply(e);
    }
}

#[test]
fn zadd_flags_and_replies() {
    let mut db = TestDb::new();
    assert_eq!(t(&mut db, &["ZADD", "z", "1", "a", "2", "b"]), ":2\r\n");
    assert_eq!(
        t(&mut db, &["ZADD", "z", "NX", "5", "a", "3", "c"]),
        ":1\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCORE", "z", "a"]), "$1\r\n1\r\n");
    assert_eq!(
        t(&mut db, &["ZADD", "z", "XX", "CH", "6", "a", "7", "d"]),
        ":1\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCORE", "z", "d"]), "$-1\r\n");
    assert_eq!(
        t(&mut db, &["ZADD", "z", "GT", "CH", "1", "a", "9", "b"]),
        ":1\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZADD", "z", "LT", "CH", "10", "a", "0", "b"]),
        ":1\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        "*6\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nc\r\n$1\r\n3\r\n$1\r\na\r\n$1\r\n6\r\n"
    );
    // A member repeated in one command sees its own earlier update.
    assert_eq!(
        t(&mut db, &["ZADD", "z", "CH", "1", "r", "2", "r", "2", "r"]),
        ":2\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCORE", "z", "r"]), "$1\r\n2\r\n");
    assert_eq!(
        t(&mut db, &["ZADD", "z", "INCR", "2.5", "a"]),
        "$3\r\n8.5\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZADD", "z", "NX", "INCR", "1", "a"]),
        "$-1\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZADD", "z", "GT", "INCR", "-1", "a"]),
        "$-1\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZADD", "nokey", "XX", "INCR", "1", "a"]),
        "$-1\r\n"
    );
    assert_eq!(t(&mut db, &["ZADD", "nokey", "XX", "1", "a"]), ":0\r\n");
    assert_eq!(t(&mut db, &["EXISTS", "nokey"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZINCRBY", "z", "-0.5", "a"]), "$1\r\n8\r\n");
    assert_eq!(
        t(&mut db, &["ZINCRBY", "z", "0.1", "new"]),
        "$19\r\n0.10000000000000001\r\n"
    );
    assert_eq!(t(&mut db, &["ZCARD", "z"]), ":5\r\n");
    // -0 is stored as 0, but the reply of the increment shows what was computed.
    assert_eq!(t(&mut db, &["ZINCRBY", "z", "-0", "m0"]), "$2\r\n-0\r\n");
    assert_eq!(t(&mut db, &["ZSCORE", "z", "m0"]), "$1\r\n0\r\n");
}

#[test]
fn zadd_errors_in_redis_order() {
    let mut db = TestDb::new();
    t(&mut db, &["SET", "s", "x"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["ZADD", "z", "1"],
            "-ERR wrong number of arguments for 'zadd' command\r\n",
        ),
        (&["ZADD", "z", "1", "a", "2"], "-ERR syntax error\r\n"),
        (&["ZADD", "z", "NX", "XX"], "-ERR syntax error\r\n"),
        (&["ZADD", "z", "BAD", "1", "a"], "-ERR syntax error\r\n"),
        (
            &["ZADD", "z", "NX", "XX", "x", "a"],
            "-ERR XX and NX options at the same time are not compatible\r\n",
        ),
        (
            &["ZADD", "z", "GT", "LT", "1", "a"],
            "-ERR GT, LT, and/or NX options at the same time are not compatible\r\n",
        ),
        (
            &["ZADD", "z", "NX", "GT", "1", "a"],
            "-ERR GT, LT, and/or NX options at the same time are not compatible\r\n",
        ),
        (
            &["ZADD", "z", "INCR", "1", "a", "x", "b"],
            "-ERR INCR option supports a single increment-element pair\r\n",
        ),
        (
            &["ZADD", "z", "1", "a", "nan", "b"],
            "-ERR value is not a valid float\r\n",
        ),
        (
            &["ZADD", "s", "x", "a"],
            "-ERR value is not a valid float\r\n",
        ),
        (&["ZADD", "s", "1", "a"], WRONGTYPE),
        (&["ZINCRBY", "s", "1", "a"], WRONGTYPE),
        (&["ZINCRBY", "z", "nx", "a"], "-ERR syntax error\r\n"),
        (
            &["ZINCRBY", "z", "abc", "a"],
            "-ERR value is not a valid float\r\n",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(&t(&mut db, args), want, "{args:?}");
    }
    assert_eq!(t(&mut db, &["EXISTS", "z"]), ":0\r\n");
    t(&mut db, &["ZADD", "z", "+inf", "m"]);
    assert_eq!(
        t(&mut db, &["ZINCRBY", "z", "-inf", "m"]),
        "-ERR resulting score is not a number (NaN)\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCORE", "z", "m"]), "$3\r\ninf\r\n");
}

#[test]
fn unchanged_scores_write_nothing() {
    let mut db = TestDb::new();
    t(&mut db, &["ZADD", "z", "1", "a"]);
    let before = db.db.ks.outbox.len();
    assert_eq!(t(&mut db, &["ZADD", "z", "1", "a"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZADD", "z", "NX", "5", "a"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZADD", "z", "GT", "0", "a"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZINCRBY", "z", "0", "a"]), "$1\r\n1\r\n");
    assert_eq!(t(&mut db, &["ZREM", "z", "nothere"]), ":0\r\n");
    assert_eq!(db.db.ks.outbox.len(), before);
}

#[test]
fn point_reads_and_ranks() {
    let mut db = TestDb::new();
    t(
        &mut db,
        &["ZADD", "k", "1", "a", "2", "b", "3", "c", "3", "d"],
    );
    assert_eq!(t(&mut db, &["ZRANK", "k", "a"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZRANK", "k", "d"]), ":3\r\n");
    assert_eq!(t(&mut db, &["ZREVRANK", "k", "d"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZREVRANK", "k", "a"]), ":3\r\n");
    assert_eq!(t(&mut db, &["ZRANK", "k", "zz"]), "$-1\r\n");
    assert_eq!(t(&mut db, &["ZRANK", "none", "a"]), "$-1\r\n");
    assert_eq!(
        t(&mut db, &["ZRANK", "k", "a", "WITHSCORE"]),
        "-ERR wrong number of arguments for 'zrank' command\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZMSCORE", "k", "a", "zz", "c"]),
        "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n"
    );
    assert_eq!(t(&mut db, &["ZMSCORE", "none", "a"]), "*1\r\n$-1\r\n");
    assert_eq!(t(&mut db, &["ZREM", "k", "a", "a", "b", "zz"]), ":2\r\n");
    assert_eq!(t(&mut db, &["ZREM", "k", "c", "d"]), ":2\r\n");
    assert_eq!(t(&mut db, &["EXISTS", "k"]), ":0\r\n");
    let hits = db.db.stats.keyspace_hits;
    t(&mut db, &["ZADD", "k", "1", "a"]);
    t(&mut db, &["ZSCORE", "k", "a"]);
    t(&mut db, &["ZSCORE", "none", "a"]);
    assert_eq!(db.db.stats.keyspace_hits, hits + 1);
}

#[test]
fn ranges_by_rank_score_and_lex() {
    let mut db = TestDb::new();
    t(
        &mut db,
        &[
            "ZADD", "g", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ],
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "g", "-2", "-1"]),
        "*2\r\n$1\r\nd\r\n$1\r\ne\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "g", "0", "1", "REV"]),
        "*2\r\n$1\r\ne\r\n$1\r\nd\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZREVRANGE", "g", "-1", "-1"]),
        "*1\r\n$1\r\na\r\n"
    );
    assert_eq!(t(&mut db, &["ZRANGE", "g", "3", "1"]), "*0\r\n");
    // LIMIT with the default count -1 is accepted for a rank range.
    assert_eq!(
        t(&mut db, &["ZRANGE", "g", "0", "0", "LIMIT", "5", "-1"]),
        "*1\r\n$1\r\na\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZRANGE", "g", "(2", "4", "BYSCORE", "WITHSCORES"]
        ),
        "*4\r\n$1\r\nc\r\n$1\r\n3\r\n$1\r\nd\r\n$1\r\n4\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZRANGE", "g", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2"]
        ),
        "*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZRANGEBYSCORE", "g", "-inf", "+inf", "LIMIT", "-1", "2"]
        ),
        "*0\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZREVRANGEBYSCORE", "g", "(3", "-inf", "LIMIT", "0", "-7"]
        ),
        "*2\r\n$1\r\nb\r\n$1\r\na\r\n"
    );
    // strtod rules: leading blanks, the empty string and huge values are accepted.
    assert_eq!(t(&mut db, &["ZCOUNT", "g", " 2", "(",]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZCOUNT", "g", "", "1e400"]), ":5\r\n");
    assert_eq!(t(&mut db, &["ZCOUNT", "g", "(1", "(5"]), ":3\r\n");
    assert_eq!(
        t(&mut db, &["ZCOUNT", "g", "2 ", "3"]),
        "-ERR min or max is not a float\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "g", "0", "-1", "LIMIT", "0", "1"]),
        "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "g", "-", "+", "BYLEX", "WITHSCORES"]),
        "-ERR syntax error, WITHSCORES not supported in combination with BYLEX\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "g", "0", "1", "REV", "REV"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGEBYSCORE", "g", "0", "1", "BYSCORE"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZRANGE", "g", "0", "1", "LIMIT", "x", "1", "BAD"]
        ),
        "-ERR value is not an integer or out of range\r\n"
    );

    t(
        &mut db,
        &[
            "ZADD", "lex", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e",
        ],
    );
    assert_eq!(
        t(&mut db, &["ZRANGEBYLEX", "lex", "(b", "[d"]),
        "*2\r\n$1\r\nc\r\n$1\r\nd\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZREVRANGEBYLEX", "lex", "+", "-", "LIMIT", "1", "2"]
        ),
        "*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "lex", "[d", "(b", "BYLEX", "REV"]),
        "*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
    );
    assert_eq!(t(&mut db, &["ZLEXCOUNT", "lex", "[b", "+"]), ":4\r\n");
    assert_eq!(t(&mut db, &["ZLEXCOUNT", "lex", "(a", "(a"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZLEXCOUNT", "lex", "+", "-"]), ":0\r\n");
    assert_eq!(
        t(&mut db, &["ZLEXCOUNT", "lex", "b", "+"]),
        "-ERR min or max not valid string range item\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGEBYLEX", "lex", "-x", "+"]),
        "-ERR min or max not valid string range item\r\n"
    );
    // Different scores: the walk in score order of Redis's compact encoding.
    t(
        &mut db,
        &["ZADD", "mixed", "1", "z", "2", "y", "3", "x", "4", "a"],
    );
    assert_eq!(
        t(&mut db, &["ZRANGEBYLEX", "mixed", "-", "+"]),
        "*4\r\n$1\r\nz\r\n$1\r\ny\r\n$1\r\nx\r\n$1\r\na\r\n"
    );
    assert_eq!(t(&mut db, &["ZRANGEBYLEX", "mixed", "[b", "+"]), "*0\r\n");
    assert_eq!(t(&mut db, &["ZRANGEBYLEX", "mixed", "[a", "[y"]), "*0\r\n");

    t(&mut db, &["SET", "s", "x"]);
    assert_eq!(t(&mut db, &["ZRANGE", "s", "0", "1"]), WRONGTYPE);
    assert_eq!(
        t(&mut db, &["ZRANGE", "s", "x", "1"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(t(&mut db, &["ZCOUNT", "s", "0", "1"]), WRONGTYPE);
    assert_eq!(
        t(&mut db, &["ZRANGE", "none", "0", "-1", "WITHSCORES"]),
        "*0\r\n"
    );
}

#[test]
fn resp3_replies_nest_score_pairs() {
    let mut db = TestDb::new();
    db.client.proto = Protocol::Resp3;
    t(&mut db, &["ZADD", "z", "1.5", "m", "2", "n"]);
    assert_eq!(
        t(&mut db, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        "*2\r\n*2\r\n$1\r\nm\r\n,1.5\r\n*2\r\n$1\r\nn\r\n,2\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "z", "0", "-1"]),
        "*2\r\n$1\r\nm\r\n$1\r\nn\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCORE", "z", "m"]), ",1.5\r\n");
    assert_eq!(t(&mut db, &["ZSCORE", "z", "x"]), "_\r\n");
    assert_eq!(t(&mut db, &["ZRANK", "none", "x"]), "_\r\n");
    assert_eq!(
        t(&mut db, &["ZPOPMAX", "z", "1"]),
        "*1\r\n*2\r\n$1\r\nn\r\n,2\r\n"
    );
    assert_eq!(t(&mut db, &["ZPOPMIN", "z"]), "*2\r\n$1\r\nm\r\n,1.5\r\n");
    assert_eq!(t(&mut db, &["ZPOPMIN", "z"]), "*0\r\n");
}

#[test]
fn pops() {
    let mut db = TestDb::new();
    t(&mut db, &["ZADD", "p", "1", "a", "2", "b", "3", "c"]);
    assert_eq!(
        t(&mut db, &["ZPOPMAX", "p"]),
        "*2\r\n$1\r\nc\r\n$1\r\n3\r\n"
    );
    assert_eq!(t(&mut db, &["ZPOPMIN", "p", "0"]), "*0\r\n");
    assert_eq!(
        t(&mut db, &["ZPOPMIN", "p", "-1"]),
        "-ERR value is out of range, must be positive\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZPOPMIN", "p", "x"]),
        "-ERR value is out of range, must be positive\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZPOPMIN", "p", "1", "2"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZPOPMIN", "p", "10"]),
        "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(t(&mut db, &["EXISTS", "p"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZPOPMAX", "p", "2"]), "*0\r\n");
    t(&mut db, &["SET", "s", "x"]);
    assert_eq!(t(&mut db, &["ZPOPMIN", "s"]), WRONGTYPE);
}

#[test]
fn zrangestore_replaces_or_deletes_the_destination() {
    let mut db = TestDb::new();
    t(&mut db, &["ZADD", "src", "1", "a", "2", "b", "3", "c"]);
    t(&mut db, &["SET", "dst", "x"]);
    t(&mut db, &["EXPIRE", "dst", "100"]);
    assert_eq!(
        t(
            &mut db,
            &["ZRANGESTORE", "dst", "src", "2", "+inf", "BYSCORE"]
        ),
        ":2\r\n"
    );
    assert_eq!(t(&mut db, &["TYPE", "dst"]), "+zset\r\n");
    assert_eq!(t(&mut db, &["TTL", "dst"]), ":-1\r\n");
    assert_eq!(
        t(&mut db, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]),
        "*4\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\nc\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        t(
            &mut db,
            &["ZRANGESTORE", "dst", "src", "0", "0", "WITHSCORES"]
        ),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGESTORE", "dst", "src", "5", "9"]),
        ":0\r\n"
    );
    assert_eq!(t(&mut db, &["EXISTS", "dst"]), ":0\r\n");
    assert_eq!(
        t(&mut db, &["ZRANGESTORE", "src", "src", "0", "0"]),
        ":1\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZRANGE", "src", "0", "-1"]),
        "*1\r\n$1\r\na\r\n"
    );
}

#[test]
fn zscan_small_and_paged() {
    let mut db = TestDb::new();
    t(
        &mut db,
        &["ZADD", "sc", "1", "a", "2.5", "b", "1e18", "c", "0.1", "d"],
    );
    assert_eq!(
        t(&mut db, &["ZSCAN", "sc", "77", "MATCH", "[ac]"]),
        "*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nc\r\n$19\r\n1000000000000000000\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZSCAN", "none", "0", "COUNT", "0"]),
        "*2\r\n$1\r\n0\r\n*0\r\n"
    );
    assert_eq!(
        t(&mut db, &["ZSCAN", "sc", "0", "COUNT", "0"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCAN", "sc", "x"]), "-ERR invalid cursor\r\n");
    assert_eq!(
        t(&mut db, &["ZSCAN", "sc", "0", "TYPE", "zset"]),
        "-ERR syntax error\r\n"
    );

    // A large set is paged; every member comes back exactly once.
    let mut args = vec!["ZADD".to_string(), "big".to_string()];
    for i in 0..300 {
        args.push((i % 37).to_string());
        args.push(format!("m{i}"));
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    assert_eq!(t(&mut db, &args), ":300\r\n");
    let mut cursor = "0".to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 1000, "scan does not terminate");
        let reply = t(&mut db, &["ZSCAN", "big", &cursor, "COUNT", "20"]);
        let lines: Vec<&str> = reply.split("\r\n").collect();
        cursor = lines[2].to_string();
        for pair in lines[5..].chunks(4) {
            if pair.len() == 4 {
                assert!(seen.insert(pair[0].to_string()), "duplicate {}", pair[0]);
            }
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(calls > 5);
}

/// From x=1.5, A: ZINCRBY z 1 x ‖ B: ZINCRBY z 1 x → 3.5 everywhere.
#[test]
fn concurrent_increments_add_up() {
    let mut a = TestDb::region("a");
    let mut b = TestDb::region("b");
    t(&mut a, &["ZADD", "z", "1.5", "x"]);
    ship(&mut a, &mut b);
    assert_eq!(t(&mut a, &["ZINCRBY", "z", "1", "x"]), "$3\r\n2.5\r\n");
    assert_eq!(t(&mut b, &["ZADD", "z", "INCR", "1", "x"]), "$3\r\n2.5\r\n");
    ship(&mut a, &mut b);
    ship(&mut b, &mut a);
    assert_eq!(t(&mut a, &["ZSCORE", "z", "x"]), "$3\r\n3.5\r\n");
    assert_eq!(t(&mut b, &["ZSCORE", "z", "x"]), "$3\r\n3.5\r\n");
    assert_eq!(t(&mut a, &["ZRANGE", "z", "0", "-1"]), "*1\r\n$1\r\nx\r\n");
}

/// From x=4, A: ZREM z x ‖ B: ZINCRBY z 2 x → x present with score 2.
#[test]
fn remove_cancels_only_the_observed_score() {
    let mut a = TestDb::region("a");
    let mut b = TestDb::region("b");
    t(&mut a, &["ZADD", "z", "4", "x", "1", "y"]);
    ship(&mut a, &mut b);
    assert_eq!(t(&mut a, &["ZREM", "z", "x"]), ":1\r\n");
    assert_eq!(t(&mut b, &["ZINCRBY", "z", "2", "x"]), "$1\r\n6\r\n");
    ship(&mut a, &mut b);
    ship(&mut b, &mut a);
    for db in [&mut a, &mut b] {
        assert_eq!(t(db, &["ZSCORE", "z", "x"]), "$1\r\n2\r\n");
        assert_eq!(
            t(db, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            "*4\r\n$1\r\ny\r\n$1\r\n1\r\n$1\r\nx\r\n$1\r\n2\r\n"
        );
    }
}

/// A: ZADD z 1 x ‖ B: ZADD z 2 x (B later) → 2 everywhere; a pop that had not seen a
/// concurrent add leaves it.
#[test]
fn concurrent_score_writes_take_the_later_one() {
    let mut a = TestDb::region("a");
    let mut b = TestDb::region("b");
    t(&mut a, &["ZADD", "z", "1", "x"]);
    b.now_ms += 10;
    t(&mut b, &["ZADD", "z", "2", "x"]);
    ship(&mut a, &mut b);
    ship(&mut b, &mut a);
    assert_eq!(t(&mut a, &["ZSCORE", "z", "x"]), "$1\r\n2\r\n");
    assert_eq!(t(&mut b, &["ZSCORE", "z", "x"]), "$1\r\n2\r\n");
    assert_eq!(t(&mut a, &["ZCARD", "z"]), ":1\r\n");
    assert_eq!(t(&mut a, &["ZPOPMIN", "z"]), "*2\r\n$1\r\nx\r\n$1\r\n2\r\n");
    t(&mut b, &["ZADD", "z", "5", "y"]);
    ship(&mut a, &mut b);
    ship(&mut b, &mut a);
    assert_eq!(t(&mut a, &["ZRANGE", "z", "0", "-1"]), "*1\r\n$1\r\ny\r\n");
    assert_eq!(t(&mut b, &["ZRANGE", "z", "0", "-1"]), "*1\r\n$1\r\ny\r\n");
}

#[test]
fn number_parsers_follow_c() {
    assert_eq!(c_strtod(b""), Some(0.0));
    assert_eq!(c_strtod(b" \t1.5"), Some(1.5));
    assert_eq!(c_strtod(b"1.5 "), None);
    assert_eq!(c_strtod(b"   "), None);
    assert_eq!(c_strtod(b"1e400"), Some(f64::INFINITY));
    assert_eq!(c_strtod(b"-0x1p1"), Some(-2.0));
    assert_eq!(c_strtod(b"nan"), None);
    assert_eq!(parse_score_bound(b"(3"), Some((3.0, true)));
    assert_eq!(parse_score_bound(b"("), Some((0.0, true)));
    assert_eq!(parse_score_bound(b"2\0junk"), Some((2.0, false)));
}

#[test]
fn expired_sources_after_a_count_are_deleted_before_the_command() {
    let mut db = TestDb::new();
    assert_eq!(t(&mut db, &["ZADD", "{a}z", "1", "m"]), ":1\r\n");
    assert_eq!(t(&mut db, &["ZADD", "{a}y", "2", "n"]), ":1\r\n");
    assert_eq!(t(&mut db, &["PEXPIRE", "{a}z", "10"]), ":1\r\n");
    db.now_ms += 20;
    assert_eq!(
        t(&mut db, &["ZUNION", "2", "{a}z", "{a}y"]),
        "*1\r\n$1\r\nn\r\n"
    );
    assert_eq!(db.db.stats.expired_keys, 1);
    assert_eq!(
        t(
            &mut db,
            &[
                "ZUNIONSTORE",
                "{a}d",
                "2",
                "{a}z",
                "{a}y",
                "WEIGHTS",
                "1",
                "2"
            ]
        ),
        ":1\r\n"
    );
    assert_eq!(t(&mut db, &["ZSCORE", "{a}d", "n"]), "$1\r\n4\r\n");
}

#[test]
fn store_commands_replace_any_type_and_empty_results_delete() {
    let mut db = TestDb::new();
    t(&mut db, &["SET", "{a}d", "x"]);
    t(&mut db, &["ZADD", "{a}z", "1", "m"]);
    assert_eq!(t(&mut db, &["ZINTERSTORE", "{a}d", "1", "{a}z"]), ":1\r\n");
    assert_eq!(t(&mut db, &["TYPE", "{a}d"]), "+zset\r\n");
    assert_eq!(
        t(&mut db, &["ZDIFFSTORE", "{a}d", "2", "{a}z", "{a}z"]),
        ":0\r\n"
    );
    assert_eq!(t(&mut db, &["EXISTS", "{a}d"]), ":0\r\n");
    assert_eq!(
        t(&mut db, &["ZREMRANGEBYRANK", "{a}z", "0", "-1"]),
        ":1\r\n"
    );
    assert_eq!(t(&mut db, &["EXISTS", "{a}z"]), ":0\r\n");
    assert_eq!(t(&mut db, &["ZMPOP", "1", "{a}z", "MIN"]), "*-1\r\n");
}
