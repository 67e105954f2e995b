//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Contract:
//! - Mutual exclusion comes from optimistic concurrency: every write is either a `create` (which
//!   fails with 409 when the Lease exists) or a `replace` of the object as read, carrying its
//!   `resourceVersion` (which fails with 409 when anyone wrote the Lease in between). So of
//!   candidates that read the same version only one write succeeds, and a candidate only writes
//!   itself as holder when the version it read was free. (Server-side apply without `force`
//!   would not do: taking over an expired Lease needs to overwrite fields another manager owns.)
//! - A candidate takes the Lease when it does not exist, names no holder, or its
//!   `renewTime + leaseDurationSeconds` is before now by the local clock (clocks of the
//!   candidates are assumed synchronised, e.g. by NTP, to well under the lease duration). Each
//!   change of holder increments `leaseTransitions`.
//! - The holder renews `renewTime` every `renew_every`. It stops being leader when it reads
//!   another holder, or when no renew has succeeded for `lease_duration - renew_every`
//!   (measured from the moment before it stamped its last successful `renewTime`), which is
//!   before any other candidate may consider the Lease expired: the margin leaves the caller
//!   time to stop acting as leader. `renew_every` is capped at half the lease duration.
//! - [`Leadership`] reports the state; the election never exits the process — the caller
//!   decides what to do when leadership is lost (the operator stops reconciling).
//! - When `shutdown` resolves, leadership is dropped first, then a Lease that still names this
//!   identity is released (no holder, `leaseDurationSeconds: 1`) so another candidate takes
//!   over at its next attempt instead of after the lease duration.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Default time a Lease stays valid without renewal.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default interval between renewals (and between attempts to acquire).
pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(2);
/// The shortest interval between attempts, whatever the configuration says.
const MIN_RENEW_EVERY: Duration = Duration::from_millis(10);
/// How long releasing the Lease on shutdown may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Lease to compete for, as whom, and how fast.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This candidate's identity (unique per process, e.g. the pod name).
    pub identity: String,
    /// How long the Lease stays valid without renewal (`leaseDurationSeconds`, rounded up).
    pub lease_duration: Duration,
    /// Interval between renewals while leading and between attempts while not.
    pub renew_every: Duration,
}

impl LeaderConfig {
    /// A configuration with [`DEFAULT_LEASE_DURATION`] and [`DEFAULT_RENEW_EVERY`].
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_every: DEFAULT_RENEW_EVERY,
        }
    }

    /// The interval actually used: `renew_every` capped at half the lease duration.
    fn effective_renew_every(&self) -> Duration {
        self.renew_every
            .min(self.lease_duration / 2)
            .max(MIN_RENEW_EVERY)
    }

    /// How long leadership lasts after the last successful renew.
    fn hold_for(&self) -> Duration {
        self.lease_duration
            .saturating_sub(self.effective_renew_every())
    }

    /// `leaseDurationSeconds`: the lease duration rounded up to whole seconds, at least 1.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }

    fn lease_path(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }
}

/// Shared view of leadership, cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership {
    state: Arc<watch::Sender<bool>>,
}

impl Leadership {
    fn new(leader: bool) -> Self {
        let (tx, _) = watch::channel(leader);
        Leadership {
            state: Arc::new(tx),
        }
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves once this process leads (at once if it already does). Never resolves if the
    /// election has ended without leadership; callers race it against their own shutdown.
    pub async fn wait_until_leader(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        if rx.wait_for(|leader| *leader).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A receiver that sees every change of leadership.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// Sets the state; true when it changed.
    fn set(&self, leader: bool) -> bool {
        self.state.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        })
    }
}

/// A Leadership that is always leader (election disabled).
pub fn always_leader() -> Leadership {
    Leadership::new(true)
}

/// Runs the election loop until `shutdown` resolves; on shutdown, if the Lease names this
/// identity, releases it (no holder, `leaseDurationSeconds: 1`) so others take over at once.
/// The task returns after releasing. Must be called inside a tokio runtime.
pub fn spawn(
    client: kube::Client,
    cfg: LeaderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let leadership = Leadership::new(false);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let task = tokio::spawn(run(api, cfg, leadership.clone(), shutdown));
    (leadership, task)
}

/// What a candidate does with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    /// The Lease names this candidate: renew it.
    Renew,
    /// The Lease is free (no holder, or expired): take it.
    Acquire,
    /// Another candidate holds a valid Lease.
    HeldByOther { holder: String },
}

/// Decides from the Lease's spec, this candidate's identity and the local time (microseconds
/// since the Unix epoch).
fn decide(spec: &LeaseSpec, identity: &str, now_us: i64) -> Decision {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let last_renew = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    let Some(last_renew) = last_renew else {
        return Decision::Acquire;
    };
    let duration_us = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)) * 1_000_000;
    let expires_us = last_renew.0.as_microsecond().saturating_add(duration_us);
    if expires_us < now_us {
        Decision::Acquire
    } else {
        Decision::HeldByOther {
            holder: holder.to_string(),
        }
    }
}

/// The result of one successful attempt.
#[derive(Debug)]
enum Attempt {
    /// This candidate holds the Lease; `stamped_at` is a moment no later than the `renewTime`
    /// written.
    Leading {
        stamped_at: Instant,
        transitions: i32,
    },
    /// Another candidate holds it.
    Following { holder: String },
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("Lease API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("the Lease was written by someone else between read and write")]
    Conflict,
    #[error("the Lease API did not answer within {0:?}")]
    TimedOut(Duration),
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Reads the Lease and acquires or renews it when the rules allow.
async fn attempt(api: &Api<Lease>, cfg: &LeaderConfig) -> Result<Attempt, AttemptError> {
    let current = api.get_opt(&cfg.lease_name).await?;
    // Taken before the timestamp written, so the local deadline never outlasts the Lease.
    let stamped_at = Instant::now();
    let now = MicroTime(Timestamp::now());
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.lease_name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.lease_duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading {
                stamped_at,
                transitions: 0,
            }),
            Err(e) if is_conflict(&e) => Err(AttemptError::Conflict),
            Err(e) => Err(e.into()),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    match decide(spec, &cfg.identity, now.0.as_microsecond()) {
        Decision::HeldByOther { holder } => return Ok(Attempt::Following { holder }),
        Decision::Renew => {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(cfg.lease_duration_seconds());
        }
        Decision::Acquire => {
            spec.holder_identity = Some(cfg.identity.clone());
            spec.lease_duration_seconds = Some(cfg.lease_duration_seconds());
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0).max(0).saturating_add(1));
        }
    }
    let transitions = spec.lease_transitions.unwrap_or(0);
    // `lease` still carries the resourceVersion read: the write fails if anyone wrote since.
    match api
        .replace(&cfg.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Attempt::Leading {
            stamped_at,
            transitions,
        }),
        Err(e) if is_conflict(&e) => Err(AttemptError::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// Clears the holder of a Lease that names this identity; true when it did.
async fn release(api: &Api<Lease>, cfg: &LeaderConfig) -> Result<bool, AttemptError> {
    loop {
        let Some(mut lease) = api.get_opt(&cfg.lease_name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api
            .replace(&cfg.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => return Ok(true),
            // Written in between (by a late renew or another writer): read again.
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn run(
    api: Api<Lease>,
    cfg: LeaderConfig,
    leadership: Leadership,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let lease = cfg.lease_path();
    let identity = cfg.identity.as_str();
    let renew_every = cfg.effective_renew_every();
    // While leading: the moment leadership lapses unless a renew succeeds first.
    let mut deadline: Option<Instant> = None;
    tracing::info!(%lease, identity, "leader election: started");
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            deadline = None;
            if leadership.set(false) {
                tracing::warn!(
                    %lease,
                    identity,
                    "leader election: lost leadership (the Lease could not be renewed in time)"
                );
            }
        }
        let bound = deadline.map_or(cfg.lease_duration, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            r = tokio::time::timeout(bound, attempt(&api, &cfg)) => {
                r.unwrap_or(Err(AttemptError::TimedOut(bound)))
            }
        };
        let mut wait = renew_every;
        match outcome {
            Ok(Attempt::Leading {
                stamped_at,
                transitions,
            }) => {
                deadline = Some(stamped_at + cfg.hold_for());
                if leadership.set(true) {
                    tracing::info!(%lease, identity, transitions, "leader election: became leader");
                }
            }
            Ok(Attempt::Following { holder }) => {
                deadline = None;
                if leadership.set(false) {
                    tracing::warn!(
                        %lease,
                        identity,
                        %holder,
                        "leader election: lost leadership (another candidate holds the Lease)"
                    );
                } else {
                    tracing::trace!(%lease, identity, %holder, "leader election: following");
                }
            }
            Err(e) => {
                if matches!(e, AttemptError::Conflict) {
                    // Learn who wrote it without waiting a whole interval.
                    wait = renew_every / 4;
                }
                if deadline.is_some() {
                    tracing::warn!(%lease, identity, error = %e, "leader election: renew failed");
                } else {
                    tracing::debug!(%lease, identity, error = %e, "leader election: acquire failed");
                }
            }
        }
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Stop acting as leader before anyone else can take over.
    if leadership.set(false) {
        tracing::info!(%lease, identity, "leader election: stepping down for shutdown");
    }
    match tokio::time::timeout(RELEASE_TIMEOUT, release(&api, &cfg)).await {
        Ok(Ok(true)) => tracing::info!(%lease, identity, "leader election: released the Lease"),
        Ok(Ok(false)) => tracing::debug!(%lease, identity, "leader election: nothing to release"),
        Ok(Err(e)) => {
            tracing::warn!(%lease, identity, error = %e, "leader election: release failed")
        }
        Err(_) => tracing::warn!(%lease, identity, "leader election: release timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn spec(holder: Option<&str>, renew_us: Option<i64>, duration_s: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renew_us
                .map(|us| MicroTime(Timestamp::from_microsecond(us).expect("timestamp in range"))),
            lease_duration_seconds: duration_s,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn free_or_own_or_expired_leases_are_taken() {
        let now = 1_700_000_000 * SEC;
        assert_eq!(decide(&spec(None, None, None), "a", now), Decision::Acquire);
        assert_eq!(
            decide(&spec(Some(""), Some(now), Some(15)), "a", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(&spec(Some("a"), Some(now - 100 * SEC), Some(15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(&spec(Some("b"), Some(now - 16 * SEC), Some(15)), "a", now),
            Decision::Acquire
        );
        // No renew time or no duration: nothing keeps it valid.
        assert_eq!(
            decide(&spec(Some("b"), None, Some(15)), "a", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(&spec(Some("b"), Some(now - 1), None), "a", now),
            Decision::Acquire
        );
    }

    #[test]
    fn valid_leases_of_others_are_respected() {
        let now = 1_700_000_000 * SEC;
        let held = Decision::HeldByOther {
            holder: "b".to_string(),
        };
        assert_eq!(
            decide(&spec(Some("b"), Some(now - 14 * SEC), Some(15)), "a", now),
            held
        );
        // Exactly at expiry it is still valid; a renew time in the future (clock skew) too.
        assert_eq!(
            decide(&spec(Some("b"), Some(now - 15 * SEC), Some(15)), "a", now),
            held
        );
        assert_eq!(
            decide(&spec(Some("b"), Some(now + 5 * SEC), Some(1)), "a", now),
            held
        );
        // Extreme values from the API do not overflow.
        assert_eq!(
            decide(
                &spec(
                    Some("b"),
                    Some(Timestamp::MAX.as_second() * SEC),
                    Some(i32::MAX)
                ),
                "a",
                now
            ),
            held
        );
        assert_eq!(
            decide(&spec(Some("b"), Some(now), Some(-5)), "a", now + 1),
            Decision::Acquire
        );
    }

    #[test]
    fn timing_derives_from_the_configuration() {
        let mut cfg = LeaderConfig::new("ns", "lease", "me");
        assert_eq!(cfg.lease_duration_seconds(), 15);
        assert_eq!(cfg.hold_for(), Duration::from_secs(13));
        cfg.lease_duration = Duration::from_millis(2500);
        cfg.renew_every = Duration::from_secs(10);
        assert_eq!(cfg.lease_duration_seconds(), 3);
        assert_eq!(cfg.effective_renew_every(), Duration::from_millis(1250));
        assert_eq!(cfg.hold_for(), Duration::from_millis(1250));
        cfg.lease_duration = Duration::ZERO;
        assert_eq!(cfg.lease_duration_seconds(), 1);
        assert_eq!(cfg.effective_renew_every(), MIN_RENEW_EVERY);
    }

    #[tokio::test]
    async fn leadership_reports_and_wakes_waiters() {
        let leadership = Leadership::new(false);
        assert!(!leadership.is_leader());
        let mut rx = leadership.subscribe();
        let waiter = tokio::spawn({
            let l = leadership.clone();
            async move { l.wait_until_leader().await }
        });
        assert!(leadership.set(true));
        assert!(!leadership.set(true), "no change, no notification");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woken")
            .expect("waiter did not panic");
        assert!(rx.has_changed().expect("sender alive"));
        assert!(*rx.borrow_and_update());
        assert!(always_leader().is_leader());
        tokio::time::timeout(Duration::from_secs(5), always_leader().wait_until_leader())
            .await
            .expect("always leader resolves at once");
    }
}
