//! Scenario files never panic the parser, and a scenario that parses runs to a report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_operator::simulate::{Scenario, run};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(scenario) = Scenario::parse("fuzz.yaml", text)
    {
        let _ = run(&scenario).render();
    }
});
