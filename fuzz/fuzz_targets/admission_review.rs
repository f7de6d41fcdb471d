//! Arbitrary bytes as an AdmissionReview: parsing never panics and always yields a well-formed answer;
//! for a pod, the planned patch applies to the object exactly as sent, keeps what was there, and a
//! second plan on the patched object adds nothing.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use placement_webhook::patch::{Placement, PreferredTerm, Requirement, plan_patch, plan_patch_json};
use placement_webhook::review::{Object, Response, parse_review};

fn placement() -> Placement {
    let zone = "topology.kubernetes.io/zone";
    Placement {
        node_selector: BTreeMap::from([(zone.to_owned(), "zone-a".to_owned())]),
        preferred_terms: vec![PreferredTerm {
            weight: 40,
            match_expressions: vec![Requirement::is_in("node-type", ["spot"])],
        }],
        required_term_exprs: vec![Requirement::is_in(zone, ["zone-a", "zone-b"])],
        annotations: BTreeMap::from([("placement.dev/decision".to_owned(), "zone-a: least loaded".to_owned())]),
    }
}

fuzz_target!(|data: &[u8]| {
    let request = match parse_review(data) {
        Ok(request) => request,
        Err(error) => {
            let _ = error.metric_label();
            let _ = Response::for_invalid(data, &error).to_review_json();
            return;
        }
    };
    let Some(Object::Pod { pod, raw }) = &request.object else {
        let _ = Response::allow(request.uid.as_str()).to_review_json();
        return;
    };
    let placement = placement();
    let _ = plan_patch(pod, &placement);
    match plan_patch_json(raw, &placement) {
        Ok(plan) => {
            let mut patched = raw.clone();
            if let Err(error) = json_patch::patch(&mut patched, &plan.patch) {
                panic!("planned patch does not apply: {error}");
            }
            let again = plan_patch_json(&patched, &placement).expect("a patched pod plans again");
            assert!(again.is_empty(), "second plan adds {:?}", again.patch);
            let body = Response::allow(request.uid.as_str()).with_patch(&plan.patch).to_review_json();
            let _: serde_json::Value = serde_json::from_slice(&body).expect("the response is JSON");
        }
        Err(conflict) => {
            let warning = conflict.to_string();
            let _ = Response::allow(request.uid.as_str()).with_warnings(vec![warning]).to_review_json();
        }
    }
});
