//! Checks of a spec that the schema cannot express. Pure.
//!
//! Contract: [`validate`] returns every problem as a sentence a person can act on (what is
//! wrong, with the offending value, and what to do); an empty list means the spec is valid.
//! The operator reports them as `SpecValid=False` and creates nothing for an invalid spec.
//! [`namespace_problems`] is the placement rule: a participant's objects live in the
//! database's own namespace (in whichever cluster) unless the operator runs with
//! `--allow-foreign-namespaces`.

use aadb_crd::{ActiveActiveDatabaseSpec, EndpointType};

use crate::plan::shard_object_name;

/// Longest StatefulSet name whose pods still get a valid `controller-revision-hash` label.
const MAX_OBJECT_NAME: usize = 52;

/// Parses a `maxmemory` value (`100mb`, `2g`, `1048576`) to bytes.
pub fn parse_memory(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Whether `value` is a Kubernetes resource quantity (`500m`, `2`, `1.5Gi`, `1e3`): a signed
/// decimal number, then at most one suffix (a binary one like `Ki`…`Ei`, a decimal one like
/// `m`, `k`, `M`…`E`, or a decimal exponent).
pub fn is_quantity(value: &str) -> bool {
    let v = value.strip_prefix(['+', '-']).unwrap_or(value);
    let number_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, suffix) = v.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exp => {
            let Some(rest) = exp.strip_prefix(['e', 'E']) else {
                return false;
            };
            let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
        }
    }
}

/// Problems of the quantities in `resources`, found at `field`.
fn resource_problems(
    field: &str,
    resources: Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
    problems: &mut Vec<String>,
) {
    let Some(r) = resources else { return };
    for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map.iter().flatten() {
            if !is_quantity(&q.0) {
                problems.push(format!(
                    "{field}.{kind}.{name} is {:?}, which is not a Kubernetes quantity: write a number with an optional unit, e.g. 500m or 2 for cpu, 256Mi or 1Gi for memory",
                    q.0
                ));
            }
        }
    }
}

/// Problems of database `name`'s spec; `only_participant` is the operator's `--participant`.
pub fn validate(
    name: &str,
    spec: &ActiveActiveDatabaseSpec,
    only_participant: Option<&str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push(format!(
            "database name {name:?} must start with a lowercase letter: it names Services, which must be DNS-1035 labels; recreate it under another name"
        ));
    }
    if spec.participants.is_empty() {
        problems.push("spec.participants is empty: name at least one region".to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &spec.participants {
        if !seen.insert(p.name.as_str()) {
            problems.push(format!(
                "participant {:?} appears twice: names must be unique",
                p.name
            ));
        }
        if p.zones.is_empty() {
            problems.push(format!(
                "participant {:?} has no zones: list at least one",
                p.name
            ));
        }
        let longest = shard_object_name(name, &p.name, spec.shards.saturating_sub(1));
        if longest.len() > MAX_OBJECT_NAME {
            problems.push(format!(
                "object name {longest:?} would be {} characters (at most {MAX_OBJECT_NAME}): shorten the database name or participant {:?}",
                longest.len(),
                p.name
            ));
        }
        if spec.cluster_api && p.endpoint_type() == EndpointType::Host {
            problems.push(format!(
                "spec.clusterApi needs an address per shard-node pod, but participant {:?} has endpoint type Host (one host for the region): use LoadBalancer or NodePort, or turn clusterApi off",
                p.name
            ));
        }
        if p.endpoint_type() == EndpointType::Host
            && p.endpoint.as_ref().and_then(|e| e.host.as_ref()).is_none()
        {
            problems.push(format!(
                "participant {:?} has endpoint type Host without endpoint.host: give the host other regions reach it at",
                p.name
            ));
        }
        if let Some(e) = &p.endpoint {
            if !e.load_balancer_source_ranges.is_empty() && e.kind != EndpointType::LoadBalancer {
                problems.push(format!(
                    "participant {:?}: endpoint.loadBalancerSourceRanges applies to endpoint type LoadBalancer only",
                    p.name
                ));
            }
            for range in &e.load_balancer_source_ranges {
                if !is_cidr(range) {
                    problems.push(format!(
                        "participant {:?}: endpoint.loadBalancerSourceRanges entry {range:?} is not a network such as 10.0.0.0/8 or 2001:db8::/32",
                        p.name
                    ));
                }
            }
        }
        if let Some(port) = p.endpoint.as_ref().and_then(|e| e.port) {
            if u32::from(port) + spec.shards > 65536 {
                problems.push(format!(
                    "participant {:?}: endpoint.port {port} + {} shards runs past port 65535",
                    p.name, spec.shards
                ));
            }
        }
    }
    resource_problems("spec.resources", spec.resources.as_ref(), &mut problems);
    for p in &spec.participants {
        resource_problems(
            &format!("participant {:?} resources", p.name),
            p.resources.as_ref(),
            &mut problems,
        );
    }
    if let Some(size) = spec.persistence.as_ref().and_then(|p| p.size.as_ref()) {
        if !is_quantity(&size.0) {
            problems.push(format!(
                "spec.persistence.size is {:?}, which is not a Kubernetes quantity: write e.g. 1Gi or 500Mi",
                size.0
            ));
        }
    }
    if spec.shards == 0 || spec.shards > 64 {
        problems.push(format!("spec.shards is {}: use 1 to 64", spec.shards));
    }
    for (field, n) in std::iter::once(("spec.replicasPerShard", spec.replicas_per_shard)).chain(
        spec.participants.iter().filter_map(|p| {
            p.replicas_per_shard
                .map(|r| ("participants[].replicasPerShard", r))
        }),
    ) {
        if n > 5 {
            problems.push(format!("{field} is {n}: use 0 to 5"));
        }
    }
    if let Some(m) = &spec.maxmemory {
        if parse_memory(m).is_none() {
            problems.push(format!(
                "spec.maxmemory {m:?} is not a size: write bytes with an optional unit, e.g. 100mb or 2gb"
            ));
        }
    }
    user_problems(spec, &mut problems);
    for cidr in spec.network_policy.iter().flat_map(|n| &n.peer_cidrs) {
        if !is_cidr(cidr) {
            problems.push(format!(
                "spec.networkPolicy.peerCidrs entry {cidr:?} is not a network such as 10.0.0.0/8"
            ));
        }
    }
    if let Some(n) = spec.proxy.as_ref().map(|p| p.replicas).filter(|n| *n > 16) {
        problems.push(format!(
            "spec.proxy.replicas is {n}: use 0 (no proxy) to 16"
        ));
    }
    if let Some(me) = only_participant {
        if !spec.participants.iter().any(|p| p.name == me) {
            problems.push(format!(
                "this operator runs for participant {me:?}, which the spec does not name: add it, or apply the object only in clusters whose operator owns one of its participants"
            ));
        }
        for p in spec.participants.iter().filter(|p| p.name != me) {
            let reachable = p.endpoint_type() == EndpointType::Host
                || p.cluster
                    .as_ref()
                    .and_then(|c| c.kubeconfig_secret_ref.as_ref())
                    .is_some();
            if !reachable {
                problems.push(format!(
                    "participant {:?} is owned by another operator and has neither endpoint.type Host nor cluster.kubeconfigSecretRef: give one so this region can find its address",
                    p.name
                ));
            }
        }
    }
    if let Some(labels) = spec.pod_template.as_ref().and_then(|t| t.labels.as_ref()) {
        for k in labels.keys().filter(|k| k.starts_with("aadb.dev/")) {
            problems.push(format!(
                "podTemplate.labels {k:?}: keys under aadb.dev/ are reserved for the operator; rename it"
            ));
        }
    }
    problems
}

/// Whether a rule may name `@category` (`all`, or one of the nodes' categories).
fn acl_category_exists(category: &str) -> bool {
    category == "all" || aadb_acl_categories::CATEGORIES.contains(&category)
}

/// Why an ACL rule of `spec.users` is not accepted, if it is not.
fn rule_problem(rule: &str) -> Option<&'static str> {
    const WORDS: [&str; 8] = [
        "on",
        "off",
        "allkeys",
        "resetkeys",
        "allchannels",
        "resetchannels",
        "allcommands",
        "nocommands",
    ];
    if WORDS.contains(&rule.to_ascii_lowercase().as_str()) {
        return None;
    }
    let mut chars = rule.chars();
    match chars.next() {
        Some('~' | '&') if rule.len() > 1 && !rule.contains(char::is_whitespace) => None,
        Some('+' | '-') => {
            let name = &rule[1..];
            if let Some(category) = name.strip_prefix('@') {
                return (!acl_category_exists(&category.to_ascii_lowercase()))
                    .then_some("names no ACL category");
            }
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '|' | '-' | '_' | '.'));
            (!ok).then_some("is not a command rule")
        }
        Some('>' | '<' | '#' | '!') => {
            Some("sets a password: passwords come from passwordSecretRef")
        }
        _ if rule.eq_ignore_ascii_case("nopass") || rule.eq_ignore_ascii_case("resetpass") => {
            Some("sets a password: passwords come from passwordSecretRef")
        }
        _ => Some("is not a rule this database knows"),
    }
}

/// Problems of `spec.users`: names, duplicates and rules.
fn user_problems(spec: &ActiveActiveDatabaseSpec, problems: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for u in &spec.users {
        let valid_name = !u.name.is_empty()
            && u.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            problems.push(format!(
                "spec.users: {:?} is not a user name (letters, digits, '_', '-' and '.')",
                u.name
            ));
        } else if u.name == "default" || u.name == crate::plan::INTERNAL_USER {
            problems.push(format!(
                "spec.users: {:?} is reserved; pick another name",
                u.name
            ));
        }
        if !seen.insert(u.name.as_str()) {
            problems.push(format!("spec.users: {:?} is listed twice", u.name));
        }
        for rule in &u.rules {
            if let Some(why) = rule_problem(rule) {
                problems.push(format!("spec.users[{:?}]: rule {rule:?} {why}", u.name));
            }
        }
    }
}

/// Problems of participants placed in a namespace other than `database_namespace`, unless
/// `allow_foreign` (the operator's `--allow-foreign-namespaces`). The rule is the same for
/// participants in other clusters: their namespace there has the database's namespace's name.
pub fn namespace_problems(
    database_namespace: &str,
    spec: &ActiveActiveDatabaseSpec,
    allow_foreign: bool,
) -> Vec<String> {
    if allow_foreign {
        return Vec::new();
    }
    spec.participants
        .iter()
        .filter_map(|p| {
            let ns = p.namespace.as_deref()?;
            (ns != database_namespace).then(|| {
                format!(
                    "participant {:?} has namespace {ns:?}, but participants must stay in the database's namespace {database_namespace:?}: remove participants[].namespace, or run the operator with --allow-foreign-namespaces",
                    p.name
                )
            })
        })
        .collect()
}

/// Whether `text` is an IPv4 or IPv6 network in CIDR notation (`address/prefix`).
fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ActiveActiveDatabaseSpec {
        serde_json::from_value(json).expect("test spec parses")
    }

    fn one(extra: serde_json::Value) -> ActiveActiveDatabaseSpec {
        let mut v = serde_json::json!({"participants": [{"name": "east", "zones": ["a"]}]});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        spec(v)
    }

    #[test]
    fn quantities_are_recognised() {
        for ok in [
            "1", "500m", "0.5", "1.5Gi", "256Mi", "2k", "1e3", "1E-2", "+1", ".5",
        ] {
            assert!(is_quantity(ok), "{ok} is a quantity");
        }
        for bad in [
            "banana", "", "Gi", "1GB", "1.2.3", "1e", "1 Gi", "--1", "1x",
        ] {
            assert!(!is_quantity(bad), "{bad:?} is not a quantity");
        }
    }

    #[test]
    fn load_balancer_source_ranges_must_be_networks_of_load_balancers() {
        let with = |endpoint: serde_json::Value| {
            spec(
                serde_json::json!({"participants": [{"name": "east", "zones": ["a"], "endpoint": endpoint}]}),
            )
        };
        let good =
            with(serde_json::json!({"loadBalancerSourceRanges": ["10.0.0.0/8", "2001:db8::/32"]}));
        assert!(validate("db", &good, None).is_empty());
        let bad = with(
            serde_json::json!({"loadBalancerSourceRanges": ["10.0.0.0", "10.0.0.0/33", "x/8"]}),
        );
        let problems = validate("db", &bad, None);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("\"10.0.0.0\" is not a network"),
            "{problems:?}"
        );
        let node_port = with(
            serde_json::json!({"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"]}),
        );
        assert!(validate("db", &node_port, None)[0].contains("LoadBalancer only"));
    }

    #[test]
    fn users_need_good_names_and_rules_without_passwords() {
        let with = |users: serde_json::Value| one(serde_json::json!({"users": users}));
        let good = with(
            serde_json::json!([{"name": "reader", "passwordSecretRef": {"name": "r"},
            "rules": ["on", "~app:*", "&news.*", "+@read", "-get", "+client|setname", "allchannels"]}]),
        );
        assert!(
            validate("db", &good, None).is_empty(),
            "{:?}",
            validate("db", &good, None)
        );
        let bad = with(serde_json::json!([
            {"name": "default", "passwordSecretRef": {"name": "r"}},
            {"name": "x y", "passwordSecretRef": {"name": "r"}},
            {"name": "w", "passwordSecretRef": {"name": "r"}, "rules": [">secret", "+@nope", "nopass", "%R~x"]},
            {"name": "w", "passwordSecretRef": {"name": "r"}}
        ]));
        let problems = validate("db", &bad, None).join("\n");
        for needle in [
            "\"default\" is reserved",
            "\"x y\" is not a user name",
            "rule \">secret\" sets a password",
            "rule \"+@nope\" names no ACL category",
            "rule \"nopass\" sets a password",
            "rule \"%R~x\" is not a rule",
            "\"w\" is listed twice",
        ] {
            assert!(problems.contains(needle), "{needle} not in {problems}");
        }
    }

    #[test]
    fn minimal_spec_is_valid() {
        assert!(validate("db", &one(serde_json::json!({})), None).is_empty());
    }

    #[test]
    fn each_problem_is_named() {
        let cases: Vec<(&str, ActiveActiveDatabaseSpec, &str)> = vec![
            (
                "1db",
                one(serde_json::json!({})),
                "must start with a lowercase letter",
            ),
            (
                "db",
                one(serde_json::json!({"maxmemory": "lots"})),
                "is not a size",
            ),
            (
                "db",
                one(serde_json::json!({"proxy": {"replicas": 17}})),
                "spec.proxy.replicas is 17: use 0 (no proxy) to 16",
            ),
            ("db", one(serde_json::json!({"shards": 0})), "use 1 to 64"),
            (
                "db",
                spec(
                    serde_json::json!({"clusterApi": true, "participants": [{"name": "east",
                    "zones": ["a"], "endpoint": {"type": "Host", "host": "db.example.com"}}]}),
                ),
                "spec.clusterApi needs an address per shard-node pod",
            ),
            (
                "db",
                one(serde_json::json!({"resources": {"requests": {"cpu": "banana"}}})),
                "spec.resources.requests.cpu is \"banana\", which is not a Kubernetes quantity",
            ),
            (
                "db",
                one(serde_json::json!({"persistence": {"size": "big"}})),
                "spec.persistence.size is \"big\"",
            ),
            (
                "db",
                one(serde_json::json!({"replicasPerShard": 9})),
                "use 0 to 5",
            ),
            (
                "a-very-long-database-name-that-goes-on-and-on-and-on",
                one(serde_json::json!({})),
                "shorten the database name",
            ),
            (
                "db",
                spec(serde_json::json!({"participants": [
                    {"name": "east", "zones": ["a"]}, {"name": "east", "zones": ["b"]}]})),
                "appears twice",
            ),
            (
                "db",
                spec(serde_json::json!({"participants": [{"name": "east", "zones": []}]})),
                "has no zones",
            ),
            (
                "db",
                one(serde_json::json!({"podTemplate": {"labels": {"aadb.dev/role": "x"}}})),
                "reserved",
            ),
        ];
        for (name, s, needle) in cases {
            let problems = validate(name, &s, None);
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle:?} not in {problems:?}"
            );
        }
    }

    #[test]
    fn per_cluster_mode_needs_its_participant_and_reachable_peers() {
        let s = spec(serde_json::json!({"participants": [
            {"name": "east", "zones": ["a"]}, {"name": "west", "zones": ["b"]}]}));
        let p = validate("db", &s, Some("north"));
        assert!(p.iter().any(|m| m.contains("does not name")), "{p:?}");
        let p = validate("db", &s, Some("east"));
        assert!(
            p.iter()
                .any(|m| m.contains("\"west\" is owned by another operator")),
            "{p:?}"
        );
    }

    #[test]
    fn participants_stay_in_the_database_namespace_unless_allowed() {
        let s = spec(serde_json::json!({"participants": [
            {"name": "east", "zones": ["a"]},
            {"name": "same", "zones": ["a"], "namespace": "db-ns"},
            {"name": "west", "zones": ["b"], "namespace": "kube-system"},
            {"name": "far", "zones": ["c"], "namespace": "other",
             "cluster": {"kubeconfigSecretRef": {"name": "far-kc"}}}]}));
        let p = namespace_problems("db-ns", &s, false);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("participant \"west\" has namespace \"kube-system\"")
                && p[0].contains("--allow-foreign-namespaces"),
            "{p:?}"
        );
        assert!(p[1].contains("\"far\""), "{p:?}");
        assert!(namespace_problems("db-ns", &s, true).is_empty());
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("2kb"), Some(2048));
        assert_eq!(parse_memory("3M"), Some(3 << 20));
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("x"), None);
        assert_eq!(parse_memory("99999999999999999999g"), None);
    }
}
