//! From a `TrafficWeight` spec to the two things an evaluation talks to: the Prometheus query
//! ([`PrometheusClient`]) and the weight's [`Actuator`] (Route53 or HTTPRoute).
//!
//! Credentials come only from Secrets in the TrafficWeight's own namespace, read by name with `get`
//! (the operator never lists or watches Secrets). A Secret that is missing, not readable, or lacks a key
//! is a [`SetupError`] naming the spec field, the Secret and the key; it becomes a condition and an Event,
//! never a weight change. Route53 without `credentialsSecretRef` uses the AWS SDK's default chain (IRSA).
//!
//! Everything is built afresh at each evaluation (at most every 10 s): a rotated Secret is used at the
//! next one, and there is no cache to invalidate.
#![forbid(unsafe_code)]

use super::actuator::Actuator;
use super::http_route::{BackendRef, HttpRouteActuator};
use super::prometheus::{self, Auth, AuthKeys, PrometheusClient, PrometheusConfig};
use super::route53::{self, ClientSettings, CredentialSource, RecordRef, RetryPolicy, Route53Actuator, SecretKeys};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use placement_kube::crd::TrafficWeightSpec;
use placement_kube::secrets::SecretError;
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
}

impl SetupError {
    /// A bounded label for the errors-by-class metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SetupError::Secret { .. } => "secret",
            SetupError::Metric(_) => "metric_config",
            SetupError::Target(_) => "target_config",
        }
    }
}

/// Settings that are not in the spec (tests shorten them).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Route53 throttling retries.
    pub route53_retry: RetryPolicy,
    /// Time allowed for one Route53 API attempt.
    pub route53_attempt_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { route53_retry: RetryPolicy::default(), route53_attempt_timeout: Duration::from_secs(20) }
    }
}

/// What one evaluation talks to.
pub struct Connections {
    pub metric: PrometheusClient,
    pub actuator: Box<dyn Actuator>,
}

/// Reads a Secret of `namespace` for the spec field `field`.
async fn secret(client: &kube::Client, namespace: &str, name: &str, field: &str) -> Result<Secret, SetupError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |message: String| SetupError::Secret { field: field.to_string(), message };
    match api.get(name).await {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(err(SecretError::not_found(namespace, name).to_string())),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(err(format!(
            "not allowed to read Secret {namespace}/{name}: bind the ClusterRole placement-operator-secret-reader \
             to the operator's ServiceAccount with a RoleBinding in namespace {namespace} ({})",
            s.message
        ))),
        Err(e) => Err(err(format!("reading Secret {namespace}/{name}: {e}"))),
    }
}

/// The Prometheus client the spec describes, with its credentials and CA read from Secrets.
pub async fn metric_source(
    client: &kube::Client,
    namespace: &str,
    spec: &TrafficWeightSpec,
) -> Result<PrometheusClient, SetupError> {
    let p = &spec.metric.prometheus;
    let mut auth = Auth::None;
    if let Some(r) = &p.bearer_token_secret_ref {
        let field = "spec.metric.prometheus.bearerTokenSecretRef";
        let s = secret(client, namespace, &r.name, field).await?;
        auth = prometheus::auth_from_secret(&s, &AuthKeys::Bearer { token: r.key.clone() })
            .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?;
    }
    if let Some(r) = &p.basic_auth_secret_ref {
        let field = "spec.metric.prometheus.basicAuthSecretRef";
        let s = secret(client, namespace, &r.name, field).await?;
        let keys = AuthKeys::Basic { username: r.username_key.clone(), password: r.password_key.clone() };
        auth = prometheus::auth_from_secret(&s, &keys)
            .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?;
    }
    let mut ca = None;
    if let Some(r) = &p.ca_secret_ref {
        let field = "spec.metric.prometheus.caSecretRef";
        let s = secret(client, namespace, &r.name, field).await?;
        ca = Some(
            prometheus::ca_from_secret(&s, &r.key)
                .map_err(|e| SetupError::Secret { field: field.into(), message: e.to_string() })?,
        );
    }
    Ok(PrometheusClient::new(PrometheusConfig::from_spec(spec, auth, ca)?)?)
}

/// The actuator of `spec.target`.
pub async fn actuator(
    client: &kube::Client,
    namespace: &str,
    spec: &TrafficWeightSpec,
    options: &ConnectOptions,
) -> Result<Box<dyn Actuator>, SetupError> {
    if let Some(h) = &spec.target.http_route {
        let target = BackendRef {
            namespace: namespace.to_string(),
            route: h.name.clone(),
            backend: h.backend_ref_name.clone(),
            base_backend: h.base_backend_ref_name.clone(),
            rule_index: h.rule_index.map(|i| i as usize),
        };
        return Ok(Box::new(HttpRouteActuator::new(client.clone(), target)));
    }
    let Some(r) = &spec.target.route53 else {
        let message = "set exactly one of route53 or httpRoute".to_string();
        return Err(SetupError::Target(super::actuator::ActuatorError::Invalid {
            target: "spec.target".into(),
            message,
        }));
    };
    let credentials = match &r.credentials_secret_ref {
        None => CredentialSource::DefaultChain,
        Some(c) => {
            let field = "spec.target.route53.credentialsSecretRef";
            let s = secret(client, namespace, &c.name, field).await?;
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
    Ok(Box::new(Route53Actuator::new(sdk, &record)?.with_retry_policy(options.route53_retry)))
}

/// Both: the metric source and the actuator.
pub async fn connect(
    client: &kube::Client,
    namespace: &str,
    spec: &TrafficWeightSpec,
    options: &ConnectOptions,
) -> Result<Connections, SetupError> {
    let metric = metric_source(client, namespace, spec).await?;
    let actuator = actuator(client, namespace, spec, options).await?;
    Ok(Connections { metric, actuator })
}
