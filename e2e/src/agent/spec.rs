//! Turning a container spec into a process: environment, `$(VAR)` expansion and paths.
//!
//! Contract (the kubelet's rules, minus what a process cannot do):
//! - `env` is resolved in order; `value` expands `$(NAME)` of variables defined before it
//!   (`$$` escapes, unknown references stay as written); `valueFrom` supports `fieldRef`
//!   (`metadata.name|namespace|uid`, `metadata.labels['k']`, `metadata.annotations['k']`,
//!   `spec.nodeName`, `spec.serviceAccountName`, `status.podIP(s)`, `status.hostIP(s)`),
//!   `resourceFieldRef` (limits or requests of the container, else node-sized defaults),
//!   `configMapKeyRef` and `secretKeyRef` (honouring `optional`); `envFrom` adds every key of
//!   a ConfigMap or Secret with its prefix, before `env`;
//! - command and args expand `$(NAME)` against the final environment;
//! - a process has no mount namespace, so a volume's `mountPath` is mapped to a host
//!   directory: every mount path that appears as a whole path in an argument or variable
//!   value (alone, as `--flag=/data/x`, or inside a shell script) is rewritten to the host
//!   path. Programs that build paths from other inputs should take them from flags or
//!   variables.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

/// ConfigMaps and Secrets of the pod's namespace that the spec refers to, by name.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// ConfigMap name → data.
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
    /// Secret name → decoded data.
    pub secrets: HashMap<String, BTreeMap<String, String>>,
}

/// Pod-level values a container's environment may refer to.
#[derive(Clone, Debug)]
pub struct PodFacts<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its loopback address.
    pub pod_ip: String,
    /// Its node's address.
    pub host_ip: String,
}

/// The value of a `fieldRef` path, if the path is supported and the value known.
pub fn field_ref(facts: &PodFacts<'_>, path: &str) -> Option<String> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let bracket = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .or_else(|| Some("default".into())),
        "status.podIP" | "status.podIPs" => Some(facts.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => Some(facts.host_ip.clone()),
        _ => {
            if let Some(k) = bracket("metadata.labels['") {
                return meta.labels.as_ref().and_then(|l| l.get(&k).cloned());
            }
            if let Some(k) = bracket("metadata.annotations['") {
                return meta.annotations.as_ref().and_then(|a| a.get(&k).cloned());
            }
            None
        }
    }
}

/// Kubernetes `$(NAME)` expansion: defined names are replaced, `$$` becomes `$`, anything
/// else is kept as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => {
                    let name = &inner[..j];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[j + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn resource_value(c: &Container, resource: &str) -> String {
    let res = c.resources.as_ref();
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let q = match kind {
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => res.and_then(|r| r.limits.as_ref()),
    }
    .and_then(|m| m.get(name))
    .map(|q| q.0.clone());
    q.unwrap_or_else(|| match name {
        "cpu" => "8".into(),
        "memory" => "34359738368".into(),
        _ => "0".into(),
    })
}

/// The container's environment in order, or why it cannot be built (a missing required
/// ConfigMap, Secret or key).
pub fn resolve_env(
    c: &Container,
    facts: &PodFacts<'_>,
    lookup: &Lookup,
) -> Result<Vec<(String, String)>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |k: String, v: String, order: &mut Vec<String>, vars: &mut HashMap<String, String>| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match lookup.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(format!("{prefix}{k}"), v.clone(), &mut order, &mut vars);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match lookup.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(format!("{prefix}{k}"), v.clone(), &mut order, &mut vars);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &vars))
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                Some(
                    field_ref(facts, &f.field_path)
                        .ok_or_else(|| format!("unsupported fieldRef {:?}", f.field_path))?,
                )
            } else if let Some(r) = &from.resource_field_ref {
                Some(resource_value(c, &r.resource))
            } else if let Some(r) = &from.config_map_key_ref {
                match lookup.config_maps.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => Some(v.clone()),
                    None if r.optional == Some(true) => None,
                    None => {
                        return Err(format!("configmap {:?} key {:?} not found", r.name, r.key))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match lookup.secrets.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => Some(v.clone()),
                    None if r.optional == Some(true) => None,
                    None => return Err(format!("secret {:?} key {:?} not found", r.name, r.key)),
                }
            } else {
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(e.name.clone(), v, &mut order, &mut vars);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| vars.get(&k).map(|v| (k.clone(), v.clone())))
        .collect())
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

/// Rewrites container paths under a mount to host paths (see the module contract): every
/// occurrence of a mount path that starts a path (at the start, or after a character that
/// cannot be part of a path) and ends one (at the end, at `/`, or before such a character)
/// is replaced in a single pass, longest mount path first, so `/data` inside `/database` or
/// inside an already rewritten host path is left alone.
pub fn rewrite_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut sorted: Vec<(&str, String)> = mounts
        .iter()
        .map(|(m, h)| (m.trim_end_matches('/'), h.display().to_string()))
        .filter(|(m, _)| !m.is_empty())
        .collect();
    sorted.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < value.len() {
        let rest = &value[i..];
        let starts_path = prev.is_none_or(|p| !path_char(p));
        let hit = if starts_path && rest.starts_with('/') {
            sorted.iter().find(|(m, _)| {
                rest.starts_with(m)
                    && rest[m.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == '/' || !path_char(c))
            })
        } else {
            None
        };
        match hit {
            Some((m, host)) => {
                out.push_str(host);
                i += m.len();
                prev = m.chars().last();
            }
            None => {
                let Some(c) = rest.chars().next() else { break };
                out.push(c);
                i += c.len_utf8();
                prev = Some(c);
            }
        }
    }
    out
}

/// The argv of a container after the entrypoint: `command[1..]` (or none) and `args`, each
/// `$(VAR)`-expanded against `env` and path-rewritten.
pub fn resolve_args(
    rest_of_command: &[String],
    args: &[String],
    env: &[(String, String)],
    mounts: &[(String, PathBuf)],
) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    rest_of_command
        .iter()
        .chain(args.iter())
        .map(|a| rewrite_path(&expand(a, &vars), mounts))
        .collect()
}

/// A host directory for `subPath` inside a volume directory, refusing escapes.
pub fn sub_path(volume_dir: &Path, sub: &str) -> Option<PathBuf> {
    let rel = Path::new(sub);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return None;
    }
    Some(volume_dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec};
    use kube::api::ObjectMeta;

    fn vars(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let v = vars(&[("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &v), "1-two");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$(C) $A $(", &v), "$(C) $A $(");
        assert_eq!(expand("x$", &v), "x$");
    }

    #[test]
    fn env_resolves_field_refs_and_earlier_names() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: None,
        };
        let fr = |p: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: p.into(),
                api_version: None,
            }),
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar {
                    name: "NAME".into(),
                    value_from: Some(fr("metadata.name")),
                    value: None,
                },
                EnvVar {
                    name: "IP".into(),
                    value_from: Some(fr("status.podIP")),
                    value: None,
                },
                EnvVar {
                    name: "APP".into(),
                    value_from: Some(fr("metadata.labels['app']")),
                    value: None,
                },
                EnvVar {
                    name: "ADDR".into(),
                    value: Some("$(IP):6379/$(NAME)".into()),
                    value_from: None,
                },
            ]),
            ..Default::default()
        };
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "127.10.1.2".into(),
            host_ip: "127.10.1.1".into(),
        };
        let env = resolve_env(&c, &facts, &Lookup::default()).expect("env");
        let m: HashMap<_, _> = env.into_iter().collect();
        assert_eq!(m["NAME"], "web-0");
        assert_eq!(m["APP"], "web");
        assert_eq!(m["ADDR"], "127.10.1.2:6379/web-0");
    }

    #[test]
    fn missing_required_secret_is_an_error() {
        use k8s_openapi::api::core::v1::SecretKeySelector;
        let c = Container {
            name: "c".into(),
            env: Some(vec![EnvVar {
                name: "PW".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "s".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        let pod = Pod::default();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: String::new(),
            host_ip: String::new(),
        };
        assert!(resolve_env(&c, &facts, &Lookup::default()).is_err());
        let mut l = Lookup::default();
        l.secrets
            .insert("s".into(), [("k".to_string(), "pw".to_string())].into());
        assert_eq!(resolve_env(&c, &facts, &l).expect("ok")[0].1, "pw");
    }

    #[test]
    fn paths_under_mounts_are_rewritten() {
        let mounts = vec![
            ("/data".to_string(), PathBuf::from("/run/x/pvc")),
            ("/data/sub/".to_string(), PathBuf::from("/run/x/other")),
        ];
        assert_eq!(rewrite_path("/data", &mounts), "/run/x/pvc");
        assert_eq!(rewrite_path("/data/a.log", &mounts), "/run/x/pvc/a.log");
        assert_eq!(rewrite_path("/data/sub/f", &mounts), "/run/x/other/f");
        assert_eq!(rewrite_path("--dir=/data", &mounts), "--dir=/run/x/pvc");
        assert_eq!(rewrite_path("/database", &mounts), "/database");
        assert_eq!(rewrite_path("a=/data", &mounts), "a=/run/x/pvc");
        assert_eq!(rewrite_path("/x/data", &mounts), "/x/data");
        assert_eq!(
            rewrite_path("cat /data/f > '/data/sub/g';ls /data", &mounts),
            "cat /run/x/pvc/f > '/run/x/other/g';ls /run/x/pvc"
        );
        let nested = vec![("/work".to_string(), PathBuf::from("/work/run/v"))];
        assert_eq!(
            rewrite_path("/work /work/a", &nested),
            "/work/run/v /work/run/v/a"
        );
        let args = resolve_args(
            &["--dir".to_string()],
            &["/data".to_string(), "$(P)".to_string()],
            &[("P".to_string(), "7".to_string())],
            &mounts,
        );
        assert_eq!(args, vec!["--dir", "/run/x/pvc", "7"]);
    }

    #[test]
    fn sub_paths_cannot_escape() {
        assert!(sub_path(Path::new("/v"), "../x").is_none());
        assert!(sub_path(Path::new("/v"), "/etc").is_none());
        assert_eq!(
            sub_path(Path::new("/v"), "a/b"),
            Some(PathBuf::from("/v/a/b"))
        );
    }
}
