//! The status rules: from what one reconcile did and what the supervisor observed, the phase
//! of a database and its conditions. Pure.
//!
//! Contract:
//! - [`assess`] decides the phase and the `Ready`, `Reconciling`, `Degraded`,
//!   `ReplicationHealthy`, `ObjectsOwned` and `SpecValid` conditions of a valid spec; [`invalid`] those of a
//!   spec that failed validation. The reconciler only writes what they return.
//! - Phases: `Provisioning` until the first time everything is ready, then `Ready`; after that,
//!   `Updating` while a spec change is being carried out and `Degraded` for anything else that
//!   is not ready. `Invalid` while the spec does not validate.
//! - Every message is a sentence a person can act on: what is wrong, where, and the fix when
//!   one is known. No message carries a debug dump of an error.
//! - An object left alone because someone else's object has its name (a conflict) makes
//!   `ObjectsOwned=False` with reason `ObjectConflict`, and keeps the database from Ready
//!   (reason `ObjectConflict`) and Degraded if it was running.
//! - `ReplicationHealthy` is `True` only when every managed region was reached and every link
//!   is up; it is `Unknown` while a region could not be reached at all.

use std::collections::BTreeMap;

use crate::conditions::{self, Truth};

/// The lifecycle phase shown in `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Provisioning,
    Ready,
    Updating,
    Degraded,
    Invalid,
}

impl Phase {
    /// The word written to `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Updating => "Updating",
            Phase::Degraded => "Degraded",
            Phase::Invalid => "Invalid",
        }
    }

    /// The phase a status word names, if any.
    pub fn parse(word: &str) -> Option<Phase> {
        [
            Phase::Provisioning,
            Phase::Ready,
            Phase::Updating,
            Phase::Degraded,
            Phase::Invalid,
        ]
        .into_iter()
        .find(|p| p.as_str() == word)
    }

    /// The database has been ready once and is being kept so.
    fn running(self) -> bool {
        matches!(self, Phase::Ready | Phase::Degraded | Phase::Updating)
    }
}

/// One condition to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub kind: &'static str,
    pub status: Truth,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionUpdate {
    fn new(
        kind: &'static str,
        status: impl Into<Truth>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ConditionUpdate {
            kind,
            status: status.into(),
            reason,
            message: message.into(),
        }
    }
}

/// What one reconcile knows about a valid database.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The phase written last time, if any.
    pub previous_phase: Option<Phase>,
    /// The spec's generation differs from the one status last observed.
    pub spec_changed: bool,
    /// The supervisor has observed the pods at least once.
    pub seen: bool,
    /// The supervisor's latest observation was made with the current plan.
    pub observed_this_plan: bool,
    /// StatefulSets whose pods do not all run the current template yet, with detail.
    pub rolling_out: Vec<String>,
    pub ready_shards: u32,
    pub total_shards: u32,
    /// Every replica follows its primary (links between regions aside).
    pub replication_healthy: bool,
    /// Regions whose proxies are not all ready or lag behind the topology: sentences.
    pub proxies_not_ready: Vec<String>,
    /// Links between regions that are down, as `from->to`.
    pub links_down: Vec<String>,
    /// Managed regions whose cluster could not be reached at all, with why.
    pub unreached: BTreeMap<String, String>,
    /// Other problems per region (or `(auth)`, `(pruning)`): sentences.
    pub problems: BTreeMap<String, String>,
    /// Objects left alone because they exist without the database's labels: sentences naming
    /// kind, namespace and name.
    pub conflicts: Vec<String>,
    /// Failovers or switchovers held back, with why.
    pub holding: Vec<String>,
    /// Errors the supervisor met (probes, wiring).
    pub errors: Vec<String>,
}

/// The phase and conditions of a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub phase: Phase,
    /// Every shard ready, every link up, nothing held back: Ready=True.
    pub all_ready: bool,
    /// Something is down or held back: Degraded=True.
    pub degraded: bool,
    /// "N/M shards ready".
    pub shards_message: String,
    /// Every problem, one sentence each (the Degraded message and Event).
    pub trouble: Vec<String>,
    pub conditions: Vec<ConditionUpdate>,
}

/// The phase and conditions of a spec that failed validation with `problems`.
pub fn invalid(problems: &[String]) -> Assessment {
    let message = problems.join("; ");
    Assessment {
        phase: Phase::Invalid,
        all_ready: false,
        degraded: false,
        shards_message: String::new(),
        trouble: problems.to_vec(),
        conditions: vec![
            ConditionUpdate::new(conditions::SPEC_VALID, false, "InvalidSpec", message),
            ConditionUpdate::new(
                conditions::READY,
                false,
                "InvalidSpec",
                "the spec is invalid: see the SpecValid condition for what to change",
            ),
            ConditionUpdate::new(
                conditions::RECONCILING,
                false,
                "InvalidSpec",
                "nothing is changed until the spec is fixed",
            ),
        ],
    }
}

/// The phase and conditions of a valid database in the situation `o`.
pub fn assess(o: &Observed) -> Assessment {
    let shards_message = format!("{}/{} shards ready", o.ready_shards, o.total_shards);
    let mut trouble: Vec<String> = o
        .unreached
        .iter()
        .chain(o.problems.iter())
        .map(|(region, why)| format!("{region}: {why}"))
        .collect();
    trouble.extend(o.conflicts.iter().cloned());
    trouble.extend(o.holding.iter().cloned());
    trouble.extend(o.errors.iter().cloned());
    let mut with_links = trouble.clone();
    with_links.extend(
        o.links_down.iter().map(|l| {
            format!("the link {l} is down: check that the region is running and reachable")
        }),
    );

    let all_ready = o.seen
        && o.observed_this_plan
        && o.rolling_out.is_empty()
        && o.total_shards > 0
        && o.ready_shards == o.total_shards
        && o.replication_healthy
        && o.proxies_not_ready.is_empty()
        && o.links_down.is_empty()
        && o.unreached.is_empty()
        && o.problems.is_empty()
        && o.conflicts.is_empty();
    let degraded = !with_links.is_empty();

    let mut conditions = vec![ConditionUpdate::new(
        conditions::SPEC_VALID,
        true,
        "Valid",
        "the spec is valid",
    )];
    conditions.push(replication_condition(o));
    conditions.push(if o.conflicts.is_empty() {
        ConditionUpdate::new(
            conditions::OBJECTS_OWNED,
            true,
            "Owned",
            "no object of the database's names belongs to anyone else",
        )
    } else {
        ConditionUpdate::new(
            conditions::OBJECTS_OWNED,
            false,
            "ObjectConflict",
            o.conflicts.join("; "),
        )
    });
    conditions.push(if degraded {
        ConditionUpdate::new(
            conditions::DEGRADED,
            true,
            "Problems",
            with_links.join("; "),
        )
    } else {
        ConditionUpdate::new(conditions::DEGRADED, false, "NoProblems", "nothing is down")
    });

    let (reason, message) = not_ready_reason(o, &shards_message, &with_links);
    if all_ready {
        conditions.push(ConditionUpdate::new(
            conditions::READY,
            true,
            "AllShardsReady",
            shards_message.clone(),
        ));
        conditions.push(ConditionUpdate::new(
            conditions::RECONCILING,
            false,
            "Reconciled",
            "the database matches its spec",
        ));
    } else {
        conditions.push(ConditionUpdate::new(
            conditions::READY,
            false,
            reason,
            message.clone(),
        ));
        conditions.push(ConditionUpdate::new(
            conditions::RECONCILING,
            true,
            reason,
            message,
        ));
    }

    let previous = o.previous_phase;
    let was_running = previous.is_some_and(Phase::running);
    let phase = if all_ready {
        Phase::Ready
    } else if was_running && (o.spec_changed || previous == Some(Phase::Updating)) {
        Phase::Updating
    } else if was_running || (degraded && previous == Some(Phase::Degraded)) {
        Phase::Degraded
    } else {
        Phase::Provisioning
    };
    Assessment {
        phase,
        all_ready,
        degraded,
        shards_message,
        trouble,
        conditions,
    }
}

fn replication_condition(o: &Observed) -> ConditionUpdate {
    let kind = conditions::REPLICATION_HEALTHY;
    if !o.unreached.is_empty() {
        let regions: Vec<&str> = o.unreached.keys().map(String::as_str).collect();
        return ConditionUpdate::new(
            kind,
            Truth::Unknown,
            "RegionsUnreached",
            format!(
                "cannot tell whether replication is healthy: region{} {} could not be reached (see Degraded)",
                if regions.len() == 1 { "" } else { "s" },
                regions.join(", ")
            ),
        );
    }
    if !o.links_down.is_empty() {
        return ConditionUpdate::new(
            kind,
            false,
            "LinksDown",
            format!("links down: {}", o.links_down.join(", ")),
        );
    }
    if !o.replication_healthy {
        return ConditionUpdate::new(
            kind,
            false,
            "LinksDown",
            "replicas or links are not all up yet",
        );
    }
    ConditionUpdate::new(
        kind,
        true,
        "AllLinksUp",
        "every replica follows its primary and every cross-region link is connected",
    )
}

/// Why the database is not ready: the reason word and the message of Ready and Reconciling.
fn not_ready_reason(
    o: &Observed,
    shards_message: &str,
    problems: &[String],
) -> (&'static str, String) {
    if !o.conflicts.is_empty() {
        return (
            "ObjectConflict",
            format!("{shards_message}; {}", problems.join("; ")),
        );
    }
    if !o.rolling_out.is_empty() {
        let mut message = format!(
            "{shards_message}; rolling out: {}",
            o.rolling_out.join("; ")
        );
        for p in problems {
            message.push_str("; ");
            message.push_str(p);
        }
        return ("RollingOut", message);
    }
    if !o.unreached.is_empty() {
        return (
            "RegionsUnreached",
            format!("{shards_message}; {}", problems.join("; ")),
        );
    }
    if o.seen && !o.observed_this_plan {
        return (
            "WaitingForObservation",
            format!("{shards_message}; the shards are not yet observed with the new spec"),
        );
    }
    if o.seen
        && o.total_shards > 0
        && o.ready_shards == o.total_shards
        && !o.proxies_not_ready.is_empty()
    {
        return (
            "ProxiesNotReady",
            format!("{shards_message}; {}", o.proxies_not_ready.join("; ")),
        );
    }
    if o.seen && o.total_shards > 0 && o.ready_shards == o.total_shards {
        let detail = if problems.is_empty() {
            "replicas or cross-region links are not all up yet".to_string()
        } else {
            problems.join("; ")
        };
        return (
            "ReplicationNotHealthy",
            format!("{shards_message}; {detail}"),
        );
    }
    if problems.is_empty() {
        ("ShardsNotReady", shards_message.to_string())
    } else {
        (
            "ShardsNotReady",
            format!("{shards_message}; {}", problems.join("; ")),
        )
    }
}

/// A Kubernetes API error as a sentence: the server's own message and code, or what went
/// wrong on the way, without the client's debug representation.
pub fn api_error_sentence(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            format!("the API server refused: {message} (HTTP {})", status.code)
        }
        other => format!("the API server could not be reached: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_db() -> Observed {
        Observed {
            previous_phase: Some(Phase::Ready),
            seen: true,
            observed_this_plan: true,
            ready_shards: 6,
            total_shards: 6,
            replication_healthy: true,
            ..Observed::default()
        }
    }

    fn condition<'a>(a: &'a Assessment, kind: &str) -> &'a ConditionUpdate {
        a.conditions
            .iter()
            .find(|c| c.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} condition in {a:?}"))
    }

    #[test]
    fn phase_words_round_trip() {
        for p in [
            Phase::Provisioning,
            Phase::Ready,
            Phase::Updating,
            Phase::Degraded,
            Phase::Invalid,
        ] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("Running"), None);
    }

    /// The phase table: (previous phase, spec changed, situation) -> phase.
    #[test]
    fn phases_follow_the_lifecycle() {
        let fresh = Observed {
            previous_phase: None,
            ..ready_db()
        };
        let not_ready = |previous: Option<Phase>, spec_changed: bool| Observed {
            previous_phase: previous,
            spec_changed,
            ready_shards: 3,
            ..ready_db()
        };
        let link_down = |previous: Option<Phase>| Observed {
            previous_phase: previous,
            links_down: vec!["east->west".into()],
            ..ready_db()
        };
        let cases: Vec<(&str, Observed, Phase)> = vec![
            ("everything ready the first time", fresh, Phase::Ready),
            (
                "nothing ready yet",
                not_ready(None, false),
                Phase::Provisioning,
            ),
            (
                "still provisioning",
                not_ready(Some(Phase::Provisioning), false),
                Phase::Provisioning,
            ),
            (
                "a spec change after Ready",
                not_ready(Some(Phase::Ready), true),
                Phase::Updating,
            ),
            (
                "an update goes on",
                not_ready(Some(Phase::Updating), false),
                Phase::Updating,
            ),
            (
                "a shard lost after Ready",
                not_ready(Some(Phase::Ready), false),
                Phase::Degraded,
            ),
            (
                "a link down after Ready",
                link_down(Some(Phase::Ready)),
                Phase::Degraded,
            ),
            (
                "a link down while provisioning",
                link_down(Some(Phase::Provisioning)),
                Phase::Provisioning,
            ),
            (
                "a spec fixed after Invalid",
                not_ready(Some(Phase::Invalid), true),
                Phase::Provisioning,
            ),
        ];
        for (what, observed, want) in cases {
            assert_eq!(assess(&observed).phase, want, "{what}");
        }
    }

    #[test]
    fn a_ready_database_has_every_condition_green() {
        let a = assess(&ready_db());
        assert!(a.all_ready && !a.degraded);
        assert_eq!(condition(&a, conditions::READY).status, Truth::True);
        assert_eq!(condition(&a, conditions::RECONCILING).status, Truth::False);
        assert_eq!(condition(&a, conditions::DEGRADED).status, Truth::False);
        assert_eq!(
            condition(&a, conditions::REPLICATION_HEALTHY).status,
            Truth::True
        );
        assert_eq!(condition(&a, conditions::SPEC_VALID).status, Truth::True);
        assert_eq!(condition(&a, conditions::OBJECTS_OWNED).status, Truth::True);
    }

    #[test]
    fn an_object_left_alone_is_a_conflict_that_keeps_the_database_from_ready() {
        let mut o = ready_db();
        o.conflicts
            .push("Service ns/db-east exists and is not this database's".into());
        let a = assess(&o);
        assert!(!a.all_ready && a.degraded);
        assert_eq!(a.phase, Phase::Degraded);
        let owned = condition(&a, conditions::OBJECTS_OWNED);
        assert_eq!(owned.status, Truth::False);
        assert_eq!(owned.reason, "ObjectConflict");
        assert!(owned.message.contains("Service ns/db-east"), "{owned:?}");
        let ready = condition(&a, conditions::READY);
        assert_eq!(ready.reason, "ObjectConflict");
        assert!(ready.message.contains("Service ns/db-east"), "{ready:?}");
    }

    #[test]
    fn an_unreached_region_makes_replication_health_unknown() {
        let mut o = ready_db();
        o.unreached.insert(
            "west".into(),
            "kubeconfig Secret db/west-kubeconfig does not exist: create it".into(),
        );
        let a = assess(&o);
        assert!(!a.all_ready && a.degraded);
        let repl = condition(&a, conditions::REPLICATION_HEALTHY);
        assert_eq!(repl.status, Truth::Unknown);
        assert_eq!(repl.reason, "RegionsUnreached");
        assert!(repl.message.contains("west"), "{}", repl.message);
        let ready = condition(&a, conditions::READY);
        assert_eq!(ready.reason, "RegionsUnreached");
        assert!(
            ready.message.contains("west-kubeconfig does not exist"),
            "{}",
            ready.message
        );
        assert!(condition(&a, conditions::DEGRADED)
            .message
            .contains("create it"));
    }

    #[test]
    fn not_ready_messages_say_why() {
        let rolling = Observed {
            rolling_out: vec!["db-east-0: 1 of 2 pods run the new template".into()],
            ..ready_db()
        };
        let held = Observed {
            ready_shards: 5,
            holding: vec![
                "shard east/0: pod db-east-0-0 cannot be scheduled: 0/3 nodes are available".into(),
            ],
            ..ready_db()
        };
        let links = Observed {
            links_down: vec!["east->west".into()],
            ..ready_db()
        };
        let stale = Observed {
            observed_this_plan: false,
            ..ready_db()
        };
        let stuck = Observed {
            ready_shards: 0,
            rolling_out: vec!["db-east-0 has 0/1 pods ready".into()],
            holding: vec!["pod db-east-0-0 cannot be scheduled".into()],
            ..ready_db()
        };
        let proxies = Observed {
            proxies_not_ready: vec!["east: 1 of 2 proxies ready".into()],
            ..ready_db()
        };
        let cases: Vec<(Observed, &str, &str)> = vec![
            (proxies, "ProxiesNotReady", "east: 1 of 2 proxies ready"),
            (rolling, "RollingOut", "1 of 2 pods run the new template"),
            (stuck, "RollingOut", "pod db-east-0-0 cannot be scheduled"),
            (held, "ShardsNotReady", "cannot be scheduled"),
            (links, "ReplicationNotHealthy", "east->west is down"),
            (stale, "WaitingForObservation", "not yet observed"),
        ];
        for (o, reason, needle) in cases {
            let a = assess(&o);
            let ready = condition(&a, conditions::READY);
            assert_eq!(ready.status, Truth::False);
            assert_eq!(ready.reason, reason);
            assert!(
                ready.message.contains(needle),
                "{reason}: {}",
                ready.message
            );
            assert!(!ready.message.contains("Error {") && !ready.message.contains("ErrorResponse"));
        }
    }

    #[test]
    fn an_invalid_spec_says_what_to_change() {
        let a = invalid(&["spec.resources.requests.cpu: \"banana\" is not a quantity".into()]);
        assert_eq!(a.phase, Phase::Invalid);
        let spec = condition(&a, conditions::SPEC_VALID);
        assert_eq!(spec.status, Truth::False);
        assert!(spec.message.contains("banana"));
        assert_eq!(condition(&a, conditions::READY).status, Truth::False);
    }

    #[test]
    fn api_errors_read_as_sentences() {
        let e = kube::Error::Api(
            kube::core::Status::failure("secrets \"west-kubeconfig\" not found", "NotFound")
                .with_code(404)
                .boxed(),
        );
        let s = api_error_sentence(&e);
        assert_eq!(
            s,
            "the API server refused: secrets \"west-kubeconfig\" not found (HTTP 404)"
        );
    }
}
