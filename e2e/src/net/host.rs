//! The host side of pod networking: running `ip`, `nft` and `sysctl`, listing namespaces and
//! their owners, the fabric namespace shared by every cluster (with its lock), sweeping what
//! dead processes left, and counting what is left ([`leftovers`]). The rules are in the
//! contract of `net`.

use super::*;

/// Whether this process may create and delete network namespaces (CAP_NET_ADMIN and
/// CAP_SYS_ADMIN, as root has).
pub(super) fn has_namespace_capabilities() -> bool {
    let caps = crate::process::effective_capabilities();
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    caps & CAP_NET_ADMIN != 0 && caps & CAP_SYS_ADMIN != 0
}

pub(super) fn can_manage_namespaces() -> std::result::Result<(), String> {
    if !has_namespace_capabilities() {
        return Err("this process has no CAP_NET_ADMIN and CAP_SYS_ADMIN (not root)".into());
    }
    for tool in ["ip", "nft"] {
        if which(tool).is_none() {
            return Err(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    Ok(())
}

pub(super) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a command, with `input` on its standard input; an error carries its stderr.
pub(super) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    let exe = which(program).unwrap_or_else(|| PathBuf::from(program));
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run {program}"), e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("write to {program}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait for {program}"), e))?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "`{program} {}` failed{}: {}",
            args.join(" "),
            input.map(|t| format!(" on {t:?}")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None)
}

/// `nft -f -` with `script` inside namespace `ns`.
pub(super) fn nft(ns: &str, script: &str) -> Result<()> {
    run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script)).map(|_| ())
}

pub(super) fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    ip(&[
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ])
    .map(|_| ())
}

pub(super) fn namespaces() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pid a namespace name `aadb-c<c>-<pid>[-<seq>]` belongs to.
pub(super) fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("aadb-c")?;
    rest.split('-').nth(1)?.parse().ok()
}

/// Serializes fabric creation and removal between processes.
pub(super) struct FabricLock(#[allow(dead_code)] std::fs::File);

impl FabricLock {
    pub(super) fn take() -> Result<Self> {
        let path = std::env::temp_dir().join("aadb-fabric.lock");
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        f.lock().map_err(|e| Error::io("lock the fabric", e))?;
        Ok(FabricLock(f))
    }
}

/// Deletes the namespaces of processes that are gone, and the fabric if no cluster is left.
pub(super) fn sweep(_lock: &FabricLock) {
    for ns in namespaces() {
        if let Some(pid) = owner_pid(&ns) {
            if !crate::process::pid_alive(pid) {
                let _ = ip(&["netns", "del", &ns]);
            }
        }
    }
    if !namespaces().iter().any(|n| owner_pid(n).is_some()) {
        remove_fabric();
    }
}

/// Deletes what processes that are gone left behind (their namespaces, with the links, routes
/// and rules inside), and the fabric when no cluster uses it. Does nothing without `ip` and
/// the right to manage namespaces.
pub fn sweep_stale() -> Result<()> {
    // Only `ip` is needed to delete namespaces, whatever the mode of this process.
    if which("ip").is_none() || !has_namespace_capabilities() {
        return Ok(());
    }
    let lock = FabricLock::take()?;
    sweep(&lock);
    Ok(())
}

pub(super) fn remove_fabric() {
    if namespaces().iter().any(|n| n == FABRIC_NS) {
        let _ = ip(&["netns", "del", FABRIC_NS]);
    }
    // The host end of the link goes with the namespace; this is for a half-made fabric.
    let _ = ip(&["link", "del", HOST_LINK]);
}

pub(super) fn ensure_fabric(_lock: &FabricLock) -> Result<()> {
    let up = namespaces().iter().any(|n| n == FABRIC_NS)
        && ip(&["-o", "addr", "show", "dev", HOST_LINK])
            .is_ok_and(|s| s.contains(&format!("{HOST_IP}/")));
    if up {
        return Ok(());
    }
    remove_fabric();
    let host = format!("{HOST_IP}/24");
    let side = format!("{FABRIC_HOST_SIDE_IP}/24");
    ip(&["netns", "add", FABRIC_NS])?;
    ip(&["-n", FABRIC_NS, "link", "set", "lo", "up"])?;
    ip(&[
        "link", "add", HOST_LINK, "type", "veth", "peer", "name", "host", "netns", FABRIC_NS,
    ])?;
    ip(&["addr", "add", &host, "dev", HOST_LINK])?;
    ip(&["link", "set", HOST_LINK, "up"])?;
    ip(&["-n", FABRIC_NS, "addr", "add", &side, "dev", "host"])?;
    ip(&["-n", FABRIC_NS, "link", "set", "host", "up"])?;
    sysctl(FABRIC_NS, "net.ipv4.ip_forward", "1")?;
    Ok(())
}

/// What the local plane left on this machine: its network namespaces, host links and the
/// host route to the clusters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub routes: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.links.is_empty() && self.routes.is_empty()
    }
}

/// Counts what exists of the local plane's networking, of every process or of `pid` only.
pub fn leftovers(pid: Option<u32>) -> Leftovers {
    let namespaces = namespaces()
        .into_iter()
        .filter(|n| match pid {
            Some(p) => owner_pid(n) == Some(p),
            None => owner_pid(n).is_some() || n == FABRIC_NS,
        })
        .collect();
    let (links, routes) = if pid.is_some() {
        (Vec::new(), Vec::new())
    } else {
        let links = ip(&["-o", "link", "show"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(HOST_LINK))
            .map(str::to_string)
            .collect();
        let routes = ip(&["-4", "-o", "route", "show", "table", "all"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(HOST_LINK))
            .map(str::to_string)
            .collect();
        (links, routes)
    };
    Leftovers {
        namespaces,
        links,
        routes,
    }
}
