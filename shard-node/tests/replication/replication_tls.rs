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
    let key = KeyPair::generate().expect("node key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("node params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
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
