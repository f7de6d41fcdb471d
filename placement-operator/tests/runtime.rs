//! The operator runtime against the fake API server with the real kube client: the CRD check, the
//! probe and metrics listener over real HTTP, and `run_with` from start to a graceful shutdown.

use placement_kube::live::{self, LiveIndex, SharedIndex, WatchOptions};
use placement_kube::probes::Readiness as _;
use placement_operator::Leadership;
use placement_operator::runtime::leader::LeaseConfig;
use placement_operator::runtime::{Controller, RunConfig, RunError, crds, probes, run_with};
use placement_testkit::{FakeApiServer, Fault, Verb};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "placement-system";

async fn fake(with_crds: bool) -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    if with_crds {
        for crd in placement_kube::crd::all_crds() {
            server.put(serde_json::to_value(crd).unwrap()).unwrap();
        }
    }
    server
}

/// GET `path` over plain HTTP/1.1: (status, content type, body). `None` when the connection fails.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut raw)).await.ok()?.ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    // Bodies here are small; a chunked body is one chunk: strip its framing.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.split("\r\n").skip(1).step_by(2).next().unwrap_or_default().to_string()
    } else {
        body.to_string()
    };
    Some((status, content_type, body))
}

async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
}

#[tokio::test]
async fn the_crd_check_names_every_missing_crd_and_how_to_install_them() {
    let server = fake(false).await;
    let client = server.client();
    let all = placement_kube::crd::all_crds();
    let err = crds::check(&client).await.unwrap_err();
    let text = err.to_string();
    for crd in &all {
        assert!(text.contains(crd.metadata.name.as_deref().unwrap()), "{text}");
    }
    assert!(text.contains("kubectl apply -f deploy/crds/"), "{text}");
    assert_eq!(err.metric_label(), "missing_crds");

    // All but the last: only that one is reported.
    for crd in &all[..all.len() - 1] {
        server.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let missing = crds::missing(&client).await.unwrap();
    let last = all.last().unwrap().metadata.name.clone().unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].starts_with(&last), "{missing:?}");

    server.put(serde_json::to_value(all.last().unwrap()).unwrap()).unwrap();
    crds::check(&client).await.unwrap();

    // An unreachable API server is an API error, not "missing".
    drop(server);
    let err = tokio::time::timeout(Duration::from_secs(10), crds::check(&client)).await.unwrap().unwrap_err();
    assert_eq!(err.metric_label(), "kube", "{err}");
    assert!(err.to_string().contains("discovering placement.dev/"), "{err}");
}

#[tokio::test]
async fn probes_report_liveness_readiness_and_metrics_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let readiness = probes::Readiness::new();
    let (leading, leadership) = Leadership::channel();
    let mut registry = Registry::default();
    probes::register(&mut registry, leadership);
    let reconciles = Counter::<u64>::default();
    registry.register("placement_test_reconciles", "test counter", reconciles.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(probes::serve(listener, readiness.clone(), Arc::new(registry), async move {
        let _ = stopped.await;
    }));

    let (status, _, body) = get(addr, "/healthz").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("CRDs") && body.contains("live index not started"), "{body}");

    readiness.set_crds_found();
    let (status, _, body) = get(addr, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("CRDs"), "{body}");
    readiness.set_index(SharedIndex::from_index(LiveIndex::new()));
    let (status, _, body) = get(addr, "/readyz").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"), "leadership is not needed to be ready");

    let (status, content_type, body) = get(addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert_eq!(metric_line(&body, "placement_operator_leader"), Some("placement_operator_leader 0"), "{body}");
    assert!(body.contains("# TYPE placement_operator_leader gauge"), "{body}");
    leading.send(true).unwrap();
    reconciles.inc();
    let (_, _, body) = get(addr, "/metrics").await.unwrap();
    assert_eq!(metric_line(&body, "placement_operator_leader"), Some("placement_operator_leader 1"), "{body}");
    assert_eq!(metric_line(&body, "placement_test_reconciles_total"), Some("placement_test_reconciles_total 1"));
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    assert_eq!(get(addr, "/nope").await.unwrap().0, 404);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("the probe server drains").unwrap();
    assert!(get(addr, "/healthz").await.is_none(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn readiness_waits_for_the_live_index_first_lists() {
    let server = fake(false).await;
    server.faults().inject(Fault::error(500).on(Verb::List).resource("pods"));
    let (index, _watchers) = live::spawn(server.client(), WatchOptions::default());
    let readiness = probes::Readiness::new();
    readiness.set_crds_found();
    readiness.set_index(index);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(readiness.missing(), vec!["live index has not listed every kind yet"]);
    server.faults().clear();
    assert!(wait_for(Duration::from_secs(20), || std::future::ready(readiness.is_ready())).await);
}

fn run_config(identity: &str) -> RunConfig {
    RunConfig {
        kubeconfig: None,
        probe_listen: "127.0.0.1:0".parse().unwrap(),
        lease: LeaseConfig {
            duration: Duration::from_secs(4),
            renew: Duration::from_secs(2),
            retry: Duration::from_millis(200),
            ..LeaseConfig::new("placement-operator", NS, identity)
        },
        watch_namespace: None,
        shutdown_timeout: Duration::from_secs(3),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_gets_ready_leads_runs_controllers_and_releases_the_lease_on_shutdown() {
    let server = fake(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let led = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (led2, dropped2) = (led.clone(), dropped.clone());
    let controllers = move |ctx: placement_operator::Context, registry: &mut Registry| {
        let passes = Counter::<u64>::default();
        registry.register("placement_test_passes", "passes of the test controller", passes.clone());
        /// Sets a flag when its future is dropped (the runtime stopped the controller).
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        vec![Controller::new("test", async move {
            let _guard = OnDrop(dropped2);
            let mut leadership = ctx.leadership.clone();
            leadership.led().await;
            assert!(ctx.index.wait_ready(Duration::from_secs(10)).await);
            led2.store(true, Ordering::SeqCst);
            loop {
                passes.inc();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })]
    };
    let runtime = tokio::spawn(run_with(clients(&server), run_config("op-0"), listener, controllers, async move {
        let _ = stopped.await;
    }));

    assert!(
        wait_for(Duration::from_secs(10), || async { get(addr, "/readyz").await.is_some_and(|r| r.0 == 200) }).await,
        "/readyz never became ready"
    );
    assert!(wait_for(Duration::from_secs(10), || std::future::ready(led.load(Ordering::SeqCst))).await);
    let lease = server.get("coordination.k8s.io/v1", "Lease", NS, "placement-operator").expect("the lease exists");
    assert_eq!(lease.pointer("/spec/holderIdentity").and_then(|v| v.as_str()), Some("op-0"));
    let (_, _, metrics) = get(addr, "/metrics").await.unwrap();
    assert_eq!(metric_line(&metrics, "placement_operator_leader"), Some("placement_operator_leader 1"));
    assert!(metric_line(&metrics, "placement_test_passes_total").is_some(), "{metrics}");

    let asked = Instant::now();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), runtime).await.expect("shutdown is bounded").unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(asked.elapsed() < Duration::from_secs(5), "shutdown took {:?}", asked.elapsed());
    assert!(dropped.load(Ordering::SeqCst), "the controller was not stopped");
    let lease = server.get("coordination.k8s.io/v1", "Lease", NS, "placement-operator").unwrap();
    assert_eq!(lease.pointer("/spec/holderIdentity"), None, "the lease was not released: {lease}");
    assert!(get(addr, "/healthz").await.is_none(), "the probe listener is closed after shutdown");
}

#[tokio::test]
async fn run_refuses_to_start_without_the_crds() {
    let server = fake(false).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let called = Arc::new(AtomicBool::new(false));
    let called2 = called.clone();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        run_with(
            clients(&server),
            run_config("op-0"),
            listener,
            move |_, _| {
                called2.store(true, Ordering::SeqCst);
                vec![]
            },
            std::future::pending(),
        ),
    )
    .await
    .expect("a missing CRD ends run at once");
    let err = result.unwrap_err();
    assert!(matches!(err, RunError::Crds(_)), "{err:?}");
    assert!(err.to_string().contains("zonebalancers.placement.dev"), "{err}");
    assert!(!called.load(Ordering::SeqCst), "controllers were built without CRDs");
    assert!(server.get("coordination.k8s.io/v1", "Lease", NS, "placement-operator").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_stops_ends_the_operator_and_releases_the_lease() {
    let server = fake(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let controllers = |ctx: placement_operator::Context, _: &mut Registry| {
        vec![Controller::new("quitter", async move {
            let mut leadership = ctx.leadership.clone();
            leadership.led().await;
        })]
    };
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        run_with(clients(&server), run_config("op-1"), listener, controllers, std::future::pending()),
    )
    .await
    .expect("the operator stops when a controller ends");
    assert!(matches!(&result, Err(RunError::ControllerEnded(how)) if how == "quitter returned"), "{result:?}");
    let lease = server.get("coordination.k8s.io/v1", "Lease", NS, "placement-operator").unwrap();
    assert_eq!(lease.pointer("/spec/holderIdentity"), None, "{lease}");
}

/// A controller that panics ends the operator too, and the error names it and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_panics_is_named_with_its_panic() {
    let server = fake(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let controllers = |ctx: placement_operator::Context, _: &mut Registry| {
        vec![
            Controller::new("steady", std::future::pending()),
            Controller::new("crasher", async move {
                let mut leadership = ctx.leadership.clone();
                leadership.led().await;
                panic!("arithmetic went wrong");
            }),
        ]
    };
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        run_with(clients(&server), run_config("op-1"), listener, controllers, std::future::pending()),
    )
    .await
    .expect("the operator stops when a controller panics");
    let err = result.unwrap_err();
    assert_eq!(err.to_string(), "controller crasher panicked: arithmetic went wrong; restarting the operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_ready_without_leading_and_takes_over_when_the_leader_shuts_down() {
    let server = fake(true).await;
    let mut config_a = run_config("op-a");
    let mut config_b = run_config("op-b");
    // A 20 s lease: taking over by expiry would take far longer than this test allows.
    for c in [&mut config_a, &mut config_b] {
        c.lease.duration = Duration::from_secs(20);
        c.lease.renew = Duration::from_secs(10);
    }
    let start = |config: RunConfig| {
        let client = clients(&server);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(run_with(client, config, listener, |_, _| vec![], async move {
                let _ = stopped.await;
            }));
            (addr, stop, task)
        }
    };
    let leader_gauge = |addr| async move {
        let (_, _, body) = get(addr, "/metrics").await?;
        metric_line(&body, "placement_operator_leader").map(str::to_string)
    };
    let (addr_a, stop_a, task_a) = start(config_a).await;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            leader_gauge(addr_a).await.as_deref() == Some("placement_operator_leader 1")
        })
        .await,
        "a never led"
    );
    let (addr_b, stop_b, task_b) = start(config_b).await;
    assert!(
        wait_for(Duration::from_secs(10), || async { get(addr_b, "/readyz").await.is_some_and(|r| r.0 == 200) }).await,
        "the standby never became ready"
    );
    assert_eq!(leader_gauge(addr_b).await.as_deref(), Some("placement_operator_leader 0"));

    let stopped = Instant::now();
    stop_a.send(()).unwrap();
    task_a.await.unwrap().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || async {
            leader_gauge(addr_b).await.as_deref() == Some("placement_operator_leader 1")
        })
        .await,
        "the standby did not take over a released lease"
    );
    assert!(stopped.elapsed() < Duration::from_secs(8), "takeover took {:?}", stopped.elapsed());
    let lease = server.get("coordination.k8s.io/v1", "Lease", NS, "placement-operator").unwrap();
    assert_eq!(lease.pointer("/spec/holderIdentity").and_then(|v| v.as_str()), Some("op-b"));
    stop_b.send(()).unwrap();
    task_b.await.unwrap().unwrap();
}

fn clients(server: &FakeApiServer) -> placement_operator::runtime::Clients {
    placement_operator::runtime::Clients { client: server.client(), without_retry: server.client_without_retry() }
}
