//! [`Acl`]: the users of one server or proxy, the `default` and internal users, and loading
//! them from an ACL file. The rules are in the contract of `acl`.

use super::*;

/// The users of one server or proxy.
#[derive(Clone, Debug)]
pub struct Acl {
    users: BTreeMap<String, User>,
    /// The name of the internal user, if there is one.
    internal: Option<String>,
}

impl Default for Acl {
    fn default() -> Self {
        Acl::new(None)
    }
}

impl Acl {
    /// Users as Redis has them: `default`, protected by `requirepass` when given.
    pub fn new(requirepass: Option<&[u8]>) -> Acl {
        let mut acl = Acl {
            users: BTreeMap::new(),
            internal: None,
        };
        let mut default = User::new(DEFAULT_USER);
        for rule in ["on", "~*", "&*", "+@all"] {
            let _ = default.apply(rule.as_bytes());
        }
        acl.users.insert(DEFAULT_USER.into(), default);
        acl.set_default_password(requirepass);
        acl
    }

    /// Adds the internal user (every permission, its own password) and restricts `default` to
    /// the application's commands ([`APPLICATION_RULES`]).
    pub fn with_internal_user(mut self, name: &str, password: &[u8]) -> Acl {
        let mut internal = User::new(name);
        for rule in ["on", "~*", "&*", "+@all"] {
            let _ = internal.apply(rule.as_bytes());
        }
        let mut with_pass = b">".to_vec();
        with_pass.extend_from_slice(password);
        let _ = internal.apply(&with_pass);
        self.users.insert(name.to_string(), internal);
        self.internal = Some(name.to_string());
        if let Some(default) = self.users.get_mut(DEFAULT_USER) {
            for rule in APPLICATION_RULES {
                let _ = default.apply(rule.as_bytes());
            }
        }
        self
    }

    /// The internal user's name, if there is one.
    pub fn internal_user(&self) -> Option<&str> {
        self.internal.as_deref()
    }

    /// `CONFIG SET requirepass`: replaces the `default` user's passwords (none: `nopass`).
    pub fn set_default_password(&mut self, password: Option<&[u8]>) {
        let Some(default) = self.users.get_mut(DEFAULT_USER) else {
            return;
        };
        match password {
            Some(p) => {
                let _ = default.apply(b"resetpass");
                let mut rule = b">".to_vec();
                rule.extend_from_slice(p);
                let _ = default.apply(&rule);
            }
            None => {
                let _ = default.apply(b"nopass");
            }
        }
    }

    /// Whether a new connection starts authenticated (as `default`): `default` is enabled and
    /// needs no password.
    pub fn default_is_open(&self) -> bool {
        self.users
            .get(DEFAULT_USER)
            .is_some_and(|u| u.enabled && u.nopass)
    }

    /// The user `name` if `password` opens it.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Result<&User, &'static str> {
        let name = std::str::from_utf8(name).map_err(|_| WRONGPASS)?;
        match self.users.get(name) {
            Some(u) if u.accepts(password) => Ok(u),
            _ => Err(WRONGPASS),
        }
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// `ACL SETUSER name rules…`: all rules apply, or none does.
    pub fn set_user(&mut self, name: &str, rules: &[Bytes]) -> Result<(), SetUserError> {
        let mut user = self
            .users
            .get(name)
            .cloned()
            .unwrap_or_else(|| User::new(name));
        for rule in rules {
            user.apply(rule).map_err(|reason| SetUserError {
                rule: String::from_utf8_lossy(rule).into_owned(),
                reason,
            })?;
        }
        self.users.insert(name.to_string(), user);
        Ok(())
    }

    /// `ACL DELUSER`: removes users (never `default`); returns how many existed.
    pub fn delete_users(&mut self, names: &[Bytes]) -> Result<usize, &'static str> {
        if names.iter().any(|n| n[..] == *DEFAULT_USER.as_bytes()) {
            return Err("ERR The 'default' user cannot be removed");
        }
        let mut removed = 0;
        for n in names {
            let name = String::from_utf8_lossy(n);
            if self.users.remove(name.as_ref()).is_some() {
                removed += 1;
                if self.internal.as_deref() == Some(name.as_ref()) {
                    self.internal = None;
                }
            }
        }
        Ok(removed)
    }

    /// Reads an ACL file: one `user NAME rules…` line per user (`#` comments and blank lines
    /// ignored), as `ACL LIST` prints them. Every line must be valid, or nothing changes. The
    /// file's users replace every user but the internal one and `default`, which keeps its
    /// definition unless the file has a line for it.
    pub fn load_file_text(&mut self, text: &str) -> Result<(), String> {
        let mut next = self.clone();
        next.users.retain(|name, _| {
            name == DEFAULT_USER || Some(name.as_str()) == self.internal.as_deref()
        });
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 2 || words[0] != "user" {
                return Err(format!(
                    "line {}: expected 'user NAME rules…', got '{line}'",
                    n + 1
                ));
            }
            if Some(words[1]) == self.internal.as_deref() {
                return Err(format!(
                    "line {}: the internal user '{}' cannot be redefined",
                    n + 1,
                    words[1]
                ));
            }
            let mut rules: Vec<Bytes> = vec![Bytes::from_static(b"reset")];
            rules.extend(
                words[2..]
                    .iter()
                    .map(|w| Bytes::copy_from_slice(w.as_bytes())),
            );
            next.set_user(words[1], &rules)
                .map_err(|e| format!("line {}: {e}", n + 1))?;
        }
        *self = next;
        Ok(())
    }
}

/// How often a watched ACL file is looked at.
pub const ACL_FILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Watches the ACL file at `path` until `shutdown` turns true: whenever its content changes,
/// `apply` loads it (as `ACL LOAD` does); a file that does not load is logged and changes
/// nothing. The content at start is taken as already loaded.
pub async fn watch_file(
    path: std::path::PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    apply: impl Fn(&str) -> Result<(), String> + Send + 'static,
) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ACL_FILE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(now) = std::fs::read(&path) else {
            continue;
        };
        if last.as_deref() == Some(&now[..]) {
            continue;
        }
        last = Some(now.clone());
        match apply(&String::from_utf8_lossy(&now)) {
            Ok(()) => tracing::info!(path = %path.display(), "users reloaded from the ACL file"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the ACL file does not load; users unchanged")
            }
        }
    }
}
