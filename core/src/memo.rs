//! A per-node memo of filter and score results, so that scheduling a pod revisits only the
//! nodes that changed since a pod of the same shape was last scheduled.
//!
//! Why it is exact: a deterministic node policy's verdict on a node is a function of the
//! pod's *shape* (its requests without its identity), the node's state and the scheduler's
//! fixed settings. The ledger stamps every node change with a fresh version, so a verdict
//! remembered under (shape, node, version) is the verdict the pipeline would compute again.
//! What is not a function of those is never memoised: randomised policies (they say so through
//! [`crate::policy::NodePolicy::memoizable`]) and pods whose namespace has a device quota (its
//! remaining room changes with other nodes' grants).
//!
//! A memo belongs to one [`crate::pipeline::Scheduler`] and one [`Ledger`] lineage (the ledger
//! and its clones from the moment the memo is first used): the owner keeps them together.

use crate::ledger::{Ledger, NodeId};
use crate::policy::{DevicePolicyChain, NodePolicyKind, Placement, Scored};
use crate::request::{ContainerRequest, PodRequest};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// What the pipeline concluded about one node for one pod shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The filter refused the node (or the node is gone).
    Infeasible,
    /// The node passed the filter; the policy's score is not remembered (randomised policy).
    Feasible,
    /// The node passed the filter but the node policy vetoed it.
    Vetoed,
    /// The node passed and was scored.
    Scored(Scored),
}

/// The compact part of a remembered verdict, scanned for every node on every pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot {
    /// Nothing remembered, or the filter refused the node.
    Infeasible,
    /// Filter passed, score to be computed now.
    Feasible,
    /// Filter passed, policy vetoed.
    Vetoed,
    /// Filter passed with this score.
    Scored(i64),
}

/// The remembered verdicts of one pod shape under one node policy and device policy chain:
/// per node id, the node version they hold for, the compact verdict and the policy's cards.
#[derive(Debug, Clone)]
struct ShapeMemo {
    shape: Shape,
    versions: Vec<u64>,
    hot: Vec<Hot>,
    cards: Vec<Option<Placement>>,
}

impl ShapeMemo {
    fn grow(&mut self, bound: usize) -> usize {
        let before = self.versions.len();
        if before < bound {
            // Version 0 never matches a present node: every new slot computes first.
            self.versions.resize(bound, 0);
            self.hot.resize(bound, Hot::Infeasible);
            self.cards.resize(bound, None);
        }
        bound.saturating_sub(before)
    }
}

/// A pod's requests without its identity: what the filter and a deterministic policy read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    containers: Vec<ContainerRequest>,
    cpu_milli: u64,
    memory_mib: u64,
    numa_bind: bool,
    policy: NodePolicyKind,
    chain: DevicePolicyChain,
}

impl Shape {
    fn of(req: &PodRequest, policy: NodePolicyKind, chain: &DevicePolicyChain) -> Shape {
        Shape {
            containers: req
                .containers
                .iter()
                .map(|c| ContainerRequest {
                    // The name labels the grant; it does not change what fits.
                    name: String::new(),
                    init: c.init,
                    devices: c.devices.clone(),
                })
                .collect(),
            cpu_milli: req.cpu_milli,
            memory_mib: req.memory_mib,
            numa_bind: req.numa_bind,
            policy,
            chain: chain.clone(),
        }
    }

    fn hash64(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// Remembered verdicts per pod shape and node. Bounded: when it holds more than
/// [`ScoreMemo::MAX_SLOTS`] node slots it forgets everything and starts again (correct, only
/// slower for a while).
#[derive(Debug, Clone, Default)]
pub struct ScoreMemo {
    shapes: HashMap<u64, Vec<ShapeMemo>>,
    slots: usize,
    hits: u64,
    misses: u64,
}

/// Statistics of a memo's use, for benchmarks and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoStats {
    /// Verdicts served from the memo.
    pub hits: u64,
    /// Verdicts computed (and remembered).
    pub misses: u64,
    /// Distinct pod shapes remembered.
    pub shapes: usize,
}

/// A handle on the remembered verdicts of one pod shape, borrowed for one scheduling decision.
#[derive(Debug)]
pub struct ShapeSlots<'a> {
    memo: &'a mut ShapeMemo,
    hits: &'a mut u64,
    misses: &'a mut u64,
    added: &'a mut usize,
}

impl ScoreMemo {
    /// Upper bound on remembered (shape, node) verdicts before the memo resets.
    pub const MAX_SLOTS: usize = 1 << 22;

    /// An empty memo.
    pub fn new() -> ScoreMemo {
        ScoreMemo::default()
    }

    /// Hit and miss counts so far.
    pub fn stats(&self) -> MemoStats {
        MemoStats {
            hits: self.hits,
            misses: self.misses,
            shapes: self.shapes.values().map(Vec::len).sum(),
        }
    }

    /// Forget everything (for example after the scheduler's configuration changed).
    pub fn clear(&mut self) {
        self.shapes.clear();
        self.slots = 0;
    }

    /// The slots of `req`'s shape under `policy` and `chain`, sized for `ledger`'s node ids.
    pub fn slots_for(
        &mut self,
        ledger: &Ledger,
        req: &PodRequest,
        policy: NodePolicyKind,
        chain: &DevicePolicyChain,
    ) -> ShapeSlots<'_> {
        let bound = ledger.node_id_bound();
        if self.slots + bound > Self::MAX_SLOTS {
            self.clear();
        }
        let shape = Shape::of(req, policy, chain);
        let bucket = self.shapes.entry(shape.hash64()).or_default();
        let pos = match bucket.iter().position(|m| m.shape == shape) {
            Some(p) => p,
            None => {
                bucket.push(ShapeMemo {
                    shape,
                    versions: Vec::new(),
                    hot: Vec::new(),
                    cards: Vec::new(),
                });
                bucket.len() - 1
            }
        };
        let memo = &mut bucket[pos];
        self.slots += memo.grow(bound);
        ShapeSlots {
            memo,
            hits: &mut self.hits,
            misses: &mut self.misses,
            added: &mut self.slots,
        }
    }
}

impl ShapeSlots<'_> {
    /// Make node `id`'s remembered verdict current for `version`, computing it with `compute`
    /// when the one remembered is for another version (or none is), and return its compact
    /// part.
    #[inline]
    pub fn refresh(&mut self, id: NodeId, version: u64, compute: impl FnOnce() -> Verdict) -> Hot {
        let i = id as usize;
        if version != 0 && self.memo.versions.get(i) == Some(&version) {
            *self.hits += 1;
            return self.memo.hot[i];
        }
        self.recompute(i, version, compute())
    }

    /// The slow path of [`ShapeSlots::refresh`]: remember `verdict` for node `i` at `version`.
    #[cold]
    fn recompute(&mut self, i: usize, version: u64, verdict: Verdict) -> Hot {
        if self.memo.versions.len() <= i {
            *self.added += self.memo.grow(i + 1);
        }
        *self.misses += 1;
        let (hot, cards) = match verdict {
            Verdict::Infeasible => (Hot::Infeasible, None),
            Verdict::Feasible => (Hot::Feasible, None),
            Verdict::Vetoed => (Hot::Vetoed, None),
            Verdict::Scored(s) => (Hot::Scored(s.score), s.placement),
        };
        self.memo.versions[i] = version;
        self.memo.hot[i] = hot;
        self.memo.cards[i] = cards;
        hot
    }

    /// The cards the policy chose on node `id` with its remembered score (`None`: the device
    /// policy chooses).
    pub fn cards(&self, id: NodeId) -> Option<&Placement> {
        self.memo.cards.get(id as usize).and_then(Option::as_ref)
    }
}
