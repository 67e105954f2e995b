//! LATENCY (LATEST, HISTORY, RESET, GRAPH, DOCTOR, HISTOGRAM, HELP) and the per-command
//! latency histograms it reports.
//!
//! Contract:
//! - The latency monitor records no events (as Redis with `latency-monitor-threshold 0`, its
//!   default): LATEST and HISTORY are empty, RESET resets nothing (0), GRAPH has no samples,
//!   DOCTOR says the monitor is disabled. Setting `latency-monitor-threshold` is accepted
//!   (CONFIG) and changes nothing.
//! - HISTOGRAM reports, per command run since start, the number of calls and the cumulative
//!   count of calls by power-of-two latency bucket, in Redis's reply shape. [`record`] adds
//!   one call after every command. Buckets are counted from microsecond timings (Redis counts
//!   nanoseconds), so a bucket bound is `1024·2^k` nanoseconds shown in whole microseconds.
//! - Replies and error texts are Redis 7.0's.

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("latency", -2, "", 0, 0, 0, "server", "A container for latency diagnostics commands.", latency),
    ]
}

/// Number of buckets: 1024 ns · 2^39 is far beyond any command.
const BUCKETS: usize = 40;

/// Calls per command by latency bucket.
#[derive(Debug, Clone, Default)]
pub struct Histograms {
    by_command: BTreeMap<&'static str, [u64; BUCKETS]>,
}

/// The bucket of a call that took `micros`: the first `k` with `micros·1000 <= 1024·2^k`.
fn bucket(micros: u64) -> usize {
    let nanos = micros.saturating_mul(1000);
    let mut k = 0;
    while k + 1 < BUCKETS && nanos > 1024u64 << k {
        k += 1;
    }
    k
}

/// Counts one call of `command` that took `micros`.
pub fn record(db: &mut Db, command: &'static str, micros: u64) {
    let counts = db.latency.by_command.entry(command).or_insert([0; BUCKETS]);
    counts[bucket(micros)] += 1;
}

fn write_histogram(out: &mut ReplyWriter<'_>, counts: &[u64; BUCKETS]) {
    let calls: u64 = counts.iter().sum();
    out.map(2);
    out.bulk(b"calls");
    out.int(calls as i64);
    out.bulk(b"histogram_usec");
    let used = counts.iter().filter(|c| **c > 0).count();
    out.map(used);
    let mut cumulative = 0;
    for (k, c) in counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        cumulative += c;
        out.int(((1024u64 << k) / 1000) as i64);
        out.int(cumulative as i64);
    }
}

fn latency(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("latest", 2) => ctx.out.array(0),
        ("history", 3) => ctx.out.array(0),
        ("reset", _) => ctx.out.int(0),
        ("graph", 3) => {
            return Err(Cow::Owned(format!(
                "ERR No samples available for event '{}'",
                String::from_utf8_lossy(&args[2])
            )))
        }
        ("doctor", 2) => ctx.out.verbatim(
            "txt",
            b"I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n",
        ),
        ("histogram", _) => {
            let wanted: Vec<(&'static str, [u64; BUCKETS])> = if args.len() == 2 {
                ctx.db
                    .latency
                    .by_command
                    .iter()
                    .map(|(n, c)| (*n, *c))
                    .collect()
            } else {
                let mut picked = Vec::new();
                for name in &args[2..] {
                    let Some(c) = lookup(name) else { continue };
                    if picked.iter().any(|(n, _)| *n == c.name) {
                        continue;
                    }
                    if let Some(counts) = ctx.db.latency.by_command.get(c.name) {
                        picked.push((c.name, *counts));
                    }
                }
                picked
            };
            ctx.out.map(wanted.len());
            for (name, counts) in &wanted {
                ctx.out.bulk(name.as_bytes());
                write_histogram(&mut ctx.out, counts);
            }
        }
        ("help", 2) => {
            let lines = [
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "GRAPH <event>",
                "    Return an ASCII latency graph for the <event> class.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
                "HELP",
                "    Prints this help.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l);
            }
        }
        ("latest" | "history" | "graph" | "doctor" | "help", _) => {
            return Err(arity_error(&format!("latency|{sub}")))
        }
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try LATENCY HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::TestDb;

    #[test]
    fn buckets_are_powers_of_two_of_1024_ns() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(8), 3);
        assert_eq!(bucket(9), 4);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histogram_counts_calls_per_command() {
        let mut t = TestDb::new();
        t.run(&["SET", "k", "v"]);
        t.run(&["SET", "k", "v"]);
        let got = t.text(&["LATENCY", "HISTOGRAM", "set", "nosuch", "SET"]);
        assert!(
            got.starts_with(
                "*2\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n"
            ),
            "{got}"
        );
        assert_eq!(t.text(&["LATENCY", "HISTOGRAM", "nosuch"]), "*0\r\n");
    }
}
