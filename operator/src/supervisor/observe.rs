//! What the supervisor sees: Pods, Nodes and StatefulSets as the API shows them and the
//! shard-nodes' probe answers, turned into [`PodView`]s for [`crate::failover::decide`] and
//! into the status it publishes. No I/O; the probe history lives in the shard's
//! [`HealthTracker`].

use std::collections::HashMap;
use std::time::Instant;

use aadb_crd::{NodeStatus, PeerLinkStatus, ShardStatus, SHARD_NODE_PORT};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};

use super::tick::ShardTick;
use crate::failover::{HealthTracker, PodView, ProbeOutcome, ReportedRole};
use crate::labels;
use crate::node_client::NodeDetail;
use crate::plan::{ParticipantPlan, ShardPlan};

pub(super) fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

pub(super) fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Why the scheduler cannot place `pod`, and the fix, while its `PodScheduled` condition is
/// False; `zones` are the zones its participant's pods may run in.
fn unschedulable(pod: &Pod, zones: &[String]) -> Option<String> {
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let said = condition
        .message
        .clone()
        .or_else(|| condition.reason.clone())
        .unwrap_or_else(|| "no reason given".into());
    Some(format!(
        "cannot be scheduled ({}): it needs a Ready node labeled {}={}: add such a node or change the participant's zones",
        said.trim_end_matches('.'),
        labels::ZONE,
        zones.join("|")
    ))
}

/// When a pod's trouble began: the earlier of its failing probes and its readiness loss.
pub(super) fn trouble_since(v: &PodView) -> Option<Instant> {
    match (v.failing_since, v.not_ready_since) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) fn pod_address(p: &Pod) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.clone()?;
    if ip.is_empty() {
        return None;
    }
    Some(format!("{ip}:{SHARD_NODE_PORT}"))
}

/// The label the StatefulSet controller puts on each pod: the revision it was created from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// The pods of `pods` (not terminating) that do not run `sts`'s latest revision. Empty while
/// the StatefulSet's controller has not caught up with its spec (the revision is not known).
pub(super) fn outdated_pods(sts: Option<&StatefulSet>, pods: &[&Pod]) -> Vec<String> {
    let Some(sts) = sts else { return Vec::new() };
    let Some(status) = sts.status.as_ref() else {
        return Vec::new();
    };
    if status.observed_generation < sts.metadata.generation {
        return Vec::new();
    }
    let Some(latest) = status.update_revision.as_deref() else {
        return Vec::new();
    };
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .is_some_and(|r| r != latest)
        })
        .filter_map(|pod| pod.metadata.name.clone())
        .collect()
}

fn ordinal(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(u32::MAX)
}

/// One shard's pods as the API shows them.
pub(super) struct ShardPods<'a> {
    pub(super) plan: &'a ShardPlan,
    pub(super) pods: Vec<&'a Pod>,
    pub(super) statefulset: Option<&'a StatefulSet>,
}

/// The participant's pods and StatefulSets, by shard of its plan (pods by their shard label,
/// the StatefulSet by name).
pub(super) fn shard_pods<'a>(
    p: &'a ParticipantPlan,
    pods: &'a [Pod],
    statefulsets: &'a [StatefulSet],
) -> Vec<ShardPods<'a>> {
    p.shards
        .iter()
        .map(|s| ShardPods {
            plan: s,
            pods: pods
                .iter()
                .filter(|pod| {
                    pod.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::SHARD))
                        .is_some_and(|v| *v == s.index.to_string())
                })
                .collect(),
            statefulset: statefulsets
                .iter()
                .find(|sts| sts.metadata.name.as_deref() == Some(s.name.as_str())),
        })
        .collect()
}

/// Whether `pod`'s node is Ready (true when it has none or the node is not listed).
fn on_ready_node(pod: &Pod, node_by_name: &HashMap<&str, &Node>) -> bool {
    let node = pod
        .spec
        .as_ref()
        .and_then(|sp| sp.node_name.as_deref())
        .and_then(|n| node_by_name.get(n));
    node.is_none_or(|n| node_ready(n))
}

/// The status of `pod`'s shard-node container, if it has one yet.
fn shard_node_container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|st| st.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == crate::objects::CONTAINER))
}

/// What the API says of pod `name` (the probe history is not filled in).
fn pod_view(pod: &Pod, name: String, node_ok: bool, zones: &[String]) -> PodView {
    PodView {
        ordinal: ordinal(&name),
        address: pod_address(pod),
        labeled_primary: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::ROLE))
            .is_some_and(|r| r == labels::ROLE_PRIMARY),
        pod_ready: pod_ready(pod),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        node_ready: node_ok,
        not_ready_since: None,
        last: None,
        failed_probes: 0,
        failing_since: None,
        crashed_at: None,
        log_failing_since: None,
        unschedulable: unschedulable(pod, zones),
        pod: name,
    }
}

/// Records the shard's readiness, containers and probe answers in its `tracker` and returns
/// the views of its pods, in ordinal order.
pub(super) fn pod_views(tracker: &mut HealthTracker, t: &ShardTick<'_>) -> Vec<PodView> {
    let (s, now) = (t.s, t.now);
    let mut views = Vec::new();
    let live: Vec<String> = s
        .pods
        .iter()
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    tracker.forget_missing(&live);
    for pod in &s.pods {
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let node_ok = on_ready_node(pod, t.node_by_name);
        let ready = pod_ready(pod) && node_ok && pod.metadata.deletion_timestamp.is_none();
        tracker.record_readiness(&name, ready, now);
        if let Some(cs) = shard_node_container(pod) {
            let running = cs.state.as_ref().is_some_and(|st| st.running.is_some());
            let restarts = u32::try_from(cs.restart_count).unwrap_or(0);
            tracker.record_container(&name, restarts, running, now);
        }
        if let Some(d) = t.details.get(&name) {
            let outcome = match d {
                Ok(detail) => ProbeOutcome::Answered(detail.report.clone()),
                Err(e) => ProbeOutcome::Failed(e.clone()),
            };
            tracker.record_probe(&name, outcome, now);
        }
        let mut view = pod_view(pod, name, node_ok, &t.p.zones);
        tracker.annotate(&mut view);
        views.push(view);
    }
    views.sort_by_key(|v| v.ordinal);
    views
}

/// The status of shard `s` once its actions are carried out: `primary` is its primary pod then,
/// at `primary_address`; a pod is ready when it is Ready and answers in its role (a replica
/// following `primary_address` with its link up).
pub(super) fn shard_status(
    s: &ShardPods<'_>,
    details: &HashMap<String, Result<NodeDetail, String>>,
    node_by_name: &HashMap<&str, &Node>,
    primary: Option<&str>,
    primary_address: Option<&str>,
    endpoint: Option<String>,
    peers: Vec<PeerLinkStatus>,
) -> ShardStatus {
    let zone_of = |pod: &Pod| -> Option<String> {
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        node_by_name
            .get(node)?
            .metadata
            .labels
            .as_ref()?
            .get(labels::ZONE)
            .cloned()
    };
    let mut shard_status = ShardStatus {
        shard: s.plan.index,
        slots: Some(format!("{}-{}", s.plan.slots.0, s.plan.slots.1)),
        endpoint,
        primary: None,
        replicas: Vec::new(),
        peers,
    };
    for pod in &s.pods {
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let detail = details.get(&name).and_then(|d| d.as_ref().ok());
        let is_primary = primary == Some(name.as_str());
        let answering_right = detail.is_some_and(|d| match (&d.report.role, is_primary) {
            (ReportedRole::Primary, true) => true,
            (ReportedRole::Replica { primary, link_up }, false) => {
                *link_up && primary_address == Some(primary.as_str())
            }
            _ => false,
        });
        let node = NodeStatus {
            pod: name.clone(),
            zone: zone_of(pod),
            offset: detail.map(|d| d.report.offset),
            ready: pod_ready(pod) && answering_right,
        };
        if is_primary {
            shard_status.primary = Some(node);
        } else {
            shard_status.replicas.push(node);
        }
    }
    shard_status
}

/// The participant's status message when some of its `shards` are not ready (a primary or a
/// replica not ready, or fewer than `replicas` replicas).
pub(super) fn not_ready_message(shards: &[ShardStatus], replicas: u32) -> Option<String> {
    let not_ready: Vec<String> = shards
        .iter()
        .filter(|s| {
            s.primary.as_ref().is_none_or(|n| !n.ready)
                || s.replicas.iter().any(|r| !r.ready)
                || s.replicas.len() < replicas as usize
        })
        .map(|s| format!("shard {}", s.shard))
        .collect();
    if not_ready.is_empty() {
        return None;
    }
    Some(format!("not ready: {}", not_ready.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::{json, Value};

    use super::*;
    use crate::failover::NodeReport;

    const PRIMARY: Option<&str> = Some(labels::ROLE_PRIMARY);

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).expect("a Pod")
    }

    fn node(name: &str, ready: &str, zone: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {labels::ZONE: zone}},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
        .expect("a Node")
    }

    /// A Ready pod of shard `shard` on node `on` with IP `ip` and, if given, role label `role`.
    fn shard_pod(name: &str, shard: u32, ip: &str, on: &str, role: Option<&str>) -> Pod {
        let mut labels = json!({labels::SHARD: shard.to_string()});
        if let Some(role) = role {
            labels[labels::ROLE] = json!(role);
        }
        pod(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [], "nodeName": on},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    fn statefulset(name: &str, generation: i64, observed: i64, revision: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "generation": generation},
            "spec": {"selector": {}, "template": {}, "serviceName": name},
            "status": {"replicas": 2, "observedGeneration": observed, "updateRevision": revision},
        }))
        .expect("a StatefulSet")
    }

    fn with_revision(mut pod: Pod, revision: &str) -> Pod {
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(REVISION_LABEL.into(), revision.into());
        pod
    }

    fn shard_plan(index: u32) -> ShardPlan {
        ShardPlan {
            index,
            name: format!("db-east-{index}"),
            headless_service: format!("db-east-{index}-nodes"),
            slots: (0, 16383),
            pods: Vec::new(),
        }
    }

    /// Pod `pod`'s probe answer.
    fn answer(pod: &str, role: ReportedRole, offset: i64) -> (String, Result<NodeDetail, String>) {
        let detail = NodeDetail {
            report: NodeReport {
                role,
                offset,
                generation: 1,
                log_failure: None,
                write_held: false,
                coverage: 0,
            },
            peers: Vec::new(),
            connected_replicas: 0,
            replid: None,
        };
        (pod.to_string(), Ok(detail))
    }

    #[test]
    fn ordinal_is_the_last_dash_separated_number() {
        assert_eq!(ordinal("db-east-0-12"), 12);
        assert_eq!(ordinal("db-east-3-0"), 0);
        assert_eq!(ordinal("db-east-0-x"), u32::MAX);
        assert_eq!(ordinal(""), u32::MAX);
    }

    #[test]
    fn readiness_needs_a_true_ready_condition() {
        assert!(node_ready(&node("n1", "True", "a")));
        assert!(!node_ready(&node("n1", "False", "a")));
        assert!(!node_ready(&node("n1", "Unknown", "a")));
        assert!(!node_ready(&Node::default()));
        let up = shard_pod("db-east-0-0", 0, "10.0.0.1", "n1", None);
        assert!(pod_ready(&up));
        assert!(!pod_ready(&pod(json!({"metadata": {"name": "p"}}))));
        let not_ready = pod(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }));
        assert!(!pod_ready(&not_ready));
    }

    #[test]
    fn pod_address_needs_a_pod_ip() {
        let with_ip = shard_pod("db-east-0-0", 0, "10.0.0.1", "n1", None);
        assert_eq!(
            pod_address(&with_ip),
            Some(format!("10.0.0.1:{SHARD_NODE_PORT}"))
        );
        assert_eq!(pod_address(&shard_pod("p", 0, "", "n1", None)), None);
        assert_eq!(pod_address(&pod(json!({"metadata": {"name": "p"}}))), None);
    }

    #[test]
    fn unschedulable_says_why_and_names_the_zones() {
        let pending = pod(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available.",
            }]},
        }));
        let zones = ["a".to_string(), "b".to_string()];
        assert_eq!(
            unschedulable(&pending, &zones).as_deref(),
            Some(
                format!(
                    "cannot be scheduled (0/3 nodes are available): it needs a Ready node labeled {}=a|b: add such a node or change the participant's zones",
                    labels::ZONE
                )
                .as_str()
            )
        );
        let reason_only = pod(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]},
        }));
        assert!(unschedulable(&reason_only, &zones)
            .is_some_and(|m| m.starts_with("cannot be scheduled (Unschedulable):")));
        let scheduled = shard_pod("p", 0, "10.0.0.1", "n1", None);
        assert_eq!(unschedulable(&scheduled, &zones), None);
    }

    #[test]
    fn trouble_began_at_the_earlier_sign() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut view = pod_view(&Pod::default(), "db-east-0-0".into(), true, &[]);
        assert_eq!(trouble_since(&view), None);
        view.not_ready_since = Some(t1);
        assert_eq!(trouble_since(&view), Some(t1));
        view.failing_since = Some(t0);
        assert_eq!(trouble_since(&view), Some(t0));
        view.not_ready_since = None;
        assert_eq!(trouble_since(&view), Some(t0));
    }

    #[test]
    fn outdated_pods_only_once_the_statefulset_is_observed() {
        let old = with_revision(shard_pod("db-east-0-0", 0, "", "n1", None), "r1");
        let new = with_revision(shard_pod("db-east-0-1", 0, "", "n1", None), "r2");
        let mut leaving = with_revision(shard_pod("db-east-0-2", 0, "", "n1", None), "r1");
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let unlabeled = shard_pod("db-east-0-3", 0, "", "n1", None);
        let pods = [&old, &new, &leaving, &unlabeled];
        let current = statefulset("db-east-0", 2, 2, "r2");
        assert_eq!(outdated_pods(Some(&current), &pods), vec!["db-east-0-0"]);
        let lagging = statefulset("db-east-0", 3, 2, "r2");
        assert!(outdated_pods(Some(&lagging), &pods).is_empty());
        assert!(outdated_pods(None, &pods).is_empty());
    }

    #[test]
    fn pods_and_statefulsets_are_grouped_by_shard() {
        let p = ParticipantPlan {
            name: "east".into(),
            namespace: "ns".into(),
            cluster: crate::plan::ClusterTarget::Local,
            managed: true,
            zones: Vec::new(),
            replicas: 1,
            endpoint_type: Default::default(),
            endpoint_host: None,
            source_ranges: Vec::new(),
            region_service: "db-east".into(),
            shards: vec![shard_plan(0), shard_plan(1)],
            proxies: 0,
            proxy_name: "db-east-proxy".into(),
        };
        let pods = [
            shard_pod("db-east-0-0", 0, "", "n1", None),
            shard_pod("db-east-1-0", 1, "", "n1", None),
            shard_pod("db-east-0-1", 0, "", "n1", None),
            pod(json!({"metadata": {"name": "stray"}})),
        ];
        let statefulsets = [statefulset("db-east-1", 1, 1, "r")];
        let shards = shard_pods(&p, &pods, &statefulsets);
        let names = |s: &ShardPods<'_>| -> Vec<String> {
            s.pods
                .iter()
                .filter_map(|pod| pod.metadata.name.clone())
                .collect()
        };
        assert_eq!(names(&shards[0]), ["db-east-0-0", "db-east-0-1"]);
        assert_eq!(names(&shards[1]), ["db-east-1-0"]);
        assert!(shards[0].statefulset.is_none());
        assert!(shards[1].statefulset.is_some());
    }

    #[test]
    fn pod_view_reads_labels_and_conditions() {
        let primary = shard_pod("db-east-0-2", 0, "10.0.0.3", "n1", PRIMARY);
        let view = pod_view(&primary, "db-east-0-2".into(), false, &[]);
        assert_eq!(view.ordinal, 2);
        assert_eq!(view.address, Some(format!("10.0.0.3:{SHARD_NODE_PORT}")));
        assert!(view.labeled_primary && view.pod_ready && !view.terminating);
        assert!(!view.node_ready && !view.serving());
        let replica = shard_pod("db-east-0-1", 0, "", "n1", Some(labels::ROLE_REPLICA));
        assert!(!pod_view(&replica, "db-east-0-1".into(), true, &[]).labeled_primary);
    }

    #[test]
    fn a_pod_on_an_unknown_node_counts_as_on_a_ready_one() {
        let nodes = [node("n1", "True", "a"), node("n2", "False", "b")];
        let by_name: HashMap<&str, &Node> = [("n1", &nodes[0]), ("n2", &nodes[1])].into();
        assert!(on_ready_node(&shard_pod("p", 0, "", "n1", None), &by_name));
        assert!(!on_ready_node(&shard_pod("p", 0, "", "n2", None), &by_name));
        assert!(on_ready_node(&shard_pod("p", 0, "", "n3", None), &by_name));
        let unscheduled = pod(json!({"metadata": {"name": "p"}}));
        assert!(on_ready_node(&unscheduled, &by_name));
    }

    #[test]
    fn shard_status_counts_pods_answering_in_their_role() {
        let nodes = [node("n1", "True", "a")];
        let by_name: HashMap<&str, &Node> = [("n1", &nodes[0])].into();
        let pods = [
            shard_pod("db-east-0-0", 0, "10.0.0.1", "n1", PRIMARY),
            shard_pod("db-east-0-1", 0, "10.0.0.2", "n1", None),
            shard_pod("db-east-0-2", 0, "10.0.0.3", "n1", None),
            shard_pod("db-east-0-3", 0, "10.0.0.4", "n1", None),
        ];
        let plan = shard_plan(0);
        let s = ShardPods {
            plan: &plan,
            pods: pods.iter().collect(),
            statefulset: None,
        };
        let primary_address = format!("10.0.0.1:{SHARD_NODE_PORT}");
        let follows = |to: &str, link_up| ReportedRole::Replica {
            primary: to.to_string(),
            link_up,
        };
        let details: HashMap<String, Result<NodeDetail, String>> = [
            answer("db-east-0-0", ReportedRole::Primary, 10),
            answer("db-east-0-1", follows(&primary_address, true), 9),
            answer("db-east-0-2", follows("10.9.9.9:1", true), 8),
            ("db-east-0-3".to_string(), Err("timeout".to_string())),
        ]
        .into();
        let status = shard_status(
            &s,
            &details,
            &by_name,
            Some("db-east-0-0"),
            Some(&primary_address),
            Some("lb:6379".into()),
            Vec::new(),
        );
        assert_eq!(status.shard, 0);
        assert_eq!(status.endpoint.as_deref(), Some("lb:6379"));
        let primary = status.primary.as_ref().expect("a primary");
        assert_eq!(primary.pod, "db-east-0-0");
        assert_eq!(primary.zone.as_deref(), Some("a"));
        assert_eq!(primary.offset, Some(10));
        assert!(primary.ready);
        let replicas: Vec<(&str, Option<i64>, bool)> = status
            .replicas
            .iter()
            .map(|n| (n.pod.as_str(), n.offset, n.ready))
            .collect();
        assert_eq!(
            replicas,
            [
                ("db-east-0-1", Some(9), true),
                ("db-east-0-2", Some(8), false),
                ("db-east-0-3", None, false),
            ]
        );
        assert_eq!(
            not_ready_message(std::slice::from_ref(&status), 3).as_deref(),
            Some("not ready: shard 0")
        );
    }

    #[test]
    fn not_ready_message_lists_shards_short_of_replicas() {
        let ready = |pod: &str| NodeStatus {
            pod: pod.into(),
            zone: None,
            offset: None,
            ready: true,
        };
        let shard = |index, replicas: usize| ShardStatus {
            shard: index,
            slots: None,
            endpoint: None,
            primary: Some(ready("p")),
            replicas: (0..replicas).map(|_| ready("r")).collect(),
            peers: Vec::new(),
        };
        assert_eq!(not_ready_message(&[shard(0, 2), shard(1, 2)], 2), None);
        assert_eq!(
            not_ready_message(&[shard(0, 2), shard(1, 1), shard(2, 0)], 2).as_deref(),
            Some("not ready: shard 1, shard 2")
        );
        let mut headless = shard(3, 2);
        headless.primary = None;
        assert_eq!(
            not_ready_message(&[headless], 2).as_deref(),
            Some("not ready: shard 3")
        );
    }
}
