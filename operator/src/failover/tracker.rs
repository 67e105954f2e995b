//! Probe and readiness history per pod, kept between ticks.

use super::{PodView, ProbeOutcome};
use std::collections::BTreeMap;
use std::time::Instant;

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
    log_failing_since: Option<Instant>,
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
            ProbeOutcome::Answered(report) => {
                history.failed_probes = 0;
                history.failing_since = None;
                if report.log_failure.is_some() {
                    history.log_failing_since.get_or_insert(now);
                } else {
                    history.log_failing_since = None;
                }
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
        view.log_failing_since = history.log_failing_since;
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
    use crate::failover::testkit::*;
    use crate::failover::{NodeReport, ReportedRole};

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
            log_failure: None,
            write_held: false,
            coverage: 0,
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
}
