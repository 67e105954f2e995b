//! hashes commands.
//!
//! Contract: see the dispatcher's module docs in `commands/mod.rs`.

use super::*;

pub fn commands() -> Vec<Command> {
    vec![]
}
