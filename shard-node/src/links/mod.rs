//! Replication links as tasks: the client side that follows a primary or pulls from a peer
//! ([`link`]), the serving side that streams this node's effects ([`serve`]), and the handover a
//! node makes before it follows ([`handoff`]). The protocol and the guarantees are described
//! in `repl`, which holds the replication state these tasks change.

pub mod handoff;
pub mod link;
pub mod serve;

use crate::server::{Shared, State};
use std::sync::Arc;

/// Starts the link tasks that commands asked for (REPLICAOF, AA.PEER, `--peer`).
pub fn start_links(shared: &Arc<Shared>, state: &State, actions: Vec<crate::repl::ReplAction>) {
    for action in actions {
        match action {
            crate::repl::ReplAction::FollowPrimary => {
                if let Some(m) = &state.db.repl.master {
                    let generation = m.generation;
                    tokio::spawn(link::run(
                        shared.clone(),
                        link::LinkTarget::Primary,
                        generation,
                    ));
                }
            }
            crate::repl::ReplAction::PeerChanged(name) => {
                if let Some(p) = state.db.repl.peers.get(&name) {
                    let generation = p.generation;
                    tokio::spawn(link::run(
                        shared.clone(),
                        link::LinkTarget::Peer(name),
                        generation,
                    ));
                }
            }
        }
    }
}
