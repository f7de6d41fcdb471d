//! The decisions adapters make at pod CREATE, assembled from the parts: counts from the
//! [`CountIndex`] plus in-flight reservations from the [`Ledger`], feasibility from the index's nodes,
//! then the [`Apportionment`] or the least-loaded zone rule. The webhook turns a decision into a JSON
//! Patch and records a reservation; `simulate` does the same without a cluster.

use crate::apportion::{Apportionment, Base, Fallback};
use crate::group::{self, Feasibility, NodeGroup};
use crate::index::{CountIndex, ScopeId};
use crate::ledger::Ledger;
use crate::model::{Pod, WorkloadKind, WorkloadRef};
use crate::strategy::Strategy;
use crate::zone::{self, ZoneLoad};
use crate::{Error, Labels};
use serde::Serialize;
use std::sync::{Arc, RwLock};

/// Node id -> group index, for one index node generation.
type MembershipCache = (Option<u64>, Arc<Vec<Option<u16>>>);

/// A weighted/base distribution over named node groups.
#[derive(Debug)]
pub struct DistributionRule {
    pub groups: Vec<NodeGroup>,
    pub apportionment: Apportionment,
    pub fallback: Fallback,
    /// Count pods of every revision, not only the incoming pod's.
    pub all_revisions: bool,
    /// The group of every index node, cached per index node generation.
    membership: RwLock<MembershipCache>,
}

impl Clone for DistributionRule {
    fn clone(&self) -> Self {
        DistributionRule {
            groups: self.groups.clone(),
            apportionment: self.apportionment.clone(),
            fallback: self.fallback,
            all_revisions: self.all_revisions,
            membership: RwLock::default(),
        }
    }
}

impl DistributionRule {
    /// Groups with weights, an optional base on one of them, and the fallback.
    pub fn new(groups: Vec<(NodeGroup, u32)>, base: Option<Base>, fallback: Fallback) -> Result<Self, Error> {
        for (g, _) in &groups {
            g.selector.validate_for_nodes()?;
        }
        let apportionment = Apportionment::new(groups.iter().map(|(g, w)| (g.name.clone(), *w)).collect(), base)?;
        Ok(DistributionRule {
            groups: groups.into_iter().map(|(g, _)| g).collect(),
            apportionment,
            fallback,
            all_revisions: false,
            membership: RwLock::default(),
        })
    }

    /// The rule of a strategy annotation.
    pub fn from_strategy(strategy: &Strategy, fallback: Fallback) -> Result<Self, Error> {
        Ok(DistributionRule {
            groups: strategy.groups(),
            apportionment: strategy.apportionment()?,
            fallback,
            all_revisions: false,
            membership: RwLock::default(),
        })
    }

    fn revision<'a>(&self, pod: &'a Pod) -> Option<&'a str> {
        if self.all_revisions { None } else { pod.revision.as_deref() }
    }

    /// The group of every node of `index`, recomputed only when the index's nodes change.
    pub fn membership(&self, index: &CountIndex) -> Arc<Vec<Option<u16>>> {
        let generation = index.node_generation();
        {
            let cached = self.membership.read().unwrap_or_else(|e| e.into_inner());
            if cached.0 == Some(generation) {
                return cached.1.clone();
            }
        }
        let fresh = Arc::new(index.group_membership(&self.groups));
        *self.membership.write().unwrap_or_else(|e| e.into_inner()) = (Some(generation), fresh.clone());
        fresh
    }

    /// Pods seen plus reservations, per group, for the pod's workload (and revision).
    pub fn counts(
        &self,
        index: &CountIndex,
        ledger: &Ledger,
        workload: &WorkloadRef,
        revision: Option<&str>,
    ) -> Vec<u32> {
        let membership = self.membership(index);
        let mut counts = index.group_counts_with(workload, revision, &self.groups, &membership);
        let reserved = ledger.reserved_by_group(workload, revision);
        for (c, g) in counts.iter_mut().zip(&self.groups) {
            *c += reserved.get(&g.name).copied().unwrap_or(0);
        }
        counts
    }
}

/// Where one pod of a distributed workload should go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DistributionDecision {
    /// Index into the rule's groups; `None` leaves the pod unmutated.
    pub group: Option<usize>,
    pub group_name: Option<String>,
    /// Labels to add to the pod's nodeSelector (the group's `matchLabels`).
    pub node_selector: Labels,
    /// Pods seen plus reservations, per group, before this pod.
    pub counts: Vec<u32>,
    pub target: Vec<u32>,
    pub fell_back: bool,
    pub reason: String,
}

/// Decide the group of `pod` under `rule`: [`distribution_feasibility`], then
/// [`decide_distribution_with`].
pub fn decide_distribution(
    index: &CountIndex,
    ledger: &Ledger,
    rule: &DistributionRule,
    pod: &Pod,
) -> Result<DistributionDecision, Error> {
    let feasibility = distribution_feasibility(index, rule, pod);
    decide_distribution_with(index, ledger, rule, pod, &feasibility)
}

/// Whether each group of `rule` has a node that fits `pod`: the costly part of a decision (it walks the
/// nodes), and it only reads the index, so the webhook computes it before it takes the lock that counting
/// and reserving need.
pub fn distribution_feasibility(index: &CountIndex, rule: &DistributionRule, pod: &Pod) -> Vec<Feasibility> {
    let membership = rule.membership(index);
    (0..rule.groups.len() as u16)
        .map(|g| {
            let nodes = index.nodes_with_ids().filter(|(id, _)| membership[*id] == Some(g)).map(|(_, n)| n);
            group::or_new_node(group::first_fit(nodes, pod), &rule.groups[g as usize], pod)
        })
        .collect()
}

/// Decide the group of `pod` under `rule` from counts (pods seen plus reservations) and each group's
/// `feasibility` ([`distribution_feasibility`], one entry per group).
pub fn decide_distribution_with(
    index: &CountIndex,
    ledger: &Ledger,
    rule: &DistributionRule,
    pod: &Pod,
    feasibility: &[Feasibility],
) -> Result<DistributionDecision, Error> {
    let Some(workload) = &pod.workload else {
        return Ok(DistributionDecision {
            group: None,
            group_name: None,
            node_selector: Labels::new(),
            counts: vec![],
            target: vec![],
            fell_back: false,
            reason: "pod has no controller: not distributed".into(),
        });
    };
    let counts = rule.counts(index, ledger, workload, rule.revision(pod));
    let mut choice = rule.apportionment.choose(&counts, feasibility, rule.fallback)?;
    let group = choice.group.map(|i| &rule.groups[i]);
    // A group chosen for a node not made yet says so: the pod waits for the autoscaler.
    if let Some(i) = choice.group
        && feasibility[i].node.is_none()
        && feasibility[i].new_node
    {
        choice.reason.push_str(&format!("; {}: {}", rule.groups[i].name, feasibility[i]));
    }
    Ok(DistributionDecision {
        group: choice.group,
        group_name: group.map(|g| g.name.clone()),
        node_selector: group.map(|g| g.selector.match_labels.clone()).unwrap_or_default(),
        counts,
        target: choice.target,
        fell_back: choice.fell_back,
        reason: choice.reason,
    })
}

/// At least as many pods as count for `pod`'s workload under `rule` right now (seen plus reserved): the
/// size the next decision's table lookup needs at most, so that the caller can build the table before
/// taking a lock. It counts the workload's pods outside the rule's groups too: that bound costs
/// O(revisions), where the exact count walks every place the workload has (done once, under the lock).
pub fn counted(index: &CountIndex, ledger: &Ledger, rule: &DistributionRule, pod: &Pod) -> u32 {
    let Some(workload) = &pod.workload else { return 0 };
    let revision = rule.revision(pod);
    let reserved: u32 = ledger.reserved_by_group(workload, revision).values().sum();
    index.workload_pods(workload, revision).saturating_add(reserved)
}

/// The ledger key under which a zone scope's reservations are counted.
pub fn zone_scope_key(namespace: &str, name: &str) -> WorkloadRef {
    WorkloadRef::new(WorkloadKind::Other("ZoneBalancer".into()), namespace, name)
}

/// Where one single-replica pod should go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneDecision {
    /// `None` leaves the pod unmutated (see `reason`).
    pub zone: Option<String>,
    pub loads: Vec<ZoneLoad>,
    pub reason: String,
}

/// Decide the zone of `pod` in a registered scope. `ledger_key` is the scope's reservation key
/// ([`zone_scope_key`]); `declared` are the zones the balancer lists.
pub fn decide_zone(
    index: &CountIndex,
    ledger: &Ledger,
    scope: ScopeId,
    ledger_key: &WorkloadRef,
    declared: &[String],
    pod: &Pod,
) -> ZoneDecision {
    let feasibility = zone_feasibility(index, scope, declared, pod);
    decide_zone_with(index, ledger, scope, ledger_key, feasibility, pod)
}

/// Each zone of the scope (and each declared zone) with whether a node in it fits `pod`: the costly,
/// read-only part of a zone decision, computed before the lock that counting and reserving need.
pub fn zone_feasibility(
    index: &CountIndex,
    scope: ScopeId,
    declared: &[String],
    pod: &Pod,
) -> std::collections::BTreeMap<String, Feasibility> {
    let topology_key = index.zone_scope(scope).map_or(crate::ZONE_LABEL, |s| s.topology_key.as_str());
    zone::zone_feasibility(index.zone_nodes(scope), declared, topology_key, pod)
}

/// Decide the zone of `pod` from the zones' `feasibility` ([`zone_feasibility`]) and the counts.
pub fn decide_zone_with(
    index: &CountIndex,
    ledger: &Ledger,
    scope: ScopeId,
    ledger_key: &WorkloadRef,
    mut feasibility: std::collections::BTreeMap<String, Feasibility>,
    pod: &Pod,
) -> ZoneDecision {
    let (Some(registered), Some(seen)) = (index.zone_scope(scope), index.zone_counts(scope)) else {
        let reason = "the zone balancer's scope is no longer registered (it changed meanwhile): left alone";
        return ZoneDecision { zone: None, loads: vec![], reason: reason.to_string() };
    };
    if let Some(z) = zone::pinned_zone(pod, &registered.topology_key) {
        return ZoneDecision { zone: None, loads: vec![], reason: format!("pod already pins zone {z}: left alone") };
    }
    let domains: Vec<String> = feasibility.keys().cloned().collect();
    let reserved = ledger.reserved_by_group(ledger_key, None);
    let loads: Vec<ZoneLoad> = domains
        .iter()
        .map(|z| ZoneLoad {
            zone: z.clone(),
            pods: seen.get(z).copied().unwrap_or(0),
            reserved: reserved.get(z).copied().unwrap_or(0),
            feasibility: feasibility.remove(z).unwrap_or(Feasibility::none()),
        })
        .collect();
    let choice = zone::choose_zone(&loads);
    ZoneDecision { zone: choice.zone, loads, reason: choice.reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ZoneScope;
    use crate::ledger::Reservation;
    use crate::model::{NodeBuilder, PodBuilder, Snapshot};
    use crate::selector::LabelSelector;
    use crate::taints::{Effect, Taint, Toleration};

    fn cluster() -> Snapshot {
        let mut nodes = Vec::new();
        for z in ["a", "b", "c"] {
            nodes.push(NodeBuilder::new(format!("od-{z}")).zone(z).label("node-type", "ondemand").build());
            nodes.push(
                NodeBuilder::new(format!("spot-{z}"))
                    .zone(z)
                    .label("node-type", "spot")
                    .taint(Taint::new("spot", "true", Effect::NoSchedule))
                    .build(),
            );
        }
        Snapshot::new(nodes, vec![], vec![], vec![])
    }

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_burst_with_reservations_lands_on_target() {
        let index = CountIndex::from_snapshot(&cluster());
        let mut ledger = Ledger::new();
        let rule = DistributionRule::new(
            vec![
                (NodeGroup::new("ondemand", LabelSelector::from_pairs([("node-type", "ondemand")])), 80),
                (NodeGroup::new("spot", LabelSelector::from_pairs([("node-type", "spot")])), 20),
            ],
            None,
            Fallback::Next,
        )
        .unwrap();
        // Eight pods admitted before any reaches the index.
        for i in 0..8 {
            let pod = PodBuilder::new("ns", format!("web-{i}"))
                .deployment("web")
                .revision("r1")
                .pending()
                .toleration(Toleration::exists("spot", None))
                .build();
            let d = decide_distribution(&index, &ledger, &rule, &pod).unwrap();
            let group = d.group_name.clone().unwrap();
            assert_eq!(d.node_selector.get("node-type"), Some(&group));
            ledger.add(Reservation {
                id: format!("uid-{i}"),
                workload: pod.workload.clone().unwrap(),
                revision: pod.revision.clone(),
                group,
                pod: Some(pod.key()),
                expires: ts(60),
            });
        }
        let w = WorkloadRef::deployment("ns", "web");
        assert_eq!(rule.counts(&index, &ledger, &w, Some("r1")), rule.apportionment.target(8));
        assert_eq!(rule.apportionment.target(8), vec![6, 2]);
    }

    /// Three on-demand nodes, a 1:3 on-demand:spot rule whose spot group has no node yet: with spot
    /// autoscaled, a burst of 15 lands on target (4 and 11) and the spot pods' reason says why.
    #[test]
    fn an_autoscaled_group_with_no_node_yet_gets_its_share() {
        let nodes =
            ["a", "b", "c"].map(|z| NodeBuilder::new(format!("od-{z}")).zone(z).label("node-type", "ondemand").build());
        let index = CountIndex::from_snapshot(&Snapshot::new(nodes.to_vec(), vec![], vec![], vec![]));
        let spot = NodeGroup::new("spot", LabelSelector::from_pairs([("node-type", "spot")]));
        let ondemand = NodeGroup::new("ondemand", LabelSelector::from_pairs([("node-type", "ondemand")]));
        let rule = |spot: NodeGroup| {
            DistributionRule::new(vec![(ondemand.clone(), 1), (spot, 3)], None, Fallback::Next).unwrap()
        };
        let burst = |rule: &DistributionRule| {
            let mut ledger = Ledger::new();
            let mut reasons = Vec::new();
            for i in 0..15 {
                let pod = PodBuilder::new("ns", format!("web-{i}"))
                    .deployment("web")
                    .revision("r1")
                    .pending()
                    .toleration(Toleration::exists("spot", None))
                    .build();
                let d = decide_distribution(&index, &ledger, rule, &pod).unwrap();
                let group = d.group_name.clone().unwrap();
                reasons.push((group.clone(), d.reason.clone()));
                ledger.add(Reservation {
                    id: format!("uid-{i}"),
                    workload: pod.workload.clone().unwrap(),
                    revision: pod.revision.clone(),
                    group,
                    pod: Some(pod.key()),
                    expires: ts(60),
                });
            }
            (rule.counts(&index, &ledger, &WorkloadRef::deployment("ns", "web"), Some("r1")), reasons)
        };
        let (counts, _) = burst(&rule(spot.clone()));
        assert_eq!(counts, vec![15, 0], "no spot node and not autoscaled: everything falls back");
        let autoscaled = rule(spot.autoscaled(vec![Taint::new("spot", "true", Effect::NoSchedule)]));
        let (counts, reasons) = burst(&autoscaled);
        assert_eq!(counts, autoscaled.apportionment.target(15));
        assert_eq!(counts, vec![4, 11]);
        let (_, reason) = reasons.iter().find(|(g, _)| g == "spot").unwrap();
        assert!(reason.ends_with("; spot: no node yet; autoscaled, and a new node could run the pod"), "{reason}");
    }

    #[test]
    fn untolerated_spot_falls_back_with_the_reason() {
        let index = CountIndex::from_snapshot(&cluster());
        let rule =
            DistributionRule::from_strategy(&"weight=1,nodeSelector=node-type:spot".parse().unwrap(), Fallback::Next)
                .unwrap();
        let pod = PodBuilder::new("ns", "p").deployment("w").pending().build();
        let d = decide_distribution(&index, &Ledger::new(), &rule, &pod).unwrap();
        assert_eq!(d.group, None);
        assert!(d.reason.contains("untolerated taint spot=true:NoSchedule"), "{}", d.reason);
    }

    #[test]
    fn zone_decisions_count_reservations_and_skip_pinned_pods() {
        let mut index = CountIndex::new();
        let scope = index
            .add_zone_scope(
                ZoneScope {
                    namespace: "tools".into(),
                    selector: LabelSelector::default(),
                    topology_key: crate::ZONE_LABEL.into(),
                },
                [],
            )
            .unwrap();
        index.reset(&cluster());
        let key = zone_scope_key("tools", "zb");
        let mut ledger = Ledger::new();
        let mut chosen = Vec::new();
        for i in 0..4 {
            let pod = PodBuilder::new("tools", format!("t{i}")).deployment(format!("t{i}")).pending().build();
            let d = decide_zone(&index, &ledger, scope, &key, &[], &pod);
            let z = d.zone.clone().unwrap();
            ledger.add(Reservation {
                id: i.to_string(),
                workload: key.clone(),
                revision: None,
                group: z.clone(),
                pod: None,
                expires: ts(60),
            });
            chosen.push(z);
        }
        assert_eq!(chosen, vec!["a", "b", "c", "a"]);
        let pinned =
            PodBuilder::new("tools", "j").deployment("j").pending().node_selector(crate::ZONE_LABEL, "b").build();
        let d = decide_zone(&index, &ledger, scope, &key, &[], &pinned);
        assert_eq!(d.zone, None);
        assert_eq!(d.reason, "pod already pins zone b: left alone");
    }
}
