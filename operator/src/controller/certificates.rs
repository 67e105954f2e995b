//! The TLS certificate of a database with `spec.tls`.
//!
//! Contract:
//! - With `spec.tls.secretName`, that Secret (in the database's namespace) must hold
//!   `tls.crt`, `tls.key` and `ca.crt`; the operator only reads it.
//! - Otherwise the operator keeps a CA of the database's own in the Secret `<db>-ca`
//!   (`ca.crt`, `ca.key`; never mounted in a pod) and issues from it the certificate every
//!   node and proxy presents, in the Secret `<db>-tls` (`tls.crt`, `tls.key`, `ca.crt`). The
//!   certificate is valid for [`LEAF_DAYS`] days and is issued again once fewer than
//!   [`RENEW_DAYS`] remain (the annotation `aadb.dev/not-after` records its end), or when the
//!   CA changed; nodes and proxies pick the new files up without restarting.
//! - With an operator per region, the first participant's operator issues; the others copy
//!   `<db>-tls` from its cluster, as they do the passwords.
//! - Both Secrets carry the database's labels and an owner reference to it.
//! - Returns the CA (PEM) the operator trusts when it talks to the nodes, or a problem sentence.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aadb_crd::ActiveActiveDatabase;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::json;

use crate::labels;
use crate::plan::{ca_secret, tls_secret, Topology};

use super::{Context, ReconcileError};

/// Days a node certificate is valid.
pub const LEAF_DAYS: u64 = 365;
/// A node certificate is issued again when fewer days than this remain.
pub const RENEW_DAYS: u64 = 30;
/// Days the database's CA is valid.
const CA_DAYS: u64 = 3650;
/// The annotation holding the end of a certificate's validity (Unix seconds).
pub const NOT_AFTER: &str = "aadb.dev/not-after";

const DAY: u64 = 86_400;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The calendar date (UTC) of Unix time `secs`.
pub(super) fn civil_date(secs: u64) -> (i32, u8, u8) {
    // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
    let z = (secs / DAY) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Sets the validity of `params` from yesterday (clocks differ) to `days` days from now;
/// returns the end as Unix seconds (midnight of that day).
fn validity(params: &mut CertificateParams, days: u64) -> u64 {
    let now = now_secs();
    let (y, m, d) = civil_date(now.saturating_sub(DAY));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let end = now + days * DAY;
    let (y, m, d) = civil_date(end);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    end - end % DAY
}

fn ca_name(namespace: &str, database: &str) -> String {
    format!("aadb CA {namespace}/{database}")
}

fn ca_params(namespace: &str, database: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, ca_name(namespace, database));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn rcgen_error(e: rcgen::Error) -> ReconcileError {
    ReconcileError::Finalizer(format!("certificate: {e}"))
}

/// A new CA: (certificate PEM, key PEM).
fn new_ca(namespace: &str, database: &str) -> Result<(String, String), ReconcileError> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = ca_params(namespace, database);
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A node certificate signed by the CA whose key is `ca_key`: (certificate PEM, key PEM, end).
fn new_leaf(
    namespace: &str,
    database: &str,
    ca_key: &str,
) -> Result<(String, String, u64), ReconcileError> {
    let ca_key = KeyPair::from_pem(ca_key).map_err(rcgen_error)?;
    let issuer = Issuer::new(ca_params(namespace, database), ca_key);
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{database}.{namespace}"));
    params.subject_alt_names = vec![SanType::DnsName(
        format!("{database}.{namespace}.aadb")
            .try_into()
            .map_err(rcgen_error)?,
    )];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let end = validity(&mut params, LEAF_DAYS);
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem(), end))
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Writes Secret `name` with `data` (and `annotations`) in `namespace` of `api`'s cluster,
/// labelled as the database's; a Secret of that name that is not the database's is left
/// alone, and the sentence saying so is returned.
pub(super) async fn write(
    api: &Api<Secret>,
    topo: &Topology,
    name: &str,
    data: BTreeMap<&str, String>,
    annotations: BTreeMap<&str, String>,
    owner: Option<&OwnerReference>,
) -> Result<Option<String>, ReconcileError> {
    if let Some(found) = api.get_metadata_opt(name).await? {
        let l = found.metadata.labels.unwrap_or_default();
        let ours = l.get(labels::DATABASE) == Some(&topo.database)
            && l.get(labels::DATABASE_NAMESPACE) == Some(&topo.namespace);
        if !ours {
            return Ok(Some(format!(
                "Secret {}/{name} exists and is not this database's (it lacks the labels {}={} and {}={}): the operator leaves it alone; delete or rename it",
                topo.namespace,
                labels::DATABASE,
                topo.database,
                labels::DATABASE_NAMESPACE,
                topo.namespace
            )));
        }
    }
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": topo.namespace,
            "labels": labels::database_labels(&topo.database, &topo.namespace),
            "annotations": annotations,
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "type": "Opaque",
        "stringData": data,
    }))
    .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
    api.patch(
        name,
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(None)
}

/// Makes sure the database's TLS Secret exists and is current; returns its CA (PEM), `None`
/// without `spec.tls`, or a problem sentence.
pub(super) async fn ensure(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    topo: &Topology,
) -> Result<Option<Result<String, String>>, ReconcileError> {
    let Some(tls_name) = tls_secret(&topo.database, &db.spec) else {
        return Ok(None);
    };
    let ns = &topo.namespace;
    let secrets: Api<Secret> = Api::namespaced(ctx.clusters.local(), ns);
    let given = db.spec.tls.as_ref().and_then(|t| t.secret_name.as_ref());
    let owner = db.controller_owner_ref(&());
    let first = topo.participants.first();
    let copy_from = match (&ctx.only_participant, first) {
        (Some(me), Some(first)) if *me != first.name && given.is_none() => Some(first),
        _ => None,
    };
    if given.is_some() {
        let Some(secret) = secrets.get_opt(&tls_name).await? else {
            return Ok(Some(Err(format!(
                "TLS Secret {ns}/{tls_name} (spec.tls.secretName) does not exist: create it with tls.crt, tls.key and ca.crt"
            ))));
        };
        let missing: Vec<&str> = ["tls.crt", "tls.key", "ca.crt"]
            .into_iter()
            .filter(|k| text(&secret, k).is_none())
            .collect();
        if !missing.is_empty() {
            return Ok(Some(Err(format!(
                "TLS Secret {ns}/{tls_name} has no {}",
                missing.join(", ")
            ))));
        }
        return Ok(Some(Ok(text(&secret, "ca.crt").unwrap_or_default())));
    }
    if let Some(first) = copy_from {
        let remote =
            super::dereference::cluster_client(ctx, &topo.namespace, &first.cluster).await?;
        let there: Api<Secret> = Api::namespaced(remote, &first.namespace);
        let Some(source) = there.get_opt(&tls_name).await? else {
            return Ok(Some(Err(format!(
                "waiting for TLS Secret {}/{tls_name} in the cluster of participant {:?}, whose operator issues the certificates of every region",
                first.namespace, first.name
            ))));
        };
        let data: BTreeMap<&str, String> = ["tls.crt", "tls.key", "ca.crt"]
            .into_iter()
            .filter_map(|k| text(&source, k).map(|v| (k, v)))
            .collect();
        let here = secrets.get_opt(&tls_name).await?;
        let same = here.as_ref().is_some_and(|h| {
            data.iter()
                .all(|(k, v)| text(h, k).as_deref() == Some(v.as_str()))
        });
        if !same {
            if let Some(conflict) = write(
                &secrets,
                topo,
                &tls_name,
                data.clone(),
                BTreeMap::new(),
                owner.as_ref(),
            )
            .await?
            {
                return Ok(Some(Err(conflict)));
            }
        }
        return Ok(Some(Ok(data.get("ca.crt").cloned().unwrap_or_default())));
    }
    // This operator issues: the CA first, then the node certificate.
    let ca_name = ca_secret(&topo.database);
    let ca = secrets.get_opt(&ca_name).await?;
    let (ca_cert, ca_key) = match ca
        .as_ref()
        .and_then(|s| Some((text(s, "ca.crt")?, text(s, "ca.key")?)))
    {
        Some(pair) => pair,
        None => {
            let (cert, key) = new_ca(ns, &topo.database)?;
            let data = BTreeMap::from([("ca.crt", cert.clone()), ("ca.key", key.clone())]);
            if let Some(conflict) = write(
                &secrets,
                topo,
                &ca_name,
                data,
                BTreeMap::new(),
                owner.as_ref(),
            )
            .await?
            {
                return Ok(Some(Err(conflict)));
            }
            (cert, key)
        }
    };
    let current = secrets.get_opt(&tls_name).await?;
    let renew_at = now_secs() + RENEW_DAYS * DAY;
    let fresh = current.as_ref().is_some_and(|s| {
        let not_after = s
            .annotations()
            .get(NOT_AFTER)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        not_after > renew_at
            && text(s, "ca.crt").as_deref() == Some(ca_cert.as_str())
            && text(s, "tls.crt").is_some()
            && text(s, "tls.key").is_some()
    });
    if !fresh {
        let (cert, key, end) = new_leaf(ns, &topo.database, &ca_key)?;
        let data = BTreeMap::from([
            ("tls.crt", cert),
            ("tls.key", key),
            ("ca.crt", ca_cert.clone()),
        ]);
        let annotations = BTreeMap::from([(NOT_AFTER, end.to_string())]);
        if let Some(conflict) =
            write(&secrets, topo, &tls_name, data, annotations, owner.as_ref()).await?
        {
            return Ok(Some(Err(conflict)));
        }
        tracing::info!(database = %topo.database, namespace = %ns, "issued the TLS certificate of the database's nodes");
    }
    Ok(Some(Ok(ca_cert)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_796_601_600), (2026, 12, 7));
    }

    /// A certificate issued from a stored CA key chains to the stored CA certificate: rustls
    /// (as the nodes use it) accepts it for a client and a server, whatever name is asked.
    #[test]
    fn issued_certificates_chain_to_the_stored_ca() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, UnixTime};
        let (ca_cert, ca_key) = new_ca("ns", "db").expect("CA");
        let (leaf, _key, end) = new_leaf("ns", "db", &ca_key).expect("leaf");
        assert!(end > now_secs() + (LEAF_DAYS - 1) * DAY);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_cert.as_bytes()).expect("CA PEM"))
            .expect("CA");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(leaf.as_bytes()).expect("leaf PEM");
        verifier
            .verify_client_cert(&leaf, &[], UnixTime::now())
            .expect("the CA vouches for the node certificate");
        // Another CA's certificate does not chain.
        let (_, other_key) = new_ca("ns", "other").expect("CA");
        let (foreign, _, _) = new_leaf("ns", "other", &other_key).expect("leaf");
        let foreign = CertificateDer::from_pem_slice(foreign.as_bytes()).expect("PEM");
        assert!(verifier
            .verify_client_cert(&foreign, &[], UnixTime::now())
            .is_err());
    }
}
