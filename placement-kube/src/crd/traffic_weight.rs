//! `TrafficWeight` (namespaced, short name `tw`): keeps the weight of a Route53 weighted record or of a
//! Gateway API HTTPRoute backend proportional to a Prometheus metric's excess over a target
//! (`w = ceil(base × max(0, current/target − 1))`, `docs/semantics.md#5-target-tracking-traffic-weights`;
//! the Route53 rebalancer with its bugs fixed), raised by scheduled minimums, with a cooldown and deadband
//! on decreases.

use super::CrdError;
use super::common::{
    DURATION_PATTERN, MAX_COOLDOWN_SECONDS, MAX_INTERVAL_SECONDS, SecretKeyRef, at_most, check_dns_subdomain,
    duration_rule, parse_duration,
};
use super::conditions::{Condition, impl_status_conditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use placement_core::tracking::{Schedule, TrackingError, TrackingPolicy, TrackingState, WeightRange, metric_from_f64};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest Route53 weight.
pub const ROUTE53_MAX_WEIGHT: u32 = 255;
/// Largest Gateway API backend weight.
pub const HTTPROUTE_MAX_WEIGHT: u32 = 1_000_000;
/// Shortest interval between evaluations.
pub const MIN_INTERVAL_SECONDS: u64 = 10;
/// Longest Prometheus query timeout.
pub const MAX_QUERY_TIMEOUT_SECONDS: u64 = 300;
/// Largest `policy.targetValue`: far above any metric a weight tracks, small enough that every
/// computation with it stays finite and exact to the unit.
pub const MAX_TARGET_VALUE: f64 = 1e15;

fn d_interval() -> String {
    "1m".to_string()
}
fn d_cooldown() -> String {
    "5m".to_string()
}
fn d_timeout() -> String {
    "30s".to_string()
}
fn d_utc() -> String {
    "UTC".to_string()
}
fn d_username_key() -> String {
    "username".to_string()
}
fn d_password_key() -> String {
    "password".to_string()
}
fn d_session_token_key() -> String {
    "sessionToken".to_string()
}
fn d_access_key_id_key() -> String {
    "accessKeyId".to_string()
}
fn d_secret_access_key_key() -> String {
    "secretAccessKey".to_string()
}

/// The tracking law's parameters. The base weight the law scales is read from the target (the base
/// record or backend) at every evaluation, never typed here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPolicySpec {
    /// The metric value to hold (e.g. 1000 requests per minute); above 0.
    #[schemars(range(min = 0.0, max = 1e15))]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0").message("targetValue must be above 0"))]
    pub target_value: f64,
    /// Never set a weight below this.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub minimum: u32,
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "Mon",
            Weekday::Tue => "Tue",
            Weekday::Wed => "Wed",
            Weekday::Thu => "Thu",
            Weekday::Fri => "Fri",
            Weekday::Sat => "Sat",
            Weekday::Sun => "Sun",
        }
    }
}

/// A time window in which the weight is at least `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Start of the window, `HH:MM` (24 h) in `timeZone`.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// End of the window, `HH:MM`; at or before `start` means the next day (`start == end`: a whole day).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
    /// IANA time zone of `start` and `end` (e.g. `Asia/Tokyo`); daylight saving time is followed.
    #[serde(default = "d_utc")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Days the window starts on (every day when empty).
    #[serde(default)]
    #[schemars(length(max = 7))]
    pub weekdays: Vec<Weekday>,
    /// The minimum weight while the window is active.
    #[schemars(range(min = 0, max = 1000000))]
    pub value: u32,
}

/// How several series of a query result become one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
}

/// HTTP basic-auth credentials in a Secret of the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the username in the Secret.
    #[serde(default = "d_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,
    /// Key of the password in the Secret.
    #[serde(default = "d_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

/// A Prometheus (or compatible) server and the query to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.bearerTokenSecretRef) && has(self.basicAuthSecretRef))").message("set at most one of bearerTokenSecretRef or basicAuthSecretRef"))]
pub struct PrometheusSource {
    /// Base URL of the server, e.g. `http://prometheus.monitoring.svc:9090`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub address: String,
    /// PromQL instant query; it must return a scalar or a one-element vector unless `aggregation` is set.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
    /// How a multi-element vector becomes one value; unset: such a result is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    /// Query timeout.
    #[serde(default = "d_timeout")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_rule("timeout", 1, MAX_QUERY_TIMEOUT_SECONDS))]
    pub timeout: String,
    /// Secret key holding a bearer token sent with each query (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// Secret holding a username and password sent with each query as HTTP basic auth (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<BasicAuthSecretRef>,
    /// Secret key holding the PEM CA bundle that signs the server's certificate (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// Where the metric comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSource {
    /// A Prometheus instant query.
    pub prometheus: PrometheusSource,
}

/// Static AWS credentials in a Secret of the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentialsRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "d_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "d_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
    /// Key of a session token in the Secret (optional there: absent means none).
    #[serde(default = "d_session_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub session_token_key: String,
}

/// DNS record types Route53 weighted routing supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Srv,
    Caa,
    Naptr,
    Ptr,
    Spf,
    Ds,
}

/// A Route53 weighted record, and the base record of the same name and type whose weight the law scales.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.baseSetIdentifier != self.setIdentifier").message("baseSetIdentifier must name another record than setIdentifier"))]
pub struct Route53Target {
    /// Hosted zone id (`Z0123456789ABC`; a `/hostedzone/` prefix is accepted).
    #[schemars(length(min = 1, max = 64))]
    pub hosted_zone_id: String,
    /// Record name, e.g. `api.example.com`.
    #[schemars(length(min = 1, max = 1024))]
    pub record_name: String,
    /// Record type.
    pub record_type: RecordType,
    /// SetIdentifier of the weighted record whose weight is managed.
    #[schemars(length(min = 1, max = 128))]
    pub set_identifier: String,
    /// SetIdentifier of the base record (same name and type); its weight is read, never written.
    #[schemars(length(min = 1, max = 128))]
    pub base_set_identifier: String,
    /// AWS region of the API calls (Route53 is global; `us-east-1` usually).
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: String,
    /// Route53 API endpoint override (for tests or private endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
    /// Static credentials; unset: the default AWS credential chain (e.g. IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<AwsCredentialsRef>,
}

/// A backend weight of a Gateway API HTTPRoute in the same namespace, and the base backend whose weight
/// the law scales.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.baseBackendRefName != self.backendRefName").message("baseBackendRefName must name another backend than backendRefName"))]
pub struct HttpRouteTarget {
    /// Name of the HTTPRoute.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Name of the backendRef whose weight is managed.
    #[schemars(length(min = 1, max = 253))]
    pub backend_ref_name: String,
    /// Name of the base backendRef (in the same rule); its weight is read, never written.
    #[schemars(length(min = 1, max = 253))]
    pub base_backend_ref_name: String,
    /// Only this rule (0-based); unset: every rule that has the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 63))]
    pub rule_index: Option<u32>,
}

/// The weight being managed: exactly one of `route53` or `httpRoute`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.route53) != has(self.httpRoute)").message("set exactly one of route53 or httpRoute"))]
pub struct WeightTarget {
    /// A Route53 weighted record (weights 0..255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Target>,
    /// A Gateway API HTTPRoute backend (weights 0..1000000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteTarget>,
}

/// Keep a traffic weight proportional to a metric's excess over a target.
// Printer columns repeat `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "placement.dev",
    version = "v1alpha1",
    kind = "TrafficWeight",
    plural = "trafficweights",
    namespaced,
    status = "TrafficWeightStatus",
    shortname = "tw",
    category = "placement",
    doc = "Target-tracking weight of a Route53 weighted record or an HTTPRoute backend, from a Prometheus metric.",
    printcolumn(
        name = "Target",
        type_ = "number",
        json_path = ".spec.policy.targetValue",
        description = "Metric value to hold"
    ),
    printcolumn(
        name = "Metric",
        type_ = "string",
        json_path = ".status.metricValue",
        description = "Last metric value"
    ),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.currentWeight", description = "Weight now"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredWeight",
        description = "Weight the policy wants"
    ),
    printcolumn(
        name = "DryRun",
        type_ = "boolean",
        json_path = ".spec.dryRun",
        description = "Compute, never write",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The spec is valid and in effect"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.target.route53) || (self.policy.minimum <= 255 && self.schedules.all(s, s.value <= 255))").message("Route53 weights are at most 255").field_path(".policy.minimum"))]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeightSpec {
    /// How often the metric is read and the weight decided (at least `10s`).
    #[serde(default = "d_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_rule("interval", MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS))]
    pub interval: String,
    /// The tracking law's parameters.
    pub policy: TrackingPolicySpec,
    /// Time windows with a minimum weight (windows may cross midnight).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub schedules: Vec<ScheduleSpec>,
    /// After a change, how long before the weight may decrease (increases apply at once).
    #[serde(default = "d_cooldown")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = duration_rule("cooldown", 0, MAX_COOLDOWN_SECONDS))]
    pub cooldown: String,
    /// Decreases of at most this many weight units are ignored.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub deadband: u32,
    /// Never decrease the weight.
    #[serde(default)]
    pub disable_scale_in: bool,
    /// Compute and report the weight, never write it.
    #[serde(default)]
    pub dry_run: bool,
    /// Where the metric comes from.
    pub metric: MetricSource,
    /// The weight being managed.
    pub target: WeightTarget,
}

impl TrafficWeightSpec {
    /// Check every field and build the core tracking policy for a base weight `base` (read from the
    /// target); errors name the field (`spec.schedules[1].timeZone: ...`).
    pub fn to_core(&self, base: u32) -> Result<TrackingPolicy, CrdError> {
        self.interval()?;
        let cooldown = parse_duration("spec.cooldown", &self.cooldown, 0, MAX_COOLDOWN_SECONDS)?;
        at_most("spec.deadband", self.deadband, HTTPROUTE_MAX_WEIGHT)?;
        self.check_metric()?;
        let range = self.weight_range()?;
        let p = &self.policy;
        if !p.target_value.is_finite() || p.target_value <= 0.0 {
            return Err(CrdError::out_of_range(
                "spec.policy.targetValue",
                format!("{} must be above 0", p.target_value),
            ));
        }
        if p.target_value > MAX_TARGET_VALUE {
            return Err(CrdError::out_of_range(
                "spec.policy.targetValue",
                format!("{} is above {MAX_TARGET_VALUE:e}, the most it may be", p.target_value),
            ));
        }
        let target_value = metric_from_f64(p.target_value)
            .map_err(|e| CrdError::out_of_range("spec.policy.targetValue", e.to_string()))?;
        if p.minimum > range.max {
            return Err(CrdError::out_of_range(
                "spec.policy.minimum",
                format!("{} is above the target's largest weight {}", p.minimum, range.max),
            ));
        }
        let mut schedules = Vec::with_capacity(self.schedules.len());
        for (i, s) in self.schedules.iter().enumerate() {
            if s.value > range.max {
                return Err(CrdError::out_of_range(
                    format!("spec.schedules[{i}].value"),
                    format!("{} is above the target's largest weight {}", s.value, range.max),
                ));
            }
            let mut days: Vec<String> = Vec::new();
            for d in &s.weekdays {
                if days.iter().any(|x| x == d.as_str()) {
                    return Err(CrdError::conflict(
                        format!("spec.schedules[{i}].weekdays"),
                        format!("{} is listed twice", d.as_str()),
                    ));
                }
                days.push(d.as_str().to_string());
            }
            schedules.push(Schedule {
                time_zone: s.time_zone.clone(),
                start: s.start.clone(),
                end: s.end.clone(),
                days,
                value: s.value,
            });
        }
        let policy = TrackingPolicy {
            target_value,
            base_value: base,
            minimum: p.minimum,
            range,
            cooldown_seconds: cooldown.as_secs(),
            deadband: self.deadband,
            disable_scale_in: self.disable_scale_in,
            schedules,
        };
        policy.compile().map_err(|e| match e {
            TrackingError::Schedule { index, field, message } => {
                let field = if field == "days" { "weekdays" } else { field };
                CrdError::format(format!("spec.schedules[{index}].{field}"), message)
            }
            TrackingError::TargetNotPositive(v) => {
                CrdError::out_of_range("spec.policy.targetValue", format!("{v} must be above 0"))
            }
            other => CrdError::out_of_range("spec.policy", other.to_string()),
        })?;
        Ok(policy)
    }

    /// Time between evaluations (`spec.interval`).
    pub fn interval(&self) -> Result<std::time::Duration, CrdError> {
        parse_duration("spec.interval", &self.interval, MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS)
    }

    /// The query timeout (`spec.metric.prometheus.timeout`, 1 s to 5 min).
    pub fn query_timeout(&self) -> Result<std::time::Duration, CrdError> {
        let path = "spec.metric.prometheus.timeout";
        parse_duration(path, &self.metric.prometheus.timeout, 1, MAX_QUERY_TIMEOUT_SECONDS)
    }

    /// The weights the target accepts.
    pub fn weight_range(&self) -> Result<WeightRange, CrdError> {
        match (&self.target.route53, &self.target.http_route) {
            (Some(_), None) => Ok(WeightRange { min: 0, max: ROUTE53_MAX_WEIGHT }),
            (None, Some(_)) => Ok(WeightRange { min: 0, max: HTTPROUTE_MAX_WEIGHT }),
            (Some(_), Some(_)) => Err(CrdError::conflict("spec.target", "set exactly one of route53 or httpRoute")),
            (None, None) => Err(CrdError::Missing { path: "spec.target.route53".into() }),
        }
    }

    fn check_metric(&self) -> Result<(), CrdError> {
        let p = &self.metric.prometheus;
        let base = "spec.metric.prometheus";
        let scheme_ok = p.address.starts_with("http://") || p.address.starts_with("https://");
        if !scheme_ok || p.address.chars().any(char::is_whitespace) {
            return Err(CrdError::format(format!("{base}.address"), format!("{:?} is not an http(s) URL", p.address)));
        }
        if p.query.trim().is_empty() {
            return Err(CrdError::Missing { path: format!("{base}.query") });
        }
        self.query_timeout()?;
        if let Some(s) = &p.bearer_token_secret_ref {
            s.check(&format!("{base}.bearerTokenSecretRef"))?;
        }
        if let Some(s) = &p.basic_auth_secret_ref {
            check_dns_subdomain(&format!("{base}.basicAuthSecretRef.name"), &s.name)?;
            if p.bearer_token_secret_ref.is_some() {
                return Err(CrdError::conflict(
                    format!("{base}.basicAuthSecretRef"),
                    "set at most one of bearerTokenSecretRef or basicAuthSecretRef",
                ));
            }
        }
        if let Some(s) = &p.ca_secret_ref {
            s.check(&format!("{base}.caSecretRef"))?;
        }
        if let Some(r) = &self.target.route53 {
            if let Some(c) = &r.credentials_secret_ref {
                check_dns_subdomain("spec.target.route53.credentialsSecretRef.name", &c.name)?;
            }
            if r.set_identifier.is_empty() {
                return Err(CrdError::Missing { path: "spec.target.route53.setIdentifier".into() });
            }
            if r.base_set_identifier.is_empty() {
                return Err(CrdError::Missing { path: "spec.target.route53.baseSetIdentifier".into() });
            }
            if r.base_set_identifier == r.set_identifier {
                return Err(CrdError::conflict(
                    "spec.target.route53.baseSetIdentifier",
                    format!("{:?} is the managed record's setIdentifier; name the base record", r.set_identifier),
                ));
            }
        }
        if let Some(h) = &self.target.http_route {
            check_dns_subdomain("spec.target.httpRoute.name", &h.name)?;
            if h.backend_ref_name.is_empty() {
                return Err(CrdError::Missing { path: "spec.target.httpRoute.backendRefName".into() });
            }
            if h.base_backend_ref_name.is_empty() {
                return Err(CrdError::Missing { path: "spec.target.httpRoute.baseBackendRefName".into() });
            }
            if h.base_backend_ref_name == h.backend_ref_name {
                return Err(CrdError::conflict(
                    "spec.target.httpRoute.baseBackendRefName",
                    format!("{:?} is the managed backend; name the base backend", h.backend_ref_name),
                ));
            }
        }
        Ok(())
    }
}

/// The last evaluation and what persists between evaluations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeightStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and the last evaluation worked (otherwise the message says why).
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The last metric value, as Prometheus returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_value: Option<String>,
    /// The target's weight when last read (or written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_weight: Option<u32>,
    /// The base record's or backend's weight when last read (the law scales it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_weight: Option<u32>,
    /// The weight the law alone gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub law_weight: Option<u32>,
    /// The weight the policy wants (after minimum, schedules and range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_weight: Option<u32>,
    /// Index of the schedule that raised the weight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_schedule: Option<u32>,
    /// Why the last decision was taken, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// When the metric was last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::crd::lenient::optional_time")]
    pub last_evaluated: Option<Time>,
    /// When the weight was last changed (the cooldown starts here).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::crd::lenient::optional_time")]
    pub last_change: Option<Time>,
}

impl_status_conditions!(TrafficWeightStatus);

impl TrafficWeightStatus {
    /// The state the tracking step needs.
    pub fn tracking_state(&self) -> TrackingState {
        TrackingState { last_change: self.last_change.as_ref().map(|t| t.0) }
    }
}
