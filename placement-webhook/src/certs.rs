//! `placement-webhook certs`: makes and rotates the webhook's serving certificate without cert-manager,
//! and keeps the MutatingWebhookConfiguration's `caBundle` trusting it. The Helm chart runs it as a Job at
//! install and upgrade and as a daily CronJob (`webhook.certificates.mode: self-signed`).
//!
//! What it decides, and why:
//! - **When to issue.** A new CA and serving certificate are made when the Secret is missing, unreadable,
//!   lacks a key (read with [`placement_kube::secrets`], so the reason names the Secret and the key), names
//!   other DNS names than the Service's, or its certificate expires within `renew_before`. Otherwise
//!   nothing is issued: the command is safe to run as often as you like.
//! - **Order of writes.** The new CA is added to every webhook's `caBundle` *before* the Secret is replaced,
//!   so the API server trusts both the certificate the pods still serve and the one they will load (the
//!   kubelet updates mounted Secrets within about a minute, and the webhook reloads the files).
//! - **When to drop the old CA.** The bundle keeps the CAs it had, as long as they are still valid, for
//!   `overlap` (one hour) after the serving certificate's `notBefore`; after that it is exactly the current
//!   CA. A bundle that lost the CA (a re-applied configuration without `caBundle`) is repaired.
//! - **Preconditions.** The configuration is patched with a `test` of its resourceVersion and the Secret is
//!   replaced with its resourceVersion: a concurrent writer makes the command fail, and the next run (or
//!   the Job's retry) starts over from what is there.
//! - The CA's private key is never stored: the next rotation makes a new CA.
#![forbid(unsafe_code)]

use base64::Engine as _;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use placement_kube::{field_manager, patch, secrets};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::time::Duration;

/// The Secret annotation recording which DNS names the certificate was issued for.
pub const DNS_NAMES_ANNOTATION: &str = "placement.dev/dns-names";

/// What to manage.
#[derive(Clone, Debug)]
pub struct CertsConfig {
    pub namespace: String,
    /// The `kubernetes.io/tls` Secret the webhook mounts.
    pub secret: String,
    /// The MutatingWebhookConfiguration whose webhooks' `caBundle` must trust the certificate.
    pub webhook_config: String,
    /// The Service the API server calls; the certificate is for `<service>.<namespace>.svc` (and
    /// `.svc.cluster.local`).
    pub service: String,
    /// Lifetime of a serving certificate (the CA lives one day longer).
    pub validity: Duration,
    /// Issue a new certificate when the current one expires within this.
    pub renew_before: Duration,
    /// How long after a rotation the previous CA stays in the bundle.
    pub overlap: Duration,
}

impl CertsConfig {
    /// The DNS names of the serving certificate.
    pub fn dns_names(&self) -> Vec<String> {
        vec![
            format!("{}.{}.svc", self.service, self.namespace),
            format!("{}.{}.svc.cluster.local", self.service, self.namespace),
        ]
    }
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("making the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// What the command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `Some(reason)` when a new certificate was issued.
    pub issued: Option<String>,
    /// Whether the caBundle was changed.
    pub bundle_changed: bool,
    /// The serving certificate's expiry (Unix seconds).
    pub not_after: i64,
}

/// A serving certificate and the CA that signed it, in PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What the Secret holds, as far as this command cares.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Current {
    ca_pem: String,
    not_before: i64,
    not_after: i64,
}

/// One certificate's validity and DNS names.
struct Parsed {
    not_before: i64,
    not_after: i64,
    dns_names: Vec<String>,
}

fn parse(der: &[u8]) -> Option<Parsed> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = cert.validity();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                dns_names.push(n.to_string());
            }
        }
    }
    Some(Parsed { not_before: validity.not_before.timestamp(), not_after: validity.not_after.timestamp(), dns_names })
}

/// The certificates of a PEM bundle, as DER.
fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Whether the Secret's certificate must be replaced, and why; `Ok` with what it holds otherwise.
fn inspect(secret: Option<&Secret>, config: &CertsConfig, now: Timestamp) -> Result<Current, String> {
    let secret = secrets::found(secret, &config.namespace, &config.secret).map_err(|e| e.to_string())?;
    let read = |key: &str| secrets::bytes(secret, key).map_err(|e| e.to_string());
    let (tls_crt, _tls_key, ca_crt) = (read("tls.crt")?, read("tls.key")?, read("ca.crt")?);
    let chain = certificates(tls_crt);
    let Some(leaf) = chain.first().and_then(|c| parse(c)) else {
        return Err("tls.crt holds no readable certificate".into());
    };
    let cas = certificates(ca_crt);
    let Some(ca) = cas.first() else { return Err("ca.crt holds no readable certificate".into()) };
    let mut want = config.dns_names();
    let mut have = leaf.dns_names.clone();
    want.sort();
    have.sort();
    if want != have {
        return Err(format!("the certificate is for {have:?}, not {want:?}"));
    }
    let left = leaf.not_after - now.as_second();
    if left <= config.renew_before.as_secs() as i64 {
        return Err(format!(
            "the certificate expires in {} h (renewal is due {} h before)",
            left / 3600,
            config.renew_before.as_secs() / 3600
        ));
    }
    Ok(Current { ca_pem: pem_of(ca), not_before: leaf.not_before, not_after: leaf.not_after })
}

/// A new CA and a serving certificate for `config`'s DNS names, valid from a minute before `now`.
pub fn issue(config: &CertsConfig, now: Timestamp) -> Result<Issued, CertsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| CertsError::Invalid(format!("time {t}: {e}")))
    };
    let start = now.as_second() - 60;
    let validity = config.validity.as_secs() as i64;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, format!("{}-ca", config.service));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = at(start)?;
    ca.not_after = at(start + validity + 86_400)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(config.dns_names())?;
    leaf.distinguished_name.push(DnType::CommonName, config.dns_names()[0].clone());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = at(start)?;
    leaf.not_after = at(start + validity)?;
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Issued { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The bundle every webhook should carry: the current CA first, then, during the overlap after a
/// rotation, the other still-valid CAs the bundle already had (deduplicated).
fn desired_bundle(
    current_ca: &str,
    old_bundle: &[u8],
    leaf_not_before: i64,
    config: &CertsConfig,
    now: Timestamp,
) -> String {
    let mut out: String = certificates(current_ca.as_bytes()).iter().map(|c| pem_of(c)).collect();
    if now.as_second() < leaf_not_before + config.overlap.as_secs() as i64 {
        let current: Vec<_> = certificates(current_ca.as_bytes());
        for der in certificates(old_bundle) {
            let valid = parse(&der).is_some_and(|p| p.not_after > now.as_second());
            if valid && !current.contains(&der) && !out.contains(&pem_of(&der)) {
                out.push_str(&pem_of(&der));
            }
        }
    }
    out
}

/// Makes sure the Secret holds a valid certificate and every webhook's caBundle trusts it.
pub async fn ensure(client: &kube::Client, config: &CertsConfig, now: Timestamp) -> Result<Outcome, CertsError> {
    let ns = &config.namespace;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let kube_err = |action: String| move |source| CertsError::Kube { action, source };

    let secret =
        secrets.get_opt(&config.secret).await.map_err(kube_err(format!("reading Secret {ns}/{}", config.secret)))?;
    let webhook_config = configs
        .get(&config.webhook_config)
        .await
        .map_err(kube_err(format!("reading MutatingWebhookConfiguration {}", config.webhook_config)))?;
    if webhook_config.webhooks.as_ref().is_none_or(Vec::is_empty) {
        return Err(CertsError::Invalid(format!(
            "MutatingWebhookConfiguration {} has no webhooks",
            config.webhook_config
        )));
    }

    let (current, issued, reason) = match inspect(secret.as_ref(), config, now) {
        Ok(current) => (current, None, None),
        Err(reason) => {
            let issued = issue(config, now)?;
            let leaf = certificates(issued.cert_pem.as_bytes());
            let parsed = leaf
                .first()
                .and_then(|c| parse(c))
                .ok_or_else(|| CertsError::Invalid("issued certificate unreadable".into()))?;
            let current =
                Current { ca_pem: issued.ca_pem.clone(), not_before: parsed.not_before, not_after: parsed.not_after };
            (current, Some(issued), Some(reason))
        }
    };

    // 1. The caBundle of every webhook: the new CA (and the old, during the overlap) before the Secret.
    let mut ops = vec![patch::unchanged_since(webhook_config.metadata.resource_version.as_deref().unwrap_or_default())];
    for (i, w) in webhook_config.webhooks.iter().flatten().enumerate() {
        let old = w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()).unwrap_or_default();
        let want = desired_bundle(&current.ca_pem, &old, current.not_before, config, now);
        if old != want.as_bytes() {
            let value = base64::engine::general_purpose::STANDARD.encode(want.as_bytes());
            ops.push(patch::add(
                &[String::from("webhooks"), i.to_string(), "clientConfig".into(), "caBundle".into()],
                value.into(),
            ));
        }
    }
    let bundle_changed = ops.len() > 1;
    if bundle_changed {
        let params = PatchParams { field_manager: Some(field_manager::WEBHOOK.into()), ..PatchParams::default() };
        configs
            .patch(&config.webhook_config, &params, &Patch::Json::<()>(json_patch::Patch(ops)))
            .await
            .map_err(kube_err(format!("patching the caBundle of {}", config.webhook_config)))?;
    }

    // 2. The Secret, replaced with its resourceVersion (or created).
    if let Some(issued) = &issued {
        let mut data = BTreeMap::new();
        data.insert("tls.crt".to_string(), ByteString(issued.cert_pem.clone().into_bytes()));
        data.insert("tls.key".to_string(), ByteString(issued.key_pem.clone().into_bytes()));
        data.insert("ca.crt".to_string(), ByteString(issued.ca_pem.clone().into_bytes()));
        let mut new = secret.clone().unwrap_or_default();
        new.metadata.name = Some(config.secret.clone());
        new.metadata.namespace = Some(ns.clone());
        new.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DNS_NAMES_ANNOTATION.into(), config.dns_names().join(","));
        new.type_ = Some("kubernetes.io/tls".into());
        new.data = Some(data);
        new.string_data = None;
        let action = format!("writing Secret {ns}/{}", config.secret);
        let params = PostParams { field_manager: Some(field_manager::WEBHOOK.into()), ..PostParams::default() };
        if secret.is_some() {
            secrets.replace(&config.secret, &params, &new).await.map_err(kube_err(action))?;
        } else {
            secrets.create(&params, &new).await.map_err(kube_err(action))?;
        }
    }
    Ok(Outcome { issued: reason, bundle_changed, not_after: current.not_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CertsConfig {
        CertsConfig {
            namespace: "placement-system".into(),
            secret: "placement-webhook-tls".into(),
            webhook_config: "placement-webhook".into(),
            service: "placement-webhook".into(),
            validity: Duration::from_secs(365 * 86_400),
            renew_before: Duration::from_secs(30 * 86_400),
            overlap: Duration::from_secs(3600),
        }
    }

    fn secret_of(i: &Issued) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("tls.crt".to_string(), ByteString(i.cert_pem.clone().into_bytes()));
        data.insert("tls.key".to_string(), ByteString(i.key_pem.clone().into_bytes()));
        data.insert("ca.crt".to_string(), ByteString(i.ca_pem.clone().into_bytes()));
        Secret { data: Some(data), ..Secret::default() }
    }

    #[test]
    fn issued_certificates_are_for_the_service_and_renewed_before_expiry() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let c = config();
        let issued = issue(&c, now).unwrap();
        let leaf = parse(&certificates(issued.cert_pem.as_bytes())[0]).unwrap();
        assert_eq!(leaf.dns_names, c.dns_names());
        assert_eq!(leaf.not_after - leaf.not_before, 365 * 86_400);
        let secret = secret_of(&issued);
        assert!(inspect(Some(&secret), &c, now).is_ok());
        let later = Timestamp::from_second(leaf.not_after - 29 * 86_400).unwrap();
        assert!(inspect(Some(&secret), &c, later).unwrap_err().contains("expires in"), "renewal due");
        assert_eq!(inspect(None, &c, now).unwrap_err(), "Secret placement-system/placement-webhook-tls not found");
        let mut no_key = secret.clone();
        no_key.data.as_mut().unwrap().remove("tls.key");
        assert!(inspect(Some(&no_key), &c, now).unwrap_err().contains(r#"has no key "tls.key""#));
        let mut other = c.clone();
        other.service = "other".into();
        assert!(inspect(Some(&secret), &other, now).unwrap_err().contains("not [\"other.placement-system.svc\""));
    }

    #[test]
    fn the_old_ca_stays_in_the_bundle_only_during_the_overlap() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let c = config();
        let old = issue(&c, now).unwrap();
        let new = issue(&c, now).unwrap();
        let just_rotated = desired_bundle(&new.ca_pem, old.ca_pem.as_bytes(), now.as_second(), &c, now);
        let ders = certificates(just_rotated.as_bytes());
        assert_eq!(ders.len(), 2);
        assert_eq!(ders[0], certificates(new.ca_pem.as_bytes())[0], "the current CA first");
        let later = Timestamp::from_second(now.as_second() + 2 * 3600).unwrap();
        let settled = desired_bundle(&new.ca_pem, just_rotated.as_bytes(), now.as_second(), &c, later);
        assert_eq!(certificates(settled.as_bytes()), certificates(new.ca_pem.as_bytes()));
        // An expired old CA is dropped at once.
        let far = Timestamp::from_second(now.as_second() + 400 * 86_400).unwrap();
        let fresh = issue(&c, far).unwrap();
        let b = desired_bundle(&fresh.ca_pem, old.ca_pem.as_bytes(), far.as_second(), &c, far);
        assert_eq!(certificates(b.as_bytes()), certificates(fresh.ca_pem.as_bytes()));
    }
}
