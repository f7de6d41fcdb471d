//! Reflectors for the small kinds read whole: our custom resources (ZoneBalancer, PodDistribution, ...)
//! and anything else a controller reads by name.
//!
//! A [`Reflected`] store is kube's reflector store fed by a watcher, with `managedFields` stripped before
//! storing (they are often larger than the rest of the object and nothing reads them), and a readiness
//! flag set once the first list is in.

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A reflector store of one kind, kept up to date by a background watcher.
pub struct Reflected<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    task: JoinHandle<()>,
}

impl<K> Reflected<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    /// Starts watching `api` into a new store.
    pub fn spawn(api: Api<K>) -> Self {
        let (store, writer) = reflector::store::<K>();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None)
            .reflect(writer)
            .applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    tracing::warn!(kind = %K::kind(&K::DynamicType::default()), error = %e, "watch failed, retrying with backoff");
                }
            }
        });
        Reflected { store, task }
    }

    /// The objects, as of the last event applied.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Whether the first list has been applied.
    pub fn is_ready(&self) -> bool {
        // A store is ready once its writer has applied the first full list.
        futures::FutureExt::now_or_never(self.store.wait_until_ready()).is_some_and(|r| r.is_ok())
    }

    /// Waits for the first list; false if `timeout` passes first.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.store.wait_until_ready()).await.is_ok_and(|r| r.is_ok())
    }
}

impl<K: Resource + 'static> Drop for Reflected<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}
