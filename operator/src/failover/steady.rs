//! The labeled primary serves and answers: the steady state, or a labeled primary that answers
//! as a replica.

use super::election::elected;
use super::{realign, Action, Ctx, Decision, NodeReport};
use std::cmp::Reverse;

impl Ctx<'_> {
    /// The primary is serving and answers as a primary.
    pub(super) fn steady(&self) -> Decision {
        let Some(address) = &self.primary.address else {
            return Decision::hold(format!("primary {} has no address yet", self.primary.pod));
        };
        let mut actions = Vec::new();
        // Restarted with data, it waits to be told it is still the primary.
        if self.primary.report().is_some_and(|r| r.write_held) {
            actions.push(Action::Elect {
                pod: self.primary.pod.clone(),
                promote: true,
            });
        }
        realign(self.view, self.primary, address, &mut actions);
        let silent_labeled: Vec<&str> = self
            .others()
            .filter(|p| p.labeled_primary && p.report().is_none())
            .map(|p| p.pod.as_str())
            .collect();
        let mut problems = Vec::new();
        if !silent_labeled.is_empty() {
            problems.push(format!(
                "{} also labeled primary and not answering; kept {}",
                silent_labeled.join(", "),
                self.primary.pod
            ));
        }
        for pod in self.others() {
            if let Some(why) = pod.log_failure() {
                problems.push(format!("replica {} cannot write its log: {why}", pod.pod));
            }
        }
        let holding = (!problems.is_empty()).then(|| problems.join("; "));
        let replicas_in_sync = self.others().all(|p| {
            p.serving() && !p.labeled_primary && p.report().is_some_and(|r| r.linked_to(address))
        });
        let healthy = actions.is_empty() && holding.is_none() && replicas_in_sync;
        Decision {
            actions,
            holding,
            healthy,
        }
    }

    /// The primary is serving but answers as a replica.
    pub(super) fn labeled_replica(&self, report: &NodeReport) -> Decision {
        let newer = self
            .others()
            .filter(|p| p.serving() && p.address.is_some() && p.log_failure().is_none())
            .filter_map(|p| p.primary_report().map(|r| (p, r)))
            .filter(|(_, r)| r.generation > report.generation)
            .max_by_key(|(p, r)| (r.generation, r.offset, Reverse(p.ordinal)));
        if let Some((pod, newer_report)) = newer {
            let reason = format!(
                "primary {} answers as a replica; {} is a primary at generation {} (> {})",
                self.primary.pod, pod.pod, newer_report.generation, report.generation
            );
            if !self.settings.enabled {
                return Decision::hold(format!("{reason}; automatic failover is disabled"));
            }
            return self.promote(pod, reason);
        }
        elected(self.view, self.primary, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::failover::testkit::*;
    use crate::failover::{decide, FailoverSettings, ProbeOutcome, ReportedRole};

    #[test]
    fn a_primary_holding_writes_after_a_restart_is_confirmed_and_the_others_realigned() {
        let t = now();
        let mut view = shard(vec![
            pod(0).labeled().primary(1, 100),
            pod(1).primary(1, 40),
            pod(2).replica_of(0, true, 90),
        ]);
        if let Some(ProbeOutcome::Answered(r)) = &mut view.pods[0].last {
            r.write_held = true;
        }
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![elect(0, true), follow(1, 0, true)], "{d:?}");
        assert!(!d.healthy);
    }

    #[test]
    fn healthy_steady_state() {
        let d = decide(&healthy_shard(), &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert_eq!(d.holding, None);
        assert!(d.healthy);
    }

    #[test]
    fn replica_with_link_down_is_not_healthy_but_needs_no_action() {
        let mut view = healthy_shard();
        view.pods[2] = pod(2).replica_of(0, false, 0);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert!(!d.healthy);
    }

    #[test]
    fn silent_or_not_ready_replica_is_not_healthy() {
        let t = now();
        let mut view = healthy_shard();
        view.pods[1] = pod(1).unreachable(5, t - ms(3000));
        let d = decide(&view, &settings(), t);
        assert_eq!((d.actions.len(), d.healthy), (0, false));
        let mut view = healthy_shard();
        view.pods[1] = view.pods[1].clone().not_ready(t - ms(3000));
        let d = decide(&view, &settings(), t);
        assert_eq!((d.actions.len(), d.healthy), (0, false));
    }

    #[test]
    fn old_primary_returning_as_primary_is_demoted() {
        let view = shard(vec![
            pod(0).primary(1, 900),
            pod(1).labeled().primary(2, 40),
            pod(2).replica_of(1, true, 40),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![follow(0, 1, true)]);
        assert_eq!(d.holding, None);
        assert!(!d.healthy);
    }

    #[test]
    fn restarted_replica_answering_as_primary_is_demoted() {
        let mut view = healthy_shard();
        view.pods[2] = pod(2).primary(1, 0);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![follow(2, 0, true)]);
    }

    #[test]
    fn replica_following_stale_address_is_repointed() {
        let mut view = healthy_shard();
        view.pods[1] = pod(1).replica_of_addr("10.0.0.99:6379", false, 0);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![follow(1, 0, false)]);
        assert!(!d.healthy);
    }

    #[test]
    fn two_labeled_with_silent_other_holds_with_message() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(2, t - ms(300)),
            pod(1).labeled().primary(2, 10),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "db-east-0-0 also labeled primary and not answering; kept db-east-0-1"
        );
        assert!(!d.healthy);
    }

    #[test]
    fn primary_without_address_holds() {
        let mut view = healthy_shard();
        view.pods[0].address = None;
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert_eq!(holding(&d), "primary db-east-0-0 has no address yet");
        assert!(!d.healthy);
    }

    #[test]
    fn single_pod_shard_healthy() {
        let view = shard(vec![pod(0).labeled().primary(1, 0)]);
        let d = decide(&view, &settings(), now());
        assert!(d.healthy, "{d:?}");
    }

    #[test]
    fn labeled_primary_answering_as_replica_is_promoted_again() {
        let view = shard(vec![
            pod(0)
                .labeled()
                .replica_of_addr("10.0.0.99:6379", false, 100),
            pod(1).replica_of(0, false, 100),
            pod(2).primary(1, 0),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(
            d.actions,
            vec![elect(0, true), follow(2, 0, true)],
            "replica 1 already follows 0's address"
        );
    }

    #[test]
    fn labeled_primary_answering_as_replica_yields_to_newer_primary() {
        let view = shard(vec![
            pod(0).labeled().answers(
                ReportedRole::Replica {
                    primary: String::new(),
                    link_up: false,
                },
                2,
                0,
            ),
            pod(1).primary(3, 10),
            pod(2).replica_of(1, true, 10),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(0, 1, false)]);
        let disabled = FailoverSettings {
            enabled: false,
            ..settings()
        };
        let held = decide(&view, &disabled, now());
        assert_eq!(held.actions, vec![]);
        assert!(
            holding(&held).ends_with("automatic failover is disabled"),
            "{held:?}"
        );
    }
}
