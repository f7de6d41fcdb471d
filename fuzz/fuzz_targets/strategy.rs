//! The strategy annotation parser never panics, and whatever it accepts prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_core::strategy::Strategy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(strategy) = text.parse::<Strategy>()
    {
        let again: Strategy = strategy.to_string().parse().expect("Display output parses");
        assert_eq!(again, strategy);
        let _ = strategy.apportionment().map(|a| a.target(50));
    }
});
