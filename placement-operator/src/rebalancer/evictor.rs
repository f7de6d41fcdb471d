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
//! * **The pod's uid is a precondition** (`deleteOptions.preconditions.uid` in the Eviction body): a
//!   StatefulSet pod deleted and recreated under the same name between the plan and the eviction is a
//!   new pod the plan never looked at, and the API server refuses with 409 Conflict. The body is written
//!   here rather than by kube's `evict`, which sends the options under a field name (`delete_options`)
//!   the API server ignores.
//! * **404 means the pod is gone** (deleted or already evicted), and **409 that it was replaced**: in
//!   both, the planned pod no longer exists, nothing happened, nothing to count.
//! * **Anything else is unknown** (5xx, timeout, connection lost): the eviction may or may not have
//!   happened, and the caller keeps counting it against the budgets.
//! * **Bounded time**: each call has its own timeout, so a hung API server cannot stall a pass.
//! * **Dry-run never calls the API**: the evictor is simply not used.

use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Preconditions};
use kube::api::PostParams;
use placement_core::model::PodKey;
use std::time::Duration;

/// The policy/v1 Eviction of `pod`, with `uid` as its precondition.
fn eviction(pod: &PodKey, uid: Option<&str>) -> Eviction {
    Eviction {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        delete_options: uid.map(|uid| DeleteOptions {
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteOptions::default()
        }),
    }
}

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

    /// Evicts `pod`, only if its uid is still `uid` (when given).
    pub async fn evict(&self, pod: &PodKey, uid: Option<&str>) -> Outcome {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(self.client.clone(), &pod.namespace);
        let body = eviction(pod, uid);
        let params = PostParams::default();
        let call = api.create_subresource::<_, serde_json::Value>("eviction", &pod.name, &params, &body);
        match tokio::time::timeout(self.timeout, call).await {
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
            Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => Outcome::Gone,
            Ok(Err(e)) => Outcome::Unknown(e.to_string()),
        }
    }
}
