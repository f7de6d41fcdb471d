//! The simulated cluster: a snapshot plus a tiny stand-in for kube-scheduler, so that pods admitted
//! during a scenario land on real nodes and later sections (the rebalancer) see them.
//!
//! The scheduler is deliberately simple — among the nodes the pod fits (`placement_core::fit`), the one
//! with the most free CPU, ties to the lower name — because placement decides the *group*, and the
//! scheduler only picks a node inside it.

use placement_core::fit;
use placement_core::model::{Pod, PodPhase, Snapshot};

pub struct World {
    pub snapshot: Snapshot,
}

impl World {
    pub fn new(snapshot: Snapshot) -> Self {
        World { snapshot }
    }

    /// Bind a pending pod to a node it fits, update the node's requested totals and usage, and add it to
    /// the snapshot. Returns the node name, or why no node fits (the pod then stays pending).
    pub fn schedule(&mut self, mut pod: Pod) -> Result<String, String> {
        let best = self
            .snapshot
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| fit::check(n, &pod).is_ok())
            .max_by(|(_, a), (_, b)| a.free().cpu_millis.cmp(&b.free().cpu_millis).then(b.name.cmp(&a.name)))
            .map(|(i, _)| i);
        let Some(i) = best else {
            let why = self
                .snapshot
                .nodes
                .iter()
                .find_map(|n| fit::check(n, &pod).err().map(|e| format!("{}: {e}", n.name)))
                .unwrap_or_else(|| "no nodes".into());
            pod.phase = PodPhase::Pending;
            self.snapshot.pods.push(pod);
            return Err(why);
        };
        let node = &mut self.snapshot.nodes[i];
        node.requested += pod.requests;
        node.pod_count += 1;
        if let (Some(usage), Some(pod_usage)) = (node.usage.as_mut(), pod.usage) {
            *usage += pod_usage;
        }
        pod.node_name = Some(node.name.clone());
        pod.phase = PodPhase::Running;
        pod.ready = true;
        let name = node.name.clone();
        self.snapshot.pods.push(pod);
        Ok(name)
    }
}
