//! Real servers the TrafficWeight tests run against on 127.0.0.1, one of each per test binary:
//! Debian's `prometheus` ([`prometheus`]) and the `moto_server` AWS API emulator ([`moto`]). Without the
//! binaries the tests that need them fail with the install command; they never skip.
#![allow(dead_code)] // each test binary uses a part

pub mod moto;
pub mod prometheus;
pub mod recorder;
