//! Target-tracking traffic weights (`TrafficWeight`, issue 6): where the metric comes from
//! ([`prometheus`]); the actuators and the controller that applies the core tracking law come later.
//! Each part decides one thing and returns typed errors, so the controller can turn every failure into a
//! status condition and an event and never into a weight change.

pub mod prometheus;
