//! `placement-webhook certs` against the fake API server with the real kube client: it creates the
//! Secret and the caBundle, does nothing when both are current, repairs a lost caBundle, rotates before
//! expiry with the old CA kept for the overlap, and the certificate it issues passes a real TLS handshake
//! for the Service's name against the caBundle it wrote.

use base64::Engine as _;
use jiff::Timestamp;
use placement_testkit::FakeApiServer;
use placement_webhook::certs::{CertsConfig, ensure};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "placement-system";

fn config() -> CertsConfig {
    CertsConfig {
        namespace: NS.into(),
        secret: "placement-webhook-tls".into(),
        webhook_config: "placement-webhook".into(),
        service: "placement-webhook".into(),
        validity: Duration::from_secs(365 * 86_400),
        renew_before: Duration::from_secs(30 * 86_400),
        overlap: Duration::from_secs(3600),
    }
}

fn webhook_configuration() -> Value {
    let webhook = |name: &str| {
        json!({"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun", "failurePolicy": "Ignore",
            "clientConfig": {"service": {"name": "placement-webhook", "namespace": NS, "path": "/mutate"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]})
    };
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "placement-webhook"}, "webhooks": [webhook("pods.placement.dev"), webhook("other.placement.dev")]})
}

async fn fake() -> FakeApiServer {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})).unwrap();
    fake.put(webhook_configuration()).unwrap();
    fake
}

/// The caBundle of each webhook, decoded.
fn bundles(fake: &FakeApiServer) -> Vec<Vec<u8>> {
    let c =
        fake.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "placement-webhook").unwrap();
    c["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let b64 = w["clientConfig"]["caBundle"].as_str().unwrap_or_default();
            base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
        })
        .collect()
}

fn secret_value(fake: &FakeApiServer, key: &str) -> Vec<u8> {
    let s = fake.get("v1", "Secret", NS, "placement-webhook-tls").expect("the Secret exists");
    let b64 = s["data"][key].as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn count_certs(pem: &[u8]) -> usize {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).count()
}

/// A TLS handshake: a server with the Secret's certificate and key, a client trusting only `bundle`.
async fn handshake(cert_pem: &[u8], key_pem: &[u8], bundle: &[u8], name: &str) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let result = connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    serving.abort();
    result
}

#[tokio::test]
async fn creates_keeps_repairs_and_rotates() {
    let fake = fake().await;
    let client = fake.client();
    let c = config();
    // The handshakes check validity at the real time, so the story starts 336 days ago: the first
    // certificate (365 days) then expires in 29 days, inside the 30-day renewal window, today.
    let real_now = Timestamp::now();
    let now = Timestamp::from_second(real_now.as_second() - 336 * 86_400).unwrap();

    // First run: a Secret and a caBundle in every webhook.
    let first = ensure(&client, &c, now).await.unwrap();
    assert_eq!(first.issued.as_deref(), Some("Secret placement-system/placement-webhook-tls not found"));
    assert!(first.bundle_changed);
    let ca = secret_value(&fake, "ca.crt");
    for b in bundles(&fake) {
        assert_eq!(count_certs(&b), 1);
        assert_eq!(
            CertificateDer::pem_slice_iter(&b).next().unwrap().unwrap(),
            CertificateDer::pem_slice_iter(&ca).next().unwrap().unwrap()
        );
    }
    let (cert, key) = (secret_value(&fake, "tls.crt"), secret_value(&fake, "tls.key"));
    handshake(&cert, &key, &bundles(&fake)[0], "placement-webhook.placement-system.svc").await.unwrap();
    let wrong_name = handshake(&cert, &key, &bundles(&fake)[0], "evil.placement-system.svc").await;
    assert!(wrong_name.is_err(), "the certificate is only for the Service");

    // Second run: nothing to do.
    let again = ensure(&client, &c, now).await.unwrap();
    assert_eq!((again.issued.clone(), again.bundle_changed), (None, false));
    assert_eq!(secret_value(&fake, "tls.crt"), cert, "not reissued");

    // The configuration re-applied without caBundle (as `kubectl apply` of the base does): repaired.
    fake.put(webhook_configuration()).unwrap();
    assert!(bundles(&fake).iter().all(Vec::is_empty));
    let repaired = ensure(&client, &c, now).await.unwrap();
    assert_eq!((repaired.issued.clone(), repaired.bundle_changed), (None, true));
    assert!(bundles(&fake).iter().all(|b| count_certs(b) == 1));

    // Today, 29 days before expiry: renewed; both CAs trusted during the overlap, so the pods' old
    // certificate and the new one both pass.
    let renew_at = real_now;
    let renewed = ensure(&client, &c, renew_at).await.unwrap();
    assert!(renewed.issued.as_deref().unwrap().contains("expires in"), "{renewed:?}");
    let bundle = bundles(&fake)[0].clone();
    assert_eq!(count_certs(&bundle), 2, "new and old CA during the overlap");
    let (new_cert, new_key) = (secret_value(&fake, "tls.crt"), secret_value(&fake, "tls.key"));
    assert_ne!(new_cert, cert);
    handshake(&new_cert, &new_key, &bundle, "placement-webhook.placement-system.svc").await.unwrap();
    handshake(&cert, &key, &bundle, "placement-webhook.placement-system.svc").await.unwrap();

    // After the overlap: only the new CA; the old certificate is no longer trusted.
    let after = Timestamp::from_second(renew_at.as_second() + 2 * 3600).unwrap();
    let settled = ensure(&client, &c, after).await.unwrap();
    assert_eq!((settled.issued.clone(), settled.bundle_changed), (None, true));
    let bundle = bundles(&fake)[0].clone();
    assert_eq!(count_certs(&bundle), 1);
    handshake(&new_cert, &new_key, &bundle, "placement-webhook.placement-system.svc").await.unwrap();
    assert!(handshake(&cert, &key, &bundle, "placement-webhook.placement-system.svc").await.is_err());
}

#[tokio::test]
async fn a_missing_configuration_is_a_clear_error() {
    let fake = FakeApiServer::start().await.unwrap();
    let e = ensure(&fake.client(), &config(), Timestamp::now()).await.unwrap_err().to_string();
    assert!(e.starts_with("reading MutatingWebhookConfiguration placement-webhook: "), "{e}");
    assert!(fake.get("v1", "Secret", NS, "placement-webhook-tls").is_none(), "nothing written");
}
