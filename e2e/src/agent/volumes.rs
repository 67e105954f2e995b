//! Volumes as directories: the default StorageClass, a provisioner that binds every pending
//! PersistentVolumeClaim to a directory-backed PersistentVolume, and the per-pod directories.
//!
//! Contract:
//! - a default StorageClass `standard` (provisioner `aadb.local/dir`, Immediate binding)
//!   exists;
//! - every Pending claim gets a PersistentVolume `pvc-<claim uid>` pre-bound to it, whose
//!   `hostPath` is `<agent dir>/volumes/<namespace>/<claim>-<uid prefix>`; a claim of at most
//!   256 MiB gets a tmpfs of exactly its size there (`crate::disks`), so writing more than it
//!   holds fails with `ENOSPC` as on a real disk; the controller
//!   manager's binder completes the binding; the directory lives as long as the claim (pod
//!   deletion and recreation keep the data); a Released volume of ours is deleted with its
//!   directory;
//! - in a pod: `emptyDir` is a directory of the pod (kept across container restarts, removed
//!   with the pod), a claim is its volume's directory, `hostPath` is used as is, and
//!   `configMap`, `secret`, `downwardAPI` and `projected` (including service-account tokens
//!   from the TokenRequest API) are written as files when a container starts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::spec::{field_ref, sub_path, PodFacts};
use super::Shared;
use crate::Result;

/// The provisioner name of the agent's volumes.
pub const PROVISIONER: &str = "aadb.local/dir";

pub(crate) async fn ensure_storage_class(shared: &Shared) -> Result<()> {
    let api: Api<StorageClass> = Api::all(shared.client.clone());
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }))?;
    match api.create(&PostParams::default(), &sc).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn claim_dir(shared: &Shared, ns: &str, name: &str, uid: &str) -> PathBuf {
    let short: String = uid.chars().take(8).collect();
    shared
        .config
        .dir
        .join("volumes")
        .join(ns)
        .join(format!("{name}-{short}"))
}

async fn provision(shared: &Shared, pvc: &PersistentVolumeClaim) -> Result<()> {
    let (Some(ns), Some(name), Some(uid)) = (
        pvc.metadata.namespace.as_deref(),
        pvc.metadata.name.as_deref(),
        pvc.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let spec = pvc.spec.clone().unwrap_or_default();
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let dir = claim_dir(shared, ns, name, uid);
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::Error::io(format!("create {}", dir.display()), e))?;
        if let Some(bytes) = crate::disks::parse_quantity(&size) {
            if let Err(e) = crate::disks::mount_sized(&dir, bytes) {
                tracing::warn!(error = %e, "the volume is not limited to its size");
            }
        }
    }
    let modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{uid}"),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            "labels": {"aadb.local/claim-namespace": ns},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": dir, "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": name, "uid": uid,
            },
        },
    }))?;
    let api: Api<PersistentVolume> = Api::all(shared.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn reclaim(shared: &Shared, pv: &PersistentVolume) -> Result<()> {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
        .is_some_and(|p| p == PROVISIONER);
    let released = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Released" || p == "Failed");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .is_none_or(|p| p == "Delete");
    if !(ours && released && delete) {
        return Ok(());
    }
    if let Some(path) = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| PathBuf::from(&h.path))
    {
        if path.starts_with(shared.config.dir.join("volumes")) {
            crate::disks::unmount_under(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    let api: Api<PersistentVolume> = Api::all(shared.client.clone());
    if let Some(name) = &pv.metadata.name {
        match api.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Binds pending claims and reclaims released volumes until aborted.
pub(crate) async fn provisioner_loop(shared: Arc<Shared>) {
    let pvcs: Api<PersistentVolumeClaim> = Api::all(shared.client.clone());
    let pvs: Api<PersistentVolume> = Api::all(shared.client.clone());
    let claims = watcher(pvcs, watcher::Config::default())
        .map(|e| e.map(Either::Claim))
        .boxed();
    let volumes = watcher(pvs, watcher::Config::default())
        .map(|e| e.map(Either::Volume))
        .boxed();
    let mut events = futures::stream::select(claims, volumes);
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!("volume watch: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let r = match ev {
            Either::Claim(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => {
                let pending = c
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_none_or(|p| p == "Pending");
                if pending {
                    provision(&shared, &c).await
                } else {
                    Ok(())
                }
            }
            Either::Volume(watcher::Event::Apply(v) | watcher::Event::InitApply(v)) => {
                reclaim(&shared, &v).await
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!("volumes: {e}");
        }
    }
}

enum Either<A, B> {
    Claim(A),
    Volume(B),
}

/// Writes the `secret` and `configMap` volumes of a running pod again from the API, as a
/// kubelet keeps them current: a changed Secret reaches the files its pods read.
pub(crate) async fn refresh(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
) -> std::result::Result<(), String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    for v in spec.volumes.iter().flatten() {
        let dir = pod_dir.join("volumes").join(&v.name);
        if !dir.is_dir() {
            continue;
        }
        write_api_sources(shared, &ns, v, &dir).await?;
    }
    Ok(())
}

/// Writes the files of a `configMap` or `secret` volume from the API into `dir`.
async fn write_api_sources(
    shared: &Shared,
    ns: &str,
    v: &k8s_openapi::api::core::v1::Volume,
    dir: &Path,
) -> std::result::Result<(), String> {
    if let Some(cm) = &v.config_map {
        write_config_map(shared, ns, &cm.name, cm.items.as_deref(), cm.optional, dir).await?;
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        write_secret(shared, ns, &name, s.items.as_deref(), s.optional, dir).await?;
    }
    Ok(())
}

/// Host directory per volume name of a pod, prepared for a container start.
pub(crate) async fn prepare(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
    facts: &PodFacts<'_>,
) -> std::result::Result<HashMap<String, PathBuf>, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out = HashMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    for v in spec.volumes.iter().flatten() {
        let own_dir = pod_dir.join("volumes").join(&v.name);
        let dir = if let Some(c) = &v.persistent_volume_claim {
            claim_path(shared, &ns, &c.claim_name).await?
        } else if let Some(h) = &v.host_path {
            PathBuf::from(&h.path)
        } else {
            own_dir.clone()
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        write_api_sources(shared, &ns, v, &dir).await?;
        if let Some(d) = &v.downward_api {
            for item in d.items.iter().flatten() {
                if let Some(f) = &item.field_ref {
                    let val = field_ref(facts, &f.field_path).unwrap_or_default();
                    write_file(&dir, &item.path, val.as_bytes())?;
                }
            }
        }
        if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    write_config_map(
                        shared,
                        &ns,
                        &cm.name,
                        cm.items.as_deref(),
                        cm.optional,
                        &dir,
                    )
                    .await?;
                }
                if let Some(s) = &src.secret {
                    write_secret(shared, &ns, &s.name, s.items.as_deref(), s.optional, &dir)
                        .await?;
                }
                if let Some(d) = &src.downward_api {
                    for item in d.items.iter().flatten() {
                        if let Some(f) = &item.field_ref {
                            let val = field_ref(facts, &f.field_path).unwrap_or_default();
                            write_file(&dir, &item.path, val.as_bytes())?;
                        }
                    }
                }
                if let Some(t) = &src.service_account_token {
                    let token = service_account_token(
                        shared,
                        pod,
                        t.audience.clone(),
                        t.expiration_seconds,
                    )
                    .await?;
                    write_file(&dir, &t.path, token.as_bytes())?;
                }
            }
        }
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

/// `(mountPath, host path)` of a container's mounts.
pub(crate) fn mounts(
    c: &k8s_openapi::api::core::v1::Container,
    volumes: &HashMap<String, PathBuf>,
) -> std::result::Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} is not defined", m.name))?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sp) => {
                let p = sub_path(base, sp).ok_or_else(|| format!("bad subPath {sp:?}"))?;
                std::fs::create_dir_all(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
                p
            }
            None => base.clone(),
        };
        out.push((m.mount_path.clone(), host));
    }
    Ok(out)
}

async fn claim_path(
    shared: &Shared,
    ns: &str,
    claim: &str,
) -> std::result::Result<PathBuf, String> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), ns);
    let pvc = pvcs
        .get_opt(claim)
        .await
        .map_err(|e| format!("get claim {claim}: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let vol = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} is not bound"))?;
    let pvs: Api<PersistentVolume> = Api::all(shared.client.clone());
    let pv = pvs
        .get_opt(&vol)
        .await
        .map_err(|e| format!("get volume {vol}: {e}"))?
        .ok_or_else(|| format!("persistentvolume {vol:?} not found"))?;
    pv.spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| PathBuf::from(&h.path))
        .ok_or_else(|| format!("persistentvolume {vol:?} has no hostPath"))
}

fn write_file(dir: &Path, rel: &str, data: &[u8]) -> std::result::Result<(), String> {
    let p = sub_path(dir, rel).ok_or_else(|| format!("bad volume item path {rel:?}"))?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    // Written aside and renamed, so a process reading the file sees the old or the new
    // content, never a part (volumes are rewritten while pods run).
    let aside = p.with_extension("aadb-writing");
    std::fs::write(&aside, data).map_err(|e| format!("write {}: {e}", aside.display()))?;
    std::fs::rename(&aside, &p).map_err(|e| format!("rename {}: {e}", p.display()))
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
) -> std::result::Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let v = data
                    .get(&it.key)
                    .ok_or_else(|| format!("key {:?} not found", it.key))?;
                write_file(dir, &it.path, v)?;
            }
        }
        _ => {
            for (k, v) in data {
                write_file(dir, k, v)?;
            }
        }
    }
    Ok(())
}

async fn write_config_map(
    shared: &Shared,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    dir: &Path,
) -> std::result::Result<(), String> {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), ns);
    match api
        .get_opt(name)
        .await
        .map_err(|e| format!("get configmap {name}: {e}"))?
    {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            write_items(dir, &data, items)
        }
        None if optional == Some(true) => Ok(()),
        None => Err(format!("configmap {name:?} not found")),
    }
}

async fn write_secret(
    shared: &Shared,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    dir: &Path,
) -> std::result::Result<(), String> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), ns);
    match api
        .get_opt(name)
        .await
        .map_err(|e| format!("get secret {name}: {e}"))?
    {
        Some(s) => {
            let data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            write_items(dir, &data, items)
        }
        None if optional == Some(true) => Ok(()),
        None => Err(format!("secret {name:?} not found")),
    }
}

async fn service_account_token(
    shared: &Shared,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> std::result::Result<String, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(shared.client.clone(), &ns);
    let req = TokenRequest {
        metadata: Default::default(),
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            attestations: None,
            expiration_seconds: Some(expiration.unwrap_or(3607).max(600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        status: None,
    };
    let out: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("token for serviceaccount {sa}: {e}"))?;
    out.status
        .and_then(|s| s.token)
        .ok_or_else(|| "token request returned no token".to_string())
}
