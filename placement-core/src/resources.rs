//! Resource amounts (CPU in millicores, memory in bytes) and the Kubernetes rules for a pod's effective
//! request: the larger of the app containers' sum (plus restartable init "sidecar" containers) and the
//! largest init container (plus the sidecars started before it), then the pod overhead on top.
//!
//! Exact integers only: quantities are parsed by the adapters (`placement-kube`) and arrive here as
//! millicores and bytes, so no decision depends on float rounding of a quantity.

use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign};

/// CPU in millicores and memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default)]
    pub cpu_millis: u64,
    #[serde(default)]
    pub memory_bytes: u64,
}

impl Resources {
    pub const ZERO: Resources = Resources { cpu_millis: 0, memory_bytes: 0 };

    pub const fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Resources { cpu_millis, memory_bytes }
    }

    /// Component-wise `self - other`, never below zero.
    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }

    /// Component-wise maximum.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }

    /// True when every component of `self` is at most the one in `other`.
    pub fn fits_in(self, other: Resources) -> bool {
        self.cpu_millis <= other.cpu_millis && self.memory_bytes <= other.memory_bytes
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, o: Resources) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Resources {
    fn sum<I: Iterator<Item = Resources>>(iter: I) -> Resources {
        iter.fold(Resources::ZERO, Add::add)
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cpu {}m, memory {}Mi", self.cpu_millis, self.memory_bytes / (1024 * 1024))
    }
}

/// One init container: its requests and whether it is a restartable sidecar (`restartPolicy: Always`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitContainer {
    pub requests: Resources,
    #[serde(default)]
    pub restartable: bool,
}

/// The effective request of a pod, as the scheduler computes it:
///
/// * sidecars (restartable init containers) run alongside the app containers;
/// * each ordinary init container runs alone with the sidecars started before it;
/// * effective = max(sum(app) + sum(sidecars), max over init of (init + sidecars before it)) + overhead,
///   component-wise.
pub fn effective_requests(
    containers: &[Resources],
    init_containers: &[InitContainer],
    overhead: Resources,
) -> Resources {
    let mut sidecars = Resources::ZERO;
    let mut init_peak = Resources::ZERO;
    for init in init_containers {
        if init.restartable {
            sidecars += init.requests;
            // A sidecar's own start also needs the sidecars before it plus itself.
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(init.requests + sidecars);
        }
    }
    let running: Resources = containers.iter().copied().sum::<Resources>() + sidecars;
    running.max(init_peak) + overhead
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn r(cpu: u64, mem: u64) -> Resources {
        Resources::new(cpu, mem)
    }

    #[test]
    fn effective_request_table() {
        struct Case {
            name: &'static str,
            containers: Vec<Resources>,
            init: Vec<InitContainer>,
            overhead: Resources,
            want: Resources,
        }
        let init = |cpu, mem| InitContainer { requests: r(cpu, mem), restartable: false };
        let sidecar = |cpu, mem| InitContainer { requests: r(cpu, mem), restartable: true };
        let cases = vec![
            Case {
                name: "app only",
                containers: vec![r(100, 10), r(200, 20)],
                init: vec![],
                overhead: r(0, 0),
                want: r(300, 30),
            },
            Case {
                name: "big init wins per component",
                containers: vec![r(100, 10)],
                init: vec![init(500, 5)],
                overhead: r(0, 0),
                want: r(500, 10),
            },
            Case {
                name: "overhead added on top",
                containers: vec![r(100, 10)],
                init: vec![init(500, 5)],
                overhead: r(50, 1),
                want: r(550, 11),
            },
            Case {
                name: "sidecar adds to app",
                containers: vec![r(100, 10)],
                init: vec![sidecar(50, 5)],
                overhead: r(0, 0),
                want: r(150, 15),
            },
            Case {
                name: "init after sidecar runs with it",
                containers: vec![r(100, 10)],
                init: vec![sidecar(50, 5), init(300, 1)],
                overhead: r(0, 0),
                want: r(350, 15),
            },
            Case {
                name: "init before sidecar runs alone",
                containers: vec![r(100, 10)],
                init: vec![init(300, 1), sidecar(50, 5)],
                overhead: r(0, 0),
                want: r(300, 15),
            },
            Case { name: "empty pod", containers: vec![], init: vec![], overhead: r(0, 0), want: r(0, 0) },
        ];
        for c in cases {
            assert_eq!(effective_requests(&c.containers, &c.init, c.overhead), c.want, "{}", c.name);
        }
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(r(1, 1).saturating_sub(r(5, 5)), Resources::ZERO);
        assert_eq!(r(u64::MAX, 1) + r(1, 1), r(u64::MAX, 2));
        assert!(r(1, 2).fits_in(r(1, 2)));
        assert!(!r(1, 3).fits_in(r(1, 2)));
    }
}
