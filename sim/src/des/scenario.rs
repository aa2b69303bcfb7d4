//! Discrete-event scenario files (`kind: discrete-event`, the default when `kind` is absent).
//!
//! The schema is documented in `scenarios/README.md`. Every error a file can cause names the
//! file, the line and column and the field path (`workload.mix[1].memory`): syntax, unknown
//! keys and wrong types come from the YAML reader; units and names are checked while reading
//! (so they carry the reader's location); cross-field rules (an expectation naming a policy that
//! is not in `policies`, a missing trace file) are checked afterwards on spanned values.

use super::units::{Cpu, Dur, Mem};
use hami_core::family::{FamilyId, RegisterFormat};
use hami_core::policy::{DevicePolicyChain, NodePolicyKind};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `kind: discrete-event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DesKind {
    /// The discrete-event simulator.
    #[default]
    DiscreteEvent,
}

impl<'de> Deserialize<'de> for DesKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "discrete-event" => Ok(DesKind::DiscreteEvent),
            // The other kind of scenario file has its own command: say which.
            "trace-replay" => Err(serde::de::Error::custom(
                "a trace-replay scenario (the FGD paper's experiment) is run by `hami fgd run FILE`, not `hami sim`",
            )),
            other => Err(serde::de::Error::custom(format!(
                "unknown kind {other:?}; `hami sim` runs kind discrete-event (trace-replay files go to `hami fgd run`)"
            ))),
        }
    }
}

/// A device family name from the core family table (`nvidia`, `ascend910b3`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family(pub FamilyId);

impl Default for Family {
    fn default() -> Self {
        Family(FamilyId::NVIDIA)
    }
}

impl<'de> Deserialize<'de> for Family {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let names = || {
            FamilyId::all()
                .filter(|f| simulable(*f))
                .map(|f| f.spec().name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let f = FamilyId::by_name(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown device family {s:?}; expected one of {}",
                names()
            ))
        })?;
        if !simulable(f) {
            return Err(serde::de::Error::custom(format!(
                "family {s:?} registers its cards in its vendor's own annotation ({}), which the core does not decode; the simulator supports {}",
                f.spec().register_annotation,
                names()
            )));
        }
        Ok(Family(f))
    }
}

/// Whether the core reads a family's nodes (HAMi's registration annotation, or node capacity
/// for the families without one), so the simulator can build them. Families registered in a
/// vendor's own annotation format that the core does not decode (Enflame DRS) are not read.
pub fn simulable(f: FamilyId) -> bool {
    !matches!(f.spec().register_format, RegisterFormat::VendorJson)
}

/// A node policy name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePolicyName(pub NodePolicyKind);

impl<'de> Deserialize<'de> for NodePolicyName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodePolicyKind::parse(&s)
            .map(NodePolicyName)
            .map_err(serde::de::Error::custom)
    }
}

/// A device policy chain (`binpack`, `spread,numa`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChain(pub DevicePolicyChain);

impl<'de> Deserialize<'de> for DeviceChain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DevicePolicyChain::parse(&s)
            .map(DeviceChain)
            .map_err(serde::de::Error::custom)
    }
}

/// NVLink topology of a pool's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NvLink {
    /// No links (PCIe only; pairs score 0).
    #[default]
    None,
    /// Every pair of cards NVLinked (score 600).
    All,
    /// Cards linked in pairs (0-1, 2-3, …; score 600, others 20).
    Pairs,
}

/// One node pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Pool name (node names are `<pool>-<index>`).
    pub name: String,
    /// Number of nodes.
    pub count: u32,
    /// Device family (default `nvidia`).
    #[serde(default)]
    pub family: Family,
    /// Card model as registered (`NVIDIA-A100-SXM4-80GB`); type constraints match substrings.
    pub model: String,
    /// Cards per node.
    pub cards: u32,
    /// Memory per card (`80Gi`).
    pub memory: Mem,
    /// Core units per card (default 100).
    #[serde(default)]
    pub cores: Option<u32>,
    /// Containers that may share one card (default 10).
    #[serde(default)]
    pub split: Option<u32>,
    /// NVLink topology (default none).
    #[serde(default)]
    pub nvlink: NvLink,
    /// NUMA nodes per node; cards are split evenly (default 1).
    #[serde(default)]
    pub numa: Option<u32>,
    /// Allocatable CPU per node (default: not tracked).
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// Allocatable memory per node (default: not tracked).
    #[serde(default)]
    pub ram: Option<Mem>,
}

/// One card of an explicitly listed node (`cluster.nodes[i].cards[j]`), as a device plugin
/// registers it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// Device UUID (`GPU-…`); `use-gpuuuid` selectors match it. Unique within the node.
    pub id: String,
    /// Device family (default `nvidia`).
    #[serde(default)]
    pub family: Family,
    /// Card model as registered; type constraints match substrings.
    pub model: String,
    /// Memory (`40960Mi`).
    pub memory: Mem,
    /// Core units (default 100).
    #[serde(default)]
    pub cores: Option<u32>,
    /// Containers that may share the card (default 10).
    #[serde(default)]
    pub split: Option<u32>,
    /// NUMA node (default 0).
    #[serde(default)]
    pub numa: Option<u32>,
    /// Whether the card is healthy (default true); unhealthy cards take no pods.
    #[serde(default = "yes")]
    pub healthy: bool,
}

/// One explicitly listed node (`cluster.nodes[i]`, e.g. written by `hami record`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name (unique).
    pub name: String,
    /// Allocatable CPU (default: not tracked).
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// Allocatable memory (default: not tracked).
    #[serde(default)]
    pub ram: Option<Mem>,
    /// NVLink topology between its cards, in list order (default none).
    #[serde(default)]
    pub nvlink: NvLink,
    /// Explicit link scores `[card index, card index, score]` (HAMi's topology score, e.g.
    /// from `hami.io/node-nvidia-score`); they override `nvlink` for those pairs.
    #[serde(default)]
    pub links: Vec<[u32; 3]>,
    /// Its cards, in registration order.
    pub cards: Vec<CardSpec>,
}

/// The cluster: node pools, a node list from a trace, or explicit nodes (exactly one).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Node pools.
    #[serde(default)]
    pub pools: Vec<Spanned<PoolSpec>>,
    /// A trace node list (`sn,cpu_milli,memory_mib,gpu,model`), relative to the scenario file.
    #[serde(default)]
    pub trace: Option<Spanned<PathBuf>>,
    /// Explicit nodes with their cards. Each node gets the pool named after the family and
    /// model of its first card.
    #[serde(default)]
    pub nodes: Vec<Spanned<NodeSpec>>,
}

/// A resource quantity as written in a pod spec (`"1"`, `3000`, `500m`, `8Gi`), kept as text
/// for the production request translator to parse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuantityText(pub String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Num(f64),
            Text(String),
        }
        Ok(QuantityText(match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            Raw::Num(n) => format!("{n}"),
            Raw::Text(s) => s,
        }))
    }
}

/// One container of an explicit pod: its resources exactly as in the pod spec.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Container name (default `c<index>`); errors name it.
    #[serde(default)]
    pub name: Option<String>,
    /// `resources.limits` (`nvidia.com/gpu: 1`, `nvidia.com/gpumem: 3000`, …).
    #[serde(default)]
    pub limits: BTreeMap<String, QuantityText>,
    /// `resources.requests` (`cpu: 500m`, …).
    #[serde(default)]
    pub requests: BTreeMap<String, QuantityText>,
}

/// One explicitly listed pod (`workload.pods[i]`, e.g. written by `hami record`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodEntry {
    /// Name; simulated pods are named `<name>-<arrival index>`.
    pub name: String,
    /// Arrival time (virtual time from the start of the run).
    pub at: Dur,
    /// Run time once placed (absent: runs until the end).
    #[serde(default)]
    pub duration: Option<Dur>,
    /// Kubernetes priority (`spec.priority`).
    #[serde(default)]
    pub priority: i32,
    /// Pod annotations the request translator reads (type/UUID constraints, NUMA binding, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Init containers, in order.
    #[serde(default)]
    pub init_containers: Vec<ContainerSpec>,
    /// Containers, in order.
    pub containers: Vec<ContainerSpec>,
}

/// Arrival processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrivalKind {
    /// Exponential inter-arrival times with mean `1/rate`.
    Poisson,
    /// One pod every `1/rate`.
    Constant,
    /// Bursts of `burst_size` pods at once; bursts arrive as a Poisson process so that the mean
    /// rate is `rate`.
    Bursts,
    /// A Poisson process whose rate follows a sine over `period` with `peak_ratio` between the
    /// busiest and the quietest moment (mean `rate`).
    Diurnal,
}

/// How pods arrive.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalSpec {
    /// The process.
    pub process: ArrivalKind,
    /// Mean pods per second.
    pub rate: f64,
    /// Pods per burst (`bursts`).
    #[serde(default)]
    pub burst_size: Option<u32>,
    /// Busiest / quietest rate (`diurnal`, default 3).
    #[serde(default)]
    pub peak_ratio: Option<f64>,
    /// Period of the cycle (`diurnal`, default 24h).
    #[serde(default)]
    pub period: Option<Dur>,
}

/// Duration distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurationKind {
    /// Always `value`.
    Fixed,
    /// Exponential with `mean`.
    Exponential,
    /// Log-normal with `median` and `sigma` (of the underlying normal).
    Lognormal,
    /// Uniformly one of `values`.
    Empirical,
}

/// How long pods run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationSpec {
    /// The distribution.
    pub dist: DurationKind,
    /// `fixed`.
    #[serde(default)]
    pub value: Option<Dur>,
    /// `exponential`.
    #[serde(default)]
    pub mean: Option<Dur>,
    /// `lognormal`.
    #[serde(default)]
    pub median: Option<Dur>,
    /// `lognormal` (default 1).
    #[serde(default)]
    pub sigma: Option<f64>,
    /// `empirical`.
    #[serde(default)]
    pub values: Vec<Dur>,
}

/// One entry of the request mix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// Name (reports, pod names).
    pub name: String,
    /// Relative weight.
    pub weight: f64,
    /// Device family (default `nvidia`).
    #[serde(default)]
    pub family: Family,
    /// Cards per pod (default 1).
    #[serde(default)]
    pub cards: Option<u32>,
    /// Memory per card (absent with `memory_percent` absent: whole card).
    #[serde(default)]
    pub memory: Option<Mem>,
    /// Memory per card as a percentage of the card.
    #[serde(default)]
    pub memory_percent: Option<u32>,
    /// Compute share per card, percent.
    #[serde(default)]
    pub cores: Option<u32>,
    /// Allowed card models (`nvidia.com/use-gputype`, comma list of substrings).
    #[serde(default)]
    pub gpu_type: Option<String>,
    /// Kubernetes priority (`spec.priority`; higher goes first).
    #[serde(default)]
    pub priority: i32,
    /// CPU request.
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// Memory request.
    #[serde(default)]
    pub ram: Option<Mem>,
    /// This entry's own duration distribution (default: the workload's).
    #[serde(default)]
    pub duration: Option<DurationSpec>,
}

/// Order of trace pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TraceMode {
    /// Arrive at `creation_time` (scaled by `time_scale`).
    #[default]
    Timestamps,
    /// Arrive in creation order at `rate`.
    CreationOrder,
    /// Arrive in a seeded random order at `rate` (the FGD paper's order).
    Shuffled,
}

/// Replay of a trace pod list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// Pod list CSV, relative to the scenario file.
    pub pods: Spanned<PathBuf>,
    /// Arrival order (default `timestamps`).
    #[serde(default)]
    pub mode: TraceMode,
    /// Pods leave at `deletion_time` (default true); false: pods never end.
    #[serde(default = "yes")]
    pub departures: bool,
    /// Divide trace times by this (default 1; 10 replays ten times faster).
    #[serde(default)]
    pub time_scale: Option<f64>,
    /// Pods per second for `creation-order` and `shuffled` (default 10).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Replay only the first N pods (after ordering).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn yes() -> bool {
    true
}

/// The workload: generators or a trace.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Arrival process (generators).
    #[serde(default)]
    pub arrival: Option<ArrivalSpec>,
    /// Duration distribution (generators).
    #[serde(default)]
    pub duration: Option<DurationSpec>,
    /// Request mix (generators).
    #[serde(default)]
    pub mix: Vec<Spanned<MixEntry>>,
    /// Trace replay instead of generators.
    #[serde(default)]
    pub trace: Option<TraceSpec>,
    /// Explicit pods with arrival and run times, instead of generators or a trace.
    #[serde(default)]
    pub pods: Vec<Spanned<PodEntry>>,
}

/// How ties between equally scored nodes break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TieSpec {
    /// The node whose name sorts first.
    #[default]
    NameOrder,
    /// A uniformly random tied node per decision.
    Uniform,
}

/// A named node-policy + device-policy combination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Name used in reports and expectations.
    pub name: String,
    /// Node policy.
    pub node: NodePolicyName,
    /// Device policy chain (default `spread`, HAMi's default).
    #[serde(default)]
    pub device: Option<DeviceChain>,
    /// Tie rule (default: the scenario's `tie`).
    #[serde(default)]
    pub tie: Option<TieSpec>,
    /// FGD target workload coverage, % of pods (default 95).
    #[serde(default)]
    pub fgd_coverage: Option<f64>,
}

/// Fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Nodes disappear; their pods fail and are resubmitted.
    NodeLoss,
    /// Cards report unhealthy (running pods stay; nothing new lands there).
    DeviceUnhealthy,
    /// The scheduler restarts: its state is rebuilt from node and pod annotations only.
    SchedulerRestart,
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When (virtual time from the start).
    pub at: Dur,
    /// What.
    pub kind: FaultKind,
    /// How many nodes (drawn from the fault stream; default 1).
    #[serde(default)]
    pub nodes: Option<u32>,
    /// Draw nodes from this pool only.
    #[serde(default)]
    pub pool: Option<String>,
    /// Cards per node (`device-unhealthy`, default 1).
    #[serde(default)]
    pub cards: Option<u32>,
    /// Nodes return / cards recover after this long (default: never).
    #[serde(default)]
    pub recover_after: Option<Dur>,
}

/// Failing or slow API writes.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// Probability that a bind fails (0..1).
    #[serde(default)]
    pub bind_failure: f64,
    /// Time a bind takes (default 0).
    #[serde(default)]
    pub bind_delay: Dur,
}

/// Scheduling queue settings (kube-scheduler's pod backoff).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// First backoff after a failed attempt (default 1s).
    #[serde(default = "backoff_initial")]
    pub backoff_initial: Dur,
    /// Backoff cap (default 10s).
    #[serde(default = "backoff_max")]
    pub backoff_max: Dur,
}

fn backoff_initial() -> Dur {
    Dur(1000)
}
fn backoff_max() -> Dur {
    Dur(10_000)
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            backoff_initial: backoff_initial(),
            backoff_max: backoff_max(),
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    /// Virtual time limit.
    #[serde(default)]
    pub time: Option<Dur>,
    /// Number of pods to generate; the run ends at the last arrival unless `drain`.
    #[serde(default)]
    pub pods: Option<u64>,
    /// Keep running after the last arrival until nothing runs or waits (or `time`).
    #[serde(default)]
    pub drain: bool,
}

/// Parameter sweeps: one variant of the scenario per value.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Total node counts: pool counts and the arrival rate scale proportionally.
    #[serde(default)]
    pub nodes: Vec<u32>,
}

/// A scenario file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesFile {
    /// `discrete-event` (optional).
    #[serde(default)]
    pub kind: DesKind,
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Master seed (the `SEED` environment variable overrides it).
    #[serde(default)]
    pub seed: u64,
    /// Seeds per policy: `seed`, `seed+1`, … (default 1).
    #[serde(default)]
    pub repetitions: Option<u32>,
    /// The cluster.
    pub cluster: ClusterSpec,
    /// The workload.
    pub workload: WorkloadSpec,
    /// Policies to compare.
    pub policies: Vec<Spanned<PolicySpec>>,
    /// Default tie rule.
    #[serde(default)]
    pub tie: TieSpec,
    /// Queue backoff.
    #[serde(default)]
    pub queue: QueueSpec,
    /// Faults.
    #[serde(default)]
    pub faults: Vec<Spanned<FaultSpec>>,
    /// API write failures and delays.
    #[serde(default)]
    pub api: ApiSpec,
    /// Stop condition.
    pub stop: StopSpec,
    /// Metrics shown in the summary table (default: a standard set).
    #[serde(default)]
    pub metrics: Vec<super::metrics::MetricName>,
    /// Expectations checked by `hami sim check`.
    #[serde(default)]
    pub expect: Vec<Spanned<super::expect::Expectation>>,
    /// Parameter sweeps.
    #[serde(default)]
    pub sweep: SweepSpec,
    /// Interval between metric samples (default: 1/200 of the run).
    #[serde(default)]
    pub sample_every: Option<Dur>,
    /// Run the full checker every N events (default [`super::model::DEFAULT_CHECK_EVERY`]);
    /// the incremental checker runs after every event regardless. 1 = the full one every event.
    #[serde(default)]
    pub check_every: Option<u64>,
    /// kube-scheduler's `percentageOfNodesToScore`: when set, each pod goes through the
    /// extender path (`Filter` with the candidate nodes, then `Bind`) and the candidates are
    /// the first nodes, from a rotating start, that a cheap resource bound admits — at least
    /// 100, or this percentage of the cluster. Unset (default): every node is considered.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
}

/// The key path at `line` of a block-style YAML text (`workload.mix[1].memory`), for errors.
pub fn yaml_path_at(text: &str, line: usize) -> String {
    enum Frame {
        Key(usize, String),
        Item(usize, usize),
    }
    let indent_of = |f: &Frame| match f {
        Frame::Key(i, _) | Frame::Item(i, _) => *i,
    };
    let mut stack: Vec<Frame> = Vec::new();
    for l in text.lines().take(line) {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let mut indent = l.len() - body.len();
        let mut rest = body;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            while stack.last().is_some_and(|f| indent_of(f) > indent) {
                stack.pop();
            }
            match stack.last_mut() {
                Some(Frame::Item(i, n)) if *i == indent => *n += 1,
                _ => stack.push(Frame::Item(indent, 0)),
            }
            let trimmed = r.trim_start();
            indent += 2 + (r.len() - trimmed.len());
            rest = trimmed;
        }
        if let Some(colon) = rest.find(':') {
            let key = rest[..colon].trim().trim_matches('"');
            if !key.is_empty() && !key.contains(' ') && !key.starts_with('{') {
                while stack.last().is_some_and(|f| indent_of(f) >= indent) {
                    stack.pop();
                }
                stack.push(Frame::Key(indent, key.to_string()));
            }
        }
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Key(_, k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Item(_, n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// Formats errors as `file:line:column: path: message`.
#[derive(Debug, Clone)]
pub struct Where<'a> {
    /// File.
    pub path: &'a Path,
    /// Its text.
    pub text: &'a str,
}

impl Where<'_> {
    /// An error at a location, with a field path (`None`: derived from the line).
    pub fn at_loc(
        &self,
        loc: Location,
        field: Option<&str>,
        msg: impl std::fmt::Display,
    ) -> String {
        self.at(loc.line(), loc.column(), field, msg)
    }

    /// An error at `line:column`, with a field path (`None`: derived from the line).
    pub fn at(
        &self,
        line: u64,
        column: u64,
        field: Option<&str>,
        msg: impl std::fmt::Display,
    ) -> String {
        let line_no = line as usize;
        let path = field.map(str::to_string).unwrap_or_else(|| {
            let base = yaml_path_at(self.text, line_no);
            match flow_key_before(self.text, line_no, column as usize) {
                Some(k) if !base.ends_with(&k) => format!("{base}.{k}"),
                _ => base,
            }
        });
        let path = if path.is_empty() {
            String::new()
        } else {
            format!(" {path}:")
        };
        format!("{}:{}:{}:{path} {msg}", self.path.display(), line, column)
    }
}

/// In a flow mapping (`{name: a, count: 2}`), the key whose value starts before `column` on
/// `line` (1-based), if the line has one.
fn flow_key_before(text: &str, line: usize, column: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let open = l.find('{')?;
    let upto: String = l
        .chars()
        .take(column.saturating_sub(1).max(open + 1))
        .collect();
    let seg = upto[open + 1..].rsplit([',', '{']).next()?;
    let key = seg.split(':').next()?.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| key.to_string())
}

/// Parse the YAML text of a discrete-event scenario (no cross-field validation).
pub fn parse_file(path: &Path, text: &str) -> Result<DesFile, String> {
    // The reader's default budget (250,000 YAML nodes) is for configuration files; a recorded
    // cluster (`hami record`: every card and pod listed) is larger. A node takes at least two
    // bytes of text, so a budget of the text's length never refuses a real file and still
    // bounds alias expansion.
    let budget = serde_saphyr::budget! {
        max_nodes: text.len().max(250_000),
        max_events: (2 * text.len()).max(1_000_000),
    };
    let options = serde_saphyr::options! { budget: budget };
    serde_saphyr::from_str_with_options::<DesFile>(text, options).map_err(|e| {
        // The reader's message may carry a rendered snippet; keep its first line.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim().to_string();
        let first = strip_location_suffix(&first);
        let first = strip_location_prefix(&first);
        let first = reword(&first, text, e.location());
        match e.location() {
            Some(l) => Where { path, text }.at_loc(l, None, first),
            None => format!("{}: {first}", path.display()),
        }
    })
}

/// The reader's words for two common faults, in ours: a key given twice (the reader suggests a
/// reader option), and a number field given something else (the reader says only `invalid
/// u32`, naming neither the value nor what was wanted).
fn reword(msg: &str, text: &str, at: Option<Location>) -> String {
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("key {key} is given twice");
    }
    let int = msg.strip_prefix("invalid ").filter(|t| {
        matches!(
            *t,
            "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64"
        )
    });
    match (int, at) {
        (Some(ty), Some(at)) => {
            let wanted = if ty.starts_with('u') {
                "a whole number, 0 or more"
            } else {
                "a whole number"
            };
            format!(
                "expected {wanted} (it must fit {ty}), got {:?}",
                value_at(text, at.line(), at.column())
            )
        }
        _ => msg.to_string(),
    }
}

/// The scalar written at `line:column` (both from 1) of `text`, up to the next separator.
fn value_at(text: &str, line: u64, column: u64) -> String {
    let line = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("");
    let rest: String = line
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let end = rest.find([',', '}', ']', '#']).unwrap_or(rest.len());
    rest[..end].trim().to_string()
}

/// serde-saphyr starts some messages with `error: line L column C: `; the prefix we write
/// already says where.
fn strip_location_prefix(s: &str) -> String {
    let t = s.strip_prefix("error: ").unwrap_or(s);
    match t.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) if rest[..i].contains("column") => rest[i + 2..].to_string(),
            _ => t.to_string(),
        },
        None => t.to_string(),
    }
}

/// serde-saphyr appends ` at line L column C` to some messages; the prefix already says it.
fn strip_location_suffix(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains("column") => s[..i].to_string(),
        _ => s.to_string(),
    }
}
