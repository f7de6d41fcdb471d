//! The operator's Events against the fake API server with the real kube recorder: an Event lands as
//! `events.k8s.io/v1` about the right object, reported by the operator and its pod; long notes are cut
//! at 1 KiB on a character boundary; a failing publish never fails the caller.

use k8s_openapi::api::core::v1::ObjectReference;
use placement_operator::runtime::events::{Events, Note};
use placement_testkit::{FakeApiServer, Fault, Verb};
use serde_json::json;
use std::time::Duration;

fn pod_ref() -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("shop".into()),
        name: Some("web-0".into()),
        uid: Some("00000000-0000-4000-8000-000000000001".into()),
        ..ObjectReference::default()
    }
}

async fn fake() -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    server
}

/// The stored Events, in `events.k8s.io/v1` form (the fake stores them in core form).
fn events(server: &FakeApiServer) -> Vec<serde_json::Value> {
    server.list("events.k8s.io/v1", "Event", Some("shop")).iter().map(placement_testkit::events::to_events_v1).collect()
}

#[tokio::test]
async fn an_event_names_the_object_the_reason_and_the_reporting_pod() {
    let server = fake().await;
    let events_api = Events::new(server.client(), "placement-operator", Some("placement-operator-0".into()));
    let note = Note {
        warning: true,
        reason: "EvictionBlocked".into(),
        action: "Evict".into(),
        note: "PodDisruptionBudget shop/web allows no disruption".into(),
    };
    events_api.publish(&pod_ref(), note).await;
    let stored = events(&server);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let e = &stored[0];
    assert_eq!(e["reason"], "EvictionBlocked");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["action"], "Evict");
    assert_eq!(e["note"], "PodDisruptionBudget shop/web allows no disruption");
    assert_eq!(e["regarding"]["name"], "web-0");
    assert_eq!(e["regarding"]["kind"], "Pod");
    assert_eq!(e["reportingController"], "placement-operator");
    assert_eq!(e["reportingInstance"], "placement-operator-0");
}

#[tokio::test]
async fn long_notes_are_cut_at_one_kibibyte_on_a_character_boundary() {
    let server = fake().await;
    let events_api = Events::new(server.client(), "placement-operator", Some("placement-operator-0".into()));
    // Two-byte characters: a cut at byte 1021 would split one.
    let long = "é".repeat(2000);
    events_api
        .publish(&pod_ref(), Note { warning: false, reason: "Planned".into(), action: "Plan".into(), note: long })
        .await;
    let stored = events(&server);
    let note = stored[0]["note"].as_str().unwrap();
    assert!(note.len() <= 1024, "{} bytes", note.len());
    assert!(note.ends_with("..."), "{note}");
    assert!(note.trim_end_matches("...").chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn a_failed_publish_is_logged_not_returned_and_disabled_events_write_nothing() {
    let server = fake().await;
    server.faults().inject(Fault::error(500).on(Verb::Create).resource("events"));
    let events_api = Events::new(server.client_without_retry(), "placement-operator", None);
    let note = Note { warning: false, reason: "ZonePinned".into(), action: "Pin".into(), note: "zone a".into() };
    tokio::time::timeout(Duration::from_secs(10), events_api.publish(&pod_ref(), note.clone()))
        .await
        .expect("a failing publish returns promptly");
    assert!(server.faults().hits() >= 1, "the recorder never tried");
    assert!(events(&server).is_empty());

    server.faults().clear();
    Events::disabled().publish(&pod_ref(), note).await;
    assert!(events(&server).is_empty(), "disabled Events wrote something");
}
