//! Draining a primary that failed but still takes writes, before its replacement is promoted
//! (see "Draining a live primary" in the `failover` module documentation).

use super::{Action, Ctx, Decision, PodView};
use std::time::Instant;

impl Ctx<'_> {
    /// While the failed primary still answers as a primary: re-points the other replicas of
    /// the failed primary to `chosen`, or waits for `chosen` to catch up (see "Draining a live
    /// primary" in the `failover` module documentation). With `catch_up_since`, the wait for
    /// `chosen` to catch up ends 2 × `detection_timeout` after it; without, there is none. None
    /// when `chosen` may be promoted now.
    pub(super) fn drain(
        &self,
        chosen: &PodView,
        reason: &str,
        catch_up_since: Option<Instant>,
    ) -> Option<Decision> {
        let primary = self.primary;
        let primary_report = primary.primary_report()?;
        let primary_address = primary.address.as_deref()?;
        let chosen_address = chosen.address.as_deref()?;
        let chosen_report = chosen.report()?;
        // Only a candidate that still receives the primary's stream can relay it to the others.
        if !chosen_report.follows(primary_address) {
            return None;
        }
        let repoint: Vec<&PodView> = self
            .others()
            .filter(|p| p.pod != chosen.pod)
            .filter(|p| p.report().is_some_and(|r| r.follows(primary_address)))
            .collect();
        if !repoint.is_empty() {
            let names: Vec<&str> = repoint.iter().map(|p| p.pod.as_str()).collect();
            return Some(Decision {
                actions: repoint
                    .iter()
                    .map(|p| Action::Follow {
                        pod: p.pod.clone(),
                        primary_address: chosen_address.to_string(),
                        demote: false,
                    })
                    .collect(),
                holding: Some(format!(
                    "{reason}; draining {}, which still answers as a primary: {} follow {} \
                     first, so that only {} acknowledges its writes until it is promoted",
                    primary.pod,
                    names.join(", "),
                    chosen.pod,
                    chosen.pod
                )),
                healthy: false,
            });
        }
        let since = catch_up_since?;
        let behind = chosen_report.offset < primary_report.offset;
        let waited = self.now.saturating_duration_since(since);
        let patience = self.settings.detection_timeout.saturating_mul(2);
        (behind && waited < patience).then(|| {
            Decision::hold(format!(
                "{reason}; draining {}, which still answers as a primary: waiting for {} to \
                 catch up (offset {} < {}) before promoting it",
                primary.pod, chosen.pod, chosen_report.offset, primary_report.offset
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::decide;
    use crate::failover::testkit::*;

    #[test]
    fn lost_node_with_live_process_fails_over_after_timeout_and_demotes_old_primary() {
        let t = now();
        let view = |lost_for: u64| {
            shard(vec![
                pod(0).labeled().primary(1, 500).node_lost(t - ms(lost_for)),
                pod(1).replica_of(0, true, 500),
                pod(2).replica_of(0, true, 480),
            ])
        };
        let early = decide(&view(600), &settings(), t);
        assert_eq!(early.actions, vec![]);
        assert_eq!(
            holding(&early),
            "primary db-east-0-0 on a node that is not Ready for 600ms (< 1s)"
        );
        // The live primary is drained first: 2 stops acknowledging its writes.
        let d = decide(&view(1200), &settings(), t);
        assert_eq!(d.actions, vec![follow(2, 1, false)]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 on a node that is not Ready for 1.2s; draining db-east-0-0, \
             which still answers as a primary: db-east-0-2 follow db-east-0-1 first, so that \
             only db-east-0-1 acknowledges its writes until it is promoted"
        );
        // Next tick: only 1 follows the old primary and has all of it.
        let mut drained = view(1500);
        drained.pods[2] = pod(2).replica_of(1, true, 500);
        let d = decide(&drained, &settings(), t);
        assert_eq!(
            d.actions,
            vec![
                Action::Promote {
                    from: name(0),
                    to: name(1),
                    reason: "primary db-east-0-0 on a node that is not Ready for 1.5s".to_string(),
                },
                follow(0, 1, true),
            ]
        );
    }

    #[test]
    fn drained_candidate_is_promoted_once_caught_up_or_when_patience_runs_out() {
        let t = now();
        let view = |lost_for: u64, candidate_offset: i64| {
            shard(vec![
                pod(0).labeled().primary(1, 700).node_lost(t - ms(lost_for)),
                pod(1).replica_of(0, true, candidate_offset),
                pod(2).replica_of(1, true, 0),
            ])
        };
        let d = decide(&view(1300, 650), &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 on a node that is not Ready for 1.3s; draining db-east-0-0, \
             which still answers as a primary: waiting for db-east-0-1 to catch up (offset 650 \
             < 700) before promoting it"
        );
        let caught_up = decide(&view(1300, 700), &settings(), t);
        assert_eq!(promotion(&caught_up), Some((name(0), name(1))));
        assert_eq!(caught_up.actions[1..], [follow(0, 1, true)]);
        let late = decide(&view(2000, 650), &settings(), t);
        assert_eq!(promotion(&late), Some((name(0), name(1))));
    }

    #[test]
    fn candidate_not_following_the_live_primary_is_promoted_without_draining() {
        // 1 was re-pointed to 2 earlier and 2 stopped serving: 1 cannot relay 0's stream, so
        // pointing 2 at it would only cut 2 off; 2, which still follows 0, is realigned.
        let t = now();
        let view = shard(vec![
            pod(0).labeled().primary(1, 800).node_lost(t - ms(1500)),
            pod(1).replica_of(2, true, 800),
            pod(2).replica_of(0, true, 800).not_ready(t - ms(200)),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(0, 1, true), follow(2, 1, false)]);
    }

    #[test]
    fn live_primary_with_one_replica_is_replaced_without_draining() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().primary(1, 300).node_lost(t - ms(1100)),
            pod(1).replica_of(0, true, 300),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert_eq!(d.actions[1..], [follow(0, 1, true)]);
    }

    #[test]
    fn silent_primary_is_not_drained() {
        let t = now();
        let mut view = killed_primary(t);
        view.pods[1] = pod(1).replica_of(0, false, 100);
        view.pods[2] = pod(2).replica_of(0, false, 120);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
        assert_eq!(d.actions[1..], [follow(1, 2, false)]);
    }
}
