//! What every controller is given: the client, the live index of the cluster, where to publish
//! Kubernetes Events, and whether this instance is the leader.
//!
//! Controllers read freely but write (status, pod templates, deletion costs) and evict only while
//! [`Leadership::is_leader`] holds; a standby keeps its caches warm and takes over within the lease
//! duration (see [`crate::runtime`]).

use crate::runtime::events::Events;
use placement_kube::live::SharedIndex;
use tokio::sync::watch;

/// Shared by every controller of one operator instance.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    /// The same cluster without the client's own retries of 429/503/504: for evictions (a PDB's 429
    /// means "later", not "hammer") and metrics.k8s.io (a 503 should fail a pass at once).
    pub eviction_client: kube::Client,
    /// Nodes, pods, ReplicaSets, Deployments, StatefulSets and PDBs, kept by watches.
    pub index: SharedIndex,
    pub events: Events,
    pub leadership: Leadership,
}

/// Whether this instance may write. Cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// A leadership flag and the sender that sets it (the lease loop holds the sender).
    pub fn channel() -> (watch::Sender<bool>, Leadership) {
        let (tx, rx) = watch::channel(false);
        (tx, Leadership(rx))
    }

    /// Always the leader: a single instance without a lease (tests, `plan`).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Leadership(rx)
    }

    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until this instance leads (returns at once if it does).
    pub async fn led(&mut self) {
        let _ = self.0.wait_for(|leads| *leads).await;
    }

    /// A receiver to await changes on.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }

    /// One item each time this instance becomes the leader (for `Controller::reconcile_all_on`).
    pub fn gained(&self) -> impl futures::Stream<Item = ()> + Send + use<> {
        futures::stream::unfold(self.0.clone(), |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                if *rx.borrow_and_update() {
                    return Some(((), rx));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leadership_follows_the_sender_and_always_leads() {
        let (tx, mut l) = Leadership::channel();
        assert!(!l.is_leader());
        tx.send(true).unwrap();
        l.led().await;
        assert!(l.is_leader());
        tx.send(false).unwrap();
        assert!(!l.is_leader());
        assert!(Leadership::always().is_leader());
    }
}
