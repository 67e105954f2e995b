//! A real job queue against shard-node: Python RQ (its worker waits for jobs with BLPOP, keeps
//! registries in sorted sets and results in streams) enqueues and runs jobs on a node, and
//! through a region proxy. The client side is `tests/clients/rq_roundtrip.py`.

use crate::common::{python_env, NodeBuilder, ProxyProcess, RawConn};
use std::process::Command;

/// Python with RQ and redis-py, pinned.
fn rq_python() -> std::path::PathBuf {
    python_env("rq-3.0.0", &["rq==3.0.0", "redis==8.2.0"])
}

fn round_trip(port: u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/rq_roundtrip.py");
    let out = Command::new(rq_python())
        .arg(script)
        .arg(port.to_string())
        .output()
        .expect("run the RQ round trip");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "RQ round trip on port {port}:\n{text}"
    );
    assert_eq!(text.trim(), "ok 20", "{text}");
}

#[test]
fn an_rq_worker_runs_jobs_on_a_shard_node() {
    let node = NodeBuilder::new().start();
    round_trip(node.port());
}

#[test]
fn an_rq_worker_runs_jobs_through_a_region_proxy() {
    let node = NodeBuilder::new().start();
    let map = format!("0-16383=127.0.0.1:{}", node.port());
    let reply = RawConn::connect(node.port()).cmd_str(&["AA.TOPOLOGY", "SET", "1", &map]);
    assert_eq!(reply, b"+OK\r\n");
    let proxy = ProxyProcess::start(&map, &[]);
    round_trip(proxy.port());
}
