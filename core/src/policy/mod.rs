//! Scheduling policies, chosen by name.
//!
//! A *node policy* scores every feasible node (higher is better) and may choose the cards
//! itself (FGD and the FGD paper's baselines do); a *device policy* orders a node's cards for
//! HAMi's greedy fit (binpack, spread, mutex, numa, topology-aware). Ties between nodes break by
//! a [`TieRule`].

pub mod devices;
pub mod fgd;
pub mod hami;
pub mod paper;

use crate::fit::Pick;
use crate::ledger::NodeView;
use crate::request::PodRequest;
use rand_chacha::ChaCha8Rng;

/// Node policies by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodePolicyKind {
    /// HAMi's binpack: the most used node first.
    Binpack,
    /// HAMi's spread: the least used node first.
    Spread,
    /// Fragmentation gradient descent (FGD paper), scores quantised like the paper's artifact.
    Fgd,
    /// FGD taking the exact arg-min of the fragmentation increase (no score quantisation).
    FgdExact,
    /// A uniformly random feasible node (paper baseline).
    Random,
    /// Dot product of free and requested resources (paper baseline).
    DotProduct,
    /// GPU clustering: nodes holding the same GPU shape first (paper baseline).
    Clustering,
    /// GPU packing: partly used cards, then partly used nodes (paper baseline).
    Packing,
    /// Best fit: the least free resources after placement (paper baseline).
    BestFit,
}

impl NodePolicyKind {
    /// Every node policy.
    pub const ALL: [NodePolicyKind; 9] = [
        NodePolicyKind::Binpack,
        NodePolicyKind::Spread,
        NodePolicyKind::Fgd,
        NodePolicyKind::FgdExact,
        NodePolicyKind::Random,
        NodePolicyKind::DotProduct,
        NodePolicyKind::Clustering,
        NodePolicyKind::Packing,
        NodePolicyKind::BestFit,
    ];

    /// Canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodePolicyKind::Binpack => "binpack",
            NodePolicyKind::Spread => "spread",
            NodePolicyKind::Fgd => "fgd",
            NodePolicyKind::FgdExact => "fgd-exact",
            NodePolicyKind::Random => "random",
            NodePolicyKind::DotProduct => "dotproduct",
            NodePolicyKind::Clustering => "clustering",
            NodePolicyKind::Packing => "packing",
            NodePolicyKind::BestFit => "bestfit",
        }
    }

    /// Parse a name (case-insensitive; `best-fit`, `dot-product`, `gpu-packing`,
    /// `gpu-clustering` accepted). The error lists the valid names.
    pub fn parse(s: &str) -> Result<NodePolicyKind, String> {
        let n = s.trim().to_ascii_lowercase();
        let k = match n.as_str() {
            "binpack" => NodePolicyKind::Binpack,
            "spread" => NodePolicyKind::Spread,
            "fgd" => NodePolicyKind::Fgd,
            "fgd-exact" => NodePolicyKind::FgdExact,
            "random" => NodePolicyKind::Random,
            "dotproduct" | "dot-product" => NodePolicyKind::DotProduct,
            "clustering" | "gpu-clustering" => NodePolicyKind::Clustering,
            "packing" | "gpu-packing" => NodePolicyKind::Packing,
            "bestfit" | "best-fit" => NodePolicyKind::BestFit,
            _ => {
                let names: Vec<&str> = NodePolicyKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(format!(
                    "unknown node policy {s:?}; expected one of {}",
                    names.join(", ")
                ));
            }
        };
        Ok(k)
    }
}

impl std::fmt::Display for NodePolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Device policies by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DevicePolicyKind {
    /// The most used card first.
    Binpack,
    /// The least used card first (HAMi's default).
    Spread,
    /// Only idle cards.
    Mutex,
    /// Prefer cards of one NUMA node.
    Numa,
    /// Best-connected set for several cards, worst-connected card for one.
    TopologyAware,
}

impl DevicePolicyKind {
    /// Canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            DevicePolicyKind::Binpack => "binpack",
            DevicePolicyKind::Spread => "spread",
            DevicePolicyKind::Mutex => "mutex",
            DevicePolicyKind::Numa => "numa",
            DevicePolicyKind::TopologyAware => "topology-aware",
        }
    }
}

/// A device policy chain like `binpack,numa` (HAMi v2.10): the first of binpack/spread sets
/// the card order, the others add constraints or preferences.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DevicePolicyChain(pub Vec<DevicePolicyKind>);

impl Default for DevicePolicyChain {
    fn default() -> Self {
        DevicePolicyChain(vec![DevicePolicyKind::Spread])
    }
}

impl DevicePolicyChain {
    /// Parse a comma list; each item must be a known device policy.
    pub fn parse(s: &str) -> Result<DevicePolicyChain, String> {
        let mut v = Vec::new();
        for item in s.split(',').map(str::trim) {
            let k = match item.to_ascii_lowercase().as_str() {
                "binpack" => DevicePolicyKind::Binpack,
                "spread" => DevicePolicyKind::Spread,
                "mutex" => DevicePolicyKind::Mutex,
                "numa" => DevicePolicyKind::Numa,
                "topology-aware" | "topology" => DevicePolicyKind::TopologyAware,
                _ => {
                    return Err(format!(
                        "unknown device policy {item:?}; expected binpack, spread, mutex, numa or topology-aware (comma-chained)"
                    ));
                }
            };
            if v.contains(&k) {
                return Err(format!("device policy {item:?} is listed twice"));
            }
            v.push(k);
        }
        Ok(DevicePolicyChain(v))
    }

    /// Whether the chain contains `k`.
    pub fn has(&self, k: DevicePolicyKind) -> bool {
        self.0.contains(&k)
    }

    /// The canonical text (`binpack,numa`).
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How ties between equally scored nodes are broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TieRule {
    /// The node whose name sorts first (deterministic, independent of listing order).
    NameOrder,
    /// A fixed random node priority drawn once per run (the FGD artifact's behaviour): the
    /// tied node with the lowest rank wins. `ranks[node id]`; nodes without a rank come last.
    NodePriority(Vec<u32>),
    /// A uniformly random tied node, drawn per decision from the run's RNG.
    Uniform,
}

/// Cards chosen on one node: per container (annotation order), the picks.
pub type Placement = Vec<Vec<Pick>>;

/// A node policy's answer for one feasible node.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Higher is better.
    pub score: i64,
    /// Cards the policy chose; `None` means "let the device policy choose".
    pub placement: Option<Placement>,
}

/// Everything a node policy may read besides the node and the pod.
pub struct ScoreContext<'a> {
    /// The run's random stream (only randomised policies draw from it).
    pub rng: &'a mut ChaCha8Rng,
    /// The device policy chain in force for this pod.
    pub devices: &'a DevicePolicyChain,
    /// Whether the caller will use [`Scored::placement`]. When `false` a policy may leave it
    /// `None` (the pipeline scores many nodes and asks for the winner's cards again), which
    /// saves building a placement per node; the score must not depend on it.
    pub cards: bool,
}

/// A node-scoring policy. Implementations are pure given their inputs and the RNG.
pub trait NodePolicy: Send + Sync + std::fmt::Debug {
    /// The policy's name.
    fn kind(&self) -> NodePolicyKind;

    /// Whether the score is a pure function of the node, the pod's requests and the policy's
    /// own settings — never drawing from the RNG nor reading other nodes. Such policies'
    /// verdicts may be remembered between pods (see [`crate::memo`]); the default says yes,
    /// randomised policies must say no.
    fn memoizable(&self) -> bool {
        true
    }

    /// Whether the policy picks uniformly at random among the feasible nodes, whatever their
    /// state. The pipeline then draws one index into the feasible nodes (in node id order)
    /// instead of scoring each, the tie rule does not apply, and the decision's score is 0.
    /// Such a policy must never veto a feasible node.
    fn uniform(&self) -> bool {
        false
    }

    /// For a policy whose score on a feasible node is the node's alone: the function giving
    /// it. The contract, when `Some(f)`: for every pod and every node that passes the
    /// filter, [`NodePolicy::score`] returns `Some` with score `f(node)` (never a veto), reads
    /// no RNG and no other node. The memo then ranks the nodes once per device shape, for all
    /// pod shapes with those device requests, instead of keeping a best-node index per pod
    /// shape (see [`crate::memo`]). `None` (the default) promises nothing.
    fn node_score(&self) -> Option<fn(&NodeView<'_>) -> i64> {
        None
    }

    /// Cards on the chosen node when [`NodePolicy::score`] returned `placement: None`. `None`
    /// (the default) lets the device policy choose, as HAMi's node policies do; a randomised
    /// policy draws its cards here, once per decision rather than once per node.
    fn cards_for_winner(
        &self,
        _cx: &mut ScoreContext<'_>,
        _node: &NodeView<'_>,
        _req: &PodRequest,
    ) -> Option<Placement> {
        None
    }

    /// Score `node` for `req`. Only called for nodes that passed the filter. Returns `None` to
    /// veto the node (the policy found no acceptable card choice).
    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Scored>;
}
