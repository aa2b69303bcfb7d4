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
//! Under the verdicts sits a second, shared level: whether the node's cards can take the pod's
//! *device* requests (the filter without the node's CPU and memory), remembered per device
//! shape and node version. Pod shapes that differ only in CPU or memory, or in the node
//! policy, share it: a shape seen for the first time filters every node again, but its card
//! fits are mostly known already (the Alibaba trace has 151 pod shapes over 25 device shapes).
//!
//! A memo belongs to one [`crate::pipeline::Scheduler`] and one [`Ledger`] lineage (the ledger
//! and its clones from the moment the memo is first used): the owner keeps them together.

use crate::hash::{FastBuild, FastHasher};
use crate::ledger::{Ledger, NodeId};
use crate::policy::{DevicePolicyChain, NodePolicyKind, Scored, TieRule};
use crate::request::{ContainerRequest, PodRequest};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

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
/// per node id, the node version they hold for and the compact verdict. The policy's cards are
/// not kept: only the winner's are needed, and the pipeline asks the policy for them again.
#[derive(Debug, Clone)]
struct ShapeMemo {
    shape: Shape,
    /// Per node id, the node version the verdict holds for and the verdict, side by side: the
    /// candidate loop reads both for every node it visits, and one cache line then serves both.
    slots: Vec<(u64, Hot)>,
    /// The best node under the remembered verdicts, kept current as they change (built on
    /// the first indexed decision; dropped when a verdict changes under another tie order).
    index: Option<BestIndex>,
    /// Per node id, why it refused this shape (a bit per [`crate::fit::Reason`]) and the node
    /// version that was at; grown only for shapes that failed somewhere.
    reasons: Vec<(u64, u32)>,
    /// Position of this shape's device shape in [`ScoreMemo::devices`].
    device: usize,
}

/// The remembered card fits of one device shape: per node id, the node version and whether
/// the node's cards could take the requests at that version.
#[derive(Debug, Clone)]
struct DeviceFits {
    fits: Vec<(u64, bool)>,
}

/// A pod's device requests without its identity, CPU, memory or node policy: what the card
/// half of the filter reads (with the device policy chain, which orders the cards).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DeviceShape {
    containers: Vec<ContainerRequest>,
    numa_bind: bool,
    chain: DevicePolicyChain,
}

impl DeviceShape {
    fn of(shape: &Shape) -> DeviceShape {
        DeviceShape {
            containers: shape.containers.clone(),
            numa_bind: shape.numa_bind,
            chain: shape.chain.clone(),
        }
    }
}

/// The value remembered in `slots` for node `id` at `version`, or `compute`'s, then
/// remembered; `added` counts the slots grown. Version 0 never matches a present node.
#[inline]
fn remembered<T: Copy + Default>(
    slots: &mut Vec<(u64, T)>,
    added: &mut usize,
    id: NodeId,
    version: u64,
    compute: impl FnOnce() -> T,
) -> T {
    let i = id as usize;
    if slots.len() <= i {
        *added += i + 1 - slots.len();
        slots.resize(i + 1, (0, T::default()));
    }
    match slots[i] {
        (v, value) if version != 0 && v == version => value,
        _ => {
            let value = compute();
            slots[i] = (version, value);
            value
        }
    }
}

/// The card fits of one device shape, lent to a verdict computation (see
/// [`ShapeSlots::refresh`]).
#[derive(Debug)]
pub struct DeviceSlots<'a> {
    fits: &'a mut DeviceFits,
    added: &'a mut usize,
}

impl DeviceSlots<'_> {
    /// Whether node `id`'s cards take the shape's device requests at `version`: remembered
    /// for that version, or computed with `compute` and remembered. The answer must not
    /// depend on the pod's CPU, memory or node policy (the slots are shared across them).
    #[inline]
    pub fn fits(&mut self, id: NodeId, version: u64, compute: impl FnOnce() -> bool) -> bool {
        remembered(&mut self.fits.fits, self.added, id, version, compute)
    }
}

/// How tied nodes are ordered, as a best-node index needs it: a rank per node id (lower
/// wins, then the lower id; ids past the end rank last) and what the ranks were taken from.
#[derive(Debug, Clone, Copy)]
struct TieOrder<'a> {
    ranks: &'a [u32],
    source: OrderSource,
}

/// Where a [`TieOrder`]'s ranks come from; two orders with equal sources rank alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderSource {
    /// A fixed rank list, identified by its address and length (it lives in the scheduler's
    /// configuration, which a memo never outlives unchanged — see [`ScoreMemo::clear`]).
    Ranks(usize, usize),
    /// Name order positions at a ledger names epoch.
    Names(u64),
}

impl<'a> TieOrder<'a> {
    /// Ties go to the lowest `ranks[node id]` (the FGD artifact's fixed node priority).
    fn ranks(ranks: &'a [u32]) -> TieOrder<'a> {
        TieOrder {
            ranks,
            source: OrderSource::Ranks(ranks.as_ptr() as usize, ranks.len()),
        }
    }

    /// The index key of node `id` with `score`: a larger key wins (never 0).
    #[inline]
    fn key(&self, id: usize, score: i64) -> u128 {
        let rank = self.ranks.get(id).copied().unwrap_or(u32::MAX);
        // Lower (rank, id) must win, so the low half is its complement; node ids stay far
        // below u32::MAX, which keeps the low half (and the key) non-zero.
        let tie = !((u64::from(rank) << 32) | id as u64);
        let high = (score as u64) ^ (1 << 63);
        (u128::from(high) << 64) | u128::from(tie)
    }
}

/// A max segment tree over node ids of index keys (0: not a candidate).
#[derive(Debug, Clone)]
struct BestIndex {
    source: OrderSource,
    /// Leaves; a power of two at least the node id bound when built.
    cap: usize,
    /// `tree[1]` is the root, `tree[cap + i]` the leaf of node `i`.
    tree: Vec<u128>,
    /// The same shape: how many nodes under each subtree passed the filter (scored, vetoed
    /// or feasible), so the root holds the count and the k-th feasible node is a descent.
    counts: Vec<u32>,
    /// Every node whose ledger version is at most this is current in the memo and the tree.
    synced: u64,
}

impl BestIndex {
    #[inline]
    fn set(&mut self, i: usize, key: u128, feasible: bool) {
        let mut j = self.cap + i;
        self.tree[j] = key;
        self.counts[j] = u32::from(feasible);
        while j > 1 {
            j >>= 1;
            let best = self.tree[2 * j].max(self.tree[2 * j + 1]);
            let count = self.counts[2 * j] + self.counts[2 * j + 1];
            if self.tree[j] == best && self.counts[j] == count {
                // The ancestors were computed from the same children: nothing above changes.
                break;
            }
            self.tree[j] = best;
            self.counts[j] = count;
        }
    }

    /// The `k`-th (from 0, in node id order) node that passed the filter.
    fn nth_feasible(&self, mut k: u32) -> Option<NodeId> {
        if k >= self.counts[1] {
            return None;
        }
        let mut j = 1;
        while j < self.cap {
            if k < self.counts[2 * j] {
                j *= 2;
            } else {
                k -= self.counts[2 * j];
                j = 2 * j + 1;
            }
        }
        Some((j - self.cap) as NodeId)
    }

    /// The winner: its score and node id.
    fn best(&self) -> Option<(i64, NodeId)> {
        let top = self.tree[1];
        if top == 0 {
            return None;
        }
        let score = (((top >> 64) as u64) ^ (1 << 63)) as i64;
        let id = (!(top as u64)) & u64::from(u32::MAX);
        Some((score, id as NodeId))
    }
}

/// The index key a compact verdict contributes, and whether the node counts as feasible.
#[inline]
fn leaf(order: &TieOrder<'_>, i: usize, hot: Hot) -> (u128, bool) {
    match hot {
        Hot::Scored(s) => (order.key(i, s), true),
        Hot::Vetoed | Hot::Feasible => (0, true),
        Hot::Infeasible => (0, false),
    }
}

/// The outcome of an indexed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedBest {
    /// The winning score and node, if any node passed and was scored.
    pub best: Option<(i64, NodeId)>,
    /// How many nodes passed the filter.
    pub feasible: u32,
}

impl ShapeMemo {
    fn grow(&mut self, bound: usize) -> usize {
        let before = self.slots.len();
        if before < bound {
            // Version 0 never matches a present node: every new slot computes first.
            self.slots.resize(bound, (0, Hot::Infeasible));
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

    /// The hash of `Shape::of(req, policy, chain)`, without building it (no clone per pod).
    fn hash_of(req: &PodRequest, policy: NodePolicyKind, chain: &DevicePolicyChain) -> u64 {
        let mut h = FastHasher::default();
        // Field by field as the derived `Hash` of `Shape` does; names hash as empty strings.
        req.containers.len().hash(&mut h);
        for c in &req.containers {
            "".hash(&mut h);
            c.init.hash(&mut h);
            c.devices.hash(&mut h);
        }
        req.cpu_milli.hash(&mut h);
        req.memory_mib.hash(&mut h);
        req.numa_bind.hash(&mut h);
        policy.hash(&mut h);
        chain.hash(&mut h);
        h.finish()
    }

    /// Whether this is `Shape::of(req, policy, chain)`.
    fn is_of(&self, req: &PodRequest, policy: NodePolicyKind, chain: &DevicePolicyChain) -> bool {
        self.cpu_milli == req.cpu_milli
            && self.memory_mib == req.memory_mib
            && self.numa_bind == req.numa_bind
            && self.policy == policy
            && self.containers.len() == req.containers.len()
            && self
                .containers
                .iter()
                .zip(&req.containers)
                .all(|(a, b)| a.init == b.init && a.devices == b.devices)
            && self.chain == *chain
    }
}

/// Remembered verdicts per pod shape and node. Bounded: when it holds more than
/// [`ScoreMemo::MAX_SLOTS`] node slots it forgets everything and starts again (correct, only
/// slower for a while).
#[derive(Debug, Clone, Default)]
pub struct ScoreMemo {
    shapes: HashMap<u64, Vec<ShapeMemo>, FastBuild>,
    /// Card fits per device shape, shared by the pod shapes in `shapes` that point here.
    devices: Vec<DeviceFits>,
    /// Positions in `devices` by device shape.
    device_index: HashMap<DeviceShape, usize, FastBuild>,
    /// Node slots held in `devices` (counted against [`ScoreMemo::MAX_SLOTS`] with `slots`).
    device_slots: usize,
    slots: usize,
    hits: u64,
    misses: u64,
    /// Name order positions by node id, and the ledger names epoch they were taken at.
    name_ranks: Option<(u64, Vec<u32>)>,
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
    device: DeviceSlots<'a>,
    hits: &'a mut u64,
    misses: &'a mut u64,
    added: &'a mut usize,
    order: Option<TieOrder<'a>>,
}

impl ScoreMemo {
    /// Upper bound on remembered (shape, node) verdicts and (device shape, node) card fits
    /// before the memo resets.
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

    /// Forget everything. Required after the scheduler's configuration changed (its policies,
    /// weights or tie ranks): the memo trusts them to stay as they were.
    pub fn clear(&mut self) {
        self.shapes.clear();
        self.devices.clear();
        self.device_index.clear();
        self.device_slots = 0;
        self.slots = 0;
        self.name_ranks = None;
    }

    /// The slots of `req`'s shape under `policy` and `chain`, sized for `ledger`'s node ids;
    /// `tie` is the scheduler's tie rule, which [`ShapeSlots::best`] needs.
    pub fn slots_for<'a>(
        &'a mut self,
        ledger: &Ledger,
        req: &PodRequest,
        policy: NodePolicyKind,
        chain: &DevicePolicyChain,
        tie: &'a TieRule,
    ) -> ShapeSlots<'a> {
        let bound = ledger.node_id_bound();
        if self.slots + self.device_slots + bound > Self::MAX_SLOTS {
            self.clear();
        }
        if matches!(tie, TieRule::NameOrder)
            && self
                .name_ranks
                .as_ref()
                .is_none_or(|(epoch, _)| *epoch != ledger.names_epoch())
        {
            let mut ranks = vec![u32::MAX; bound];
            for (pos, (_, id)) in ledger.names().enumerate() {
                if let Some(r) = ranks.get_mut(id as usize) {
                    *r = pos as u32;
                }
            }
            self.name_ranks = Some((ledger.names_epoch(), ranks));
        }
        let order = match tie {
            // Uniform random ties have no total order to index: decisions scan every node.
            TieRule::Uniform => None,
            TieRule::NodePriority(r) => Some(TieOrder::ranks(r)),
            TieRule::NameOrder => self.name_ranks.as_ref().map(|(epoch, r)| TieOrder {
                ranks: r,
                source: OrderSource::Names(*epoch),
            }),
        };
        let bucket = self
            .shapes
            .entry(Shape::hash_of(req, policy, chain))
            .or_default();
        let pos = match bucket
            .iter()
            .position(|m| m.shape.is_of(req, policy, chain))
        {
            Some(p) => p,
            None => {
                let shape = Shape::of(req, policy, chain);
                let devices = &mut self.devices;
                let device = *self
                    .device_index
                    .entry(DeviceShape::of(&shape))
                    .or_insert_with(|| {
                        devices.push(DeviceFits { fits: Vec::new() });
                        devices.len() - 1
                    });
                bucket.push(ShapeMemo {
                    shape,
                    slots: Vec::new(),
                    index: None,
                    reasons: Vec::new(),
                    device,
                });
                bucket.len() - 1
            }
        };
        let memo = &mut bucket[pos];
        self.slots += memo.grow(bound);
        ShapeSlots {
            device: DeviceSlots {
                fits: &mut self.devices[memo.device],
                added: &mut self.device_slots,
            },
            memo,
            hits: &mut self.hits,
            misses: &mut self.misses,
            added: &mut self.slots,
            order,
        }
    }
}

impl<'a> ShapeSlots<'a> {
    /// The positions of the nodes in name order, by node id, current for the ledger these
    /// slots were taken for (`None` unless the tie rule is name order). Comparing two nodes'
    /// positions is comparing their names, without reading them.
    pub fn name_positions(&self) -> Option<&'a [u32]> {
        self.order
            .filter(|o| matches!(o.source, OrderSource::Names(_)))
            .map(|o| o.ranks)
    }

    /// Make node `id`'s remembered verdict current for `version`, computing it with `compute`
    /// when the one remembered is for another version (or none is), and return its compact
    /// part. `compute` is lent the shape's card fits ([`DeviceSlots::fits`]).
    #[inline]
    pub fn refresh(
        &mut self,
        id: NodeId,
        version: u64,
        compute: impl FnOnce(&mut DeviceSlots<'_>) -> Verdict,
    ) -> Hot {
        let i = id as usize;
        if version != 0
            && let Some(&(v, hot)) = self.memo.slots.get(i)
            && v == version
        {
            *self.hits += 1;
            return hot;
        }
        let verdict = compute(&mut self.device);
        self.recompute(i, version, verdict)
    }

    /// The slow path of [`ShapeSlots::refresh`]: remember `verdict` for node `i` at `version`.
    #[cold]
    fn recompute(&mut self, i: usize, version: u64, verdict: Verdict) -> Hot {
        if self.memo.slots.len() <= i {
            *self.added += self.memo.grow(i + 1);
        }
        *self.misses += 1;
        let hot = match verdict {
            Verdict::Infeasible => Hot::Infeasible,
            Verdict::Feasible => Hot::Feasible,
            Verdict::Vetoed => Hot::Vetoed,
            Verdict::Scored(s) => Hot::Scored(s.score),
        };
        if let Some(ix) = self.memo.index.as_mut() {
            match self.order {
                Some(order) if order.source == ix.source && i < ix.cap => {
                    let (key, is) = leaf(&order, i, hot);
                    ix.set(i, key, is);
                }
                // The index cannot follow this change: the next indexed decision rebuilds it.
                _ => self.memo.index = None,
            }
        }
        self.memo.slots[i] = (version, hot);
        hot
    }

    /// The best node among all of `ledger`'s nodes under the tie order given to
    /// [`ScoreMemo::slots_for`], bringing the remembered verdicts current first: only the
    /// nodes changed since this shape's last indexed decision are recomputed (with
    /// `compute`), unless the ledger's change log no longer reaches back that far or the tie
    /// order changed, when every node is revisited. `None` when the tie order cannot be
    /// indexed. Scores are indexed only when the policy is deterministic (memoizable); a
    /// `Feasible` verdict (a randomised policy's) has no score and counts as feasible only,
    /// which is all [`ShapeSlots::nth_feasible`] needs.
    pub fn best(
        &mut self,
        ledger: &Ledger,
        mut compute: impl FnMut(NodeId, &mut DeviceSlots<'_>) -> Verdict,
    ) -> Option<IndexedBest> {
        let order = self.order?;
        let bound = ledger.node_id_bound();
        let caught_up = match &self.memo.index {
            Some(ix) if ix.source == order.source && ix.cap >= bound => {
                match ledger.changes_since(ix.synced) {
                    Some(changed) if changed.len() <= bound => {
                        for id in changed {
                            self.refresh(id, ledger.version(id), |d| compute(id, d));
                        }
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !caught_up {
            self.memo.index = None;
            for i in 0..bound {
                let id = i as NodeId;
                self.refresh(id, ledger.version(id), |d| compute(id, d));
            }
            let cap = bound.max(1).next_power_of_two();
            let mut ix = BestIndex {
                source: order.source,
                cap,
                tree: vec![0; 2 * cap],
                counts: vec![0; 2 * cap],
                synced: 0,
            };
            for (i, &(_, hot)) in self.memo.slots.iter().enumerate().take(bound) {
                let (key, feasible) = leaf(&order, i, hot);
                ix.tree[cap + i] = key;
                ix.counts[cap + i] = u32::from(feasible);
            }
            for j in (1..cap).rev() {
                ix.tree[j] = ix.tree[2 * j].max(ix.tree[2 * j + 1]);
                ix.counts[j] = ix.counts[2 * j] + ix.counts[2 * j + 1];
            }
            self.memo.index = Some(ix);
        }
        let ix = self.memo.index.as_mut()?;
        ix.synced = ledger.clock();
        Some(IndexedBest {
            best: ix.best(),
            feasible: ix.counts[1],
        })
    }

    /// Why node `id` refuses this shape at `version`, as a bit per [`crate::fit::Reason`] (by
    /// declaration position): remembered for that version, or computed with `compute` and
    /// remembered. The reasons are a function of the shape and the node's state, as verdicts
    /// are (see the module documentation). Not counted in [`MemoStats`], which counts verdicts.
    pub fn reasons(&mut self, id: NodeId, version: u64, compute: impl FnOnce() -> u32) -> u32 {
        remembered(&mut self.memo.reasons, self.added, id, version, compute)
    }

    /// After [`ShapeSlots::best`]: the `k`-th node (from 0, in node id order) that passed the
    /// filter, for policies that pick uniformly among feasible nodes.
    pub fn nth_feasible(&self, k: u32) -> Option<NodeId> {
        self.memo.index.as_ref()?.nth_feasible(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::PodBuilder;
    use crate::request::RequestTranslator;

    fn pod(
        name: &str,
        container: &str,
        limits: &[(&str, &str)],
        gpu_type: Option<&str>,
    ) -> PodRequest {
        let mut b = PodBuilder::new(name).container(container, limits);
        if let Some(t) = gpu_type {
            b = b.annotation("nvidia.com/use-gputype", t);
        }
        RequestTranslator::default()
            .translate(&b.build())
            .expect("test pods translate")
    }

    #[test]
    fn shapes_ignore_identity_and_tell_requests_apart() {
        let chain = DevicePolicyChain::default();
        let kind = NodePolicyKind::Binpack;
        let a = pod(
            "a",
            "main",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "4000")],
            None,
        );
        let same = pod(
            "b",
            "other",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "4000")],
            None,
        );
        let more = pod(
            "c",
            "main",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "5000")],
            None,
        );
        let typed = pod(
            "d",
            "main",
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "4000")],
            Some("A100"),
        );
        let shape = Shape::of(&a, kind, &chain);
        let derived = {
            let mut h = FastHasher::default();
            shape.hash(&mut h);
            h.finish()
        };
        assert_eq!(Shape::hash_of(&a, kind, &chain), derived);
        assert_eq!(Shape::hash_of(&same, kind, &chain), derived);
        assert!(shape.is_of(&a, kind, &chain) && shape.is_of(&same, kind, &chain));
        assert!(!shape.is_of(&more, kind, &chain));
        assert!(!shape.is_of(&typed, kind, &chain));
        assert!(!shape.is_of(&a, NodePolicyKind::Spread, &chain));
    }
}
