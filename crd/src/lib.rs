//! API types of the `ActiveActiveDatabase` custom resource (`aadb.dev/v1alpha1`, short name
//! `aadb`).
//!
//! Contract:
//! - these types are the source of the CRD schema: `crdgen` prints [`crd_yaml`], which
//!   `make generate` writes to `manifests/crd/` and to the chart's `crds/`; every field's doc
//!   comment becomes its `kubectl explain` text;
//! - what the schema can refuse it refuses (bounds, patterns, enums, CEL rules for unique
//!   participant names, at least one zone, an immutable shard count, an explicit host when the
//!   endpoint type is `Host`); what it cannot is checked by the operator and reported as
//!   `SpecValid=False`;
//! - optional fields have documented defaults; the `effective_*` helpers return them, so every
//!   reader applies the same defaults.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "aadb.dev";
/// API version of the resource.
pub const VERSION: &str = "v1alpha1";
/// Image used when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = "ghcr.io/aadb/shard-node:0.1.0";
/// Port every shard-node listens on for clients, replicas and peers.
pub const SHARD_NODE_PORT: u16 = 6379;
/// Port of every shard-node's Prometheus endpoint.
pub const SHARD_NODE_METRICS_PORT: u16 = 9121;

/// An active-active, geo-distributed, Redis-compatible database.
///
/// Every participant (region) holds a full copy sharded the same way, accepts reads and writes,
/// and exchanges effects with every other participant; concurrent writes merge by the CRDT rules
/// of each data type.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "aadb.dev",
    version = "v1alpha1",
    kind = "ActiveActiveDatabase",
    plural = "activeactivedatabases",
    singular = "activeactivedatabase",
    shortname = "aadb",
    namespaced,
    status = "ActiveActiveDatabaseStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Regions","type":"integer","jsonPath":".status.regions"}"#,
    printcolumn = r#"{"name":"Shards","type":"integer","jsonPath":".spec.shards"}"#,
    printcolumn = r#"{"name":"Ready Shards","type":"string","jsonPath":".status.readyShards"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ActiveActiveDatabaseSpec {
    /// The regions that hold a copy of the database. Names must be unique; each participant
    /// lives in a cluster (this one, or one reached through `cluster.kubeconfigSecretRef`).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.filter(q, q.name == p.name).size() == 1)").message("participant names must be unique"))]
    pub participants: Vec<Participant>,

    /// Number of shards the hash slots (0-16383) are split over evenly; every participant has
    /// the same shards. Cannot change after creation (resharding does not exist yet).
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("shards cannot change after creation: resharding is not supported yet; create a new database instead"))]
    pub shards: u32,

    /// Replicas of every shard primary inside each region (0-5), spread over the participant's
    /// zones. Default 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: u32,

    /// Container image of the shard-node. Default `ghcr.io/aadb/shard-node:0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Compute resources of every shard-node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Memory limit of the dataset of one shard-node, as a byte count with an optional unit
    /// (`100mb`, `2gb`, `1048576`). Writes past it fail with an OOM error. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+([kKmMgG][bB]?)?$"), length(max = 32))]
    pub maxmemory: Option<String>,

    /// Durability of every shard-node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,

    /// Password clients, replicas and peers use, from a Secret in this object's namespace.
    /// The operator copies it into participant namespaces elsewhere (and deletes the copies with
    /// the database); a Secret of that name it did not create there is used as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    /// TLS for links between shard-nodes. Reserved: the operator does not run links over TLS
    /// yet and reports a spec that sets it as invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Automatic failover of shard primaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,

    /// Per-region proxy that routes commands to the shard owning each key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,
    /// NetworkPolicies that admit only the traffic the database needs (`{}` turns them on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    /// Users besides `default`, with Redis ACL rules: for applications that need less than
    /// every command, or only some keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub users: Vec<UserSpec>,

    /// The Redis Cluster API for cluster-aware clients (Redis Enterprise calls it the "OSS
    /// Cluster API"): every shard-node pod gets a Service of its own (of the participant's
    /// endpoint type), and the nodes announce those addresses in `CLUSTER SLOTS`, `SHARDS`
    /// and `NODES` and in `MOVED` redirections, so clients inside and outside the cluster
    /// send each key straight to its shard, and read from replicas with `READONLY`. The
    /// proxies keep serving ordinary clients at the region endpoint. Needs endpoint type
    /// LoadBalancer or NodePort.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_api: bool,
    /// When the application password or the password of a `spec.users` user changes (in its
    /// Secret), how long the previous one stays accepted, in seconds, so clients can move to
    /// the new one without an authentication error. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub password_rotation_grace_seconds: Option<u32>,

    /// Additions to every shard-node pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,
}

fn default_shards() -> u32 {
    1
}

fn default_replicas() -> u32 {
    1
}

/// One region holding a copy of the database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Region id, unique in the database: a DNS label of at most 30 characters. It names the
    /// participant's objects and identifies its writes.
    #[schemars(
        length(min = 1, max = 30),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Which cluster the participant runs in. Empty: the cluster this object lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRef>,

    /// Namespace of the participant's objects in its cluster. Default: this object's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,

    /// Values of the `topology.kubernetes.io/zone` node label to spread every shard's pods
    /// over. At least one.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = Rule::new("self.all(z, self.filter(y, y == z).size() == 1)").message("zones must be unique"))]
    pub zones: Vec<Zone>,

    /// How other regions and clients reach this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointSpec>,

    /// Replicas per shard in this region, overriding `spec.replicasPerShard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: Option<u32>,

    /// Compute resources in this region, overriding `spec.resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A zone name (a `topology.kubernetes.io/zone` label value).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Zone(
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub String,
);

/// Where a participant's cluster is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// A Secret in this object's namespace holding a kubeconfig for the participant's cluster.
    /// Absent: the cluster this object lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data. Default depends on the use (`kubeconfig`, `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// How a region is reached.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'Host' ? has(self.host) : !has(self.host)").message("endpoint.host is required when endpoint.type is Host and not allowed otherwise"))]
pub struct EndpointSpec {
    /// `LoadBalancer` (default): Services of type LoadBalancer, reached at their ingress
    /// address. `NodePort`: reached at a node address and the node port. `Host`: reached at
    /// `host`, which something outside the operator routes to the region's Services.
    #[serde(rename = "type", default)]
    pub kind: EndpointType,
    /// Host name or address other regions use, with `type: Host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// Port of shard 0 at `host` with `type: Host`; shard `k` is at `port + k`. Default 6379.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// With `type: LoadBalancer`, the client networks (CIDRs such as `10.0.0.0/8`) the load
    /// balancers admit; every other source is refused by the load balancer. Empty: any.
    /// Remember to include the other regions' addresses, which link to this region's shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub load_balancer_source_ranges: Vec<String>,
}

/// Kinds of region endpoints.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EndpointType {
    /// A Service of type LoadBalancer.
    #[default]
    LoadBalancer,
    /// A Service of type NodePort.
    NodePort,
    /// An explicit host.
    Host,
}

/// Durability settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    /// When the effect log is flushed to disk: `always` (default: before every reply, so a
    /// primary that crashes and restarts still holds every write it acknowledged, which
    /// zero-loss failover relies on), `everysec` (faster; a crashed primary that restarts
    /// before it is failed over can forget up to a second of acknowledged writes), or `no`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appendfsync: Option<AppendFsync>,
    /// StorageClass of each pod's volume. Default: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Size of each pod's volume. Default `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// What happens to the pods' volume claims when a participant leaves the spec (or is
    /// renamed) and when the database is deleted: `Retain` (default; the claims stay, and a
    /// participant added back, or a database created again under the same name, finds its
    /// data) or `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_policy: Option<ReclaimPolicy>,
}

/// What happens to volume claims that the database no longer uses.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReclaimPolicy {
    /// Keep them: data is deleted only by deleting the claims.
    #[default]
    Retain,
    /// Delete them with the participant or the database.
    Delete,
}

/// Effect-log flush policies.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    /// Flush before every reply.
    #[default]
    Always,
    /// Flush once a second.
    Everysec,
    /// Let the operating system flush.
    No,
}

impl AppendFsync {
    /// The shard-node flag value.
    pub fn as_flag(self) -> &'static str {
        match self {
            AppendFsync::Always => "always",
            AppendFsync::Everysec => "everysec",
            AppendFsync::No => "no",
        }
    }
}

/// Authentication settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// The Secret key holding the password (key default `password`).
    pub password_secret_ref: SecretKeyRef,
}

/// Which traffic the NetworkPolicies admit besides the database's own pods. Shard-node pods
/// then accept connections only from the database's pods, the operator's namespace and
/// `peerCidrs` (and from anyone in Cluster API mode, whose clients reach the nodes); proxies
/// accept clients from anywhere (limit those with `endpoint.loadBalancerSourceRanges`); the
/// metrics ports only from `metricsNamespace`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Addresses (CIDRs) other regions' links come from, as this cluster sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub peer_cidrs: Vec<String>,
    /// The namespace the operator runs in, whose pods reach the nodes (default `aadb-system`,
    /// where the chart installs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub operator_namespace: Option<String>,
    /// The namespace whose pods may scrape the metrics ports (e.g. `monitoring`); none: no one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub metrics_namespace: Option<String>,
}

/// A user of the database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The user name (`AUTH <name> <password>`): letters, digits, `_`, `-` and `.`; not
    /// `default` nor `aadb-internal`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// The Secret key holding the user's password (key default `password`), in the database's
    /// namespace.
    pub password_secret_ref: SecretKeyRef,
    /// Redis ACL rules, applied in order to a user that starts with nothing: key patterns
    /// (`~app:*`, `allkeys`), channel patterns (`&news.*`, `allchannels`), commands and
    /// categories (`+@read`, `-flushall`, `+client|setname`, `allcommands`). Passwords come
    /// from the Secret, not from rules.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub rules: Vec<String>,
}

/// TLS settings. With `spec.tls` set (`tls: {}` is enough), every connection of the database
/// runs over TLS: replicas and peers with mutual authentication, clients and the operator
/// with the database's CA; the plaintext ports close.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret with `tls.crt`, `tls.key` and `ca.crt` to use instead of the certificate the
    /// operator issues from a CA of the database's own. Every node, proxy and client must
    /// trust its `ca.crt`, and every certificate that CA signed is accepted as a member of the
    /// database. It must exist in every participant's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// Failover settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Whether the operator promotes a replica when a primary fails. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a primary may stay unreachable or not Ready before a replica replaces it, in
    /// milliseconds (300-60000). Default 1000.
    #[serde(default = "default_detection_ms")]
    #[schemars(range(min = 300, max = 60000))]
    pub detection_timeout_millis: u32,
    /// Failed probes in a row (each at most the detection timeout divided by this number)
    /// that mark a primary unreachable (1-10). Default 3.
    #[serde(default = "default_probes")]
    #[schemars(range(min = 1, max = 10))]
    pub probes: u32,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            enabled: true,
            detection_timeout_millis: default_detection_ms(),
            probes: default_probes(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_detection_ms() -> u32 {
    1000
}

fn default_probes() -> u32 {
    3
}

/// Proxies per region when the spec does not say.
pub const DEFAULT_PROXY_REPLICAS: u32 = 2;

fn default_proxy_replicas() -> u32 {
    DEFAULT_PROXY_REPLICAS
}

/// Proxy settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy pods per region (`shard-node proxy`, all active): the region endpoint then selects
    /// them, and they route each command to the shard owning its keys, so clients see one
    /// database however many shards it has. 0 runs no proxy: the region endpoint serves
    /// shard 0 and each shard has its own endpoint. Default 2 (also without `proxy`).
    #[serde(default = "default_proxy_replicas")]
    #[schemars(range(min = 0, max = 16))]
    pub replicas: u32,
    /// CPU and memory of each proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ProxySpec {
    fn default() -> Self {
        ProxySpec {
            replicas: DEFAULT_PROXY_REPLICAS,
            resources: None,
        }
    }
}

/// Additions to the shard-node pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra labels (keys under `aadb.dev/` are reserved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Node selector added to the zone spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Grace period between SIGTERM and SIGKILL, in seconds. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub termination_grace_period_seconds: Option<i64>,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ActiveActiveDatabaseStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Provisioning` (never Ready yet), `Ready`, `Updating` (a spec change being rolled out),
    /// `Degraded` (something is down) or `Invalid` (see the `SpecValid` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Number of participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<u32>,
    /// Shards (over every region) with a ready primary and every replica, as `ready/total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_shards: Option<String>,
    /// `Ready`, `Reconciling`, `Degraded`, `ReplicationHealthy`, `SpecValid`, `ObjectsOwned`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-region detail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<ParticipantStatus>,
    /// Failovers performed, counted since creation.
    #[serde(default)]
    pub failovers: u64,
    /// Where clients find the password of the `default` user: `spec.auth`'s Secret, or the
    /// Secret named after the database that the operator generated, in the database's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Set while a previous password (of the application or of a `spec.users` user) is still
    /// accepted after a change: whose, and until when (written as `null` otherwise, so a
    /// status patch clears it).
    #[serde(default)]
    pub password_rotation: Option<String>,
}

/// One region's state.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantStatus {
    /// Participant name.
    pub name: String,
    /// `HOST:PORT` clients of this region use: its proxies, or shard 0 without proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Proxies ready and desired, as `ready/desired` (absent without proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies: Option<String>,
    /// The version of the region's topology (slot ranges, primaries, replicas) that every
    /// proxy and shard-node of the region has acknowledged; absent while one lags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_version: Option<u64>,
    /// Why the region is not ready, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per-shard state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
}

/// One shard of one region.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index.
    pub shard: u32,
    /// The hash slots the shard owns, as `FIRST-LAST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<String>,
    /// `HOST:PORT` of the shard's primary Service, as other regions reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<NodeStatus>,
    /// The replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<NodeStatus>,
    /// Links to the same shard in the other regions, as the primary reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerLinkStatus>,
}

/// One shard-node pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Pod name.
    pub pod: String,
    /// Zone of the pod's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Replication offset the node reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Whether the pod is Ready and answers.
    #[serde(default)]
    pub ready: bool,
}

/// A link from a shard primary to the same shard in another region.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PeerLinkStatus {
    /// The other region.
    pub participant: String,
    /// Link state as the node reports it (`up`, `connecting`, `down`…), or `no-address` while
    /// the other region's endpoint is not known.
    pub state: String,
    /// Effects not yet received from the peer, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_effects: Option<i64>,
}

/// How long a previous application password stays accepted by default, in seconds.
pub const DEFAULT_PASSWORD_ROTATION_GRACE_SECONDS: u32 = 300;

impl ActiveActiveDatabaseSpec {
    /// `passwordRotationGraceSeconds` with its default.
    pub fn effective_password_rotation_grace_seconds(&self) -> u32 {
        self.password_rotation_grace_seconds
            .unwrap_or(DEFAULT_PASSWORD_ROTATION_GRACE_SECONDS)
    }

    /// The shard-node image.
    pub fn effective_image(&self) -> &str {
        self.image.as_deref().unwrap_or(DEFAULT_IMAGE)
    }

    /// Replicas per shard in `participant`.
    pub fn replicas_in(&self, participant: &Participant) -> u32 {
        participant
            .replicas_per_shard
            .unwrap_or(self.replicas_per_shard)
    }

    /// Resources in `participant`.
    pub fn resources_in<'a>(
        &'a self,
        participant: &'a Participant,
    ) -> Option<&'a ResourceRequirements> {
        participant.resources.as_ref().or(self.resources.as_ref())
    }

    /// Failover settings with defaults applied.
    pub fn effective_failover(&self) -> FailoverSpec {
        self.failover.clone().unwrap_or_default()
    }

    /// What happens to volume claims no longer used.
    pub fn effective_reclaim_policy(&self) -> ReclaimPolicy {
        self.persistence
            .as_ref()
            .and_then(|p| p.reclaim_policy)
            .unwrap_or_default()
    }

    /// The flush policy.
    pub fn effective_appendfsync(&self) -> AppendFsync {
        self.persistence
            .as_ref()
            .and_then(|p| p.appendfsync)
            .unwrap_or_default()
    }
}

impl Participant {
    /// The namespace of the participant's objects, given the database's namespace.
    pub fn namespace_or<'a>(&'a self, database_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(database_namespace)
    }

    /// Whether the participant is in the cluster the database object lives in.
    pub fn is_local(&self) -> bool {
        self.cluster
            .as_ref()
            .and_then(|c| c.kubeconfig_secret_ref.as_ref())
            .is_none()
    }

    /// Endpoint type.
    pub fn endpoint_type(&self) -> EndpointType {
        self.endpoint.as_ref().map(|e| e.kind).unwrap_or_default()
    }
}

/// The CRD as YAML, as `make generate` writes it.
///
/// Enum values that YAML 1.1 readers (kubectl, the API server) would take for booleans, such
/// as `no`, are quoted; unsigned integer formats, which the API server does not know, are
/// left out.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let yaml = serde_yaml::to_string(&ActiveActiveDatabase::crd())?;
    Ok(yaml
        .lines()
        // The API server knows int32/int64 but warns about schemars' unsigned formats; the
        // minimum bounds already say the values are not negative.
        .filter(|line| {
            !matches!(
                line.trim(),
                "format: uint8" | "format: uint16" | "format: uint32" | "format: uint64"
            )
        })
        .map(|line| match line.trim_start().strip_prefix("- ") {
            Some(word) if matches!(word, "no" | "yes" | "on" | "off" | "y" | "n") => {
                format!(
                    "{}- '{word}'",
                    &line[..line.len() - line.trim_start().len()]
                )
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_carries_bounds_rules_and_columns() {
        let yaml = crd_yaml().expect("crd renders");
        for needle in [
            "shortNames:\n    - aadb",
            "participant names must be unique",
            "shards cannot change after creation",
            "zones must be unique",
            "endpoint.host is required",
            "maxItems: 16",
            "Ready Shards",
            "status: {}",
            "- 'no'",
        ] {
            assert!(yaml.contains(needle), "missing {needle:?} in\n{yaml}");
        }
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let spec: ActiveActiveDatabaseSpec = serde_json::from_value(serde_json::json!({
            "participants": [{"name": "east", "zones": ["a"]}]
        }))
        .expect("minimal spec parses");
        assert_eq!(spec.shards, 1);
        assert_eq!(spec.replicas_per_shard, 1);
        assert_eq!(spec.effective_image(), DEFAULT_IMAGE);
        assert_eq!(spec.effective_failover().detection_timeout_millis, 1000);
        assert_eq!(spec.effective_appendfsync(), AppendFsync::Always);
        assert!(spec.participants[0].is_local());
        assert_eq!(spec.participants[0].namespace_or("db"), "db");
    }

    #[test]
    fn participant_override_wins() {
        let spec: ActiveActiveDatabaseSpec = serde_json::from_value(serde_json::json!({
            "replicasPerShard": 2,
            "participants": [{"name": "east", "zones": ["a"], "replicasPerShard": 0}]
        }))
        .expect("spec parses");
        assert_eq!(spec.replicas_in(&spec.participants[0]), 0);
    }
}
