//! The scheduling pipeline, mirroring kube-scheduler's framework: pre-filter (the request is
//! decoded once per pod), filter (pure over one node view), score (the node policy), device
//! selection (the device policy), then reserve in the ledger. Failed pods get HAMi-style
//! per-node reason summaries.

use crate::fit::{Reason, ReasonCounts, check_node_resources};
use crate::ledger::{Ledger, NodeId, NodeView, PodGrant, QuotaLeft};
use crate::memo::{DeviceSlots, Hot, IndexedBest, REASON_BITS, ScoreMemo, ShapeSlots, Verdict};
use crate::policy::devices::{FitEnv, FitScratch, Templates, fit_pod};
use crate::policy::{
    DevicePolicyChain, NodePolicy, NodePolicyKind, Placement, ScoreContext, TieRule, hami,
};
use crate::request::PodRequest;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Scheduler-wide settings (HAMi's `--node-scheduler-policy`, `--gpu-scheduler-policy`, …).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Node policy when the pod does not override it.
    pub node_policy: NodePolicyKind,
    /// Device policy chain when the pod does not override it.
    pub device_policy: DevicePolicyChain,
    /// How ties between nodes break.
    pub tie: TieRule,
    /// Whether the core checks node CPU and memory (the simulator: yes; behind kube-scheduler,
    /// which already did: no).
    pub check_node_resources: bool,
    /// Ascend memory templates per family.
    pub templates: Templates,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            node_policy: NodePolicyKind::Binpack,
            device_policy: DevicePolicyChain::default(),
            tie: TieRule::NameOrder,
            check_node_resources: true,
            templates: Templates::default(),
        }
    }
}

/// Why the pod was not placed: per node, HAMi's reason counts, and their totals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FailureSummary {
    /// Per node name, the reasons (empty unless asked for with [`Reasons::PerNode`]).
    pub per_node: BTreeMap<String, ReasonCounts>,
    /// Per reason, how many nodes show it (a node counts once for each reason it shows).
    pub totals: BTreeMap<Reason, u32>,
    /// How many nodes were looked at.
    pub nodes: u32,
}

impl FailureSummary {
    /// Totals per reason over all nodes (nodes counted once per reason they show).
    pub fn node_totals(&self) -> BTreeMap<Reason, u32> {
        self.totals.clone()
    }

    /// The reason most nodes show (ties: declaration order); `None` when there are no nodes.
    pub fn main_reason(&self) -> Option<Reason> {
        self.totals
            .iter()
            .max_by_key(|(r, c)| (**c, std::cmp::Reverse(**r)))
            .map(|(r, _)| *r)
    }

    /// One line like kube-scheduler's: `0/3 nodes are available: 2 CardInsufficientMemory, 1 …`.
    pub fn headline(&self) -> String {
        let parts: Vec<String> = self
            .totals
            .iter()
            .map(|(r, c)| format!("{c} {r}"))
            .collect();
        format!("0/{} nodes are available: {}", self.nodes, parts.join(", "))
    }
}

/// Whether an unschedulable decision carries per-node reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasons {
    /// Collect HAMi's reason counts for every node (what users and kube-scheduler see).
    PerNode,
    /// Only the totals per reason and the node count (a driver that shows one line per pod,
    /// such as the simulator; saves a map keyed by node name per failure).
    Totals,
    /// Leave the summary empty: the caller only needs the outcome.
    Skip,
}

/// The outcome for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Place the pod here with these cards.
    Placed {
        /// Node id in the ledger.
        node: NodeId,
        /// The grant to reserve.
        grant: PodGrant,
        /// The winning score.
        score: i64,
    },
    /// No node can take the pod.
    Unschedulable(FailureSummary),
    /// The pod's policy is not available in this scheduler.
    PolicyUnavailable(NodePolicyKind),
}

/// One node's verdict, for explanations.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeVerdict {
    /// Filtered out, with the reasons.
    Filtered(ReasonCounts),
    /// Feasible, with the score (higher is better).
    Scored(i64),
    /// Feasible but vetoed by the node policy.
    Vetoed,
}

/// The scheduler: configuration plus the node policies it can run.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// Settings.
    pub config: SchedulerConfig,
    policies: BTreeMap<NodePolicyKind, Arc<dyn NodePolicy>>,
}

impl Scheduler {
    /// A scheduler with HAMi's binpack and spread node policies.
    pub fn new(config: SchedulerConfig) -> Scheduler {
        let mut policies: BTreeMap<NodePolicyKind, Arc<dyn NodePolicy>> = BTreeMap::new();
        policies.insert(NodePolicyKind::Binpack, Arc::new(hami::Binpack));
        policies.insert(NodePolicyKind::Spread, Arc::new(hami::Spread));
        Scheduler { config, policies }
    }

    /// Make another node policy available (FGD needs its target workload, so it is built by the
    /// caller). Replaces a policy of the same kind.
    pub fn with_policy(mut self, p: Arc<dyn NodePolicy>) -> Scheduler {
        self.policies.insert(p.kind(), p);
        self
    }

    /// The fit settings for one pod with device policy `chain`.
    fn fit_env<'a>(&'a self, chain: &'a DevicePolicyChain, quota: Option<QuotaLeft>) -> FitEnv<'a> {
        FitEnv {
            chain,
            templates: &self.config.templates,
            check_node: self.config.check_node_resources,
            quota,
        }
    }

    /// Node policy in force for `req`.
    pub fn node_policy_for(&self, req: &PodRequest) -> NodePolicyKind {
        req.node_policy.unwrap_or(self.config.node_policy)
    }

    /// Device policy chain in force for `req`.
    pub fn device_policy_for<'a>(&'a self, req: &'a PodRequest) -> &'a DevicePolicyChain {
        req.device_policy
            .as_ref()
            .unwrap_or(&self.config.device_policy)
    }

    /// Filter, score and select cards for one pod over `candidates` (all nodes when `None`).
    /// Pure apart from drawing from `rng`; the ledger is not changed.
    pub fn schedule(
        &self,
        ledger: &Ledger,
        req: &PodRequest,
        candidates: Option<&[NodeId]>,
        rng: &mut ChaCha8Rng,
    ) -> Decision {
        self.schedule_with(ledger, req, candidates, rng, None, Reasons::PerNode)
    }

    /// [`Scheduler::schedule`] that remembers per-node verdicts in `memo` between calls and
    /// reuses those of nodes unchanged since (see [`crate::memo`]). The decision is identical
    /// to `schedule`'s, RNG draws included; `memo` must only ever be used with this scheduler
    /// and this ledger's lineage. With [`Reasons::Skip`] an unschedulable pod's summary is
    /// left empty (callers that only need the outcome save a second pass over every node).
    pub fn schedule_with(
        &self,
        ledger: &Ledger,
        req: &PodRequest,
        candidates: Option<&[NodeId]>,
        rng: &mut ChaCha8Rng,
        mut memo: Option<&mut ScoreMemo>,
        reasons: Reasons,
    ) -> Decision {
        // The filter's buffers live in the memo between decisions: a decision that made its
        // own allocated and grew them afresh (a tenth of a card fit's work).
        let mut scratch = memo
            .as_deref_mut()
            .map(ScoreMemo::take_scratch)
            .unwrap_or_default();
        let decision = self.decide(
            ledger,
            req,
            candidates,
            rng,
            memo.as_deref_mut(),
            reasons,
            &mut scratch,
        );
        if let Some(m) = memo {
            m.put_scratch(scratch);
        }
        decision
    }

    /// [`Scheduler::schedule_with`] with the filter's buffers lent as `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        ledger: &Ledger,
        req: &PodRequest,
        candidates: Option<&[NodeId]>,
        rng: &mut ChaCha8Rng,
        memo: Option<&mut ScoreMemo>,
        reasons: Reasons,
        scratch: &mut FitScratch,
    ) -> Decision {
        let kind = self.node_policy_for(req);
        let Some(policy) = self.policies.get(&kind) else {
            return Decision::PolicyUnavailable(kind);
        };
        let chain = self.device_policy_for(req);
        let env = self.fit_env(chain, ledger.quota_left(&req.key.namespace));
        // A quota's remaining room depends on grants on other nodes: never remembered. A
        // randomised policy's filter verdicts are remembered, its scores are drawn afresh.
        let remember_scores = policy.memoizable();
        let mut slots = match memo {
            Some(m) if env.quota.is_none() => {
                Some(m.slots_for(ledger, req, kind, chain, &self.config.tie))
            }
            _ => None,
        };
        // `cards`: whether the placement will be used (see `ScoreContext::cards`).
        let score_now = |view: &NodeView<'_>, rng: &mut ChaCha8Rng, cards: bool| {
            let mut cx = ScoreContext {
                rng,
                devices: chain,
                cards,
            };
            policy.score(&mut cx, view, req)
        };
        // The card half of the filter, which the memo shares between shapes: `fit_pod`
        // without the node's CPU and memory (checked here first, as `fit_pod` does).
        let cards_env = env.cards_only();
        // What the memo remembers about one node for this pod's shape.
        let verdict = |id: NodeId,
                       rng: &mut ChaCha8Rng,
                       scratch: &mut FitScratch,
                       cards: &mut DeviceSlots<'_>| {
            let Some(view) = ledger.view(id) else {
                return Verdict::Infeasible;
            };
            if env.check_node
                && check_node_resources(view.node, view.used, req.cpu_milli, req.memory_mib)
                    .is_err()
            {
                return Verdict::Infeasible;
            }
            let fits = cards.fits(id, (ledger.version(id), ledger.freed(id)), || {
                fit_pod(&view, req, &cards_env, scratch, None, false).is_some()
            });
            if !fits {
                return Verdict::Infeasible;
            }
            if !remember_scores {
                return Verdict::Feasible;
            }
            // Remembered scores keep no cards: the winner's are asked for again.
            match score_now(&view, rng, false) {
                Some(s) => Verdict::Scored(s),
                None => Verdict::Vetoed,
            }
        };
        // (score, node, cards when not taken from the memo: `Some(None)` = device policy).
        let mut best: Option<(i64, NodeId, Option<Option<Placement>>)> = None;
        let mut ties = 0u32;
        let mut feasible = 0u32;
        // A uniform policy scores nothing: the feasible nodes in visiting order, one drawn.
        let uniform = policy.uniform();
        let mut feasible_ids: Vec<NodeId> = Vec::new();
        // Over all nodes with deterministic scores and a total tie order, the memo's index
        // knows the winner after recomputing only the nodes that changed.
        let indexed = match (slots.as_mut(), candidates) {
            // A score that is the node's alone ranks the nodes the same for every shape: the
            // device shape's order finds the best node with room (see the memo).
            (Some(sl), None)
                if remember_scores
                    && !uniform
                    && let Some(score) = policy.node_score() =>
            {
                let room = env.check_node.then_some((req.cpu_milli, req.memory_mib));
                sl.best_by_node_score(ledger, kind, score, room, |view| {
                    fit_pod(view, req, &cards_env, &mut *scratch, None, false).is_some()
                })
                // The order counts no feasible nodes; only uniform policies read the count.
                .map(|best| IndexedBest { best, feasible: 0 })
            }
            (Some(sl), None) if remember_scores || uniform => sl.best(ledger, |id, cards| {
                verdict(id, &mut *rng, &mut *scratch, cards)
            }),
            _ => None,
        };
        // Name order ties compare positions instead of names when the memo has them.
        let name_positions = slots.as_ref().and_then(ShapeSlots::name_positions);
        let mut visit = |id: NodeId, rng: &mut ChaCha8Rng| {
            let (score, cards) = match slots.as_mut() {
                Some(sl) => {
                    let hot = sl.refresh(id, (ledger.version(id), ledger.freed(id)), |cards| {
                        verdict(id, &mut *rng, &mut *scratch, cards)
                    });
                    match hot {
                        Hot::Infeasible => return,
                        _ if uniform => {
                            feasible += 1;
                            feasible_ids.push(id);
                            return;
                        }
                        Hot::Vetoed => {
                            feasible += 1;
                            return;
                        }
                        Hot::Scored(score) => {
                            feasible += 1;
                            (score, None)
                        }
                        Hot::Feasible => {
                            feasible += 1;
                            let Some(view) = ledger.view(id) else {
                                return;
                            };
                            match score_now(&view, &mut *rng, true) {
                                Some(s) => (s.score, Some(s.placement)),
                                None => return,
                            }
                        }
                    }
                }
                None => {
                    let Some(view) = ledger.view(id) else {
                        return;
                    };
                    if fit_pod(&view, req, &env, &mut *scratch, None, false).is_none() {
                        return;
                    }
                    feasible += 1;
                    if uniform {
                        feasible_ids.push(id);
                        return;
                    }
                    match score_now(&view, &mut *rng, true) {
                        Some(s) => (s.score, Some(s.placement)),
                        None => return,
                    }
                }
            };
            let better = match &best {
                None => true,
                Some((bs, bid, _)) => {
                    if score != *bs {
                        score > *bs
                    } else {
                        match &self.config.tie {
                            TieRule::NameOrder => match name_positions {
                                Some(pos) => {
                                    let p = |i: NodeId| {
                                        pos.get(i as usize).copied().unwrap_or(u32::MAX)
                                    };
                                    p(id) < p(*bid)
                                }
                                None => {
                                    let name = |i: NodeId| {
                                        ledger.entry(i).map(|e| e.node.name.as_str()).unwrap_or("")
                                    };
                                    name(id) < name(*bid)
                                }
                            },
                            TieRule::NodePriority(ranks) => {
                                let r = |id: NodeId| {
                                    ranks.get(id as usize).copied().unwrap_or(u32::MAX)
                                };
                                (r(id), id) < (r(*bid), *bid)
                            }
                            TieRule::Uniform => {
                                ties += 1;
                                rng_pick(rng, ties)
                            }
                        }
                    }
                }
            };
            if better {
                if best.as_ref().is_none_or(|(bs, _, _)| score != *bs) {
                    ties = 1;
                }
                best = Some((score, id, cards));
            }
        };
        match (indexed, candidates) {
            (Some(ix), _) => {
                feasible = ix.feasible;
                best = ix.best.map(|(score, id)| (score, id, None));
            }
            (None, _) => {
                // One loop for both sources, so `visit` has one call site and is inlined: a
                // memo hit costs a few dozen instructions, and a call's register saves and
                // restores were a third of them.
                let n = candidates.map_or(ledger.node_id_bound(), <[NodeId]>::len);
                for k in 0..n {
                    let id = match candidates {
                        Some(ids) => ids[k],
                        None => k as NodeId,
                    };
                    visit(id, rng);
                }
            }
        }
        if uniform {
            best = None;
            if feasible > 0 {
                let k = rng.random_range(0..feasible);
                let id = match (indexed, slots.as_ref()) {
                    (Some(_), Some(sl)) => sl.nth_feasible(k),
                    _ => feasible_ids.get(k as usize).copied(),
                };
                // `Some(None)`: the policy draws the winner's cards (`cards_for_winner`).
                best = id.map(|id| (0, id, Some(None)));
            }
        }
        if let Some((score, id, cards)) = best {
            let Some(view) = ledger.view(id) else {
                return Decision::Unschedulable(FailureSummary::default());
            };
            let chosen = match cards {
                Some(c) => c,
                // A remembered score keeps no cards: ask the (deterministic) policy again, for
                // this one node.
                None => score_now(&view, &mut *rng, true).and_then(|s| s.placement),
            };
            let placement = match chosen {
                Some(p) => Some(p),
                None => {
                    let mut cx = ScoreContext {
                        rng,
                        devices: chain,
                        cards: true,
                    };
                    match policy.cards_for_winner(&mut cx, &view, req) {
                        Some(p) => Some(p),
                        None => fit_pod(&view, req, &env, &mut *scratch, None, true),
                    }
                }
            };
            if let Some(p) = placement
                && let Some(grant) =
                    ledger.grant_from_placement(id, &p, req.cpu_milli, req.memory_mib)
            {
                return Decision::Placed {
                    node: id,
                    grant,
                    score,
                };
            }
        }
        Decision::Unschedulable(match (reasons, slots.as_mut()) {
            (Reasons::PerNode, _) => self.failure_summary(ledger, req, candidates, true),
            (Reasons::Totals, Some(sl)) => failure_totals(ledger, req, candidates, &env, sl),
            (Reasons::Totals, None) => self.failure_summary(ledger, req, candidates, false),
            (Reasons::Skip, _) => FailureSummary::default(),
        })
    }

    /// Reasons for a pod that fits nowhere (the slow path, run only on failure): the totals
    /// always, and the reasons of each node by name when `per_node`.
    pub fn failure_summary(
        &self,
        ledger: &Ledger,
        req: &PodRequest,
        candidates: Option<&[NodeId]>,
        per_node: bool,
    ) -> FailureSummary {
        let mut out = FailureSummary::default();
        let chain = self.device_policy_for(req);
        let env = self.fit_env(chain, ledger.quota_left(&req.key.namespace));
        let mut scratch = FitScratch::default();
        let mut visit = |id: NodeId| {
            let Some(view) = ledger.view(id) else {
                return;
            };
            let rc = refusal(&view, req, &env, &mut scratch);
            out.nodes += 1;
            for (r, _) in rc.iter() {
                *out.totals.entry(r).or_insert(0) += 1;
            }
            if per_node {
                out.per_node.insert(view.node.name.clone(), rc);
            }
        };
        match candidates {
            Some(ids) => ids.iter().for_each(|&id| visit(id)),
            None => ledger.views().for_each(|v| visit(v.id)),
        }
        out
    }

    /// Every node's verdict for `req`, by node name (for `explain`).
    pub fn explain(
        &self,
        ledger: &Ledger,
        req: &PodRequest,
        rng: &mut ChaCha8Rng,
    ) -> BTreeMap<String, NodeVerdict> {
        let mut out = BTreeMap::new();
        let chain = self.device_policy_for(req);
        let env = self.fit_env(chain, ledger.quota_left(&req.key.namespace));
        let policy = self.policies.get(&self.node_policy_for(req));
        let mut scratch = FitScratch::default();
        for view in ledger.views() {
            let mut rc = ReasonCounts::default();
            let fits = fit_pod(&view, req, &env, &mut scratch, Some(&mut rc), false);
            let verdict = match (fits, policy) {
                (None, _) => NodeVerdict::Filtered(rc),
                (Some(_), None) => NodeVerdict::Vetoed,
                (Some(_), Some(p)) => {
                    let mut cx = ScoreContext {
                        rng,
                        devices: chain,
                        cards: true,
                    };
                    match p.score(&mut cx, &view, req) {
                        Some(s) => NodeVerdict::Scored(s.score),
                        None => NodeVerdict::Vetoed,
                    }
                }
            };
            out.insert(view.node.name.clone(), verdict);
        }
        out
    }
}

/// Reservoir sampling step: keep the new candidate with probability 1/`seen`.
fn rng_pick(rng: &mut ChaCha8Rng, seen: u32) -> bool {
    seen <= 1 || rng.random_range(0..seen) == 0
}

/// Why node `view` refuses `req`: the filter's reason counts, or `NodeUnfitPod` (one card)
/// when the pod fits, since a feasible node that was not chosen was vetoed by the node policy.
fn refusal(
    view: &NodeView<'_>,
    req: &PodRequest,
    env: &FitEnv<'_>,
    scratch: &mut FitScratch,
) -> ReasonCounts {
    let mut rc = ReasonCounts::default();
    if fit_pod(view, req, env, scratch, Some(&mut rc), false).is_some() {
        rc = ReasonCounts::default();
        rc.add(Reason::NodeUnfitPod);
        rc.cards = 1;
    }
    rc
}

/// [`Scheduler::failure_summary`]'s totals (no per-node map) for a pod whose shape has memo
/// `slots`: each node's reasons are remembered per node version, and over all nodes their sums
/// too, so a failing shape pays only for the nodes that changed since it last failed.
fn failure_totals(
    ledger: &Ledger,
    req: &PodRequest,
    candidates: Option<&[NodeId]>,
    env: &FitEnv<'_>,
    slots: &mut ShapeSlots<'_>,
) -> FailureSummary {
    // A reason is a bit of the memo's masks.
    const _: () = assert!(Reason::COUNT <= REASON_BITS);
    let mut out = FailureSummary::default();
    let mut scratch = FitScratch::default();
    // The filter refuses for the node's CPU or memory before it looks at the cards, and the
    // cards' reasons do not depend on the pod's CPU or memory: those are remembered per device
    // shape, for every pod shape that asks the same cards.
    let cards_env = env.cards_only();
    let mut mask_of = |view: &NodeView<'_>, cards: &mut DeviceSlots<'_>| {
        if env.check_node
            && let Err(r) =
                check_node_resources(view.node, view.used, req.cpu_milli, req.memory_mib)
        {
            return 1 << r as u32;
        }
        cards.reasons(view.id, ledger.version(view.id), || {
            refusal(view, req, &cards_env, &mut scratch)
                .iter()
                .fold(0, |m, (r, _)| m | 1 << r as u32)
        })
    };
    // Counted per reason position first: one map insert per reason shown, not per node.
    let counts = match candidates {
        // Over all nodes the memo keeps the sums current: only changed nodes are asked again.
        None => {
            let (counts, nodes) = slots.reason_totals(ledger, mask_of);
            out.nodes = nodes;
            counts
        }
        Some(ids) => {
            let mut counts = [0u32; REASON_BITS];
            for &id in ids {
                let Some(view) = ledger.view(id) else {
                    continue;
                };
                let mut mask = slots.reasons(id, ledger.version(id), |cards| mask_of(&view, cards));
                out.nodes += 1;
                while mask != 0 {
                    counts[mask.trailing_zeros() as usize] += 1;
                    mask &= mask - 1;
                }
            }
            counts
        }
    };
    for r in Reason::ALL {
        if counts[r as usize] > 0 {
            out.totals.insert(r, counts[r as usize]);
        }
    }
    out
}
