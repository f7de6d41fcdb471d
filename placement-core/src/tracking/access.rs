//! What a `TrafficWeight` may make the operator use: which Secrets, which addresses, which cloud
//! identity (`docs/security.md#trafficweight`). A TrafficWeight is a namespaced object a tenant can
//! write, while the operator holds cluster-wide power; so every use of that power is decided here, once,
//! from what the cluster admin set on the operator (an [`AccessPolicy`]) and what the Secret's owner
//! set on the Secret. The adapters convert (URL to [`Endpoint`], resolved addresses to `IpAddr`), call,
//! and act.
//!
//! Decisions, and why:
//! - **A Secret is used only if it opts in** with the label [`CREDENTIALS_LABEL`]` = "true"`: RBAC lets
//!   the operator read a namespace's Secrets, but the Secret's owner, not any tenant who can write a
//!   TrafficWeight, decides that its value may be sent to a metrics server or used to sign AWS calls.
//! - **Addresses match an allowlist** ([`EndpointRule`]s the admin sets). Without one, in-cluster
//!   Services over https only ([`DEFAULT_RULES`]). Plain http is allowed only by a rule that names the
//!   `http` scheme, because a token sent over http can be read by anyone on the path.
//! - **Some addresses are never contacted**, whatever the allowlist says, and this is checked on every
//!   address a name resolves to (the adapter then connects only to checked addresses, so a DNS answer
//!   cannot change between the check and the connection): link-local (`169.254.0.0/16`, `fe80::/10`,
//!   which holds the cloud metadata services), the metadata addresses ([`METADATA_ADDRESSES`]),
//!   unspecified, broadcast and multicast addresses, and loopback. Loopback alone has an escape, for
//!   tests and development: a rule whose host is that loopback address written as an IP (e.g.
//!   `http://127.0.0.1`), so the admin names it explicitly.
//! - **The operator's own cloud identity** (the AWS default credential chain: IRSA, instance profile)
//!   is used only for TrafficWeights in namespaces the admin lists.
//! - **Messages are bounded**: [`cut`] shortens any text copied from outside into a status, an Event or
//!   a log line.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The label a Secret carries, with the value `"true"`, to be usable by TrafficWeights.
pub const CREDENTIALS_LABEL: &str = "placement.dev/traffic-credentials";

/// The allowlist when the admin sets none: Services of the cluster, https only.
pub const DEFAULT_RULES: [&str; 2] = ["https://*.svc", "https://*.svc.cluster.local"];

/// Cloud instance-metadata addresses refused even outside the link-local ranges (AWS's IPv6 IMDS is a
/// unique-local address).
pub const METADATA_ADDRESSES: [IpAddr; 2] =
    [IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254))];

/// The most characters of a rule; longer ones are refused when the flag is parsed.
pub const MAX_RULE_CHARS: usize = 512;

/// `text` cut to at most `max` characters, the last one `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Why something a TrafficWeight asked for is not done. The message names what was refused and what
/// would allow it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

impl Refusal {
    /// A refusal with this message (for the adapters' own checks of what they were given).
    pub fn new(message: impl Into<String>) -> Self {
        Refusal(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// URL schemes a rule or an address may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    /// One name, lower case, without a trailing dot.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix` (stored with the leading dot).
    Suffix(String),
    /// An IP address, written as one.
    Ip(IpAddr),
}

/// One allowlist entry: `[scheme://]host[:port][/path]`.
///
/// - `scheme`: `https` when left out; `http` must be written to allow plain http.
/// - `host`: a name (`prometheus.example.com`), `*.` and a suffix (`*.monitoring.svc`: every name
///   ending in `.monitoring.svc`), or an IP address (`10.0.0.5`, `[fd00::5]`).
/// - `port`: any port when left out.
/// - `path`: the address's path must start with it, segment by segment (`/prometheus` allows
///   `/prometheus` and `/prometheus/x`, not `/prometheus2`); any path when left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRule {
    text: String,
    scheme: Scheme,
    host: Host,
    port: Option<u16>,
    path: Vec<String>,
}

impl fmt::Display for EndpointRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

impl FromStr for EndpointRule {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let text = input.trim();
        let bad = |why: &str| format!("allowed endpoint {:?}: {why}", cut(text, 80));
        if text.is_empty() || text.chars().count() > MAX_RULE_CHARS {
            return Err(bad(&format!("must have 1 to {MAX_RULE_CHARS} characters")));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) => (Scheme::parse(s).ok_or_else(|| bad("the scheme must be http or https"))?, rest),
            None => (Scheme::Https, text),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad("credentials, a query or a fragment cannot be part of a rule"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| bad("not an IPv6 address"))?;
            (Host::Ip(IpAddr::V6(ip)), after.strip_prefix(':'))
        } else {
            let (h, p) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let host = if let Ok(ip) = h.parse::<Ipv4Addr>() {
                Host::Ip(IpAddr::V4(ip))
            } else if let Some(suffix) = h.strip_prefix("*.") {
                Host::Suffix(format!(".{}", normal_name(suffix)))
            } else {
                Host::Name(normal_name(h))
            };
            (host, p)
        };
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        match &host {
            Host::Name(n) if !name_ok(n) => return Err(bad("the host is not a DNS name, `*.suffix` or an IP")),
            Host::Suffix(s) if !name_ok(&s[1..]) => return Err(bad("`*.` must be followed by a DNS name")),
            _ => {}
        }
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1-65535"))?),
        };
        Ok(EndpointRule { text: text.to_string(), scheme, host, port, path: segments(path) })
    }
}

/// An address a TrafficWeight names, taken apart by the adapter (from its URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub scheme: Scheme,
    /// The host: a DNS name, or an IP address without brackets.
    pub host: &'a str,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    pub path: &'a str,
}

impl EndpointRule {
    fn matches(&self, e: &Endpoint<'_>) -> bool {
        if self.scheme != e.scheme || self.port.is_some_and(|p| p != e.port) {
            return false;
        }
        let host_ok = match (&self.host, e.host.parse::<IpAddr>()) {
            (Host::Ip(want), Ok(got)) => *want == got,
            (Host::Ip(_), Err(_)) | (_, Ok(_)) => false,
            (Host::Name(n), Err(_)) => *n == normal_name(e.host),
            (Host::Suffix(s), Err(_)) => normal_name(e.host).ends_with(s.as_str()),
        };
        host_ok && segments(e.path).starts_with(&self.path)
    }
}

/// Which loopback addresses a permit lifts the refusal for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loopback {
    None,
    /// The one the matching rule names as an IP.
    One(IpAddr),
    /// Every one ([`Permit::any_loopback`]).
    Any,
}

/// What the policy allows for one endpoint: the checks its resolved addresses must pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    loopback: Loopback,
    /// The endpoint, for messages.
    endpoint: String,
}

impl Permit {
    /// A permit for `endpoint` (a description for messages) with no escape: what every address of an
    /// endpoint the allowlist does not cover (the AWS API's own) must pass.
    pub fn strict(endpoint: impl Into<String>) -> Permit {
        Permit { loopback: Loopback::None, endpoint: endpoint.into() }
    }

    /// A permit that lifts the loopback refusal for every loopback address (every other refusal
    /// stays): for library callers and tests that talk to a server on the same host. No TrafficWeight
    /// gets one; the controller's permits come from [`AccessPolicy::endpoint`].
    pub fn any_loopback(endpoint: impl Into<String>) -> Permit {
        Permit { loopback: Loopback::Any, endpoint: endpoint.into() }
    }

    /// `ip`, one of the addresses the endpoint's host resolved to, may be connected to. The adapter
    /// checks every address before it connects to any, and connects only to checked ones.
    pub fn address(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        let class = match ip {
            _ if METADATA_ADDRESSES.contains(&ip) => Some("a cloud metadata address"),
            IpAddr::V4(v4) if v4.is_link_local() => Some("link-local (169.254.0.0/16)"),
            IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local (fe80::/10)"),
            _ if ip.is_unspecified() => Some("unspecified"),
            IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
            _ if ip.is_multicast() => Some("multicast"),
            _ if ip.is_loopback() && (self.loopback == Loopback::One(ip) || self.loopback == Loopback::Any) => None,
            _ if ip.is_loopback() => Some("loopback"),
            _ => None,
        };
        match class {
            None => Ok(()),
            Some(class) => Err(Refusal(format!(
                "{} resolves to {ip}, which is {class}: never contacted (refused before connecting){}",
                self.endpoint,
                if ip.is_loopback() {
                    "; an allowed-endpoints entry naming this loopback address as an IP lifts this, for tests"
                } else {
                    ""
                }
            ))),
        }
    }
}

/// What the cluster admin allows TrafficWeights to make the operator use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    rules: Vec<EndpointRule>,
    default_chain_namespaces: BTreeSet<String>,
}

impl Default for AccessPolicy {
    /// [`DEFAULT_RULES`], and the default credential chain for no namespace.
    fn default() -> Self {
        AccessPolicy::new(Vec::new(), BTreeSet::new())
    }
}

impl AccessPolicy {
    /// `rules` is the allowlist ([`DEFAULT_RULES`] when empty); `default_chain_namespaces` the namespaces
    /// whose TrafficWeights may use the operator's own AWS identity.
    pub fn new(rules: Vec<EndpointRule>, default_chain_namespaces: BTreeSet<String>) -> Self {
        let rules =
            if rules.is_empty() { DEFAULT_RULES.iter().filter_map(|r| r.parse().ok()).collect() } else { rules };
        AccessPolicy { rules, default_chain_namespaces }
    }

    /// The allowlist in force.
    pub fn rules(&self) -> &[EndpointRule] {
        &self.rules
    }

    /// `endpoint` (named `field` in messages) matches an allowlist rule; the [`Permit`] then checks the
    /// addresses it resolves to.
    pub fn endpoint(&self, field: &str, e: &Endpoint<'_>) -> Result<Permit, Refusal> {
        let shown = format!("{}://{}:{}", e.scheme, cut(e.host, 253), e.port);
        let Some(rule) = self.rules.iter().find(|r| r.matches(e)) else {
            let listed: Vec<String> = self.rules.iter().take(8).map(|r| cut(&r.text, 80)).collect();
            let more = if self.rules.len() > 8 { format!(" and {} more", self.rules.len() - 8) } else { String::new() };
            return Err(Refusal(format!(
                "{field}: {shown}{} is not an allowed endpoint (the operator's --traffic-allowed-endpoints: {}{more}); \
                 nothing was sent",
                cut(e.path.trim_end_matches('/'), 80),
                listed.join(", "),
            )));
        };
        let loopback = match (&rule.host, e.host.parse::<IpAddr>()) {
            (Host::Ip(ip), Ok(_)) if ip.is_loopback() => Loopback::One(*ip),
            _ => Loopback::None,
        };
        Ok(Permit { loopback, endpoint: format!("{field}: {shown}") })
    }

    /// A TrafficWeight in `namespace` may use the operator's own AWS identity (the default chain).
    pub fn default_chain(&self, field: &str, namespace: &str) -> Result<(), Refusal> {
        if self.default_chain_namespaces.contains(namespace) {
            return Ok(());
        }
        Err(Refusal(format!(
            "{field} is not set and namespace {namespace:?} may not use the operator's own AWS identity \
             (the operator's --traffic-default-credentials-namespaces does not list it): set {field} to a \
             Secret labelled {CREDENTIALS_LABEL}=true, or ask the cluster admin to list the namespace; nothing \
             was written"
        )))
    }

    /// The Secret `namespace/name`, with these labels, referenced by `field`, may be used.
    pub fn secret(
        &self,
        field: &str,
        namespace: &str,
        name: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<(), Refusal> {
        if labels.and_then(|l| l.get(CREDENTIALS_LABEL)).is_some_and(|v| v == "true") {
            return Ok(());
        }
        Err(Refusal(format!(
            "{field}: Secret {namespace}/{name} is not labelled {CREDENTIALS_LABEL}=\"true\"; a Secret is used \
             by TrafficWeights only when its owner adds that label; nothing was sent"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> EndpointRule {
        s.parse().unwrap()
    }

    fn ep(scheme: Scheme, host: &str, port: u16, path: &str) -> Endpoint<'static> {
        let host: &'static str = Box::leak(host.to_string().into_boxed_str());
        let path: &'static str = Box::leak(path.to_string().into_boxed_str());
        Endpoint { scheme, host, port, path }
    }

    #[test]
    fn the_default_allows_in_cluster_https_services_only() {
        let p = AccessPolicy::default();
        let ok = |e: Endpoint<'_>| p.endpoint("f", &e).is_ok();
        assert!(ok(ep(Scheme::Https, "prometheus.monitoring.svc", 9091, "")));
        assert!(ok(ep(Scheme::Https, "Prometheus.Monitoring.SVC.cluster.local.", 443, "/x")));
        assert!(!ok(ep(Scheme::Http, "prometheus.monitoring.svc", 9090, "")), "http needs a rule");
        assert!(!ok(ep(Scheme::Https, "svc", 443, "")));
        assert!(!ok(ep(Scheme::Https, "evil.example.com", 443, "")));
        assert!(!ok(ep(Scheme::Https, "127.0.0.1", 443, "")));
        assert!(!ok(ep(Scheme::Https, "169.254.169.254", 443, "")));
        let e = p.endpoint("spec.x", &ep(Scheme::Http, "anywhere", 80, "")).unwrap_err();
        assert_eq!(
            e.message(),
            "spec.x: http://anywhere:80 is not an allowed endpoint (the operator's --traffic-allowed-endpoints: \
             https://*.svc, https://*.svc.cluster.local); nothing was sent"
        );
    }

    #[test]
    fn rules_match_scheme_host_port_and_path_segments() {
        let p = AccessPolicy::new(
            vec![rule("http://prom.example.com:9090/prometheus"), rule("*.mon.svc:9091"), rule("http://[fd00::5]")],
            BTreeSet::new(),
        );
        let ok = |e: Endpoint<'_>| p.endpoint("f", &e).is_ok();
        assert!(ok(ep(Scheme::Http, "prom.example.com", 9090, "/prometheus")));
        assert!(ok(ep(Scheme::Http, "prom.example.com", 9090, "/prometheus/x/")));
        assert!(!ok(ep(Scheme::Http, "prom.example.com", 9090, "/prometheus2")));
        assert!(!ok(ep(Scheme::Http, "prom.example.com", 9091, "/prometheus")));
        assert!(!ok(ep(Scheme::Https, "prom.example.com", 9090, "/prometheus")));
        assert!(ok(ep(Scheme::Https, "a.b.mon.svc", 9091, "")));
        assert!(!ok(ep(Scheme::Http, "a.mon.svc", 9091, "")), "no scheme means https");
        assert!(!ok(ep(Scheme::Https, "mon.svc", 9091, "")));
        assert!(ok(ep(Scheme::Http, "fd00::5", 80, "")));
        assert!(!ok(ep(Scheme::Http, "fd00::6", 80, "")));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["", "ftp://x", "http://u:p@x", "x:0", "x:70000", "*.", "a..b", "[::1", "x/?q", "a b"] {
            assert!(bad.parse::<EndpointRule>().is_err(), "{bad:?} was accepted");
        }
        assert!("x".repeat(MAX_RULE_CHARS + 1).parse::<EndpointRule>().is_err());
    }

    #[test]
    fn addresses_are_refused_after_resolution_whatever_the_allowlist() {
        let p = AccessPolicy::new(vec![rule("http://*.test"), rule("http://169.254.169.254")], BTreeSet::new());
        let permit = p.endpoint("f", &ep(Scheme::Http, "metadata.test", 80, "")).unwrap();
        for refused in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(permit.address(ip).is_err(), "{refused} was allowed");
        }
        for allowed in ["10.0.0.5", "93.184.216.34", "fd00::5", "2001:db8::1"] {
            assert!(permit.address(allowed.parse().unwrap()).is_ok(), "{allowed} was refused");
        }
        // A rule naming the metadata address does not make it reachable.
        let literal = p.endpoint("f", &ep(Scheme::Http, "169.254.169.254", 80, "")).unwrap();
        let e = literal.address("169.254.169.254".parse().unwrap()).unwrap_err();
        assert!(e.message().contains("cloud metadata address"), "{e}");
    }

    #[test]
    fn loopback_is_allowed_only_by_a_rule_naming_it_as_an_ip() {
        let p = AccessPolicy::new(vec![rule("http://127.0.0.1"), rule("http://localhost")], BTreeSet::new());
        let named = p.endpoint("f", &ep(Scheme::Http, "127.0.0.1", 9090, "")).unwrap();
        assert!(named.address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(named.address("127.0.0.2".parse().unwrap()).is_err(), "only the address named");
        let by_name = p.endpoint("f", &ep(Scheme::Http, "localhost", 9090, "")).unwrap();
        let e = by_name.address("127.0.0.1".parse().unwrap()).unwrap_err();
        assert!(e.message().contains("loopback") && e.message().contains("before connecting"), "{e}");
        assert!(Permit::strict("aws").address("::1".parse().unwrap()).is_err());
        let any = Permit::any_loopback("test");
        assert!(any.address("::1".parse().unwrap()).is_ok() && any.address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(any.address("169.254.169.254".parse().unwrap()).is_err(), "only loopback is lifted");
    }

    #[test]
    fn secrets_opt_in_and_the_default_chain_is_per_namespace() {
        let p = AccessPolicy::new(Vec::new(), BTreeSet::from(["dns".to_string()]));
        let labels = BTreeMap::from([(CREDENTIALS_LABEL.to_string(), "true".to_string())]);
        assert!(p.secret("f", "ns", "s", Some(&labels)).is_ok());
        let no = BTreeMap::from([(CREDENTIALS_LABEL.to_string(), "yes".to_string())]);
        let e = p.secret("spec.f", "ns", "s", Some(&no)).unwrap_err();
        assert!(e.message().contains("Secret ns/s is not labelled placement.dev/traffic-credentials"), "{e}");
        assert!(p.secret("f", "ns", "s", None).is_err());
        assert!(p.default_chain("f", "dns").is_ok());
        let e = p.default_chain("spec.target.route53.credentialsSecretRef", "shop").unwrap_err();
        assert!(e.message().contains("\"shop\" may not use the operator's own AWS identity"), "{e}");
    }

    #[test]
    fn cut_bounds_characters() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut(&"é".repeat(10_000), 100).chars().count(), 100);
    }
}
