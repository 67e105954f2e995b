//! Builders and helpers the failover unit tests share.

use super::*;

pub(super) const STEADY_GENERATION: u64 = 1;

pub(super) fn settings() -> FailoverSettings {
    FailoverSettings {
        enabled: true,
        detection_timeout: Duration::from_secs(1),
        probes: 3,
    }
}

pub(super) fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A fixed "now" far enough from the process start that `now - 10s` exists.
pub(super) fn now() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

pub(super) fn name(ordinal: u32) -> String {
    format!("db-east-0-{ordinal}")
}

pub(super) fn addr(ordinal: u32) -> String {
    format!("10.0.0.{}:6379", ordinal + 10)
}

/// A Ready pod with an address that was never probed.
pub(super) fn pod(ordinal: u32) -> PodView {
    PodView {
        pod: name(ordinal),
        ordinal,
        address: Some(addr(ordinal)),
        pod_ready: true,
        node_ready: true,
        ..PodView::default()
    }
}

pub(super) trait Build: Sized {
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
    /// Its latest answer (it must have one) says it cannot write its log, since `since`.
    fn log_failing(self, since: Instant) -> Self;
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
    fn log_failing(mut self, since: Instant) -> Self {
        if let Some(ProbeOutcome::Answered(report)) = &mut self.last {
            report.log_failure = Some("write failed: No space left on device".into());
        }
        self.log_failing_since = Some(since);
        self
    }
    fn answers(mut self, role: ReportedRole, generation: u64, offset: i64) -> Self {
        self.last = Some(ProbeOutcome::Answered(NodeReport {
            role,
            offset,
            generation,
            log_failure: None,
            write_held: false,
            coverage: 0,
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

pub(super) fn shard(pods: Vec<PodView>) -> ShardView {
    ShardView {
        shard: 0,
        pods,
        last_failover: None,
        retiring: None,
    }
}

pub(super) fn follow(ordinal: u32, primary: u32, demote: bool) -> Action {
    Action::Follow {
        pod: name(ordinal),
        primary_address: addr(primary),
        demote,
    }
}

pub(super) fn elect(ordinal: u32, promote: bool) -> Action {
    Action::Elect {
        pod: name(ordinal),
        promote,
    }
}

/// The (from, to) of the decision's promotion, if any.
pub(super) fn promotion(decision: &Decision) -> Option<(String, String)> {
    decision.actions.iter().find_map(|a| match a {
        Action::Promote { from, to, .. } => Some((from.clone(), to.clone())),
        _ => None,
    })
}

pub(super) fn holding(decision: &Decision) -> &str {
    decision.holding.as_deref().unwrap_or("")
}

/// A healthy three-pod shard: 0 primary, 1 and 2 following it with links up.
pub(super) fn healthy_shard() -> ShardView {
    shard(vec![
        pod(0).labeled().primary(1, 100),
        pod(1).replica_of(0, true, 100),
        pod(2).replica_of(0, true, 90),
    ])
}

/// A three-pod shard whose primary 0 was killed 700ms ago (3 failed probes, links down).
pub(super) fn killed_primary(t: Instant) -> ShardView {
    shard(vec![
        pod(0).labeled().unreachable(3, t - ms(700)),
        pod(1).replica_of(0, false, 100),
        pod(2).replica_of(0, false, 120),
    ])
}
