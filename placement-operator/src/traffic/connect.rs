//! From a `TrafficWeight` spec to the two things an evaluation talks to: the Prometheus query
//! ([`PrometheusClient`]) and the weight's [`Actuator`] (Route53 or HTTPRoute).
//!
//! Credentials come only from Secrets in the TrafficWeight's own namespace, read by name with `get`
//! (the operator never lists or watches Secrets). A Secret that is missing, not readable, or lacks a key
//! is a [`SetupError`] naming the spec field, the Secret and the key; it becomes a condition and an Event,
//! never a weight change.
//!
//! What a tenant's TrafficWeight may make the operator use is decided by the core
//! (`placement_core::tracking::access`) from the admin's [`AccessPolicy`], here, before anything is sent:
//! the Prometheus address and the Route53 endpoint must be allowlisted (and their resolved addresses are
//! checked again at connect time, [`super::egress`]); a Secret is used only when it carries the opt-in
//! label; Route53 without `credentialsSecretRef` uses the AWS SDK's default chain (IRSA) only in the
//! namespaces the admin lists. A refusal is [`SetupError::NotAllowed`]: a condition and an Event, and
//! no query, no Secret value, no AWS call.
//!
//! Everything is built afresh at each evaluation (at most every 10 s): a rotated Secret is used at the
//! next one, and there is no cache to invalidate.
#![forbid(unsafe_code)]

use super::actuator::{Actuator, WriteGate};
use super::egress::{self, Egress, GuardedDns, Resolve, SystemResolver};
use super::http_route::{BackendRef, HttpRouteActuator};
use super::prometheus::{self, Auth, AuthKeys, PrometheusClient, PrometheusConfig};
use super::route53::{self, ClientSettings, CredentialSource, RecordRef, RetryPolicy, Route53Actuator, SecretKeys};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use placement_core::tracking::access::{AccessPolicy, Permit, Refusal};
use placement_kube::crd::TrafficWeightSpec;
use placement_kube::secrets::SecretError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why the metric source or the actuator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A referenced Secret is missing, unreadable, or lacks a usable key.
    #[error("{field}: {message}")]
    Secret { field: String, message: String },
    /// The metric source's configuration is unusable (e.g. a CA bundle that is not PEM).
    #[error("{0}")]
    Metric(#[from] prometheus::PrometheusError),
    /// The target's configuration is unusable.
    #[error("{0}")]
    Target(#[from] super::actuator::ActuatorError),
    /// The admin's policy or the Secret's owner does not allow what the spec asks for.
    #[error("{0}")]
    NotAllowed(#[from] Refusal),
}

impl SetupError {
    /// A bounded label for the errors-by-class metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SetupError::Secret { .. } => "secret",
            SetupError::Metric(_) => "metric_config",
            SetupError::Target(_) => "target_config",
            SetupError::NotAllowed(_) => "not_allowed",
        }
    }
}

/// Settings that are not in the spec: the admin's (flags) and the ones tests shorten.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Route53 throttling retries.
    pub route53_retry: RetryPolicy,
    /// Time allowed for one Route53 API attempt.
    pub route53_attempt_timeout: Duration,
    /// The most ListResourceRecordSets pages one lookup reads.
    pub route53_max_pages: u32,
    /// The time one evaluation's Route53 listings may take in all.
    pub route53_list_deadline: Duration,
    /// What TrafficWeights may make the operator use (`--traffic-allowed-endpoints`, ...).
    pub access: Arc<AccessPolicy>,
    /// How host names are resolved before their addresses are checked (tests inject their own).
    pub resolver: Arc<dyn Resolve>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            route53_retry: RetryPolicy::default(),
            route53_attempt_timeout: Duration::from_secs(20),
            route53_max_pages: route53::MAX_LIST_PAGES,
            route53_list_deadline: route53::LIST_DEADLINE,
            access: Arc::new(AccessPolicy::default()),
            resolver: Arc::new(SystemResolver),
        }
    }
}

/// What one evaluation talks to.
pub struct Connections {
    pub metric: PrometheusClient,
    pub actuator: Box<dyn Actuator>,
}

/// Reads a Secret of `namespace` for the spec field `field`; one without the opt-in label is refused.
async fn secret(
    client: &kube::Client,
    access: &AccessPolicy,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<Secret, SetupError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |message: String| SetupError::Secret { field: field.to_string(), message };
    match api.get(name).await {
        Ok(s) => {
            access.secret(field, namespace, name, s.metadata.labels.as_ref())?;
            Ok(s)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Err(err(SecretError::not_found(namespace, name).to_string())),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(err(format!(
            "not allowed to read Secret {namespace}/{name}: bind the ClusterRole placement-operator-secret-reader \
             to the operator's ServiceAccount with a RoleBinding in namespace {namespace} ({})",
            s.message
        ))),
        Err(e) => Err(err(format!("reading Secret {namespace}/{name}: {e}"))),
    }
}

/// The Prometheus client the spec describes, with its credentials and CA read from Secrets. The address
/// is checked against the allowlist before any Secret is read.
pub async fn metric_source(
    client: &kube::Client,
    namespace: &str,
    spec: &TrafficWeightSpec,
    options: &ConnectOptions,
) -> Result<PrometheusClient, SetupError> {
    let p = &spec.metric.prometheus;
    let mut config = PrometheusConfig::from_spec(spec, Auth::None, None)?;
    let permit = egress::permit(&options.access, "spec.metric.prometheus.address", &config.address)?;
    config.egress = Egress { permit, resolver: Arc::clone(&options.resolver) };
    let access = &options.access;
    if let Some(r) = &p.bearer_token_secret_ref {
        let field = "spec.metric.prometheus.bearerTokenSecretRef";
        let s = secret(client, access, namespace, &r.name, field).await?;
        config.auth = prometheus::auth_from_secret(&s, &AuthKeys::Bearer { token: r.key.clone() })
            .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?;
    }
    if let Some(r) = &p.basic_auth_secret_ref {
        let field = "spec.metric.prometheus.basicAuthSecretRef";
        let s = secret(client, access, namespace, &r.name, field).await?;
        let keys = AuthKeys::Basic { username: r.username_key.clone(), password: r.password_key.clone() };
        config.auth = prometheus::auth_from_secret(&s, &keys)
            .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?;
    }
    if let Some(r) = &p.ca_secret_ref {
        let field = "spec.metric.prometheus.caSecretRef";
        let s = secret(client, access, namespace, &r.name, field).await?;
        config.ca_pem = Some(
            prometheus::ca_from_secret(&s, &r.key)
                .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?,
        );
    }
    Ok(PrometheusClient::new(config)?)
}

/// The resolver the Route53 client uses, with the permit of `endpoint` (allowlisted; an IP written in
/// it is checked here, because the SDK's connector does not resolve IPs), or a strict permit for AWS's
/// own endpoint.
fn route53_dns(endpoint: Option<&str>, options: &ConnectOptions) -> Result<GuardedDns, SetupError> {
    let field = "spec.target.route53.endpoint";
    let permit = match endpoint {
        None => Permit::strict("the Route53 API"),
        Some(e) => {
            let url = url::Url::parse(e.trim()).map_err(|err| {
                Refusal::new(format!("{field}: {:?} is not a URL: {err}", e.chars().take(80).collect::<String>()))
            })?;
            let permit = egress::permit(&options.access, field, &url)?;
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal {
                permit.address(ip)?;
            }
            permit
        }
    };
    Ok(GuardedDns(Egress { permit, resolver: Arc::clone(&options.resolver) }))
}

/// The actuator of `spec.target`; its writes ask `gate` first.
pub async fn actuator(
    client: &kube::Client,
    namespace: &str,
    spec: &TrafficWeightSpec,
    options: &ConnectOptions,
    gate: WriteGate,
) -> Result<Box<dyn Actuator>, SetupError> {
    if let Some(h) = &spec.target.http_route {
        let target = BackendRef {
            namespace: namespace.to_string(),
            route: h.name.clone(),
            backend: h.backend_ref_name.clone(),
            base_backend: h.base_backend_ref_name.clone(),
            rule_index: h.rule_index.map(|i| i as usize),
        };
        return Ok(Box::new(HttpRouteActuator::new(client.clone(), target).with_write_gate(gate)));
    }
    let Some(r) = &spec.target.route53 else {
        let message = "set exactly one of route53 or httpRoute".to_string();
        return Err(SetupError::Target(super::actuator::ActuatorError::Invalid {
            target: "spec.target".into(),
            message,
        }));
    };
    let dns = route53_dns(r.endpoint.as_deref(), options)?;
    let credentials = match &r.credentials_secret_ref {
        None => {
            options.access.default_chain("spec.target.route53.credentialsSecretRef", namespace)?;
            CredentialSource::DefaultChain
        }
        Some(c) => {
            let field = "spec.target.route53.credentialsSecretRef";
            let s = secret(client, &options.access, namespace, &c.name, field).await?;
            let keys = SecretKeys {
                access_key_id: c.access_key_id_key.clone(),
                secret_access_key: c.secret_access_key_key.clone(),
                session_token: c.session_token_key.clone(),
            };
            let creds = route53::credentials_from_secret(&s, &keys)
                .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?;
            CredentialSource::Static(creds)
        }
    };
    let mut settings = ClientSettings::new(credentials);
    settings.region = Some(r.region.clone());
    settings.endpoint_url = r.endpoint.clone();
    settings.attempt_timeout = options.route53_attempt_timeout;
    settings.dns = Some(dns);
    let sdk = route53::sdk_client(&settings).await;
    let record = RecordRef {
        hosted_zone_id: r.hosted_zone_id.clone(),
        name: r.record_name.clone(),
        record_type: serde_json::to_value(r.record_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        set_identifier: r.set_identifier.clone(),
        base_set_identifier: r.base_set_identifier.clone(),
    };
    let actuator = Route53Actuator::new(sdk, &record)?
        .with_retry_policy(options.route53_retry)
        .with_list_limits(options.route53_max_pages, options.route53_list_deadline)
        .with_write_gate(gate);
    Ok(Box::new(actuator))
}

/// Both: the metric source and the actuator (built, and checked, before either sends anything).
pub async fn connect(
    client: &kube::Client,
    namespace: &str,
    spec: &TrafficWeightSpec,
    options: &ConnectOptions,
    gate: WriteGate,
) -> Result<Connections, SetupError> {
    let metric = metric_source(client, namespace, spec, options).await?;
    let actuator = actuator(client, namespace, spec, options, gate).await?;
    Ok(Connections { metric, actuator })
}
