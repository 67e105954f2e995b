//! Label, annotation and finalizer names the operator writes, and the selectors built from them.
//!
//! Contract: every object the operator creates carries `aadb.dev/database` (the database's
//! name), `aadb.dev/database-namespace` (its namespace) and `app.kubernetes.io/managed-by:
//! aadb-operator`; objects of one participant add `aadb.dev/participant`, objects of one shard
//! add `aadb.dev/shard`. The `aadb.dev/role` label (`primary` or `replica`) is set on pods by
//! the operator only: the per-shard and region Services select `role=primary`, so clients and
//! peers follow a failover without DNS changes.

use std::collections::BTreeMap;

/// The database name.
pub const DATABASE: &str = "aadb.dev/database";
/// The database's namespace (objects in other namespaces or clusters point back with it).
pub const DATABASE_NAMESPACE: &str = "aadb.dev/database-namespace";
/// The participant (region) name.
pub const PARTICIPANT: &str = "aadb.dev/participant";
/// The shard index.
pub const SHARD: &str = "aadb.dev/shard";
/// `primary` or `replica`, set on pods by the operator.
pub const ROLE: &str = "aadb.dev/role";
/// Value of [`ROLE`] on the pod clients and peers reach.
pub const ROLE_PRIMARY: &str = "primary";
/// Value of [`ROLE`] on the other pods.
pub const ROLE_REPLICA: &str = "replica";
/// Standard managed-by label.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "aadb-operator";
/// Standard name label.
pub const APP_NAME: &str = "app.kubernetes.io/name";
/// Standard component label.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`COMPONENT`] on proxy pods (shard-node pods carry [`SHARD`] instead).
pub const COMPONENT_PROXY: &str = "proxy";
/// Finalizer that removes the database's objects from every participant cluster.
pub const FINALIZER: &str = "aadb.dev/cleanup";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "aadb-operator";
/// Zone label of nodes.
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// Labels every object of the database carries.
pub fn database_labels(database: &str, database_namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DATABASE.to_string(), database.to_string()),
        (
            DATABASE_NAMESPACE.to_string(),
            database_namespace.to_string(),
        ),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (APP_NAME.to_string(), "aadb".to_string()),
    ])
}

/// Label selector (`k=v,…`) of every object of the database.
pub fn database_selector(database: &str, database_namespace: &str) -> String {
    format!(
        "{DATABASE}={database},{DATABASE_NAMESPACE}={database_namespace},{MANAGED_BY}={MANAGER}"
    )
}

/// Label selector of the pods of one shard of one participant.
pub fn shard_selector(database: &str, participant: &str, shard: u32) -> String {
    format!("{DATABASE}={database},{PARTICIPANT}={participant},{SHARD}={shard}")
}
