//! HAMi's node policies: binpack (the most used node first) and spread (the least used first).

use super::{NodePolicy, NodePolicyKind, ScoreContext, Scored};
use crate::ledger::NodeView;
use crate::model::{DeviceUsage, Node};
use crate::request::PodRequest;

/// HAMi's node usage score, `10 × (Σused/Σslots + Σcores/Σtotal cores + Σmem/Σtotal mem)` over
/// the node's cards, as fixed-point millionths so comparisons are exact and deterministic.
/// The ledger keeps it cached per node ([`NodeView::usage_score`]); this computes it.
pub fn node_usage_score(node: &Node, usage: &[DeviceUsage]) -> i64 {
    let (mut used, mut slots, mut uc, mut tc, mut um, mut tm) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for (d, u) in node.devices.iter().zip(usage) {
        used += u64::from(u.used);
        slots += u64::from(d.split_count);
        uc += u64::from(u.used_cores);
        tc += u64::from(d.cores);
        um += u.used_mem;
        tm += d.memory_mib;
    }
    let f = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let s = 10.0 * (f(used, slots) + f(uc, tc) + f(um, tm));
    (s * 1_000_000.0).round() as i64
}

/// Binpack's score: the node's usage score (the fuller node wins).
fn fuller_first(node: &NodeView<'_>) -> i64 {
    node.usage_score
}

/// Spread's score: the negated usage score (the emptier node wins).
fn emptier_first(node: &NodeView<'_>) -> i64 {
    -node.usage_score
}

/// Binpack: prefer the node with the highest usage score.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binpack;

impl NodePolicy for Binpack {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::Binpack
    }
    fn node_score(&self) -> Option<fn(&NodeView<'_>) -> i64> {
        Some(fuller_first)
    }
    fn score(
        &self,
        _cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        _req: &PodRequest,
    ) -> Option<Scored> {
        Some(Scored {
            score: fuller_first(node),
            placement: None,
        })
    }
}

/// Spread: prefer the node with the lowest usage score.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread;

impl NodePolicy for Spread {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::Spread
    }
    fn node_score(&self) -> Option<fn(&NodeView<'_>) -> i64> {
        Some(emptier_first)
    }
    fn score(
        &self,
        _cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        _req: &PodRequest,
    ) -> Option<Scored> {
        Some(Scored {
            score: emptier_first(node),
            placement: None,
        })
    }
}
