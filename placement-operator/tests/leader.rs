//! Leader election against the fake API server with the real kube client: one leader at a time, a
//! standby takes over when the leader dies or shuts down, and a leader that cannot renew steps down
//! before its Lease can expire.

use placement_operator::Leadership;
use placement_operator::runtime::leader::{self, Elector, LeaseConfig};
use placement_testkit::{FakeApiServer, Fault, Verb};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};

const NS: &str = "placement-system";

fn config(identity: &str, duration: u64, renew: u64) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(duration),
        renew: Duration::from_secs(renew),
        retry: Duration::from_millis(200),
        ..LeaseConfig::new("op", NS, identity)
    }
}

/// A fake API server with the operator's namespace.
async fn fake() -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    server.put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    server
}

fn start(server: &FakeApiServer, config: LeaseConfig) -> (Elector, Leadership) {
    let (tx, leadership) = Leadership::channel();
    (leader::spawn(server.client(), config, tx), leadership)
}

fn lease(server: &FakeApiServer) -> Option<Value> {
    server.get("coordination.k8s.io/v1", "Lease", NS, "op")
}

fn holder(server: &FakeApiServer) -> Option<String> {
    lease(server)?.pointer("/spec/holderIdentity")?.as_str().map(str::to_string)
}

/// When the Lease as stored expires: renewTime + leaseDurationSeconds.
fn lease_expiry(server: &FakeApiServer) -> Option<SystemTime> {
    let l = lease(server)?;
    let renew: jiff::Timestamp = l.pointer("/spec/renewTime")?.as_str()?.parse().ok()?;
    let secs = l.pointer("/spec/leaseDurationSeconds")?.as_u64()?;
    Some(SystemTime::from(renew) + Duration::from_secs(secs))
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_leads_and_the_standby_takes_over_when_the_leader_dies() {
    let server = fake().await;
    let (a, la) = start(&server, config("a", 2, 1));
    let (b, lb) = start(&server, config("b", 2, 1));
    assert!(wait_until(Duration::from_secs(8), || la.is_leader() || lb.is_leader()).await, "nobody leads");

    // For three seconds (several renewals), exactly one leads, and it is the Lease's holder.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(!(la.is_leader() && lb.is_leader()), "both lead at once");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (leader, standby, l_lead, l_standby, standby_id) =
        if la.is_leader() { (a, b, la, lb, "b") } else { (b, a, lb, la, "a") };
    assert!(l_lead.is_leader() && !l_standby.is_leader());
    assert_ne!(holder(&server).as_deref(), Some(standby_id));

    // The leader dies without releasing (a crash): its flag drops, and the standby leads once the
    // Lease expires (at most the 2 s duration, plus the standby's retry and the library's random wait).
    let died = Instant::now();
    drop(leader);
    assert!(wait_until(Duration::from_millis(500), || !l_lead.is_leader()).await, "a dead elector must not lead");
    assert!(wait_until(Duration::from_secs(5), || l_standby.is_leader()).await, "the standby never took over");
    let took = died.elapsed();
    // 2 s lease + 0.2 s retry + the library's random wait of at most 1 s, with slack for a loaded machine.
    assert!(took <= Duration::from_millis(4500), "takeover took {took:?}, lease duration is 2 s");
    assert_eq!(holder(&server).as_deref(), Some(standby_id));
    standby.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once_not_after_expiry() {
    let server = fake().await;
    // A long lease: waiting for expiry would take 20 s.
    let (a, la) = start(&server, config("a", 20, 10));
    assert!(wait_until(Duration::from_secs(5), || la.is_leader()).await, "a never led");
    let (b, lb) = start(&server, config("b", 20, 10));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!lb.is_leader(), "b leads while a holds a valid lease");

    let stopped = Instant::now();
    a.shutdown(Duration::from_secs(3)).await;
    assert!(!la.is_leader());
    assert!(wait_until(Duration::from_secs(4), || lb.is_leader()).await, "b did not take over a released lease");
    assert!(stopped.elapsed() < Duration::from_secs(5), "takeover waited for expiry: {:?}", stopped.elapsed());
    assert_eq!(holder(&server).as_deref(), Some("b"));
    b.shutdown(Duration::from_secs(3)).await;
    assert_eq!(holder(&server), None, "shutdown releases the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_fail_steps_down_before_its_lease_expires() {
    let server = fake().await;
    let (a, la) = start(&server, config("a", 3, 1));
    assert!(wait_until(Duration::from_secs(5), || la.is_leader()).await, "a never led");

    server.faults().inject(Fault::error(500).on(Verb::Patch).resource("leases"));
    server.faults().inject(Fault::error(500).on(Verb::Update).resource("leases"));
    let expiry = lease_expiry(&server).expect("the lease has a renewTime and duration");
    // The next renewal (due within 1 s) fails: the leader steps down, and does so before the Lease it
    // last wrote expires.
    assert!(wait_until(Duration::from_secs(4), || !la.is_leader()).await, "a kept leading without renewing");
    assert!(SystemTime::now() < expiry, "stepped down only after the lease expired");
    // While writes fail it never claims leadership again on the old renewal, and retries with waits of
    // at least the 2 s margin, not in a tight loop.
    let before = server.faults().hits();
    assert!(before >= 1, "no lease write was attempted");
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert!(!la.is_leader(), "led again while every lease write fails");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = server.faults().hits() - before;
    assert!(during <= 6, "{during} lease writes in 4 s while every write fails");

    // Writes work again: it leads again.
    server.faults().clear();
    assert!(wait_until(Duration::from_secs(10), || la.is_leader()).await, "a did not recover");
    a.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_steps_down_before_its_lease_expires() {
    let server = fake().await;
    let (a, la) = start(&server, config("a", 4, 2));
    assert!(wait_until(Duration::from_secs(5), || la.is_leader()).await, "a never led");

    // Renewals hang for longer than the lease lasts; reads still work.
    server.faults().inject(Fault::delay(Duration::from_secs(6)).on(Verb::Patch).resource("leases"));
    let expiry = lease_expiry(&server).expect("the lease has a renewTime and duration");
    assert!(wait_until(Duration::from_secs(5), || !la.is_leader()).await, "a kept leading on a hung renewal");
    let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left > Duration::ZERO, "stepped down only after the lease expired");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_timely_renewals_keep_the_leader() {
    let server = fake().await;
    // Margin 4 s: a renewal answered in 1.4 s is slow but in time (the leader steps down only with 2 s
    // left). It must not be cancelled by the leader's own check 1 s after the renewal is due and
    // restarted, forever.
    let (a, la) = start(&server, config("a", 6, 2));
    assert!(wait_until(Duration::from_secs(5), || la.is_leader()).await, "a never led");
    server.faults().inject(Fault::delay(Duration::from_millis(1400)).on(Verb::Patch).resource("leases"));
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert!(la.is_leader(), "stepped down although every renewal completed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.faults().hits() >= 2, "fewer renewals than expected: {}", server.faults().hits());
    a.shutdown(Duration::from_secs(3)).await;
}
