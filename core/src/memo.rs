//! A per-node memo of filter and score results, so that scheduling a pod revisits only the
//! nodes that changed since a pod of the same shape was last scheduled.
//!
//! Why it is exact: a deterministic node policy's verdict on a node is a function of the
//! pod's *shape* (its requests without its identity), the node's state and the scheduler's
//! fixed settings. The ledger stamps every node change with a fresh version, so a verdict
//! remembered under (shape, node, version) is the verdict the pipeline would compute again.
//! A *refusal* lives longer: the filter asks for free slots, memory, cores, CPU and memory,
//! and idle cards, which a grant added to the node only takes away, so a node that refused a
//! shape still refuses it until the node next makes room (a release, a registration: the
//! ledger's [`Ledger::freed`] version). Remembered refusals are carried across grant-only
//! changes; anything else is asked again.
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
//! Choosing the winner over all nodes takes one of two indexes. A policy whose score is the
//! node's alone (binpack, spread: [`crate::policy::NodePolicy::node_score`]) ranks the nodes
//! the same for every pod, so the card-fit level keeps, per device shape, a tree of the
//! nodes by score with their free CPU and memory ([`ShapeSlots::best_by_node_score`]): a pod
//! shape needs no index of its own, and a card fit is asked only of a changed node that could
//! win. Other deterministic policies keep a best-node index per pod shape
//! ([`ShapeSlots::best`]). A pod that fits nowhere is told why from reasons remembered per
//! node version and summed per shape as nodes change ([`ShapeSlots::reason_totals`]).
//! Spread, whose best node is the emptiest (whose cards take nearly anything), first looks
//! in one order of all nodes that every device shape shares, so that a node change updates
//! one tree instead of one per device shape.
//!
//! A memo belongs to one [`crate::pipeline::Scheduler`] and one [`Ledger`] lineage (the ledger
//! and its clones from the moment the memo is first used): the owner keeps them together.

use crate::fit::node_room;
use crate::hash::{FastBuild, FastHasher};
use crate::ledger::{Ledger, NodeId, NodeView};
use crate::policy::devices::FitScratch;
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
    /// The refusals summed over all nodes, kept current as nodes change (built on the first
    /// [`ShapeSlots::reason_totals`]).
    totals: Option<ReasonTotals>,
    /// Position of this shape's device shape in [`ScoreMemo::devices`].
    device: usize,
}

/// The remembered card fits of one device shape: per node id, the node version and whether
/// the node's cards could take the requests at that version.
#[derive(Debug, Clone)]
struct DeviceFits {
    fits: Vec<(u64, bool)>,
    /// Per node id, why the cards refuse the device shape (reason bits, see
    /// [`DeviceSlots::reasons`]) and the node version that was at; grown only for device
    /// shapes that failed somewhere.
    reasons: Vec<(u64, u32)>,
    /// The nodes these cards fit on, by node policy score (see [`DeviceOrder`]); at most one
    /// per node policy.
    orders: Vec<DeviceOrder>,
    /// Searches of [`NodeOrders`] in a row that gave up on this device shape, and how many
    /// decisions go straight to its own order before the next one is tried.
    shared_gave_up: (u32, u32),
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

/// Whether a refusal remembered at node version `at` still holds for a node last freed at
/// `freed` ([`Ledger::freed`]): only grants were added since, and they make no room. Version
/// 0 is "never remembered".
#[inline]
fn refusal_holds(at: u64, freed: u64) -> bool {
    at != 0 && at >= freed
}

/// [`remembered`] for a yes/no fit: a refusal that still holds ([`refusal_holds`]) is also
/// carried to `version` without `compute`.
#[inline]
fn remembered_fit(
    slots: &mut Vec<(u64, bool)>,
    added: &mut usize,
    id: NodeId,
    (version, freed): (u64, u64),
    compute: impl FnOnce() -> bool,
) -> bool {
    let i = id as usize;
    if let Some(slot) = slots.get_mut(i)
        && version != 0
        && !slot.1
        && refusal_holds(slot.0, freed)
    {
        slot.0 = version;
        return false;
    }
    remembered(slots, added, id, version, compute)
}

/// The card fits of one device shape, lent to a verdict computation (see
/// [`ShapeSlots::refresh`]).
#[derive(Debug)]
pub struct DeviceSlots<'a> {
    fits: &'a mut DeviceFits,
    added: &'a mut usize,
}

impl DeviceSlots<'_> {
    /// Whether node `id`'s cards take the shape's device requests at `version`, the node's
    /// [`Ledger::version`] (`freed` is its [`Ledger::freed`]): remembered for that version, or
    /// a refusal remembered since the node last made room, or computed with `compute` and
    /// remembered. The answer must not depend on the pod's CPU, memory or node policy (the
    /// slots are shared across them), and must be a fit that more grants on the node can
    /// only take away.
    #[inline]
    pub fn fits(
        &mut self,
        id: NodeId,
        (version, freed): (u64, u64),
        compute: impl FnOnce() -> bool,
    ) -> bool {
        remembered_fit(
            &mut self.fits.fits,
            self.added,
            id,
            (version, freed),
            compute,
        )
    }

    /// Why node `id`'s cards refuse the shape's device requests at `version`, as reason bits
    /// (see [`ShapeSlots::reasons`]): remembered for that version, or computed with `compute`
    /// and remembered. Like [`DeviceSlots::fits`], the answer must not depend on the pod's
    /// CPU, memory or node policy: pod shapes that fail for their cards share it.
    #[inline]
    pub fn reasons(&mut self, id: NodeId, version: u64, compute: impl FnOnce() -> u32) -> u32 {
        remembered(&mut self.fits.reasons, self.added, id, version, compute)
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
        (top != 0).then(|| (score_of(top), node_of(top)))
    }
}

/// The node a non-zero [`TieOrder::key`] was made for.
#[inline]
fn node_of(key: u128) -> NodeId {
    ((!(key as u64)) & u64::from(u32::MAX)) as NodeId
}

/// The score a non-zero [`TieOrder::key`] was made with.
#[inline]
fn score_of(key: u128) -> i64 {
    (((key >> 64) as u64) ^ (1 << 63)) as i64
}

/// What a node contributes to a [`DeviceOrder`], and a subtree's summary of its nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OrderEntry {
    /// The node's [`TieOrder::key`] under the policy's node score, or the best key below; 0:
    /// none (the node is absent or its cards do not take the device shape).
    key: u128,
    /// Unrequested CPU on the node (milli-cores; `u64::MAX` when the node does not track
    /// CPU), or the most on any candidate below.
    cpu: u64,
    /// Unrequested memory on the node (MiB; `u64::MAX` when untracked), or the most below.
    mem: u64,
}

impl OrderEntry {
    /// The summary of two subtrees.
    #[inline]
    fn merge(l: OrderEntry, r: OrderEntry) -> OrderEntry {
        OrderEntry {
            key: l.key.max(r.key),
            cpu: l.cpu.max(r.cpu),
            mem: l.mem.max(r.mem),
        }
    }
}

/// For one device shape and a node policy whose score is the node's alone
/// ([`crate::policy::NodePolicy::node_score`]): the nodes whose cards take the shape, as a max
/// tree of their score keys that also keeps each subtree's most free CPU and memory. Every
/// pod shape with these device requests shares it, whatever its CPU and memory: the best
/// node for a pod is a descent that skips subtrees without the room it asks for. Pod shapes
/// far outnumber device shapes (the Alibaba trace: 151 over 25), and only the device shape's
/// tree pays for a node change.
///
/// Card fits are asked lazily: a changed node whose fit is not remembered for its version
/// enters *stale*, with the key it would have if its cards fit (an upper bound). Only a
/// stale leaf that the descent would pick is asked, and then it is made exact. So a node
/// change costs a tree update, and a card fit is computed only for nodes that could win:
/// spread asks a few of the emptiest, binpack the fullest.
#[derive(Debug, Clone)]
struct DeviceOrder {
    policy: NodePolicyKind,
    source: OrderSource,
    /// Leaves; a power of two at least the node id bound when built.
    cap: usize,
    /// `tree[1]` is the root, `tree[cap + i]` the leaf of node `i`.
    tree: Vec<OrderEntry>,
    /// Per node id: whether its leaf is stale (its key assumes the cards fit; not yet asked).
    stale: Vec<bool>,
    /// Every node whose ledger version is at most this is current in the tree.
    synced: u64,
}

impl DeviceOrder {
    /// An order with `cap` leaves, none a candidate, synced to nothing yet.
    fn empty(policy: NodePolicyKind, source: OrderSource, cap: usize) -> DeviceOrder {
        DeviceOrder {
            policy,
            source,
            cap,
            tree: vec![OrderEntry::default(); 2 * cap],
            stale: vec![false; cap],
            synced: 0,
        }
    }

    fn set(&mut self, i: usize, leaf: OrderEntry, stale: bool) {
        self.stale[i] = stale;
        let mut j = self.cap + i;
        self.tree[j] = leaf;
        // The subtree's summary rides up in a register: each level reads only the sibling
        // and the stored parent.
        let mut below = leaf;
        while j > 1 {
            let merged = OrderEntry::merge(below, self.tree[j ^ 1]);
            j >>= 1;
            if self.tree[j] == merged {
                // The ancestors were computed from the same children: nothing above changes.
                break;
            }
            self.tree[j] = merged;
            below = merged;
        }
    }

    /// Bring the order to `ledger`'s state under tie order `source`: the leaves of the nodes
    /// changed since it was last synced, or all of them when the ledger's change log no
    /// longer reaches back (or the ledger outgrew it, or the tie order changed). `leaf(id)`
    /// is node `id`'s leaf and whether it is stale; new leaves count toward `added`.
    fn sync(
        &mut self,
        ledger: &Ledger,
        source: OrderSource,
        added: &mut usize,
        mut leaf: impl FnMut(NodeId) -> (OrderEntry, bool),
    ) {
        let bound = ledger.node_id_bound();
        let caught_up = self.source == source
            && self.cap >= bound
            && match ledger.latest_changes_since(self.synced) {
                Some((n, changed)) if n <= bound => {
                    for id in changed {
                        let (e, stale) = leaf(id);
                        self.set(id as usize, e, stale);
                    }
                    true
                }
                _ => false,
            };
        if !caught_up {
            let cap = bound.max(1).next_power_of_two();
            // A tree's leaves count as card-fit slots toward the memo's bound.
            *added += cap.saturating_sub(self.cap);
            *self = DeviceOrder::empty(self.policy, source, cap);
            for i in 0..bound {
                let (e, stale) = leaf(i as NodeId);
                self.tree[cap + i] = e;
                self.stale[i] = stale;
            }
            for j in (1..cap).rev() {
                self.tree[j] = OrderEntry::merge(self.tree[2 * j], self.tree[2 * j + 1]);
            }
        }
        self.synced = ledger.clock();
    }

    /// The largest key among the nodes with at least `cpu` and `mem` free, making exact with
    /// `resolve(i)` (the leaf of node `i` as it truly is) every stale leaf that could win.
    fn best(
        &mut self,
        cpu: u64,
        mem: u64,
        mut resolve: impl FnMut(usize) -> OrderEntry,
    ) -> Option<u128> {
        let Ok(found) = self.descend::<std::convert::Infallible>(cpu, mem, |tree, i, e| {
            if !tree.stale[i] {
                return Ok(e);
            }
            // Exact now: the same key if the cards fit, none if not. Ancestors only go down,
            // so the pending branches stay sound.
            let exact = resolve(i);
            tree.set(i, exact, false);
            Ok(exact)
        });
        found
    }

    /// The largest key among the nodes with at least `cpu` and `mem` free, as the leaves count
    /// when reached: `leaf(tree, i, e)` is what the leaf `e` of node `i` counts as (a key of 0:
    /// not a candidate), or a reason to give up. Depth-first, the child with the larger key
    /// first: a branch is left as soon as it cannot beat the best found or lacks the room.
    #[inline(always)]
    fn descend<E>(
        &mut self,
        cpu: u64,
        mem: u64,
        mut leaf: impl FnMut(&mut DeviceOrder, usize, OrderEntry) -> Result<OrderEntry, E>,
    ) -> Result<Option<u128>, E> {
        let mut best = 0u128;
        // At most one pending sibling per level (a tree has fewer than `usize::BITS` levels);
        // the first child is entered at once, not pushed and popped.
        let mut stack = [0usize; usize::BITS as usize];
        let mut top = 0;
        let mut j = 1;
        loop {
            let e = self.tree[j];
            if e.key > best && e.cpu >= cpu && e.mem >= mem {
                if j < self.cap {
                    let (l, r) = (2 * j, 2 * j + 1);
                    let (first, second) = if self.tree[l].key >= self.tree[r].key {
                        (l, r)
                    } else {
                        (r, l)
                    };
                    stack[top] = second;
                    top += 1;
                    j = first;
                    continue;
                }
                let e = leaf(self, j - self.cap, e)?;
                if e.key > best && e.cpu >= cpu && e.mem >= mem {
                    best = e.key;
                }
            }
            if top == 0 {
                break;
            }
            top -= 1;
            j = stack[top];
        }
        Ok((best != 0).then_some(best))
    }

    /// The largest key among the nodes with at least `cpu` and `mem` free for which
    /// `fits(i)` holds, asking `fits` of at most `budget` nodes (`Err` past that). For an
    /// order with exact leaves (no stale ones): [`NodeOrders`]. The leaves keep their keys
    /// whatever `fits` says.
    fn best_fitting(
        &mut self,
        cpu: u64,
        mem: u64,
        mut budget: u32,
        mut fits: impl FnMut(usize) -> bool,
    ) -> Result<Option<u128>, ()> {
        self.descend(cpu, mem, |_, i, e| {
            if budget == 0 {
                return Err(());
            }
            budget -= 1;
            Ok(if fits(i) { e } else { OrderEntry::default() })
        })
    }
}

/// Spread's order of all present nodes by score, with their free CPU and memory, whatever
/// their cards (rebuilt when the tie order changes; see [`ShapeSlots::best_by_node_score`]).
///
/// Spread's best node is the emptiest, and an empty node's cards take nearly any pod: the
/// winner is nearly always the first node of this order that has the room, its card fit
/// remembered per device shape. One order for every device shape costs one update per node
/// change, where an order per device shape cost one per device shape in use (about a dozen
/// on the Alibaba trace, each climbing to the root: the emptiest node just filled was on top
/// in all of them). A device shape whose first candidates refuse it takes its own order.
#[derive(Debug, Clone, Default)]
struct NodeOrders {
    /// Spread's order (the only policy that takes this path), once built.
    order: Option<DeviceOrder>,
    /// How many nodes a search may ask before it gives up: [`SHARED_ORDER_BUDGET`] unless a
    /// test set another ([`ScoreMemo::set_shared_order_budget`]).
    budget: Option<u32>,
}

/// How many nodes a device shape's card fit is asked of in [`NodeOrders`] before the search
/// goes to the device shape's own order, which leaves out the nodes that refuse it.
const SHARED_ORDER_BUDGET: u32 = 32;

/// The index key a compact verdict contributes, and whether the node counts as feasible.
#[inline]
fn leaf(order: &TieOrder<'_>, i: usize, hot: Hot) -> (u128, bool) {
    match hot {
        Hot::Scored(s) => (order.key(i, s), true),
        Hot::Vetoed | Hot::Feasible => (0, true),
        Hot::Infeasible => (0, false),
    }
}

/// A shape's refusal reasons summed over every present node, and what each node added.
#[derive(Debug, Clone)]
struct ReasonTotals {
    /// Per reason bit, how many nodes refuse for it.
    counts: [u32; REASON_BITS],
    /// Present nodes counted.
    nodes: u32,
    /// Per node id what it adds: 0 for an absent node, else [`PRESENT`] with its reason bits.
    added: Vec<u32>,
    /// Every node whose ledger version is at most this is counted as it is now.
    synced: u64,
}

/// Reason bits a mask may carry ([`crate::fit::Reason`] has fewer): the top bit of
/// `ReasonTotals::added` marks a present node.
pub const REASON_BITS: usize = 31;
const PRESENT: u32 = 1 << REASON_BITS;

impl ReasonTotals {
    /// Count node `id` as `now` (0 or [`PRESENT`] with reason bits) instead of what it added.
    fn set(&mut self, id: NodeId, now: u32) {
        let i = id as usize;
        if self.added.len() <= i {
            self.added.resize(i + 1, 0);
        }
        let before = std::mem::replace(&mut self.added[i], now);
        for (mask, sign) in [(before, false), (now, true)] {
            if mask & PRESENT == 0 {
                continue;
            }
            let step = |n: &mut u32| *n = if sign { *n + 1 } else { *n - 1 };
            step(&mut self.nodes);
            let mut bits = mask & !PRESENT;
            while bits != 0 {
                step(&mut self.counts[bits.trailing_zeros() as usize]);
                bits &= bits - 1;
            }
        }
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
    /// Node slots held in `devices` and `node_orders` (counted against
    /// [`ScoreMemo::MAX_SLOTS`] with `slots`).
    device_slots: usize,
    /// Spread's order of all nodes, shared by every device shape.
    node_orders: NodeOrders,
    slots: usize,
    hits: u64,
    misses: u64,
    /// Name order positions by node id, and the ledger names epoch they were taken at.
    name_ranks: Option<(u64, Vec<u32>)>,
    /// The filter's working buffers, lent to each decision
    /// ([`crate::pipeline::Scheduler::schedule_with`]) and given back: no state, only memory.
    scratch: FitScratch,
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
    node_orders: &'a mut NodeOrders,
    hits: &'a mut u64,
    misses: &'a mut u64,
    added: &'a mut usize,
    order: Option<TieOrder<'a>>,
}

impl ScoreMemo {
    /// The filter's buffers, for one decision; [`ScoreMemo::put_scratch`] gives them back.
    pub(crate) fn take_scratch(&mut self) -> FitScratch {
        std::mem::take(&mut self.scratch)
    }

    /// Keep `scratch` (taken with [`ScoreMemo::take_scratch`]) for the next decision.
    pub(crate) fn put_scratch(&mut self, scratch: FitScratch) {
        self.scratch = scratch;
    }

    /// Upper bound on remembered (shape, node) verdicts and (device shape, node) card fits
    /// (with the leaves of the device shapes' node orders) before the memo resets.
    pub const MAX_SLOTS: usize = 1 << 22;

    /// An empty memo.
    pub fn new() -> ScoreMemo {
        ScoreMemo::default()
    }

    /// Ask at most `budget` nodes' card fits in spread's shared order before a device shape's
    /// own order (instead of [`SHARED_ORDER_BUDGET`]): for tests that reach both paths on
    /// small clusters. Decisions are the same whatever the budget.
    #[doc(hidden)]
    pub fn set_shared_order_budget(&mut self, budget: u32) {
        self.node_orders.budget = Some(budget);
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
        self.node_orders.order = None;
        self.device_slots = 0;
        self.slots = 0;
        self.name_ranks = None;
    }

    /// The slots of `req`'s shape under `policy` and `chain` (grown as verdicts are remembered);
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
                        devices.push(DeviceFits {
                            fits: Vec::new(),
                            reasons: Vec::new(),
                            orders: Vec::new(),
                            shared_gave_up: (0, 0),
                        });
                        devices.len() - 1
                    });
                bucket.push(ShapeMemo {
                    shape,
                    slots: Vec::new(),
                    index: None,
                    reasons: Vec::new(),
                    totals: None,
                    device,
                });
                bucket.len() - 1
            }
        };
        // A shape's verdict slots grow as verdicts are remembered: a policy whose score is the
        // node's alone decides from the device shape's order and never writes one (151 shapes
        // × 1,213 nodes on the Alibaba trace were 3.7 MB written for nothing).
        let memo = &mut bucket[pos];
        ShapeSlots {
            device: DeviceSlots {
                fits: &mut self.devices[memo.device],
                added: &mut self.device_slots,
            },
            node_orders: &mut self.node_orders,
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

    /// Make node `id`'s remembered verdict current for `version`, the node's
    /// [`Ledger::version`] (`freed` is its [`Ledger::freed`]), computing it with `compute`
    /// when the one remembered is for another version (or none is) and is not a refusal
    /// since the node last made room (the filter only refuses more as grants are added), and
    /// return its compact part. `compute` is lent the shape's card fits
    /// ([`DeviceSlots::fits`]).
    #[inline]
    pub fn refresh(
        &mut self,
        id: NodeId,
        (version, freed): (u64, u64),
        compute: impl FnOnce(&mut DeviceSlots<'_>) -> Verdict,
    ) -> Hot {
        let i = id as usize;
        if version != 0
            && let Some(slot) = self.memo.slots.get_mut(i)
        {
            if slot.0 == version {
                *self.hits += 1;
                return slot.1;
            }
            if slot.1 == Hot::Infeasible && refusal_holds(slot.0, freed) {
                // Still refused, and the index already says so.
                slot.0 = version;
                *self.hits += 1;
                return Hot::Infeasible;
            }
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
                match ledger.latest_changes_since(ix.synced) {
                    Some((n, changed)) if n <= bound => {
                        for id in changed {
                            self.refresh(id, (ledger.version(id), ledger.freed(id)), |d| {
                                compute(id, d)
                            });
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
                self.refresh(id, (ledger.version(id), ledger.freed(id)), |d| {
                    compute(id, d)
                });
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

    /// The best node for this shape when the node policy `policy` scores every feasible node
    /// by `score(node)` alone (its [`crate::policy::NodePolicy::node_score`]), under the tie
    /// order given to [`ScoreMemo::slots_for`]; `room` is the CPU (milli) and memory (MiB) the
    /// pod needs free on the node, when the filter checks them. `cards(node)` says whether
    /// the node's cards take the device requests (remembered per node version with the
    /// shape's card fits, [`DeviceSlots::fits`]); the answer is the node with the best score
    /// among those whose cards fit and that have the room, as [`ShapeSlots::best`] would find.
    /// The tree behind it belongs to the device shape, so pod shapes that differ in CPU,
    /// memory or identity share it (see `DeviceOrder`); of the nodes changed since its last
    /// use, only those that could win are asked, and each counts as a verdict computed
    /// ([`MemoStats::misses`]). Spread first searches the order of all nodes that every
    /// device shape shares (`NodeOrders`), asking the cards of the first few candidates;
    /// a device shape they all refuse goes to its own tree, and tries the shared one less
    /// often while it keeps being refused. Either way the answer is the same.
    ///
    /// `None` when the tie order cannot be indexed; `Some(None)` when no node qualifies.
    pub fn best_by_node_score(
        &mut self,
        ledger: &Ledger,
        policy: NodePolicyKind,
        score: fn(&NodeView<'_>) -> i64,
        room: Option<(u64, u64)>,
        mut cards: impl FnMut(&NodeView<'_>) -> bool,
    ) -> Option<Option<(i64, NodeId)>> {
        let order = self.order?;
        let (cpu, mem) = room.unwrap_or((0, 0));
        // A node's leaf if its cards fit; its room is what the filter's node check reads.
        let entry = |view: &NodeView<'_>| {
            let (cpu, mem) = node_room(view.node, view.used);
            OrderEntry {
                key: order.key(view.id as usize, score(view)),
                cpu,
                mem,
            }
        };
        if policy == NodePolicyKind::Spread
            && let Some(best) = self.shared_best(ledger, order, cpu, mem, entry, &mut cards)
        {
            return Some(best.map(|key| (score_of(key), node_of(key))));
        }
        let fits = &mut *self.device.fits;
        let k = match fits.orders.iter().position(|o| o.policy == policy) {
            Some(k) => k,
            None => {
                fits.orders
                    .push(DeviceOrder::empty(policy, order.source, 0));
                fits.orders.len() - 1
            }
        };
        let DeviceFits { fits, orders, .. } = fits;
        let tree = &mut orders[k];
        // A changed node's leaf, and whether it is stale (its card fit not remembered).
        let leaf = |id: NodeId, fits: &[(u64, bool)]| {
            let Some(view) = ledger.view(id) else {
                return (OrderEntry::default(), false);
            };
            let version = ledger.version(id);
            match fits.get(id as usize) {
                Some(&(v, fit)) if version != 0 && v == version => (
                    if fit {
                        entry(&view)
                    } else {
                        OrderEntry::default()
                    },
                    false,
                ),
                // Refused since the node last made room: still refused (see `Ledger::freed`).
                Some(&(v, false)) if version != 0 && refusal_holds(v, ledger.freed(id)) => {
                    (OrderEntry::default(), false)
                }
                _ => (entry(&view), true),
            }
        };
        tree.sync(ledger, order.source, self.device.added, |id| leaf(id, fits));
        let (cpu, mem) = room.unwrap_or((0, 0));
        let added = &mut *self.device.added;
        let misses = &mut *self.misses;
        let best = tree.best(cpu, mem, |i| {
            let id = i as NodeId;
            let Some(view) = ledger.view(id) else {
                return OrderEntry::default();
            };
            *misses += 1;
            let at = (ledger.version(id), ledger.freed(id));
            if remembered_fit(fits, added, id, at, || cards(&view)) {
                entry(&view)
            } else {
                OrderEntry::default()
            }
        });
        Some(best.map(|key| (score_of(key), node_of(key))))
    }

    /// Spread's search of the order all device shapes share ([`NodeOrders`]): the best key
    /// among the nodes with `cpu` and `mem` free whose cards fit (`cards`, remembered with the
    /// device shape's card fits), `None` when the search gave up or this device shape is
    /// waiting out its back-off after earlier give-ups (see [`DeviceFits::shared_gave_up`]).
    fn shared_best(
        &mut self,
        ledger: &Ledger,
        order: TieOrder<'_>,
        cpu: u64,
        mem: u64,
        entry: impl Fn(&NodeView<'_>) -> OrderEntry,
        cards: &mut impl FnMut(&NodeView<'_>) -> bool,
    ) -> Option<Option<u128>> {
        let (gave_up, skip) = self.device.fits.shared_gave_up;
        if skip > 0 {
            self.device.fits.shared_gave_up.1 -= 1;
            return None;
        }
        let tree = self
            .node_orders
            .order
            .get_or_insert_with(|| DeviceOrder::empty(NodePolicyKind::Spread, order.source, 0));
        tree.sync(ledger, order.source, self.device.added, |id| {
            (
                ledger.view(id).map(|v| entry(&v)).unwrap_or_default(),
                false,
            )
        });
        let budget = self.node_orders.budget.unwrap_or(SHARED_ORDER_BUDGET);
        let fits = &mut self.device.fits.fits;
        let added = &mut *self.device.added;
        let misses = &mut *self.misses;
        let found = tree.best_fitting(cpu, mem, budget, |i| {
            let id = i as NodeId;
            let Some(view) = ledger.view(id) else {
                return false;
            };
            let at = (ledger.version(id), ledger.freed(id));
            let mut asked = false;
            let fit = remembered_fit(fits, added, id, at, || {
                asked = true;
                cards(&view)
            });
            *misses += u64::from(asked);
            fit
        });
        match found {
            Ok(best) => {
                self.device.fits.shared_gave_up = (0, 0);
                Some(best)
            }
            Err(()) => {
                // Refused by the first candidates: a device shape refused again is tried there
                // less often (every 2, 4, … 64 decisions), as the nodes it fits on rarely
                // change.
                let gave_up = gave_up.saturating_add(1);
                self.device.fits.shared_gave_up = (gave_up, (1 << gave_up.min(6)) - 1);
                None
            }
        }
    }

    /// Why node `id` refuses this shape at `version`, as a bit per [`crate::fit::Reason`] (by
    /// declaration position): remembered for that version, or computed with `compute` and
    /// remembered. The reasons are a function of the shape and the node's state, as verdicts
    /// are (see the module documentation). Not counted in [`MemoStats`], which counts verdicts.
    /// `compute` is lent the shape's card-level memo ([`DeviceSlots::reasons`]).
    pub fn reasons(
        &mut self,
        id: NodeId,
        version: u64,
        compute: impl FnOnce(&mut DeviceSlots<'_>) -> u32,
    ) -> u32 {
        let device = &mut self.device;
        remembered(&mut self.memo.reasons, self.added, id, version, || {
            compute(device)
        })
    }

    /// Why the nodes refuse this shape, summed: per reason bit (as [`ShapeSlots::reasons`]
    /// gives them) the number of present nodes refusing for it, and the number of present
    /// nodes. Only nodes changed since this shape's last totals are asked again (with
    /// `compute`, lent the card-level memo as [`ShapeSlots::reasons`] lends it), unless the
    /// ledger's change log no longer reaches back that far. `compute` must give bits below
    /// [`REASON_BITS`].
    pub fn reason_totals(
        &mut self,
        ledger: &Ledger,
        mut compute: impl FnMut(&NodeView<'_>, &mut DeviceSlots<'_>) -> u32,
    ) -> ([u32; REASON_BITS], u32) {
        let bound = ledger.node_id_bound();
        // The nodes to count again: the changed ones, or all (from nothing) when there are no
        // totals yet or the log does not reach back.
        let changed = self.memo.totals.as_ref().and_then(|t| {
            ledger
                .latest_changes_since(t.synced)
                .filter(|(n, _)| *n <= bound)
                .map(|(_, changed)| changed)
        });
        // A node counted again changed since it was last counted, so its reasons are never
        // remembered at its version; counting from nothing (the first failure of a shape) has
        // nothing remembered either. So they are computed, not looked up in `reasons` (the
        // card-level reasons they read are remembered per device shape).
        let device = &mut self.device;
        let mut mask = |id: NodeId| match ledger.view(id) {
            Some(view) => PRESENT | (compute(&view, device) & !PRESENT),
            None => 0,
        };
        let mut totals = match (changed, self.memo.totals.take()) {
            (Some(changed), Some(mut totals)) => {
                for id in changed {
                    totals.set(id, mask(id));
                }
                totals
            }
            (_, before) => {
                let mut totals = ReasonTotals {
                    counts: [0; REASON_BITS],
                    nodes: 0,
                    added: vec![0; bound],
                    synced: 0,
                };
                *self.added += bound.saturating_sub(before.map_or(0, |t| t.added.len()));
                for id in 0..bound as NodeId {
                    totals.set(id, mask(id));
                }
                totals
            }
        };
        totals.synced = ledger.clock();
        let out = (totals.counts, totals.nodes);
        self.memo.totals = Some(totals);
        out
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

    proptest::proptest! {
        /// After any sequence of leaf changes (keys appearing and vanishing, room growing and
        /// shrinking, stale leaves whose cards may or may not fit), the descent finds what a
        /// scan of the true leaves finds.
        #[test]
        fn device_order_finds_the_best_leaf_with_room(
            sets in proptest::collection::vec(
                (0usize..13, 0u128..6, 0u64..5, 0u64..5, proptest::bool::ANY, proptest::bool::ANY),
                1..80,
            ),
            asks in proptest::collection::vec((0u64..5, 0u64..5), 1..6),
        ) {
            let cap = 16;
            let mut order = DeviceOrder::empty(NodePolicyKind::Binpack, OrderSource::Names(0), cap);
            let mut truth = vec![OrderEntry::default(); cap];
            for (i, score, cpu, mem, stale, fits) in sets {
                // Keys are unique per node, as tie keys are: the node id in the low bits.
                let key = if score == 0 { 0 } else { (score << 8) | i as u128 };
                let entry = OrderEntry { key, cpu, mem };
                truth[i] = if fits { entry } else { OrderEntry::default() };
                order.set(i, if stale { entry } else { truth[i] }, stale);
                for &(c, m) in &asks {
                    let scan = truth
                        .iter()
                        .filter(|e| e.key != 0 && e.cpu >= c && e.mem >= m)
                        .map(|e| e.key)
                        .max();
                    proptest::prop_assert_eq!(order.best(c, m, |i| truth[i]), scan);
                }
            }
        }
    }
}
