//! The topology digested for solving: nodes sorted by name with their member slots, grouped
//! into zones.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Node, NodeStatus, Request, Topology};

/// A node with the number of members it can hold.
#[derive(Debug)]
pub(crate) struct NodeInfo<'a> {
    pub name: &'a str,
    /// Index into [`Inventory::zones`].
    pub zone: usize,
    /// Members of this cluster that fit; 0 when not schedulable.
    pub slots: u32,
    pub status: &'a NodeStatus,
}

/// A failure domain: a zone, or the single pseudo-zone of nodes without the zone label.
#[derive(Debug)]
pub(crate) struct ZoneInfo<'a> {
    /// Zone name; `""` for the unlabeled pseudo-zone.
    pub name: &'a str,
    /// False for the pseudo-zone of unlabeled nodes.
    pub labeled: bool,
    /// Node indices, by name.
    pub nodes: Vec<usize>,
    /// Sum of the nodes' slots.
    pub slots: u64,
    /// Nodes that are not ready, cordoned or tainted.
    pub not_ready: usize,
    pub cordoned: usize,
    pub tainted: usize,
    /// Schedulable nodes without room for one member.
    pub full: usize,
}

/// Nodes and zones of a topology, prepared for one request.
#[derive(Debug)]
pub(crate) struct Inventory<'a> {
    pub nodes: Vec<NodeInfo<'a>>,
    pub zones: Vec<ZoneInfo<'a>>,
    by_name: HashMap<&'a str, usize>,
}

impl<'a> Inventory<'a> {
    /// Digests `topology` for `request`. Zones are sorted by name with the unlabeled
    /// pseudo-zone, if any, last.
    pub(crate) fn new(topology: &'a Topology, request: &Request) -> Self {
        let mut sorted: Vec<&'a Node> = topology.nodes.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.dedup_by(|later, earlier| later.name == earlier.name);

        let mut zone_names: BTreeMap<&'a str, ()> = BTreeMap::new();
        let mut unlabeled = false;
        for node in &sorted {
            match &node.zone {
                Some(zone) => {
                    zone_names.insert(zone.as_str(), ());
                }
                None => unlabeled = true,
            }
        }
        let mut zones: Vec<ZoneInfo<'a>> = zone_names
            .keys()
            .map(|name| ZoneInfo::new(name, true))
            .collect();
        if unlabeled {
            zones.push(ZoneInfo::new("", false));
        }
        let zone_index: HashMap<&str, usize> = zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.labeled)
            .map(|(i, z)| (z.name, i))
            .collect();
        let unlabeled_index = zones.len().saturating_sub(1);

        let mut nodes = Vec::with_capacity(sorted.len());
        let mut by_name = HashMap::with_capacity(sorted.len());
        for node in sorted {
            let zone = node
                .zone
                .as_deref()
                .and_then(|z| zone_index.get(z).copied())
                .unwrap_or(unlabeled_index);
            let slots = slots(node, request);
            let index = nodes.len();
            if let Some(info) = zones.get_mut(zone) {
                info.nodes.push(index);
                info.slots += u64::from(slots);
                match node.status {
                    NodeStatus::Schedulable if slots == 0 => info.full += 1,
                    NodeStatus::Schedulable => {}
                    NodeStatus::NotReady => info.not_ready += 1,
                    NodeStatus::Cordoned => info.cordoned += 1,
                    NodeStatus::Tainted { .. } => info.tainted += 1,
                }
            }
            by_name.insert(node.name.as_str(), index);
            nodes.push(NodeInfo {
                name: node.name.as_str(),
                zone,
                slots,
                status: &node.status,
            });
        }
        Self {
            nodes,
            zones,
            by_name,
        }
    }

    /// Index of the node called `name`.
    pub(crate) fn node(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Name of node `index`.
    pub(crate) fn node_name(&self, index: usize) -> &'a str {
        self.nodes.get(index).map_or("", |n| n.name)
    }

    /// Zone index of node `index`.
    pub(crate) fn zone_of(&self, index: usize) -> usize {
        self.nodes.get(index).map_or(0, |n| n.zone)
    }

    /// Name of zone `index`.
    pub(crate) fn zone_name(&self, index: usize) -> &'a str {
        self.zones.get(index).map_or("", |z| z.name)
    }

    /// Slots of node `index`.
    pub(crate) fn slots(&self, index: usize) -> u32 {
        self.nodes.get(index).map_or(0, |n| n.slots)
    }

    /// Labeled zones with at least one free slot: the zones Required spread counts.
    pub(crate) fn zones_with_capacity(&self) -> impl Iterator<Item = (usize, &ZoneInfo<'a>)> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.labeled && z.slots > 0)
    }

    /// Number of nodes without the zone label.
    pub(crate) fn unlabeled_nodes(&self) -> usize {
        self.zones
            .iter()
            .filter(|z| !z.labeled)
            .map(|z| z.nodes.len())
            .sum()
    }

    /// Free slots of unlabeled nodes.
    pub(crate) fn unlabeled_slots(&self) -> u64 {
        self.zones
            .iter()
            .filter(|z| !z.labeled)
            .map(|z| z.slots)
            .sum()
    }
}

impl<'a> ZoneInfo<'a> {
    fn new(name: &'a str, labeled: bool) -> Self {
        Self {
            name,
            labeled,
            nodes: Vec::new(),
            slots: 0,
            not_ready: 0,
            cordoned: 0,
            tainted: 0,
            full: 0,
        }
    }

    /// Why this zone offers nothing, when it has no free slot.
    pub(crate) fn why_empty(&self) -> String {
        let mut parts = Vec::new();
        for (count, what) in [
            (self.not_ready, "not ready"),
            (self.cordoned, "cordoned"),
            (self.tainted, "tainted"),
            (self.full, "full"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        }
        if parts.is_empty() {
            "no nodes".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Members of this cluster that fit on `node`.
fn slots(node: &Node, request: &Request) -> u32 {
    if !node.status.is_schedulable() {
        return 0;
    }
    let capacity = node.capacity;
    let resources = request.member_resources;
    let mut fit = u64::from(capacity.pods);
    // A zero request leaves that resource out of the count.
    if let Some(by_cpu) = capacity.cpu_millis.checked_div(resources.cpu_millis) {
        fit = fit.min(by_cpu);
    }
    if let Some(by_memory) = capacity.memory_bytes.checked_div(resources.memory_bytes) {
        fit = fit.min(by_memory);
    }
    if request.one_member_per_node {
        fit = fit.min(1);
    }
    u32::try_from(fit).unwrap_or(u32::MAX)
}
