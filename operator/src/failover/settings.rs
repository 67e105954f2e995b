//! How the failover loop of a database is tuned.

use aadb_crd::FailoverSpec;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::testkit::*;

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
}
