//! The labeled primary is not serving or does not answer: detecting its failure and replacing
//! it.

use super::{flapping, human, realign, Action, Ctx, Decision, PodView};

impl Ctx<'_> {
    /// The primary is not serving or does not answer.
    pub(super) fn impaired(&self) -> Decision {
        let primary = self.primary;
        let timeout = self.settings.detection_timeout;
        let mut waiting = Vec::new();
        if !primary.serving() {
            let since = primary.not_ready_since.unwrap_or(self.now);
            let down = self.now.saturating_duration_since(since);
            let what = primary.not_serving_reason();
            // A process that exited is dead for certain: no need to wait out the timeout.
            if let Some(at) = primary.crashed_at {
                if self.now.saturating_duration_since(at) <= timeout.saturating_mul(2) {
                    return self.failover(format!(
                        "primary {} {what}: its process exited",
                        primary.pod
                    ));
                }
            }
            if down >= timeout {
                return self.failover(format!(
                    "primary {} {what} for {}",
                    primary.pod,
                    human(down)
                ));
            }
            waiting.push(format!(
                "primary {} {what} for {} (< {})",
                primary.pod,
                human(down),
                human(timeout)
            ));
        }
        if primary.report().is_none() {
            match self.unreachable() {
                Ok(reason) => return self.failover(reason),
                Err(why) => waiting.push(why),
            }
        }
        Decision::hold(waiting.join("; "))
    }

    /// Ok(reason) when the primary counts as unreachable (condition (b)), else Err(why not).
    fn unreachable(&self) -> Result<String, String> {
        let primary = self.primary;
        let settings = self.settings;
        let interval = settings.probe_interval();
        let streak = primary
            .failing_since
            .map(|since| self.now.saturating_duration_since(since))
            .unwrap_or_default();
        // It was last seen answering one probe interval before its first failure.
        let silent_for = streak + interval;
        if primary.failed_probes == 0 {
            return Err(format!(
                "primary {} has not answered a probe yet",
                primary.pod
            ));
        }
        let needed = settings.failures_to_fail();
        if primary.failed_probes < needed || streak < settings.min_failure_streak() {
            return Err(format!(
                "primary {} unreachable for {} (< {}): {}",
                primary.pod,
                human(silent_for),
                human(settings.detection_timeout),
                primary.silence_reason()
            ));
        }
        let witnesses: Vec<&str> = match &primary.address {
            Some(address) => self
                .others()
                .filter(|p| p.report().is_some_and(|r| r.linked_to(address)))
                .map(|p| p.pod.as_str())
                .collect(),
            None => Vec::new(),
        };
        if witnesses.is_empty() {
            Ok(format!(
                "primary {} unreachable for {} ({})",
                primary.pod,
                human(silent_for),
                primary.silence_reason()
            ))
        } else {
            Err(format!(
                "operator cannot reach primary {} ({}) but its replicas' links to it are up ({})",
                primary.pod,
                primary.silence_reason(),
                witnesses.join(", ")
            ))
        }
    }

    /// The primary serves and answers as a primary but cannot write its log: rule (d).
    pub(super) fn log_failing(&self) -> Decision {
        let primary = self.primary;
        let why = primary.log_failure().unwrap_or("unknown");
        let since = primary.log_failing_since.unwrap_or(self.now);
        let failing = self.now.saturating_duration_since(since);
        let timeout = self.settings.detection_timeout;
        if failing >= timeout {
            return self.failover_since(
                format!(
                    "primary {} cannot write its log for {}: {why}",
                    primary.pod,
                    human(failing)
                ),
                since,
            );
        }
        Decision::hold(format!(
            "primary {} cannot write its log for {} (< {}): {why}",
            primary.pod,
            human(failing),
            human(timeout)
        ))
    }

    /// The primary failed for `reason`: promote the best candidate, or hold.
    fn failover(&self, reason: String) -> Decision {
        self.failover_since(reason, self.primary.not_ready_since.unwrap_or(self.now))
    }

    /// Like [`Ctx::failover`]; a live primary is drained for at most 2 × `detection_timeout`
    /// after `stopped`, when it stopped working.
    fn failover_since(&self, reason: String, stopped: std::time::Instant) -> Decision {
        if !self.settings.enabled {
            return Decision::hold(format!("{reason}; automatic failover is disabled"));
        }
        let (chosen, completing) = match self.best_candidate() {
            Ok(found) => found,
            Err(why) => {
                return Decision::hold(format!("{reason}; no healthy replica to promote ({why})"))
            }
        };
        if !completing {
            if let Some(flap) = flapping(self.view, self.settings, self.now) {
                return Decision::hold(format!("{reason}; {flap}"));
            }
        }
        let reason = if completing {
            format!("{reason}; completing the promotion of {}", chosen.pod)
        } else {
            reason
        };
        if !completing {
            if let Some(hold) = self.drain(chosen, &reason, Some(stopped)) {
                return hold;
            }
        }
        self.promote(chosen, reason)
    }

    /// Promote `to` (serving, answering, with an address) in place of the primary.
    pub(super) fn promote(&self, to: &PodView, reason: String) -> Decision {
        let mut actions = vec![Action::Promote {
            from: self.primary.pod.clone(),
            to: to.pod.clone(),
            reason,
        }];
        if let Some(address) = &to.address {
            realign(self.view, to, address, &mut actions);
        }
        Decision {
            actions,
            holding: None,
            healthy: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::testkit::*;
    use crate::failover::{
        decide, FailoverSettings, HealthTracker, NodeReport, ProbeOutcome, ReportedRole,
    };

    #[test]
    fn a_primary_that_cannot_write_its_log_is_replaced_after_the_detection_timeout() {
        let t = now();
        let view = |since| {
            shard(vec![
                pod(0).labeled().primary(1, 100).log_failing(since),
                pod(1).replica_of(0, true, 100),
                pod(2).replica_of(0, true, 90).log_failing(since),
            ])
        };
        let d = decide(&view(t - ms(400)), &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(!d.healthy);
        assert!(
            holding(&d).contains("cannot write its log for 400ms (< 1s)")
                && holding(&d).contains("No space left"),
            "{d:?}"
        );
        // It still answers as a primary: the other replica is drained towards the candidate
        // (not itself a candidate: its log fails too), then the candidate is promoted.
        let d = decide(&view(t - ms(1000)), &settings(), t);
        assert_eq!(d.actions, vec![follow(2, 1, false)], "{d:?}");
        assert!(holding(&d).contains("draining"), "{d:?}");
        let drained = shard(vec![
            pod(0).labeled().primary(1, 100).log_failing(t - ms(1000)),
            pod(1).replica_of(0, true, 100),
            pod(2).replica_of(1, true, 90).log_failing(t - ms(1000)),
        ]);
        let d = decide(&drained, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))), "{d:?}");
        assert!(d.actions.contains(&follow(0, 1, true)), "{d:?}");
        let Some(Action::Promote { reason, .. }) = d.actions.first() else {
            panic!("{d:?}")
        };
        assert!(reason.contains("cannot write its log for 1s"), "{reason}");
    }

    #[test]
    fn a_replica_that_cannot_write_its_log_makes_the_shard_degraded() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().primary(1, 100),
            pod(1).replica_of(0, true, 100).log_failing(t - ms(50)),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(!d.healthy);
        assert!(
            holding(&d).contains("replica db-east-0-1 cannot write its log"),
            "{d:?}"
        );
    }

    #[test]
    fn the_tracker_remembers_when_answers_began_to_report_a_log_failure() {
        let t = now();
        let mut tracker = HealthTracker::new();
        let failing = |fails: bool| {
            ProbeOutcome::Answered(NodeReport {
                role: ReportedRole::Primary,
                offset: 1,
                generation: 1,
                log_failure: fails.then(|| "disk full".to_string()),
                write_held: false,
                coverage: 0,
            })
        };
        tracker.record_probe(&name(0), failing(true), t);
        tracker.record_probe(&name(0), ProbeOutcome::Failed("timeout".into()), t + ms(5));
        tracker.record_probe(&name(0), failing(true), t + ms(10));
        let mut view = pod(0);
        tracker.annotate(&mut view);
        assert_eq!(view.log_failing_since, Some(t));
        tracker.record_probe(&name(0), failing(false), t + ms(20));
        tracker.annotate(&mut view);
        assert_eq!(view.log_failing_since, None);
    }
    #[test]
    fn primary_not_ready_below_timeout_holds() {
        let t = now();
        let mut view = healthy_shard();
        view.pods[0] = view.pods[0].clone().not_ready(t - ms(400));
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 not Ready for 400ms (< 1s)"
        );
        assert!(!d.healthy);
    }

    #[test]
    fn primary_whose_process_exited_is_replaced_without_waiting() {
        let t = now();
        let mut view = healthy_shard();
        let mut dead = pod(0)
            .labeled()
            .not_ready(t - ms(100))
            .unreachable(1, t - ms(100));
        dead.crashed_at = Some(t - ms(100));
        view.pods[0] = dead;
        let d = decide(&view, &settings(), t);
        assert!(
            matches!(d.actions.first(), Some(Action::Promote { from, to, reason })
                if *from == name(0) && *to == name(1) && reason.contains("process exited")),
            "{d:?}"
        );
    }

    #[test]
    fn an_old_crash_does_not_skip_the_timeout() {
        let t = now();
        let mut view = healthy_shard();
        let mut p = pod(0)
            .labeled()
            .not_ready(t - ms(100))
            .unreachable(1, t - ms(100));
        p.crashed_at = Some(t - ms(5000));
        view.pods[0] = p;
        let d = decide(&view, &settings(), t);
        assert!(d.actions.is_empty(), "{d:?}");
        assert!(d.holding.is_some());
    }

    #[test]
    fn primary_not_ready_for_timeout_is_replaced() {
        let t = now();
        let mut view = healthy_shard();
        view.pods[0] = pod(0)
            .labeled()
            .not_ready(t - ms(1000))
            .unreachable(4, t - ms(900));
        let d = decide(&view, &settings(), t);
        assert_eq!(
            d.actions,
            vec![
                Action::Promote {
                    from: name(0),
                    to: name(1),
                    reason: "primary db-east-0-0 not Ready for 1s".to_string(),
                },
                follow(2, 1, false),
            ]
        );
        assert_eq!(d.holding, None);
        assert!(!d.healthy);
    }

    #[test]
    fn primary_never_probed_holds() {
        let mut view = healthy_shard();
        view.pods[0].last = None;
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 has not answered a probe yet"
        );
    }

    #[test]
    fn primary_not_ready_since_unknown_counts_from_now() {
        let mut view = healthy_shard();
        view.pods[0].pod_ready = false;
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert!(holding(&d).contains("not Ready for 0ms"), "{d:?}");
    }

    #[test]
    fn killed_primary_is_replaced_by_highest_offset_replica() {
        let t = now();
        let d = decide(&killed_primary(t), &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
        assert_eq!(d.actions[1..], [follow(1, 2, false)]);
        match &d.actions[0] {
            Action::Promote { reason, .. } => assert_eq!(
                reason,
                "primary db-east-0-0 unreachable for 1s (3 failed probes: connection refused)"
            ),
            other => panic!("expected a promotion, got {other:?}"),
        }
        assert_eq!(d.holding, None);
    }

    #[test]
    fn primary_unreachable_for_less_than_timeout_holds() {
        let t = now();
        let mut view = killed_primary(t);
        view.pods[0] = pod(0).labeled().unreachable(2, t - ms(350));
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 unreachable for 683ms (< 1s): 2 failed probes: connection refused"
        );
    }

    #[test]
    fn enough_failures_in_too_short_a_streak_hold() {
        // Probes sped up (e.g. retried): the count alone does not fail the primary.
        let t = now();
        let mut view = killed_primary(t);
        view.pods[0] = pod(0).labeled().unreachable(5, t - ms(100));
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(holding(&d).contains("unreachable for"), "{d:?}");
    }

    #[test]
    fn third_failure_on_schedule_fails_the_primary_despite_jitter() {
        // Failures at 0, 333ms and 650ms (a little early): enough.
        let t = now();
        let mut view = killed_primary(t);
        view.pods[0] = pod(0).labeled().unreachable(3, t - ms(650));
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
    }

    #[test]
    fn operator_cut_off_from_live_primary_holds() {
        let t = now();
        let view = shard(vec![
            pod(0).labeled().unreachable(6, t - ms(2000)),
            pod(1).replica_of(0, true, 100),
            pod(2).replica_of(0, false, 100),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "operator cannot reach primary db-east-0-0 (6 failed probes: connection refused) \
             but its replicas' links to it are up (db-east-0-1)"
        );
        assert!(!d.healthy);
    }

    #[test]
    fn witness_does_not_save_a_primary_that_is_not_ready() {
        let t = now();
        let view = shard(vec![
            pod(0)
                .labeled()
                .unreachable(6, t - ms(2000))
                .not_ready(t - ms(1500)),
            pod(1).replica_of(0, true, 100),
        ]);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
    }

    #[test]
    fn silent_replica_is_no_witness() {
        let t = now();
        let mut view = killed_primary(t);
        view.pods[1] = pod(1).replica_of(0, true, 100).unreachable(1, t - ms(10));
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
    }

    #[test]
    fn recent_failover_holds_then_expires() {
        let t = now();
        let mut view = killed_primary(t);
        view.last_failover = Some(t - ms(1500));
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 unreachable for 1s (3 failed probes: connection refused); \
             last failover of shard 0 was 1.5s ago (< 2s)"
        );
        view.last_failover = Some(t - ms(2000));
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
    }

    #[test]
    fn primary_answering_again_resets_its_streak() {
        let t = now();
        let mut tracker = HealthTracker::new();
        for i in 0..2u64 {
            tracker.record_probe(
                &name(0),
                ProbeOutcome::Failed("timeout".into()),
                t + ms(i * 333),
            );
        }
        let answer = ProbeOutcome::Answered(NodeReport {
            role: ReportedRole::Primary,
            offset: 100,
            generation: 1,
            log_failure: None,
            write_held: false,
            coverage: 0,
        });
        tracker.record_probe(&name(0), answer, t + ms(666));
        tracker.record_probe(
            &name(0),
            ProbeOutcome::Failed("timeout".into()),
            t + ms(999),
        );
        tracker.record_probe(
            &name(0),
            ProbeOutcome::Failed("timeout".into()),
            t + ms(1332),
        );
        let mut view = healthy_shard();
        tracker.annotate(&mut view.pods[0]);
        assert_eq!(view.pods[0].failed_probes, 2);
        assert_eq!(view.pods[0].failing_since, Some(t + ms(999)));
        // 5 failures out of 5 probes, but not in a row: not failed.
        let d = decide(&view, &settings(), t + ms(1332));
        assert_eq!(d.actions, vec![]);
        assert!(holding(&d).contains("unreachable for 666ms"), "{d:?}");
        let answer = ProbeOutcome::Answered(NodeReport {
            role: ReportedRole::Primary,
            offset: 100,
            generation: 1,
            log_failure: None,
            write_held: false,
            coverage: 0,
        });
        tracker.record_probe(&name(0), answer, t + ms(1665));
        tracker.annotate(&mut view.pods[0]);
        let d = decide(&view, &settings(), t + ms(1665));
        assert!(d.healthy, "{d:?}");
    }

    #[test]
    fn disabled_failover_never_promotes() {
        let t = now();
        let disabled = FailoverSettings {
            enabled: false,
            ..settings()
        };
        let d = decide(&killed_primary(t), &disabled, t);
        assert_eq!(d.actions, vec![]);
        assert_eq!(
            holding(&d),
            "primary db-east-0-0 unreachable for 1s (3 failed probes: connection refused); \
             automatic failover is disabled"
        );
        // Steady-state re-pointing still happens.
        let mut view = healthy_shard();
        view.pods[2] = pod(2).primary(1, 0);
        assert_eq!(
            decide(&view, &disabled, t).actions,
            vec![follow(2, 0, true)]
        );
    }

    #[test]
    fn terminating_primary_fails_over_after_timeout() {
        let t = now();
        let mut view = healthy_shard();
        view.pods[0].terminating = true;
        view.pods[0].not_ready_since = Some(t - ms(1000));
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![follow(2, 1, false)], "drained first");
        assert!(holding(&d).starts_with("primary db-east-0-0 terminating for 1s; draining"));
        view.pods[2] = pod(2).replica_of(1, true, 100);
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        match &d.actions[0] {
            Action::Promote { reason, .. } => {
                assert_eq!(reason, "primary db-east-0-0 terminating for 1s")
            }
            other => panic!("expected a promotion, got {other:?}"),
        }
        assert_eq!(d.actions[1..], [follow(0, 1, true)]);
    }

    #[test]
    fn single_probe_setting_fails_on_first_failure() {
        let t = now();
        let one = FailoverSettings {
            probes: 1,
            ..settings()
        };
        let mut view = killed_primary(t);
        view.pods[0] = pod(0).labeled().unreachable(1, t);
        let d = decide(&view, &one, t);
        assert_eq!(promotion(&d), Some((name(0), name(2))));
    }
}
