//! Every metric the Grafana dashboard (`deploy/monitoring/grafana-dashboard.json`) and the alert rules
//! (`deploy/helm/placement/files/alerts.yaml`) query is one the webhook or the operator registers, under the
//! name it is exposed with: counters end in `_total`, histograms are queried as `_bucket`/`_sum`/`_count`,
//! gauges by their own name. ("Metrics documented but never registered" is one of the originals' mistakes.)
//!
//! The registries are built the way the binaries build them: the webhook's certificate and admission
//! metrics, and the operator's controllers plus its leader gauge (the controllers' futures are never run).

use placement_kube::live::{self, WatchOptions};
use placement_operator::runtime::events::Events;
use placement_operator::{Context, Leadership};
use placement_testkit::FakeApiServer;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Every metric name a registry exposes (before the `_total`, `_bucket`, ... suffixes). prometheus-client
/// offers no way to list a registry and encodes a label family only once it has a series, so the names
/// come from the registry's `Debug` form (each registry's `prefix`, then its metric `Descriptor`s with their
/// unit) plus the `# TYPE` lines of its encoding (for collectors).
fn names(registry: &Registry) -> BTreeSet<String> {
    let debug = format!("{registry:?}");
    let mut out = BTreeSet::new();
    let mut prefix: Option<String> = None;
    let mut rest = debug.as_str();
    loop {
        let p = rest.find("prefix: ");
        let d = rest.find("Descriptor { name: \"");
        match (p, d) {
            (Some(p), d) if d.is_none_or(|d| p < d) => {
                rest = &rest[p + "prefix: ".len()..];
                prefix = rest.strip_prefix("Some(Prefix(\"").and_then(|r| r.split('"').next()).map(str::to_string);
            }
            (_, Some(d)) => {
                rest = &rest[d + "Descriptor { name: \"".len()..];
                let name = rest.split('"').next().unwrap_or_default();
                let unit = rest
                    .find("unit: ")
                    .map(|u| &rest[u + "unit: ".len()..])
                    .and_then(|u| u.strip_prefix("Some("))
                    .and_then(|u| u.split(')').next())
                    .map(|u| format!("_{}", u.to_lowercase()))
                    .unwrap_or_default();
                let full = match &prefix {
                    Some(p) => format!("{p}_{name}{unit}"),
                    None => format!("{name}{unit}"),
                };
                out.insert(full);
            }
            _ => break,
        }
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    out.extend(
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).map(str::to_string),
    );
    out
}

async fn registered() -> BTreeSet<String> {
    let mut webhook = Registry::default();
    placement_webhook::tls::CertMetrics::register(&mut webhook);
    placement_webhook::metrics::AdmissionMetrics::register(&mut webhook);

    let fake = FakeApiServer::start().await.expect("fake API server");
    let (index, _watchers) = live::spawn(fake.client(), WatchOptions::default());
    let ctx = Context {
        client: fake.client(),
        eviction_client: fake.client_without_retry(),
        index,
        events: Events::disabled(),
        leadership: Leadership::always(),
    };
    let mut operator = Registry::default();
    let controllers = placement_operator::controllers(ctx, &mut operator);
    assert!(controllers.len() >= 4, "every controller registers its metrics");
    placement_operator::runtime::probes::register(&mut operator, Leadership::always());

    let mut all = names(&webhook);
    all.extend(names(&operator));
    all
}

/// Every `placement_…` name in `text`.
fn referenced(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("placement_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary {
            names.push(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Why `name`, as queried, is not an exposed series (None: it is one): the name itself, or a registered
/// name plus the suffix a counter (`_total`) or a histogram (`_bucket`, `_sum`, `_count`) is exposed with.
fn problem(name: &str, registered: &BTreeSet<String>) -> Option<String> {
    if registered.contains(name) {
        return None;
    }
    let suffixed = ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .any(|s| name.strip_suffix(s).is_some_and(|base| registered.contains(base)));
    (!suffixed).then(|| format!("{name} is not registered by the webhook or the operator"))
}

#[tokio::test]
async fn dashboards_and_alerts_query_only_registered_metrics() {
    let registered = registered().await;
    assert!(registered.len() > 30, "{registered:?}");
    for known in ["placement_rebalancer_sigma", "placement_webhook_admissions", "placement_operator_leader"] {
        assert!(registered.contains(known), "{known} missing from {registered:?}");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in ["deploy/monitoring/grafana-dashboard.json", "deploy/helm/placement/files/alerts.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let names = referenced(&text);
        assert!(names.len() >= 5, "{file} queries placement metrics");
        for name in names {
            checked += 1;
            if let Some(p) = problem(&name, &registered) {
                problems.push(format!("{file}: {p}"));
            }
        }
    }
    assert!(problems.is_empty(), "{} of {checked} references are wrong:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_check_can_fail() {
    let registered: BTreeSet<String> = ["req", "lat_seconds", "level"].into_iter().map(str::to_string).collect();
    assert_eq!(problem("req_total", &registered), None);
    assert_eq!(problem("lat_seconds_bucket", &registered), None);
    assert_eq!(problem("level", &registered), None);
    assert!(problem("nope_total", &registered).unwrap().contains("not registered"));
    assert!(problem("lat_bucket", &registered).is_some());
    assert_eq!(referenced("x{placement_a_total} y_placement_b placement_c"), vec!["placement_a_total", "placement_c"]);
    let mut r = Registry::default();
    let sub = r.sub_registry_with_prefix("placement_x");
    sub.register_with_unit(
        "wait",
        "w",
        prometheus_client::registry::Unit::Seconds,
        prometheus_client::metrics::histogram::Histogram::new([1.0]),
    );
    r.register("placement_y", "y", prometheus_client::metrics::family::Family::<Vec<(String, String)>, prometheus_client::metrics::counter::Counter>::default());
    let found = names(&r);
    assert!(found.contains("placement_x_wait_seconds") && found.contains("placement_y"), "{found:?}");
}
