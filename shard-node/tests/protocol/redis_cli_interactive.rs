//! `redis-cli` used interactively, in a real terminal (tmux): argument hints appear while
//! typing, `help` works, and `HELLO 3` switches the session to RESP3.

use crate::common::{poll_until, require_command, NodeBuilder};
use std::process::Command;
use std::time::Duration;

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(session: &str, command: &str) -> Tmux {
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "160",
                "-y",
                "30",
                command,
            ])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux {
            session: session.to_string(),
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        let status = Command::new("tmux")
            .args(&args)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) -> String {
        poll_until(Duration::from_secs(10), || {
            let screen = self.screen();
            screen.contains(text).then_some(screen)
        })
        .unwrap_or_else(|| panic!("{text:?} never appeared; screen:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[test]
fn redis_cli_shows_hints_help_and_speaks_resp3() {
    require_command("tmux", "tmux");
    require_command("redis-cli", "redis-tools");
    let node = NodeBuilder::new().start();
    let session = format!("aadb-cli-{}", node.port());
    let term = Tmux::start(&session, &format!("redis-cli -p {}", node.port()));
    let prompt = format!("127.0.0.1:{}>", node.port());
    term.wait_for(&prompt);
    term.keys(&["set "]);
    term.wait_for("key value [NX|XX]");
    term.keys(&["C-u", "help incr", "Enter"]);
    term.wait_for("summary: Increment the integer value of a key by one");
    term.keys(&["set greeting hello", "Enter"]);
    term.wait_for("OK");
    term.keys(&["hello 3", "Enter"]);
    term.wait_for("\"proto\" => (integer) 3");
    term.keys(&["hgetall nothing", "Enter"]);
    term.wait_for("(empty hash)");
    term.keys(&["get greeting", "Enter"]);
    term.wait_for("\"hello\"");
}
