//! The webhook's AdmissionReview handler on arbitrary bodies: it must answer every body (never panic),
//! and every answer must be an AdmissionReview that allows the pod (the webhook fails open) and, when
//! the request had a uid, echoes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_webhook::admission::Admission;
use placement_webhook::decide::{Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn admission() -> &'static Admission {
    static ADMISSION: OnceLock<Admission> = OnceLock::new();
    ADMISSION.get_or_init(|| {
        let mut index = LiveIndex::new();
        for (name, capacity, zone) in [("a", "on-demand", "z1"), ("b", "spot", "z2"), ("c", "spot", "z3")] {
            let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"capacity": capacity, "topology.kubernetes.io/zone": zone}},
                "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}}))
            .expect("a node");
            index.apply_node(&node);
        }
        let decider =
            Decider::new(SharedIndex::from_index(index), Arc::new(StaticRules::default()), Duration::from_secs(30));
        Admission::new(Arc::new(decider), AdmissionMetrics::register(&mut Registry::default()), Duration::from_secs(1))
    })
}

fuzz_target!(|body: &[u8]| {
    let answer = admission().review(body);
    let answer: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    let response = &answer["response"];
    // A malformed review without a recoverable uid is answered with a 400 status instead of a response.
    if response.is_object() {
        let sent: Option<Value> = serde_json::from_slice(body).ok();
        if let Some(uid) = sent.as_ref().and_then(|v| v["request"]["uid"].as_str()) {
            if !uid.is_empty() && response["uid"].is_string() {
                assert_eq!(response["uid"], uid, "the uid is echoed");
            }
        }
    }
});
