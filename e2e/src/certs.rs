//! Certificates and keys of one local cluster, generated with rcgen.
//!
//! Contract: a serving CA signs the kube-apiserver's certificate (valid for 127.0.0.1,
//! `localhost`, the first service IP and the `kubernetes.default.svc` names); a separate client
//! CA signs client certificates (the apiserver's `--client-ca-file`); a service-account key pair
//! signs and verifies tokens. Everything is PEM; nothing leaves the run directory.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{Error, Result};

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertPair {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

/// All the certificates of one cluster.
#[derive(Clone, Debug)]
pub struct ClusterCerts {
    /// CA of the apiserver's serving certificate (clients trust it; also the root CA that the
    /// controller manager publishes in `kube-root-ca.crt`).
    pub serving_ca: CertPair,
    /// CA that signs client certificates.
    pub client_ca: CertPair,
    /// The apiserver's serving certificate.
    pub apiserver: CertPair,
    /// Service-account token signing key (PKCS#8) and its public key.
    pub service_account_key_pem: String,
    /// The public half of the service-account key.
    pub service_account_pub_pem: String,
    /// `admin`, group `system:masters`.
    pub admin: CertPair,
    /// `system:kube-controller-manager`.
    pub controller_manager: CertPair,
    /// `system:kube-scheduler`.
    pub scheduler: CertPair,
}

/// Where [`ClusterCerts::write`] put the files.
#[derive(Clone, Debug)]
pub struct CertPaths {
    /// Serving CA certificate.
    pub serving_ca: PathBuf,
    /// Client CA certificate.
    pub client_ca: PathBuf,
    /// Apiserver certificate.
    pub apiserver_cert: PathBuf,
    /// Apiserver key.
    pub apiserver_key: PathBuf,
    /// Service-account private key.
    pub sa_key: PathBuf,
    /// Service-account public key.
    pub sa_pub: PathBuf,
}

const SERVING_CA: &str = "aadb-e2e serving CA";
const CLIENT_CA: &str = "aadb-e2e client CA";

fn ca_params(common_name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn ca(common_name: &str) -> Result<(CertPair, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let params = ca_params(common_name)?;
    let cert = params.self_signed(&key)?;
    let pair = CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    Ok((pair, Issuer::new(params, key)))
}

fn client(issuer: &Issuer<'_, KeyPair>, common_name: &str, orgs: &[&str]) -> Result<CertPair> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl ClusterCerts {
    /// Generates a fresh set; `service_ip` is the first address of the service range (the
    /// `kubernetes` Service's cluster IP).
    pub fn generate(service_ip: Ipv4Addr, host_ip: Ipv4Addr) -> Result<Self> {
        let (serving_ca, serving_issuer) = ca(SERVING_CA)?;
        let (client_ca, client_issuer) = ca(CLIENT_CA)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(service_ip)));
        if host_ip != Ipv4Addr::LOCALHOST {
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(host_ip)));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &serving_issuer)?;
        let apiserver = CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };

        let sa = KeyPair::generate()?;
        Ok(ClusterCerts {
            admin: client(&client_issuer, "admin", &["system:masters"])?,
            controller_manager: client(&client_issuer, "system:kube-controller-manager", &[])?,
            scheduler: client(&client_issuer, "system:kube-scheduler", &[])?,
            serving_ca,
            client_ca,
            apiserver,
            service_account_key_pem: sa.serialize_pem(),
            service_account_pub_pem: sa.public_key_pem(),
        })
    }

    /// Issues another client certificate from this cluster's client CA (for example an
    /// operator identity bound by RBAC).
    pub fn issue_client(&self, common_name: &str, orgs: &[&str]) -> Result<CertPair> {
        let key = KeyPair::from_pem(&self.client_ca.key_pem)?;
        // The issuer is its name, key usages and key; the key identifier derives from the key.
        let issuer = Issuer::new(ca_params(CLIENT_CA)?, key);
        client(&issuer, common_name, orgs)
    }

    /// Writes the files the control-plane processes read into `dir`.
    pub fn write(&self, dir: &Path) -> Result<CertPaths> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let put = |name: &str, body: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
            Ok(p)
        };
        Ok(CertPaths {
            serving_ca: put("serving-ca.crt", &self.serving_ca.cert_pem)?,
            client_ca: put("client-ca.crt", &self.client_ca.cert_pem)?,
            apiserver_cert: put("apiserver.crt", &self.apiserver.cert_pem)?,
            apiserver_key: put("apiserver.key", &self.apiserver.key_pem)?,
            sa_key: put("sa.key", &self.service_account_key_pem)?,
            sa_pub: put("sa.pub", &self.service_account_pub_pem)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_pem_material() {
        let c = ClusterCerts::generate(Ipv4Addr::new(127, 10, 240, 1), Ipv4Addr::LOCALHOST)
            .expect("certs");
        assert!(c
            .serving_ca
            .cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.admin.key_pem.contains("PRIVATE KEY"));
        assert_ne!(c.serving_ca.cert_pem, c.client_ca.cert_pem);
        assert!(c.service_account_pub_pem.contains("PUBLIC KEY"));
        let extra = c.issue_client("aadb-operator", &["aadb"]).expect("client");
        assert!(extra.cert_pem.contains("CERTIFICATE"));
    }
}
