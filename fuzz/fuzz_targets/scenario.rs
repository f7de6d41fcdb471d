//! `simulate --scenario` files on arbitrary text: a scenario or an error naming where, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_operator::simulate::Scenario;

fuzz_target!(|text: &str| {
    if let Err(e) = Scenario::parse("fuzz.yaml", text) {
        assert!(!e.to_string().is_empty());
    }
});
