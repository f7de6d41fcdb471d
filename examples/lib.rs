//! Embedding examples: run them with `cargo run -p placement-examples --example NAME`.
#![forbid(unsafe_code)]
