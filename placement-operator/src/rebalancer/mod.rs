//! The utilization rebalancer (`docs/semantics.md#4-rebalancer`, issue 5 item 4): per `RebalancePolicy`,
//! at its interval, observe node and pod usage, plan with the core planner (WorkloadSLOs and NodeClasses honoured),
//! reserve the plan in the policy's status, evict through the eviction subresource only, and report
//! the plan — hot and cold nodes, sigma before and after, evictions done, blocked and why — in status,
//! Events and metrics. Dry-run (the default) does all of that except the evictions.
//!
//! | module | decides |
//! |---|---|
//! | [`observe`] | what a pass looks at: usage, SLOs (with `minAvailable`), NodeClasses, notes |
//! | [`pass`] | the pure pass shared with `placement-operator plan` |
//! | [`state`] | what is persisted in status, reserved before evicting and released after |
//! | [`evictor`] | the one evictor: eviction subresource, 429 means later, never delete |
//! | [`outcome`] | what each eviction outcome becomes: Event, settlement, blocked counter |
//! | [`controller`] | leadership, pacing, the order of reads, writes and evictions |
//! | [`metrics`] | the bounded-label metrics |
//! | [`report`] | the status of the WorkloadSLOs and NodeClasses it honours |

pub mod controller;
pub mod evictor;
pub mod metrics;
pub mod observe;
pub mod outcome;
pub mod pass;
pub mod report;
pub mod state;

pub use controller::{Options, PassOutcome, PassReport, Rebalancer, controller};
pub use evictor::{Evictor, Outcome, client_without_retry};
