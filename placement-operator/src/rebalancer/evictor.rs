//! The one evictor: every rebalancer eviction goes through the `pods/eviction` subresource, so the API
//! server enforces PodDisruptionBudgets and graceful termination. It never deletes a pod.
//!
//! Decisions made here, and why:
//!
//! * **429 is an answer, not a failure.** A PodDisruptionBudget that allows no disruption makes the API
//!   server answer `429 TooManyRequests`. The evictor reports it as refused and does not retry: the
//!   next pass plans again from fresh state. kube's client retries 429/503/504 by itself (up to 15
//!   times), which would hammer the budget; the evictor therefore needs a client built without that
//!   retry ([`client_without_retry`]).
//! * **404 means the pod is gone** (deleted or already evicted): nothing happened, nothing to count.
//! * **Anything else is unknown** (5xx, timeout, connection lost): the eviction may or may not have
//!   happened, and the caller keeps counting it against the budgets.
//! * **Bounded time**: each call has its own timeout, so a hung API server cannot stall a pass.
//! * **Dry-run never calls the API**: the evictor is simply not used.

use placement_core::model::PodKey;
use std::time::Duration;

/// What the API server said to one eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Evicted,
    /// 429: a disruption budget refused it (the message says which).
    Refused(String),
    /// 404: the pod no longer exists.
    Gone,
    /// Any other error or a timeout; the eviction may have happened.
    Unknown(String),
}

impl Outcome {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Outcome::Evicted => "evicted",
            Outcome::Refused(_) => "refused",
            Outcome::Gone => "gone",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

/// A kube client that returns 429, 503 and 504 answers instead of retrying them.
pub fn client_without_retry(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    kube::Client::try_from(config)
}

/// Evicts pods through the eviction subresource.
#[derive(Clone)]
pub struct Evictor {
    client: kube::Client,
    timeout: Duration,
}

impl Evictor {
    /// `client` must not retry 429 by itself (see [`client_without_retry`]).
    pub fn new(client: kube::Client) -> Self {
        Evictor { client, timeout: Duration::from_secs(10) }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client without retries (also right for metrics.k8s.io, whose 503s should fail a pass at once
    /// rather than stall it through fifteen retries).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub async fn evict(&self, pod: &PodKey) -> Outcome {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(self.client.clone(), &pod.namespace);
        match tokio::time::timeout(self.timeout, api.evict(&pod.name, &Default::default())).await {
            Err(_) => Outcome::Unknown(format!("no answer within {:?}", self.timeout)),
            Ok(Ok(_)) => Outcome::Evicted,
            Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                let cause = s
                    .details
                    .as_ref()
                    .and_then(|d| d.causes.first())
                    .map(|c| format!(": {}", c.message))
                    .unwrap_or_default();
                Outcome::Refused(format!("the API server refused the eviction (429): {}{cause}", s.message))
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => Outcome::Gone,
            Ok(Err(e)) => Outcome::Unknown(e.to_string()),
        }
    }
}
