//! Users and their permissions: the Redis-compatible subset of ACLs this database enforces.
//!
//! Contract:
//! - An [`Acl`] holds named [`User`]s. `default` always exists: without a password it is
//!   `on nopass ~* &* +@all`, as in Redis; with one it needs that password.
//! - Rules are Redis 7.0's, applied in order by [`Acl::set_user`]: `on`/`off`, `nopass`,
//!   `resetpass`, `>pass`, `<pass`, `#sha256`, `!sha256`, `~pattern`, `allkeys`, `resetkeys`,
//!   `&pattern`, `allchannels`, `resetchannels`, `+cmd`, `-cmd`, `+cmd|sub`, `-cmd|sub`,
//!   `+@category`, `-@category`, `allcommands`, `nocommands`, `reset`. A rule that cannot be
//!   applied leaves the user unchanged and reports Redis's error text. Key and channel
//!   selectors (`%R~`, `(…)`) are not supported and are refused as syntax errors.
//! - Passwords are kept only as SHA-256 digests and compared in constant time.
//! - [`User::check`] decides whether a command with its arguments may run: the command (or
//!   the subcommand of a container command such as `CLIENT PAUSE`) must be allowed, every key
//!   must match one of the user's key patterns, and every channel (of `PUBLISH`, `SUBSCRIBE`…)
//!   one of its channel patterns (`PSUBSCRIBE` patterns must equal one of them). The refusal
//!   carries Redis's `NOPERM` text.
//! - With an internal user ([`Acl::with_internal_user`]), the `default` user is the
//!   application's: `+@all -@admin`, so replication, peer, topology, configuration and
//!   shutdown commands belong to the internal user alone.
//! - `--aclfile` is watched ([`watch_file`]): a changed file replaces the users (all or
//!   nothing), so new passwords reach running nodes without a restart.
//! - `Debug` output never shows passwords or their digests.

pub use aadb_acl_categories as categories;
pub mod command;
mod users;

pub use users::{watch_file, Acl, ACL_FILE_INTERVAL};

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

/// Redis's reply to a wrong user name, a wrong password or a disabled user.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// The name of the user every connection starts as.
pub const DEFAULT_USER: &str = "default";
/// The rules of the application's `default` user when an internal user exists.
pub const APPLICATION_RULES: &[&str] = &["+@all", "-@admin"];

/// Why a rule could not be applied (Redis's wording after `modifier '<rule>': `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("Syntax error")]
    Syntax,
    #[error("Unknown command or category name in ACL")]
    UnknownCommand,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    KeysAfterAll,
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    ChannelsAfterAll,
}

/// A `SETUSER` that failed: the rule and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERR Error in ACL SETUSER modifier '{rule}': {reason}")]
pub struct SetUserError {
    pub rule: String,
    pub reason: RuleError,
}

/// Why a command was refused to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Command(String),
    Key,
    Channel,
}

impl Denied {
    /// Redis's error reply for the refusal.
    pub fn message(&self) -> String {
        match self {
            Denied::Command(name) => {
                format!("NOPERM this user has no permissions to run the '{name}' command")
            }
            Denied::Key => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Channel => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    }
}

/// The permission units: every command and every known subcommand of a container command,
/// with an index into a user's bit set.
struct Units {
    index: HashMap<&'static str, usize>,
    /// For each command name, its own unit and the units of its subcommands.
    families: HashMap<&'static str, Vec<usize>>,
    /// For each category, its units.
    by_category: HashMap<&'static str, Vec<usize>>,
}

fn units() -> &'static Units {
    static UNITS: OnceLock<Units> = OnceLock::new();
    UNITS.get_or_init(|| {
        let mut index = HashMap::new();
        let mut families: HashMap<&'static str, Vec<usize>> = HashMap::new();
        let mut by_category: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for (i, (name, cats)) in categories::UNITS.iter().enumerate() {
            index.insert(*name, i);
            let family = name.split('|').next().unwrap_or(name);
            families.entry(family).or_default().push(i);
            for c in cats.split_whitespace() {
                by_category.entry(c).or_default().push(i);
            }
        }
        Units {
            index,
            families,
            by_category,
        }
    })
}

/// A set of permission units.
#[derive(Clone, PartialEq, Eq)]
struct UnitSet(Vec<u64>);

impl UnitSet {
    fn none() -> UnitSet {
        UnitSet(vec![0; categories::UNITS.len().div_ceil(64)])
    }
    fn all() -> UnitSet {
        let mut s = UnitSet::none();
        for i in 0..categories::UNITS.len() {
            s.set(i, true);
        }
        s
    }
    fn set(&mut self, unit: usize, on: bool) {
        let (word, bit) = (unit / 64, 1u64 << (unit % 64));
        if on {
            self.0[word] |= bit;
        } else {
            self.0[word] &= !bit;
        }
    }
    fn has(&self, unit: usize) -> bool {
        self.0[unit / 64] & (1u64 << (unit % 64)) != 0
    }
}

/// Key or channel patterns of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Patterns {
    all: bool,
    list: Vec<Bytes>,
}

impl Patterns {
    fn matches(&self, text: &[u8]) -> bool {
        self.all || self.list.iter().any(|p| crate::glob::glob_match(p, text))
    }
}

/// One user: whether it is enabled, how it authenticates and what it may run.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    passwords: Vec<[u8; 32]>,
    commands: UnitSet,
    /// The command rules as given since the last `allcommands`/`nocommands`, for `ACL LIST`.
    command_rules: Vec<String>,
    keys: Patterns,
    channels: Patterns,
    /// Every command, key and channel is allowed: the checks are skipped.
    unrestricted: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("passwords", &self.passwords.len())
            .field("commands", &self.command_rules.join(" "))
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a password.
pub fn digest(password: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, password);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two digests without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_digest(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64
        || !text
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl User {
    /// A user as `ACL SETUSER name` creates it: off, no password, no commands, no keys, no
    /// channels.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            commands: UnitSet::none(),
            command_rules: Vec::new(),
            keys: Patterns::default(),
            channels: Patterns::default(),
            unrestricted: false,
        }
    }

    /// Whether the user may access every key (`~*` / `allkeys`), which SORT's BY and GET need.
    pub fn all_keys(&self) -> bool {
        self.keys.all || self.keys.list.iter().any(|p| &p[..] == b"*")
    }

    /// Whether `password` opens this user.
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = digest(password);
        // Every stored digest is compared, so the time does not depend on which one matched.
        self.passwords
            .iter()
            .fold(false, |found, d| same_digest(d, &given) | found)
    }

    /// Applies one rule.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let result = self.apply_rule(rule);
        self.unrestricted = self.keys.all && self.channels.all && self.commands == UnitSet::all();
        result
    }

    fn apply_rule(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        match &lower[..] {
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            b"allkeys" => {
                self.keys = Patterns {
                    all: true,
                    list: Vec::new(),
                }
            }
            b"resetkeys" => self.keys = Patterns::default(),
            b"allchannels" => {
                self.channels = Patterns {
                    all: true,
                    list: Vec::new(),
                }
            }
            b"resetchannels" => self.channels = Patterns::default(),
            b"allcommands" | b"+@all" => self.set_all_commands(true),
            b"nocommands" | b"-@all" => self.set_all_commands(false),
            b"reset" => {
                let name = std::mem::take(&mut self.name);
                *self = User::new(&name);
            }
            _ => return self.apply_prefixed(rule),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let (first, rest) = rule.split_first().ok_or(RuleError::Syntax)?;
        match first {
            b'>' => {
                let d = digest(rest);
                if !self.passwords.contains(&d) {
                    self.passwords.push(d);
                }
                self.nopass = false;
            }
            b'<' => {
                let d = digest(rest);
                let before = self.passwords.len();
                self.passwords.retain(|p| *p != d);
                if self.passwords.len() == before {
                    return Err(RuleError::NoSuchPassword);
                }
            }
            b'#' => {
                let d = parse_hex_digest(rest).ok_or(RuleError::BadHash)?;
                if !self.passwords.contains(&d) {
                    self.passwords.push(d);
                }
                self.nopass = false;
            }
            b'!' => {
                let d = parse_hex_digest(rest).ok_or(RuleError::BadHash)?;
                let before = self.passwords.len();
                self.passwords.retain(|p| *p != d);
                if self.passwords.len() == before {
                    return Err(RuleError::NoSuchPassword);
                }
            }
            b'~' => add_pattern(&mut self.keys, rest, RuleError::KeysAfterAll)?,
            b'&' => add_pattern(&mut self.channels, rest, RuleError::ChannelsAfterAll)?,
            b'+' | b'-' => self.apply_command_rule(*first == b'+', rest, rule)?,
            _ => return Err(RuleError::Syntax),
        }
        Ok(())
    }

    fn set_all_commands(&mut self, on: bool) {
        self.commands = if on { UnitSet::all() } else { UnitSet::none() };
        self.command_rules = vec![if on { "+@all" } else { "-@all" }.to_string()];
    }

    fn apply_command_rule(&mut self, on: bool, name: &[u8], rule: &[u8]) -> Result<(), RuleError> {
        let name = std::str::from_utf8(name)
            .map_err(|_| RuleError::UnknownCommand)?
            .to_ascii_lowercase();
        let u = units();
        let targets: Vec<usize> = if let Some(category) = name.strip_prefix('@') {
            if !categories::CATEGORIES.contains(&category) {
                return Err(RuleError::UnknownCommand);
            }
            u.by_category.get(category).cloned().unwrap_or_default()
        } else if name.contains('|') {
            if on || u.index.contains_key(name.as_str()) {
                vec![*u
                    .index
                    .get(name.as_str())
                    .ok_or(RuleError::UnknownCommand)?]
            } else {
                return Err(RuleError::UnknownCommand);
            }
        } else {
            u.families
                .get(name.as_str())
                .cloned()
                .ok_or(RuleError::UnknownCommand)?
        };
        for t in targets {
            self.commands.set(t, on);
        }
        let text = String::from_utf8_lossy(rule).to_ascii_lowercase();
        // A later rule for the same command replaces an earlier one in the description.
        if !text.starts_with("+@") && !text.starts_with("-@") {
            self.command_rules.retain(|r| r[1..] != text[1..]);
        }
        self.command_rules.push(text);
        Ok(())
    }

    /// Whether this user may run `args` (`args[0]` is the command, already known to exist).
    pub fn check<C: Checked + ?Sized>(&self, command: &C, args: &[Bytes]) -> Result<(), Denied> {
        if self.unrestricted {
            return Ok(());
        }
        let u = units();
        let name = command.name();
        let mut unit = u.index.get(name).copied();
        if let Some(sub) = args.get(1) {
            if u.families.get(name).is_some_and(|f| f.len() > 1) {
                let full = format!(
                    "{}|{}",
                    name,
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                );
                if let Some(i) = u.index.get(full.as_str()) {
                    unit = Some(*i);
                }
            }
        }
        let allowed = match unit {
            Some(i) => self.commands.has(i),
            // A command with no category entry is as restricted as the most restricted one.
            None => self.commands == UnitSet::all(),
        };
        if !allowed {
            let shown = match args.get(1) {
                Some(sub) if unit.is_some_and(|i| categories::UNITS[i].0.contains('|')) => {
                    format!(
                        "{}|{}",
                        name,
                        String::from_utf8_lossy(sub).to_ascii_lowercase()
                    )
                }
                _ => name.to_string(),
            };
            return Err(Denied::Command(shown));
        }
        if !self.keys.all {
            for pos in command.keys_in(args) {
                if !self.keys.matches(&args[pos]) {
                    return Err(Denied::Key);
                }
            }
        }
        if !self.channels.all {
            self.check_channels(name, args)?;
        }
        Ok(())
    }

    fn check_channels(&self, name: &str, args: &[Bytes]) -> Result<(), Denied> {
        let channels: &[Bytes] = match name {
            "publish" | "spublish" => &args[1..2.min(args.len())],
            "subscribe" | "ssubscribe" => &args[1..],
            "psubscribe" => {
                // A pattern is allowed only if it is literally one of the user's patterns.
                return if args[1..].iter().all(|p| self.channels.list.contains(p)) {
                    Ok(())
                } else {
                    Err(Denied::Channel)
                };
            }
            _ => return Ok(()),
        };
        if channels.iter().all(|c| self.channels.matches(c)) {
            Ok(())
        } else {
            Err(Denied::Channel)
        }
    }

    /// The user as one `ACL LIST` line, without the leading `user `.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            self.name.clone(),
            if self.enabled { "on" } else { "off" }.to_string(),
        ];
        if self.nopass {
            parts.push("nopass".into());
        }
        parts.extend(self.passwords.iter().map(|d| format!("#{}", hex(d))));
        parts.extend(self.keys_text());
        if !self.channels.all {
            parts.push("resetchannels".into());
        }
        parts.extend(self.channels_text());
        parts.push(self.commands_text());
        parts.join(" ")
    }

    fn keys_text(&self) -> Vec<String> {
        if self.keys.all {
            return vec!["~*".into()];
        }
        self.keys
            .list
            .iter()
            .map(|p| format!("~{}", String::from_utf8_lossy(p)))
            .collect()
    }

    fn channels_text(&self) -> Vec<String> {
        if self.channels.all {
            return vec!["&*".into()];
        }
        self.channels
            .list
            .iter()
            .map(|p| format!("&{}", String::from_utf8_lossy(p)))
            .collect()
    }

    /// The command rules, starting from `+@all` or `-@all`.
    pub fn commands_text(&self) -> String {
        let mut rules = self.command_rules.clone();
        if !rules.first().is_some_and(|r| r == "+@all" || r == "-@all") {
            rules.insert(0, "-@all".into());
        }
        rules.join(" ")
    }

    /// The fields of `ACL GETUSER`: flags, password digests, commands, keys, channels.
    pub fn fields(&self) -> (Vec<&'static str>, Vec<String>, String, String, String) {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        (
            flags,
            self.passwords.iter().map(hex).collect(),
            self.commands_text(),
            self.keys_text().join(" "),
            self.channels_text().join(" "),
        )
    }
}

fn add_pattern(
    patterns: &mut Patterns,
    pattern: &[u8],
    after_all: RuleError,
) -> Result<(), RuleError> {
    if pattern == b"*" {
        *patterns = Patterns {
            all: true,
            list: Vec::new(),
        };
        return Ok(());
    }
    if patterns.all {
        return Err(after_all);
    }
    let p = Bytes::copy_from_slice(pattern);
    if !patterns.list.contains(&p) {
        patterns.list.push(p);
    }
    Ok(())
}

/// Decides from a user's name (as kept by a connection) whether a command may run: a
/// connection whose user was deleted may run nothing.
pub fn check<C: Checked + ?Sized>(
    acl: &Acl,
    user: &str,
    command: &C,
    args: &[Bytes],
) -> Result<(), Denied> {
    match acl.user(user) {
        Some(u) => u.check(command, args),
        None => Err(Denied::Command(command.name().to_string())),
    }
}

/// What a permission check needs to know of a command (the command table implements it).
pub trait Checked {
    /// The command's lower-case name, as the categories list it.
    fn name(&self) -> &str;
    /// Positions of the key arguments in `args`.
    fn keys_in(&self, args: &[Bytes]) -> Vec<usize>;
}

#[cfg(test)]
mod tests;
