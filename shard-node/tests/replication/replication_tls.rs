//! Replication over TLS with mutual authentication, with real processes on loopback: two
//! regions whose peer links point at each other's `--tls-port` converge; a node whose
//! certificate another CA signed is refused (its link never comes up and the refusing server
//! logs why); the TLS files go together (one missing ends the process with a one-line error).

use crate::common;
use crate::common::{free_port, NodeBuilder, ShardNode};
use crate::replication_support::{parse_peers, poll_ok, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LINK_UP: Duration = Duration::from_secs(20);

/// A CA that signs node certificates.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    Ca {
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// Files of one node: certificate, key and the CA it trusts.
struct NodeFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl NodeFiles {
    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

/// Writes a certificate for `name` (valid for 127.0.0.1, as server and client) signed by
/// `signer`, with `trusted` as the CA the node trusts.
fn node_files(dir: &Path, name: &str, signer: &Ca, trusted: &Ca) -> NodeFiles {
    let localhost = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    node_files_for(dir, name, signer, trusted, localhost)
}

/// As [`node_files`], for the names `sans`.
fn node_files_for(
    dir: &Path,
    name: &str,
    signer: &Ca,
    trusted: &Ca,
    sans: Vec<SanType>,
) -> NodeFiles {
    let key = KeyPair::generate().expect("node key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("node params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &signer.issuer)
        .expect("sign the node certificate");
    let files = NodeFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join(format!("{name}-ca.crt")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    std::fs::write(&files.ca, &trusted.cert_pem).expect("write CA");
    files
}

fn tls_node(participant: &str, files: &NodeFiles, extra: &[String]) -> ShardNode {
    let mut b = NodeBuilder::new().participant(participant);
    for a in files.args().into_iter().chain(extra.iter().cloned()) {
        b = b.arg(a);
    }
    b.start()
}

fn get(c: &mut Client, key: &str) -> Result<String, String> {
    Ok(c.call(&["GET", key])?.text())
}

fn digest(c: &mut Client) -> Result<String, String> {
    let d = c.call(&["AA.DIGEST"])?;
    d.string()
        .ok_or_else(|| format!("AA.DIGEST answered {}", d.text()))
}

#[test]
fn regions_converge_over_tls_and_a_foreign_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ours = ca("aadb test CA");
    let theirs = ca("some other CA");
    let a_files = node_files(dir.path(), "a", &ours, &ours);
    let b_files = node_files(dir.path(), "b", &ours, &ours);
    // Trusts our CA (so it would accept the server) but its own certificate is foreign.
    let rogue_files = node_files(dir.path(), "rogue", &theirs, &ours);

    let (tls_a, tls_b) = (free_port(), free_port());
    let a = tls_node(
        "a",
        &a_files,
        &[
            "--tls-port".into(),
            tls_a.to_string(),
            "--peer".into(),
            format!("b=127.0.0.1:{tls_b}"),
        ],
    );
    let b = tls_node(
        "b",
        &b_files,
        &[
            "--tls-port".into(),
            tls_b.to_string(),
            "--peer".into(),
            format!("a=127.0.0.1:{tls_a}"),
        ],
    );
    let mut ca_client = Client::new(a.port(), None);
    let mut cb_client = Client::new(b.port(), None);
    assert_eq!(ca_client.q(&["SET", "from-a", "1"]).text(), "OK");
    assert_eq!(cb_client.q(&["SET", "from-b", "2"]).text(), "OK");
    poll_ok(LINK_UP, || {
        for c in [&mut ca_client, &mut cb_client] {
            let (x, y) = (get(c, "from-a")?, get(c, "from-b")?);
            if (x.as_str(), y.as_str()) != ("1", "2") {
                return Err(format!("port {}: from-a={x} from-b={y}", c.port()));
            }
        }
        let (da, db) = (digest(&mut ca_client)?, digest(&mut cb_client)?);
        if da != db {
            return Err(format!("digests differ: {da} vs {db}"));
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("regions did not converge over TLS: {e}"));
    for (c, other) in [(&mut ca_client, "b"), (&mut cb_client, "a")] {
        let peers = parse_peers(&c.q(&["AA.PEERS"])).expect("AA.PEERS");
        let link = peers
            .iter()
            .find(|p| p.get("name").map(String::as_str) == Some(other))
            .unwrap_or_else(|| panic!("no peer {other} in {peers:?}"));
        assert_eq!(
            link.get("state").map(String::as_str),
            Some("up"),
            "{link:?}"
        );
    }

    // A node with a certificate from another CA tries to pull from region a.
    let rogue = tls_node(
        "rogue",
        &rogue_files,
        &["--peer".into(), format!("a=127.0.0.1:{tls_a}")],
    );
    poll_ok(LINK_UP, || {
        let log = a.log();
        match log
            .lines()
            .find(|l| l.contains("TLS client refused") && l.contains("invalid peer certificate"))
        {
            Some(_) => Ok(()),
            None => Err("region a logged no refusal yet".to_owned()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let refusal = a
        .log()
        .lines()
        .find(|l| l.contains("TLS client refused"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(refusal.contains("UnknownIssuer"), "{refusal}");
    let mut rogue_client = Client::new(rogue.port(), None);
    let peers = parse_peers(&rogue_client.q(&["AA.PEERS"])).expect("AA.PEERS");
    let link = peers
        .iter()
        .find(|p| p.get("name").map(String::as_str) == Some("a"))
        .unwrap_or_else(|| panic!("no peer a in {peers:?}"));
    assert_ne!(
        link.get("state").map(String::as_str),
        Some("up"),
        "{link:?}"
    );
    assert_eq!(
        get(&mut rogue_client, "from-a").expect("GET on the rogue node"),
        "(nil)",
        "a refused node received data"
    );
}

#[test]
fn tls_files_go_together() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ours = ca("aadb test CA");
    let files = node_files(dir.path(), "a", &ours, &ours);
    let out = std::process::Command::new(common::shard_node_bin())
        .args(["server", "--bind", "127.0.0.1", "--port", "0", "--dir"])
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-ca")
        .arg(&files.ca)
        .env_remove("SHARD_NODE_TLS_KEY")
        .output()
        .expect("run shard-node");
    assert!(!out.status.success(), "started without --tls-key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing: --tls-key"), "{stderr}");

    let out = std::process::Command::new(common::shard_node_bin())
        .args(["server", "--bind", "127.0.0.1", "--port", "0", "--dir"])
        .arg(dir.path())
        .args(["--tls-port", "0"])
        .output()
        .expect("run shard-node");
    assert!(!out.status.success(), "a TLS port without certificates");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--tls-port needs"), "{stderr}");
}

/// `redis-cli --tls` against `port` trusting `ca` (no client certificate), with `args`; its
/// output and error text.
fn tls_cli(port: u16, ca: &Path, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-p", &port.to_string(), "--no-auth-warning", "-a", password])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String]) -> Killed {
    Killed(
        Command::new(common::shard_node_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shard-node"),
    )
}

/// A TLS-only node: clients without a certificate connect with `redis-cli --tls` and a
/// password; there is no plaintext listener, and plaintext on the TLS port gets nowhere.
#[test]
fn a_tls_only_node_serves_clients_with_the_ca_and_nothing_in_plaintext() {
    common::require_command("redis-cli", "redis-tools");
    let dir = tempfile::tempdir().expect("temporary directory");
    let ours = ca("aadb test CA");
    let files = node_files(dir.path(), "a", &ours, &ours);
    let (plain_port, tls_port) = (free_port(), free_port());
    let mut args: Vec<String> = ["server", "--bind", "127.0.0.1", "--appendonly", "no"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--port".into(), plain_port.to_string()]);
    args.extend([
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-only".into(),
        "yes".into(),
    ]);
    args.extend(["--tls-auth-clients".into(), "optional".into()]);
    args.extend(["--requirepass".into(), "pw".into(), "--dir".into()]);
    args.push(dir.path().join("data").display().to_string());
    args.extend(files.args());
    let _node = spawn(&args);
    poll_ok(LINK_UP, || {
        let out = tls_cli(tls_port, &files.ca, "pw", &["PING"]);
        out.contains("PONG").then_some(()).ok_or(out)
    })
    .expect("the TLS port answers PING");
    assert_eq!(
        tls_cli(tls_port, &files.ca, "pw", &["SET", "k", "v"]).trim(),
        "OK"
    );
    assert_eq!(
        tls_cli(tls_port, &files.ca, "pw", &["GET", "k"]).trim(),
        "v"
    );
    assert!(tls_cli(tls_port, &files.ca, "wrong", &["GET", "k"]).contains("WRONGPASS"));
    // No plaintext listener at all.
    assert!(std::net::TcpStream::connect(("127.0.0.1", plain_port)).is_err());
    // Plaintext RESP on the TLS port gets no reply.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    std::io::Write::write_all(&mut s, b"PING\r\n").expect("write");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("PONG"),
        "plaintext was served"
    );
    // A client that trusts another CA is refused.
    let other = ca("another CA");
    let other_ca = dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, &other.cert_pem).expect("write");
    assert!(!tls_cli(tls_port, &other_ca, "pw", &["PING"]).contains("PONG"));
}

/// Certificates replaced on disk are served without a restart: after the node's files are
/// rewritten with a certificate of a new CA, clients that trust only the new CA get in.
#[test]
fn rotated_certificates_are_picked_up_without_a_restart() {
    common::require_command("redis-cli", "redis-tools");
    let dir = tempfile::tempdir().expect("temporary directory");
    let old = ca("old CA");
    let files = node_files(dir.path(), "a", &old, &old);
    let tls_port = free_port();
    let mut builder = NodeBuilder::new().requirepass("pw");
    for a in files.args().into_iter().chain([
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-auth-clients".to_string(),
        "optional".to_string(),
    ]) {
        builder = builder.arg(a);
    }
    let node = builder.start();
    let old_ca = dir.path().join("old-ca.crt");
    std::fs::write(&old_ca, &old.cert_pem).expect("write");
    poll_ok(LINK_UP, || {
        let out = tls_cli(tls_port, &old_ca, "pw", &["PING"]);
        out.contains("PONG").then_some(()).ok_or(out)
    })
    .expect("PING over TLS with the old CA");
    let pid = node.pid();
    let new = ca("new CA");
    std::fs::create_dir_all(dir.path().join("new")).expect("directory");
    let rotated = node_files(&dir.path().join("new"), "a", &new, &new);
    let new_ca = dir.path().join("new-ca.crt");
    std::fs::write(&new_ca, &new.cert_pem).expect("write");
    assert!(!tls_cli(tls_port, &new_ca, "pw", &["PING"]).contains("PONG"));
    // Rewrite the node's files in place (as a mounted Secret changes).
    for (from, to) in [
        (&rotated.key, &files.key),
        (&rotated.cert, &files.cert),
        (&rotated.ca, &files.ca),
    ] {
        std::fs::copy(from, to).expect("replace");
    }
    poll_ok(LINK_UP, || {
        let out = tls_cli(tls_port, &new_ca, "pw", &["PING"]);
        out.contains("PONG").then_some(()).ok_or(out)
    })
    .expect("PING over TLS with the new CA");
    assert!(!tls_cli(tls_port, &old_ca, "pw", &["PING"]).contains("PONG"));
    assert_eq!(node.pid(), pid, "the node restarted");
}

/// Certificates of a private CA that name no address: with `--tls-link-verify ca` regions link
/// (and show TLS links), a proxy reaches TLS-only shard-nodes, and clients reach the proxy
/// with `redis-cli --tls`.
#[test]
fn nodes_of_one_private_ca_link_and_serve_a_tls_proxy_whatever_names_they_carry() {
    common::require_command("redis-cli", "redis-tools");
    let dir = tempfile::tempdir().expect("temporary directory");
    let ours = ca("database CA");
    let unnamed = || {
        vec![SanType::DnsName(
            "db-member.invalid".try_into().expect("name"),
        )]
    };
    let a_files = node_files_for(dir.path(), "a", &ours, &ours, unnamed());
    let b_files = node_files_for(dir.path(), "b", &ours, &ours, unnamed());
    let (a_tls, b_tls) = (free_port(), free_port());
    let checks = |port: u16| -> Vec<String> {
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-link-verify".into(),
            "ca".into(),
        ]
    };
    let a = tls_node("a", &a_files, &checks(a_tls));
    let mut b_args = checks(b_tls);
    b_args.extend(["--peer".into(), format!("a=127.0.0.1:{a_tls}")]);
    let b = tls_node("b", &b_files, &b_args);
    let mut ca_client = Client::new(a.port(), None);
    ca_client
        .call(&["AA.PEER", "SET", "b", &format!("127.0.0.1:{b_tls}")])
        .expect("AA.PEER SET");
    let peers = poll_ok(LINK_UP, || {
        let peers = parse_peers(&ca_client.call(&["AA.PEERS"])?)?;
        let up = peers.iter().any(|p| {
            p.get("state").map(String::as_str) == Some("up")
                && p.get("transport").map(String::as_str) == Some("tls")
        });
        up.then_some(peers.clone()).ok_or(format!("{peers:?}"))
    })
    .expect("a's link to b up over TLS");
    assert_eq!(peers.len(), 1);
    // A proxy in front of b (a one-shard region) over TLS.
    let proxy_files = node_files_for(dir.path(), "proxy", &ours, &ours, unnamed());
    let (proxy_plain, proxy_tls) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "proxy".into(),
        "--port".into(),
        proxy_plain.to_string(),
        "--shard-map".into(),
        format!("0-16383=127.0.0.1:{b_tls}"),
        "--tls-port".into(),
        proxy_tls.to_string(),
        "--tls-only".into(),
        "yes".into(),
        "--tls-backends".into(),
        "yes".into(),
        "--tls-auth-clients".into(),
        "optional".into(),
        "--tls-link-verify".into(),
        "ca".into(),
    ];
    args.extend(proxy_files.args());
    let _proxy = spawn(&args);
    poll_ok(LINK_UP, || {
        let out = tls_cli(proxy_tls, &proxy_files.ca, "", &["SET", "via-proxy", "1"]);
        out.contains("OK").then_some(()).ok_or(out)
    })
    .expect("SET through the TLS proxy");
    poll_ok(LINK_UP, || {
        let v = get(&mut ca_client, "via-proxy")?;
        (v == "1").then_some(()).ok_or(v)
    })
    .expect("the write reaches region a");
    assert!(std::net::TcpStream::connect(("127.0.0.1", proxy_plain)).is_err());
    drop(b);
}
