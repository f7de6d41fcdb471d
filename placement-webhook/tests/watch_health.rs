//! A watch that keeps failing makes the webhook unready once it has failed for longer than the limit
//! (its index no longer follows the cluster: failing open beats placing pods on it), and ready again when
//! the watch delivers events; the watch metrics count it. The fake API server fails the pod watch.

mod common;

use common::{certificates, start_webhook};
use placement_testkit::{FakeApiServer, Fault, Verb};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over plain HTTP/1.0 on the probe port: the status code and the body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn a_watch_failing_past_the_limit_makes_the_webhook_unready_until_it_recovers() {
    let fake = FakeApiServer::start().await.unwrap();
    for crd in placement_kube::crd::all_crds() {
        fake.put(serde_json::to_value(crd).unwrap()).unwrap();
    }
    let (certs, _) = certificates();
    let webhook = start_webhook(&fake, certs.path(), |c| c.watch_failing_limit = Duration::from_secs(1)).await;
    let probe = webhook.probe_address;
    assert_eq!(get(probe, "/readyz").await.0, 200);

    // The pod watch breaks and cannot list or watch again.
    fake.faults().inject(Fault::error(500).on(Verb::Watch).resource("pods"));
    fake.faults().inject(Fault::error(500).on(Verb::List).resource("pods"));
    fake.drop_watches();
    assert!(
        wait_for(Duration::from_secs(30), async || get(probe, "/readyz").await.0 == 503).await,
        "still ready with a failing watch: {:?}",
        get(probe, "/readyz").await
    );
    let (_, why) = get(probe, "/readyz").await;
    assert!(why.contains("a watch has been failing"), "{why}");
    assert_eq!(get(probe, "/healthz").await.0, 200, "alive all the same: a restart would not help");
    let (_, metrics) = get(probe, "/metrics").await;
    assert!(
        metric(&metrics, r#"placement_webhook_watch_errors_total{kind="Pod"}"#).is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(metric(&metrics, r#"placement_webhook_watch_failing_seconds{kind="Pod"}"#).is_some_and(|s| s > 1.0));
    assert_eq!(metric(&metrics, r#"placement_webhook_watch_failing_seconds{kind="Node"}"#), Some(0.0));
    assert!(metric(&metrics, r#"placement_webhook_watch_relists_total{kind="Pod"}"#).is_some_and(|n| n >= 1.0));

    // The API server heals and a pod changes: the watch delivers again, the webhook is ready again.
    fake.faults().clear();
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).unwrap();
    fake.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "app"}]}}))
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(45), async || get(probe, "/readyz").await.0 == 200).await,
        "not ready again: {:?}",
        get(probe, "/readyz").await
    );
    webhook.shutdown().await;
}
