//! Every placement CR spec on arbitrary YAML: deserializing and converting (`to_core`) gives a value or
//! an error naming the field, never a panic. The first byte picks the kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_kube::crd;

fn check<T: serde::de::DeserializeOwned>(text: &str, convert: impl Fn(&T) -> Result<(), String>) {
    if let Ok(spec) = serde_yaml_ng::from_str::<T>(text) {
        if let Err(e) = convert(&spec) {
            assert!(e.starts_with("spec"), "an error names the field: {e}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let s = |e: crd::CrdError| e.to_string();
    match kind % 6 {
        0 => check::<crd::ZoneBalancerSpec>(text, |x| x.to_core().map(drop).map_err(s)),
        1 => check::<crd::PodDistributionSpec>(text, |x| x.to_core("shop").map(drop).map_err(s)),
        2 => check::<crd::RebalancePolicySpec>(text, |x| x.to_core().map(drop).map_err(s)),
        3 => check::<crd::WorkloadSLOSpec>(text, |x| {
            let target = placement_core::selector::LabelSelector::from_pairs([("app", "api")]);
            x.to_core_with_target("shop", "api", Some(&target)).map(drop).map_err(s)
        }),
        4 => check::<crd::NodeClassSpec>(text, |x| x.to_core("class").map(drop).map_err(s)),
        _ => check::<crd::TrafficWeightSpec>(text, |x| x.to_core(8).map(drop).map_err(s)),
    }
});
