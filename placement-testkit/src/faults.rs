//! Fault injection: make chosen requests fail, slow down or conflict, a bounded number of times.
//!
//! Rules are checked in the order they were added; a matching delay is served and the next rule is
//! checked, a matching error or conflict answers the request. Dropping open watches and compacting the
//! event log are operations on the server handle ([`super::FakeApiServer::drop_watches`],
//! [`super::FakeApiServer::compact`]).

use super::status::ApiError;
use std::sync::Mutex;
use std::time::Duration;

/// The API verb of a request, as RBAC names them (`evict` for the eviction subresource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    Evict,
}

impl Verb {
    /// Writes are the verbs a forced conflict applies to.
    pub fn is_write(self) -> bool {
        matches!(self, Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::Evict)
    }
}

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this HTTP status (500, 503, 429, 504, ...).
    Error(u16),
    /// Wait this long before serving the request.
    Delay(Duration),
    /// Answer a write with 409 Conflict, as if someone else had just changed the object.
    Conflict,
}

/// One fault rule: which requests, what happens, how many times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub verb: Option<Verb>,
    /// Plural resource name (`pods`), optionally with a subresource (`pods/eviction`).
    pub resource: Option<String>,
    pub action: FaultAction,
    /// `None`: every matching request until cleared.
    pub times: Option<u32>,
}

impl Fault {
    pub fn error(code: u16) -> Self {
        Fault { verb: None, resource: None, action: FaultAction::Error(code), times: None }
    }

    pub fn delay(d: Duration) -> Self {
        Fault { verb: None, resource: None, action: FaultAction::Delay(d), times: None }
    }

    pub fn conflict() -> Self {
        Fault { verb: None, resource: None, action: FaultAction::Conflict, times: None }
    }

    pub fn on(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, verb: Verb, resource: &str) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource || resource.split('/').next() == Some(r))
            && (self.action != FaultAction::Conflict || verb.is_write())
    }
}

/// The active fault rules, and how many requests each has hit.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<(Fault, u32)>>,
}

impl Faults {
    pub fn inject(&self, fault: Fault) {
        self.rules.lock().expect("fault rules lock").push((fault, 0));
    }

    pub fn clear(&self) {
        self.rules.lock().expect("fault rules lock").clear();
    }

    /// How many requests the rules have hit in total.
    pub fn hits(&self) -> u32 {
        self.rules.lock().expect("fault rules lock").iter().map(|(_, n)| *n).sum()
    }

    /// The delay to serve first and the error to answer with, for a request.
    pub(crate) fn check(&self, verb: Verb, resource: &str) -> (Duration, Option<ApiError>) {
        let mut rules = self.rules.lock().expect("fault rules lock");
        let mut delay = Duration::ZERO;
        let mut error = None;
        for (fault, hits) in rules.iter_mut() {
            if fault.times.is_some_and(|t| *hits >= t) || !fault.matches(verb, resource) {
                continue;
            }
            *hits += 1;
            match &fault.action {
                FaultAction::Delay(d) => delay += *d,
                FaultAction::Error(code) => {
                    error = Some(injected_error(*code));
                    break;
                }
                FaultAction::Conflict => {
                    error = Some(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {resource}: the object has been modified; please apply your changes to the latest version and try again (injected)"
                        ),
                    ));
                    break;
                }
            }
        }
        (delay, error)
    }
}

fn injected_error(code: u16) -> ApiError {
    let reason = match code {
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        409 => "Conflict",
        404 => "NotFound",
        403 => "Forbidden",
        _ => "Unknown",
    };
    ApiError::new(code, reason, format!("injected fault: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_verb_and_resource_and_run_out() {
        let f = Faults::default();
        f.inject(Fault::delay(Duration::from_millis(5)).resource("pods"));
        f.inject(Fault::error(503).on(Verb::List).resource("pods").times(2));
        f.inject(Fault::conflict().resource("leases"));
        assert_eq!(f.check(Verb::Get, "nodes"), (Duration::ZERO, None));
        let (d, e) = f.check(Verb::List, "pods");
        assert_eq!((d, e.map(|e| e.code)), (Duration::from_millis(5), Some(503)));
        assert_eq!(f.check(Verb::List, "pods").1.map(|e| e.code), Some(503));
        assert_eq!(f.check(Verb::List, "pods").1, None, "the error rule ran out after two hits");
        assert_eq!(f.check(Verb::Get, "leases").1, None, "reads never conflict");
        assert_eq!(f.check(Verb::Update, "leases").1.map(|e| e.code), Some(409));
        assert_eq!(f.check(Verb::Evict, "pods/eviction").0, Duration::from_millis(5));
        f.clear();
        assert_eq!(f.check(Verb::List, "pods"), (Duration::ZERO, None));
    }
}
