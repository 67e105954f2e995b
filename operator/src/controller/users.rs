//! The users file every node and proxy of a database reads, and password rotation without
//! downtime.
//!
//! Contract:
//! - The operator keeps the Secret `<db>-acl` (key `users.acl`, [`crate::plan::acl_secret`])
//!   in the database's namespace; nodes and proxies mount it and read it with `--aclfile`,
//!   again whenever it changes. It holds the `default` user's line: the SHA-256 of the
//!   application password, and the application's commands (`+@all -@admin`).
//! - When the application password changes, the new one is added and the previous one stays
//!   accepted for `spec.passwordRotationGraceSeconds` (the annotation `aadb.dev/previous-until`
//!   records the end), then is removed: clients move to the new password without an
//!   authentication error, and replicas, peers and the operator, which use the internal user,
//!   are not affected at all.
//! - Each user of `spec.users` follows with its own line: `on`, the SHA-256 of the password
//!   in its Secret (read from the database's namespace only), and its rules. A user whose
//!   Secret or key is missing is left out, with a problem sentence. Its password rotates as the
//!   application's does: a changed password is added, and the previous one stays accepted for
//!   the same grace period (the annotation `aadb.dev/users-previous-until` records the end per
//!   user, as `name=seconds` words).
//! - Returns, while a previous password is still accepted, a sentence for the status, and the
//!   problems.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aadb_crd::ActiveActiveDatabase;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use crate::plan::{acl_secret, Topology, ACL_FILE_KEY};

use super::{Context, ReconcileError};

/// The annotation holding when the previous password stops being accepted (Unix seconds).
pub const PREVIOUS_UNTIL: &str = "aadb.dev/previous-until";
/// The annotation holding, per user of `spec.users` whose previous password is still
/// accepted, until when: `name=seconds` words.
pub const USERS_PREVIOUS_UNTIL: &str = "aadb.dev/users-previous-until";

/// The rules of the application's `default` user, after its passwords.
const DEFAULT_RULES: &str = "~* &* +@all -@admin";

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as an RFC 3339 UTC time.
fn rfc3339(secs: u64) -> String {
    let (y, m, d) = super::certificates::civil_date(secs);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// The password digests of `user`'s line in a users file.
fn user_hashes(file: &str, user: &str) -> Vec<String> {
    file.lines()
        .map(str::split_whitespace)
        .filter_map(|mut words| {
            (words.next() == Some("user") && words.next() == Some(user)).then_some(words)
        })
        .flat_map(|words| words.filter_map(|w| w.strip_prefix('#').map(str::to_string)))
        .collect()
}

/// `name=seconds` words as a map (words that do not parse are dropped).
fn parse_until(text: &str) -> BTreeMap<String, u64> {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(name, secs)| Some((name.to_string(), secs.parse().ok()?)))
        .collect()
}

/// The `name=seconds` words of the users whose previous password is still accepted.
fn until_text(until: &BTreeMap<String, u64>) -> String {
    until
        .iter()
        .filter(|(_, secs)| **secs > 0)
        .map(|(name, secs)| format!("{name}={secs}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line of a user accepting `hashes`, with its rules.
fn user_line(name: &str, hashes: &[String], rules: &str) -> String {
    let passwords: Vec<String> = hashes.iter().map(|h| format!("#{h}")).collect();
    format!("user {name} on {} {rules}", passwords.join(" "))
}

/// The users file accepting `hashes` for `default`, followed by the `others` lines.
fn file_with(hashes: &[String], others: &[String]) -> String {
    let mut text = user_line("default", hashes, DEFAULT_RULES);
    text.push('\n');
    for line in others {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// One user of `spec.users` as its Secret gives it: its name, the digest of its password
/// and its rules.
struct WantedUser {
    name: String,
    hash: String,
    rules: String,
}

/// The users of `spec.users` whose password Secrets can be read, and problems with the others.
async fn wanted_users(
    secrets: &Api<Secret>,
    db: &ActiveActiveDatabase,
    namespace: &str,
) -> Result<(Vec<WantedUser>, Vec<String>), ReconcileError> {
    let mut users = Vec::new();
    let mut problems = Vec::new();
    for u in &db.spec.users {
        let r = &u.password_secret_ref;
        let key = r.key.clone().unwrap_or_else(|| "password".into());
        let password = secrets
            .get_opt(&r.name)
            .await?
            .and_then(|s| s.data)
            .and_then(|d| d.get(&key).cloned())
            .and_then(|b| String::from_utf8(b.0).ok());
        match password {
            Some(p) => users.push(WantedUser {
                name: u.name.clone(),
                hash: sha256_hex(&p),
                rules: u.rules.join(" "),
            }),
            None => problems.push(format!(
                "user {:?}: Secret {namespace}/{} has no key {key:?}: create it (kubectl create secret generic {} --from-literal={key}=...)",
                u.name, r.name, r.name
            )),
        }
    }
    Ok((users, problems))
}

/// The lines of `users` given the current file and the end of each one's grace period, and
/// the new ends (users with no previous password left out).
fn rotate_users(
    file: &str,
    until: &BTreeMap<String, u64>,
    users: &[WantedUser],
    now: u64,
    grace: u64,
) -> (Vec<String>, BTreeMap<String, u64>) {
    let mut lines = Vec::new();
    let mut ends = BTreeMap::new();
    for u in users {
        let current = user_hashes(file, &u.name);
        let previous_until = until.get(&u.name).copied().unwrap_or(0);
        let (hashes, end) = next_state(&current, previous_until, &u.hash, now, grace);
        lines.push(user_line(&u.name, &hashes, &u.rules));
        if hashes.len() > 1 {
            ends.insert(u.name.clone(), end);
        }
    }
    (lines, ends)
}

/// What the file should become: (hashes, previous-until), given the current file's hashes and
/// record, the new password's hash, the time and the grace period.
fn next_state(
    current: &[String],
    previous_until: u64,
    desired: &str,
    now: u64,
    grace: u64,
) -> (Vec<String>, u64) {
    if !current.iter().any(|h| h == desired) {
        // A new password: keep the newest previous one for the grace period.
        let mut hashes = vec![desired.to_string()];
        match current.first() {
            Some(previous) if grace > 0 => {
                hashes.push(previous.clone());
                (hashes, now + grace)
            }
            _ => (hashes, 0),
        }
    } else if current.len() > 1 && now >= previous_until {
        (vec![desired.to_string()], 0)
    } else {
        // The desired one first, as it was written.
        (current.to_vec(), previous_until)
    }
}

/// Brings `<db>-acl` in line with the application password; returns a sentence while a
/// previous password is still accepted.
pub(super) async fn ensure(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    topo: &Topology,
    app_password: &str,
) -> Result<(Option<String>, Vec<String>), ReconcileError> {
    let name = acl_secret(&topo.database);
    let secrets: Api<Secret> = Api::namespaced(ctx.clusters.local(), &topo.namespace);
    let existing = secrets.get_opt(&name).await?;
    let file = existing
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(ACL_FILE_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .unwrap_or_default();
    let previous_until = existing
        .as_ref()
        .and_then(|s| s.annotations().get(PREVIOUS_UNTIL).cloned())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let users_until = existing
        .as_ref()
        .and_then(|s| s.annotations().get(USERS_PREVIOUS_UNTIL).cloned())
        .map(|v| parse_until(&v))
        .unwrap_or_default();
    let current = user_hashes(&file, "default");
    let grace = u64::from(db.spec.effective_password_rotation_grace_seconds());
    let now = now_secs();
    let (hashes, until) = next_state(
        &current,
        previous_until,
        &sha256_hex(app_password),
        now,
        grace,
    );
    let (wanted, mut problems) = wanted_users(&secrets, db, &topo.namespace).await?;
    let (others, users_ends) = rotate_users(&file, &users_until, &wanted, now, grace);
    let text = file_with(&hashes, &others);
    if existing.is_none() || text != file || until != previous_until || users_ends != users_until {
        if let Some(conflict) = super::certificates::write(
            &secrets,
            topo,
            &name,
            BTreeMap::from([(ACL_FILE_KEY, text)]),
            BTreeMap::from([
                (PREVIOUS_UNTIL, until.to_string()),
                (USERS_PREVIOUS_UNTIL, until_text(&users_ends)),
            ]),
            db.controller_owner_ref(&()).as_ref(),
        )
        .await?
        {
            problems.push(conflict);
            return Ok((None, problems));
        }
        if hashes.len() > 1 {
            tracing::info!(database = %topo.database, "the application password changed; the previous one stays accepted for {grace}s");
        }
    }
    let mut rotations: Vec<String> = Vec::new();
    if hashes.len() > 1 {
        rotations.push(format!(
            "the previous application password is accepted until {}",
            rfc3339(until)
        ));
    }
    for (user, end) in &users_ends {
        rotations.push(format!(
            "the previous password of user {user:?} is accepted until {}",
            rfc3339(*end)
        ));
    }
    let rotation = (!rotations.is_empty()).then(|| rotations.join("; "));
    Ok((rotation, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_password_is_added_then_the_previous_one_retired() {
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        // First file: only the password.
        assert_eq!(next_state(&[], 0, &a, 100, 300), (vec![a.clone()], 0));
        // Unchanged.
        assert_eq!(
            next_state(std::slice::from_ref(&a), 0, &a, 200, 300),
            (vec![a.clone()], 0)
        );
        // Changed: both, until now + grace.
        let (both, until) = next_state(std::slice::from_ref(&a), 0, &b, 1000, 300);
        assert_eq!((both.clone(), until), (vec![b.clone(), a.clone()], 1300));
        // Within the grace period nothing changes; after it the previous one goes.
        assert_eq!(
            next_state(&both, until, &b, 1299, 300),
            (both.clone(), 1300)
        );
        assert_eq!(
            next_state(&both, until, &b, 1300, 300),
            (vec![b.clone()], 0)
        );
        // Changed again during the grace period: the newest previous one is kept.
        assert_eq!(
            next_state(&both, until, &c, 1100, 300),
            (vec![c.clone(), b.clone()], 1400)
        );
        // No grace: replaced at once.
        assert_eq!(
            next_state(std::slice::from_ref(&a), 0, &b, 1000, 0),
            (vec![b], 0)
        );
    }

    #[test]
    fn a_user_password_rotates_with_its_own_grace_period() {
        let reader = |password: &str| WantedUser {
            name: "reader".into(),
            hash: sha256_hex(password),
            rules: "~app:* +@read".into(),
        };
        let (old, new) = (sha256_hex("old"), sha256_hex("new"));
        // First write: only the password, no grace period running.
        let (lines, ends) = rotate_users("", &BTreeMap::new(), &[reader("old")], 1000, 10);
        assert_eq!(lines, vec![format!("user reader on #{old} ~app:* +@read")]);
        assert!(ends.is_empty());
        let file = file_with(&[sha256_hex("app")], &lines);
        // The Secret changes: both are accepted until now + grace, recorded per user.
        let (lines, ends) = rotate_users(&file, &BTreeMap::new(), &[reader("new")], 2000, 10);
        assert_eq!(
            lines,
            vec![format!("user reader on #{new} #{old} ~app:* +@read")]
        );
        assert_eq!(ends, BTreeMap::from([("reader".to_string(), 2010)]));
        assert_eq!(parse_until(&until_text(&ends)), ends);
        let file = file_with(&[sha256_hex("app")], &lines);
        // After the grace period only the new one is left.
        let (lines, ends) = rotate_users(&file, &ends, &[reader("new")], 2010, 10);
        assert_eq!(lines, vec![format!("user reader on #{new} ~app:* +@read")]);
        assert!(ends.is_empty());
        assert_eq!(until_text(&ends), "");
        assert!(parse_until("x=1 bad y=z").len() == 1);
    }

    #[test]
    fn times_read_as_rfc3339() {
        assert_eq!(rfc3339(1_796_640_565), "2026-12-07T10:49:25Z");
    }

    #[test]
    fn the_file_round_trips() {
        let hashes = vec![sha256_hex("new"), sha256_hex("old")];
        let file = file_with(&hashes, &["user r on #ab ~x +@read".to_string()]);
        assert_eq!(user_hashes(&file, "default"), hashes);
        assert_eq!(user_hashes(&file, "r"), vec!["ab".to_string()]);
        assert!(file.ends_with("\nuser r on #ab ~x +@read\n"), "{file}");
        assert!(
            file.lines()
                .next()
                .unwrap()
                .ends_with("~* &* +@all -@admin"),
            "{file}"
        );
        assert_eq!(
            sha256_hex("p"),
            "148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940"
        );
    }
}
