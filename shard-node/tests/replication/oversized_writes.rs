//! Writes too large to replicate as one effect are refused before anything changes, and the
//! replicas and peers that would have received them stay writable and in step. That holds for
//! writes whose size their arguments do not bound too: scripts, COPY and `*STORE` commands.
//!
//! The limit is lowered to 1 MiB (`--max-effect-bytes`) so that the test moves megabytes, not
//! the half gigabyte of the default; the check is the same.

use crate::replication_support::{Cluster, Reply};
use std::time::Duration;

const LIMIT: usize = 1024 * 1024;
const LINK_UP: Duration = Duration::from_secs(20);

#[test]
fn writes_over_the_effect_limit_are_refused_and_links_stay_healthy() {
    const A: usize = 0;
    const B: usize = 1;
    let mut c = Cluster::start_with(&["A", "B"], &[1, 0], None, |b| {
        b.arg("--max-effect-bytes").arg(LIMIT.to_string())
    });
    c.wait_links_up(LINK_UP).unwrap_or_else(|e| panic!("{e}"));
    let big = "x".repeat(400 * 1024);
    let a = (A, 0);

    // A transaction whose writes add up to more than the limit: nothing of it runs.
    assert_eq!(c.q(a, &["MULTI"]).text(), "OK");
    for k in 0..3 {
        assert_eq!(c.q(a, &["SET", &format!("t{k}"), &big]).text(), "QUEUED");
    }
    assert_eq!(c.q(a, &["INCR", "t-counter"]).text(), "QUEUED");
    let exec = c.q(a, &["EXEC"]);
    match &exec {
        Reply::Error(e) => assert!(
            e.starts_with("EXECABORT") && e.contains("max-effect-bytes"),
            "{e}"
        ),
        other => panic!("EXEC of an oversized transaction answered {}", other.text()),
    }
    for key in ["t0", "t1", "t2", "t-counter"] {
        assert_eq!(c.q(a, &["EXISTS", key]).text(), "0", "{key} was written");
    }

    // One command over the limit is refused the same way.
    let mset = c.q(a, &["MSET", "m1", &big, "m2", &big, "m3", &big]);
    assert!(
        matches!(&mset, Reply::Error(e) if e.starts_with("ERR this write would carry")),
        "{}",
        mset.text()
    );
    assert_eq!(c.q(a, &["EXISTS", "m1"]).text(), "0");

    // A script whose writes add up to more than the limit: the write that would cross it is
    // refused (the script fails, as on any error from redis.call), the ones before it stay.
    let script = "for i = 1, 5 do redis.call('SET', 's' .. i, ARGV[1]) end return 'done'";
    let eval = c.q(a, &["EVAL", script, "0", &big]);
    assert!(
        matches!(&eval, Reply::Error(e) if e.contains("max-effect-bytes")),
        "{}",
        eval.text()
    );
    assert_eq!(c.q(a, &["EXISTS", "s1", "s2"]).text(), "2");
    assert_eq!(c.q(a, &["EXISTS", "s3", "s4", "s5"]).text(), "0");

    // A set of 1.2 MB built from small writes; copying it in one write is refused.
    for part in 0..3 {
        let mut sadd = vec!["SADD".to_string(), "src".to_string()];
        sadd.extend((0..1000).map(|m| format!("{part}-{m}-{}", "m".repeat(400))));
        let sadd: Vec<&str> = sadd.iter().map(String::as_str).collect();
        assert_eq!(c.q(a, &sadd).text(), "1000");
    }
    for command in [
        &["SUNIONSTORE", "dst", "src"][..],
        &["COPY", "src", "dst"],
        &["SINTERSTORE", "dst", "src"],
    ] {
        let r = c.q(a, command);
        assert!(
            matches!(&r, Reply::Error(e) if e.starts_with("ERR this write would carry") && e.contains("max-effect-bytes")),
            "{command:?} answered {}",
            r.text()
        );
        assert_eq!(c.q(a, &["EXISTS", "dst"]).text(), "0", "{command:?} wrote");
    }

    // Under the limit, a large write goes through and reaches the replica and the peer; the
    // links did not break.
    assert_eq!(c.q(a, &["SET", "fits", &big]).text(), "OK");
    assert_eq!(c.q(a, &["MULTI"]).text(), "OK");
    assert_eq!(c.q(a, &["SET", "fits2", &big]).text(), "QUEUED");
    assert_eq!(c.q(a, &["INCR", "after"]).text(), "QUEUED");
    assert!(matches!(c.q(a, &["EXEC"]), Reply::Array(_)));
    assert_eq!(c.q((B, 0), &["SET", "from-b", "1"]).text(), "OK");
    c.converge(LINK_UP).unwrap_or_else(|e| panic!("{e}"));
    for id in [(A, 0), (A, 1), (B, 0)] {
        assert_eq!(c.q(id, &["STRLEN", "fits"]).text(), big.len().to_string());
        assert_eq!(c.q(id, &["GET", "after"]).text(), "1");
        assert_eq!(c.q(id, &["GET", "from-b"]).text(), "1");
        assert_eq!(c.q(id, &["EXISTS", "t0"]).text(), "0");
        assert_eq!(c.q(id, &["EXISTS", "s2", "s3"]).text(), "1");
        assert_eq!(c.q(id, &["SCARD", "src"]).text(), "3000");
        assert_eq!(c.q(id, &["EXISTS", "dst"]).text(), "0");
    }
    assert_eq!(c.q(a, &["SET", "still-writable", "1"]).text(), "OK");
    assert_eq!(c.q((B, 0), &["SET", "b-still-writable", "1"]).text(), "OK");
}
