//! The Route53 rebalancer's README example: a Route53 record whose reference weight is 8, tracking 1000 req/min; at
//! 3000 req/min the weight becomes 16.

use jiff::Timestamp;
use placement_core::tracking::{TrackingPolicy, TrackingState, WeightRange, parse_metric, step};
use rust_decimal::Decimal;

#[test]
fn route53_rebalancer_readme_example_3000_per_minute_gives_16() {
    let policy = TrackingPolicy {
        target_value: Decimal::from(1000),
        base_value: 8,
        minimum: 0,
        range: WeightRange { min: 0, max: 255 },
        cooldown_seconds: 60,
        deadband: 0,
        disable_scale_in: false,
        schedules: vec![],
    }
    .compile()
    .unwrap();
    let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let d = step(&policy, &TrackingState::default(), parse_metric("3000").unwrap(), 8, now);
    assert_eq!(d.apply, Some(16));
    // The original computed the law in floats: (10, 1000, 1100) gave 2. It is 1.
    let d = placement_core::tracking::desired_weight(10, Decimal::from(1000), parse_metric("1100").unwrap(), 255);
    assert_eq!(d, 1);
}
