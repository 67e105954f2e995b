//! Carrying out a decision's actions (see [`crate::failover`]): electing a primary, promoting
//! one (a failover, or the hand-over of a planned switchover with the old primary's writes
//! held), making pods follow (demoting primaries), and the `aadb.dev/role` labels that go
//! with them.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::observe::trouble_since;
use super::tick::{pod_ref, Assessment, Loop, ShardTick};
use super::Observation;
use crate::failover::{Action, FailoverSettings, ReportedRole};
use crate::labels;

/// Carrying out one shard's actions: what they change as they go.
struct Execution<'a> {
    assessment: &'a Assessment,
    /// The shard's primary pod: the labeled one, then the one each action made primary.
    primary_pod: Option<String>,
    /// The old primary of a switchover, whose writes are held until the actions are done.
    paused: Option<String>,
}

impl Loop {
    /// Carries out the shard's actions in order, lifts the write pause of a switchover, and
    /// labels fresh pods as replicas; returns the shard's primary pod afterwards.
    pub(super) async fn execute(
        &mut self,
        t: &ShardTick<'_>,
        a: &Assessment,
        obs: &mut Observation,
    ) -> Option<String> {
        let mut ex = Execution {
            assessment: a,
            primary_pod: a
                .views
                .iter()
                .find(|v| v.labeled_primary)
                .map(|v| v.pod.clone()),
            paused: None,
        };
        for action in &a.decision.actions {
            match action {
                Action::Elect { pod, promote } => {
                    self.elect(t, &mut ex, pod, *promote, obs).await;
                }
                Action::Promote { from, to, reason } => {
                    let done = self.promote(t, &mut ex, from, to, reason, obs).await;
                    if done.is_break() {
                        break;
                    }
                }
                Action::Follow {
                    pod,
                    primary_address,
                    demote,
                } => {
                    self.follow(t, a, pod, primary_address, *demote, obs).await;
                }
            }
        }
        if let Some(old_primary) = ex.paused {
            // Demoted by now (or it stays a primary nobody routes to until the next tick
            // demotes it): its held writes go on and are refused as read-only.
            if let Err(e) = self.nodes.unpause(&old_primary).await {
                obs.errors
                    .push(format!("lift the write pause of {old_primary}: {e}"));
            }
        }
        let primary_pod = ex.primary_pod;
        // Label replicas that carry no role yet (fresh pods), so `kubectl get pods -L` is clear.
        for pod in &t.s.pods {
            let Some(name) = pod.metadata.name.as_deref() else {
                continue;
            };
            let has_role = pod
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::ROLE));
            if !has_role && primary_pod.as_deref() != Some(name) && primary_pod.is_some() {
                let _ = set_role(t.pods_api, name, labels::ROLE_REPLICA).await;
            }
        }
        primary_pod
    }

    /// [`Action::Elect`]: labels `pod` primary, after `REPLICAOF NO ONE` when `promote`.
    async fn elect(
        &mut self,
        t: &ShardTick<'_>,
        ex: &mut Execution<'_>,
        pod: &str,
        promote: bool,
        obs: &mut Observation,
    ) {
        let (spec, p, s) = (t.spec, t.p, t.s);
        let db = &spec.topology.database;
        let views = &ex.assessment.views;
        let Some(addr) = ex.assessment.address_of(pod) else {
            return;
        };
        if promote {
            if let Err(e) = self.nodes.promote(&addr).await {
                obs.errors.push(format!("promote {pod}: {e}"));
                return;
            }
        }
        if let Err(e) = set_role(t.pods_api, pod, labels::ROLE_PRIMARY).await {
            obs.errors.push(e);
            return;
        }
        ex.primary_pod = Some(pod.to_string());
        // Promoting a pod that was not labeled primary replaces a primary that is
        // gone: a failover (counted, and it starts the flapping guard).
        // Re-promoting the labeled pod is not one.
        let replaced = promote && !views.iter().any(|v| v.pod == pod && v.labeled_primary);
        if replaced {
            self.failovers += 1;
            self.last_failover.insert(t.key.clone(), Instant::now());
            let seconds = views
                .iter()
                .filter(|v| v.pod != pod)
                .filter_map(trouble_since)
                .min()
                .map(|t| Instant::now().saturating_duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            (self.on_failover)(db, &p.name, s.plan.index, seconds);
            tracing::warn!(database = %db, participant = %p.name, shard = s.plan.index, to = %pod, "failed over: the primary pod was gone");
        }
        let (kind, reason) = if replaced {
            (EventType::Warning, "FailedOver")
        } else {
            (EventType::Normal, "PrimaryElected")
        };
        self.event(
            spec,
            kind,
            reason,
            &format!(
                "{}/{} shard {}: {pod} is the primary",
                db, p.name, s.plan.index
            ),
            Some(pod_ref(p, pod)),
        )
        .await;
    }

    /// [`Action::Promote`] from the primary `from` to `to`: `REPLICAOF NO ONE` on `to` (when
    /// `from` is retiring, once its writes are held and `to` caught up), then the labels; a
    /// switchover or a failover. Breaks when the hand-over could not be prepared: the shard's
    /// remaining actions are skipped.
    async fn promote(
        &mut self,
        t: &ShardTick<'_>,
        ex: &mut Execution<'_>,
        from: &str,
        to: &str,
        reason: &str,
        obs: &mut Observation,
    ) -> ControlFlow<()> {
        let (spec, p, s, now) = (t.spec, t.p, t.s, t.now);
        let db = &spec.topology.database;
        let a = ex.assessment;
        let (views, retiring) = (&a.views, &a.retiring);
        let Some(addr) = a.address_of(to) else {
            return ControlFlow::Continue(());
        };
        let switchover = retiring.as_ref().is_some_and(|(pod, _)| pod == from);
        if let (true, Some(from_addr)) = (switchover, a.address_of(from)) {
            let held = self
                .hold_writes_until_caught_up(&from_addr, &addr, &spec.settings)
                .await;
            if let Err(e) = held {
                obs.errors.push(format!(
                    "switchover of {}/{} shard {} from {from} to {to}: {e}",
                    db, p.name, s.plan.index
                ));
                let _ = self.nodes.unpause(&from_addr).await;
                return ControlFlow::Break(());
            }
            ex.paused = Some(from_addr);
        }
        if let Err(e) = self.nodes.promote(&addr).await {
            obs.errors.push(format!("promote {to}: {e}"));
            return ControlFlow::Continue(());
        }
        if let Err(e) = set_role(t.pods_api, to, labels::ROLE_PRIMARY).await {
            obs.errors.push(e);
            return ControlFlow::Continue(());
        }
        // The old primary may be gone; its label only matters if it is still there.
        let _ = set_role(t.pods_api, from, labels::ROLE_REPLICA).await;
        ex.primary_pod = Some(to.to_string());
        if let Some((_, since)) = retiring.as_ref().filter(|(pod, _)| pod == from) {
            let seconds = Instant::now().saturating_duration_since(*since);
            tracing::info!(database = %db, participant = %p.name, shard = s.plan.index, %from, %to, seconds = seconds.as_secs_f64(), "switched over");
            self.event(
                spec,
                EventType::Normal,
                "SwitchedOver",
                &format!("{}/{} shard {}: {to} is the primary in place of {from}, which is being replaced; hand-over took {:.2}s", db, p.name, s.plan.index, seconds.as_secs_f64()),
                Some(pod_ref(p, to)),
            )
            .await;
            return ControlFlow::Continue(());
        }
        let failed_at = views
            .iter()
            .find(|v| v.pod == from)
            .and_then(trouble_since)
            .unwrap_or(now);
        let seconds = Instant::now()
            .saturating_duration_since(failed_at)
            .as_secs_f64();
        self.failovers += 1;
        self.last_failover.insert(t.key.clone(), Instant::now());
        (self.on_failover)(db, &p.name, s.plan.index, seconds);
        tracing::warn!(database = %db, participant = %p.name, shard = s.plan.index, %from, %to, %reason, seconds, "failed over");
        self.event(
            spec,
            EventType::Warning,
            "FailedOver",
            &format!("{}/{} shard {}: promoted {to} in place of {from} ({reason}); {:.2}s after the primary failed", db, p.name, s.plan.index, seconds),
            Some(pod_ref(p, to)),
        )
        .await;
        ControlFlow::Continue(())
    }

    /// [`Action::Follow`]: `REPLICAOF` towards `primary_address` and the replica label; a
    /// demotion when `demote`.
    async fn follow(
        &mut self,
        t: &ShardTick<'_>,
        a: &Assessment,
        pod: &str,
        primary_address: &str,
        demote: bool,
        obs: &mut Observation,
    ) {
        let (spec, p, s) = (t.spec, t.p, t.s);
        let db = &spec.topology.database;
        let Some(addr) = a.address_of(pod) else {
            return;
        };
        if let Err(e) = self.nodes.follow(&addr, primary_address).await {
            obs.errors
                .push(format!("point {pod} at {primary_address}: {e}"));
            return;
        }
        if let Err(e) = set_role(t.pods_api, pod, labels::ROLE_REPLICA).await {
            obs.errors.push(e);
        }
        if demote {
            self.event(
                spec,
                EventType::Normal,
                "Demoted",
                &format!(
                    "{}/{} shard {}: {pod} follows {primary_address}",
                    db, p.name, s.plan.index
                ),
                Some(pod_ref(p, pod)),
            )
            .await;
        }
    }

    /// The first half of a switchover from the primary at `from` to its replica at `to`: holds
    /// the primary's writes (`CLIENT PAUSE … WRITE`, for 2 × the detection timeout at most, so a
    /// pause outlives no operator) and waits until `to` has everything `from` has. The caller
    /// promotes `to`, demotes `from` and lifts the pause.
    async fn hold_writes_until_caught_up(
        &self,
        from: &str,
        to: &str,
        settings: &FailoverSettings,
    ) -> Result<(), String> {
        let limit = settings.detection_timeout;
        self.nodes
            .pause_writes(from, limit.saturating_mul(2))
            .await
            .map_err(|e| format!("pause writes: {e}"))?;
        let started = Instant::now();
        // Clients' writes stop here; what the primary still receives from other regions after
        // this point the new primary gets from them over its own links.
        let target = self
            .nodes
            .probe(from)
            .await
            .map_err(|e| e.to_string())?
            .offset;
        loop {
            let replica = self.nodes.probe(to).await.map_err(|e| e.to_string())?;
            if !matches!(replica.role, ReportedRole::Replica { link_up: true, .. }) {
                return Err(format!("{to} lost its link to {from}"));
            }
            if replica.offset >= target {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(format!(
                    "{to} did not catch up within {limit:?} (offset {} < {target})",
                    replica.offset
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn set_role(pods: &Api<Pod>, pod: &str, role: &str) -> Result<(), String> {
    let patch = json!({"metadata": {"labels": {labels::ROLE: role}}});
    match pods
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("label {pod} {role}: {e}")),
    }
}
