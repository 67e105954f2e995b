//! Randomized scenarios: invariants every decision keeps, and convergence when every node
//! answers.

use super::testkit::*;
use super::*;

/// Small deterministic generator for the randomized scenarios.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn random_shard(rng: &mut Rng, t: Instant) -> ShardView {
    let count = 1 + rng.below(4) as u32;
    let pods = (0..count)
        .map(|ordinal| {
            let mut p = pod(ordinal);
            p.labeled_primary = rng.chance(40);
            if rng.chance(20) {
                p = p.not_ready(t - ms(rng.below(2500)));
            }
            if rng.chance(10) {
                p = p.node_lost(t - ms(rng.below(2500)));
            }
            p.terminating = rng.chance(5);
            if rng.chance(5) {
                p.address = None;
            }
            let generation = rng.below(4);
            let offset = rng.below(4) as i64;
            p = match rng.below(4) {
                0 => p.unreachable(rng.below(6) as u32 + 1, t - ms(rng.below(2500))),
                1 => p.primary(generation, offset),
                _ => {
                    let target = if rng.chance(80) {
                        addr(rng.below(u64::from(count)) as u32)
                    } else {
                        "10.9.9.9:6379".to_string()
                    };
                    let link = rng.chance(50);
                    p.replica_of_addr(&target, link, offset)
                }
            };
            if rng.chance(10) {
                p = p.log_failing(t - ms(rng.below(2500)));
            }
            if rng.chance(10) {
                if let Some(ProbeOutcome::Answered(r)) = &mut p.last {
                    r.write_held = r.is_primary();
                }
            }
            if rng.chance(5) {
                p.last = None;
            }
            p
        })
        .collect();
    let last_failover = rng.chance(20).then(|| t - ms(rng.below(3000)));
    let retiring = rng
        .chance(15)
        .then(|| name(rng.below(u64::from(count)) as u32));
    ShardView {
        shard: 0,
        pods,
        last_failover,
        retiring,
    }
}

/// Invariants every decision keeps, whatever the view.
fn check(view: &ShardView, settings: &FailoverSettings, t: Instant, d: &Decision) {
    let by_name = |n: &str| view.pods.iter().find(|p| p.pod == n);
    if d.healthy {
        assert!(
            d.actions.is_empty() && d.holding.is_none(),
            "{view:?} {d:?}"
        );
    }
    let leaders: Vec<&Action> = d
        .actions
        .iter()
        .filter(|a| !matches!(a, Action::Follow { .. }))
        .collect();
    assert!(leaders.len() <= 1, "{view:?} {d:?}");
    if let Some(first) = leaders.first() {
        assert_eq!(*first, &d.actions[0], "promotion or election comes first");
    }
    let leader_address = match leaders.first() {
        Some(Action::Promote { from, to, .. }) => check_promotion(view, settings, t, d, from, to),
        Some(Action::Elect { pod, promote }) => {
            let pod = by_name(pod).expect("elected pod exists");
            assert!(pod.report().is_some(), "{view:?} {d:?}");
            if *promote && !pod.labeled_primary {
                assert!(settings.enabled, "{view:?} {d:?}");
            }
            if !pod.labeled_primary {
                assert!(
                    view.pods.iter().all(|p| !p.labeled_primary),
                    "{view:?} {d:?}"
                );
            }
            pod.address.clone()
        }
        None => check_kept_primary(view, settings, d),
        Some(other) => panic!("unexpected leading action {other:?}"),
    };
    let mut followers = Vec::new();
    for action in &d.actions {
        if let Action::Follow {
            pod,
            primary_address,
            demote,
        } = action
        {
            let p = by_name(pod).expect("followed pod exists");
            let report = p.report().expect("only answering pods are re-pointed");
            assert_eq!(*demote, report.is_primary(), "{view:?} {d:?}");
            assert_eq!(
                Some(primary_address),
                leader_address.as_ref(),
                "{view:?} {d:?}"
            );
            assert_ne!(p.address.as_ref(), Some(primary_address), "{view:?} {d:?}");
            assert!(!followers.contains(pod), "{view:?} {d:?}");
            followers.push(pod.clone());
        }
    }
}

/// The invariants of a decision that promotes `to` in place of `from`; returns the address
/// of the new primary.
fn check_promotion(
    view: &ShardView,
    settings: &FailoverSettings,
    t: Instant,
    d: &Decision,
    from: &str,
    to: &str,
) -> Option<String> {
    let by_name = |n: &str| view.pods.iter().find(|p| p.pod == n);
    // A planned switchover of a serving primary needs neither failover enabled nor the
    // flapping guard passed.
    // (A primary that cannot write its log fails over instead.)
    let switching = |p: &PodView| {
        view.retiring.as_ref() == Some(&p.pod)
            && p.serving()
            && p.primary_report().is_some()
            && p.log_failure().is_none()
    };
    let switchover = by_name(from).is_some_and(switching);
    assert!(settings.enabled || switchover, "{view:?} {d:?}");
    assert!(
        by_name(from).is_some_and(|p| p.labeled_primary),
        "{view:?} {d:?}"
    );
    let to = by_name(to).expect("promoted pod exists");
    assert!(to.serving() && to.report().is_some(), "{view:?} {d:?}");
    assert!(
        to.log_failure().is_none(),
        "a pod that cannot write its log is never promoted: {view:?} {d:?}"
    );
    if switchover && to.primary_report().is_none() {
        // Hands over only to a replica in sync with the primary.
        let from_address = by_name(from).and_then(|p| p.address.clone());
        assert!(
            from_address.is_some_and(|a| to.report().is_some_and(|r| r.linked_to(&a))),
            "{view:?} {d:?}"
        );
    }
    let flapping = view
        .last_failover
        .is_some_and(|l| t.saturating_duration_since(l) < settings.flap_guard());
    if flapping && !switchover {
        assert!(to.primary_report().is_some(), "{view:?} {d:?}");
    }
    // A live failed primary is drained before a replica that follows it replaces
    // it: no other replica still acknowledges its writes.
    let from = by_name(from).expect("failed primary exists");
    let relays = |address: &str| to.report().is_some_and(|r| r.follows(address));
    if let (Some(_), Some(from_address), true) = (
        from.primary_report(),
        from.address.as_deref(),
        from.address.as_deref().is_some_and(relays),
    ) {
        assert!(
            view.pods
                .iter()
                .filter(|p| p.pod != from.pod && p.pod != to.pod)
                .all(|p| !p.report().is_some_and(|r| r.follows(from_address))),
            "{view:?} {d:?}"
        );
    }
    to.address.clone()
}

/// The invariants of a decision that keeps the labeled primary (and may drain it); returns
/// the address the other pods must follow.
fn check_kept_primary(
    view: &ShardView,
    settings: &FailoverSettings,
    d: &Decision,
) -> Option<String> {
    let by_name = |n: &str| view.pods.iter().find(|p| p.pod == n);
    // A planned switchover of a serving primary needs neither failover enabled nor the
    // flapping guard passed.
    // (A primary that cannot write its log fails over instead.)
    let switching = |p: &PodView| {
        view.retiring.as_ref() == Some(&p.pod)
            && p.serving()
            && p.primary_report().is_some()
            && p.log_failure().is_none()
    };
    let keeper = view
        .pods
        .iter()
        .filter(|p| p.labeled_primary)
        .max_by_key(|p| keeper_rank(p));
    let drain_target = d.actions.iter().find_map(|a| match a {
        Action::Follow {
            primary_address, ..
        } if keeper.and_then(|k| k.address.as_ref()) != Some(primary_address) => {
            Some(primary_address.clone())
        }
        _ => None,
    });
    match (keeper, drain_target) {
        (Some(keeper), Some(target)) => {
            // Draining: the kept primary is live but failed (or handing over), the
            // decision holds, and its replicas are re-pointed to a serving,
            // answering candidate.
            assert!(settings.enabled || switching(keeper), "{view:?} {d:?}");
            assert!(d.holding.is_some(), "{view:?} {d:?}");
            assert!(
                keeper.primary_report().is_some()
                    && (!keeper.serving() || switching(keeper) || keeper.log_failure().is_some()),
                "{view:?} {d:?}"
            );
            let candidate = view
                .pods
                .iter()
                .find(|p| p.address.as_ref() == Some(&target))
                .expect("drain target exists");
            assert!(
                candidate.serving() && candidate.report().is_some(),
                "{view:?} {d:?}"
            );
            for action in &d.actions {
                if let Action::Follow { pod, .. } = action {
                    let p = by_name(pod).expect("drained pod exists");
                    let follows_keeper = p
                        .report()
                        .is_some_and(|r| keeper.address.as_deref().is_some_and(|a| r.follows(a)));
                    assert!(follows_keeper, "{view:?} {d:?}");
                }
            }
            Some(target)
        }
        (keeper, _) => keeper.and_then(|p| p.address.clone()),
    }
}

#[test]
fn randomized_scenarios_keep_invariants() {
    let t = now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut promotions, mut drains) = (0, 0);
    for _ in 0..20_000 {
        let view = random_shard(&mut rng, t);
        let settings = FailoverSettings {
            enabled: rng.chance(85),
            ..settings()
        };
        let d = decide(&view, &settings, t);
        check(&view, &settings, t, &d);
        promotions += usize::from(promotion(&d).is_some());
        drains += usize::from(holding(&d).contains("draining"));
        // The order the pods are listed in does not matter.
        let mut reversed = view.clone();
        reversed.pods.reverse();
        let r = decide(&reversed, &settings, t);
        let sorted = |d: &Decision| {
            let mut actions = d.actions.clone();
            actions.sort_by_key(|a| format!("{a:?}"));
            (actions, d.holding.is_some(), d.healthy)
        };
        assert_eq!(sorted(&d), sorted(&r), "{view:?}");
    }
    assert!(promotions > 100 && drains > 10, "{promotions} {drains}");
}

/// A shard whose nodes all answer: applying the decisions as the executor would converges
/// to a healthy shard.
#[test]
fn executing_decisions_converges_when_every_node_answers() {
    let t = now();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..5_000 {
        let mut view = random_shard(&mut rng, t);
        for p in &mut view.pods {
            p.pod_ready = true;
            p.node_ready = true;
            p.terminating = false;
            p.not_ready_since = None;
            p.address = Some(addr(p.ordinal));
            if p.report().is_none() {
                *p = p.clone().primary(1, 0);
            }
            // Every node works: none fails to write its log.
            p.log_failing_since = None;
            if let Some(ProbeOutcome::Answered(report)) = &mut p.last {
                report.log_failure = None;
            }
        }
        view.last_failover = None;
        // As the supervisor does: no switchover in a shard of one pod, and a switchover
        // ends once the pod it replaces is no longer the primary.
        view.retiring = view.retiring.take().filter(|_| view.pods.len() > 1);
        let start = view.clone();
        let mut converged = false;
        for _ in 0..5 {
            let d = decide(&view, &settings(), t);
            check(&view, &settings(), t, &d);
            if d.healthy {
                converged = true;
                break;
            }
            apply(&mut view, &d);
            connect_links(&mut view);
            if let Some(pod) = &view.retiring {
                if !view.pods.iter().any(|p| &p.pod == pod && p.labeled_primary) {
                    view.retiring = None;
                }
            }
        }
        assert!(converged, "{start:?} ended as {view:?}");
    }
}

/// Replicas following a pod that answers as a primary get their link up.
fn connect_links(view: &mut ShardView) {
    let primaries: Vec<String> = view
        .pods
        .iter()
        .filter(|p| p.primary_report().is_some())
        .filter_map(|p| p.address.clone())
        .collect();
    for p in &mut view.pods {
        if let Some(ProbeOutcome::Answered(NodeReport {
            role: ReportedRole::Replica { primary, link_up },
            ..
        })) = &mut p.last
        {
            *link_up = primaries.contains(primary);
        }
    }
}

/// Applies actions as the supervisor and the shard-nodes would.
fn apply(view: &mut ShardView, d: &Decision) {
    let highest = view
        .pods
        .iter()
        .filter_map(|p| p.report().map(|r| r.generation))
        .max()
        .unwrap_or(0);
    let promote = |p: &mut PodView| {
        if p.primary_report().is_none() {
            *p = p.clone().primary(highest + 1, 0);
        }
    };
    for action in &d.actions {
        match action {
            Action::Elect { pod, promote: up } => {
                let p = view.pods.iter_mut().find(|p| &p.pod == pod).expect("pod");
                if *up {
                    promote(p);
                    if let Some(ProbeOutcome::Answered(r)) = &mut p.last {
                        r.write_held = false;
                    }
                }
                p.labeled_primary = true;
            }
            Action::Promote { from, to, .. } => {
                for p in &mut view.pods {
                    if &p.pod == to {
                        promote(p);
                        p.labeled_primary = true;
                    } else if &p.pod == from {
                        p.labeled_primary = false;
                    }
                }
            }
            Action::Follow {
                pod,
                primary_address,
                ..
            } => {
                let p = view.pods.iter_mut().find(|p| &p.pod == pod).expect("pod");
                let generation = p.report().map_or(1, |r| r.generation);
                *p = p.clone().replica_of_addr(primary_address, true, 0);
                if let Some(ProbeOutcome::Answered(r)) = &mut p.last {
                    r.generation = generation;
                }
                p.labeled_primary = false;
            }
        }
    }
}
