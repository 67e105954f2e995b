//! No pod is labeled primary: electing one (see "No pod labeled primary" in the `failover`
//! module documentation).

use super::candidate::rejection;
use super::{flapping, realign, Action, Decision, FailoverSettings, PodView, ShardView};
use std::cmp::Reverse;
use std::time::Instant;

/// No pod is labeled primary.
pub(super) fn elect(view: &ShardView, settings: &FailoverSettings, now: Instant) -> Decision {
    let primary = view
        .pods
        .iter()
        .filter(|p| !p.terminating && p.address.is_some())
        .filter_map(|p| p.primary_report().map(|r| (p, r)))
        .filter(|(p, _)| unelectable_primary(view, p).is_none())
        .max_by_key(|(p, r)| {
            (
                r.generation,
                r.coverage,
                r.offset,
                p.serving(),
                Reverse(p.ordinal),
            )
        })
        .map(|(p, _)| p);
    if let Some(pod) = primary {
        return elected(view, pod, false);
    }
    let replica = view
        .pods
        .iter()
        .filter(|p| p.serving() && p.address.is_some())
        .filter_map(|p| p.report().map(|r| (p, r)))
        .filter(|(_, r)| !r.is_primary())
        .max_by_key(|(p, r)| (r.coverage, r.offset, Reverse(p.ordinal)))
        .map(|(p, _)| p);
    if let Some(pod) = replica {
        let situation = "no pod is labeled primary and no electable pod answers as a primary";
        if !settings.enabled {
            return Decision::hold(format!(
                "{situation}; automatic failover is disabled, so replica {} is not promoted",
                pod.pod
            ));
        }
        if let Some(flap) = flapping(view, settings, now) {
            return Decision::hold(format!("{situation}; {flap}"));
        }
        return elected(view, pod, true);
    }
    if view.pods.iter().any(|p| p.report().is_some()) {
        let why: Vec<String> = view
            .pods
            .iter()
            .filter_map(|p| {
                rejection(p)
                    .or_else(|| unelectable_primary(view, p))
                    .map(|why| format!("{}: {why}", p.pod))
            })
            .collect();
        Decision::hold(format!(
            "no pod is labeled primary and no answering pod can be elected ({})",
            why.join("; ")
        ))
    } else {
        let unplaced: Vec<String> = view
            .pods
            .iter()
            .filter_map(|p| {
                p.unschedulable
                    .as_ref()
                    .map(|why| format!("pod {} {why}", p.pod))
            })
            .collect();
        if unplaced.is_empty() {
            Decision::hold("no pod is labeled primary and no pod answers yet".to_string())
        } else {
            Decision::hold(format!("no pod answers yet: {}", unplaced.join("; ")))
        }
    }
}

/// Why `pod`, answering as a primary while no pod is labeled primary, must not be elected, or
/// None (see "No pod labeled primary" in the `failover` module documentation).
fn unelectable_primary(view: &ShardView, pod: &PodView) -> Option<String> {
    let report = pod.primary_report()?;
    let others = || view.pods.iter().filter(|p| p.pod != pod.pod);
    let replicas_answer = others().any(|p| p.report().is_some_and(|r| !r.is_primary()));
    let followed = pod
        .address
        .as_deref()
        .is_some_and(|a| others().any(|p| p.report().is_some_and(|r| r.follows(a))));
    let newest = others()
        .filter_map(|p| p.report())
        .all(|r| r.generation < report.generation);
    (replicas_answer && !followed && !newest).then(|| {
        format!(
            "answers as a primary at generation {} that no replica follows and that is not newer \
             than the replicas (a restarted node)",
            report.generation
        )
    })
}

/// Elect `pod` (which has an address) and re-point the others to it.
pub(super) fn elected(view: &ShardView, pod: &PodView, promote: bool) -> Decision {
    let mut actions = vec![Action::Elect {
        pod: pod.pod.clone(),
        promote,
    }];
    if let Some(address) = &pod.address {
        realign(view, pod, address, &mut actions);
    }
    Decision {
        actions,
        holding: None,
        healthy: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::decide;
    use crate::failover::testkit::elect;
    use crate::failover::testkit::*;

    #[test]
    fn pods_that_cannot_be_scheduled_say_why() {
        let mut p0 = pod(0);
        p0.address = None;
        p0.pod_ready = false;
        p0.unschedulable = Some("cannot be scheduled: 0/3 nodes are available".into());
        let view = ShardView {
            pods: vec![p0],
            ..ShardView::default()
        };
        let d = decide(&view, &settings(), Instant::now());
        let why = d.holding.expect("held");
        assert!(
            why.contains("pod db-east-0-0 cannot be scheduled: 0/3 nodes are available"),
            "{why}"
        );
    }

    #[test]
    fn after_every_pod_restarted_the_one_holding_the_history_is_elected_not_an_emptied_one() {
        // Offsets restart at 0 with every process; the vector clock does not. Ordinal 0's
        // volume was emptied.
        let mut view = shard(vec![
            pod(0).primary(1, 0),
            pod(1).primary(1, 0),
            pod(2).primary(1, 0),
        ]);
        for (p, coverage) in view.pods.iter_mut().zip([0, 900, 1200]) {
            if let Some(crate::failover::ProbeOutcome::Answered(r)) = &mut p.last {
                r.coverage = coverage;
            }
        }
        let d = decide(&view, &settings(), now());
        assert_eq!(
            d.actions,
            vec![elect(2, false), follow(0, 2, true), follow(1, 2, true)]
        );
    }

    #[test]
    fn new_shard_elects_ordinal_zero_and_demotes_the_others() {
        let view = shard(vec![
            pod(2).primary(1, 0),
            pod(0).primary(1, 0),
            pod(1).primary(1, 0),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(
            d.actions,
            vec![elect(0, false), follow(2, 0, true), follow(1, 0, true)]
        );
        assert_eq!(d.holding, None);
    }

    #[test]
    fn new_shard_before_any_answer_holds() {
        let view = shard(vec![pod(0), pod(1).no_address()]);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "no pod is labeled primary and no pod answers yet"
        );
    }

    #[test]
    fn lost_label_goes_to_highest_generation_primary() {
        let view = shard(vec![
            pod(0).primary(1, 700),
            pod(1).primary(3, 5),
            pod(2).replica_of(1, true, 5),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![elect(1, false), follow(0, 1, true)]);
    }

    #[test]
    fn deleted_primary_back_as_a_primary_is_demoted_not_elected() {
        // 0 was deleted and recreated with a new address: it answers as a primary with its old
        // generation (maybe without its data); 1 and 2 still follow its old address.
        let old_address = "10.0.0.99:6379";
        let view = shard(vec![
            pod(0).primary(STEADY_GENERATION, 0),
            pod(1).replica_of_addr(old_address, false, 40),
            pod(2).replica_of_addr(old_address, false, 42),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(
            d.actions,
            vec![elect(2, true), follow(0, 2, true), follow(1, 2, false)]
        );
        // With no replica able to take over, it is held, and the message says why.
        let mut alone = view.clone();
        alone.pods[1] = alone.pods[1].clone().not_ready(now() - ms(5));
        alone.pods[2] = alone.pods[2].clone().not_ready(now() - ms(5));
        let d = decide(&alone, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert!(
            holding(&d).contains(
                "db-east-0-0: answers as a primary at generation 1 that no replica follows"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn unlabeled_primary_that_replicas_follow_is_elected_again() {
        let view = shard(vec![
            pod(0).replica_of(1, true, 70),
            pod(1).primary(STEADY_GENERATION, 70),
            pod(2).replica_of(1, true, 70),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![elect(1, false)]);
    }

    #[test]
    fn no_label_and_only_replicas_promotes_highest_offset() {
        let t = now();
        let view = shard(vec![
            pod(0).replica_of(5, false, 10),
            pod(1).replica_of(5, false, 30),
            pod(2).replica_of(5, false, 30).not_ready(t - ms(10)),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(
            d.actions,
            vec![elect(1, true), follow(0, 1, false), follow(2, 1, false)]
        );
        let disabled = FailoverSettings {
            enabled: false,
            ..settings()
        };
        let held = decide(&view, &disabled, t);
        assert_eq!(held.actions, vec![]);
        assert!(
            holding(&held).contains("automatic failover is disabled"),
            "{held:?}"
        );
        let mut flapping = view.clone();
        flapping.last_failover = Some(t - ms(100));
        let held = decide(&flapping, &settings(), t);
        assert_eq!(held.actions, vec![]);
        assert!(
            holding(&held).contains("last failover of shard 0 was 100ms ago"),
            "{held:?}"
        );
    }

    #[test]
    fn no_label_and_no_electable_pod_holds() {
        let t = now();
        let view = shard(vec![
            pod(0).replica_of(5, false, 10).not_ready(t - ms(10)),
            pod(1).unreachable(1, t),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(
            holding(&d)
                .starts_with("no pod is labeled primary and no answering pod can be elected"),
            "{d:?}"
        );
    }
}
