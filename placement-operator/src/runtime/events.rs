//! Kubernetes Events (`events.k8s.io/v1`) for every eviction, blocked eviction, placement change and
//! error. Publishing is best effort: a failed Event is logged, never retried in a loop, and never fails
//! the reconcile that produced it. Dry-run actions are published too, with `DryRun` in the reason so
//! that `kubectl events` shows what would have happened.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Where controllers publish Events; `disabled()` drops them (tests that do not look at Events).
#[derive(Clone)]
pub struct Events {
    recorder: Option<Recorder>,
}

/// One Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// UpperCamelCase, short (`Evicted`, `EvictionBlocked`, `ZonePinned`).
    pub reason: String,
    /// What was done (`Evict`, `Pin`, `Reconcile`).
    pub action: String,
    /// Human readable, at most 1 KiB.
    pub note: String,
}

impl Events {
    /// Events reported as `controller` by `instance` (the pod name).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: controller.to_string(), instance };
        Events { recorder: Some(Recorder::new(client, reporter)) }
    }

    pub fn disabled() -> Self {
        Events { recorder: None }
    }

    /// Publishes `note` about `object`; a failure is logged.
    pub async fn publish(&self, object: &ObjectReference, note: Note) {
        let Some(recorder) = &self.recorder else { return };
        let mut text = note.note;
        if text.len() > 1024 {
            let mut cut = 1021;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        let event = Event {
            type_: if note.warning { EventType::Warning } else { EventType::Normal },
            reason: note.reason.clone(),
            note: Some(text),
            action: note.action,
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, object).await {
            tracing::warn!(error = %e, reason = %note.reason, object = ?object.name, "could not publish an Event");
        }
    }
}
