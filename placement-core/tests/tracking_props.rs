//! Tracking always stays in range, never delays an increase, only decreases after the cooldown, and its
//! exact law agrees with an integer reference.

use jiff::Timestamp;
use placement_core::tracking::{TrackingPolicy, TrackingState, WeightRange, desired_weight, step};
use proptest::prelude::*;
use rust_decimal::Decimal;

#[allow(clippy::too_many_arguments)]
fn policy(
    base: u32,
    target: u32,
    min: u32,
    max: u32,
    minimum: u32,
    cooldown: u64,
    deadband: u32,
    no_scale_in: bool,
) -> TrackingPolicy {
    TrackingPolicy {
        target_value: Decimal::from(target),
        base_value: base,
        minimum,
        range: WeightRange { min, max },
        cooldown_seconds: cooldown,
        deadband,
        disable_scale_in: no_scale_in,
        schedules: vec![],
    }
}

proptest! {
    #[test]
    fn law_matches_integer_reference(base in 0u32..1000, target_milli in 1u64..10_000_000, current_milli in 0u64..100_000_000) {
        // With values in thousandths: smallest w with w * t >= base * (c - t), all in u128.
        let t = Decimal::new(target_milli as i64, 3);
        let c = Decimal::new(current_milli as i64, 3);
        let want = if current_milli <= target_milli { 0 } else {
            let need = u128::from(base) * u128::from(current_milli - target_milli);
            need.div_ceil(u128::from(target_milli)).min(100_000) as u32
        };
        prop_assert_eq!(desired_weight(base, t, c, 100_000), want);
    }

    #[test]
    fn steps_stay_in_range_and_respect_cooldown(
        (base, target, min, max, minimum) in (1u32..20, 1u32..2000, 0u32..10, 10u32..300, 0u32..20),
        cooldown in 0u64..600,
        deadband in 0u32..4,
        no_scale_in in any::<bool>(),
        samples in prop::collection::vec((0u32..20_000, 1i64..400), 1..40),
    ) {
        let p = policy(base, target, min, max, minimum, cooldown, deadband, no_scale_in).compile().unwrap();
        let mut state = TrackingState::default();
        let mut actual = min;
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        for (metric, dt) in samples {
            now = now.checked_add(jiff::SignedDuration::from_secs(dt)).unwrap();
            let before = state.clone();
            let d = step(&p, &state, Decimal::from(metric), actual, now);
            prop_assert!(d.desired >= min && d.desired <= max, "desired {} outside {}..{}", d.desired, min, max);
            match d.apply {
                Some(w) if w > actual => prop_assert_eq!(w, d.desired),
                Some(w) => {
                    prop_assert!(w < actual);
                    prop_assert!(!no_scale_in, "decrease with scale-in disabled");
                    prop_assert!(actual - w > deadband, "decrease inside the deadband");
                    if let Some(last) = before.last_change {
                        prop_assert!(now.duration_since(last).as_secs() >= cooldown as i64, "decrease inside the cooldown");
                    }
                }
                None => prop_assert!(d.desired <= actual, "an increase was held"),
            }
            if let Some(w) = d.apply { actual = w; }
            state = d.state;
        }
    }
}
