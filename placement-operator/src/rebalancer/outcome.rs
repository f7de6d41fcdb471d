//! What each eviction outcome becomes, in one table: the Event published on the pod, how the pass's
//! reservation of it settles in the policy's status ([`Settled`]), and, for a refusal, the budget it is
//! counted as blocked by. Pure, so that the table is tested on its own and the controller only
//! publishes, counts and writes what it says.
//!
//! | outcome | Event (reason, warning) | reservation | counted as blocked |
//! |---|---|---|---|
//! | evicted | `Evicted`, no | done | no |
//! | refused (429: a disruption budget) | `EvictionRefused`, yes: retried at a later pass | released | `eviction_refused` |
//! | gone (404) | `EvictionSkipped`, no | released | no |
//! | unknown (5xx, timeout) | `EvictionFailed`, yes | kept: counted against the budgets in case it happened | no |
//! | dry run | `DryRunEvict`, no: nothing evicted | (none made) | no |

use super::evictor::Outcome;
use super::state::Settled;
use crate::runtime::events::Note;

/// What one eviction attempt leads to.
#[derive(Debug, PartialEq)]
pub struct Consequence {
    /// The Event on the pod.
    pub note: Note,
    /// How its reservation settles in status.
    pub settled: Settled,
    /// The `budget` label of the blocked counter it bumps, if any.
    pub blocked: Option<&'static str>,
}

/// The consequence of `outcome` for an eviction planned for `reason` (the plan's reason for the move).
pub fn of_eviction(outcome: &Outcome, reason: &str) -> Consequence {
    let note = |warning: bool, event: &str, text: String| Note {
        warning,
        reason: event.into(),
        action: "Evict".into(),
        note: text,
    };
    match outcome {
        Outcome::Evicted => {
            Consequence { note: note(false, "Evicted", reason.to_string()), settled: Settled::Done, blocked: None }
        }
        Outcome::Refused(m) => Consequence {
            note: note(true, "EvictionRefused", format!("{m}; retried at a later pass")),
            settled: Settled::Released { reason: "eviction_refused", message: m.clone() },
            blocked: Some("eviction_refused"),
        },
        Outcome::Gone => Consequence {
            note: note(false, "EvictionSkipped", "the pod no longer exists".into()),
            settled: Settled::Released { reason: "pod_gone", message: "the pod no longer exists".into() },
            blocked: None,
        },
        Outcome::Unknown(m) => Consequence {
            note: note(true, "EvictionFailed", format!("{m}; counted against the budgets in case it happened")),
            settled: Settled::Unknown { message: m.clone() },
            blocked: None,
        },
    }
}

/// The Event on a pod a dry-run pass would have evicted for `reason`.
pub fn of_dry_run(reason: &str) -> Note {
    Note {
        warning: false,
        reason: "DryRunEvict".into(),
        action: "Evict".into(),
        note: format!("dry run, nothing evicted: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHY: &str = "node-a is hot (0.91); moving web-1";

    #[test]
    fn each_outcome_has_its_event_settlement_and_counter() {
        let evicted = of_eviction(&Outcome::Evicted, WHY);
        assert_eq!((evicted.note.reason.as_str(), evicted.note.warning), ("Evicted", false));
        assert_eq!(evicted.note.note, WHY, "an eviction's Event carries the plan's reason");
        assert_eq!((&evicted.settled, evicted.blocked), (&Settled::Done, None));

        let refused = of_eviction(&Outcome::Refused("PDB web allows 0 disruptions".into()), WHY);
        assert_eq!((refused.note.reason.as_str(), refused.note.warning), ("EvictionRefused", true));
        assert_eq!(refused.note.note, "PDB web allows 0 disruptions; retried at a later pass");
        assert_eq!(
            refused.settled,
            Settled::Released { reason: "eviction_refused", message: "PDB web allows 0 disruptions".into() }
        );
        assert_eq!(refused.blocked, Some("eviction_refused"));

        let gone = of_eviction(&Outcome::Gone, WHY);
        assert_eq!((gone.note.reason.as_str(), gone.note.warning), ("EvictionSkipped", false));
        assert!(matches!(gone.settled, Settled::Released { reason: "pod_gone", .. }), "{:?}", gone.settled);
        assert_eq!(gone.blocked, None);

        let unknown = of_eviction(&Outcome::Unknown("503 from the API server".into()), WHY);
        assert_eq!((unknown.note.reason.as_str(), unknown.note.warning), ("EvictionFailed", true));
        assert_eq!(unknown.settled, Settled::Unknown { message: "503 from the API server".into() });
        assert!(unknown.note.note.contains("counted against the budgets"), "{}", unknown.note.note);
        assert_eq!(unknown.blocked, None);

        for c in [evicted, refused, gone, unknown] {
            assert_eq!(c.note.action, "Evict");
        }
    }

    #[test]
    fn a_dry_run_says_nothing_was_evicted_and_why_it_would_be() {
        let note = of_dry_run(WHY);
        assert_eq!((note.reason.as_str(), note.warning, note.action.as_str()), ("DryRunEvict", false, "Evict"));
        assert_eq!(note.note, format!("dry run, nothing evicted: {WHY}"));
    }
}
