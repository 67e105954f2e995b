//! Failover decisions for one shard of one participant: a pure function of what Kubernetes
//! says about the shard's pods and what the shard-nodes answered to the operator's probes.
//! No I/O here; the supervisor probes, calls [`decide`] and executes the [`Action`]s.
//!
//! # Contract
//!
//! Terms. A pod *answers* when its latest probe returned a [`NodeReport`] and no probe failed
//! since (`failed_probes == 0`). A pod is *serving* when it is Ready, not terminating and its
//! node is Ready. The *primary* is the pod labeled `aadb.dev/role=primary`; when several are
//! (a label move was interrupted), the one answering as a primary with the highest
//! (generation, offset) is kept, then a serving one, then the lowest ordinal; the others are
//! told to follow it as soon as they answer.
//!
//! **Failure.** The primary is *failed* when
//! - (a) it has not been serving (not Ready, terminating, or on a node that is not Ready) for at
//!   least `detection_timeout`, counted from `not_ready_since` (from now when unknown) — even if
//!   its shard-node still answers (a lost node with a live process): Kubernetes does not route
//!   to it; or
//! - (b) it does not answer: its probes failed `probes` times in a row (fewer when the
//!   probe interval had to be raised to [`MIN_PROBE_INTERVAL`], see
//!   [`FailoverSettings::failures_to_fail`]), its first and latest failure are at least that
//!   many probe intervals minus one apart (less a quarter interval for timer jitter; with the
//!   interval before the first failure, when it was last seen answering, that makes the
//!   detection timeout), **and** no answering replica reports its link to the primary's
//!   address up. Replicas whose link is up witness that the primary is alive and
//!   that the operator is the one cut off: the decision holds and says so.
//! - (c) it is not serving and its shard-node container was seen dead or restarted (restart
//!   count rose) within the last 2 × `detection_timeout`: the process exited, which needs no
//!   waiting.
//!
//! - (d) it serves and answers as a primary, but its answers have reported that it cannot write
//!   its log (a full disk, an I/O error: it refuses writes) for at least `detection_timeout`,
//!   counted from the first such answer ([`PodView::log_failing_since`]).
//!
//! While the primary is not serving or not answering, or cannot write its log, but is not (yet)
//! failed, nothing is done and `holding` says why (no re-pointing towards a primary in doubt).
//! A replica that cannot write its log is never a candidate, and in the steady state it makes
//! the shard not healthy, with `holding` naming it.
//!
//! **Candidates.** A candidate for promotion is a pod other than the failed primary that is
//! serving, answers, has an address, and answers either as a replica, or as a primary whose
//! generation is higher than the generation of every other answering pod. The latter is a
//! promotion that an earlier decision started and that was interrupted (only a promotion raises
//! the generation; a node restarted without `--replicaof` answers as a primary with its old
//! generation and is not a candidate): it is preferred, so a re-run completes the promotion
//! instead of promoting a second pod. Among replicas, those following the failed primary's
//! address come first (their offsets are positions in its stream and comparable), then the
//! highest offset, then the lowest ordinal.
//!
//! **Promotion.** A failed primary leads to [`Action::Promote`] of the best candidate unless
//! - failover is disabled (`holding` explains), or
//! - no candidate exists (`holding` = "no healthy replica to promote …", listing why each pod
//!   was rejected), or
//! - the last failover of the shard happened less than 2 × `detection_timeout` ago
//!   (flapping guard; `holding` says so). Completing an interrupted promotion (the candidate
//!   already answers as a primary) is not held by this guard, or
//! - the failed primary still answers as a primary (failed by (a): its process lives on, e.g.
//!   on a lost node or while terminating, and clients already connected to it keep writing)
//!   and the promotion is not yet safe; see below.
//!
//! **Draining a live primary.** A write counts as acknowledged once *any* replica acknowledged
//! it (`WAIT`), and a replica re-pointed to the new primary takes a full copy of its state. So
//! while the failed primary still takes writes, promoting the candidate would lose every write
//! that another replica acknowledges after the candidate's last probe. Before the promotion:
//! 1. every other answering pod that follows the failed primary's address gets `Follow`
//!    towards the candidate's address (`demote` false) and the decision holds ("draining …"):
//!    from then on only the candidate acknowledges the live primary's writes, and the others
//!    get them through the candidate. This needs a candidate that follows the failed primary
//!    itself (one that does not cannot relay its stream; it is then promoted at once, as for a
//!    silent primary);
//! 2. once no other answering pod follows the failed primary, the promotion waits while the
//!    candidate follows it with an offset below the primary's (it is still receiving writes
//!    that were acknowledged before step 1), but no longer than 2 × `detection_timeout` after
//!    the primary stopped serving; then it is promoted, and the old primary, which then has no
//!    replica left to acknowledge its writes, is demoted in the same decision.
//!
//! After a promotion (and after an election) every other answering pod that answers as a
//! primary, follows another address, or carries the primary label gets [`Action::Follow`]
//! towards the new primary's address, `demote` set when it answered as a primary — the old
//! primary included when it still answers.
//!
//! **Steady state** (the primary is serving and answers as a primary): a primary that reports
//! it holds writes until told its role (it restarted with data) gets `Elect { promote: true }`
//! first (`REPLICAOF NO ONE`, a no-op on a primary that ends the hold); every other answering
//! pod that answers as a primary, follows an address other than the primary's, or is also
//! labeled primary gets `Follow` towards the primary (`demote` = it answered as a primary):
//! a returning old primary, a replica restarted as a primary, a replica following a stale
//! address. `healthy` is true exactly when no action and no hold is needed and every other pod
//! is serving and answers as a replica of the primary's address with its link up.
//!
//! **Labeled primary answering as a replica** (while serving; e.g. fenced by a newer epoch, or
//! re-pointed by hand): if another serving pod answers as a primary with a higher generation, the
//! label moves to it with `Promote` (a failover: not when disabled); otherwise the labeled pod is
//! made primary again with `Elect { promote: true }` and the others follow it (this restores the
//! labeled state and is done even when failover is disabled).
//!
//! **No pod labeled primary** (new shard, label lost, primary pod deleted): elect the
//! non-terminating, electable pod answering as a primary with the highest (generation,
//! coverage, offset), then serving, then lowest ordinal (`promote: false`) — for a new shard,
//! where every node starts as a primary with nothing, that is ordinal 0; after every pod of a
//! shard restarted, it is the one holding most of the history (coverage: the sum of its vector
//! clock, which restarts do not reset, unlike offsets), so a pod whose volume was emptied is not
//! elected over the others — else the serving replica with the highest (coverage, offset) (`promote: true`; this is a failover, so not when disabled nor within the flapping
//! guard); else hold until a pod answers. The others follow the elected pod in the same decision.
//! A pod answering as a primary is electable when no answering pod is a replica (a new shard,
//! or every node restarted), when another answering pod follows its address (the shard's
//! primary, only unlabeled), or when its generation is higher than every other answering pod's
//! (an interrupted promotion). A primary pod that was deleted and came back answers as a primary
//! with its old generation and is followed by nobody: it is not electable, since the replicas
//! hold the shard's history (the new pod may have lost its volume or the tail of its log), and
//! it is demoted to follow the promoted replica.
//!
//! **Planned switchover** ([`ShardView::retiring`] names the labeled primary, which is serving
//! and answers as a primary: the operator is about to replace its pod in a roll). The primary
//! hands over before it goes, whether or not automatic failover is enabled and regardless of
//! the flapping guard (no failure is involved). The candidate is chosen as for a failover, but
//! it must be a replica of the primary with its link up (a replica that is not in sync would
//! lose writes); without one the decision holds and the others are kept following the primary.
//! The other replicas are re-pointed to the candidate first, as when draining a live primary
//! (see above); then the candidate is promoted without waiting for it to catch up: the executor
//! pauses the primary's writes (`CLIENT PAUSE … WRITE`), waits until the candidate's offset
//! reaches the primary's, promotes it, demotes the old primary (the `Follow` of the same
//! decision) and lifts the pause, so clients' writes wait instead of being lost, then find the
//! old primary read-only and reconnect through the Service. While the primary is not serving or
//! does not answer, the failure rules apply as usual.
//!
//! **Addresses.** `Follow` and `Promote` need the new primary's address; a pod without one is
//! never a candidate, and a primary without one makes the decision hold.
//!
//! # Executing actions
//!
//! The executor applies the actions in order. `Follow` means: `REPLICAOF host port` with
//! `primary_address` split at its last `:` (the replica then reports exactly that address) and
//! the pod's role label set to `replica`. `Elect` sets the pod's label to `primary` (after
//! `REPLICAOF NO ONE` when `promote`). `Promote` sends `REPLICAOF NO ONE` to `to`, labels `to`
//! primary, labels `from` replica, and records the failover time reported back as
//! [`ShardView::last_failover`].
//!
//! # Probe history
//!
//! [`HealthTracker`] keeps, per pod name, the latest probe outcome, the number of consecutive
//! failed probes and when that streak began (an answer resets both), and when the pod stopped
//! being serving. The supervisor should pass `ready = pod_ready && node_ready && !terminating` to
//! [`HealthTracker::record_readiness`], so that `not_ready_since` covers all three.
//!
//! # Source layout
//!
//! `settings` ([`FailoverSettings`]), `view` (what is observed: [`ShardView`], [`PodView`],
//! [`NodeReport`], [`ProbeOutcome`]), `decision` ([`Action`], [`Decision`]), `tracker`
//! ([`HealthTracker`]). The rules, all reached from [`decide`] below: `steady` (the labeled
//! primary serves and answers, as a primary or as a replica), `failure` (it does not: detection
//! and failover), `candidate` (which pod to promote), `drain` (draining a live primary),
//! `switchover` (planned switchover), `election` (no pod labeled primary). Unit tests sit next to
//! the rules they test and share the builders of `testkit`; `scenarios` checks invariants of
//! decisions on random views.

mod candidate;
mod decision;
mod drain;
mod election;
mod failure;
#[cfg(test)]
mod scenarios;
mod settings;
mod steady;
mod switchover;
#[cfg(test)]
mod testkit;
mod tracker;
mod view;

pub use decision::{Action, Decision};
pub use settings::{FailoverSettings, MIN_PROBE_INTERVAL};
pub use tracker::HealthTracker;
pub use view::{NodeReport, PodView, ProbeOutcome, ReportedRole, ShardView};

use election::elect;
use std::cmp::Reverse;
use std::time::{Duration, Instant};

/// Decides what to do about one shard. See the module documentation for the rules.
pub fn decide(view: &ShardView, settings: &FailoverSettings, now: Instant) -> Decision {
    let labeled: Vec<&PodView> = view.pods.iter().filter(|p| p.labeled_primary).collect();
    let Some(primary) = labeled.iter().copied().max_by_key(|p| keeper_rank(p)) else {
        return elect(view, settings, now);
    };
    let ctx = Ctx {
        view,
        settings,
        now,
        primary,
    };
    let retiring = view.retiring.as_ref() == Some(&primary.pod);
    match primary.report() {
        Some(report)
            if primary.serving() && report.is_primary() && report.log_failure.is_some() =>
        {
            ctx.log_failing()
        }
        Some(report) if primary.serving() && report.is_primary() && retiring => ctx.switchover(),
        Some(report) if primary.serving() && report.is_primary() => ctx.steady(),
        Some(report) if primary.serving() => ctx.labeled_replica(report),
        _ => ctx.impaired(),
    }
}

/// Ranks pods labeled primary: the one to keep is the maximum.
fn keeper_rank(pod: &PodView) -> (bool, u64, u64, i64, bool, Reverse<u32>) {
    match pod.primary_report() {
        Some(r) => (
            true,
            r.generation,
            r.coverage,
            r.offset,
            pod.serving(),
            Reverse(pod.ordinal),
        ),
        None => (false, 0, 0, 0, pod.serving(), Reverse(pod.ordinal)),
    }
}

/// Pushes `Follow` towards `leader` for every other answering pod that answers as a primary,
/// follows another address, or carries the primary label.
fn realign(view: &ShardView, leader: &PodView, leader_address: &str, actions: &mut Vec<Action>) {
    for pod in view.pods.iter().filter(|p| p.pod != leader.pod) {
        let Some(report) = pod.report() else { continue };
        if report.is_primary() || !report.follows(leader_address) || pod.labeled_primary {
            actions.push(Action::Follow {
                pod: pod.pod.clone(),
                primary_address: leader_address.to_string(),
                demote: report.is_primary(),
            });
        }
    }
}

/// Whether a failover now would come too soon after the previous one.
fn flapping(view: &ShardView, settings: &FailoverSettings, now: Instant) -> Option<String> {
    let last = view.last_failover?;
    let ago = now.saturating_duration_since(last);
    (ago < settings.flap_guard()).then(|| {
        format!(
            "last failover of shard {} was {} ago (< {})",
            view.shard,
            human(ago),
            human(settings.flap_guard())
        )
    })
}

/// The decision context of a shard with a labeled primary.
struct Ctx<'a> {
    view: &'a ShardView,
    settings: &'a FailoverSettings,
    now: Instant,
    primary: &'a PodView,
}

impl Ctx<'_> {
    /// The other pods.
    fn others(&self) -> impl Iterator<Item = &PodView> {
        self.view.pods.iter().filter(|p| p.pod != self.primary.pod)
    }
}

/// Formats a duration for messages: "400ms", "2s", "1.3s" (tenths truncated).
fn human(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else {
        match (millis / 100) % 10 {
            0 => format!("{}s", millis / 1000),
            tenths => format!("{}.{tenths}s", millis / 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn two_labeled_keeps_higher_generation_primary() {
        let view = shard(vec![
            pod(0).labeled().primary(1, 900),
            pod(1).labeled().primary(2, 10),
            pod(2).replica_of(1, true, 10),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![follow(0, 1, true)]);
        assert!(!d.healthy);
    }

    #[test]
    fn two_labeled_same_generation_keeps_higher_offset_and_relabels_follower() {
        let view = shard(vec![
            pod(0).labeled().primary(2, 10),
            pod(1).labeled().primary(2, 11),
            pod(2).labeled().replica_of(1, true, 11),
        ]);
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![follow(0, 1, true), follow(2, 1, false)]);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(ms(0)), "0ms");
        assert_eq!(human(ms(999)), "999ms");
        assert_eq!(human(ms(2000)), "2s");
        assert_eq!(human(ms(1250)), "1.2s");
        assert_eq!(human(ms(1033)), "1s");
        assert_eq!(human(ms(61_999)), "61.9s");
    }
}
