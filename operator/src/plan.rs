//! The topology of a database: which objects exist in which cluster and namespace, and their
//! names. Pure: the same spec always gives the same plan.
//!
//! Contract: participant `p` of database `d` has, per shard `k`, a StatefulSet, a primary
//! Service and a PodDisruptionBudget named `d-p-k`, a headless Service `d-p-k-nodes`, pods
//! `d-p-k-0…`, and one region endpoint Service `d-p`; hash slots 0-16383 are split evenly and
//! contiguously over the shards. A participant is managed by this operator unless the operator
//! runs for one participant only (`--participant`), in which case only that one is.

use aadb_crd::{ActiveActiveDatabaseSpec, EndpointType, SecretKeyRef};

/// Number of hash slots.
pub const SLOTS: u32 = 16384;

/// Which cluster a participant lives in, as the operator reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterTarget {
    /// The cluster the database object is in.
    Local,
    /// A cluster reached with a kubeconfig from a Secret in the database's namespace.
    Remote(SecretKeyRef),
}

/// One shard of one participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// Shard index.
    pub index: u32,
    /// StatefulSet, primary Service and PodDisruptionBudget name.
    pub name: String,
    /// Headless Service name (the StatefulSet's `serviceName`).
    pub headless_service: String,
    /// First and last hash slot.
    pub slots: (u32, u32),
    /// Pod names, ordinal order.
    pub pods: Vec<String>,
}

/// One participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantPlan {
    /// Participant name.
    pub name: String,
    /// Namespace of its objects.
    pub namespace: String,
    /// Its cluster.
    pub cluster: ClusterTarget,
    /// Whether this operator creates and deletes its objects.
    pub managed: bool,
    /// Zones its pods spread over.
    pub zones: Vec<String>,
    /// Replicas of each shard primary.
    pub replicas: u32,
    /// How others reach it.
    pub endpoint_type: EndpointType,
    /// Explicit host with `EndpointType::Host`, and the port of shard 0 there.
    pub endpoint_host: Option<(String, u16)>,
    /// Networks LoadBalancer Services admit (empty: any).
    pub source_ranges: Vec<String>,
    /// Region endpoint Service name.
    pub region_service: String,
    /// Its shards.
    pub shards: Vec<ShardPlan>,
    /// Proxy pods (0: none, the region endpoint serves shard 0).
    pub proxies: u32,
    /// Proxy Deployment and PodDisruptionBudget name.
    pub proxy_name: String,
}

/// Everything of one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Database name.
    pub database: String,
    /// Database namespace.
    pub namespace: String,
    /// Participants, in spec order.
    pub participants: Vec<ParticipantPlan>,
    /// Cluster API mode: every shard-node pod has a Service of its own, whose address the
    /// nodes announce.
    pub cluster_api: bool,
}

impl Topology {
    /// The participant named `name`.
    pub fn participant(&self, name: &str) -> Option<&ParticipantPlan> {
        self.participants.iter().find(|p| p.name == name)
    }
}

/// Object base name of shard `shard` of `participant`.
pub fn shard_object_name(database: &str, participant: &str, shard: u32) -> String {
    format!("{database}-{participant}-{shard}")
}

/// Hash slots of shard `index` of `shards`.
pub fn slot_range(index: u32, shards: u32) -> (u32, u32) {
    let shards = shards.max(1);
    let first = index * SLOTS / shards;
    let last = (index + 1) * SLOTS / shards - 1;
    (first, last)
}

/// Plans the database `database` in `namespace`; `only_participant` is the operator's
/// `--participant`, if any.
pub fn plan(
    database: &str,
    namespace: &str,
    spec: &ActiveActiveDatabaseSpec,
    only_participant: Option<&str>,
) -> Topology {
    let participants = spec
        .participants
        .iter()
        .map(|p| {
            let replicas = spec.replicas_in(p);
            let shards = (0..spec.shards)
                .map(|k| {
                    let name = shard_object_name(database, &p.name, k);
                    ShardPlan {
                        index: k,
                        headless_service: format!("{name}-nodes"),
                        slots: slot_range(k, spec.shards),
                        pods: (0..=replicas).map(|o| format!("{name}-{o}")).collect(),
                        name,
                    }
                })
                .collect();
            let cluster = match (
                only_participant,
                p.cluster
                    .as_ref()
                    .and_then(|c| c.kubeconfig_secret_ref.clone()),
            ) {
                // Per-cluster mode: the operator's own participant is in its cluster.
                (Some(me), _) if me == p.name => ClusterTarget::Local,
                (_, Some(secret)) => ClusterTarget::Remote(secret),
                (_, None) => ClusterTarget::Local,
            };
            let endpoint_host = p.endpoint.as_ref().and_then(|e| {
                e.host
                    .clone()
                    .map(|h| (h, e.port.unwrap_or(aadb_crd::SHARD_NODE_PORT)))
            });
            ParticipantPlan {
                name: p.name.clone(),
                namespace: p.namespace_or(namespace).to_string(),
                managed: only_participant.is_none_or(|me| me == p.name),
                zones: p.zones.iter().map(|z| z.0.clone()).collect(),
                replicas,
                endpoint_type: p.endpoint_type(),
                endpoint_host,
                source_ranges: p
                    .endpoint
                    .as_ref()
                    .map(|e| e.load_balancer_source_ranges.clone())
                    .unwrap_or_default(),
                region_service: format!("{database}-{}", p.name),
                cluster,
                shards,
                proxies: spec
                    .proxy
                    .as_ref()
                    .map_or(aadb_crd::DEFAULT_PROXY_REPLICAS, |x| x.replicas),
                proxy_name: format!("{database}-{}-proxy", p.name),
            }
        })
        .collect();
    Topology {
        database: database.to_string(),
        namespace: namespace.to_string(),
        participants,
        cluster_api: spec.cluster_api,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ActiveActiveDatabaseSpec {
        serde_json::from_value(json).expect("test spec parses")
    }

    #[test]
    fn slots_cover_the_space_without_gaps() {
        for shards in 1..=64 {
            let mut next = 0;
            for k in 0..shards {
                let (a, b) = slot_range(k, shards);
                assert_eq!(a, next, "shards={shards} k={k}");
                assert!(b >= a);
                next = b + 1;
            }
            assert_eq!(next, SLOTS);
        }
    }

    #[test]
    fn names_pods_and_clusters() {
        let s = spec(serde_json::json!({
            "shards": 2, "replicasPerShard": 1,
            "participants": [
                {"name": "east", "zones": ["a", "b"]},
                {"name": "west", "zones": ["c"], "namespace": "w", "replicasPerShard": 2,
                 "cluster": {"kubeconfigSecretRef": {"name": "west-kc"}}}
            ]
        }));
        let t = plan("db", "ns", &s, None);
        let east = t.participant("east").expect("east planned");
        assert_eq!(east.namespace, "ns");
        assert_eq!(east.cluster, ClusterTarget::Local);
        assert_eq!(east.shards[1].name, "db-east-1");
        assert_eq!(east.shards[1].pods, vec!["db-east-1-0", "db-east-1-1"]);
        assert_eq!(east.region_service, "db-east");
        let west = t.participant("west").expect("west planned");
        assert_eq!(west.namespace, "w");
        assert_eq!(west.shards[0].pods.len(), 3);
        assert!(matches!(west.cluster, ClusterTarget::Remote(ref r) if r.name == "west-kc"));
        assert!(west.managed && east.managed);
    }

    #[test]
    fn per_cluster_mode_manages_only_its_participant_and_treats_it_as_local() {
        let s = spec(serde_json::json!({
            "participants": [
                {"name": "east", "zones": ["a"], "cluster": {"kubeconfigSecretRef": {"name": "e"}}},
                {"name": "west", "zones": ["b"], "endpoint": {"type": "Host", "host": "w.example", "port": 7000}}
            ]
        }));
        let t = plan("db", "ns", &s, Some("east"));
        let east = t.participant("east").expect("east");
        assert!(east.managed);
        assert_eq!(east.cluster, ClusterTarget::Local);
        let west = t.participant("west").expect("west");
        assert!(!west.managed);
        assert_eq!(west.endpoint_host, Some(("w.example".to_string(), 7000)));
    }
}

/// A key of a Secret in the database's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// The name of the internal user of every node and proxy the operator runs.
pub const INTERNAL_USER: &str = "aadb-internal";

/// Where the application password (the `default` user's) is: `spec.auth`'s Secret, or the
/// Secret named after the database that the operator generates, key `password`.
pub fn password_secret(database: &str, spec: &ActiveActiveDatabaseSpec) -> SecretKey {
    match &spec.auth {
        Some(auth) => SecretKey {
            name: auth.password_secret_ref.name.clone(),
            key: auth
                .password_secret_ref
                .key
                .clone()
                .unwrap_or_else(|| "password".into()),
        },
        None => SecretKey {
            name: database.to_string(),
            key: "password".into(),
        },
    }
}

/// Where the internal user's password is: the Secret `<database>-internal`, key `password`.
pub fn internal_secret(database: &str) -> SecretKey {
    SecretKey {
        name: format!("{database}-internal"),
        key: "password".into(),
    }
}

/// The Secret (`tls.crt`, `tls.key`, `ca.crt`) every node and proxy of a database with TLS
/// uses: `spec.tls.secretName`, or `<database>-tls` that the operator issues. `None` without
/// TLS.
pub fn tls_secret(database: &str, spec: &ActiveActiveDatabaseSpec) -> Option<String> {
    let tls = spec.tls.as_ref()?;
    Some(
        tls.secret_name
            .clone()
            .unwrap_or_else(|| format!("{database}-tls")),
    )
}

/// The Secret holding the CA key of a database whose certificates the operator issues; never
/// mounted in a pod.
pub fn ca_secret(database: &str) -> String {
    format!("{database}-ca")
}

/// The Secret holding the users file of a database's nodes and proxies.
pub fn acl_secret(database: &str) -> String {
    format!("{database}-acl")
}

/// The key of the users file in [`acl_secret`].
pub const ACL_FILE_KEY: &str = "users.acl";
