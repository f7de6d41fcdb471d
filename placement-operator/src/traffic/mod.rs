//! Target-tracking traffic weights (`TrafficWeight`, issue 6): where the metric comes from
//! ([`prometheus`]), where weights are read and written ([`actuator`], with [`route53`]
//! and an HTTPRoute actuator to come), and the controller that applies the core tracking law.
//! Each part decides one thing and returns typed errors, so the controller can turn every failure into a
//! status condition and an event and never into a weight change.

pub mod actuator;
pub mod prometheus;
pub mod route53;
