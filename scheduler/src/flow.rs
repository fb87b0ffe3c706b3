//! Minimum-cost flow over a petgraph network.
//!
//! petgraph brings maximum flow (`dinics`, `ford_fulkerson`) but no minimum-cost flow, and the
//! solver needs costs to prefer keeping members where they are. This is the textbook
//! successive-shortest-path method: every arc is stored with its residual twin (edge `2k` and
//! `2k + 1`), and each round augments along a cheapest residual path found with a queue-based
//! Bellman-Ford, so that negative residual costs are handled. Networks here are small (shard
//! *types* × zones, not shards × nodes), so the simple method is fast enough.

use std::collections::VecDeque;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;

/// Residual capacity and cost of one arc.
#[derive(Debug, Clone, Copy)]
struct Residual {
    capacity: i64,
    cost: i64,
}

/// A flow network whose arcs have capacities and per-unit costs.
#[derive(Debug, Default)]
pub(crate) struct FlowNetwork {
    graph: DiGraph<(), Residual>,
}

/// Result of [`FlowNetwork::min_cost_flow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowOutcome {
    /// Units sent from source to sink.
    pub value: u64,
}

impl FlowNetwork {
    /// An empty network.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex.
    pub(crate) fn add_vertex(&mut self) -> NodeIndex {
        self.graph.add_node(())
    }

    /// Adds an arc and returns its handle for [`FlowNetwork::flow`]. Arcs with zero capacity
    /// are still added so that handles stay valid.
    pub(crate) fn add_arc(
        &mut self,
        from: NodeIndex,
        to: NodeIndex,
        capacity: u64,
        cost: i64,
    ) -> EdgeIndex {
        let capacity = i64::try_from(capacity).unwrap_or(i64::MAX / 4);
        let forward = self.graph.add_edge(from, to, Residual { capacity, cost });
        self.graph.add_edge(
            to,
            from,
            Residual {
                capacity: 0,
                cost: -cost,
            },
        );
        forward
    }

    /// Units flowing through the arc `arc` (a handle from [`FlowNetwork::add_arc`]).
    pub(crate) fn flow(&self, arc: EdgeIndex) -> u64 {
        let twin = EdgeIndex::new(arc.index() ^ 1);
        self.graph
            .edge_weight(twin)
            .map_or(0, |r| u64::try_from(r.capacity).unwrap_or(0))
    }

    /// Sends up to `limit` units from `source` to `sink` at the least total cost.
    pub(crate) fn min_cost_flow(
        &mut self,
        source: NodeIndex,
        sink: NodeIndex,
        limit: u64,
    ) -> FlowOutcome {
        let mut sent: u64 = 0;
        while sent < limit {
            let Some(path) = self.cheapest_path(source, sink) else {
                break;
            };
            let bottleneck = path
                .iter()
                .filter_map(|e| self.graph.edge_weight(*e).map(|r| r.capacity))
                .min()
                .unwrap_or(0);
            let room = i64::try_from(limit - sent).unwrap_or(i64::MAX);
            let push = bottleneck.min(room);
            if push <= 0 {
                break;
            }
            for edge in path {
                if let Some(r) = self.graph.edge_weight_mut(edge) {
                    r.capacity -= push;
                }
                if let Some(r) = self.graph.edge_weight_mut(EdgeIndex::new(edge.index() ^ 1)) {
                    r.capacity += push;
                }
            }
            sent += u64::try_from(push).unwrap_or(0);
        }
        FlowOutcome { value: sent }
    }

    /// The cheapest residual path from `source` to `sink`, as arcs in order.
    fn cheapest_path(&self, source: NodeIndex, sink: NodeIndex) -> Option<Vec<EdgeIndex>> {
        let n = self.graph.node_count();
        let mut distance = vec![i64::MAX; n];
        let mut via: Vec<Option<EdgeIndex>> = vec![None; n];
        let mut queued = vec![false; n];
        let mut queue = VecDeque::new();
        distance[source.index()] = 0;
        queue.push_back(source);
        queued[source.index()] = true;
        while let Some(u) = queue.pop_front() {
            queued[u.index()] = false;
            let du = distance[u.index()];
            for edge in self.graph.edges(u) {
                let r = edge.weight();
                if r.capacity <= 0 {
                    continue;
                }
                let v = edge.target().index();
                let dv = du.saturating_add(r.cost);
                if dv < distance[v] {
                    distance[v] = dv;
                    via[v] = Some(edge.id());
                    if !queued[v] {
                        queued[v] = true;
                        queue.push_back(edge.target());
                    }
                }
            }
        }
        if distance[sink.index()] == i64::MAX {
            return None;
        }
        let mut path = Vec::new();
        let mut at = sink;
        while at != source {
            let edge = via[at.index()]?;
            path.push(edge);
            at = self.graph.edge_endpoints(edge)?.0;
        }
        path.reverse();
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_cheap_arcs_and_respects_capacity() {
        let mut net = FlowNetwork::new();
        let s = net.add_vertex();
        let a = net.add_vertex();
        let b = net.add_vertex();
        let t = net.add_vertex();
        let sa = net.add_arc(s, a, 3, 0);
        let sb = net.add_arc(s, b, 3, 0);
        let at = net.add_arc(a, t, 2, 1);
        let bt = net.add_arc(b, t, 5, 4);
        let ab = net.add_arc(a, b, 5, 0);
        let out = net.min_cost_flow(s, t, 4);
        assert_eq!(out.value, 4);
        assert_eq!(net.flow(at), 2);
        assert_eq!(net.flow(bt), 2);
        assert_eq!(net.flow(sa) + net.flow(sb), 4);
        assert!(net.flow(ab) <= 1);
    }

    #[test]
    fn reroutes_through_negative_residuals() {
        // Two sources of demand compete for one cheap sink arc; the second unit must push the
        // first onto its alternative to reach minimum total cost.
        let mut net = FlowNetwork::new();
        let s = net.add_vertex();
        let x = net.add_vertex();
        let y = net.add_vertex();
        let p = net.add_vertex();
        let q = net.add_vertex();
        let t = net.add_vertex();
        net.add_arc(s, x, 1, 0);
        net.add_arc(s, y, 1, 0);
        let xp = net.add_arc(x, p, 1, 0);
        let xq = net.add_arc(x, q, 1, 1);
        let yp = net.add_arc(y, p, 1, 0);
        let yq = net.add_arc(y, q, 1, 10);
        net.add_arc(p, t, 1, 0);
        net.add_arc(q, t, 1, 0);
        let out = net.min_cost_flow(s, t, 2);
        assert_eq!(out.value, 2);
        assert_eq!(
            (net.flow(xp), net.flow(xq), net.flow(yp), net.flow(yq)),
            (0, 1, 1, 0)
        );
    }
}
