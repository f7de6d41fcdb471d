//! The `placement-operator run` flags of the TrafficWeight controller: what the cluster admin lets
//! TrafficWeights (namespaced objects tenants can write) make the operator use, and the bounds of one
//! evaluation's Route53 listing. The decisions are the core's (`placement_core::tracking::access`); this
//! only reads them from flags and environment variables (`docs/traffic-weights.md#what-the-admin-allows`).
#![forbid(unsafe_code)]

use super::Options;
use super::route53::{LIST_DEADLINE, MAX_LIST_PAGES};
use placement_core::tracking::access::{AccessPolicy, EndpointRule};
use std::sync::Arc;
use std::time::Duration;

/// One `--traffic-allowed-endpoints` entry; an empty one (an empty environment variable) is none.
#[derive(Clone, Debug)]
pub struct AllowedEndpoint(Option<EndpointRule>);

fn allowed_endpoint(s: &str) -> Result<AllowedEndpoint, String> {
    if s.trim().is_empty() {
        return Ok(AllowedEndpoint(None));
    }
    s.parse().map(|r| AllowedEndpoint(Some(r)))
}

/// Every flag can also be set by the environment variable shown in `--help`.
#[derive(clap::Args, Clone, Debug)]
pub struct TrafficArgs {
    /// Addresses TrafficWeights may query (Prometheus) or call (Route53 `endpoint`), comma-separated:
    /// `[scheme://]host[:port][/path]`, where the scheme defaults to https (plain http only when
    /// written), host is a name, `*.suffix` or an IP, no port means any port and a path is a prefix.
    /// Empty: `https://*.svc,https://*.svc.cluster.local`. Loopback, link-local and metadata addresses
    /// are refused after DNS resolution whatever this says; an entry naming a loopback IP
    /// (`http://127.0.0.1`) lifts that for it (tests and development only).
    #[arg(long, env = "PLACEMENT_TRAFFIC_ALLOWED_ENDPOINTS", value_delimiter = ',', value_parser = allowed_endpoint)]
    pub traffic_allowed_endpoints: Vec<AllowedEndpoint>,
    /// Namespaces whose Route53 TrafficWeights without `credentialsSecretRef` may use the operator's own
    /// AWS identity (the default credential chain: IRSA, instance profile), comma-separated. Empty: none.
    #[arg(long, env = "PLACEMENT_TRAFFIC_DEFAULT_CREDENTIALS_NAMESPACES", value_delimiter = ',')]
    pub traffic_default_credentials_namespaces: Vec<String>,
    /// The most Route53 ListResourceRecordSets pages one lookup reads.
    #[arg(long, env = "PLACEMENT_TRAFFIC_ROUTE53_MAX_PAGES", default_value_t = MAX_LIST_PAGES,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub traffic_route53_max_pages: u32,
    /// Seconds one evaluation's Route53 listings may take in all.
    #[arg(long, env = "PLACEMENT_TRAFFIC_ROUTE53_LIST_DEADLINE_SECONDS", default_value_t = LIST_DEADLINE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub traffic_route53_list_deadline_seconds: u64,
}

impl TrafficArgs {
    /// The controller's options these flags give.
    pub fn options(&self) -> Options {
        let rules = self.traffic_allowed_endpoints.iter().filter_map(|e| e.0.clone()).collect();
        let namespaces = self.traffic_default_credentials_namespaces.iter().map(|n| n.trim()).filter(|n| !n.is_empty());
        let mut options = Options::default();
        options.connect.access = Arc::new(AccessPolicy::new(rules, namespaces.map(str::to_string).collect()));
        options.connect.route53_max_pages = self.traffic_route53_max_pages;
        options.connect.route53_list_deadline = Duration::from_secs(self.traffic_route53_list_deadline_seconds);
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        traffic: TrafficArgs,
    }

    #[test]
    fn flags_become_the_policy() {
        let cli = Cli::try_parse_from([
            "x",
            "--traffic-allowed-endpoints",
            "http://prom.example.com:9090,,*.mon.svc",
            "--traffic-default-credentials-namespaces",
            "dns, ,edge",
        ])
        .unwrap();
        let o = cli.traffic.options();
        let rules: Vec<String> = o.connect.access.rules().iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["http://prom.example.com:9090", "*.mon.svc"]);
        assert!(o.connect.access.default_chain("f", "edge").is_ok());
        assert!(o.connect.access.default_chain("f", "shop").is_err());
        let none = Cli::try_parse_from(["x"]).unwrap().traffic.options();
        assert_eq!(none.connect.access.rules().len(), 2, "the in-cluster default");
        assert!(Cli::try_parse_from(["x", "--traffic-allowed-endpoints", "ftp://x"]).is_err());
    }
}
