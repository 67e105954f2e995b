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
//! While the primary is not serving or not answering but not (yet) failed, nothing is done and
//! `holding` says why (no re-pointing towards a primary in doubt).
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
//! **Steady state** (the primary is serving and answers as a primary): every other answering
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
//! non-terminating, electable pod answering as a primary with the highest (generation, offset),
//! then serving, then lowest ordinal (`promote: false`) — for a new shard, where every node
//! starts as a primary at offset 0, that is ordinal 0 — else the serving replica with the highest
//! offset (`promote: true`; this is a failover, so not when disabled nor within the flapping
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

use aadb_crd::FailoverSpec;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The shortest interval between two probes of one pod.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// How the failover loop of a database behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverSettings {
    /// Whether failed primaries are replaced.
    pub enabled: bool,
    /// How long a primary may be not serving or unreachable before it is replaced.
    pub detection_timeout: Duration,
    /// Failed probes in a row that make a primary unreachable (0 is read as 1).
    pub probes: u32,
}

impl FailoverSettings {
    /// Time between two probes of a pod: `detection_timeout / probes`, at least
    /// [`MIN_PROBE_INTERVAL`].
    pub fn probe_interval(&self) -> Duration {
        (self.detection_timeout / self.probes.max(1)).max(MIN_PROBE_INTERVAL)
    }

    /// Failed probes in a row that make a primary unreachable: `probes`, or fewer when the probe
    /// interval was raised so that `probes` intervals would exceed the detection timeout.
    pub fn failures_to_fail(&self) -> u32 {
        let by_time = self.detection_timeout.as_nanos() / self.probe_interval().as_nanos();
        let by_time = u32::try_from(by_time).unwrap_or(u32::MAX).max(1);
        self.probes.clamp(1, by_time)
    }

    /// How long a failure streak must have lasted, first to last failure, for a primary to be
    /// unreachable: (failures − 1) intervals, less a quarter interval of timer jitter.
    pub fn min_failure_streak(&self) -> Duration {
        let interval = self.probe_interval();
        (interval * (self.failures_to_fail() - 1)).saturating_sub(interval / 4)
    }

    /// No promotion happens sooner than this after the previous failover of the same shard.
    pub fn flap_guard(&self) -> Duration {
        self.detection_timeout.saturating_mul(2)
    }
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings::from(&FailoverSpec::default())
    }
}

impl From<&FailoverSpec> for FailoverSettings {
    fn from(spec: &FailoverSpec) -> Self {
        FailoverSettings {
            enabled: spec.enabled,
            detection_timeout: Duration::from_millis(u64::from(spec.detection_timeout_millis)),
            probes: spec.probes.max(1),
        }
    }
}

/// What one probe of a shard-node returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The node answered.
    Answered(NodeReport),
    /// Connection refused, timeout, protocol error...
    Failed(String),
}

/// What a shard-node says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// Its replication role.
    pub role: ReportedRole,
    /// replication offset the node reports (master_repl_offset for a primary, its processed
    /// offset for a replica)
    pub offset: i64,
    /// the generation of the shard's actor the node runs (raised by each promotion); 0 if
    /// unknown
    pub generation: u64,
}

impl NodeReport {
    /// Whether the node is a primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.role, ReportedRole::Primary)
    }

    /// Whether the node is a replica of `address` (link up or not).
    pub fn follows(&self, address: &str) -> bool {
        matches!(&self.role, ReportedRole::Replica { primary, .. } if primary == address)
    }

    /// Whether the node is a replica of `address` with its link up.
    pub fn linked_to(&self, address: &str) -> bool {
        matches!(&self.role, ReportedRole::Replica { primary, link_up: true } if primary == address)
    }
}

/// Replication role a node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportedRole {
    /// Takes writes.
    Primary,
    /// `primary` is "host:port" it follows; link_up = master_link_status:up
    Replica {
        /// The address it follows.
        primary: String,
        /// Whether its link to that address is up.
        link_up: bool,
    },
}

/// Kubernetes' view plus the probe history of one pod of a shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// pod name, e.g. "db-east-0-1"
    pub pod: String,
    /// StatefulSet ordinal
    pub ordinal: u32,
    /// "podIP:6379" once the pod has an IP
    pub address: Option<String>,
    /// carries aadb.dev/role=primary
    pub labeled_primary: bool,
    /// kubelet's Ready condition
    pub pod_ready: bool,
    /// deletionTimestamp set
    pub terminating: bool,
    /// its node's Ready condition (true if unknown)
    pub node_ready: bool,
    /// when pod_ready (or node_ready) last became false, None if ready
    pub not_ready_since: Option<Instant>,
    /// latest probe
    pub last: Option<ProbeOutcome>,
    /// consecutive failed probes
    pub failed_probes: u32,
    /// first failure of the current failing streak
    pub failing_since: Option<Instant>,
    /// When its shard-node container was last seen dead or restarted (its process exited);
    /// filled by [`HealthTracker::annotate`]
    pub crashed_at: Option<Instant>,
}

impl PodView {
    /// The latest report, if the latest probe answered and no probe failed since.
    pub fn report(&self) -> Option<&NodeReport> {
        match &self.last {
            Some(ProbeOutcome::Answered(report)) if self.failed_probes == 0 => Some(report),
            _ => None,
        }
    }

    /// Ready, not terminating, on a Ready node: Kubernetes routes to it.
    pub fn serving(&self) -> bool {
        self.pod_ready && self.node_ready && !self.terminating
    }

    /// The latest report if it says primary.
    fn primary_report(&self) -> Option<&NodeReport> {
        self.report().filter(|r| r.is_primary())
    }

    /// Why the pod is not serving, for messages.
    fn not_serving_reason(&self) -> &'static str {
        if self.terminating {
            "terminating"
        } else if !self.node_ready {
            "on a node that is not Ready"
        } else {
            "not Ready"
        }
    }

    /// Why the pod does not answer, for messages.
    fn silence_reason(&self) -> String {
        match &self.last {
            Some(ProbeOutcome::Failed(error)) => {
                format!("{} failed probes: {error}", self.failed_probes)
            }
            _ if self.failed_probes > 0 => format!("{} failed probes", self.failed_probes),
            _ => "not probed yet".to_string(),
        }
    }
}

/// One shard of one participant, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardView {
    /// Shard index.
    pub shard: u32,
    /// Its pods (those that exist).
    pub pods: Vec<PodView>,
    /// When the operator last promoted a replica of this shard.
    pub last_failover: Option<Instant>,
    /// A planned switchover: the pod the operator is about to replace (a roll or a
    /// scale-down). When it is the labeled primary and still serving, the shard hands over to a
    /// replica first.
    pub retiring: Option<String>,
}

/// Something the executor must do to a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// No pod is labeled primary (new shard, or label lost): label this one primary; it is
    /// already a primary or must be promoted.
    Elect {
        /// Pod to label primary.
        pod: String,
        /// Whether to send `REPLICAOF NO ONE` first.
        promote: bool,
    },
    /// Primary failed: promote `to` (REPLICAOF NO ONE), move the label from `from` to `to`.
    Promote {
        /// The failed primary.
        from: String,
        /// The pod that becomes primary.
        to: String,
        /// Why, for events and logs.
        reason: String,
    },
    /// `pod` must follow `primary_address` (REPLICAOF host port): a replica following the
    /// wrong/old primary, a restarted node that came up as a primary, or an old primary that
    /// returned (demotion).
    Follow {
        /// Pod to re-point.
        pod: String,
        /// "host:port" of the primary it must follow (while a live failed primary is drained:
        /// of the candidate about to be promoted).
        primary_address: String,
        /// Whether it answered as a primary (this demotes it).
        demote: bool,
    },
}

impl Action {
    /// The pod the action changes.
    pub fn pod(&self) -> &str {
        match self {
            Action::Elect { pod, .. } | Action::Follow { pod, .. } => pod,
            Action::Promote { to, .. } => to,
        }
    }
}

/// What to do about a shard now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Actions, in execution order.
    pub actions: Vec<Action>,
    /// Why nothing (more) was done although something is wrong, e.g. "primary db-east-0-0
    /// unreachable for 400ms (< 1s)", "no healthy replica to promote", "operator cannot reach
    /// primary but its replicas' links are up". Shown in status/events.
    pub holding: Option<String>,
    /// Whether the shard is fully healthy (labeled primary answering as primary, every replica
    /// following it with link up).
    pub healthy: bool,
}

impl Decision {
    fn hold(message: String) -> Self {
        Decision {
            actions: Vec::new(),
            holding: Some(message),
            healthy: false,
        }
    }
}

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
        Some(report) if primary.serving() && report.is_primary() && retiring => ctx.switchover(),
        Some(report) if primary.serving() && report.is_primary() => ctx.steady(),
        Some(report) if primary.serving() => ctx.labeled_replica(report),
        _ => ctx.impaired(),
    }
}

/// Ranks pods labeled primary: the one to keep is the maximum.
fn keeper_rank(pod: &PodView) -> (bool, u64, i64, bool, Reverse<u32>) {
    match pod.primary_report() {
        Some(r) => (
            true,
            r.generation,
            r.offset,
            pod.serving(),
            Reverse(pod.ordinal),
        ),
        None => (false, 0, 0, pod.serving(), Reverse(pod.ordinal)),
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

/// No pod is labeled primary.
fn elect(view: &ShardView, settings: &FailoverSettings, now: Instant) -> Decision {
    let primary = view
        .pods
        .iter()
        .filter(|p| !p.terminating && p.address.is_some())
        .filter_map(|p| p.primary_report().map(|r| (p, r)))
        .filter(|(p, _)| unelectable_primary(view, p).is_none())
        .max_by_key(|(p, r)| (r.generation, r.offset, p.serving(), Reverse(p.ordinal)))
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
        .max_by_key(|(p, r)| (r.offset, Reverse(p.ordinal)))
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
        Decision::hold("no pod is labeled primary and no pod answers yet".to_string())
    }
}

/// Why `pod`, answering as a primary while no pod is labeled primary, must not be elected, or
/// None (see "No pod labeled primary" in the module documentation).
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
fn elected(view: &ShardView, pod: &PodView, promote: bool) -> Decision {
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

/// Why `pod` cannot be elected or promoted whatever its role, or None.
fn rejection(pod: &PodView) -> Option<String> {
    if !pod.serving() {
        return Some(pod.not_serving_reason().to_string());
    }
    if pod.address.is_none() {
        return Some("no address".to_string());
    }
    if pod.report().is_none() {
        return Some(format!("unreachable ({})", pod.silence_reason()));
    }
    None
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

    /// The primary is serving and answers as a primary.
    fn steady(&self) -> Decision {
        let Some(address) = &self.primary.address else {
            return Decision::hold(format!("primary {} has no address yet", self.primary.pod));
        };
        let mut actions = Vec::new();
        realign(self.view, self.primary, address, &mut actions);
        let silent_labeled: Vec<&str> = self
            .others()
            .filter(|p| p.labeled_primary && p.report().is_none())
            .map(|p| p.pod.as_str())
            .collect();
        let holding = (!silent_labeled.is_empty()).then(|| {
            format!(
                "{} also labeled primary and not answering; kept {}",
                silent_labeled.join(", "),
                self.primary.pod
            )
        });
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
    fn labeled_replica(&self, report: &NodeReport) -> Decision {
        let newer = self
            .others()
            .filter(|p| p.serving() && p.address.is_some())
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

    /// Promote `to` (serving, answering, with an address) in place of the primary.
    fn promote(&self, to: &PodView, reason: String) -> Decision {
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

    /// The primary is not serving or does not answer.
    fn impaired(&self) -> Decision {
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

    /// The primary failed for `reason`: promote the best candidate, or hold.
    fn failover(&self, reason: String) -> Decision {
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
            let stopped_serving = self.primary.not_ready_since.unwrap_or(self.now);
            if let Some(hold) = self.drain(chosen, &reason, Some(stopped_serving)) {
                return hold;
            }
        }
        self.promote(chosen, reason)
    }

    /// The primary serves but is about to be replaced: hand over to an in-sync replica.
    fn switchover(&self) -> Decision {
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

    /// The pod to promote in place of the primary and whether it completes an interrupted
    /// promotion (it already answers as the newest primary), or why there is none.
    fn best_candidate(&self) -> Result<(&PodView, bool), String> {
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

    /// While the failed primary still answers as a primary: re-points the other replicas of
    /// the failed primary to `chosen`, or waits for `chosen` to catch up (see "Draining a live
    /// primary" in the module documentation). With `catch_up_since`, the wait for `chosen` to
    /// catch up ends 2 × `detection_timeout` after it; without, there is none. None when
    /// `chosen` may be promoted now.
    fn drain(
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

/// What the tracker remembers about one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PodHistory {
    last: Option<ProbeOutcome>,
    failed_probes: u32,
    failing_since: Option<Instant>,
    /// Whether readiness was ever recorded.
    readiness_known: bool,
    not_ready_since: Option<Instant>,
    /// Container restart count last seen.
    restarts: Option<u32>,
    crashed_at: Option<Instant>,
}

/// Keeps probe history per pod between ticks: records outcomes and maintains
/// failed_probes/failing_since; and remembers readiness transitions to fill not_ready_since.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthTracker {
    pods: BTreeMap<String, PodHistory>,
}

impl HealthTracker {
    /// An empty history.
    pub fn new() -> Self {
        HealthTracker::default()
    }

    /// Records a probe of `pod`: an answer resets the failure streak, a failure extends it
    /// (starting it at `now` if it is the first).
    pub fn record_probe(&mut self, pod: &str, outcome: ProbeOutcome, now: Instant) {
        let history = self.pods.entry(pod.to_string()).or_default();
        match &outcome {
            ProbeOutcome::Answered(_) => {
                history.failed_probes = 0;
                history.failing_since = None;
            }
            ProbeOutcome::Failed(_) => {
                history.failed_probes = history.failed_probes.saturating_add(1);
                history.failing_since.get_or_insert(now);
            }
        }
        history.last = Some(outcome);
    }

    /// Records whether `pod` is serving (`pod_ready && node_ready && !terminating`); the time
    /// of the first `false` after a `true` (or ever) is kept until it is `true` again.
    pub fn record_readiness(&mut self, pod: &str, ready: bool, now: Instant) {
        let history = self.pods.entry(pod.to_string()).or_default();
        history.readiness_known = true;
        if ready {
            history.not_ready_since = None;
        } else {
            history.not_ready_since.get_or_insert(now);
        }
    }

    /// Records what the kubelet says of the pod's shard-node container: its restart count and
    /// whether it runs. A rising count or a container that is not running marks the process as
    /// crashed at `now` (kept until it runs again with the same count for a while; the decision
    /// only trusts a recent crash).
    pub fn record_container(&mut self, pod: &str, restarts: u32, running: bool, now: Instant) {
        let history = self.pods.entry(pod.to_string()).or_default();
        let rose = history.restarts.is_some_and(|before| restarts > before);
        history.restarts = Some(restarts);
        if rose || !running {
            history.crashed_at = Some(now);
        }
    }

    /// Fills `last`, `failed_probes`, `failing_since`, `not_ready_since` of a PodView from the
    /// history. A pod never probed gets no outcome and no failures; `not_ready_since` is left as
    /// it is when the pod's readiness was never recorded.
    pub fn annotate(&self, view: &mut PodView) {
        let Some(history) = self.pods.get(&view.pod) else {
            view.last = None;
            view.failed_probes = 0;
            view.failing_since = None;
            return;
        };
        view.last = history.last.clone();
        view.failed_probes = history.failed_probes;
        view.failing_since = history.failing_since;
        view.crashed_at = history.crashed_at;
        if history.readiness_known {
            view.not_ready_since = history.not_ready_since;
        }
    }

    /// Drops the history of pods not in `live_pods`.
    pub fn forget_missing(&mut self, live_pods: &[String]) {
        self.pods.retain(|pod, _| live_pods.contains(pod));
    }

    /// Number of pods with history.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod has history.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY_GENERATION: u64 = 1;

    fn settings() -> FailoverSettings {
        FailoverSettings {
            enabled: true,
            detection_timeout: Duration::from_secs(1),
            probes: 3,
        }
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// A fixed "now" far enough from the process start that `now - 10s` exists.
    fn now() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    fn name(ordinal: u32) -> String {
        format!("db-east-0-{ordinal}")
    }

    fn addr(ordinal: u32) -> String {
        format!("10.0.0.{}:6379", ordinal + 10)
    }

    /// A Ready pod with an address that was never probed.
    fn pod(ordinal: u32) -> PodView {
        PodView {
            pod: name(ordinal),
            ordinal,
            address: Some(addr(ordinal)),
            pod_ready: true,
            node_ready: true,
            ..PodView::default()
        }
    }

    trait Build: Sized {
        fn labeled(self) -> Self;
        fn answers(self, role: ReportedRole, generation: u64, offset: i64) -> Self;
        fn primary(self, generation: u64, offset: i64) -> Self {
            self.answers(ReportedRole::Primary, generation, offset)
        }
        fn replica_of(self, primary: u32, link_up: bool, offset: i64) -> Self {
            self.replica_of_addr(&addr(primary), link_up, offset)
        }
        fn replica_of_addr(self, primary: &str, link_up: bool, offset: i64) -> Self {
            let role = ReportedRole::Replica {
                primary: primary.to_string(),
                link_up,
            };
            self.answers(role, STEADY_GENERATION, offset)
        }
        fn unreachable(self, failures: u32, since: Instant) -> Self;
        fn not_ready(self, since: Instant) -> Self;
        fn node_lost(self, since: Instant) -> Self;
        fn no_address(self) -> Self;
    }

    impl Build for PodView {
        fn labeled(mut self) -> Self {
            self.labeled_primary = true;
            self
        }
        fn answers(mut self, role: ReportedRole, generation: u64, offset: i64) -> Self {
            self.last = Some(ProbeOutcome::Answered(NodeReport {
                role,
                offset,
                generation,
            }));
            self.failed_probes = 0;
            self.failing_since = None;
            self
        }
        fn unreachable(mut self, failures: u32, since: Instant) -> Self {
            self.last = Some(ProbeOutcome::Failed("connection refused".to_string()));
            self.failed_probes = failures;
            self.failing_since = Some(since);
            self
        }
        fn not_ready(mut self, since: Instant) -> Self {
            self.pod_ready = false;
            self.not_ready_since = Some(since);
            self
        }
        fn node_lost(mut self, since: Instant) -> Self {
            self.node_ready = false;
            self.not_ready_since = Some(since);
            self
        }
        fn no_address(mut self) -> Self {
            self.address = None;
            self
        }
    }

    fn shard(pods: Vec<PodView>) -> ShardView {
        ShardView {
            shard: 0,
            pods,
            last_failover: None,
            retiring: None,
        }
    }

    fn follow(ordinal: u32, primary: u32, demote: bool) -> Action {
        Action::Follow {
            pod: name(ordinal),
            primary_address: addr(primary),
            demote,
        }
    }

    fn elect(ordinal: u32, promote: bool) -> Action {
        Action::Elect {
            pod: name(ordinal),
            promote,
        }
    }

    /// The (from, to) of the decision's promotion, if any.
    fn promotion(decision: &Decision) -> Option<(String, String)> {
        decision.actions.iter().find_map(|a| match a {
            Action::Promote { from, to, .. } => Some((from.clone(), to.clone())),
            _ => None,
        })
    }

    fn holding(decision: &Decision) -> &str {
        decision.holding.as_deref().unwrap_or("")
    }

    /// A healthy three-pod shard: 0 primary, 1 and 2 following it with links up.
    fn healthy_shard() -> ShardView {
        shard(vec![
            pod(0).labeled().primary(1, 100),
            pod(1).replica_of(0, true, 100),
            pod(2).replica_of(0, true, 90),
        ])
    }

    /// A three-pod shard whose primary 0 was killed 700ms ago (3 failed probes, links down).
    fn killed_primary(t: Instant) -> ShardView {
        shard(vec![
            pod(0).labeled().unreachable(3, t - ms(700)),
            pod(1).replica_of(0, false, 100),
            pod(2).replica_of(0, false, 120),
        ])
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
    fn tracker_marks_a_crash_when_restarts_rise_or_the_container_stops() {
        let t = now();
        let mut tr = HealthTracker::new();
        tr.record_container("p", 0, true, t);
        let mut v = PodView {
            pod: "p".into(),
            ..PodView::default()
        };
        tr.annotate(&mut v);
        assert_eq!(v.crashed_at, None);
        tr.record_container("p", 1, true, t + ms(10));
        tr.annotate(&mut v);
        assert_eq!(v.crashed_at, Some(t + ms(10)));
        tr.record_container("q", 0, false, t + ms(20));
        let mut q = PodView {
            pod: "q".into(),
            ..PodView::default()
        };
        tr.annotate(&mut q);
        assert_eq!(q.crashed_at, Some(t + ms(20)));
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
        });
        tracker.record_probe(&name(0), answer, t + ms(1665));
        tracker.annotate(&mut view.pods[0]);
        let d = decide(&view, &settings(), t + ms(1665));
        assert!(d.healthy, "{d:?}");
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
    fn primary_without_address_holds() {
        let mut view = healthy_shard();
        view.pods[0].address = None;
        let d = decide(&view, &settings(), now());
        assert_eq!(d.actions, vec![]);
        assert_eq!(holding(&d), "primary db-east-0-0 has no address yet");
        assert!(!d.healthy);
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
    fn settings_intervals() {
        let s = settings();
        assert_eq!(s.probe_interval(), Duration::from_nanos(333_333_333));
        assert_eq!(s.failures_to_fail(), 3);
        assert_eq!(s.flap_guard(), ms(2000));
        let fast = FailoverSettings {
            enabled: true,
            detection_timeout: ms(300),
            probes: 10,
        };
        assert_eq!(fast.probe_interval(), MIN_PROBE_INTERVAL);
        assert_eq!(fast.failures_to_fail(), 6);
        assert_eq!(
            fast.min_failure_streak(),
            ms(250) - ms(12) - Duration::from_micros(500)
        );
        let zero = FailoverSettings {
            enabled: true,
            detection_timeout: ms(1000),
            probes: 0,
        };
        assert_eq!(zero.probe_interval(), ms(1000));
        assert_eq!(zero.failures_to_fail(), 1);
        assert_eq!(zero.min_failure_streak(), Duration::ZERO);
        assert_eq!(
            FailoverSettings::default(),
            FailoverSettings {
                enabled: true,
                detection_timeout: ms(1000),
                probes: 3,
            }
        );
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

    #[test]
    fn tracker_counts_streaks_and_resets_on_answer() {
        let t = now();
        let mut tracker = HealthTracker::new();
        let mut view = pod(0);
        tracker.annotate(&mut view);
        assert_eq!(
            (view.last.clone(), view.failed_probes, view.failing_since),
            (None, 0, None)
        );
        tracker.record_probe("db-east-0-0", ProbeOutcome::Failed("refused".into()), t);
        tracker.record_probe(
            "db-east-0-0",
            ProbeOutcome::Failed("timeout".into()),
            t + ms(5),
        );
        tracker.annotate(&mut view);
        assert_eq!(view.failed_probes, 2);
        assert_eq!(view.failing_since, Some(t));
        assert_eq!(view.last, Some(ProbeOutcome::Failed("timeout".into())));
        let answer = ProbeOutcome::Answered(NodeReport {
            role: ReportedRole::Primary,
            offset: 1,
            generation: 1,
        });
        tracker.record_probe("db-east-0-0", answer.clone(), t + ms(10));
        tracker.annotate(&mut view);
        assert_eq!(view.failed_probes, 0);
        assert_eq!(view.failing_since, None);
        assert_eq!(view.last, Some(answer));
        tracker.record_probe("db-east-0-0", ProbeOutcome::Failed("x".into()), t + ms(20));
        tracker.annotate(&mut view);
        assert_eq!(
            (view.failed_probes, view.failing_since),
            (1, Some(t + ms(20)))
        );
    }

    #[test]
    fn tracker_remembers_readiness_transitions() {
        let t = now();
        let mut tracker = HealthTracker::new();
        let mut view = pod(0);
        view.not_ready_since = Some(t - ms(1));
        tracker.annotate(&mut view);
        assert_eq!(
            view.not_ready_since,
            Some(t - ms(1)),
            "unknown readiness is left alone"
        );
        tracker.record_readiness("db-east-0-0", true, t);
        tracker.annotate(&mut view);
        assert_eq!(view.not_ready_since, None);
        tracker.record_readiness("db-east-0-0", false, t + ms(100));
        tracker.record_readiness("db-east-0-0", false, t + ms(200));
        tracker.annotate(&mut view);
        assert_eq!(view.not_ready_since, Some(t + ms(100)));
        tracker.record_readiness("db-east-0-0", true, t + ms(300));
        tracker.record_readiness("db-east-0-0", false, t + ms(400));
        tracker.annotate(&mut view);
        assert_eq!(view.not_ready_since, Some(t + ms(400)));
    }

    #[test]
    fn tracker_forgets_missing_pods() {
        let t = now();
        let mut tracker = HealthTracker::new();
        tracker.record_probe("a", ProbeOutcome::Failed("x".into()), t);
        tracker.record_readiness("b", false, t);
        tracker.record_probe("c", ProbeOutcome::Failed("x".into()), t);
        assert_eq!(tracker.len(), 3);
        tracker.forget_missing(&["b".to_string(), "c".to_string(), "d".to_string()]);
        assert_eq!(tracker.len(), 2);
        let mut a = PodView {
            pod: "a".into(),
            failed_probes: 7,
            ..PodView::default()
        };
        tracker.annotate(&mut a);
        assert_eq!(a.failed_probes, 0);
        tracker.forget_missing(&[]);
        assert!(tracker.is_empty());
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

    /// Invariants every decision keeps, whatever the view.
    fn check(view: &ShardView, settings: &FailoverSettings, t: Instant, d: &Decision) {
        let by_name = |n: &str| view.pods.iter().find(|p| p.pod == n);
        // A planned switchover of a serving primary needs neither failover enabled nor the
        // flapping guard passed.
        let switching = |p: &PodView| {
            view.retiring.as_ref() == Some(&p.pod) && p.serving() && p.primary_report().is_some()
        };
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
            Some(Action::Promote { from, to, .. }) => {
                let switchover = by_name(from).is_some_and(switching);
                assert!(settings.enabled || switchover, "{view:?} {d:?}");
                assert!(
                    by_name(from).is_some_and(|p| p.labeled_primary),
                    "{view:?} {d:?}"
                );
                let to = by_name(to).expect("promoted pod exists");
                assert!(to.serving() && to.report().is_some(), "{view:?} {d:?}");
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
            None => {
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
                                && (!keeper.serving() || switching(keeper)),
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
                                let follows_keeper = p.report().is_some_and(|r| {
                                    keeper.address.as_deref().is_some_and(|a| r.follows(a))
                                });
                                assert!(follows_keeper, "{view:?} {d:?}");
                            }
                        }
                        Some(target)
                    }
                    (keeper, _) => keeper.and_then(|p| p.address.clone()),
                }
            }
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
}
