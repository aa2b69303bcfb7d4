//! Fragmentation Gradient Descent (Weng et al., "Beware of Fragmentation", USENIX ATC'23).
//!
//! A node's *fragmentation* for a target workload is the GPU share (milli-GPU) that the
//! workload's task types, weighted by their frequency, cannot use there: for a task type that
//! cannot run on the node at all (CPU-only task, no access to the card model, too little free
//! CPU, too few cards with enough free share) all the node's idle GPU counts; otherwise the idle
//! GPU on cards too small for it. FGD places a pod where the fragmentation grows least: the node
//! score is `⌊100·σ(−Δ/1000)⌋` with `Δ` the change in milli-GPU (the paper's artifact quantises
//! this way), best over the node's card choices. [`Fgd::exact`] takes the exact arg-min of `Δ`.
//!
//! Free shares per card are those of [`super::paper::card_free_milli`].

use super::paper::{MILLI, NodeShape, card_free_milli};
use super::{NodePolicy, NodePolicyKind, ScoreContext, Scored};
use crate::hash::FastBuild;
use crate::ledger::NodeView;
use crate::request::PodRequest;
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One task type of a target workload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskType {
    /// CPU request, milli-CPU.
    pub cpu_milli: u64,
    /// Per-card GPU share, milli-GPU (0 for CPU-only tasks, 1000 for whole cards).
    pub share: u64,
    /// Cards (0 for CPU-only tasks).
    pub count: u32,
    /// Allowed card models as written in the trace (`V100M16|V100M32`); empty = any model.
    pub gpu_spec: String,
}

impl TaskType {
    /// Lower-cased model names of `gpu_spec` (empty = any).
    fn models(&self) -> Vec<String> {
        self.gpu_spec
            .split('|')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Card models' access rows ([`TargetWorkload::access`]) remembered for one workload, for
/// [`TargetWorkload::node_frag_with`]. A cluster has a handful of models: a list suffices.
///
/// It also remembers the fragmentation of the node states it has seen whose cards are all of
/// one model: a simulator asks after every placement, and most nodes of a pool pass through
/// the same few states (an empty card, a half-shared one, ...).
#[derive(Debug, Clone, Default)]
pub struct AccessRows {
    rows: Vec<(String, Arc<[bool]>)>,
    frags: HashMap<FragKey, f64, FastBuild>,
}

/// What a one-model node's fragmentation depends on: its cards' access row, which of the
/// workload's CPU thresholds its free CPU meets ([`TargetWorkload::cpu_step`]), and the cards'
/// free shares from largest to smallest (the order [`TargetWorkload::frag`] reads them in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FragKey {
    row: usize,
    cpu_step: usize,
    frees: SmallVec<[u64; 8]>,
}

/// Bound on remembered node states: past it the memo starts over (about 6 MiB at most).
const FRAG_MEMO_CAP: usize = 1 << 16;

impl AccessRows {
    /// Position of `model`'s row, computed from `workload` the first time.
    fn index(&mut self, workload: &TargetWorkload, model: &str) -> usize {
        match self.rows.iter().position(|(m, _)| m == model) {
            Some(i) => i,
            None => {
                self.rows
                    .push((model.to_string(), workload.access(model).into()));
                self.rows.len() - 1
            }
        }
    }
}

/// A target workload: task types with frequencies summing to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetWorkload {
    tasks: Vec<(TaskType, f64)>,
    models: Vec<Vec<String>>,
    /// The tasks' distinct CPU requests, ascending ([`TargetWorkload::cpu_step`]).
    cpu_steps: Vec<u64>,
}

impl TargetWorkload {
    /// A workload from explicit task types and weights (weights are renormalised to sum to 1;
    /// non-positive weights are dropped).
    pub fn new(tasks: Vec<(TaskType, f64)>) -> TargetWorkload {
        let tasks: Vec<(TaskType, f64)> = tasks.into_iter().filter(|(_, w)| *w > 0.0).collect();
        let sum: f64 = tasks.iter().map(|(_, w)| w).sum();
        let tasks: Vec<(TaskType, f64)> = tasks
            .into_iter()
            .map(|(t, w)| (t, if sum > 0.0 { w / sum } else { 0.0 }))
            .collect();
        let models = tasks.iter().map(|(t, _)| t.models()).collect();
        let mut cpu_steps: Vec<u64> = tasks.iter().map(|(t, _)| t.cpu_milli).collect();
        cpu_steps.sort_unstable();
        cpu_steps.dedup();
        TargetWorkload {
            tasks,
            models,
            cpu_steps,
        }
    }

    /// How many of the tasks' distinct CPU requests `cpu_free` covers. Free CPU enters the
    /// fragmentation only through `cpu_free >= task.cpu_milli`, so two amounts with the same
    /// step give the same fragmentation.
    fn cpu_step(&self, cpu_free: u64) -> usize {
        self.cpu_steps.partition_point(|&c| c <= cpu_free)
    }

    /// The paper's construction from every task of a workload: count each type, order by count
    /// (equal counts: larger resources first), keep the shortest prefix covering at least
    /// `coverage` (0..=1) of the tasks, and renormalise the frequencies.
    pub fn from_tasks(tasks: impl IntoIterator<Item = TaskType>, coverage: f64) -> TargetWorkload {
        let mut counts: BTreeMap<TaskType, u64> = BTreeMap::new();
        let mut total = 0u64;
        for t in tasks {
            *counts.entry(t).or_insert(0) += 1;
            total += 1;
        }
        let mut v: Vec<(TaskType, u64)> = counts.into_iter().collect();
        // BTreeMap order is ascending by resources; a stable sort by descending count keeps
        // equal counts in that order, so reverse first to put larger resources first.
        v.reverse();
        v.sort_by_key(|t| std::cmp::Reverse(t.1));
        let need = coverage.clamp(0.0, 1.0) * total as f64;
        let mut cum = 0u64;
        let mut keep = Vec::new();
        for (t, c) in v {
            if !keep.is_empty() && cum as f64 >= need {
                break;
            }
            cum += c;
            keep.push((t, c as f64));
        }
        TargetWorkload::new(keep)
    }

    /// Task types with their frequencies, most frequent first.
    pub fn tasks(&self) -> &[(TaskType, f64)] {
        &self.tasks
    }

    /// Which task types may use a card of `model` (case-insensitive substring match of each
    /// listed model, as HAMi's `use-gputype`).
    pub fn access(&self, model: &str) -> Vec<bool> {
        let m = model.to_ascii_lowercase();
        self.models
            .iter()
            .map(|ms| ms.is_empty() || ms.iter().any(|x| m.contains(x.as_str())))
            .collect()
    }

    /// Fragmentation (milli-GPU) of a node with `cpu_free` milli-CPU and cards given as
    /// (free share, access row from [`TargetWorkload::access`]).
    pub fn frag(&self, cpu_free: u64, cards: &[(u64, &[bool])]) -> f64 {
        let total: u64 = cards.iter().map(|c| c.0).sum();
        if total == 0 {
            return 0.0;
        }
        // Fast path (almost every node): all cards of one model, so one access row. Then a
        // task's fitting cards are the ones with the most free share: sort once, and each task
        // costs a search instead of a pass over the cards. Same integers, same sum order.
        if let Some(&(_, row)) = cards.first()
            && cards[1..]
                .iter()
                .all(|&(_, r)| std::ptr::eq(r, row) || r == row)
        {
            let mut frees: SmallVec<[u64; 8]> = cards.iter().map(|c| c.0).collect();
            frees.sort_unstable_by(|a, b| b.cmp(a));
            let mut prefix: SmallVec<[u64; 9]> = SmallVec::with_capacity(frees.len() + 1);
            prefix.push(0);
            for &f in &frees {
                prefix.push(prefix[prefix.len() - 1] + f);
            }
            let mut out = 0.0;
            for (i, (t, w)) in self.tasks.iter().enumerate() {
                let usable = t.count > 0
                    && t.share > 0
                    && cpu_free >= t.cpu_milli
                    && row.get(i).copied().unwrap_or(false);
                let lost = if usable {
                    let fit = frees.partition_point(|&f| f >= t.share);
                    if fit as u64 >= u64::from(t.count) {
                        total - prefix[fit]
                    } else {
                        total
                    }
                } else {
                    total
                };
                out += w * lost as f64;
            }
            return out;
        }
        self.frag_per_card(cpu_free, cards, total)
    }

    /// [`TargetWorkload::frag`] card by card, for nodes whose cards differ in model.
    fn frag_per_card(&self, cpu_free: u64, cards: &[(u64, &[bool])], total: u64) -> f64 {
        let mut out = 0.0;
        for (i, (t, w)) in self.tasks.iter().enumerate() {
            let lost = if t.count == 0 || t.share == 0 || cpu_free < t.cpu_milli {
                total
            } else {
                let mut fit = 0u32;
                let mut small = 0u64;
                for &(free, acc) in cards {
                    if acc.get(i).copied().unwrap_or(false) && free >= t.share {
                        fit += 1;
                    } else {
                        small += free;
                    }
                }
                if fit >= t.count { small } else { total }
            };
            out += w * lost as f64;
        }
        out
    }

    /// Fragmentation (milli-GPU) of one node as it is.
    pub fn node_frag(&self, node: &NodeView<'_>) -> f64 {
        self.node_frag_with(node, &mut AccessRows::default())
    }

    /// [`TargetWorkload::node_frag`], taking card models' access rows from `rows` (and adding
    /// the missing ones): `access` lower-cases the model and walks every task type, and the
    /// simulator asks after every placement. `rows` must only ever serve this workload.
    pub fn node_frag_with(&self, node: &NodeView<'_>, rows: &mut AccessRows) -> f64 {
        let cpu_free = node.node.cpu_milli.saturating_sub(node.used.cpu_milli);
        let cards = node
            .node
            .devices
            .iter()
            .zip(node.usage)
            .map(|(d, u)| (d.model.as_str(), card_free_milli(d, u)));
        self.cards_frag_with(cards, cpu_free, rows)
    }

    /// [`TargetWorkload::node_frag_with`] from its parts: per card in position order its model
    /// and free share ([`card_free_milli`]), and the node's free CPU (milli-cores). For a
    /// caller that holds those without the ledger (the simulator's metric on a helper thread).
    pub fn cards_frag_with<'m>(
        &self,
        cards: impl IntoIterator<Item = (&'m str, u64)>,
        cpu_free: u64,
        rows: &mut AccessRows,
    ) -> f64 {
        let mut row_of: SmallVec<[usize; 8]> = SmallVec::new();
        let mut frees: SmallVec<[u64; 8]> = SmallVec::new();
        let mut last: Option<(&str, usize)> = None;
        for (model, free) in cards {
            // A node's cards are nearly always of one model: look it up once.
            let i = match last {
                Some((m, i)) if m == model => i,
                _ => rows.index(self, model),
            };
            last = Some((model, i));
            row_of.push(i);
            frees.push(free);
        }
        if let Some(&row) = row_of.first()
            && row_of.iter().all(|&r| r == row)
        {
            // One model: the answer depends only on the key (see `FragKey`).
            frees.sort_unstable_by(|a, b| b.cmp(a));
            let key = FragKey {
                row,
                cpu_step: self.cpu_step(cpu_free),
                frees,
            };
            if let Some(&f) = rows.frags.get(&key) {
                return f;
            }
            let access = &*rows.rows[row].1;
            let cards: SmallVec<[(u64, &[bool]); 8]> =
                key.frees.iter().map(|&f| (f, access)).collect();
            let f = self.frag(cpu_free, &cards);
            if rows.frags.len() >= FRAG_MEMO_CAP {
                rows.frags.clear();
            }
            rows.frags.insert(key, f);
            return f;
        }
        let cards: SmallVec<[(u64, &[bool]); 8]> = frees
            .iter()
            .zip(&row_of)
            .map(|(&f, &r)| (f, &*rows.rows[r].1))
            .collect();
        self.frag(cpu_free, &cards)
    }
}

/// `⌊100·σ(−Δ/1000)⌋`, the artifact's quantised FGD score for a fragmentation change `delta`.
pub fn quantised_score(delta: f64) -> i64 {
    let x = -delta / 1000.0;
    (1.0 / (1.0 + (-x).exp()) * 100.0) as i64
}

/// The exact FGD score: `−Δ` in micro-milli-GPU (higher is better, no quantisation).
pub fn exact_score(delta: f64) -> i64 {
    -(delta * 1e6).round() as i64
}

/// The FGD node policy (quantised like the artifact, or exact).
#[derive(Debug)]
pub struct Fgd {
    workload: TargetWorkload,
    exact: bool,
    access_cache: Mutex<AccessRows>,
}

impl Fgd {
    /// FGD with the artifact's quantised score `⌊100·σ(−Δ/1000)⌋` (kind `fgd`).
    pub fn new(workload: TargetWorkload) -> Fgd {
        Fgd {
            workload,
            exact: false,
            access_cache: Mutex::new(AccessRows::default()),
        }
    }

    /// FGD taking the exact arg-min of the fragmentation change (kind `fgd-exact`).
    pub fn exact(workload: TargetWorkload) -> Fgd {
        Fgd {
            exact: true,
            ..Fgd::new(workload)
        }
    }

    /// The target workload.
    pub fn workload(&self) -> &TargetWorkload {
        &self.workload
    }

    fn access(&self, model: &str) -> Arc<[bool]> {
        // The cache only memoises a pure function of (workload, model).
        let mut c = match self.access_cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let i = c.index(&self.workload, model);
        c.rows[i].1.clone()
    }

    /// Each card's access row. A node's cards are usually of one model: consecutive cards of
    /// the same model share the row (and the cache is consulted once per run of them).
    fn access_rows(&self, node: &NodeView<'_>) -> SmallVec<[Arc<[bool]>; 8]> {
        let mut rows: SmallVec<[Arc<[bool]>; 8]> = SmallVec::new();
        let mut prev: Option<&str> = None;
        for d in &node.node.devices {
            let row = match (prev, rows.last()) {
                (Some(m), Some(r)) if m == d.model => r.clone(),
                _ => self.access(&d.model),
            };
            prev = Some(&d.model);
            rows.push(row);
        }
        rows
    }

    fn to_score(&self, delta: f64) -> i64 {
        if self.exact {
            exact_score(delta)
        } else {
            quantised_score(delta)
        }
    }
}

impl NodePolicy for Fgd {
    fn kind(&self) -> NodePolicyKind {
        if self.exact {
            NodePolicyKind::FgdExact
        } else {
            NodePolicyKind::Fgd
        }
    }

    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Scored> {
        let shape = NodeShape::of(node, req);
        if shape.count == 0 && req.cpu_milli == 0 && req.memory_mib == 0 {
            // A pod asking nothing changes nothing (the artifact gives it the top score).
            return Some(Scored {
                score: 100,
                placement: None,
            });
        }
        let rows = self.access_rows(node);
        let cpu_free = node.node.cpu_milli.saturating_sub(node.used.cpu_milli);
        let mut cards: SmallVec<[(u64, &[bool]); 8]> = shape
            .free
            .iter()
            .zip(&rows)
            .map(|(&f, r)| (f, &r[..]))
            .collect();
        let before = self.workload.frag(cpu_free, &cards);
        let cpu_after = cpu_free.saturating_sub(req.cpu_milli);
        if shape.is_sharing() && shape.container.is_some() {
            let mut best: Option<(i64, usize)> = None;
            let mut seen: SmallVec<[(u64, usize); 8]> = SmallVec::new();
            for (i, f) in shape.fits.iter().enumerate() {
                let p = f.pos as usize;
                // Cards of one model with equal free share give equal fragmentation; the first
                // one wins, so the others need no evaluation.
                if seen
                    .iter()
                    .any(|&(fr, q)| fr == f.free && Arc::ptr_eq(&rows[q], &rows[p]))
                {
                    continue;
                }
                seen.push((f.free, p));
                let old = cards[p].0;
                cards[p].0 = old.saturating_sub(shape.share);
                let after = self.workload.frag(cpu_after, &cards);
                cards[p].0 = old;
                let s = self.to_score(after - before);
                if best.is_none_or(|(bs, _)| s > bs) {
                    best = Some((s, i));
                }
            }
            let (score, i) = best?;
            return Some(Scored {
                score,
                placement: if cx.cards {
                    shape.placement(req, &[i])
                } else {
                    None
                },
            });
        }
        // CPU-only, whole-card and multi-card pods: the least free fitting cards (whole cards:
        // the lowest-index free ones).
        let chosen = if shape.count > 0 && shape.container.is_some() {
            Some(shape.least_free()?)
        } else {
            None
        };
        if let Some(c) = &chosen {
            for &i in c {
                let p = shape.fits[i].pos as usize;
                cards[p].0 = cards[p].0.saturating_sub(shape.share.min(MILLI));
            }
        }
        let after = self.workload.frag(cpu_after, &cards);
        Some(Scored {
            score: self.to_score(after - before),
            placement: chosen
                .filter(|_| cx.cards)
                .and_then(|c| shape.placement(req, &c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::paper::card_free_milli;
    use super::*;
    use crate::build::NodeBuilder;
    use crate::ledger::Ledger;
    use crate::model::{DeviceUsage, NodeUsage};

    fn t(cpu: u64, share: u64, count: u32, spec: &str) -> TaskType {
        TaskType {
            cpu_milli: cpu,
            share,
            count,
            gpu_spec: spec.into(),
        }
    }

    proptest::proptest! {
        /// The one-model fast path computes exactly what the card-by-card pass computes.
        #[test]
        fn frag_fast_path_is_exact(
            frees in proptest::collection::vec(0u64..=1000, 1..9),
            cpu_free in 0u64..64_000,
            row in proptest::collection::vec(proptest::bool::ANY, 4),
        ) {
            let w = TargetWorkload::new(vec![
                (t(4000, 500, 1, ""), 0.4),
                (t(8000, 1000, 2, ""), 0.3),
                (t(0, 250, 1, "V100"), 0.2),
                (t(32_000, 1000, 8, ""), 0.1),
            ]);
            let cards: Vec<(u64, &[bool])> = frees.iter().map(|&f| (f, &row[..])).collect();
            let total: u64 = frees.iter().sum();
            let fast = w.frag(cpu_free, &cards);
            let slow = if total == 0 { 0.0 } else { w.frag_per_card(cpu_free, &cards, total) };
            proptest::prop_assert_eq!(fast.to_bits(), slow.to_bits());
        }
    }

    proptest::proptest! {
        /// Fragmentation read through a shared `AccessRows` (remembered node states) equals the
        /// one computed from the node as it is, card by card in device order, for every state
        /// of a sequence that revisits states and CPU amounts across the workload's thresholds.
        #[test]
        fn remembered_fragmentation_is_exact(
            states in proptest::collection::vec(
                (proptest::collection::vec((0u64..=2, 0u32..=2), 4), 0u64..48_000, 0usize..3),
                1..40,
            ),
        ) {
            let w = TargetWorkload::new(vec![
                (t(4000, 500, 1, ""), 0.4),
                (t(8000, 1000, 2, ""), 0.3),
                (t(0, 250, 1, "V100"), 0.2),
                (t(32_000, 1000, 4, "T4"), 0.1),
            ]);
            // Two one-model nodes (the remembered path) and a mixed one (computed each time).
            let nodes = [
                NodeBuilder::new("a").gpus(4, "V100M16", 16_384).cpu_mem(48_000, 0).build(),
                NodeBuilder::new("b").gpus(4, "T4", 15_360).cpu_mem(48_000, 0).build(),
                NodeBuilder::new("c")
                    .gpus(2, "V100M32", 32_768)
                    .gpus(2, "T4", 15_360)
                    .cpu_mem(48_000, 0)
                    .build(),
            ];
            let ledger = Ledger::new();
            let mut rows = AccessRows::default();
            for (cards, cpu_used, which) in states {
                let node = &nodes[which];
                // Quarters of each card's memory and cores: states repeat across the sequence.
                let usage: Vec<DeviceUsage> = node
                    .devices
                    .iter()
                    .zip(&cards)
                    .map(|(d, &(mem_q, cores_q))| DeviceUsage {
                        used: u32::from(mem_q + u64::from(cores_q) > 0),
                        used_mem: d.memory_mib * mem_q / 4,
                        used_cores: d.cores * cores_q / 4,
                        mig_slices: 0,
                    })
                    .collect();
                let used = NodeUsage { cpu_milli: cpu_used, ..NodeUsage::default() };
                let view = NodeView {
                    id: 0,
                    node,
                    usage: &usage,
                    used: &used,
                    ledger: &ledger,
                    usage_score: 0,
                    caps: &[],
                };
                let access: Vec<Arc<[bool]>> =
                    node.devices.iter().map(|d| w.access(&d.model).into()).collect();
                let plain: Vec<(u64, &[bool])> = node
                    .devices
                    .iter()
                    .zip(&usage)
                    .zip(&access)
                    .map(|((d, u), a)| (card_free_milli(d, u), &**a))
                    .collect();
                let want = w.frag(48_000u64.saturating_sub(cpu_used), &plain);
                let got = w.node_frag_with(&view, &mut rows);
                proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "node {}", which);
            }
        }
    }

    #[test]
    fn frag_table() {
        // Workload: half 500-milli sharing tasks (4 CPU), half one-card tasks (8 CPU).
        let w = TargetWorkload::new(vec![
            (t(4000, 500, 1, ""), 1.0),
            (t(8000, 1000, 1, ""), 1.0),
        ]);
        let acc = w.access("G2");
        let a = acc.as_slice();
        let cases: [(u64, &[u64], f64); 5] = [
            // Idle 2-card node, plenty of CPU: nothing is lost.
            (32_000, &[1000, 1000], 0.0),
            // One card with 300 free: too small for both types → 300 lost for both.
            (32_000, &[300, 1000], 300.0),
            // 600 free: fits the sharing type (no loss), not the whole-card one (600 lost, the
            // other card still fits it) → 0.5·0 + 0.5·600.
            (32_000, &[600, 1000], 300.0),
            // 6 CPU left: the whole-card type cannot run → all 1600 lost for it.
            (6_000, &[600, 1000], 800.0),
            // No CPU: everything lost for both.
            (0, &[600, 1000], 1600.0),
        ];
        for (cpu, free, want) in cases {
            let cards: Vec<(u64, &[bool])> = free.iter().map(|&f| (f, a)).collect();
            let got = w.frag(cpu, &cards);
            assert!((got - want).abs() < 1e-9, "{cpu} {free:?}: {got} != {want}");
        }
    }

    #[test]
    fn cpu_only_and_no_access_tasks_lose_everything() {
        let w = TargetWorkload::new(vec![
            (t(1000, 0, 0, ""), 1.0),
            (t(1000, 100, 1, "V100M32"), 1.0),
        ]);
        let acc = w.access("T4");
        let cards: Vec<(u64, &[bool])> = vec![(1000, acc.as_slice()), (500, acc.as_slice())];
        assert!((w.frag(64_000, &cards) - 1500.0).abs() < 1e-9);
        let acc = w.access("V100M32");
        let cards: Vec<(u64, &[bool])> = vec![(1000, acc.as_slice()), (500, acc.as_slice())];
        assert!((w.frag(64_000, &cards) - 750.0).abs() < 1e-9);
    }

    #[test]
    fn quantised_score_table() {
        // σ(0) = 0.5 → 50; Δ = +1000 → σ(−1) = 0.2689 → 26; Δ = −1000 → 73; big Δ → 0.
        for (d, want) in [
            (0.0, 50),
            (1000.0, 26),
            (-1000.0, 73),
            (1e6, 0),
            (-1e6, 100),
        ] {
            assert_eq!(quantised_score(d), want, "{d}");
        }
        assert_eq!(exact_score(-1.5), 1_500_000);
    }

    #[test]
    fn from_tasks_keeps_the_shortest_covering_prefix() {
        let mut v = Vec::new();
        v.extend(std::iter::repeat_n(t(1000, 500, 1, ""), 6));
        v.extend(std::iter::repeat_n(t(2000, 1000, 1, ""), 3));
        v.extend(std::iter::repeat_n(t(500, 0, 0, ""), 1));
        let w = TargetWorkload::from_tasks(v.clone(), 0.9);
        assert_eq!(w.tasks().len(), 2);
        assert!((w.tasks()[0].1 - 6.0 / 9.0).abs() < 1e-12);
        let w = TargetWorkload::from_tasks(v, 0.95);
        assert_eq!(w.tasks().len(), 3);
        // Equal counts: larger resources first.
        let w = TargetWorkload::from_tasks(vec![t(1000, 0, 0, ""), t(2000, 0, 0, "")], 1.0);
        assert_eq!(w.tasks()[0].0.cpu_milli, 2000);
    }
}
