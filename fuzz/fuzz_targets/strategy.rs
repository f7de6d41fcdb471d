//! The strategy annotation parser never panics, whatever it accepts prints back to itself, and a parsed
//! strategy's apportionment gives exactly n pods for every n.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_core::strategy::Strategy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(strategy) = text.parse::<Strategy>()
    {
        let again: Strategy = strategy.to_string().parse().expect("Display output parses");
        assert_eq!(again, strategy);
        if let Ok(apportionment) = strategy.apportionment() {
            for n in [0u32, 1, 2, 7, 50] {
                let target = apportionment.target(n);
                assert_eq!(
                    target.iter().map(|&c| u64::from(c)).sum::<u64>(),
                    u64::from(n),
                    "{text:?} at {n}: {target:?}"
                );
            }
        }
    }
});
