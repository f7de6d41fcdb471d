//! Fair shares of the admission listener's budgets, per client address.
//!
//! The listener's caps (open connections, requests in flight, body bytes in flight; see
//! [`ServeLimits`](crate::serve::ServeLimits)) bound what all clients together can make the webhook hold.
//! Alone, they let one client take all of it: 32 connections that announce 2 MiB bodies and then send a
//! byte a second hold the whole 64 MiB body budget, and every honest review meanwhile is answered `503`
//! (the API server then admits its pod unplaced). So each client address may also hold only its own
//! share of each budget (by default half). The API server, the only client that should reach the port,
//! needs far less than half of any of them; a hostile pod on the pod network can take at most half, and
//! the rest stays for the API server.
//!
//! A client is its IP address: the port is ignored, an IPv4-mapped IPv6 address counts as the IPv4 one.
//! Several hostile addresses together can still take everything: limiting who reaches the port at all is
//! the NetworkPolicy's job (docs/security.md). The table holds only addresses that hold something now,
//! and every hold needs an open connection, so it has at most `max_connections` entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// One of the budgets a client address has a share of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    Connections,
    InFlight,
    BodyBytes,
}

/// What one address holds of each budget, or may hold at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub connections: u64,
    pub in_flight: u64,
    pub body_bytes: u64,
}

impl Held {
    fn of(&mut self, budget: Budget) -> &mut u64 {
        match budget {
            Budget::Connections => &mut self.connections,
            Budget::InFlight => &mut self.in_flight,
            Budget::BodyBytes => &mut self.body_bytes,
        }
    }

    fn is_empty(&self) -> bool {
        *self == Held::default()
    }
}

/// The shares of every address that holds something, and the most one may hold.
#[derive(Debug)]
pub(crate) struct PeerShares {
    max: Held,
    held: Mutex<HashMap<IpAddr, Held>>,
}

/// Part of one address's share, given back when dropped.
#[derive(Debug)]
pub(crate) struct PeerHold {
    shares: Arc<PeerShares>,
    peer: IpAddr,
    budget: Budget,
    amount: u64,
}

impl PeerShares {
    pub(crate) fn new(max: Held) -> Arc<Self> {
        Arc::new(PeerShares { max, held: Mutex::new(HashMap::new()) })
    }

    /// Takes `amount` of `budget` for `peer`, or `None` if that would take it past its share.
    pub(crate) fn try_take(self: &Arc<Self>, peer: IpAddr, budget: Budget, amount: u64) -> Option<PeerHold> {
        let peer = peer.to_canonical();
        let mut max = self.max;
        let max = *max.of(budget);
        let mut table = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let held = table.entry(peer).or_default();
        let now = held.of(budget);
        match now.checked_add(amount).filter(|&after| after <= max) {
            Some(after) => *now = after,
            None => {
                if held.is_empty() {
                    table.remove(&peer);
                }
                return None;
            }
        }
        Some(PeerHold { shares: Arc::clone(self), peer, budget, amount })
    }

    /// What `peer` holds now.
    #[cfg(test)]
    fn held(&self, peer: IpAddr) -> Held {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).get(&peer.to_canonical()).copied().unwrap_or_default()
    }

    /// Addresses that hold something now.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for PeerHold {
    fn drop(&mut self) {
        let mut table = self.shares.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = table.get_mut(&self.peer) {
            let now = held.of(self.budget);
            *now = now.saturating_sub(self.amount);
            if held.is_empty() {
                table.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_share_is_taken_up_to_its_limit_and_not_one_past_it() {
        let shares = PeerShares::new(Held { connections: 2, in_flight: 1, body_bytes: 1_000 });
        let a = ip("10.0.0.1");
        let first = shares.try_take(a, Budget::Connections, 1).unwrap();
        let second = shares.try_take(a, Budget::Connections, 1).unwrap();
        assert!(shares.try_take(a, Budget::Connections, 1).is_none(), "one past the share");
        assert!(shares.try_take(ip("10.0.0.2"), Budget::Connections, 1).is_some(), "another address has its own");
        let bytes = shares.try_take(a, Budget::BodyBytes, 1_000).unwrap();
        assert!(shares.try_take(a, Budget::BodyBytes, 1).is_none());
        assert!(shares.try_take(a, Budget::BodyBytes, u64::MAX).is_none(), "no overflow");
        assert_eq!(shares.held(a), Held { connections: 2, in_flight: 0, body_bytes: 1_000 });
        drop(first);
        assert!(shares.try_take(a, Budget::Connections, 1).is_some(), "given back when dropped");
        drop((second, bytes));
    }

    #[test]
    fn addresses_are_forgotten_once_they_hold_nothing() {
        let shares = PeerShares::new(Held { connections: 4, in_flight: 4, body_bytes: 4 });
        let holds: Vec<_> = (0..100)
            .map(|i| shares.try_take(ip(&format!("10.0.{}.{}", i / 250, i % 250)), Budget::InFlight, 1).unwrap())
            .collect();
        assert_eq!(shares.addresses(), 100);
        assert!(shares.try_take(ip("10.9.9.9"), Budget::BodyBytes, 5).is_none());
        assert_eq!(shares.addresses(), 100, "a refused address is not kept");
        drop(holds);
        assert_eq!(shares.addresses(), 0);
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_one() {
        let shares = PeerShares::new(Held { connections: 1, in_flight: 1, body_bytes: 1 });
        let _held = shares.try_take(ip("10.0.0.1"), Budget::Connections, 1).unwrap();
        assert!(shares.try_take(ip("::ffff:10.0.0.1"), Budget::Connections, 1).is_none());
    }
}

/// How fast a suspect client address may start TLS handshakes: a burst, then a steady rate (GCRA: the
/// address has a theoretical arrival time; a handshake starts once that time, less the burst's
/// allowance, has come). An address is suspect for [`SUSPECT_FOR`] after the server closed one of its
/// connections that had carried no request (it sent no request head within the header timeout): the
/// API server never opens a connection without a request, an idle-connection flood does nothing else.
/// A handshake costs the server a fraction of a millisecond of CPU, and such a flood re-opening
/// hundreds of connections at once would otherwise take the runtime's workers from the admissions for
/// as long as those handshakes run. Other addresses are not paced at all: an API server over HTTP/1.1
/// opens one connection per concurrent call, hundreds at once in a burst of pod creations.
#[derive(Debug)]
pub(crate) struct HandshakePace {
    interval: std::time::Duration,
    allowance: std::time::Duration,
    suspects: Mutex<HashMap<IpAddr, Suspect>>,
}

/// A suspect address: until when, and its theoretical arrival time.
#[derive(Clone, Copy, Debug)]
struct Suspect {
    until: std::time::Instant,
    next: std::time::Instant,
}

/// How long an address stays suspect after one of its connections was closed unused.
pub(crate) const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Suspects remembered before those no longer suspect are forgotten.
const PACE_ENTRIES_BEFORE_PRUNING: usize = 4_096;

impl HandshakePace {
    /// `per_second` handshakes a second per suspect address after a burst of `burst`.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let interval = std::time::Duration::from_secs(1) / per_second.max(1);
        let allowance = interval * burst.max(1).saturating_sub(1);
        HandshakePace { interval, allowance, suspects: Mutex::new(HashMap::new()) }
    }

    /// Marks `peer` suspect from `now`: the server closed one of its connections unused.
    pub(crate) fn suspect(&self, peer: IpAddr, now: std::time::Instant) {
        let mut suspects = self.suspects.lock().unwrap_or_else(PoisonError::into_inner);
        if suspects.len() >= PACE_ENTRIES_BEFORE_PRUNING {
            suspects.retain(|_, s| s.until > now);
        }
        let entry = suspects.entry(peer.to_canonical()).or_insert(Suspect { until: now, next: now });
        entry.until = now + SUSPECT_FOR;
    }

    /// How long a handshake from `peer` arriving `now` waits for its turn, its turn taken (zero for an
    /// address that is not suspect); or `None` (nothing taken) when that would be longer than `patience`.
    pub(crate) fn wait(
        &self,
        peer: IpAddr,
        now: std::time::Instant,
        patience: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let mut suspects = self.suspects.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(suspect) = suspects.get_mut(&peer.to_canonical()).filter(|s| s.until > now) else {
            return Some(std::time::Duration::ZERO);
        };
        let theoretical = suspect.next.max(now);
        let starts = now.max(theoretical.checked_sub(self.allowance).unwrap_or(now));
        let wait = starts - now;
        if wait > patience {
            return None;
        }
        suspect.next = theoretical + self.interval;
        Some(wait)
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_suspect_gets_its_burst_then_is_paced_and_past_patience_is_refused() {
        let pace = HandshakePace::new(10, 3);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        let patience = Duration::from_millis(250);
        assert!((0..100).all(|_| pace.wait(a, now, patience) == Some(Duration::ZERO)), "not suspect: no pace");
        pace.suspect(a, now);
        let waits: Vec<_> = (0..6).map(|_| pace.wait(a, now, patience).map(|d| d.as_millis())).collect();
        assert_eq!(waits, [Some(0), Some(0), Some(0), Some(100), Some(200), None]);
        assert_eq!(pace.wait(b, now, patience), Some(Duration::ZERO), "another address is not paced");
        // A second later the allowance has come back; past SUSPECT_FOR the address is not paced at all.
        assert_eq!(pace.wait(a, now + Duration::from_secs(1), patience), Some(Duration::ZERO));
        let after = now + SUSPECT_FOR + Duration::from_millis(1);
        assert!((0..100).all(|_| pace.wait(a, after, patience) == Some(Duration::ZERO)));
    }

    #[test]
    fn addresses_no_longer_suspect_are_forgotten() {
        let pace = HandshakePace::new(1_000, 1);
        let now = Instant::now();
        for i in 0..PACE_ENTRIES_BEFORE_PRUNING as u32 {
            pace.suspect(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), now);
        }
        pace.suspect("10.9.9.9".parse().unwrap(), now + SUSPECT_FOR + Duration::from_secs(1));
        assert_eq!(pace.suspects.lock().unwrap().len(), 1);
    }
}
