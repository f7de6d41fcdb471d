//! What the webhook refuses to hold: connections, requests and strict-mode admissions it sheds because a
//! bound was reached, and how close it is to the bounds.
//!
//! Shedding is always fail-open: a refused connection or a `503` makes the API server apply
//! `failurePolicy: Ignore` at once, and a strict-mode admission over its queue bound is admitted
//! unmutated. Every label value comes from [`Shed`], a fixed list.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why something was shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shed {
    /// A connection beyond `max_connections`: closed right after accept.
    Connections,
    /// A request beyond `max_in_flight`: answered `503` without reading its body.
    InFlight,
    /// A request whose announced body would take the bodies in flight past `max_body_bytes_in_flight`:
    /// answered `503` without reading its body.
    BodyBytes,
    /// A connection beyond its client address's share of `max_connections` (`max_connections_per_peer`):
    /// closed right after accept.
    ConnectionsPerPeer,
    /// A request beyond its client address's share of `max_in_flight`: answered `503`, body unread.
    InFlightPerPeer,
    /// A request whose announced body would take its client address's bodies in flight past
    /// `max_body_bytes_per_peer`: answered `503`, body unread.
    BodyBytesPerPeer,
    /// A connection whose TLS handshake would wait past half of `handshake_timeout` for its client
    /// address's pace (`handshakes_per_second_per_peer`): closed before the handshake.
    HandshakesPerPeer,
    /// A request body that did not arrive within `body_timeout`: answered `408`, HTTP/1 connection closed.
    BodyDeadline,
    /// A strict-mode admission beyond the queue bound (per resource or overall): admitted unmutated.
    StrictQueue,
}

impl Shed {
    pub const ALL: [Shed; 9] = [
        Shed::Connections,
        Shed::InFlight,
        Shed::BodyBytes,
        Shed::ConnectionsPerPeer,
        Shed::InFlightPerPeer,
        Shed::BodyBytesPerPeer,
        Shed::HandshakesPerPeer,
        Shed::BodyDeadline,
        Shed::StrictQueue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Connections => "connections",
            Shed::InFlight => "in_flight",
            Shed::BodyBytes => "body_bytes",
            Shed::ConnectionsPerPeer => "connections_per_peer",
            Shed::InFlightPerPeer => "in_flight_per_peer",
            Shed::BodyBytesPerPeer => "body_bytes_per_peer",
            Shed::HandshakesPerPeer => "handshakes_per_peer",
            Shed::BodyDeadline => "body_deadline",
            Shed::StrictQueue => "strict_queue",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    reason: &'static str,
}

/// `placement_webhook_shed_total{reason}`, `placement_webhook_connections`,
/// `placement_webhook_requests_in_flight`. [`ShedMetrics::default`] is a set that is not registered
/// anywhere (the probe listener, tests).
#[derive(Clone, Debug, Default)]
pub struct ShedMetrics {
    shed: Family<ShedLabels, Counter>,
    connections: Gauge,
    in_flight: Gauge,
}

impl ShedMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ShedMetrics::default();
        for why in Shed::ALL {
            // Every reason is exposed from the start, at 0, so an alert can rate() it.
            let _ = m.shed.get_or_create(&ShedLabels { reason: why.as_str() });
        }
        registry.register(
            "placement_webhook_shed",
            "Connections, requests and strict-mode admissions refused because a bound was reached, by bound",
            m.shed.clone(),
        );
        registry.register(
            "placement_webhook_connections",
            "Open connections on the admission listener (TLS handshakes included)",
            m.connections.clone(),
        );
        registry.register(
            "placement_webhook_requests_in_flight",
            "Admission requests between their head and their answer",
            m.in_flight.clone(),
        );
        m
    }

    pub fn shed(&self, why: Shed) {
        self.shed.get_or_create(&ShedLabels { reason: why.as_str() }).inc();
    }

    /// How many were shed for `why` so far.
    pub fn shed_total(&self, why: Shed) -> u64 {
        self.shed.get_or_create(&ShedLabels { reason: why.as_str() }).get()
    }

    /// Open connections now.
    pub fn open_connections(&self) -> i64 {
        self.connections.get()
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    pub(crate) fn connections(&self) -> &Gauge {
        &self.connections
    }

    pub(crate) fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exposed_from_the_start() {
        let mut registry = Registry::default();
        let m = ShedMetrics::register(&mut registry);
        m.shed(Shed::InFlight);
        m.connections().set(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for (reason, n) in [
            ("connections", 0),
            ("in_flight", 1),
            ("body_bytes", 0),
            ("connections_per_peer", 0),
            ("in_flight_per_peer", 0),
            ("body_bytes_per_peer", 0),
            ("handshakes_per_peer", 0),
            ("body_deadline", 0),
            ("strict_queue", 0),
        ] {
            assert!(text.contains(&format!("placement_webhook_shed_total{{reason=\"{reason}\"}} {n}")), "{text}");
        }
        assert!(text.contains("placement_webhook_connections 3"), "{text}");
        assert!(text.contains("placement_webhook_requests_in_flight 0"), "{text}");
        assert_eq!(m.shed_total(Shed::InFlight), 1);
    }
}
