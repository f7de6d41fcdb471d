//! Criterion benches live in `benches/*.rs`; see `docs/performance.md`.
#![forbid(unsafe_code)]
