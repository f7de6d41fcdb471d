//! Traffic weights: where they are read and written (actuators) and where the load comes from.
pub mod actuator;
pub mod route53;
