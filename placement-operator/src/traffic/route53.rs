//! The Route53 actuator: a weighted record's weight read and written through the official AWS SDK.
//!
//! What it decides, and why:
//! - **Which record.** A weighted record is identified by hosted zone, name, type and SetIdentifier, and
//!   nothing less: two records differing only in SetIdentifier are different routes. Names are compared
//!   after normalization (ASCII case folded, trailing dot added, Route53's `\ooo` octal escapes decoded, so
//!   `*.Example.com` matches Route53's `\052.example.com.`). A missing record, or one without a Weight, is
//!   an error naming zone, name, type and identifier — never a guess.
//! - **The base weight is read from Route53**, from the record with the base SetIdentifier (same name and
//!   type), every time: a copy typed into the resource would go stale.
//! - **Writes are one `ChangeResourceRecordSets` call with one UPSERT** of the record exactly as it was
//!   listed, with only `Weight` replaced: TTL, values or alias target, health check id and any field this
//!   code does not know about are sent back unchanged. An unchanged weight sends nothing; a dry run looks
//!   the record up (so a missing record is still reported) and sends nothing. Route53 has no conditional
//!   write: an edit made between our read and our UPSERT to another field of the same record is
//!   overwritten — the window is one API round trip.
//! - **Retries are ours, not the SDK's** (its retry layer is disabled): `Throttling` and
//!   `PriorRequestNotComplete` (and `ThrottlingException`) are retried with bounded exponential backoff
//!   ([`RetryPolicy`]); everything else is returned at once, classified for metrics, and the controller
//!   tries again next interval. One policy, in one place, that tests can observe.
//! - **Listing starts at the record's name and type** and stops at the first record of another name or
//!   type (Route53 lists in order, so the group is contiguous), or when the server repeats a page token:
//!   the moto emulator ignores `StartRecordIdentifier` and never returns `NextRecordIdentifier`, so a
//!   group larger than a page would otherwise be listed forever. When that happens the error says so.
//! - **Listing is bounded per evaluation**: at most [`MAX_LIST_PAGES`] pages (or what
//!   [`Route53Actuator::with_list_limits`] sets) and a deadline that starts when the actuator is built,
//!   i.e. once per evaluation. A server that answers truncated pages for ever ends in an
//!   [`ActuatorError::Limit`], with memory bounded by one page and at most [`LISTED_IDENTIFIERS`] names
//!   kept for the message.
//! - **Writes only while leading**: the [`WriteGate`] is asked right before `ChangeResourceRecordSets`
//!   (after the listing, which can take a while), so an instance that lost its Lease meanwhile sends
//!   nothing ([`ActuatorError::NotLeader`]).
//! - **Text from the API is bounded**: error codes and messages (from an endpoint that may not be AWS)
//!   are cut to [`AWS_MESSAGE_CHARS`] characters.
//! - **Ring only.** The SDK is built without default features, so the HTTP client is named explicitly:
//!   `aws-smithy-http-client` with rustls on *ring*. Without it every call fails at run time ("No HTTP
//!   client was available"); with the SDK's defaults, aws-lc-rs comes in and two rustls providers in one
//!   binary panic at start-up.
//! - **Credentials** are either static (from a Kubernetes Secret, see [`credentials_from_secret`]) or the
//!   SDK's default chain (environment, profile, web identity for IRSA, container and instance metadata).
//!   Route53 is a global service: without a configured region, `us-east-1` is used for signing.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use placement_kube::secrets::{self, SecretError};

use super::actuator::{Actuator, ActuatorError, Weights, WriteGate, WriteOutcome};
use super::egress::GuardedDns;
use placement_core::tracking::access::cut;

/// Route53 weights are 0–255 (all zero splits traffic evenly).
pub const MAX_WEIGHT: u32 = 255;
/// The most records ListResourceRecordSets returns per page.
pub const MAX_PAGE_SIZE: i32 = 300;
/// The most ListResourceRecordSets pages one lookup reads (300 records each: 30,000 records of one
/// name and type, three times Route53's default record quota per zone).
pub const MAX_LIST_PAGES: u32 = 100;
/// The default time one evaluation's listings may take in all.
pub const LIST_DEADLINE: Duration = Duration::from_secs(60);
/// SetIdentifiers named in a not-found message (the others are counted).
pub const LISTED_IDENTIFIERS: usize = 10;
/// Error codes and messages from the API are cut to this many characters.
pub const AWS_MESSAGE_CHARS: usize = 512;
/// The region used for signing when none is configured (Route53 is global; `aws` partition).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Error codes retried with backoff.
pub const RETRIED_CODES: [&str; 3] = ["Throttling", "ThrottlingException", "PriorRequestNotComplete"];
/// Error codes meaning the credentials are missing, wrong, expired or not allowed.
const AUTH_CODES: [&str; 9] = [
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidSignatureException",
];
/// Error codes meaning the request (or our configuration) is invalid.
const INVALID_CODES: [&str; 5] =
    ["InvalidChangeBatch", "InvalidInput", "InvalidArgument", "InvalidDomainName", "ValidationError"];

/// The weighted records one TrafficWeight manages, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRef {
    /// Hosted zone id, with or without the `/hostedzone/` prefix.
    pub hosted_zone_id: String,
    /// Record name; case and trailing dot do not matter.
    pub name: String,
    /// Record type (`A`, `AAAA`, `CNAME`, ...), case-insensitive.
    pub record_type: String,
    /// SetIdentifier of the record whose weight is managed.
    pub set_identifier: String,
    /// SetIdentifier of the base record (same name and type) whose weight is read.
    pub base_set_identifier: String,
}

/// Static credentials. `Debug` never shows the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .finish()
    }
}

/// Where the SDK gets credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// Fixed keys (read from a Secret by the controller).
    Static(StaticCredentials),
    /// The SDK's default chain: environment, profile, web identity (IRSA), container and instance metadata.
    DefaultChain,
}

/// How to reach Route53.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Signing region; [`DEFAULT_REGION`] when `None`.
    pub region: Option<String>,
    /// Endpoint override, e.g. `http://127.0.0.1:5000` for the moto emulator.
    pub endpoint_url: Option<String>,
    pub credentials: CredentialSource,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of one API call (each retry gets its own).
    pub attempt_timeout: Duration,
    /// The resolver that checks every address of the endpoint's host; `None`: the SDK's own (tests that
    /// build a client directly). The controller always sets it.
    pub dns: Option<GuardedDns>,
}

impl ClientSettings {
    /// Settings with the default timeouts (connect 5 s, attempt 20 s).
    pub fn new(credentials: CredentialSource) -> Self {
        ClientSettings {
            region: None,
            endpoint_url: None,
            credentials,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(20),
            dns: None,
        }
    }
}

/// The HTTP client the SDK uses: hyper with rustls on *ring* (see the module docs for why it is explicit),
/// resolving names through `dns` when given.
pub fn http_client(dns: Option<&GuardedDns>) -> aws_sdk_route53::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring));
    match dns {
        Some(dns) => builder.build_with_resolver(dns.clone()),
        None => builder.build_https(),
    }
}

/// A Route53 SDK client built from `settings`, with the SDK's own retries disabled ([`RetryPolicy`] retries).
pub async fn sdk_client(settings: &ClientSettings) -> aws_sdk_route53::Client {
    let http = http_client(settings.dns.as_ref());
    let region = Region::new(settings.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_string()));
    let builder = match &settings.credentials {
        CredentialSource::Static(c) => aws_sdk_route53::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "placement-static",
            )),
        CredentialSource::DefaultChain => {
            // The credential chain's own client: the instance metadata service is link-local, which the
            // guarded resolver (for the Route53 endpoint) refuses.
            let shared = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http_client(None))
                .region(region.clone())
                .load()
                .await;
            aws_sdk_route53::config::Builder::from(&shared)
        }
    };
    let mut builder = builder.http_client(http).region(region).retry_config(RetryConfig::disabled()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_attempt_timeout(settings.attempt_timeout)
            .build(),
    );
    if let Some(url) = &settings.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_route53::Client::from_conf(builder.build())
}

/// The keys of a Secret holding static AWS credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Optional in the Secret: absent means no session token.
    pub session_token: String,
}

impl Default for SecretKeys {
    /// The environment variable names the AWS CLI uses: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`.
    fn default() -> Self {
        SecretKeys {
            access_key_id: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key: "AWS_SECRET_ACCESS_KEY".into(),
            session_token: "AWS_SESSION_TOKEN".into(),
        }
    }
}

impl From<SecretError> for ActuatorError {
    fn from(e: SecretError) -> Self {
        ActuatorError::Auth { target: format!("credentials Secret {}", e.secret()), message: e.to_string() }
    }
}

/// Static credentials from a Secret's `data` (or `stringData`, for objects not yet stored), read with
/// [`placement_kube::secrets`]. Values are trimmed of surrounding whitespace (a trailing newline from
/// `echo` is a common mistake and never part of a key). The session token key may be absent.
pub fn credentials_from_secret(secret: &Secret, keys: &SecretKeys) -> Result<StaticCredentials, SecretError> {
    let required = |key: &str| secrets::trimmed_text(secret, key).map(str::to_string);
    Ok(StaticCredentials {
        access_key_id: required(&keys.access_key_id)?,
        secret_access_key: required(&keys.secret_access_key)?,
        session_token: secrets::optional(required(&keys.session_token))?,
    })
}

/// Bounded exponential backoff for throttling: attempt `n` (from 1) waits `initial * 2^(n-1)`, capped at
/// `max_delay`, before attempt `n + 1`; at most `max_attempts` attempts in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 500 ms doubling to at most 8 s: at most 7.5 s of waiting per call, well inside a
    /// controller interval, and enough for Route53's token bucket (10 requests/s) to refill.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, initial_delay: Duration::from_millis(500), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What to do with an SDK error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Retry after a backoff (throttling or a change still pending); carries the code and message.
    Retry { code: String, message: String },
    /// Give up with this error.
    Fail(ActuatorError),
}

/// Classify an SDK error for `target` (a description used in messages). Public so the classification can
/// be tested on real SDK error values.
pub fn classify<E, R>(target: &str, err: &SdkError<E, R>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + 'static,
{
    let target = target.to_string();
    let full = cut(&DisplayErrorContext(err).to_string(), AWS_MESSAGE_CHARS);
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let code = cut(e.code().unwrap_or(""), 64);
            let message = cut(e.message().unwrap_or(""), AWS_MESSAGE_CHARS);
            classify_code(target, code, message, full)
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Classified::Fail(ActuatorError::Transport { target, message: full })
        }
        // Credentials that cannot be resolved surface as a dispatch failure; tell them apart.
        SdkError::DispatchFailure(_) if source_chain_has_credentials_error(err) => {
            Classified::Fail(ActuatorError::Auth { target, message: full })
        }
        SdkError::DispatchFailure(_) => Classified::Fail(ActuatorError::Transport { target, message: full }),
        SdkError::ConstructionFailure(_) => Classified::Fail(ActuatorError::Invalid { target, message: full }),
        _ => Classified::Fail(ActuatorError::Api { target, code: "unknown".into(), message: full }),
    }
}

fn classify_code(target: String, code: String, message: String, full: String) -> Classified {
    if RETRIED_CODES.contains(&code.as_str()) {
        Classified::Retry { code, message }
    } else if AUTH_CODES.contains(&code.as_str()) {
        Classified::Fail(ActuatorError::Auth { target, message: format!("{code}: {message}") })
    } else if INVALID_CODES.contains(&code.as_str()) {
        Classified::Fail(ActuatorError::Invalid { target, message: format!("{code}: {message}") })
    } else if code == "NoSuchHostedZone" {
        Classified::Fail(ActuatorError::NotFound { what: target, detail: format!(": {code}: {message}") })
    } else if code.is_empty() {
        Classified::Fail(ActuatorError::Api { target, code: "unknown".into(), message: full })
    } else {
        Classified::Fail(ActuatorError::Api { target, code, message })
    }
}

fn source_chain_has_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Run `call` until it succeeds, fails for good, or `policy.max_attempts` is used up on retried errors.
pub async fn with_retry<T, E, R, F, Fut>(policy: &RetryPolicy, target: &str, call: F) -> Result<T, ActuatorError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    with_retry_gated(policy, target, None, call).await
}

/// [`with_retry`], asking `gate` right before every attempt (for writes).
async fn with_retry_gated<T, E, R, F, Fut>(
    policy: &RetryPolicy,
    target: &str,
    gate: Option<&WriteGate>,
    mut call: F,
) -> Result<T, ActuatorError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        if gate.is_some_and(|g| !g.is_open()) {
            return Err(ActuatorError::NotLeader { target: target.to_string() });
        }
        match call().await {
            Ok(v) => return Ok(v),
            Err(err) => match classify(target, &err) {
                Classified::Fail(e) => return Err(e),
                Classified::Retry { code, message } => {
                    if attempt >= max_attempts {
                        return Err(ActuatorError::Throttled {
                            target: target.to_string(),
                            code,
                            attempts: attempt,
                            message,
                        });
                    }
                    let delay = policy.delay_after(attempt);
                    tracing::debug!(target_entry = target, %code, attempt, ?delay, "route53 call throttled, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            },
        }
    }
}

/// A record name as Route53 compares it: ASCII lower case, `\ooo` octal escapes decoded, trailing dot.
pub fn normalize_name(name: &str) -> String {
    let name = name.trim();
    let bytes = name.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' && i + 3 < bytes.len() && bytes[i + 1..=i + 3].iter().all(|d| (b'0'..=b'7').contains(d)) {
            let value = bytes[i + 1..=i + 3].iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(v) = u8::try_from(value) {
                out.push(v.to_ascii_lowercase());
                i += 4;
                continue;
            }
        }
        out.push(b.to_ascii_lowercase());
        i += 1;
    }
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// A hosted zone id without the `/hostedzone/` prefix the API sometimes returns.
pub fn normalize_zone_id(id: &str) -> String {
    let id = id.trim();
    id.strip_prefix("/hostedzone/").unwrap_or(id).to_string()
}

/// Where one ListResourceRecordSets page starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PageToken {
    name: Option<String>,
    record_type: Option<String>,
    identifier: Option<String>,
}

/// Pages of ListResourceRecordSets, in the order Route53 returns them.
pub struct RecordPager<'a> {
    client: &'a aws_sdk_route53::Client,
    zone_id: String,
    page_size: i32,
    retry: RetryPolicy,
    target: String,
    next: Option<PageToken>,
    used: HashSet<PageToken>,
    pages: u32,
    repeated_token: bool,
}

impl<'a> RecordPager<'a> {
    /// Pages of `zone_id` starting at `start` (a name and optionally a type), or at the zone's first record.
    /// `page_size` is clamped to 1..=300.
    pub fn new(
        client: &'a aws_sdk_route53::Client,
        zone_id: &str,
        start: Option<(&str, Option<&str>)>,
        page_size: i32,
        retry: RetryPolicy,
    ) -> Self {
        let zone_id = normalize_zone_id(zone_id);
        RecordPager {
            client,
            target: format!("route53 hosted zone {zone_id}"),
            zone_id,
            page_size: page_size.clamp(1, MAX_PAGE_SIZE),
            retry,
            next: Some(PageToken {
                name: start.map(|(n, _)| n.to_string()),
                record_type: start.and_then(|(_, t)| t.map(str::to_string)),
                identifier: None,
            }),
            used: HashSet::new(),
            pages: 0,
            repeated_token: false,
        }
    }

    /// The next page, or `None` when the listing is over (last page read, or the server repeated a page
    /// token — see [`RecordPager::stopped_on_repeated_token`]).
    pub async fn next_page(&mut self) -> Result<Option<Vec<ResourceRecordSet>>, ActuatorError> {
        let Some(token) = self.next.take() else { return Ok(None) };
        if !self.used.insert(token.clone()) {
            self.repeated_token = true;
            return Ok(None);
        }
        let out = with_retry(&self.retry, &self.target, || {
            self.client
                .list_resource_record_sets()
                .hosted_zone_id(&self.zone_id)
                .set_start_record_name(token.name.clone())
                .set_start_record_type(token.record_type.as_deref().map(RrType::from))
                .set_start_record_identifier(token.identifier.clone())
                .max_items(self.page_size)
                .send()
        })
        .await?;
        self.pages += 1;
        if out.is_truncated() {
            let next = PageToken {
                name: out.next_record_name().map(str::to_string),
                record_type: out.next_record_type().map(|t| t.as_str().to_string()),
                identifier: out.next_record_identifier().map(str::to_string),
            };
            if self.used.contains(&next) {
                self.repeated_token = true;
            } else {
                self.next = Some(next);
            }
        }
        Ok(Some(out.resource_record_sets().to_vec()))
    }

    /// Pages read so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Whether the listing stopped because the server returned a page token it had already returned
    /// (records after that point were not seen).
    pub fn stopped_on_repeated_token(&self) -> bool {
        self.repeated_token
    }

    /// Every remaining record.
    pub async fn collect_all(&mut self) -> Result<Vec<ResourceRecordSet>, ActuatorError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }
}

/// A validated, normalized [`RecordRef`].
#[derive(Clone, Debug)]
struct Target {
    zone_id: String,
    name: String,
    record_type: RrType,
    managed: String,
    base: String,
}

/// The records a lookup found.
struct Found {
    managed: Option<ResourceRecordSet>,
    base: Option<ResourceRecordSet>,
    /// SetIdentifiers seen with the record's name and type (for error messages), at most
    /// [`LISTED_IDENTIFIERS`]; `more` counts the others.
    identifiers: Vec<String>,
    more: usize,
    repeated_token: bool,
    pages: u32,
}

/// Reads and writes the weight of one Route53 weighted record; see the module docs.
pub struct Route53Actuator {
    client: aws_sdk_route53::Client,
    target: Target,
    retry: RetryPolicy,
    page_size: i32,
    max_pages: u32,
    /// When this actuator's listings must have ended (built once per evaluation).
    deadline: tokio::time::Instant,
    list_deadline: Duration,
    gate: WriteGate,
}

impl Route53Actuator {
    /// An actuator for `record` through `client` (see [`sdk_client`]). Fails on an empty zone id, name or
    /// SetIdentifier, an unknown record type, or equal managed and base SetIdentifiers.
    pub fn new(client: aws_sdk_route53::Client, record: &RecordRef) -> Result<Self, ActuatorError> {
        let zone_id = normalize_zone_id(&record.hosted_zone_id);
        let invalid = |message: String| ActuatorError::Invalid { target: format!("route53 {record:?}"), message };
        if zone_id.is_empty() || zone_id.contains('/') {
            return Err(invalid(format!("hosted zone id {:?} is not a zone id", record.hosted_zone_id)));
        }
        if record.name.trim().trim_end_matches('.').is_empty() {
            return Err(invalid("record name is empty".into()));
        }
        let type_upper = record.record_type.trim().to_ascii_uppercase();
        let Ok(record_type) = RrType::try_parse(&type_upper) else {
            return Err(invalid(format!("record type {:?} is not a Route53 record type", record.record_type)));
        };
        if record.set_identifier.is_empty() || record.base_set_identifier.is_empty() {
            return Err(invalid("a weighted record needs a SetIdentifier (managed and base)".into()));
        }
        if record.set_identifier == record.base_set_identifier {
            return Err(invalid(format!(
                "the managed and base records have the same SetIdentifier {:?}",
                record.set_identifier
            )));
        }
        Ok(Route53Actuator {
            client,
            target: Target {
                zone_id,
                name: normalize_name(&record.name),
                record_type,
                managed: record.set_identifier.clone(),
                base: record.base_set_identifier.clone(),
            },
            retry: RetryPolicy::default(),
            page_size: MAX_PAGE_SIZE,
            max_pages: MAX_LIST_PAGES,
            deadline: tokio::time::Instant::now() + LIST_DEADLINE,
            list_deadline: LIST_DEADLINE,
            gate: WriteGate::open(),
        })
    }

    /// Replace the retry policy (tests use short delays).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// At most `max_pages` pages per lookup, and every listing of this actuator ended `deadline` after
    /// now (the controller builds one actuator per evaluation).
    pub fn with_list_limits(mut self, max_pages: u32, deadline: Duration) -> Self {
        self.max_pages = max_pages.max(1);
        self.list_deadline = deadline;
        self.deadline = tokio::time::Instant::now() + deadline;
        self
    }

    /// Asked right before every write; a closed gate sends nothing.
    pub fn with_write_gate(mut self, gate: WriteGate) -> Self {
        self.gate = gate;
        self
    }

    /// Records per ListResourceRecordSets page, 1..=300 (default 300).
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    fn record_desc(&self, identifier: &str) -> String {
        format!(
            "route53 record {} {} with SetIdentifier {:?} in hosted zone {}",
            self.target.name,
            self.target.record_type.as_str(),
            identifier,
            self.target.zone_id
        )
    }

    async fn find(&self) -> Result<Found, ActuatorError> {
        let t = &self.target;
        let mut pager = RecordPager::new(
            &self.client,
            &t.zone_id,
            Some((&t.name, Some(t.record_type.as_str()))),
            self.page_size,
            self.retry,
        );
        let mut found =
            Found { managed: None, base: None, identifiers: Vec::new(), more: 0, repeated_token: false, pages: 0 };
        let limit = |message: String| ActuatorError::Limit { target: self.describe(), message };
        'pages: loop {
            if pager.pages() >= self.max_pages {
                return Err(limit(format!(
                    "the listing was still truncated after {} page(s), the most one lookup reads; nothing was written",
                    pager.pages()
                )));
            }
            let page = match tokio::time::timeout_at(self.deadline, pager.next_page()).await {
                Ok(page) => page?,
                Err(_) => {
                    return Err(limit(format!(
                        "the listing did not end within {:?} ({} page(s) read), the time one evaluation's listings \
                         may take; nothing was written",
                        self.list_deadline,
                        pager.pages()
                    )));
                }
            };
            let Some(page) = page else { break };
            for rr in page {
                // Listing starts at our name and type, so the first other record ends our group.
                if normalize_name(&rr.name) != t.name || rr.r#type != t.record_type {
                    break 'pages;
                }
                let id = rr.set_identifier.clone().unwrap_or_default();
                if !found.identifiers.contains(&id) {
                    if found.identifiers.len() < LISTED_IDENTIFIERS {
                        found.identifiers.push(cut(&id, 128));
                    } else {
                        found.more += 1;
                    }
                }
                if id == t.managed {
                    found.managed = Some(rr);
                } else if id == t.base {
                    found.base = Some(rr);
                }
                if found.managed.is_some() && found.base.is_some() {
                    break 'pages;
                }
            }
        }
        found.repeated_token = pager.stopped_on_repeated_token();
        found.pages = pager.pages();
        Ok(found)
    }

    fn not_found(&self, identifier: &str, found: &Found) -> ActuatorError {
        let detail = if found.repeated_token {
            format!(
                " (the listing stopped after {} page(s) because the server returned the same page token twice; \
                 records after that point were not seen)",
                found.pages
            )
        } else if found.identifiers.is_empty() {
            " (no record with this name and type)".to_string()
        } else {
            let mut ids: Vec<String> = found.identifiers.iter().map(|i| format!("{i:?}")).collect();
            if found.more > 0 {
                ids.push(format!("... {} more", found.more));
            }
            format!(" (SetIdentifiers with this name and type: {})", ids.join(", "))
        };
        ActuatorError::NotFound { what: self.record_desc(identifier), detail }
    }

    fn weight_of(&self, identifier: &str, rr: &ResourceRecordSet) -> Result<u32, ActuatorError> {
        let Some(w) = rr.weight else {
            return Err(ActuatorError::NotWeighted { what: self.record_desc(identifier) });
        };
        u32::try_from(w).ok().filter(|w| *w <= MAX_WEIGHT).ok_or_else(|| ActuatorError::Invalid {
            target: self.record_desc(identifier),
            message: format!("Route53 returned weight {w}, outside 0..=255"),
        })
    }

    async fn read_weights(&self) -> Result<Weights, ActuatorError> {
        let found = self.find().await?;
        let managed = found.managed.as_ref().ok_or_else(|| self.not_found(&self.target.managed, &found))?;
        let base = found.base.as_ref().ok_or_else(|| self.not_found(&self.target.base, &found))?;
        Ok(Weights {
            managed: self.weight_of(&self.target.managed, managed)?,
            base: self.weight_of(&self.target.base, base)?,
        })
    }

    async fn write_weight(&self, weight: u32, dry_run: bool) -> Result<WriteOutcome, ActuatorError> {
        super::actuator::check_weight(self, weight)?;
        let found = self.find().await?;
        let managed = found.managed.as_ref().ok_or_else(|| self.not_found(&self.target.managed, &found))?;
        let from = self.weight_of(&self.target.managed, managed)?;
        if from == weight {
            return Ok(WriteOutcome::Unchanged { weight });
        }
        if dry_run {
            return Ok(WriteOutcome::DryRun { from, to: weight });
        }
        let mut record = managed.clone();
        record.weight = Some(i64::from(weight));
        let invalid = |e: aws_sdk_route53::error::BuildError| ActuatorError::Invalid {
            target: self.describe(),
            message: e.to_string(),
        };
        let batch = ChangeBatch::builder()
            .comment(format!("placement TrafficWeight: weight {from} -> {weight}"))
            .changes(
                Change::builder().action(ChangeAction::Upsert).resource_record_set(record).build().map_err(invalid)?,
            )
            .build()
            .map_err(invalid)?;
        let desc = self.describe();
        with_retry_gated(&self.retry, &desc, Some(&self.gate), || {
            self.client
                .change_resource_record_sets()
                .hosted_zone_id(&self.target.zone_id)
                .change_batch(batch.clone())
                .send()
        })
        .await?;
        Ok(WriteOutcome::Changed { from, to: weight })
    }
}

impl Actuator for Route53Actuator {
    fn describe(&self) -> String {
        format!(
            "route53 hosted zone {} record {} {} SetIdentifier {:?} (base {:?})",
            self.target.zone_id,
            self.target.name,
            self.target.record_type.as_str(),
            self.target.managed,
            self.target.base
        )
    }

    fn weight_range(&self) -> RangeInclusive<u32> {
        0..=MAX_WEIGHT
    }

    fn read(&self) -> BoxFuture<'_, Result<Weights, ActuatorError>> {
        Box::pin(self.read_weights())
    }

    fn write(&self, weight: u32, dry_run: bool) -> BoxFuture<'_, Result<WriteOutcome, ActuatorError>> {
        Box::pin(self.write_weight(weight, dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn names_normalize_case_dot_and_escapes() {
        assert_eq!(normalize_name("WWW.Example.com"), "www.example.com.");
        assert_eq!(normalize_name("www.example.com."), "www.example.com.");
        assert_eq!(normalize_name(r"\052.example.com."), "*.example.com.");
        assert_eq!(normalize_name("*.Example.COM"), "*.example.com.");
        // A backslash not followed by three octal digits is kept.
        assert_eq!(normalize_name(r"a\9.example.com"), r"a\9.example.com.");
        assert_eq!(normalize_name(r"a\05"), r"a\05.");
    }

    #[test]
    fn zone_ids_lose_the_prefix() {
        assert_eq!(normalize_zone_id("/hostedzone/Z123"), "Z123");
        assert_eq!(normalize_zone_id("Z123"), "Z123");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let delays: Vec<_> = (1..=6).map(|a| p.delay_after(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay_after(100), Duration::from_secs(1));
        let d = RetryPolicy::default();
        let total: Duration = (1..d.max_attempts).map(|a| d.delay_after(a)).sum();
        assert_eq!(total, Duration::from_millis(7500));
    }

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("shop".into());
        s.metadata.name = Some("aws".into());
        s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect::<BTreeMap<_, _>>());
        s
    }

    #[test]
    fn credentials_come_from_the_secret_trimmed() {
        let s = secret(&[("AWS_ACCESS_KEY_ID", b"AKIA1\n"), ("AWS_SECRET_ACCESS_KEY", b" shh ")]);
        let c = credentials_from_secret(&s, &SecretKeys::default()).unwrap();
        assert_eq!(c.access_key_id, "AKIA1");
        assert_eq!(c.secret_access_key, "shh");
        assert_eq!(c.session_token, None);
        assert!(!format!("{c:?}").contains("shh"), "Debug must not show the secret: {c:?}");

        let s = secret(&[("id", b"A"), ("key", b"B"), ("tok", b"C")]);
        let keys =
            SecretKeys { access_key_id: "id".into(), secret_access_key: "key".into(), session_token: "tok".into() };
        let c = credentials_from_secret(&s, &keys).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("A", "B"));
        assert_eq!(c.session_token.as_deref(), Some("C"));
    }

    #[test]
    fn secret_errors_name_the_secret_and_key() {
        let s = secret(&[("AWS_ACCESS_KEY_ID", b"AKIA1")]);
        let e = credentials_from_secret(&s, &SecretKeys::default()).unwrap_err();
        assert_eq!(e.to_string(), "Secret shop/aws has no key \"AWS_SECRET_ACCESS_KEY\" (keys: \"AWS_ACCESS_KEY_ID\")");
        let a: ActuatorError = e.into();
        assert_eq!(a.metric_label(), "auth");

        let s = secret(&[("AWS_ACCESS_KEY_ID", b"\xff\xfe"), ("AWS_SECRET_ACCESS_KEY", b"x")]);
        let e = credentials_from_secret(&s, &SecretKeys::default()).unwrap_err();
        assert_eq!(e.to_string(), "Secret shop/aws key \"AWS_ACCESS_KEY_ID\" is not UTF-8 text");

        let s = secret(&[("AWS_ACCESS_KEY_ID", b"A"), ("AWS_SECRET_ACCESS_KEY", b"x"), ("AWS_SESSION_TOKEN", b" \n")]);
        let e = credentials_from_secret(&s, &SecretKeys::default()).unwrap_err();
        assert_eq!(e.to_string(), "Secret shop/aws key \"AWS_SESSION_TOKEN\" is empty");

        let mut s = Secret::default();
        s.metadata.namespace = Some("shop".into());
        s.metadata.name = Some("aws".into());
        s.string_data = Some(BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_string(), "A".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "B".to_string()),
        ]));
        assert_eq!(credentials_from_secret(&s, &SecretKeys::default()).unwrap().secret_access_key, "B");
    }

    #[test]
    fn codes_are_classified() {
        let c = |code: &str| classify_code("t".into(), code.into(), "m".into(), "full".into());
        assert_eq!(c("Throttling"), Classified::Retry { code: "Throttling".into(), message: "m".into() });
        assert_eq!(
            c("PriorRequestNotComplete"),
            Classified::Retry { code: "PriorRequestNotComplete".into(), message: "m".into() }
        );
        let label = |code: &str| match c(code) {
            Classified::Fail(e) => e.metric_label(),
            Classified::Retry { .. } => "retry",
        };
        assert_eq!(label("AccessDenied"), "auth");
        assert_eq!(label("SignatureDoesNotMatch"), "auth");
        assert_eq!(label("InvalidChangeBatch"), "invalid");
        assert_eq!(label("NoSuchHostedZone"), "not_found");
        assert_eq!(label("ServiceUnavailable"), "api");
        assert_eq!(label(""), "api");
    }
}
