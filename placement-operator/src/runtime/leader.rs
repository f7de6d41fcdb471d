//! Leader election on a `coordination.k8s.io/v1` Lease, driving the operator's [`Leadership`] flag.
//!
//! Locking and renewing the Lease is done by `kube-lease-manager`. What this module decides is **when
//! this instance may act as the leader** (the
//! [`Leadership`](crate::Leadership) flag), which is stricter than "the library last said we hold it":
//!
//! * The flag is true only while the library says we hold the lock **and** the Lease, as last read from
//!   the API server, names us and stays valid (`renewTime + leaseDurationSeconds`) for more than half the
//!   renewal margin. A leader whose renewals fail (an error from the API server) steps down at once; one
//!   whose renewals hang steps down before its Lease can expire, so a standby never acts while the old
//!   leader still believes it leads (given clocks within half the margin of each other).
//! * After an error the flag stays false for at least the renewal margin, so an instance that cannot
//!   write does not flap back to "leader" on an old renewal.
//! * A standby re-reads the Lease every `retry` period and, when it finds it released or expired, starts
//!   the library afresh (which would otherwise sleep until the expiry it last saw). So a Lease released
//!   at shutdown is taken over within about `retry`, and an abandoned one within the lease duration plus
//!   `retry` (plus up to a second of the library's random anti-collision wait).
//! * The library's renewal is never cancelled by these checks: a slow renewal that completes in time
//!   keeps the leader.
//! * When the election task ends for any reason (shutdown, panic, abort) the flag is set false.
//!
//! Timing: the holder renews `renew` after its last renewal, so the renewal margin (the library's
//! "grace") is `duration - renew`. The Lease API counts whole seconds, so durations are whole seconds.

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use placement_kube::field_manager;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How this instance takes part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    /// Namespace of the Lease object (the operator's own namespace).
    pub namespace: String,
    /// This instance's identity, written to `spec.holderIdentity`; unique among the instances.
    pub identity: String,
    /// `spec.leaseDurationSeconds`: how long the Lease stays valid after a renewal. Whole seconds, >= 2.
    pub duration: Duration,
    /// How long after a renewal the holder renews again. Whole seconds, >= 1, less than `duration`.
    pub renew: Duration,
    /// How often a standby re-reads the Lease.
    pub retry: Duration,
}

impl LeaseConfig {
    /// Defaults for the operator: 15 s lease renewed every 10 s, standby re-reads every 2 s (the same
    /// numbers as Kubernetes' own controllers).
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }

    /// Checks the timing and names; the message says which value is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.namespace.is_empty() || self.identity.is_empty() {
            return Err("the lease name, namespace and identity must not be empty".into());
        }
        if self.duration.subsec_nanos() != 0 || self.renew.subsec_nanos() != 0 {
            return Err("the lease duration and renew period are whole seconds".into());
        }
        if self.duration < Duration::from_secs(2) {
            return Err(format!("the lease duration must be at least 2 s, not {:?}", self.duration));
        }
        if self.renew.is_zero() || self.renew >= self.duration {
            return Err(format!(
                "the renew period ({} s) must be at least 1 s and less than the lease duration ({} s)",
                self.renew.as_secs(),
                self.duration.as_secs()
            ));
        }
        if self.retry.is_zero() {
            return Err("the retry period must be positive".into());
        }
        Ok(())
    }

    /// The renewal margin: how long before expiry the holder renews.
    fn grace(&self) -> Duration {
        self.duration - self.renew
    }
}

/// The identity of this instance: the pod name (`POD_NAME`, from the downward API) or, outside a pod,
/// the host name with a random suffix so that two processes on one host differ.
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.trim().is_empty()) {
        return pod.trim().to_string();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "placement-operator".to_string());
    format!("{host}-{}", random_suffix())
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varied per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{:08x}", h.finish() as u32)
}

/// The running election. [`Elector::shutdown`] steps down and releases the Lease; dropping it without
/// shutdown stops the task as a crash would (the Lease is left to expire).
pub struct Elector {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Elector {
    /// Steps down at once, then releases the Lease (if held) so that a standby takes over without
    /// waiting for expiry; gives up on the release after `timeout`.
    pub async fn shutdown(mut self, timeout: Duration) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!("releasing the lease took too long; it will expire instead");
                abort.abort();
            }
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the election; `leading` is the sender of [`Leadership::channel`](crate::Leadership::channel).
pub fn spawn(client: kube::Client, config: LeaseConfig, leading: watch::Sender<bool>) -> Elector {
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(client, config, leading, stop_rx));
    Elector { stop: stop_tx, task: Some(task) }
}

/// Sets the flag false whenever the election task ends, however it ends.
struct StepDownOnExit(watch::Sender<bool>);

impl StepDownOnExit {
    fn set(&self, leads: bool, identity: &str, why: &str) {
        let changed = self.0.send_if_modified(|v| {
            let changed = *v != leads;
            *v = leads;
            changed
        });
        if changed {
            if leads {
                tracing::info!(identity, "became the leader");
            } else {
                tracing::warn!(identity, reason = why, "stepped down: no longer the leader");
            }
        }
    }
}

impl Drop for StepDownOnExit {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// How one round with a lease manager ended.
enum Outcome {
    /// Shutdown was asked for.
    Stop,
    /// The Lease should be looked at afresh (released or expired while we waited, or held by another
    /// instance right after the library said it was ours).
    Recheck,
    /// An API error or a lost Lease: step down and wait out the margin.
    Failed(String),
}

async fn run(client: kube::Client, config: LeaseConfig, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
    let flag = StepDownOnExit(leading);
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let id = config.identity.as_str();
    let mut failures: u32 = 0;
    tracing::info!(identity = id, lease = %config.name, namespace = %config.namespace, "joining the leader election");
    loop {
        if *stop.borrow() {
            break;
        }
        // A field manager unique per identity: the API server refuses (409) an apply that takes
        // `holderIdentity` from **another** manager, and that refusal is what keeps two instances from
        // taking a free Lease at the same moment (a shared name would let the second apply overwrite the
        // first).
        let manager = field_manager::per_instance(field_manager::OPERATOR, id);
        let params =
            LeaseParams::new(id, config.duration.as_secs(), config.grace().as_secs()).with_field_manager(manager);
        let built = tokio::select! {
            _ = stop.changed() => break,
            built = LeaseManager::new(client.clone(), &config.name, &config.namespace, params, LeaseCreateMode::AutoCreate) => built,
        };
        let outcome = match built {
            Ok(manager) => {
                let outcome = drive(&manager, &api, &config, &flag, &mut stop).await;
                let why = match &outcome {
                    Outcome::Stop => "shutting down",
                    Outcome::Recheck => "the lease is held by another instance",
                    Outcome::Failed(why) => why.as_str(),
                };
                flag.set(false, id, why);
                // Release only a Lease that a fresh read shows is still ours: the library's own release
                // trusts its cached state and could clear a successor's lock. Best effort: a manager that
                // cannot write leaves the Lease to expire.
                if !matches!(outcome, Outcome::Recheck)
                    && read(&api, &config).await.is_ok_and(|v| v.holder.as_deref() == Some(id))
                {
                    let budget = if matches!(outcome, Outcome::Stop) { config.grace() } else { config.retry };
                    match tokio::time::timeout(budget, manager.release()).await {
                        Ok(Ok(())) => tracing::info!(identity = id, "released the lease"),
                        Ok(Err(e)) => tracing::warn!(identity = id, error = %e, "could not release the lease"),
                        Err(_) => tracing::warn!(identity = id, "releasing the lease timed out"),
                    }
                }
                outcome
            }
            Err(e) => Outcome::Failed(format!("could not read or create the lease: {e}")),
        };
        match outcome {
            Outcome::Stop => break,
            Outcome::Recheck => failures = 0,
            Outcome::Failed(why) => {
                flag.set(false, id, &why);
                failures = failures.saturating_add(1);
                tracing::warn!(identity = id, error = %why, failures, "leader election error");
                // At least the renewal margin, so that a Lease we still hold on paper expires (or is
                // renewed by a recovered API server) before we trust it again; longer on repeated errors.
                let wait = (config.grace() + config.retry * failures.min(8)).min(config.duration * 2);
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    flag.set(false, id, "shutting down");
    tracing::info!(identity = id, "left the leader election");
}

/// Runs one lease manager until shutdown, a standby re-check, or a failure, announcing leadership only
/// while the Lease read from the API server confirms it (see the module doc).
///
/// The library's `changed()` future is kept across the loop's wake-ups and never cancelled by them: a
/// slow renewal must be allowed to finish, not be restarted at every check.
async fn drive(
    manager: &LeaseManager,
    api: &Api<Lease>,
    config: &LeaseConfig,
    flag: &StepDownOnExit,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let id = config.identity.as_str();
    let grace = config.grace();
    let quarter = (grace / 4).max(Duration::from_millis(100));
    let margin = grace / 2;
    // What the library last said, and until when the Lease read from the server keeps us leader.
    let mut holds = false;
    let mut valid_until: Option<SystemTime> = None;
    let mut changed: BoxFuture<'_, kube_lease_manager::Result<bool>> = Box::pin(manager.changed());
    loop {
        let left = valid_until.and_then(|t| t.duration_since(SystemTime::now()).ok());
        let confirmed = holds && left.is_some_and(|left| left > margin);
        flag.set(confirmed, id, if holds { "the lease was not renewed in time" } else { "the lease is not held" });
        let wait = match left {
            // Look again just after the library's renewal is due.
            Some(left) if holds && left > grace => left - grace + quarter,
            _ if holds => quarter,
            _ => config.retry,
        };
        tokio::select! {
            _ = stop.changed() => return Outcome::Stop,
            result = &mut changed => {
                changed = Box::pin(manager.changed());
                match result {
                    Ok(now_holds) => {
                        holds = now_holds;
                        valid_until = None;
                        if holds {
                            match read(api, config).await {
                                Ok(view) if view.holder.as_deref() == Some(id) => valid_until = view.valid_until,
                                Ok(_) => return Outcome::Recheck,
                                Err(e) => tracing::debug!(identity = id, error = %e, "could not read the lease"),
                            }
                        }
                    }
                    Err(e) if holds => return Outcome::Failed(format!("renewing the lease failed: {e}")),
                    Err(e) => return Outcome::Failed(format!("acquiring the lease failed: {e}")),
                }
            }
            _ = tokio::time::sleep(wait) => match read(api, config).await {
                Ok(view) if holds => {
                    if view.holder.as_deref() != Some(id) {
                        return Outcome::Failed("the lease names another holder".into());
                    }
                    valid_until = view.valid_until;
                }
                // A standby: the library sleeps until the expiry it last saw; a Lease released (or
                // expired) since is taken over now by starting afresh.
                Ok(view) if view.is_free() => return Outcome::Recheck,
                Ok(_) => {}
                // Keep the last confirmed validity: a leader steps down when it runs short.
                Err(e) => tracing::debug!(identity = id, error = %e, "could not read the lease"),
            },
        }
    }
}

/// The Lease as read from the API server.
struct LeaseView {
    holder: Option<String>,
    /// `renewTime + leaseDurationSeconds`.
    valid_until: Option<SystemTime>,
}

impl LeaseView {
    /// Nobody holds it, or its holder let it expire.
    fn is_free(&self) -> bool {
        self.holder.is_none() || self.valid_until.is_none_or(|t| t <= SystemTime::now())
    }
}

/// Reads the Lease, bounded by a quarter of the renewal margin.
async fn read(api: &Api<Lease>, config: &LeaseConfig) -> Result<LeaseView, String> {
    let timeout = (config.grace() / 4).max(Duration::from_millis(100));
    let lease = match tokio::time::timeout(timeout, api.get(&config.name)).await {
        Ok(Ok(lease)) => lease,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {timeout:?}")),
    };
    let spec = lease.spec.unwrap_or_default();
    let valid_until = match (spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(seconds)) => {
            SystemTime::from(renewed.0).checked_add(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
        }
        _ => None,
    };
    Ok(LeaseView { holder: spec.holder_identity.filter(|h| !h.is_empty()), valid_until })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_validated_with_a_message_naming_the_value() {
        let ok = LeaseConfig::new("l", "ns", "me");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.grace(), Duration::from_secs(5));
        let bad = LeaseConfig { renew: Duration::from_secs(15), ..ok.clone() };
        assert!(bad.validate().unwrap_err().contains("renew period (15 s)"));
        let bad = LeaseConfig { duration: Duration::from_secs(1), renew: Duration::from_secs(1), ..ok.clone() };
        assert!(bad.validate().unwrap_err().contains("at least 2 s"));
        let bad = LeaseConfig { duration: Duration::from_millis(2500), ..ok.clone() };
        assert!(bad.validate().unwrap_err().contains("whole seconds"));
        let bad = LeaseConfig { identity: String::new(), ..ok };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn identities_differ_between_instances_on_one_host() {
        // POD_NAME is not set under `cargo test` unless the environment sets it; either way two calls
        // must agree on the prefix and, without POD_NAME, differ in the suffix.
        if std::env::var("POD_NAME").is_err() {
            let (a, b) = (default_identity(), default_identity());
            assert_ne!(a, b);
            assert_eq!(a.rsplit_once('-').map(|p| p.0), b.rsplit_once('-').map(|p| p.0));
        }
    }
}
