//! Sized volumes: a claim of at most [`SIZED_LIMIT`] gets a tmpfs of exactly its requested
//! size, so a pod that writes more than its claim holds gets `ENOSPC`, as on a real disk.
//!
//! Contract:
//! - [`mount_sized`] mounts only when this process may mount (CAP_SYS_ADMIN, as root has);
//!   otherwise the volume stays a plain directory of unlimited size, and it says so.
//! - Every mount's source is `aadb-volume-<pid>` (this process's pid), so what a crashed
//!   harness left can be told apart: [`sweep_stale`] unmounts the volumes of processes that
//!   are gone, and [`unmount_under`] the volumes below a directory (a cluster's, when it
//!   stops; a claim's, when it is reclaimed).
//! - A volume's data lives in memory and goes when it is unmounted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The largest claim that gets a sized volume (larger ones stay directories: their size is
/// for show, and memory is not spent on them).
pub const SIZED_LIMIT: u64 = 256 << 20;

const SOURCE_PREFIX: &str = "aadb-volume-";

/// Bytes of a Kubernetes quantity with a binary or decimal suffix (`4Mi`, `1G`, `512`), or
/// `None` when it is not one of those (fractions and exponents included).
pub fn parse_quantity(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let digits = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

fn may_mount() -> bool {
    let caps = crate::process::effective_capabilities();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    caps & CAP_SYS_ADMIN != 0
}

/// Mounts a tmpfs of `bytes` on `dir` when `bytes` is at most [`SIZED_LIMIT`] and this
/// process may mount. Returns whether it did.
pub fn mount_sized(dir: &Path, bytes: u64) -> Result<bool, String> {
    if bytes == 0 || bytes > SIZED_LIMIT {
        return Ok(false);
    }
    if !may_mount() {
        tracing::warn!(dir = %dir.display(), bytes, "cannot mount (not root): the volume is not limited to its size");
        return Ok(false);
    }
    let source = format!("{SOURCE_PREFIX}{}", std::process::id());
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={bytes},mode=0777"))
        .arg(&source)
        .arg(dir)
        .output()
        .map_err(|e| format!("run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(true)
}

/// (source, mount point) of every sized volume mounted now.
fn sized_mounts() -> Vec<(String, PathBuf)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let (fstype, source) = (right.next()?, right.next()?);
            (fstype == "tmpfs" && source.starts_with(SOURCE_PREFIX))
                .then(|| (source.to_string(), PathBuf::from(unescape(point))))
        })
        .collect()
}

/// Mount points escape space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn unmount(point: &Path) {
    let _ = Command::new("umount").arg("-l").arg(point).output();
}

/// Unmounts every sized volume at or below `dir`.
pub fn unmount_under(dir: &Path) {
    let mut points: Vec<PathBuf> = sized_mounts()
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| p.starts_with(dir))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        unmount(&p);
    }
}

/// Unmounts the sized volumes of processes that are gone.
pub fn sweep_stale() {
    for (source, point) in sized_mounts() {
        let owner = source
            .strip_prefix(SOURCE_PREFIX)
            .and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|pid| !crate::process::pid_alive(pid)) {
            unmount(&point);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("4Mi"), Some(4 << 20));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("512"), Some(512));
        assert_eq!(parse_quantity("1.5Gi"), None);
        assert_eq!(parse_quantity("1e3"), None);
        assert_eq!(parse_quantity("Mi"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
