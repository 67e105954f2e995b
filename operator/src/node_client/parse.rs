//! Reading what shard-node answers: `ROLE`, `INFO` sections and `AA.PEERS`, into the operator's
//! view of a node. Nothing here panics on a reply of the wrong shape: it becomes an error text.

use super::errors::describe;
use super::{join_address, NodeDetail, PeerLink};
use crate::failover::{NodeReport, ReportedRole};
use redis::Value;
use std::collections::HashMap;

/// The text of a string reply (bulk, simple or verbatim).
pub(super) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_string()),
        _ => None,
    }
}

/// An integer reply, or a string reply holding one.
pub(super) fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text_of(other).and_then(|t| t.trim().parse().ok()),
    }
}

/// The `key:value` lines of an INFO reply (section headers and blank lines skipped).
pub(super) fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What `ROLE` says.
#[derive(Debug, PartialEq)]
pub(super) enum RoleReply {
    Primary,
    /// A replica of `host:port`; an empty host is a fenced former primary.
    Replica {
        host: String,
        port: i64,
    },
}

/// `["master", offset, replicas]` or `["slave", host, port, state, offset]`.
pub(super) fn parse_role(reply: &Value) -> Result<RoleReply, String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {}", describe(reply)));
    };
    match items.first().and_then(text_of).as_deref() {
        Some("master") => Ok(RoleReply::Primary),
        Some("slave") if items.len() >= 5 => {
            let host = text_of(&items[1]).ok_or_else(|| "replica without a host".to_string())?;
            let port = int_of(&items[2]).ok_or_else(|| "replica without a port".to_string())?;
            Ok(RoleReply::Replica { host, port })
        }
        _ => Err(format!("unknown role in {}", describe(reply))),
    }
}

pub(super) fn field<'a>(info: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    info.get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("no '{name}' field"))
}

pub(super) fn number<T: std::str::FromStr>(
    info: &HashMap<String, String>,
    name: &str,
) -> Result<T, String> {
    let text = field(info, name)?;
    text.trim()
        .parse()
        .map_err(|_| format!("'{name}' is not a number: {text:?}"))
}

/// Builds a [`NodeDetail`] from the replies to `ROLE`, `INFO replication`, `INFO crdt` and
/// optionally `AA.PEERS`; an error names the command whose reply did not fit.
pub(super) fn interpret_probe(replies: &[Value]) -> Result<NodeDetail, (&'static str, String)> {
    let [role, replication, crdt, rest @ ..] = replies else {
        return Err(("ROLE", format!("{} replies to the probe", replies.len())));
    };
    let role = parse_role(role).map_err(|d| ("ROLE", d))?;
    let in_replication = |d: String| ("INFO replication", d);
    let replication = text_of(replication)
        .map(|t| parse_info(&t))
        .ok_or_else(|| in_replication(format!("expected text, got {}", describe(replication))))?;
    let crdt_info = text_of(crdt).map(|t| parse_info(&t)).ok_or_else(|| {
        (
            "INFO crdt",
            format!("expected text, got {}", describe(crdt)),
        )
    })?;

    let info_role = field(&replication, "role").map_err(in_replication)?;
    let (role, offset) = match role {
        RoleReply::Primary => {
            if info_role != "master" {
                return Err(in_replication(format!(
                    "role:{info_role} while ROLE says master (changed during the probe)"
                )));
            }
            let offset = number(&replication, "master_repl_offset").map_err(in_replication)?;
            (ReportedRole::Primary, offset)
        }
        RoleReply::Replica { host, port } => {
            if info_role != "slave" {
                return Err(in_replication(format!(
                    "role:{info_role} while ROLE says slave (changed during the probe)"
                )));
            }
            let fenced = replication.get("aadb_fenced").is_some_and(|v| v == "1");
            if fenced || host.is_empty() {
                (
                    ReportedRole::Replica {
                        primary: String::new(),
                        link_up: false,
                    },
                    number(&replication, "master_repl_offset").map_err(in_replication)?,
                )
            } else {
                let port = u16::try_from(port)
                    .map_err(|_| ("ROLE", format!("primary port {port} is out of range")))?;
                let link = field(&replication, "master_link_status").map_err(in_replication)?;
                (
                    ReportedRole::Replica {
                        primary: join_address(&host, port),
                        link_up: link == "up",
                    },
                    number(&replication, "slave_repl_offset").map_err(in_replication)?,
                )
            }
        }
    };
    let connected_replicas = number(&replication, "connected_slaves").map_err(in_replication)?;
    let replid = replication
        .get("master_replid")
        .filter(|r| !r.is_empty())
        .cloned();
    let generation = number(&crdt_info, "crdt_epoch").map_err(|d| ("INFO crdt", d))?;
    let log_failure = crdt_info.get("aadb_persistence_error").cloned();
    let write_held = replication.get("aadb_write_hold").is_some_and(|v| v == "1");
    let coverage = crdt_info
        .get("crdt_vector_clock")
        .map(|clock| clock_coverage(clock))
        .unwrap_or(0);
    let peers = match rest.first() {
        Some(reply) => parse_peers(reply).map_err(|d| ("AA.PEERS", d))?,
        None => Vec::new(),
    };
    Ok(NodeDetail {
        report: NodeReport {
            role,
            offset,
            generation,
            log_failure,
            write_held,
            coverage,
        },
        peers,
        connected_replicas,
        replid,
    })
}

/// The sum of the sequence numbers of a `crdt_vector_clock` value (`actor:seq,…`); entries
/// that do not parse count 0.
pub(super) fn clock_coverage(clock: &str) -> u64 {
    clock
        .split(',')
        .filter_map(|entry| entry.rsplit_once(':')?.1.trim().parse::<u64>().ok())
        .fold(0u64, u64::saturating_add)
}

/// The `AA.PEERS` reply: an array of maps (RESP3) or of flat `key, value, …` arrays (RESP2)
/// with at least `name`, `address` and `state`.
pub(super) fn parse_peers(reply: &Value) -> Result<Vec<PeerLink>, String> {
    let Value::Array(entries) = reply else {
        return Err(format!("expected an array, got {}", describe(reply)));
    };
    entries.iter().map(parse_peer).collect()
}

pub(super) fn parse_peer(entry: &Value) -> Result<PeerLink, String> {
    let pairs: Vec<(&Value, &Value)> = match entry {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(flat) if flat.len() % 2 == 0 => {
            flat.chunks(2).map(|kv| (&kv[0], &kv[1])).collect()
        }
        other => return Err(format!("expected a peer entry, got {}", describe(other))),
    };
    let mut fields: HashMap<String, &Value> = HashMap::new();
    for (k, v) in pairs {
        let key = text_of(k).ok_or_else(|| format!("peer field name {}", describe(k)))?;
        fields.insert(key, v);
    }
    let text_field = |name: &str| -> Result<String, String> {
        fields
            .get(name)
            .and_then(|v| text_of(v))
            .ok_or_else(|| format!("peer entry without a '{name}' string"))
    };
    let lag_effects = match fields.get("lag_effects") {
        None | Some(Value::Nil) => None,
        Some(v) => Some(int_of(v).ok_or_else(|| format!("peer lag_effects {}", describe(v)))?),
    };
    Ok(PeerLink {
        name: text_field("name")?,
        address: text_field("address")?,
        state: text_field("state")?,
        lag_effects,
    })
}
