//! The one door through which a TrafficWeight's addresses are reached: resolve a host, check **every**
//! address it resolved to against the [`Permit`] the core gave (`placement_core::tracking::access`), and
//! hand out only the checked addresses to connect to. Because the connection goes to an address that was
//! checked, and not to the name again, a DNS answer that changes between check and connect (DNS
//! rebinding) cannot take the operator to a refused address.
//!
//! Two clients use it: the Prometheus client connects to [`Egress::addresses`] itself, and the AWS SDK's
//! HTTP client gets [`GuardedDns`] as its resolver (the SDK's connector skips the resolver for an IP
//! written in the URL, so such an endpoint is checked with [`Permit::address`] before the client is
//! built). The resolver is a trait so tests can make a name resolve to an address such as
//! `169.254.169.254` without contacting it.
#![forbid(unsafe_code)]

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use futures::future::BoxFuture;
use placement_core::tracking::access::{AccessPolicy, Endpoint, Permit, Refusal, Scheme, cut};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The most characters of a resolver error kept in a message.
pub const RESOLVER_ERROR_CHARS: usize = 256;

/// The permit `policy` gives the address `url` (named `field` in messages): the URL taken apart for
/// [`AccessPolicy::endpoint`].
pub fn permit(policy: &AccessPolicy, field: &str, url: &url::Url) -> Result<Permit, Refusal> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(Refusal::new(format!("{field}: the scheme {:?} is neither http nor https", cut(other, 16))));
        }
    };
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(Refusal::new(format!("{field}: the address has no host"))),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    policy.endpoint(field, &Endpoint { scheme, host: &host, port, path: url.path() })
}

/// Turns a host name into addresses.
pub trait Resolve: fmt::Debug + Send + Sync {
    /// The addresses of `host` (a DNS name; IP literals never reach a resolver).
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo`, through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// Why no address may be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// An address is refused by the policy (link-local, metadata, loopback, ...).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The name did not resolve.
    #[error("cannot resolve {host}: {message}")]
    Resolve { host: String, message: String },
}

/// A permit and the resolver to apply it with.
#[derive(Clone, Debug)]
pub struct Egress {
    pub permit: Permit,
    pub resolver: Arc<dyn Resolve>,
}

impl Egress {
    /// `permit` with the system resolver.
    pub fn new(permit: Permit) -> Self {
        Egress { permit, resolver: Arc::new(SystemResolver) }
    }

    /// The addresses to connect to for `host:port`: every address `host` resolves to, each checked; one
    /// refused address refuses them all (a name that can point at a refused address is not trusted).
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.resolver.resolve(host).await.map_err(|e| EgressError::Resolve {
                host: cut(host, 253),
                message: cut(&e.to_string(), RESOLVER_ERROR_CHARS),
            })?,
        };
        if ips.is_empty() {
            return Err(EgressError::Resolve { host: cut(host, 253), message: "no address".into() });
        }
        for ip in &ips {
            self.permit.address(*ip)?;
        }
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// The AWS SDK's resolver, checking every address it returns.
#[derive(Clone, Debug)]
pub struct GuardedDns(pub Egress);

impl ResolveDns for GuardedDns {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move {
            let addrs = self.0.addresses(name, 0).await.map_err(ResolveDnsError::new)?;
            Ok(addrs.into_iter().map(|a| a.ip()).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement_core::tracking::access::{AccessPolicy, Endpoint, Scheme};
    use std::collections::BTreeSet;

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);
    impl Resolve for Fixed {
        fn resolve<'a>(&'a self, _: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
            let ips = self.0.clone();
            Box::pin(async move { Ok(ips) })
        }
    }

    #[tokio::test]
    async fn one_refused_address_refuses_the_name() {
        let policy = AccessPolicy::new(vec!["https://*.example.com".parse().unwrap()], BTreeSet::new());
        let e = Endpoint { scheme: Scheme::Https, host: "prom.example.com", port: 443, path: "" };
        let permit = policy.endpoint("f", &e).unwrap();
        let mixed = Egress {
            permit: permit.clone(),
            resolver: Arc::new(Fixed(vec!["93.184.216.34".parse().unwrap(), "169.254.169.254".parse().unwrap()])),
        };
        let err = mixed.addresses("prom.example.com", 443).await.unwrap_err();
        assert!(err.to_string().contains("169.254.169.254"), "{err}");
        let good = Egress { permit, resolver: Arc::new(Fixed(vec!["93.184.216.34".parse().unwrap()])) };
        assert_eq!(good.addresses("prom.example.com", 443).await.unwrap(), vec!["93.184.216.34:443".parse().unwrap()]);
        let dns = GuardedDns(mixed);
        assert!(dns.resolve_dns("prom.example.com").await.is_err());
    }
}
