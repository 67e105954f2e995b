//! A full disk with a real process: the node refuses writes while its log cannot be written,
//! says why in `INFO persistence`, keeps serving reads, and takes writes again by itself once
//! space is freed, with no restart and nothing acknowledged lost (also after a later crash).
//!
//! The data directory is a small tmpfs mounted in a private mount namespace held by a `sleep`
//! process; the node runs in that namespace (`nsenter`), so the mount disappears with the
//! holder whatever happens to the test. This needs root (CI runs as root).

use crate::common::{poll_until, NodeBuilder, RawConn};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private mount namespace with a tmpfs of `size` on `dir`, alive while this lives.
struct Disk {
    holder: Child,
    dir: std::path::PathBuf,
}

impl Disk {
    fn mount(dir: &std::path::Path, size: &str) -> Disk {
        let script = format!(
            "mount -t tmpfs -o size={size} aadb-test-disk '{}' && echo mounted && exec sleep 100000",
            dir.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux) to hold a mount namespace");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the holder's output");
        assert_eq!(
            line.trim(),
            "mounted",
            "mounting a tmpfs failed (this test needs root)"
        );
        Disk {
            holder,
            dir: dir.to_path_buf(),
        }
    }

    /// `nsenter` into the namespace: the prefix that runs a command there.
    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.holder.id().to_string(),
            "-m".into(),
            "--".into(),
        ]
    }

    fn run(&self, script: &str) {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.holder.id().to_string(),
            "-m",
            "--",
            "sh",
            "-c",
            script,
        ]);
        let _ = cmd.status().expect("run nsenter");
    }

    fn fill(&self) {
        self.run(&format!(
            "cat /dev/zero > '{}/filler' 2>/dev/null; true",
            self.dir.display()
        ));
    }

    fn free(&self) {
        self.run(&format!("rm -f '{}/filler'", self.dir.display()));
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn text(reply: Vec<u8>) -> String {
    String::from_utf8_lossy(&reply).into_owned()
}

/// One command on a fresh connection: the reply, or `None` when the node closed the
/// connection instead of answering (the write that hit the full disk).
fn once(port: u16, args: &[&str]) -> Option<String> {
    let mut c = RawConn::connect(port);
    let encoded: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&crate::common::encode(&encoded)).ok()?;
    c.set_read_timeout(Duration::from_secs(5));
    c.read_frame().ok().map(text)
}

#[test]
fn a_full_disk_refuses_writes_then_heals_by_itself_when_space_is_freed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).expect("data dir");
    let disk = Disk::mount(&dir, "8m");
    let enter = disk.enter();
    let enter: Vec<&str> = enter.iter().map(String::as_str).collect();
    let mut node = NodeBuilder::new()
        .appendfsync("always")
        .data_dir(&dir)
        .wrapper(&enter)
        .start();
    let port = node.port();
    let value = "v".repeat(1000);
    for i in 0..100 {
        assert_eq!(
            once(port, &["SET", &format!("before:{i}"), &value]).as_deref(),
            Some("+OK\r\n")
        );
    }

    disk.fill();
    // Writes fail: the first one that hits the full disk gets no reply, later ones MISCONF.
    let mut closed = 0;
    let refused = poll_until(Duration::from_secs(10), || {
        match once(port, &["SET", "during", &value]) {
            None => {
                closed += 1;
                None
            }
            Some(r) if r.starts_with("-MISCONF") => Some(r),
            Some(r) => {
                assert_eq!(r, "+OK\r\n", "unexpected reply");
                None
            }
        }
    })
    .expect("writes are refused once the disk is full");
    eprintln!(
        "refused: {} ({closed} connections closed first)",
        refused.trim()
    );
    let info = once(port, &["INFO", "persistence"]).expect("INFO answers");
    assert!(info.contains("aof_last_write_status:err"), "{info}");
    assert!(
        info.contains("aadb_persistence_error:") && info.contains("No space left"),
        "INFO says why: {info}"
    );
    assert_eq!(
        once(port, &["GET", "before:7"]).as_deref(),
        Some(format!("${}\r\n{value}\r\n", value.len()).as_str()),
        "reads keep working"
    );
    // Still refused a while later: nothing heals while the disk is full.
    assert!(once(port, &["SET", "still", "x"]).is_some_and(|r| r.starts_with("-MISCONF")));

    disk.free();
    let freed = Instant::now();
    poll_until(Duration::from_secs(15), || {
        (once(port, &["SET", "after", "1"]).as_deref() == Some("+OK\r\n")).then_some(())
    })
    .expect("writes are taken again after space is freed, without a restart");
    eprintln!(
        "space freed to the first acknowledged write: {:.2}s",
        freed.elapsed().as_secs_f64()
    );
    let info = once(port, &["INFO", "persistence"]).expect("INFO answers");
    assert!(info.contains("aof_last_write_status:ok"), "{info}");
    assert!(
        node.log().contains("persistence works again"),
        "the log says so"
    );

    // Everything acknowledged survives a crash after the repair.
    assert_eq!(
        once(port, &["SET", "later", "2"]).as_deref(),
        Some("+OK\r\n")
    );
    node.kill9();
    node.restart();
    for i in 0..100 {
        assert_eq!(
            once(port, &["STRLEN", &format!("before:{i}")]).as_deref(),
            Some(":1000\r\n"),
            "before:{i} after the restart"
        );
    }
    assert_eq!(
        once(port, &["GET", "after"]).as_deref(),
        Some("$1\r\n1\r\n")
    );
    assert_eq!(
        once(port, &["GET", "later"]).as_deref(),
        Some("$1\r\n2\r\n")
    );
    drop(node);
    drop(disk);
}
