//! What the end-to-end tests share: a serving certificate, a started webhook, and its registration
//! with the fake API server.
#![allow(dead_code)]

use base64::Engine;
use placement_kube::probes::Readiness as _;
use placement_testkit::FakeApiServer;
use placement_webhook::server::{self, ServerConfig};
use serde_json::json;
use std::time::Duration;

/// A self-signed certificate for `localhost` in a temporary directory, and its PEM.
pub fn certificates() -> (tempfile::TempDir, String) {
    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = key.cert.pem();
    std::fs::write(certs.path().join("tls.crt"), &cert_pem).unwrap();
    std::fs::write(certs.path().join("tls.key"), key.signing_key.serialize_pem()).unwrap();
    (certs, cert_pem)
}

pub async fn start_webhook(
    fake: &FakeApiServer,
    certs: &std::path::Path,
    tune: impl FnOnce(&mut ServerConfig),
) -> server::RunningServer {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        probe_listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: certs.join("tls.crt"),
        tls_key: certs.join("tls.key"),
        ..ServerConfig::default()
    };
    tune(&mut config);
    let webhook = server::start(config, fake.client()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !webhook.readiness.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook did not become ready: {:?}",
            webhook.readiness.missing()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    webhook
}

/// The MutatingWebhookConfiguration a cluster would have, pointing at `port` on localhost.
pub fn register_webhook(fake: &FakeApiServer, port: u16, cert_pem: &str) {
    register_webhook_with_timeout(fake, port, cert_pem, 3);
}

/// [`register_webhook`] with the configuration's `timeoutSeconds` (1..=30).
pub fn register_webhook_with_timeout(fake: &FakeApiServer, port: u16, cert_pem: &str, timeout_seconds: u32) {
    let ca = base64::engine::general_purpose::STANDARD.encode(cert_pem);
    fake.put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "placement"},
        "webhooks": [{"name": "pods.placement.dev", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Ignore", "timeoutSeconds": timeout_seconds, "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "clientConfig": {"url": format!("https://localhost:{port}/mutate"), "caBundle": ca}}]}))
        .unwrap();
}
