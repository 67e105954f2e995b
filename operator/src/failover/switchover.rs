//! Planned switchover: the labeled primary hands over before its pod is replaced (see "Planned
//! switchover" in the `failover` module documentation).

use super::{Ctx, Decision};

impl Ctx<'_> {
    /// The primary serves but is about to be replaced: hand over to an in-sync replica.
    pub(super) fn switchover(&self) -> Decision {
        let primary = self.primary;
        let reason = format!("planned switchover: {} is being replaced", primary.pod);
        let (chosen, completing) = match self.best_candidate() {
            Ok(found) => found,
            Err(why) => {
                return self.keep_serving(format!(
                    "{reason}; no healthy replica to hand over to ({why})"
                ))
            }
        };
        if completing {
            return self.promote(
                chosen,
                format!("{reason}; completing the promotion of {}", chosen.pod),
            );
        }
        let in_sync = primary
            .address
            .as_deref()
            .is_some_and(|a| chosen.report().is_some_and(|r| r.linked_to(a)));
        if !in_sync {
            return self.keep_serving(format!(
                "{reason}; waiting for {} to follow it with its link up before handing over",
                chosen.pod
            ));
        }
        if let Some(hold) = self.drain(chosen, &reason, None) {
            return hold;
        }
        self.promote(chosen, reason)
    }

    /// A switchover that cannot go ahead yet: the primary stays, the others are re-pointed to
    /// it as in the steady state, and the decision holds for `why`.
    fn keep_serving(&self, why: String) -> Decision {
        Decision {
            actions: self.steady().actions,
            holding: Some(why),
            healthy: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::failover::testkit::*;
    use crate::failover::{decide, FailoverSettings, ShardView};

    /// `healthy_shard` with its primary (pod 0) being replaced.
    fn retiring_primary() -> ShardView {
        ShardView {
            retiring: Some(name(0)),
            ..healthy_shard()
        }
    }

    #[test]
    fn planned_switchover_first_drains_the_other_replicas_to_the_best_one() {
        let t = now();
        let d = decide(&retiring_primary(), &settings(), t);
        // Pod 1 is the most advanced replica: pod 2 follows it, the primary keeps serving.
        assert_eq!(d.actions, vec![follow(2, 1, false)]);
        assert!(holding(&d).starts_with("planned switchover: db-east-0-0 is being replaced"));
        assert!(holding(&d).contains("draining"), "{}", holding(&d));
        assert!(!d.healthy);
    }

    #[test]
    fn planned_switchover_promotes_an_in_sync_replica_and_demotes_the_old_primary() {
        let t = now();
        let view = ShardView {
            retiring: Some(name(0)),
            ..shard(vec![
                pod(0).labeled().primary(1, 100),
                pod(1).replica_of(0, true, 100),
                pod(2).replica_of(1, true, 100),
            ])
        };
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert!(d.actions.contains(&follow(0, 1, true)), "{d:?}");
        assert_eq!(d.holding, None);
    }

    #[test]
    fn planned_switchover_leaves_the_catching_up_to_the_executor() {
        // The executor pauses the primary's writes and waits for the candidate before it
        // promotes it; under a steady write load the probes would always find it behind.
        let t = now();
        let view = ShardView {
            retiring: Some(name(0)),
            ..shard(vec![
                pod(0).labeled().primary(1, 150),
                pod(1).replica_of(0, true, 120),
            ])
        };
        let d = decide(&view, &settings(), t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
        assert!(d.actions.contains(&follow(0, 1, true)), "{d:?}");
    }

    #[test]
    fn planned_switchover_needs_neither_failover_enabled_nor_the_flapping_guard_passed() {
        let t = now();
        let view = ShardView {
            retiring: Some(name(0)),
            last_failover: Some(t - ms(100)),
            ..shard(vec![
                pod(0).labeled().primary(1, 100),
                pod(1).replica_of(0, true, 100),
            ])
        };
        let disabled = FailoverSettings {
            enabled: false,
            ..settings()
        };
        let d = decide(&view, &disabled, t);
        assert_eq!(promotion(&d), Some((name(0), name(1))));
    }

    #[test]
    fn planned_switchover_holds_without_a_replica_in_sync() {
        let t = now();
        let view = ShardView {
            retiring: Some(name(0)),
            ..shard(vec![
                pod(0).labeled().primary(1, 100),
                pod(1).replica_of(0, false, 40),
            ])
        };
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(
            holding(&d).contains("waiting for db-east-0-1 to follow it with its link up"),
            "{}",
            holding(&d)
        );
        let alone = ShardView {
            retiring: Some(name(0)),
            ..shard(vec![pod(0).labeled().primary(1, 100)])
        };
        let d = decide(&alone, &settings(), t);
        assert!(
            holding(&d).contains("no healthy replica to hand over to (the shard has no other pod)"),
            "{}",
            holding(&d)
        );
    }

    #[test]
    fn retiring_a_replica_or_a_failed_primary_follows_the_usual_rules() {
        let t = now();
        let view = ShardView {
            retiring: Some(name(2)),
            ..healthy_shard()
        };
        let d = decide(&view, &settings(), t);
        assert!(d.healthy && d.actions.is_empty(), "{d:?}");
        // A retiring primary that stopped serving is a failure like any other.
        let mut view = retiring_primary();
        view.pods[0] = view.pods[0].clone().not_ready(t - ms(300));
        let d = decide(&view, &settings(), t);
        assert_eq!(d.actions, vec![]);
        assert!(
            holding(&d).contains("not Ready for 300ms (< 1s)"),
            "{}",
            holding(&d)
        );
    }
}
