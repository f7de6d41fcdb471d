//! One admission request, end to end: AdmissionReview in, decision, JSON Patch, AdmissionReview out.
//!
//! The webhook never blocks a pod: every answer is `allowed: true` (`review::Response` cannot say
//! anything else). Anything that goes wrong — a malformed review, an unreadable pod, an invalid rule, a
//! decision that took longer than the deadline — answers without a patch, with a warning the client
//! sees, a `placement_webhook_fail_open_total` count and a log line. A request that is not a pod CREATE
//! (the webhook configuration sends only those) is admitted unmutated with a warning, counted as
//! `outcome="ignored"`. A pod that already pins a different value for a key the decision would set is
//! left as its owner wrote it, with a warning. A reservation made for a pod that is then not placed is
//! released.
//!
//! Each review gets a span, `admission`, opened as the body arrives, before it is even parsed; its
//! fields are filled in as they become known: `uid`, `namespace`, `pod` (name or generateName) once the
//! review is parsed, `workload` once the decider resolves the owner chain, `rule` and `outcome` at the
//! end. Every log line of parsing, deciding, patching and waiting for a strict round is emitted inside it,
//! so it carries the uid. Values from the request are cut to [`SPAN_FIELD_MAX`] characters: a span field is
//! copied into every line.

use crate::decide::{Candidate, Decider, Decision, RuleKind};
use crate::metrics::{AdmissionMetrics, Outcome};
use crate::patch::{Placement, PreferredTerm, Requirement, plan_patch_json};
use crate::review::{ADMITTED_UNMUTATED, Response, parse_review, warning};
use placement_core::ledger::{RESERVATION_ANNOTATION, RESERVATION_ID_MAX};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Span;

/// The annotation a placed pod carries: which rule placed it and why.
pub const DECISION_ANNOTATION: &str = "placement.dev/decision";

/// Longest `placement.dev/decision` value (in characters): a reason names every group of a rule (16 at
/// most) with its counts, well under this; a longer one is cut, its last character `…`.
pub const DECISION_ANNOTATION_MAX: usize = 2_048;

/// Weight of the preferred node-affinity term a `preferred` placement adds.
const PREFERRED_WEIGHT: i32 = 100;

/// Longest value (in characters) a span field copies from a request: a Kubernetes uid has 36, a name at
/// most 253; a longer one is cut, its last character `…`.
pub const SPAN_FIELD_MAX: usize = 253;

/// `value` as a span field: cut to [`SPAN_FIELD_MAX`] characters.
pub fn span_field(value: &str) -> tracing::field::DisplayValue<String> {
    tracing::field::display(crate::review::bounded(value, SPAN_FIELD_MAX))
}

/// A request uid as a span field: cut to [`RESERVATION_ID_MAX`] characters (a real one has 36), so a
/// forged megabyte uid is never logged whole.
pub fn uid_field(uid: &str) -> tracing::field::DisplayValue<String> {
    tracing::field::display(crate::review::bounded(uid, RESERVATION_ID_MAX))
}

/// Fills in the `admission` span's request fields once the review is parsed.
fn record_request(span: &Span, request: &crate::review::Request) {
    span.record("uid", uid_field(&request.uid));
    if let Some(namespace) = &request.namespace {
        span.record("namespace", span_field(namespace));
    }
    let pod = request.pod().map(|p| &p.metadata);
    let name = pod.and_then(|m| m.name.as_deref().or(m.generate_name.as_deref())).unwrap_or(&request.name);
    if !name.is_empty() {
        span.record("pod", span_field(name));
    }
}

/// The admission handler: decider, metrics and the time budget of one request.
pub struct Admission {
    decider: Arc<Decider>,
    /// For strict mode (reservations shared through a PodDistribution's or ZoneBalancer's status).
    strict: Option<crate::strict::StrictMode>,
    metrics: AdmissionMetrics,
    /// Past this, the decision is dropped and the pod admitted unmutated (well inside the API server's
    /// `timeoutSeconds`).
    deadline: Duration,
}

impl Admission {
    pub fn new(decider: Arc<Decider>, metrics: AdmissionMetrics, deadline: Duration) -> Self {
        Admission { decider, metrics, deadline, strict: None }
    }

    /// Enables strict mode for the PodDistributions and ZoneBalancers that ask for it.
    pub fn with_client(mut self, client: kube::Client) -> Self {
        self.strict = Some(crate::strict::StrictMode::new(client, self.decider.clone(), self.metrics.clone()));
        self
    }

    pub fn decider(&self) -> &Decider {
        &self.decider
    }

    /// Answers one AdmissionReview body with one AdmissionReview body, deciding locally (strict mode
    /// needs [`Self::review_async`]).
    #[tracing::instrument(name = "admission", skip_all, fields(uid, namespace, pod, workload, rule, outcome))]
    pub fn review(&self, body: &[u8]) -> Vec<u8> {
        let started = Instant::now();
        let request = match self.parse(body, started) {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        record_request(&Span::current(), &request);
        let (pod, namespace) = match pod_create(&request) {
            Ok(p) => p,
            Err(why) => return self.ignored(&request, &why, started),
        };
        let candidate = Candidate { pod, namespace: &namespace, uid: &request.uid, dry_run: request.dry_run };
        let decided = self.decider.decide(&candidate);
        self.respond(&request, decided, started)
    }

    /// Like [`Self::review`], with strict mode: a pod placed by a PodDistribution or ZoneBalancer with
    /// `strict: true` is decided against the ledger the replicas share through its status.
    #[tracing::instrument(name = "admission", skip_all, fields(uid, namespace, pod, workload, rule, outcome))]
    pub async fn review_async(&self, body: &[u8]) -> Vec<u8> {
        let started = Instant::now();
        let request = match self.parse(body, started) {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        record_request(&Span::current(), &request);
        let (pod, namespace) = match pod_create(&request) {
            Ok(p) => p,
            Err(why) => return self.ignored(&request, &why, started),
        };
        let candidate = Candidate { pod, namespace: &namespace, uid: &request.uid, dry_run: request.dry_run };
        let decided = match (&self.strict, self.decider.strict_target(&candidate)) {
            (Some(strict), Some(target)) => strict.decide(&candidate, target, started + self.deadline).await,
            _ => self.decider.decide(&candidate),
        };
        self.respond(&request, decided, started)
    }

    /// A body that is not a usable review: allowed unmutated with a warning, echoing its uid when it has
    /// a readable one (`outcome="malformed"`), else with an empty uid, which the API server cannot match
    /// to its call (`outcome="no_uid"`: it applies the webhook's failurePolicy).
    fn parse(&self, body: &[u8], started: Instant) -> Result<crate::review::Request, Vec<u8>> {
        parse_review(body).map_err(|e| {
            let recovered = crate::review::recover(body);
            let span = Span::current();
            span.record("outcome", "malformed");
            let outcome = match &recovered.uid {
                Some(uid) => {
                    span.record("uid", uid_field(uid));
                    tracing::warn!(error = %e, "malformed AdmissionReview: allowed unmutated");
                    Outcome::Malformed
                }
                None => {
                    tracing::warn!(error = %e, "malformed AdmissionReview without a readable uid: answered allowed, \
                        the API server applies the webhook's failurePolicy");
                    Outcome::NoUid
                }
            };
            self.metrics.fail_open(e.metric_label());
            self.metrics.observe(RuleKind::None, outcome, recovered.dry_run, started.elapsed().as_secs_f64());
            Response::for_invalid_uid(recovered.uid, &e).to_review_json()
        })
    }

    /// A request that is not a pod CREATE: allowed unmutated, with a warning saying what it was.
    fn ignored(&self, request: &crate::review::Request, why: &str, started: Instant) -> Vec<u8> {
        Span::current().record("outcome", "ignored");
        tracing::warn!(%why, "not a pod CREATE: allowed unmutated (check the webhook configuration's rules)");
        self.metrics.observe(RuleKind::None, Outcome::Ignored, request.dry_run, started.elapsed().as_secs_f64());
        let then = "admitted unmutated (the webhook configuration should send only pod CREATE)";
        Response::allow(request.uid.clone()).with_warnings(vec![warning(why, then)]).to_review_json()
    }

    fn respond(
        &self,
        request: &crate::review::Request,
        decided: Result<Decision, crate::decide::DecideError>,
        started: Instant,
    ) -> Vec<u8> {
        let uid = request.uid.clone();
        let dry_run = request.dry_run;
        let span = Span::current();
        let decision = match decided {
            Ok(d) => d,
            Err(e) => return self.fail_open(&uid, RuleKind::None, e.metric_label(), &e.to_string(), dry_run, started),
        };
        span.record("rule", decision.rule.as_str());
        if started.elapsed() > self.deadline {
            self.release(&decision);
            let why = format!("the decision took longer than {:?}", self.deadline);
            return self.fail_open(&uid, decision.rule, "deadline", &why, dry_run, started);
        }
        if !decision.places() {
            span.record("outcome", "unchanged");
            tracing::debug!(reason = %decision.reason, "left unmutated");
            self.metrics.observe(decision.rule, Outcome::Unchanged, dry_run, started.elapsed().as_secs_f64());
            return Response::allow(uid).to_review_json();
        }
        let raw = request.object.as_ref().map(|o| o.raw()).unwrap_or(&serde_json::Value::Null);
        match plan_patch_json(raw, &placement(&decision)) {
            Ok(plan) => {
                span.record("outcome", "placed");
                tracing::info!(reason = %decision.reason, source = %decision.source, "placed");
                self.metrics.observe(decision.rule, Outcome::Placed, dry_run, started.elapsed().as_secs_f64());
                self.metrics.set_reservations(self.decider.index().read().ledger().len());
                Response::allow(uid).with_patch(&plan.patch).with_warnings(plan.notes).to_review_json()
            }
            Err(conflict) => {
                self.release(&decision);
                let then = format!("the pod is admitted as written ({})", decision.source);
                let text = warning(&conflict.to_string(), &then);
                span.record("outcome", "conflict");
                tracing::info!(%conflict, "left unmutated: the pod pins another value");
                self.metrics.observe(decision.rule, Outcome::Conflict, dry_run, started.elapsed().as_secs_f64());
                Response::allow(uid).with_warnings(vec![text]).to_review_json()
            }
        }
    }

    fn release(&self, decision: &Decision) {
        if let Some(id) = &decision.reservation {
            self.decider.release(id);
        }
    }

    fn fail_open(
        &self,
        uid: &str,
        rule: RuleKind,
        class: &'static str,
        why: &str,
        dry_run: bool,
        started: Instant,
    ) -> Vec<u8> {
        Span::current().record("outcome", "fail-open");
        tracing::warn!(error = %why, "placement failed: admitted unmutated");
        self.metrics.fail_open(class);
        self.metrics.observe(rule, Outcome::FailOpen, dry_run, started.elapsed().as_secs_f64());
        Response::allow(uid).with_warnings(vec![warning(why, ADMITTED_UNMUTATED)]).to_review_json()
    }
}

/// The pod of a pod CREATE, and the request's namespace; or, for any other request, what it is (for the
/// warning: values from the request are cut).
fn pod_create(request: &crate::review::Request) -> Result<(&k8s_openapi::api::core::v1::Pod, String), String> {
    let cut = |s: &str| crate::review::bounded(s, 64);
    let (kind, resource) = (&request.kind, &request.resource);
    let pods = resource.group.is_empty() && resource.version == "v1" && resource.resource == "pods";
    if !request.is_pod() || !pods {
        let group = |g: &str| if g.is_empty() { "core".to_owned() } else { cut(g) };
        return Err(format!(
            "only pods are placed; this request is for kind {}/{}/{}, resource {}/{}/{}",
            group(&kind.group),
            cut(&kind.version),
            cut(&kind.kind),
            group(&resource.group),
            cut(&resource.version),
            cut(&resource.resource)
        ));
    }
    if let Some(sub) = &request.sub_resource {
        return Err(format!("only new pods are placed; this request is for the subresource pods/{}", cut(sub)));
    }
    if request.operation != kube::core::admission::Operation::Create {
        let operation = crate::review::operation_name(&request.operation);
        return Err(format!("pods are placed only at CREATE; this request is a pod {operation}"));
    }
    match request.pod() {
        Some(pod) => Ok((pod, request.namespace.clone().unwrap_or_default())),
        // Not reachable: a CREATE of a core/v1 Pod without a readable pod does not parse.
        None => Err("no pod in this pod CREATE".to_owned()),
    }
}

/// What a decision adds to the pod.
pub fn placement(d: &Decision) -> Placement {
    let mut annotations = std::collections::BTreeMap::new();
    let text = format!("{}: {}", d.source, d.reason);
    annotations.insert(DECISION_ANNOTATION.to_string(), crate::review::bounded(&text, DECISION_ANNOTATION_MAX));
    if let Some(id) = &d.reservation {
        annotations.insert(RESERVATION_ANNOTATION.to_string(), id.clone());
    }
    let preferred_terms = if d.preferred.is_empty() {
        Vec::new()
    } else {
        vec![PreferredTerm {
            weight: PREFERRED_WEIGHT,
            match_expressions: d.preferred.iter().map(|(k, v)| Requirement::is_in(k.clone(), [v.clone()])).collect(),
        }]
    };
    let mut preferred_terms = preferred_terms;
    if let Some(steer) = &d.steer {
        preferred_terms.push(PreferredTerm {
            weight: crate::steer::STEERING_WEIGHT,
            match_expressions: vec![Requirement::is_in(crate::steer::HOSTNAME_LABEL, [steer.hostname.clone()])],
        });
    }
    Placement { node_selector: d.required.clone(), preferred_terms, required_term_exprs: Vec::new(), annotations }
}
