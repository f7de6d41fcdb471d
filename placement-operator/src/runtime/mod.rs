//! Running the operator: leader election on a Lease, the probe and metrics listener, Kubernetes Events,
//! the startup check that the CRDs are installed, and graceful shutdown.

pub mod events;
