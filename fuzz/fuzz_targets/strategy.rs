//! The strategy annotation parser (`placement.dev/strategy`, SmartScheduler's syntax) on arbitrary text:
//! an error or a strategy, never a panic; a strategy's apportionment gives exactly n pods for every n.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_core::strategy::Strategy;

fuzz_target!(|text: &str| {
    let Ok(strategy) = text.parse::<Strategy>() else { return };
    let _ = strategy.groups();
    if let Ok(apportionment) = strategy.apportionment() {
        for n in [0u32, 1, 2, 7, 100] {
            let target = apportionment.target(n);
            assert_eq!(target.iter().map(|&c| u64::from(c)).sum::<u64>(), u64::from(n), "{text:?} at {n}: {target:?}");
        }
    }
});
