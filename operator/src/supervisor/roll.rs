//! Rolls and scale-downs (see the module documentation): replacing, one pod of a shard at a
//! time, the pods that do not run their StatefulSet's latest revision, and starting the planned
//! switchover that hands a primary's role over before its pod is replaced or scaled away.

use std::time::Instant;

use kube::api::DeleteParams;
use kube::runtime::events::EventType;

use super::tick::{pod_ref, Assessment, Loop, ShardTick};
use super::Observation;

impl Loop {
    /// One step of replacing the shard's outdated pods (see the module documentation).
    pub(super) async fn roll(&mut self, t: &ShardTick<'_>, a: &Assessment, obs: &mut Observation) {
        let (spec, p, s, pods_api) = (t.spec, t.p, t.s, t.pods_api);
        let (views, healthy, outdated) = (&a.views, a.decision.healthy, &a.outdated);
        let desired_pods = p.replicas as usize + 1;
        let db = &spec.topology.database;
        let dropped = views
            .iter()
            .find(|v| v.labeled_primary && v.ordinal as usize >= desired_pods);
        if let Some(primary) = dropped {
            if healthy {
                let why = format!("the shard scales down to {desired_pods} pods");
                self.start_switchover(t, &primary.pod, &why).await;
            }
            return;
        }
        let settling = s
            .pods
            .iter()
            .any(|pod| pod.metadata.deletion_timestamp.is_some());
        if settling || s.pods.len() != desired_pods {
            return;
        }
        let view_of = |name: &str| views.iter().find(|v| v.pod == name);
        let replica = outdated
            .iter()
            .filter_map(|name| view_of(name))
            .filter(|v| !v.labeled_primary)
            .max_by_key(|v| (!v.serving(), v.ordinal));
        let victim = match replica {
            // A broken replica cannot get worse by being replaced; a healthy one waits until
            // the whole shard is healthy, so that one replica at a time is missing.
            Some(v) if healthy || !v.serving() => v,
            Some(_) => return,
            None => {
                let Some(primary) = outdated
                    .iter()
                    .filter_map(|name| view_of(name))
                    .find(|v| v.labeled_primary)
                else {
                    return;
                };
                if desired_pods > 1 {
                    if healthy {
                        let why = "its pod is replaced by the latest revision";
                        self.start_switchover(t, &primary.pod, why).await;
                    }
                    return;
                }
                primary
            }
        };
        let revision = s
            .statefulset
            .and_then(|sts| sts.status.as_ref())
            .and_then(|st| st.update_revision.clone())
            .unwrap_or_default();
        match pods_api.delete(&victim.pod, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(database = %db, participant = %p.name, shard = s.plan.index, pod = %victim.pod, %revision, "replacing an outdated pod");
                self.event(
                    spec,
                    EventType::Normal,
                    "ReplacingPod",
                    &format!(
                        "{}/{} shard {}: replacing {} with revision {revision}",
                        db, p.name, s.plan.index, victim.pod
                    ),
                    Some(pod_ref(p, &victim.pod)),
                )
                .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => obs.errors.push(format!("replace {}: {e}", victim.pod)),
        }
    }

    /// Marks `primary` of the shard as retiring (the next decisions hand its role over), once.
    async fn start_switchover(&mut self, t: &ShardTick<'_>, primary: &str, why: &str) {
        let (spec, p, s) = (t.spec, t.p, t.s);
        let key = t.key.clone();
        if self.retiring.contains_key(&key) {
            return;
        }
        self.retiring
            .insert(key, (primary.to_string(), Instant::now()));
        let note = format!(
            "{}/{} shard {}: handing over from {primary} to a replica: {why}",
            spec.topology.database, p.name, s.plan.index
        );
        self.event(
            spec,
            EventType::Normal,
            "SwitchoverStarted",
            &note,
            Some(pod_ref(p, primary)),
        )
        .await;
    }
}
