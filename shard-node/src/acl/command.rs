//! The `ACL` command, shared by the server and the proxy.
//!
//! Contract: `WHOAMI`, `USERS`, `LIST`, `GETUSER`, `SETUSER`, `DELUSER`, `CAT`, `GENPASS` and
//! `HELP` reply as Redis 7.0 does (`LIST` and `GETUSER` describe command rules in the order
//! they were given rather than Redis's recomputed form). `LOAD` re-reads the ACL file when
//! the caller has one. The caller checks the permission to run each subcommand first, and acts
//! on [`Outcome`] (connections of removed users are closed).

use super::{categories, Acl};
use crate::resp::ReplyWriter;
use bytes::Bytes;

/// What the caller must do after the command.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Users were changed or removed: connections of users that no longer exist must end.
    UsersChanged,
}

fn arity(sub: &str) -> String {
    format!("ERR wrong number of arguments for 'acl|{sub}' command")
}

/// Runs `ACL <sub> …` for a connection authenticated as `whoami`. `acl_file` is the file
/// `ACL LOAD` reads, if the server has one; `is_command` tells the commands this build has
/// (`ACL CAT <category>` lists only those).
pub fn run(
    acl: &mut Acl,
    whoami: &str,
    args: &[Bytes],
    acl_file: Option<&std::path::Path>,
    is_command: &dyn Fn(&str) -> bool,
    w: &mut ReplyWriter<'_>,
) -> Result<Outcome, String> {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let n = args.len();
    match sub.as_str() {
        "whoami" if n == 2 => w.bulk(whoami.as_bytes()),
        "users" if n == 2 => {
            let names: Vec<&str> = acl.users().map(|u| u.name.as_str()).collect();
            w.array(names.len());
            for name in names {
                w.bulk(name.as_bytes());
            }
        }
        "list" if n == 2 => {
            let lines: Vec<String> = acl
                .users()
                .map(|u| format!("user {}", u.describe()))
                .collect();
            w.array(lines.len());
            for l in lines {
                w.bulk(l.as_bytes());
            }
        }
        "getuser" if n == 3 => {
            let name = String::from_utf8_lossy(&args[2]);
            let Some(user) = acl.user(&name) else {
                w.null();
                return Ok(Outcome::Done);
            };
            let (flags, passwords, commands, keys, channels) = user.fields();
            w.map(6);
            w.bulk(b"flags");
            w.array(flags.len());
            for f in flags {
                w.bulk(f.as_bytes());
            }
            w.bulk(b"passwords");
            w.array(passwords.len());
            for p in passwords {
                w.bulk(p.as_bytes());
            }
            w.bulk(b"commands");
            w.bulk(commands.as_bytes());
            w.bulk(b"keys");
            w.bulk(keys.as_bytes());
            w.bulk(b"channels");
            w.bulk(channels.as_bytes());
            w.bulk(b"selectors");
            w.array(0);
        }
        "setuser" if n >= 3 => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            acl.set_user(&name, &args[3..]).map_err(|e| e.to_string())?;
            w.simple("OK");
            return Ok(Outcome::UsersChanged);
        }
        "deluser" if n >= 3 => {
            let removed = acl.delete_users(&args[2..])?;
            w.int(removed as i64);
            return Ok(Outcome::UsersChanged);
        }
        "cat" if n == 2 => {
            w.array(categories::CATEGORIES.len());
            for c in categories::CATEGORIES {
                w.bulk(c.as_bytes());
            }
        }
        "cat" if n == 3 => {
            let category = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            if !categories::CATEGORIES.contains(&category.as_str()) {
                return Err(format!(
                    "ERR Unknown category '{}'",
                    String::from_utf8_lossy(&args[2])
                ));
            }
            let names: Vec<&str> = categories::UNITS
                .iter()
                .filter(|(name, cats)| {
                    is_command(name.split('|').next().unwrap_or(name))
                        && cats.split_whitespace().any(|c| c == category)
                })
                .map(|(name, _)| *name)
                .collect();
            w.array(names.len());
            for name in names {
                w.bulk(name.as_bytes());
            }
        }
        "genpass" if n <= 3 => {
            let bits = match args.get(2) {
                None => 256,
                Some(a) => match crate::resp::parse_i64_strict(a) {
                    Some(b) if (1..=4096).contains(&b) => b as usize,
                    _ => return Err("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096".into()),
                },
            };
            let chars = bits.div_ceil(4);
            let mut bytes = vec![0u8; chars.div_ceil(2)];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            w.bulk(&text.as_bytes()[..chars]);
        }
        "load" if n == 2 => {
            let Some(path) = acl_file else {
                return Err("ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.".into());
            };
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "ERR Error loading ACLs: cannot read {}: {e}",
                    path.display()
                )
            })?;
            acl.load_file_text(&text)
                .map_err(|e| format!("ERR Error loading ACLs: {e}"))?;
            w.simple("OK");
            return Ok(Outcome::UsersChanged);
        }
        "help" if n == 2 => {
            let lines = [
                "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CAT [<category>]",
                "    List all commands that belong to <category>, or all command categories",
                "    when no category is specified.",
                "DELUSER <username> [<username> ...]",
                "    Delete a list of users.",
                "GETUSER <username>",
                "    Get the user's details.",
                "GENPASS [<bits>]",
                "    Generate a secure 256-bit user password. The optional `bits` argument can",
                "    be used to specify a different size.",
                "LIST",
                "    Show users details in config file format.",
                "LOAD",
                "    Reload users from the ACL file.",
                "SETUSER <username> <attribute> [<attribute> ...]",
                "    Create or modify a user with the specified attributes.",
                "USERS",
                "    List all the registered usernames.",
                "WHOAMI",
                "    Return the current connection username.",
                "HELP",
                "    Print this help.",
            ];
            w.array(lines.len());
            for l in lines {
                w.simple(l);
            }
        }
        "whoami" | "users" | "list" | "getuser" | "setuser" | "deluser" | "cat" | "genpass"
        | "load" | "help" => return Err(arity(&sub)),
        _ => {
            return Err(format!(
                "ERR unknown subcommand '{}'. Try ACL HELP.",
                String::from_utf8_lossy(&args[1])
            ))
        }
    }
    Ok(Outcome::Done)
}
