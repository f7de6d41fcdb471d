//! How each watch of a live index is doing: how often it failed and relisted, when it last delivered
//! an event, and whether it is failing now and since when.
//!
//! kube's watcher retries a failed watch with backoff (0.8 s doubling to 30 s) and the index keeps its last
//! good view meanwhile, so one failure is nothing to act on. A watch is **failing** from its first error
//! until it delivers an event again, or until no error has come for [`RECOVERED_AFTER`]: a watch that
//! resumed on a quiet resource delivers nothing, and its backoff would have produced another error by then
//! if it were still broken. Readiness can then say "this index has been stale for longer than N seconds"
//! (see `failing_longer_than`): failing open for a while beats placing pods on a view of the cluster that
//! no longer moves.
//!
//! The metrics are read at scrape time from these counters ([`WatchHealthCollector`]), with `kind` as
//! the only label (a fixed set).

use super::Kind;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Without a new error for this long, a failing watch counts as recovered (longer than the watcher's
/// largest backoff, 30 s, with room for its jitter).
pub const RECOVERED_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, Default)]
struct KindHealth {
    errors: u64,
    relists: u64,
    last_event: Option<Instant>,
    last_error: Option<Instant>,
    failing_since: Option<Instant>,
}

impl KindHealth {
    fn failing_for(&self, now: Instant) -> Option<Duration> {
        let since = self.failing_since?;
        let recent_error = self.last_error.is_some_and(|e| now.duration_since(e) < RECOVERED_AFTER);
        recent_error.then(|| now.duration_since(since))
    }
}

/// One watch's state, as [`WatchHealth::report`] gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatchReport {
    pub kind: Kind,
    /// Errors since start (each one a restart of the watch after backoff).
    pub errors: u64,
    /// Full lists since start (the first one included; later ones follow a `410 Gone`).
    pub relists: u64,
    /// Since its last event; `None` before the first.
    pub last_event_age: Option<Duration>,
    /// How long it has been failing; `None` when it is not.
    pub failing_for: Option<Duration>,
}

/// The health of every watch of one index. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct WatchHealth {
    kinds: Arc<Mutex<BTreeMap<Kind, KindHealth>>>,
}

impl WatchHealth {
    fn with(&self, kind: Kind, f: impl FnOnce(&mut KindHealth)) {
        f(self.kinds.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default());
    }

    /// The watch of `kind` delivered an event (a relist's too): it is not failing.
    pub fn on_event(&self, kind: Kind, now: Instant) {
        self.with(kind, |h| {
            h.last_event = Some(now);
            h.failing_since = None;
        });
    }

    /// The watch of `kind` failed; the watcher retries after its backoff.
    pub fn on_error(&self, kind: Kind, now: Instant) {
        self.with(kind, |h| {
            h.errors += 1;
            if h.failing_for(now).is_none() {
                h.failing_since = Some(now);
            }
            h.last_error = Some(now);
        });
    }

    /// The watch of `kind` started a full list.
    pub fn on_relist(&self, kind: Kind) {
        self.with(kind, |h| h.relists += 1);
    }

    /// Every watch that reported anything, in kind order.
    pub fn report(&self, now: Instant) -> Vec<WatchReport> {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds
            .iter()
            .map(|(kind, h)| WatchReport {
                kind: *kind,
                errors: h.errors,
                relists: h.relists,
                last_event_age: h.last_event.map(|t| now.duration_since(t)),
                failing_for: h.failing_for(now),
            })
            .collect()
    }

    /// The watches failing for longer than `limit`, with how long.
    pub fn failing_longer_than(&self, limit: Duration, now: Instant) -> Vec<(Kind, Duration)> {
        self.report(now).into_iter().filter_map(|r| r.failing_for.filter(|f| *f > limit).map(|f| (r.kind, f))).collect()
    }
}

/// The watch metrics, read from a [`WatchHealth`] at each scrape, named `{prefix}_watch_*`:
/// `errors_total{kind}`, `relists_total{kind}`, `last_event_age_seconds{kind}` and
/// `failing_seconds{kind}` (0 when not failing).
#[derive(Debug)]
pub struct WatchHealthCollector {
    health: WatchHealth,
    prefix: &'static str,
}

impl WatchHealthCollector {
    pub fn new(health: WatchHealth, prefix: &'static str) -> Self {
        WatchHealthCollector { health, prefix }
    }
}

/// One metric family of the collector: name suffix, help, the value of one watch (none: no series), and
/// whether it is a counter.
type Family = (&'static str, &'static str, fn(&WatchReport) -> Option<f64>, bool);

impl Collector for WatchHealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report = self.health.report(Instant::now());
        let name = |what: &str| format!("{}_watch_{what}", self.prefix);
        let families: [Family; 4] = [
            ("errors", "Watch failures (each retried after backoff), per kind.", |r| Some(r.errors as f64), true),
            ("relists", "Full lists of a watch (the first included), per kind.", |r| Some(r.relists as f64), true),
            (
                "last_event_age_seconds",
                "Seconds since a watch last delivered an event, per kind.",
                |r| r.last_event_age.map(|a| a.as_secs_f64()),
                false,
            ),
            (
                "failing_seconds",
                "Seconds a watch has been failing (0 when it is not), per kind.",
                |r| Some(r.failing_for.map_or(0.0, |f| f.as_secs_f64())),
                false,
            ),
        ];
        for (what, help, value, counter) in families {
            let metric_type = if counter {
                prometheus_client::metrics::MetricType::Counter
            } else {
                prometheus_client::metrics::MetricType::Gauge
            };
            let family_name = name(what);
            let mut family = encoder.encode_descriptor(&family_name, help, None, metric_type)?;
            for r in &report {
                let Some(v) = value(r) else { continue };
                let labels = [("kind", r.kind.as_str())];
                let metric = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(v as u64).encode(metric)?;
                } else {
                    ConstGauge::new(v).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_watch_fails_from_its_first_error_until_an_event_or_a_quiet_minute() {
        let (h, t0) = (WatchHealth::default(), Instant::now());
        h.on_relist(Kind::Pod);
        h.on_event(Kind::Pod, t0);
        assert!(h.failing_longer_than(Duration::ZERO, at(t0, 1)).is_empty());

        // Errors every 30 s (the watcher's largest backoff): failing since the first.
        for s in [10, 40, 70, 100] {
            h.on_error(Kind::Pod, at(t0, s));
        }
        assert_eq!(h.failing_longer_than(Duration::from_secs(60), at(t0, 101)), [(Kind::Pod, Duration::from_secs(91))]);
        assert!(h.failing_longer_than(Duration::from_secs(120), at(t0, 101)).is_empty(), "not yet past the limit");

        // An event: healthy at once.
        h.on_event(Kind::Pod, at(t0, 105));
        assert!(h.failing_longer_than(Duration::ZERO, at(t0, 106)).is_empty());

        // One error, then silence: recovered once RECOVERED_AFTER has passed without another.
        h.on_error(Kind::Pod, at(t0, 200));
        assert_eq!(h.failing_longer_than(Duration::ZERO, at(t0, 259)), [(Kind::Pod, Duration::from_secs(59))]);
        assert!(h.failing_longer_than(Duration::ZERO, at(t0, 260)).is_empty());
        // A later error starts a new failing period, not the old one.
        h.on_error(Kind::Pod, at(t0, 300));
        assert_eq!(h.failing_longer_than(Duration::ZERO, at(t0, 310)), [(Kind::Pod, Duration::from_secs(10))]);

        let report = h.report(at(t0, 310));
        assert_eq!(report.len(), 1);
        assert_eq!((report[0].errors, report[0].relists), (6, 1));
        assert_eq!(report[0].last_event_age, Some(Duration::from_secs(205)));
    }

    #[test]
    fn the_collector_writes_one_series_per_kind_and_family() {
        let h = WatchHealth::default();
        let now = Instant::now();
        h.on_relist(Kind::Node);
        h.on_event(Kind::Node, now);
        h.on_error(Kind::Pod, now);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(WatchHealthCollector::new(h, "placement_webhook")));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"placement_webhook_watch_errors_total{kind="Pod"} 1"#,
            r#"placement_webhook_watch_errors_total{kind="Node"} 0"#,
            r#"placement_webhook_watch_relists_total{kind="Node"} 1"#,
            r#"placement_webhook_watch_failing_seconds{kind="Node"} 0.0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in:\n{text}");
        }
        assert!(text.contains(r#"placement_webhook_watch_last_event_age_seconds{kind="Node"}"#), "{text}");
        assert!(!text.contains(r#"last_event_age_seconds{kind="Pod"}"#), "no event yet, no age: {text}");
    }
}
