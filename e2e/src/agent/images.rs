//! The image table: which local binary stands for which container image.
//!
//! Contract: an image matches an entry by its repository's last path component, ignoring the
//! registry, the tag and the digest (`ghcr.io/x/shard-node:1.2` matches `shard-node`). A
//! container without `command` runs the entry's binary with the entry's arguments followed by
//! the container's `args` (the image's entrypoint); a container whose `command[0]` names the
//! entry (by image name or by the binary's file name) runs the binary the same way; any other
//! `command[0]` is looked up on the host (an absolute path, or a name on `PATH`), which lets
//! plain images run `sh`, `sleep` and friends.

use std::path::{Path, PathBuf};

/// One image → binary mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// Repository name, e.g. `shard-node`.
    pub name: String,
    /// The local binary.
    pub binary: PathBuf,
    /// Arguments that always follow the binary (the image's entrypoint arguments).
    pub args: Vec<String>,
}

/// The table the node agent resolves images with.
#[derive(Clone, Debug, Default)]
pub struct ImageTable {
    entries: Vec<ImageEntry>,
}

/// The program and leading arguments a container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entrypoint {
    /// What to execute.
    pub program: PathBuf,
    /// Arguments before the container's own.
    pub args: Vec<String>,
}

/// The repository name of an image reference: `reg:5000/a/b:tag@sha256:…` → `b`.
pub fn repository_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

impl ImageTable {
    /// An empty table.
    pub fn new() -> Self {
        ImageTable::default()
    }

    /// `shard-node` → `AADB_SHARD_NODE_BIN`, else `target/release/shard-node`, else
    /// `target/debug/shard-node`; `aadb-operator` likewise; `aadb-e2e-testapp` → this
    /// workspace's `aadb-e2e testapp` (`AADB_E2E_BIN` overrides the binary).
    pub fn with_defaults() -> Self {
        let root = crate::bins::workspace_root();
        let pick = |env: &str, name: &str| -> PathBuf {
            if let Some(p) = std::env::var_os(env) {
                return PathBuf::from(p);
            }
            let release = root.join("target/release").join(name);
            if release.is_file() {
                return release;
            }
            root.join("target/debug").join(name)
        };
        let e2e = std::env::var_os("AADB_E2E_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .filter(|p| p.file_name().is_some_and(|n| n == "aadb-e2e"))
            })
            .unwrap_or_else(|| pick("AADB_E2E_BIN", "aadb-e2e"));
        let mut t = ImageTable::new();
        t.insert("shard-node", pick("AADB_SHARD_NODE_BIN", "shard-node"), &[]);
        t.insert(
            "aadb-operator",
            pick("AADB_OPERATOR_BIN", "aadb-operator"),
            &[],
        );
        t.insert("aadb-e2e-testapp", e2e, &["testapp"]);
        t
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, name: &str, binary: impl Into<PathBuf>, args: &[&str]) {
        self.entries.retain(|e| e.name != name);
        self.entries.push(ImageEntry {
            name: name.to_string(),
            binary: binary.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// The entry of an image, if any.
    pub fn lookup(&self, image: &str) -> Option<&ImageEntry> {
        let repo = repository_name(image);
        self.entries.iter().find(|e| e.name == repo)
    }

    /// What a container with this image and `command` runs; `Err` says why nothing fits.
    /// Returns the entrypoint and the rest of `command` (to which the container's `args`
    /// are appended by the caller).
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        path_env: &str,
    ) -> Result<(Entrypoint, Vec<String>), String> {
        let entry = self.lookup(image);
        match (command.first(), entry) {
            (None, Some(e)) => Ok((
                Entrypoint {
                    program: e.binary.clone(),
                    args: e.args.clone(),
                },
                Vec::new(),
            )),
            (None, None) => Err(format!(
                "no local binary for image {image:?} and the container has no command"
            )),
            (Some(c0), entry) => {
                let base = Path::new(c0)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(c0);
                if let Some(e) = entry.filter(|e| {
                    base == e.name || e.binary.file_name().and_then(|n| n.to_str()) == Some(base)
                }) {
                    return Ok((
                        Entrypoint {
                            program: e.binary.clone(),
                            args: e.args.clone(),
                        },
                        command[1..].to_vec(),
                    ));
                }
                let program = find_on_host(c0, path_env)
                    .ok_or_else(|| format!("{c0:?} (image {image:?}) is not on this host"))?;
                Ok((
                    Entrypoint {
                        program,
                        args: Vec::new(),
                    },
                    command[1..].to_vec(),
                ))
            }
        }
    }
}

/// An absolute path that exists, or a bare name found on `path_env`.
pub fn find_on_host(cmd: &str, path_env: &str) -> Option<PathBuf> {
    let p = Path::new(cmd);
    if p.is_absolute() {
        if p.is_file() {
            return Some(p.to_path_buf());
        }
        // `/usr/local/bin/sleep` in an image: fall back to the name on the host.
        let name = p.file_name()?.to_str()?;
        return find_on_host(name, path_env);
    }
    if cmd.contains('/') {
        return None;
    }
    path_env
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        assert_eq!(repository_name("shard-node"), "shard-node");
        assert_eq!(repository_name("ghcr.io/aadb/shard-node:0.1"), "shard-node");
        assert_eq!(repository_name("reg:5000/a/b:t@sha256:00"), "b");
    }

    #[test]
    fn resolves_entrypoints_and_host_commands() {
        let mut t = ImageTable::new();
        t.insert("app", "/opt/app-bin", &["serve"]);
        let (e, rest) = t.resolve("x/app:1", &[], "/usr/bin:/bin").expect("default");
        assert_eq!(e.program, PathBuf::from("/opt/app-bin"));
        assert_eq!(e.args, vec!["serve"]);
        assert!(rest.is_empty());
        let cmd = vec!["/usr/local/bin/app".to_string(), "-v".to_string()];
        let (e, rest) = t.resolve("app", &cmd, "/usr/bin:/bin").expect("named");
        assert_eq!(e.program, PathBuf::from("/opt/app-bin"));
        assert_eq!(rest, vec!["-v"]);
        let sh = vec!["sh".to_string(), "-c".to_string(), "true".to_string()];
        let (e, rest) = t.resolve("busybox", &sh, "/usr/bin:/bin").expect("sh");
        assert!(e.program.ends_with("sh"));
        assert_eq!(rest, vec!["-c", "true"]);
        assert!(t.resolve("nothing", &[], "/bin").is_err());
        let bogus = vec!["no-such-binary-here".to_string()];
        assert!(t.resolve("busybox", &bogus, "/bin").is_err());
    }
}
