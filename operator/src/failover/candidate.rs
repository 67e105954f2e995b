//! Which pod replaces the primary (see "Candidates" in the `failover` module documentation).

use super::{Ctx, NodeReport, PodView};
use std::cmp::Reverse;

impl Ctx<'_> {
    /// The pod to promote in place of the primary and whether it completes an interrupted
    /// promotion (it already answers as the newest primary), or why there is none.
    pub(super) fn best_candidate(&self) -> Result<(&PodView, bool), String> {
        let mut rejected = Vec::new();
        let mut resumed: Option<(&PodView, &NodeReport)> = None;
        let mut replica: Option<(&PodView, &NodeReport)> = None;
        let failed_address = self.primary.address.as_deref();
        for pod in self.others() {
            if let Some(why) = self.candidate_rejection(pod) {
                rejected.push(format!("{}: {why}", pod.pod));
                continue;
            }
            let Some(report) = pod.report() else { continue };
            let slot = if report.is_primary() {
                &mut resumed
            } else {
                &mut replica
            };
            let better = match slot {
                None => true,
                Some((best, best_report)) if report.is_primary() => {
                    (report.generation, report.offset, Reverse(pod.ordinal))
                        > (
                            best_report.generation,
                            best_report.offset,
                            Reverse(best.ordinal),
                        )
                }
                Some((best, best_report)) => {
                    let follows = |r: &NodeReport| failed_address.is_some_and(|a| r.follows(a));
                    (follows(report), report.offset, Reverse(pod.ordinal))
                        > (
                            follows(best_report),
                            best_report.offset,
                            Reverse(best.ordinal),
                        )
                }
            };
            if better {
                *slot = Some((pod, report));
            }
        }
        match (resumed, replica) {
            (Some((pod, _)), _) => Ok((pod, true)),
            (None, Some((pod, _))) => Ok((pod, false)),
            (None, None) if rejected.is_empty() => Err("the shard has no other pod".to_string()),
            (None, None) => Err(rejected.join("; ")),
        }
    }

    /// Why `pod` is not a candidate to replace the failed primary, or None if it is.
    fn candidate_rejection(&self, pod: &PodView) -> Option<String> {
        if let Some(why) = rejection(pod) {
            return Some(why);
        }
        let report = pod.report()?;
        if report.is_primary() {
            let highest_other = self
                .view
                .pods
                .iter()
                .filter(|p| p.pod != pod.pod)
                .filter_map(|p| p.report().map(|r| r.generation))
                .max();
            if highest_other.is_some_and(|g| g >= report.generation) {
                return Some(format!(
                    "answers as a primary at generation {} without being newer than the others",
                    report.generation
                ));
            }
        }
        None
    }
}

/// Why `pod` cannot be elected or promoted whatever its role, or None.
pub(super) fn rejection(pod: &PodView) -> Option<String> {
    if !pod.serving() {
        return Some(pod.not_serving_reason().to_string());
    }
    if pod.address.is_none() {
        return Some("no address".to_string());
    }
    if pod.report().is_none() {
        return Some(format!("unreachable ({})", pod.silence_reason()));
    }
    if let Some(why) = pod.log_failure() {
        return Some(format!("cannot write its log ({why})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::failover::testkit::*;
    use crate::failover::{decide, Action};

    #[test]
    fn replicas_at_different_offsets_highest_wins() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).replica_of(0, false, 500),
            pod(2).replica_of(0, false, 20),
            pod(3).replica_of(0, false, 499),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(2, 1, false), follow(3, 1, false)]);
    }

    #[test]
    fn offset_tie_goes_to_lowest_ordinal() {
        let t = now();
        let view = shard(vec![
            pod(3).replica_of(0, false, 70),
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(2).replica_of(0, false, 70),
            pod(1).replica_of(0, false, 70),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
    }

    #[test]
    fn replica_of_the_failed_primary_beats_a_stale_one_with_higher_offset() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).replica_of_addr("10.9.9.9:6379", false, 9000),
            pod(2).replica_of(0, false, 10),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
        assert_eq!(d.actions[1..], [follow(1, 2, false)]);
    }

    #[test]
    fn no_healthy_replica_holds() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).unreachable(3, t - ms(700)),
            pod(2).replica_of(0, false, 10).no_address(),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 unreachable for 1s (3 failed probes: connection refused); \
             no healthy replica to promote (db-east-0-1: unreachable (3 failed probes: \
             connection refused); db-east-0-2: no address)"
        );
    }

    #[test]
    fn all_replicas_not_ready_holds() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).replica_of(0, false, 10).not_ready(t - ms(50)),
            pod(2).replica_of(0, false, 10).node_lost(t - ms(50)),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        let message = holding(&d);
        assert!(
            message.contains("no healthy replica to promote"),
            "{message}"
        );
        assert!(message.contains("db-east-0-1: not Ready"), "{message}");
        assert!(
            message.contains("db-east-0-2: on a node that is not Ready"),
            "{message}"
        );
    }

    #[test]
    fn terminating_replica_is_not_a_candidate() {
        let t = now();
        let mut view = killed_primary(t);
        view.pods[2].terminating = true;
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
    }

    #[test]
    fn interrupted_promotion_is_completed_not_repeated() {
        let t = now();
        let mut view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).primary(2, 3),
            pod(2).replica_of(0, false, 900),
        ]);
        // The interrupted attempt was just recorded: completing it is not flapping.
        view.last_failover = Some(t - ms(100));
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(2, 1, false)]);
        match &d.actions[0] {
            Action::Promote { reason, .. } => {
                assert!(
                    reason.ends_with("completing the promotion of db-east-0-1"),
                    "{reason}"
                )
            }
            other => panic!("expected a promotion, got {other:?}"),
        }
    }

    #[test]
    fn interrupted_promotion_completed_when_old_primary_still_answers() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().primary(2, 50).node_lost(t - ms(5000)),
            pod(1).primary(3, 0),
            pod(2).replica_of(0, true, 50),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(0, 1, true), follow(2, 1, false)]);
    }

    #[test]
    fn restarted_replica_answering_as_primary_is_not_promoted_over_a_replica() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).primary(STEADY_GENERATION, 0),
            pod(2).replica_of(0, false, 50),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
        assert_eq!(d.actions[1..], [follow(1, 2, true)]);
    }

    #[test]
    fn only_other_pod_restarted_as_primary_is_promoted() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).primary(STEADY_GENERATION, 0),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
    }

    #[test]
    fn pod_without_address_is_not_a_candidate() {
        let t = now();
        let mut view = killed_primary(t);
        view.pods[2].address = None;
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(2, 1, false)]);
    }

    #[test]
    fn single_pod_shard_with_dead_primary_holds() {
        let t = now();
        let view = shard(vec![pod(0).labeled().unreachable(10, t - ms(5000))]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(
            holding(&d).ends_with("no healthy replica to promote (the shard has no other pod)"),
            "{d:?}"
        );
    }
}
