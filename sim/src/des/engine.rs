//! The discrete-event engine.
//!
//! An event queue keyed by (virtual time in ms, sequence number) drives one
//! [`hami_core::control::Controller`]: every decision is the production control loop's, taken on
//! real k8s-openapi Node and Pod objects whose annotations the engine writes back exactly as the
//! actions say. Randomness comes from one master seed split into streams (arrivals, durations,
//! sizes, faults, API, scheduler), so a run is a pure function of (scenario, policy, seed).
//!
//! The pending queue behaves like kube-scheduler's: active pods are tried in priority, then
//! arrival order; a pod that fits nowhere is parked with its reason and moved back (after its
//! backoff) only when capacity frees on a node where a cheap bound says it could fit. Within one
//! scheduling cycle, pods of a class that just failed are not retried (same request, same state,
//! same answer — kube-scheduler's equivalence idea).

use super::checker::{self, PodCheck};
use super::follow::{Follower, FollowerThread, Halt, Metric};
use super::model::{FaultRes, PodClass, PolicyRes, Scenario, Source, Variant};
use super::placements::LogEntry;
use super::scenario::{ArrivalKind, DurationKind, DurationSpec, FaultKind, TieSpec, TraceMode};
use super::turns::in_turns;
use hami_core::annotations::default_templates;
use hami_core::build::k8s_node;
use hami_core::codec::keys;
use hami_core::codec::push_decimal;
use hami_core::codec::score::{DevicePairScore, encode_pair_scores};
use hami_core::control::{Action, Controller, Event, NodeRead, read_node};
use hami_core::fit::Reason;
use hami_core::hash::FastBuild;
use hami_core::ledger::{NodeId, NodeView};
use hami_core::model::{Device, DeviceMode, Node};
use hami_core::pipeline::{NodeVerdict, Reasons, Scheduler, SchedulerConfig};
use hami_core::policy::fgd::{AccessRows, Fgd};
use hami_core::policy::{NodePolicy, NodePolicyKind, TieRule, paper};
use hami_core::request::{PodKey, RequestTranslator};
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// Unix time of virtual time 0 (what `hami.io/vgpu-time` and `bind-time` record).
pub const EPOCH: i64 = 1_700_000_000;

/// FNV-1a 64, the event-log hash (stable across platforms and Rust versions).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mix bytes in.
    pub fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// Mix a number in.
    pub fn num(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// A sub-seed for a named stream, derived from the master seed (splitmix64 of seed ⊕ FNV(name)).
pub fn sub_seed(seed: u64, stream: &str) -> u64 {
    let mut h = Fnv::default();
    h.bytes(stream.as_bytes());
    let mut z = seed ^ h.0;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrival,
    Finish { pod: u32, inc: u32 },
    BindDone { pod: u32, inc: u32 },
    Wake,
    Fault(u32),
    NodeReturn(u32),
    CardsRecover(u32),
    Sample,
    Stop,
}

impl Ev {
    fn code(&self) -> (u64, u64, u64) {
        match *self {
            Ev::Arrival => (1, 0, 0),
            Ev::Finish { pod, inc } => (2, u64::from(pod), u64::from(inc)),
            Ev::BindDone { pod, inc } => (3, u64::from(pod), u64::from(inc)),
            Ev::Wake => (4, 0, 0),
            Ev::Fault(i) => (5, u64::from(i), 0),
            Ev::NodeReturn(i) => (6, u64::from(i), 0),
            Ev::CardsRecover(i) => (7, u64::from(i), 0),
            Ev::Sample => (8, 0, 0),
            Ev::Stop => (9, 0, 0),
        }
    }
}

/// Why a pod waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// The main reason of its last unschedulable summary.
    Core(Reason),
    /// Its bind failed; it waits for its backoff.
    BindFailed,
    /// Its node was lost; it was resubmitted.
    Resubmitted,
    /// Scheduler restarted; every pending pod is retried.
    Requeued,
    /// It arrived and waits for the scheduling cycle (never seen by the checker).
    New,
    /// Extender path: no node passed the cheap resource bound, so the filter saw no candidate.
    NoCandidate,
}

impl Why {
    /// Readable reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Core(r) => r.as_str(),
            Why::BindFailed => "BindFailed",
            Why::Resubmitted => "NodeLost",
            Why::Requeued => "SchedulerRestarted",
            Why::New => "New",
            Why::NoCandidate => "NoNodeWithRoom",
        }
    }
}

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// In the active queue.
    Active,
    /// Waiting for its backoff to expire.
    Backoff,
    /// Unschedulable, parked until capacity frees.
    Parked,
    /// Placed; the bind is in flight.
    Binding,
    /// Bound and running.
    Running,
    /// Ended.
    Finished,
    /// Its request is invalid.
    Rejected,
}

#[derive(Debug, Clone)]
struct SimPod {
    /// The pod object's metadata (None once finished). Its spec is the class template's,
    /// never changed by a simulated pod, so it is kept once per class in [`Engine::stage`]:
    /// a million pods kept a million copies of it (most of a large run's memory).
    meta: Option<Box<ObjectMeta>>,
    class: u32,
    arrival: u64,
    duration: Option<u64>,
    prio: i32,
    state: PodState,
    inc: u32,
    attempts: u32,
    last_try: u64,
    reason: Option<Why>,
    node: u32,
    placed_once: bool,
    bind_fails: bool,
}

const NO_NODE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct SimNode {
    /// The node as its agent would describe it now. Its Node object is built from this when
    /// published: keeping every node's object (a few kilobytes each) cost more, in memory a
    /// run first touches, than rebuilding the few that faults republish.
    node: Node,
    pool: u16,
    up: bool,
    occupied: u64,
    mem: u64,
    cores: u64,
    frag: f64,
}

/// One point of the time series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t: f64,
    /// Compute granted, share of capacity.
    pub allocation: f64,
    /// Memory granted, share.
    pub memory: f64,
    /// Cards with a grant, share.
    pub cards: f64,
    /// Fragmentation, share of GPU capacity.
    pub fragmentation: f64,
    /// Pending pods.
    pub pending: u64,
    /// Running pods.
    pub running: u64,
}

/// Why each node was or was not chosen for one pod, at the moment it was scheduled.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Pod name.
    pub pod: String,
    /// Virtual time of the attempt, seconds.
    pub t: f64,
    /// Attempt number (1 = first).
    pub attempt: u32,
    /// Policy name.
    pub policy: String,
    /// The outcome: `placed on NODE` or the unschedulable headline.
    pub outcome: String,
    /// The node chosen, if any.
    pub chosen: Option<String>,
    /// Every node's verdict.
    pub verdicts: BTreeMap<String, NodeVerdict>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Scalar metrics by name.
    pub metrics: BTreeMap<String, f64>,
    /// Unschedulable attempts by main reason.
    pub reasons: BTreeMap<String, u64>,
    /// Time-averaged compute allocation per pool, share.
    pub pools: BTreeMap<String, f64>,
    /// Time-averaged memory allocation per pool, share (what shows a pool whose grants carry
    /// no compute share, such as Ascend memory-only slices).
    pub pools_memory: BTreeMap<String, f64>,
    /// Time series.
    pub series: Vec<Sample>,
    /// (arrived GPU demand % of capacity, allocation share) per arrival (thinned).
    pub per_arrival: Vec<(f64, f64)>,
    /// Wait-time quantiles 0, 1, …, 100 %, seconds.
    pub wait_quantiles: Vec<f64>,
    /// FNV-1a hash of the event log (hex).
    pub event_log_hash: String,
    /// Events processed.
    pub events: u64,
    /// Rejected requests (first ten), readable.
    pub errors: Vec<String>,
    /// The explanation asked for.
    pub explanation: Option<Explanation>,
    /// What happened, in processing order (empty unless [`RunOptions::record`]).
    pub log: Vec<LogEntry>,
    /// Whether the incremental checker and the fragmentation metric ran on a helper thread
    /// for the whole run (see [`CheckerThread`]).
    pub checked_on_helper: bool,
}

/// A test hook that changes a pod object's metadata (see [`RunOptions::forge_at`]).
pub type Forge = fn(&mut ObjectMeta);

/// Options of one run besides the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Explain this pod.
    pub explain_pod: Option<String>,
    /// Override the scenario's interval of full checks (the incremental checker runs after
    /// every other event).
    pub check_every: Option<u64>,
    /// Test hook: after every event run both the incremental and the full checker and fail when
    /// they disagree (one passes, the other does not).
    pub cross_check: bool,
    /// Test hook: at this event index, apply this change to the first running pod holding
    /// cards (e.g. forge its annotations) so the checker must catch it.
    pub forge_at: Option<(u64, Forge)>,
    /// Test hook: stop after this many events.
    pub max_events: Option<u64>,
    /// Record arrivals, placements, unschedulable transitions and departures in
    /// [`RunOutput::log`] (the sim-to-real parity plan, [`super::placements`]).
    pub record: bool,
    /// Where the incremental checker runs.
    pub checker_thread: CheckerThread,
}

/// Where the incremental checker runs (the full checks always run on the engine's thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckerThread {
    /// On a helper when it can and it pays: no faults (they change registrations and rebuild
    /// the ledger), no MIG cards, no [`RunOptions::cross_check`], a cluster of at least
    /// [`PARALLEL_NODES_FROM`] nodes and a machine with more than one core.
    #[default]
    Auto,
    /// On the engine's thread, after every event.
    This,
    /// On a helper behind the engine ([`super::follow`]) whenever it can: without faults or
    /// MIG cards and without [`RunOptions::cross_check`]. For tests.
    Helper,
}

/// Build the node policy objects a scheduler needs for `p`.
pub fn scheduler_for(p: &PolicyRes, v: &Variant) -> Scheduler {
    let tie = match p.tie {
        TieSpec::NameOrder => TieRule::NameOrder,
        TieSpec::Uniform => TieRule::Uniform,
    };
    let mut s = Scheduler::new(SchedulerConfig {
        node_policy: p.node,
        device_policy: p.device.clone(),
        tie,
        check_node_resources: true,
        templates: default_templates(),
    });
    let extra: Option<Arc<dyn NodePolicy>> = match p.node {
        NodePolicyKind::Fgd => Some(Arc::new(Fgd::new((*v.target).clone()))),
        NodePolicyKind::FgdExact => Some(Arc::new(Fgd::exact((*v.target).clone()))),
        NodePolicyKind::Random => Some(Arc::new(paper::Random)),
        NodePolicyKind::DotProduct => Some(Arc::new(paper::DotProduct)),
        NodePolicyKind::Clustering => Some(Arc::new(paper::Clustering)),
        NodePolicyKind::Packing => Some(Arc::new(paper::Packing)),
        NodePolicyKind::BestFit => Some(Arc::new(paper::BestFit)),
        NodePolicyKind::Binpack | NodePolicyKind::Spread => None,
    };
    if let Some(x) = extra {
        s = s.with_policy(x);
    }
    s
}

/// The Node object a node agent would publish: registration annotations from the core's
/// encoder, plus the topology score annotation when the node has links.
pub fn node_object(node: &Node) -> K8sNode {
    let mut k = k8s_node(node);
    if node.links.is_known() {
        let n = node.devices.len();
        let scores: Vec<DevicePairScore> = (0..n)
            .map(|a| DevicePairScore {
                uuid: node.devices[a].uuid.clone(),
                scores: (0..n)
                    .filter(|&b| b != a && node.links.get(a, b) > 0)
                    .map(|b| {
                        (
                            node.devices[b].uuid.clone(),
                            i64::from(node.links.get(a, b)),
                        )
                    })
                    .collect(),
            })
            .collect();
        k.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                keys::NODE_NVIDIA_SCORE.to_string(),
                encode_pair_scores(&scores),
            );
    }
    k
}

/// Whether a device fault may make card `d` unhealthy: HAMi reads no health for cards made
/// from node capacity (it makes them all healthy), so a fault there would go unseen; such
/// cards are spared.
pub fn can_fail(d: &Device) -> bool {
    d.family.spec().capacity_rule().is_none()
}

/// The threads freeing finished runs' state that had not finished when the last run ended (see
/// [`Engine::run`]), for [`wait_for_freeing`].
static FREEING: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Wait until the state of every run finished so far is freed. A run hands its largest
/// structures to a helper thread to free, off its own wall time; a caller that times runs one
/// after another calls this between them, so that one run's freeing does not slow the next.
pub fn wait_for_freeing() {
    let done = std::mem::take(&mut *FREEING.lock().unwrap_or_else(|e| e.into_inner()));
    for h in done {
        // A panic while freeing is the freeing thread's: nothing of this run depends on it.
        let _ = h.join();
    }
}

/// Keep `h`, a thread freeing a run's state, for [`wait_for_freeing`].
fn free_later(h: std::thread::JoinHandle<()>) {
    let mut freeing = FREEING.lock().unwrap_or_else(|e| e.into_inner());
    // Only the freeing still under way is kept: a finished thread's handle is dropped (which
    // releases the thread), so a long sweep of runs holds none of them.
    freeing.retain(|h| !h.is_finished());
    freeing.push(h);
}

/// Below this many nodes the cluster is published on one thread, and the incremental
/// checker runs there too unless told otherwise ([`CheckerThread::Auto`]).
pub const PARALLEL_NODES_FROM: usize = 256;

/// Nodes per unit of work when both threads publish them.
const NODES_PER_UNIT: usize = 32;

/// Each node as the run starts: its simulated state, and the Node object a node agent would
/// publish as the controller reads it ([`read_node`]). Pure per node, and a node costs tens
/// of microseconds (the registration JSON written, then parsed): on a large cluster a helper
/// thread and this one take runs of [`NODES_PER_UNIT`] nodes in turn ([`in_turns`]). The order
/// is the nodes'.
fn publish_nodes(nodes: &[(Node, u16)]) -> (Vec<SimNode>, Vec<NodeRead>) {
    fn publish(part: &[(Node, u16)]) -> Vec<(SimNode, NodeRead)> {
        part.iter()
            .map(|(n, p)| {
                let read = read_node(&node_object(n));
                let sim = SimNode {
                    node: n.clone(),
                    pool: *p,
                    up: true,
                    occupied: 0,
                    mem: 0,
                    cores: 0,
                    frag: 0.0,
                };
                (sim, read)
            })
            .collect()
    }
    let mut units: Vec<(usize, Vec<(SimNode, NodeRead)>)> = in_turns(
        nodes.len().div_ceil(NODES_PER_UNIT),
        nodes.len() < PARALLEL_NODES_FROM,
        Vec::new,
        |done: &mut Vec<_>, u| {
            let part = &nodes[u * NODES_PER_UNIT..((u + 1) * NODES_PER_UNIT).min(nodes.len())];
            done.push((u, publish(part)));
        },
    )
    .into_iter()
    .flatten()
    .collect();
    units.sort_unstable_by_key(|u| u.0);
    units.into_iter().flat_map(|u| u.1).unzip()
}

/// The name of pod `id` of class `class`: `{class}-{id}` (also its uid, with class `uid`;
/// built per arrival and per checked pod, so without the formatting machinery).
fn pod_name(class: &str, id: u32) -> String {
    let mut name = String::with_capacity(class.len() + 11);
    push_pod_name(&mut name, class, id);
    name
}

/// Append [`pod_name`]`(class, id)` to `out`.
fn push_pod_name(out: &mut String, class: &str, id: u32) {
    out.push_str(class);
    out.push('-');
    push_decimal(out, i64::from(id));
}

fn exp_sample(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random::<f64>();
    -(1.0 - u).ln() * mean
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn sample_duration(rng: &mut ChaCha8Rng, d: &DurationSpec) -> u64 {
    let ms = match d.dist {
        DurationKind::Fixed => d.value.map(|v| v.0 as f64).unwrap_or(0.0),
        DurationKind::Exponential => exp_sample(rng, d.mean.map(|v| v.0 as f64).unwrap_or(1.0)),
        DurationKind::Lognormal => {
            let m = d.median.map(|v| v.0 as f64).unwrap_or(1.0);
            m * (d.sigma.unwrap_or(1.0) * normal(rng)).exp()
        }
        DurationKind::Empirical => {
            if d.values.is_empty() {
                0.0
            } else {
                d.values[rng.random_range(0..d.values.len())].0 as f64
            }
        }
    };
    ms.clamp(1.0, 1e15) as u64
}

/// Which nodes admit one pod class, as a bit per engine node index, and the ledger clock it was
/// last brought up to date at (`None`: recompute every node).
#[derive(Debug, Default)]
struct Admitted {
    bits: Vec<u64>,
    clock: Option<u64>,
}

/// The control loop a run drives (and a restart rebuilds). Unschedulable pods carry only the
/// totals per reason: the simulator shows one line per pod, never a map keyed by node name.
fn controller(scheduler: &Scheduler, seed: u64) -> Controller {
    Controller::new(scheduler.clone(), RequestTranslator::default(), seed)
        .with_reasons(Reasons::Totals)
}

/// One simulation run (scenario variant × policy × seed).
pub struct Engine<'a> {
    sc: &'a Scenario,
    var: &'a Variant,
    policy: &'a PolicyRes,
    seed: u64,
    opts: RunOptions,
    scheduler: Scheduler,
    ctl: Controller,
    restarts: u64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    pods: Vec<SimPod>,
    nodes: Vec<SimNode>,
    /// Node name → index in `nodes`; only looked up (a bind names its node), never iterated.
    node_index: HashMap<String, u32, FastBuild>,
    active: BTreeSet<(Reverse<i32>, u32)>,
    backoff: BTreeSet<(u64, u32)>,
    parked: Vec<BTreeSet<(Reverse<i32>, u32)>>,
    parked_classes: BTreeSet<u32>,
    class_failed: Vec<u64>,
    class_reason: Vec<Why>,
    stamp: u64,
    wake_at: Option<u64>,
    // generators
    rng_arr: ChaCha8Rng,
    rng_dur: ChaCha8Rng,
    rng_size: ChaCha8Rng,
    rng_fault: ChaCha8Rng,
    rng_api: ChaCha8Rng,
    gen_t: f64,
    class_cdf: Vec<f64>,
    trace_order: Vec<u32>,
    arrived: u64,
    arrivals_done: bool,
    recoveries: Vec<(u32, Vec<usize>)>,
    // metrics
    cap_cores: u64,
    cap_mem: u64,
    cap_cards: u64,
    used_cores: u64,
    used_mem: u64,
    occupied: u64,
    frag: f64,
    /// Per pool: core units and memory (MiB) of its cards.
    pool_cap: Vec<[u64; 2]>,
    /// Per pool: core units and memory granted now.
    pool_used: Vec<[u64; 2]>,
    last_t: u64,
    area: [f64; 6],
    /// Per pool: time integrals of the compute and memory shares.
    pool_area: Vec<[f64; 2]>,
    pending: u64,
    running: u64,
    binding: u64,
    waits: Vec<f32>,
    placed: u64,
    unsched: u64,
    rejected: u64,
    evicted: u64,
    bind_failures: u64,
    reasons: BTreeMap<Why, u64>,
    series: Vec<Sample>,
    per_arrival: Vec<(f64, f64)>,
    arrival_stride: u64,
    arrived_demand: f64,
    events: u64,
    hash: Fnv,
    errors: Vec<String>,
    explain_id: Option<u32>,
    explanation: Option<Explanation>,
    next_start: usize,
    log: Vec<LogEntry>,
    /// Per class, which nodes (by engine index) are up and admitted by the cheap bound, kept
    /// current from the ledger's change log (see [`Admitted`]).
    admitted: Vec<Admitted>,
    /// Per ledger node id, the engine's node index (`NO_NODE` for none).
    node_of_lid: Vec<u32>,
    /// Per engine node index, its ledger id (`NO_NODE` for none; read through [`Engine::lid`]):
    /// the candidate search reads hundreds per pod, and a compact array keeps them in a few
    /// cache lines.
    lid_of_node: Vec<u32>,
    /// Pods whose state or object changed during the current event (for the checker).
    touched: Vec<u32>,
    /// The keys of the pods an event touched, for the checker: buffers rewritten per event
    /// (two allocations per touched pod were nearly a tenth of the incremental check).
    touched_keys: Vec<PodKey>,
    /// The checker and the fragmentation metric on a helper thread, while the run goes on
    /// (see [`CheckerThread`]).
    follower: Option<FollowerThread>,
    /// The records of the checker that ran on a helper thread, kept to be freed with the
    /// rest of the run's state.
    followed: Option<Follower>,
    /// The checker's memory between events.
    checker: checker::Incremental,
    /// The nodes' Node objects as the controller read them, registered when the run starts.
    registrations: Vec<NodeRead>,
    /// Per class, a Pod with the class template's spec. The controller reads a pod through
    /// it: the pod's metadata is swapped in for the call and out after (see [`Engine::staged`]).
    stage: Vec<Pod>,
    /// Card models' access rows for the fragmentation metric (the variant's target workload).
    access_rows: AccessRows,
}

impl<'a> Engine<'a> {
    /// Set up a run: each node's real Node object built and read as `NodeChanged` reads it
    /// ([`read_node`]); [`Engine::run`] registers them in node order before the first event.
    pub fn new(
        sc: &'a Scenario,
        var: &'a Variant,
        policy: &'a PolicyRes,
        seed: u64,
        opts: RunOptions,
    ) -> Engine<'a> {
        let scheduler = scheduler_for(policy, var);
        let ctl = controller(&scheduler, sub_seed(seed, "scheduler"));
        let (nodes, registrations) = publish_nodes(&var.nodes);
        let node_index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node.name.clone(), i as u32))
            .collect();
        let ncls = var.classes.len();
        let total_w: f64 = var.classes.iter().map(|c| c.weight).sum();
        let mut acc = 0.0;
        let class_cdf = var
            .classes
            .iter()
            .map(|c| {
                acc += c.weight / total_w.max(f64::MIN_POSITIVE);
                acc
            })
            .collect();
        let mut cap_cores = 0;
        let mut cap_mem = 0;
        let mut cap_cards = 0;
        let mut pool_cap = vec![[0u64; 2]; var.pools.len().max(1)];
        for n in &nodes {
            for d in &n.node.devices {
                cap_cores += u64::from(d.cores);
                cap_mem += d.memory_mib;
                cap_cards += 1;
                let cap = &mut pool_cap[n.pool as usize];
                cap[0] += u64::from(d.cores);
                cap[1] += d.memory_mib;
            }
        }
        let expected = sc.stop_pods.unwrap_or(match &var.source {
            Source::Trace { pods, .. } => pods.len() as u64,
            Source::Generated { arrival, .. } => {
                (arrival.rate * sc.stop_time.unwrap_or(3_600_000) as f64 / 1000.0) as u64
            }
        });
        let npools = pool_cap.len();
        Engine {
            sc,
            var,
            policy,
            seed,
            opts,
            scheduler,
            ctl,
            restarts: 0,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            // Every pod a run expects, without regrowing (a generator's estimate is capped: an
            // unused reservation is address space the run never touches).
            pods: Vec::with_capacity(expected.min(1 << 22) as usize),
            nodes,
            node_index,
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            parked: vec![BTreeSet::new(); ncls],
            parked_classes: BTreeSet::new(),
            class_failed: vec![0; ncls],
            class_reason: vec![Why::New; ncls],
            stamp: 0,
            wake_at: None,
            rng_arr: ChaCha8Rng::seed_from_u64(sub_seed(seed, "arrivals")),
            rng_dur: ChaCha8Rng::seed_from_u64(sub_seed(seed, "durations")),
            rng_size: ChaCha8Rng::seed_from_u64(sub_seed(seed, "sizes")),
            rng_fault: ChaCha8Rng::seed_from_u64(sub_seed(seed, "faults")),
            rng_api: ChaCha8Rng::seed_from_u64(sub_seed(seed, "api")),
            gen_t: 0.0,
            class_cdf,
            trace_order: Vec::new(),
            arrived: 0,
            arrivals_done: false,
            recoveries: Vec::new(),
            cap_cores,
            cap_mem,
            cap_cards,
            used_cores: 0,
            used_mem: 0,
            occupied: 0,
            frag: 0.0,
            pool_cap,
            pool_used: vec![[0; 2]; npools],
            last_t: 0,
            area: [0.0; 6],
            pool_area: vec![[0.0; 2]; npools],
            pending: 0,
            running: 0,
            binding: 0,
            waits: Vec::new(),
            placed: 0,
            unsched: 0,
            rejected: 0,
            evicted: 0,
            bind_failures: 0,
            reasons: BTreeMap::new(),
            series: Vec::new(),
            per_arrival: Vec::new(),
            arrival_stride: (expected / 1000).max(1),
            arrived_demand: 0.0,
            events: 0,
            hash: Fnv::default(),
            errors: Vec::new(),
            explain_id: None,
            explanation: None,
            next_start: 0,
            log: Vec::new(),
            admitted: Vec::new(),
            node_of_lid: Vec::new(),
            lid_of_node: vec![NO_NODE; var.nodes.len()],
            touched: Vec::new(),
            touched_keys: Vec::new(),
            follower: None,
            followed: None,
            checker: checker::Incremental::default(),
            registrations,
            stage: var
                .classes
                .iter()
                .map(|c| Pod {
                    metadata: ObjectMeta::default(),
                    ..c.template.clone()
                })
                .collect(),
            access_rows: AccessRows::default(),
        }
    }

    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn now_unix(&self) -> i64 {
        EPOCH + (self.now / 1000) as i64
    }

    fn pod_id(key: &PodKey) -> Option<u32> {
        key.name.rsplit('-').next().and_then(|s| s.parse().ok())
    }

    fn key(&self, id: u32) -> PodKey {
        let name = self.pods[id as usize]
            .meta
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        PodKey::new("sim", name)
    }

    fn handle(&mut self, ev: Event) -> Vec<Action> {
        let now = self.now_unix();
        self.ctl.handle(now, ev)
    }

    // ---------------------------------------------------------------- metrics

    fn advance(&mut self, t: u64) {
        if t > self.last_t {
            let dt = (t - self.last_t) as f64;
            let cc = self.cap_cores.max(1) as f64;
            self.area[0] += dt * self.used_cores as f64 / cc;
            self.area[1] += dt * self.used_mem as f64 / self.cap_mem.max(1) as f64;
            self.area[2] += dt * self.occupied as f64 / self.cap_cards.max(1) as f64;
            match self.follower.as_mut() {
                // The helper keeps the fragmentation metric (see `Engine::refresh`).
                Some(h) => h.advance(t),
                None => {
                    self.area[3] += dt * self.frag / (self.cap_cards.max(1) as f64 * 1000.0);
                }
            }
            self.area[4] += dt * self.pending as f64;
            self.area[5] += dt;
            for ((area, used), cap) in self
                .pool_area
                .iter_mut()
                .zip(&self.pool_used)
                .zip(&self.pool_cap)
            {
                for ((a, u), c) in area.iter_mut().zip(used).zip(cap) {
                    *a += dt * *u as f64 / (*c).max(1) as f64;
                }
            }
            self.last_t = t;
        }
        self.now = t;
    }

    /// Re-read the ledger id of node `ni` (after it was registered or removed).
    fn sync_id(&mut self, ni: u32) {
        let lid = self
            .ctl
            .ledger()
            .node_id(&self.nodes[ni as usize].node.name);
        if self.lid(ni) != lid {
            self.forget_admitted();
        }
        self.lid_of_node[ni as usize] = lid.unwrap_or(NO_NODE);
        if let Some(id) = lid {
            let at = id as usize;
            if self.node_of_lid.len() <= at {
                self.node_of_lid.resize(at + 1, NO_NODE);
            }
            self.node_of_lid[at] = ni;
        }
    }

    /// The ledger id of node `ni`, as last read by [`Engine::sync_id`].
    fn lid(&self, ni: u32) -> Option<NodeId> {
        self.lid_of_node
            .get(ni as usize)
            .copied()
            .filter(|&id| id != NO_NODE)
    }

    fn refresh(&mut self, ni: u32) {
        if self.lid(ni).is_none() || !self.nodes[ni as usize].up {
            self.sync_id(ni);
        }
        let (occ, mem, cores, frag) = {
            let sn = &self.nodes[ni as usize];
            let view = self.lid(ni).and_then(|id| self.ctl.ledger().view(id));
            match view {
                Some(v) if sn.up => {
                    let mut occ = 0u64;
                    let mut mem = 0u64;
                    let mut cores = 0u64;
                    for u in v.usage {
                        occ += u64::from(u.used > 0);
                        mem += u.used_mem;
                        cores += u64::from(u.used_cores.min(100));
                    }
                    // With the checker on a helper, the helper computes the fragmentation
                    // too, from the cards' free shares: the FGD measure is a tenth of an
                    // event's work, and no decision reads it.
                    let frag = match self.follower.as_mut() {
                        Some(h) => {
                            h.refresh(ni, Some(&v));
                            0.0
                        }
                        None => self.var.target.node_frag_with(&v, &mut self.access_rows),
                    };
                    (occ, mem, cores, frag)
                }
                _ => {
                    if let Some(h) = self.follower.as_mut() {
                        h.refresh(ni, None);
                    }
                    (0, 0, 0, 0.0)
                }
            }
        };
        let sn = &mut self.nodes[ni as usize];
        self.occupied = self.occupied + occ - sn.occupied;
        self.used_mem = self.used_mem + mem - sn.mem;
        self.used_cores = self.used_cores + cores - sn.cores;
        let p = sn.pool as usize;
        let used = &mut self.pool_used[p];
        used[0] = used[0] + cores - sn.cores;
        used[1] = used[1] + mem - sn.mem;
        self.frag += frag - sn.frag;
        sn.occupied = occ;
        sn.mem = mem;
        sn.cores = cores;
        sn.frag = frag;
    }

    fn sample(&mut self) {
        // With the checker on a helper, the fragmentation is filled in from the helper's
        // samples when the run ends.
        if let Some(h) = self.follower.as_mut() {
            h.sample();
        }
        self.series.push(Sample {
            t: self.now as f64 / 1000.0,
            allocation: self.used_cores as f64 / self.cap_cores.max(1) as f64,
            memory: self.used_mem as f64 / self.cap_mem.max(1) as f64,
            cards: self.occupied as f64 / self.cap_cards.max(1) as f64,
            fragmentation: self.frag.max(0.0) / (self.cap_cards.max(1) as f64 * 1000.0),
            pending: self.pending,
            running: self.running + self.binding,
        });
    }

    // ---------------------------------------------------------------- arrivals

    fn next_class(&mut self) -> u32 {
        let u: f64 = self.rng_size.random::<f64>();
        self.class_cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.class_cdf.len().saturating_sub(1)) as u32
    }

    fn create_pod(&mut self, class: u32, duration: Option<u64>) {
        let id = self.pods.len() as u32;
        let c = &self.var.classes[class as usize];
        let mut meta = Box::new(c.template.metadata.clone());
        let name = pod_name(&c.name, id);
        meta.uid = Some(pod_name("uid", id));
        let want = self.opts.explain_pod.as_deref();
        if want == Some(name.as_str())
            || (want == Some(c.name.as_str()) && self.explain_id.is_none())
        {
            self.explain_id = Some(id);
        }
        if self.opts.record {
            self.log.push(LogEntry::Arrived {
                t_ms: self.now,
                pod: name.clone(),
                class,
            });
        }
        meta.name = Some(name);
        let prio = c.request.priority;
        self.touched.push(id);
        self.pods.push(SimPod {
            meta: Some(meta),
            class,
            arrival: self.now,
            duration,
            prio,
            state: PodState::Active,
            inc: 0,
            attempts: 0,
            last_try: self.now,
            reason: Some(Why::New),
            node: NO_NODE,
            placed_once: false,
            bind_fails: false,
        });
        self.active.insert((Reverse(prio), id));
        self.pending += 1;
        self.arrived += 1;
        self.arrived_demand += c.gpu_demand;
        if self.arrived.is_multiple_of(self.arrival_stride) {
            self.per_arrival.push((
                100.0 * self.arrived_demand / self.cap_cards.max(1) as f64,
                self.used_cores as f64 / self.cap_cores.max(1) as f64,
            ));
        }
    }

    fn past_stop(&self, t: u64) -> bool {
        self.sc.stop_time.is_some_and(|s| t >= s)
            || self.sc.stop_pods.is_some_and(|p| self.arrived >= p)
    }

    /// Handle an arrival event: create the pod(s) and schedule the next arrival.
    fn arrival(&mut self) {
        match &self.var.source {
            Source::Generated { arrival, duration } => {
                let n = if arrival.process == ArrivalKind::Bursts {
                    arrival.burst_size.unwrap_or(1)
                } else {
                    1
                };
                let default = duration.clone();
                for _ in 0..n {
                    if self.sc.stop_pods.is_some_and(|p| self.arrived >= p) {
                        break;
                    }
                    let class = self.next_class();
                    let d = self.var.classes[class as usize]
                        .duration
                        .clone()
                        .unwrap_or_else(|| default.clone());
                    let dur = sample_duration(&mut self.rng_dur, &d);
                    self.create_pod(class, Some(dur));
                }
                let rate = arrival.rate;
                let next_s = match arrival.process {
                    ArrivalKind::Poisson => self.gen_t + exp_sample(&mut self.rng_arr, 1.0 / rate),
                    ArrivalKind::Constant => self.gen_t + 1.0 / rate,
                    ArrivalKind::Bursts => {
                        let b = f64::from(arrival.burst_size.unwrap_or(1).max(1));
                        self.gen_t + exp_sample(&mut self.rng_arr, b / rate)
                    }
                    ArrivalKind::Diurnal => {
                        let r = arrival.peak_ratio.unwrap_or(3.0);
                        let a = (r - 1.0) / (r + 1.0);
                        let period = arrival
                            .period
                            .map(|p| p.secs())
                            .unwrap_or(86_400.0)
                            .max(1e-3);
                        let lmax = rate * (1.0 + a);
                        let mut t = self.gen_t;
                        loop {
                            t += exp_sample(&mut self.rng_arr, 1.0 / lmax);
                            let l =
                                rate * (1.0 + a * (2.0 * std::f64::consts::PI * t / period).sin());
                            let u: f64 = self.rng_arr.random::<f64>();
                            if u * lmax <= l {
                                break t;
                            }
                        }
                    }
                };
                self.gen_t = next_s;
                let t = (next_s * 1000.0) as u64;
                if self.past_stop(t) {
                    self.arrivals_done = true;
                } else {
                    self.push(t.max(self.now), Ev::Arrival);
                }
            }
            Source::Trace {
                pods,
                mode,
                rate,
                limit,
            } => {
                let pods = pods.clone();
                let (mode, rate, limit) = (*mode, *rate, *limit);
                let i = self.arrived as usize;
                let Some(&idx) = self.trace_order.get(i) else {
                    self.arrivals_done = true;
                    return;
                };
                let a = pods[idx as usize];
                self.create_pod(a.class, a.duration);
                let n = i + 1;
                let total = limit.map_or(self.trace_order.len(), |l| l.min(self.trace_order.len()));
                if n >= total || self.sc.stop_pods.is_some_and(|p| self.arrived >= p) {
                    self.arrivals_done = true;
                    return;
                }
                let t = match mode {
                    TraceMode::Timestamps => {
                        let t0 = pods.first().map(|p| p.at).unwrap_or(0);
                        pods[self.trace_order[n] as usize].at - t0
                    }
                    _ => (n as f64 / rate * 1000.0) as u64,
                };
                if self.sc.stop_time.is_some_and(|s| t >= s) {
                    self.arrivals_done = true;
                } else {
                    self.push(t.max(self.now), Ev::Arrival);
                }
            }
        }
    }

    // ---------------------------------------------------------------- queue

    fn backoff_ms(&self, attempts: u32) -> u64 {
        let q = &self.sc.file.queue;
        let mut b = q.backoff_initial.0;
        for _ in 1..attempts.min(40) {
            b = b.saturating_mul(2);
            if b >= q.backoff_max.0 {
                break;
            }
        }
        b.min(q.backoff_max.0)
    }

    fn retry(&mut self, id: u32) {
        self.touched.push(id);
        let p = &self.pods[id as usize];
        let until = p.last_try + self.backoff_ms(p.attempts);
        let prio = p.prio;
        if until <= self.now {
            self.pods[id as usize].state = PodState::Active;
            self.active.insert((Reverse(prio), id));
        } else {
            self.pods[id as usize].state = PodState::Backoff;
            self.backoff.insert((until, id));
            if self.wake_at.is_none_or(|w| until < w) {
                self.wake_at = Some(until);
                self.push(until, Ev::Wake);
            }
        }
    }

    fn flush_backoff(&mut self) {
        while let Some(&(until, id)) = self.backoff.first() {
            if until > self.now {
                break;
            }
            self.backoff.remove(&(until, id));
            self.touched.push(id);
            let prio = self.pods[id as usize].prio;
            self.pods[id as usize].state = PodState::Active;
            self.active.insert((Reverse(prio), id));
        }
        if let Some(&(until, _)) = self.backoff.first()
            && self.wake_at.is_none_or(|w| w <= self.now || until < w)
        {
            self.wake_at = Some(until);
            self.push(until, Ev::Wake);
        }
    }

    fn park(&mut self, id: u32, why: Why) {
        self.touched.push(id);
        let p = &mut self.pods[id as usize];
        p.state = PodState::Parked;
        p.reason = Some(why);
        p.attempts += 1;
        p.last_try = self.now;
        let (c, prio) = (p.class, p.prio);
        if self.opts.record {
            let pod = self.key(id).name;
            self.log.push(LogEntry::Unschedulable {
                t_ms: self.now,
                pod,
                reason: why.as_str().to_string(),
            });
        }
        self.parked[c as usize].insert((Reverse(prio), id));
        self.parked_classes.insert(c);
        self.unsched += 1;
        *self.reasons.entry(why).or_insert(0) += 1;
    }

    /// Upper bound on how many pods of `class` could fit on a node (0 = none can).
    fn bound(&self, class: u32, v: &NodeView<'_>) -> usize {
        let req = &self.var.classes[class as usize].request;
        let mut best = usize::MAX;
        let n = v.node;
        if n.cpu_milli > 0 && req.cpu_milli > 0 {
            best =
                best.min((n.cpu_milli.saturating_sub(v.used.cpu_milli) / req.cpu_milli) as usize);
        }
        if n.memory_mib > 0 && req.memory_mib > 0 {
            best = best
                .min((n.memory_mib.saturating_sub(v.used.memory_mib) / req.memory_mib) as usize);
        }
        for c in &req.containers {
            for d in &c.devices {
                let mut slots = 0usize;
                for (dev, u) in n.devices.iter().zip(v.usage) {
                    if dev.family != d.family || !dev.healthy || dev.cordoned {
                        continue;
                    }
                    let free_slots = dev.split_count.saturating_sub(u.used) as usize;
                    let need = d.memory_on(dev.memory_mib).max(1);
                    let by_mem = (dev.memory_mib.saturating_sub(u.used_mem) / need) as usize;
                    let free_cores = dev.cores.saturating_sub(u.used_cores);
                    let by_cores = if let Some(k) = free_cores.checked_div(d.cores) {
                        k as usize
                    } else if free_cores == 0 && dev.cores > 0 {
                        0
                    } else {
                        usize::MAX
                    };
                    slots = slots.saturating_add(free_slots.min(by_mem).min(by_cores));
                }
                best = best.min(slots / (d.count.max(1) as usize));
            }
        }
        best
    }

    /// kube-scheduler's candidate search: from a rotating start, the first nodes that are up
    /// and admitted by the cheap bound, until `max(100, pct % of nodes)` are found.
    fn candidates(&mut self, class: u32, pct: u32) -> Vec<NodeId> {
        let n = self.nodes.len();
        let want = (n * pct as usize / 100).max(100).min(n);
        self.sync_admitted(class);
        let start = self.next_start % n.max(1);
        let mut out = Vec::with_capacity(want.min(1024));
        let bits = &self.admitted[class as usize].bits;
        // Visit node indices `start..n`, then `0..start`, a word of the admitted set at a time
        // (bits of indices outside the range masked off); `taken` is the last one taken when
        // `want` are found.
        let mut taken: Option<usize> = None;
        'ranges: for (lo, hi) in [(start, n), (0, start)] {
            let mut i = lo;
            while i < hi {
                let w = i / 64;
                let word_end = ((w + 1) * 64).min(hi);
                let mut word = bits.get(w).copied().unwrap_or(0) >> (i % 64) << (i % 64);
                if word_end % 64 != 0 {
                    word &= (1u64 << (word_end % 64)) - 1;
                }
                while word != 0 {
                    let node = w * 64 + word.trailing_zeros() as usize;
                    word &= word - 1;
                    let id = self.lid_of_node.get(node).copied().unwrap_or(NO_NODE);
                    if id != NO_NODE {
                        out.push(id);
                        if out.len() == want {
                            taken = Some(node);
                            break 'ranges;
                        }
                    }
                }
                i = word_end;
            }
        }
        // The offset from `start` after the last candidate taken (all `n` when fewer were found).
        let visited = match taken {
            Some(node) if node >= start => node - start + 1,
            Some(node) => node + n - start + 1,
            None => n,
        };
        self.next_start = (start + visited) % n.max(1);
        out
    }

    /// Bring class `class`'s admitted set up to date: the nodes the ledger changed since the
    /// last sync (all of them after a restart, a node going down or coming back).
    fn sync_admitted(&mut self, class: u32) {
        let c = class as usize;
        if self.admitted.len() <= c {
            self.admitted.resize_with(c + 1, Admitted::default);
        }
        let ledger = self.ctl.ledger();
        let changed: Vec<u32> = match self.admitted[c]
            .clock
            .and_then(|since| ledger.latest_changes_since(since))
            .map(|(_, changed)| changed)
        {
            Some(ids) => ids
                .filter_map(|lid| self.node_of_lid.get(lid as usize).copied())
                .filter(|&i| i != NO_NODE)
                .collect(),
            None => (0..self.nodes.len() as u32).collect(),
        };
        let verdicts: Vec<(u32, bool)> = changed
            .into_iter()
            .map(|i| {
                let ok = self.nodes[i as usize].up
                    && self
                        .lid(i)
                        .and_then(|id| ledger.view(id))
                        .is_some_and(|v| self.bound(class, &v) > 0);
                (i, ok)
            })
            .collect();
        let clock = ledger.clock();
        let a = &mut self.admitted[c];
        a.bits.resize(self.nodes.len().div_ceil(64), 0);
        for (i, ok) in verdicts {
            let (w, b) = (i as usize / 64, i % 64);
            if ok {
                a.bits[w] |= 1 << b;
            } else {
                a.bits[w] &= !(1 << b);
            }
        }
        a.clock = Some(clock);
    }

    /// A node went down, came back or changed its ledger id: every admitted set starts over.
    fn forget_admitted(&mut self) {
        for a in &mut self.admitted {
            a.clock = None;
        }
    }

    /// Capacity freed on node `ni`: move parked pods that could now fit there back (after
    /// their backoff).
    fn wake_node(&mut self, ni: u32) {
        if self.parked_classes.is_empty() {
            return;
        }
        let name = self.nodes[ni as usize].node.name.clone();
        let Some(id) = self.ctl.ledger().node_id(&name) else {
            return;
        };
        let classes: Vec<u32> = self.parked_classes.iter().copied().collect();
        let mut moves: Vec<(u32, usize)> = Vec::new();
        if let Some(v) = self.ctl.ledger().view(id) {
            for c in classes {
                let b = self.bound(c, &v);
                if b > 0 {
                    moves.push((c, b));
                }
            }
        }
        for (c, b) in moves {
            self.class_failed[c as usize] = 0;
            for _ in 0..b {
                let Some(first) = self.parked[c as usize].pop_first() else {
                    break;
                };
                self.retry(first.1);
            }
            if self.parked[c as usize].is_empty() {
                self.parked_classes.remove(&c);
            }
        }
    }

    fn wake_all(&mut self, why: Why) {
        let classes: Vec<u32> = std::mem::take(&mut self.parked_classes)
            .into_iter()
            .collect();
        for c in classes {
            self.class_failed[c as usize] = 0;
            while let Some(first) = self.parked[c as usize].pop_first() {
                self.touched.push(first.1);
                self.pods[first.1 as usize].reason = Some(why);
                self.retry(first.1);
            }
        }
    }

    /// Drain the active queue: one attempt per pod, priority then arrival order.
    fn cycle(&mut self) {
        self.flush_backoff();
        self.stamp += 1;
        while let Some((_, id)) = self.active.pop_first() {
            let c = self.pods[id as usize].class as usize;
            if self.class_failed[c] == self.stamp && Some(id) != self.explain_id {
                let why = self.class_reason[c];
                self.park(id, why);
                continue;
            }
            self.try_schedule(id);
        }
    }

    /// Swap pod `id`'s metadata with its class's staged Pod's and return the class: after one
    /// call the staged Pod is the pod's object, after a second call both are back. None for a
    /// finished pod.
    fn staged(&mut self, id: u32) -> Option<usize> {
        let p = &mut self.pods[id as usize];
        let meta = p.meta.as_deref_mut()?;
        let c = p.class as usize;
        std::mem::swap(&mut self.stage[c].metadata, meta);
        Some(c)
    }

    /// A copy of pod `id`'s whole object (None once finished), for the rare paths that keep
    /// one: a scheduler restart's observation, an explanation.
    fn pod_object(&self, id: u32) -> Option<Pod> {
        let p = &self.pods[id as usize];
        let meta = p.meta.as_deref()?;
        Some(Pod {
            metadata: meta.clone(),
            ..self.stage[p.class as usize].clone()
        })
    }

    fn try_schedule(&mut self, id: u32) {
        self.touched.push(id);
        if self.pods[id as usize].meta.is_none() {
            return;
        }
        if Some(id) == self.explain_id
            && let Some(pod) = self.pod_object(id)
        {
            self.explain_before(id, &pod);
        }
        let candidates = self
            .sc
            .nodes_to_score_pct
            .map(|pct| self.candidates(self.pods[id as usize].class, pct));
        let now = self.now_unix();
        // The controller reads the pod through its class's staged object; nothing is copied
        // per attempt. The metadata goes back before any action changes it.
        let Some(c) = self.staged(id) else {
            return;
        };
        let pod = &self.stage[c];
        let actions = match candidates {
            None => self.ctl.pod_pending(now, pod),
            Some(nodes) => self.ctl.filter_ids(now, pod, nodes),
        };
        self.staged(id);
        let mut bound_to: Option<u32> = None;
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::PatchPod { annotations, .. } => self.patch(id, annotations),
                Action::BindPod { node, .. } => {
                    bound_to = self.node_index.get(&node).copied();
                }
                Action::Unschedulable { summary, .. } => {
                    let why = summary.main_reason().map(Why::Core).unwrap_or(
                        if self.sc.nodes_to_score_pct.is_some() {
                            Why::NoCandidate
                        } else {
                            Why::Core(Reason::NodeInsufficientDevice)
                        },
                    );
                    let c = self.pods[id as usize].class as usize;
                    self.class_failed[c] = self.stamp;
                    self.class_reason[c] = why;
                    if Some(id) == self.explain_id
                        && let Some(e) = self.explanation.as_mut()
                    {
                        e.outcome = summary.headline();
                    }
                    self.park(id, why);
                    self.hash.num(u64::from(id));
                    self.hash.num(0xdead);
                }
                Action::Rejected { error, .. } => {
                    self.pods[id as usize].state = PodState::Rejected;
                    self.pods[id as usize].reason = None;
                    self.pending -= 1;
                    self.rejected += 1;
                    if self.errors.len() < 10 {
                        self.errors.push(format!("{}: {error}", self.key(id)));
                    }
                }
                Action::NotManaged(_) => {
                    // Not a device pod: the default scheduler's business; it simply runs.
                    self.start_running(id, NO_NODE);
                }
                Action::NodeError { node, error } => {
                    if self.errors.len() < 10 {
                        self.errors.push(format!("node {node}: {error}"));
                    }
                }
                Action::FilterResult { pod, node, .. } => {
                    if let Some(node) = node {
                        let more = self.handle(Event::Bind { pod, node });
                        queue.extend(more);
                    }
                }
            }
        }
        if let Some(ni) = bound_to {
            self.hash.num(u64::from(id));
            self.hash.num(u64::from(ni));
            if self.opts.record {
                self.record_placed(id, ni);
            }
            if Some(id) == self.explain_id
                && let Some(e) = self.explanation.as_mut()
            {
                let name = self.nodes[ni as usize].node.name.clone();
                e.outcome = format!("placed on {name}");
                e.chosen = Some(name);
            }
            let p = &mut self.pods[id as usize];
            p.node = ni;
            p.attempts += 1;
            p.last_try = self.now;
            self.refresh(ni);
            let api = &self.sc.file.api;
            let fails = api.bind_failure > 0.0 && self.rng_api.random::<f64>() < api.bind_failure;
            if api.bind_delay.0 > 0 {
                let p = &mut self.pods[id as usize];
                p.state = PodState::Binding;
                p.bind_fails = fails;
                p.reason = None;
                let inc = p.inc;
                self.pending -= 1;
                self.binding += 1;
                self.push(self.now + api.bind_delay.0, Ev::BindDone { pod: id, inc });
            } else {
                self.pending -= 1;
                self.binding += 1;
                self.pods[id as usize].state = PodState::Binding;
                self.complete_bind(id, fails);
            }
        }
    }

    fn record_placed(&mut self, id: u32, ni: u32) {
        let pod = self.key(id).name;
        let devices: BTreeMap<String, String> = self.pods[id as usize]
            .meta
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .map(|a| {
                hami_core::family::FamilyId::all()
                    .map(|f| f.spec().allocated_annotation)
                    .filter_map(|k| a.get(k).map(|v| (k.to_string(), v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        self.log.push(LogEntry::Placed {
            t_ms: self.now,
            pod,
            node: self.nodes[ni as usize].node.name.clone(),
            devices,
        });
    }

    fn patch(&mut self, id: u32, annotations: BTreeMap<String, Option<String>>) {
        self.touched.push(id);
        if let Some(meta) = self.pods[id as usize].meta.as_mut() {
            let ann = meta.annotations.get_or_insert_with(BTreeMap::new);
            // The patch's keys are distinct: its removals first, then its values in one
            // sorted merge (a pod's first patch lands in an empty map, which takes them whole)
            // instead of a tree search per key.
            let mut set: Vec<(String, String)> = Vec::with_capacity(annotations.len());
            for (k, v) in annotations {
                match v {
                    Some(v) => set.push((k, v)),
                    None => {
                        ann.remove(&k);
                    }
                }
            }
            ann.append(&mut set.into_iter().collect());
        }
    }

    fn complete_bind(&mut self, id: u32, fails: bool) {
        self.touched.push(id);
        self.binding -= 1;
        let ni = self.pods[id as usize].node;
        if fails {
            let key = self.key(id);
            self.handle(Event::BindFailed(key));
            self.bind_failures += 1;
            let mut m = BTreeMap::new();
            m.insert(keys::BIND_PHASE.to_string(), Some("failed".to_string()));
            self.patch(id, m);
            let p = &mut self.pods[id as usize];
            p.node = NO_NODE;
            p.reason = Some(Why::BindFailed);
            self.pending += 1;
            *self.reasons.entry(Why::BindFailed).or_insert(0) += 1;
            self.hash.num(0xb1d);
            self.retry(id);
            if ni != NO_NODE {
                self.refresh(ni);
                self.wake_node(ni);
            }
        } else {
            self.binding += 1;
            self.pending += 1;
            self.start_running(id, ni);
        }
    }

    fn start_running(&mut self, id: u32, ni: u32) {
        self.touched.push(id);
        let now = self.now;
        let p = &mut self.pods[id as usize];
        if p.state == PodState::Binding {
            self.binding -= 1;
        }
        p.state = PodState::Running;
        p.reason = None;
        p.node = ni;
        self.pending -= 1;
        self.running += 1;
        self.placed += 1;
        if !p.placed_once {
            p.placed_once = true;
            self.waits.push(((now - p.arrival) as f64 / 1000.0) as f32);
        }
        if let Some(d) = p.duration {
            let inc = p.inc;
            self.push(now + d, Ev::Finish { pod: id, inc });
        }
    }

    fn finish(&mut self, id: u32, inc: u32) {
        let p = &self.pods[id as usize];
        if p.inc != inc || p.state != PodState::Running {
            return;
        }
        self.touched.push(id);
        let ni = p.node;
        if ni != NO_NODE {
            let key = self.key(id);
            if self.opts.record {
                self.log.push(LogEntry::Deleted {
                    t_ms: self.now,
                    pod: key.name.clone(),
                });
            }
            self.handle(Event::PodDeleted(key));
        }
        let p = &mut self.pods[id as usize];
        p.state = PodState::Finished;
        p.meta = None;
        p.node = NO_NODE;
        self.running -= 1;
        if ni != NO_NODE {
            self.refresh(ni);
            self.wake_node(ni);
        }
    }

    /// A running or binding pod whose node is lost: it fails and is resubmitted as a fresh
    /// pod object (the controller that owns it creates a new one).
    fn evict(&mut self, id: u32) {
        self.touched.push(id);
        let template = &self.var.classes[self.pods[id as usize].class as usize].template;
        let p = &mut self.pods[id as usize];
        match p.state {
            PodState::Running => self.running -= 1,
            PodState::Binding => self.binding -= 1,
            _ => return,
        }
        if let Some(old) = p.meta.as_mut() {
            let mut fresh = template.metadata.clone();
            fresh.name = old.name.take();
            fresh.uid = old.uid.take();
            **old = fresh;
        }
        p.inc += 1;
        p.node = NO_NODE;
        p.state = PodState::Active;
        p.reason = Some(Why::Resubmitted);
        p.attempts = 0;
        let prio = p.prio;
        self.pending += 1;
        self.evicted += 1;
        self.active.insert((Reverse(prio), id));
    }

    // ---------------------------------------------------------------- faults

    fn pick_nodes(&mut self, f: &FaultRes, up: bool) -> Vec<u32> {
        // A device fault strikes only nodes with a card it can fail (see `can_fail`).
        let device_fault = f.kind == FaultKind::DeviceUnhealthy;
        let mut cands: Vec<u32> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.up == up && f.pool.is_none_or(|p| p == n.pool))
            .filter(|(_, n)| !device_fault || n.node.devices.iter().any(can_fail))
            .map(|(i, _)| i as u32)
            .collect();
        cands.shuffle(&mut self.rng_fault);
        cands.truncate(f.nodes as usize);
        cands.sort_unstable();
        cands
    }

    fn fault(&mut self, i: u32) -> Result<(), String> {
        let f = self.sc.faults[i as usize].clone();
        match f.kind {
            FaultKind::NodeLoss => {
                for ni in self.pick_nodes(&f, true) {
                    let name = self.nodes[ni as usize].node.name.clone();
                    let mut on: Vec<PodKey> = self
                        .ctl
                        .ledger()
                        .node_id(&name)
                        .and_then(|id| self.ctl.ledger().entry(id))
                        .map(|e| e.pods.iter().cloned().collect())
                        .unwrap_or_default();
                    // Evicted in key order: the ledger's set has none.
                    on.sort_unstable();
                    self.handle(Event::NodeRemoved(name));
                    for k in &on {
                        self.handle(Event::PodDeleted(k.clone()));
                        if let Some(id) = Self::pod_id(k) {
                            self.evict(id);
                        }
                    }
                    self.nodes[ni as usize].up = false;
                    self.forget_admitted();
                    self.refresh(ni);
                    self.hash.num(0x1055);
                    self.hash.num(u64::from(ni));
                    if let Some(d) = f.recover_after {
                        self.push(self.now + d, Ev::NodeReturn(ni));
                    }
                }
            }
            FaultKind::DeviceUnhealthy => {
                for ni in self.pick_nodes(&f, true) {
                    let healthy: Vec<usize> = self.nodes[ni as usize]
                        .node
                        .devices
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.healthy && can_fail(d))
                        .map(|(i, _)| i)
                        .collect();
                    let mut h = healthy;
                    h.shuffle(&mut self.rng_fault);
                    h.truncate(f.cards as usize);
                    for &c in &h {
                        self.nodes[ni as usize].node.devices[c].healthy = false;
                    }
                    self.republish(ni);
                    self.hash.num(0xdead_ca4d);
                    self.hash.num(u64::from(ni));
                    if let Some(d) = f.recover_after {
                        self.recoveries.push((ni, h));
                        let r = (self.recoveries.len() - 1) as u32;
                        self.push(self.now + d, Ev::CardsRecover(r));
                    }
                }
            }
            FaultKind::SchedulerRestart => self.restart()?,
        }
        Ok(())
    }

    fn republish(&mut self, ni: u32) {
        if self.nodes[ni as usize].up {
            let ev = self.node_changed(ni);
            self.handle(ev);
            self.refresh(ni);
        }
    }

    /// Node `ni`'s `NodeChanged`: its Node object as its agent publishes it now.
    fn node_changed(&self, ni: u32) -> Event {
        Event::NodeChanged(Box::new(node_object(&self.nodes[ni as usize].node)))
    }

    /// Drop the controller and rebuild one from node and pod annotations only.
    fn restart(&mut self) -> Result<(), String> {
        self.restarts += 1;
        // The new controller's ledger numbers its versions afresh.
        self.forget_admitted();
        self.node_of_lid.clear();
        self.checker.invalidate();
        self.ctl = controller(
            &self.scheduler,
            sub_seed(self.seed, &format!("scheduler-{}", self.restarts)),
        );
        for ni in 0..self.nodes.len() {
            if self.nodes[ni].up {
                let ev = self.node_changed(ni as u32);
                self.handle(ev);
            }
        }
        for id in 0..self.pods.len() {
            let p = &self.pods[id];
            if matches!(p.state, PodState::Running | PodState::Binding) && p.node != NO_NODE {
                let Some(pod) = self.pod_object(id as u32) else {
                    continue;
                };
                for a in self.handle(Event::PodObserved(Box::new(pod))) {
                    if let Action::Rejected { pod, error } = a {
                        return Err(format!(
                            "scheduler restart: pod {pod} could not be rebuilt from its annotations: {error}"
                        ));
                    }
                }
            }
        }
        for ni in 0..self.nodes.len() as u32 {
            self.sync_id(ni);
            self.refresh(ni);
        }
        self.wake_all(Why::Requeued);
        self.hash.num(0x5e57);
        Ok(())
    }

    // ---------------------------------------------------------------- explain

    fn explain_before(&mut self, id: u32, pod: &Pod) {
        let Ok(req) = self.ctl.translator().translate(pod) else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let verdicts = self
            .ctl
            .scheduler()
            .explain(self.ctl.ledger(), &req, &mut rng);
        let p = &self.pods[id as usize];
        let keep_placed = self
            .explanation
            .as_ref()
            .is_some_and(|e| e.chosen.is_some());
        if keep_placed {
            return;
        }
        self.explanation = Some(Explanation {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            t: self.now as f64 / 1000.0,
            attempt: p.attempts + 1,
            policy: self.policy.name.clone(),
            outcome: String::new(),
            chosen: None,
            verdicts,
        });
    }

    // ---------------------------------------------------------------- checker

    fn pod_check(p: &SimPod) -> PodCheck<'_> {
        PodCheck {
            meta: p.meta.as_deref(),
            holds: matches!(p.state, PodState::Running | PodState::Binding) && p.node != NO_NODE,
            pending: matches!(
                p.state,
                PodState::Active | PodState::Backoff | PodState::Parked
            ),
            reason: p.reason.map(|r| r.as_str()),
        }
    }

    /// Run the full checker now. The error is a readable dump.
    pub fn check(&self) -> Result<(), String> {
        checker::check(self.ctl.ledger(), self.pods.iter().map(Self::pod_check))
    }

    /// The checker after one event: the full check when `full` (or when the ledger's change
    /// log no longer reaches the last check), otherwise the incremental one over what the event
    /// touched.
    fn check_event(&mut self, full: bool) -> Result<(), String> {
        let mut ids = std::mem::take(&mut self.touched);
        let r = self.check_touched(full, &mut ids);
        // The buffer goes back for the next event.
        ids.clear();
        self.touched = ids;
        r
    }

    fn check_touched(&mut self, full: bool, ids: &mut Vec<u32>) -> Result<(), String> {
        let ledger = self.ctl.ledger();
        if full || !self.checker.can_follow(ledger) {
            self.checker
                .full_check(ledger, self.pods.iter().map(Self::pod_check))?;
        } else {
            let cross = self.opts.cross_check.then(|| self.check());
            let list =
                Self::touched_list(&self.pods, &self.var.classes, &mut self.touched_keys, ids);
            let r = self
                .checker
                .after_event(ledger, &list, |k| Self::pod_id(k).map(|i| i as usize));
            match (cross, r) {
                (Some(Err(full)), Ok(())) => {
                    return Err(format!(
                        "the incremental checker passed what the full check rejects:\n{full}"
                    ));
                }
                (Some(Ok(())), Err(inc)) => {
                    return Err(format!(
                        "the incremental checker rejects what the full check passes:\n{inc}"
                    ));
                }
                (_, r) => r?,
            }
        }
        Ok(())
    }

    /// Pods `ids` (sorted and rid of repeats here) as the checkers take them, their keys
    /// written into the first `ids.len()` of `keys` (buffers kept between events).
    fn touched_list<'p>(
        pods: &'p [SimPod],
        classes: &[PodClass],
        keys: &'p mut Vec<PodKey>,
        ids: &mut Vec<u32>,
    ) -> Vec<checker::Touched<'p>> {
        ids.sort_unstable();
        ids.dedup();
        for (k, &id) in ids.iter().enumerate() {
            if keys.len() <= k {
                keys.push(PodKey::new("sim", String::new()));
            }
            let class = &classes[pods[id as usize].class as usize].name;
            let name = &mut keys[k].name;
            name.clear();
            push_pod_name(name, class, id);
        }
        ids.iter()
            .zip(keys.iter())
            .map(|(&id, key)| checker::Touched {
                index: id as usize,
                key,
                check: Self::pod_check(&pods[id as usize]),
            })
            .collect()
    }

    fn forge(&mut self, f: Forge) {
        if let Some(id) = self
            .pods
            .iter()
            .position(|p| p.state == PodState::Running && p.node != NO_NODE)
            && let Some(meta) = self.pods[id].meta.as_mut()
        {
            f(meta);
            self.touched.push(id as u32);
        }
    }

    // ---------------------------------------------------------------- run

    fn done(&self) -> bool {
        if !self.arrivals_done {
            return false;
        }
        if !self.sc.file.stop.drain {
            return true;
        }
        self.running + self.binding == 0 && self.backoff.is_empty() && self.active.is_empty()
    }

    /// Run to the stop condition. The error names the seed, the event index and what broke,
    /// and ends with `rerun with SEED=…`.
    pub fn run(mut self) -> Result<RunOutput, String> {
        let start = Instant::now();
        if self.checker_on_helper() {
            let metric = Metric::new(
                Arc::clone(&self.var.target),
                self.cap_cards,
                self.nodes.iter().map(|n| n.frag).collect(),
                self.frag,
                self.last_t,
                self.area[3],
            );
            self.follower = FollowerThread::start(metric);
        }
        // Each node's `NodeChanged`, its Node object read ahead (see `publish_nodes`).
        for read in std::mem::take(&mut self.registrations) {
            for a in self.ctl.node_read(read) {
                if let Action::NodeError { node, error } = a {
                    return Err(format!("node {node} does not register: {error}"));
                }
            }
        }
        for ni in 0..self.nodes.len() as u32 {
            self.refresh(ni);
        }
        if let Source::Trace { pods, mode, .. } = &self.var.source {
            let mut order: Vec<u32> = (0..pods.len() as u32).collect();
            if *mode == TraceMode::Shuffled {
                let mut r = ChaCha8Rng::seed_from_u64(sub_seed(self.seed, "trace-order"));
                order.shuffle(&mut r);
            }
            self.trace_order = order;
        }
        self.push(0, Ev::Arrival);
        self.push(0, Ev::Sample);
        for i in 0..self.sc.faults.len() {
            let at = self.sc.faults[i].at;
            self.push(at, Ev::Fault(i as u32));
        }
        if let Some(t) = self.sc.stop_time {
            self.push(t, Ev::Stop);
        }
        let check_every = self.opts.check_every.unwrap_or(self.sc.check_every).max(1);
        let mut halt = None;
        let mut ended = false;
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            self.advance(t);
            self.events += 1;
            let (k, a, b) = ev.code();
            self.hash.num(t);
            self.hash.num(k);
            self.hash.num(a);
            self.hash.num(b);
            let mut stop = false;
            match ev {
                Ev::Arrival => self.arrival(),
                Ev::Finish { pod, inc } => self.finish(pod, inc),
                Ev::BindDone { pod, inc } => {
                    let p = &self.pods[pod as usize];
                    if p.inc == inc && p.state == PodState::Binding {
                        let fails = p.bind_fails;
                        self.complete_bind(pod, fails);
                    }
                }
                Ev::Wake => {
                    if self.wake_at.is_some_and(|w| w <= t) {
                        self.wake_at = None;
                    }
                }
                Ev::Fault(i) => self.fault(i).map_err(|e| self.fail(&e))?,
                Ev::NodeReturn(ni) => {
                    self.nodes[ni as usize].up = true;
                    self.forget_admitted();
                    let ev = self.node_changed(ni);
                    self.handle(ev);
                    self.refresh(ni);
                    self.wake_node(ni);
                }
                Ev::CardsRecover(r) => {
                    let (ni, cards) = self.recoveries[r as usize].clone();
                    for c in cards {
                        self.nodes[ni as usize].node.devices[c].healthy = true;
                    }
                    self.republish(ni);
                    self.wake_node(ni);
                }
                Ev::Sample => {
                    self.sample();
                    let next = t + self.sc.sample_every;
                    if !self.done() {
                        self.push(next, Ev::Sample);
                    }
                }
                Ev::Stop => stop = true,
            }
            if !stop {
                self.cycle();
            }
            if let Some((at, f)) = self.opts.forge_at
                && at == self.events
            {
                self.forge(f);
            }
            let full = self.events.is_multiple_of(check_every) || stop;
            let last =
                stop || self.done() || self.opts.max_events.is_some_and(|m| self.events >= m);
            match self.follower {
                None => {
                    self.check_event(full).map_err(|e| self.fail(&e))?;
                    if last && !full {
                        self.check().map_err(|e| self.fail(&e))?;
                    }
                }
                Some(_) => {
                    // The full checks still run here: they read the whole state, which the
                    // next event changes. The last one waits for the helper (below).
                    let r = self.follow_event().and_then(|()| {
                        if full && !last && self.check().is_err() {
                            return Err(Halt::Violation(self.events));
                        }
                        Ok(())
                    });
                    if let Err(h) = r {
                        halt = Some(h);
                        break;
                    }
                }
            }
            if last {
                ended = true;
                break;
            }
        }
        if halt.is_none() {
            // The last sample (with the checker on a helper: before its last batch).
            self.sample();
        }
        if let Some(h) = self.follower.take() {
            let verdict = match halt {
                // Stop early: the helper reads what is queued, then ends.
                Some(h) => Err(h),
                None => self.finish_following(h, ended),
            };
            if let Err(h) = verdict {
                return self.check_here(h);
            }
        }
        let wall = start.elapsed().as_secs_f64();
        Ok(self.output(wall))
    }

    /// Whether the incremental checker runs on a helper (see [`CheckerThread`]).
    fn checker_on_helper(&self) -> bool {
        let possible = !self.opts.cross_check
            && self.sc.faults.is_empty()
            && !self
                .var
                .nodes
                .iter()
                .any(|(n, _)| n.devices.iter().any(|d| d.mode == DeviceMode::Mig));
        match self.opts.checker_thread {
            CheckerThread::This => false,
            CheckerThread::Helper => possible,
            CheckerThread::Auto => {
                static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
                let cores = *CORES.get_or_init(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                });
                possible && cores > 1 && self.var.nodes.len() >= PARALLEL_NODES_FROM
            }
        }
    }

    /// Hand event `self.events` to the checker on the helper thread.
    fn follow_event(&mut self) -> Result<(), Halt> {
        let Some(h) = self.follower.as_mut() else {
            return Err(Halt::Unfollowable);
        };
        let mut ids = std::mem::take(&mut self.touched);
        let list = Self::touched_list(
            &self.pods,
            &self.var.classes,
            &mut self.touched_keys,
            &mut ids,
        );
        let r = h.event(self.events, self.ctl.ledger(), &list);
        ids.clear();
        self.touched = ids;
        r
    }

    /// The helper's verdict on every event, its records and metric taken back, then the last
    /// full check when the run `ended` at its stop condition. The check runs once the helper
    /// is done: it shares its work with a thread of its own, which then has the other core.
    fn finish_following(&mut self, h: FollowerThread, ended: bool) -> Result<(), Halt> {
        let (verdict, kept) = h.finish();
        let (records, metric) = kept.ok_or(Halt::Unfollowable)?;
        self.followed = Some(records);
        self.take_metric(metric)?;
        verdict?;
        if ended && self.check().is_err() {
            return Err(Halt::Violation(self.events));
        }
        Ok(())
    }

    /// The fragmentation metric as the helper kept it: its integral, its samples (one per
    /// [`Engine::sample`] since the helper started, in order) and its last value.
    fn take_metric(&mut self, m: Metric) -> Result<(), Halt> {
        let from = self.series.len().checked_sub(m.samples.len());
        let Some(from) = from else {
            return Err(Halt::Unfollowable);
        };
        for (s, f) in self.series[from..].iter_mut().zip(&m.samples) {
            s.fragmentation = *f;
        }
        self.area[3] = m.area;
        self.frag = m.frag;
        Ok(())
    }

    /// The checker on the helper thread stopped following (`why`): run the same seed again
    /// from the start with the checker on this thread, which stops at the first violation
    /// with its readable dump. The outcome is the same as if the checker had run here all
    /// along; a helper that rejected an event this thread's checker passes is a checker bug,
    /// and the run fails saying so.
    fn check_here(self, why: Halt) -> Result<RunOutput, String> {
        let opts = RunOptions {
            checker_thread: CheckerThread::This,
            ..self.opts.clone()
        };
        let again = Engine::new(self.sc, self.var, self.policy, self.seed, opts).run();
        match (why, again) {
            (_, Err(e)) => Err(e),
            (Halt::Unfollowable, Ok(o)) => Ok(o),
            (Halt::Violation(at), Ok(_)) => Err(format!(
                "checker: run {} / policy {} / seed {}: the checker on the helper thread rejected event {at}, which the checker on this thread passes (a checker bug)\nrerun with SEED={}",
                self.var.name, self.policy.name, self.seed, self.seed
            )),
        }
    }

    fn fail(&self, what: &str) -> String {
        format!(
            "checker: run {} / policy {} / seed {} stopped at event {} (t = {:.3} s):\n{what}\nrerun with SEED={}",
            self.var.name,
            self.policy.name,
            self.seed,
            self.events,
            self.now as f64 / 1000.0,
            self.seed
        )
    }

    fn output(mut self, wall: f64) -> RunOutput {
        // Freeing a million pod objects, the ledger and the checker's records took seconds;
        // the results need none of them, so another thread frees them (or this one, when no
        // thread can be started: the closure is dropped here then).
        let checked_on_helper = self.followed.is_some();
        // A pod still waiting for its first placement when the run stops has waited at least
        // this long: left out, an overloaded run's worst waits would vanish from the
        // quantiles (the pods that never got a card are the ones that waited most).
        let now = self.now;
        self.waits.extend(
            self.pods
                .iter()
                .filter(|p| {
                    !p.placed_once
                        && matches!(
                            p.state,
                            PodState::Active
                                | PodState::Backoff
                                | PodState::Parked
                                | PodState::Binding
                        )
                })
                .map(|p| (now.saturating_sub(p.arrival) as f64 / 1000.0) as f32),
        );
        let heavy = (
            std::mem::take(&mut self.pods),
            std::mem::take(&mut self.checker),
            self.followed.take(),
            std::mem::replace(&mut self.ctl, controller(&self.scheduler, self.seed)),
        );
        if let Ok(h) = std::thread::Builder::new()
            .name("hami-sim-free".into())
            .spawn(move || drop(heavy))
        {
            free_later(h);
        }
        let span = self.area[5].max(1.0);
        let mut waits: Vec<f64> = self.waits.iter().map(|&w| f64::from(w)).collect();
        waits.sort_by(|a, b| a.total_cmp(b));
        let q = |x: f64| super::metrics::quantile_sorted(&waits, x);
        let mut m = BTreeMap::new();
        let alloc = self.area[0] / span;
        let mut put = |k: super::metrics::MetricName, v: f64| {
            m.insert(k.as_str().to_string(), v);
        };
        use super::metrics::MetricName as M;
        put(M::AllocationRatio, alloc);
        put(M::MemoryRatio, self.area[1] / span);
        put(M::CardsRatio, self.area[2] / span);
        put(M::Fragmentation, self.area[3] / span);
        put(
            M::UnallocatedGpus,
            (1.0 - alloc) * self.cap_cores as f64 / 100.0,
        );
        put(M::WaitP50, q(0.5));
        put(M::WaitP95, q(0.95));
        put(M::WaitP99, q(0.99));
        put(M::PendingMean, self.area[4] / span);
        put(M::PendingEnd, self.pending as f64);
        put(M::Arrived, self.arrived as f64);
        put(M::Placed, self.placed as f64);
        put(M::Unschedulable, self.unsched as f64);
        put(M::Rejected, self.rejected as f64);
        put(M::Evicted, self.evicted as f64);
        put(M::BindFailures, self.bind_failures as f64);
        put(M::Events, self.events as f64);
        put(M::PlacementsPerSec, self.placed as f64 / wall.max(1e-9));
        put(M::EventsPerSec, self.events as f64 / wall.max(1e-9));
        put(M::WallSecs, wall);
        let per_pool = |k: usize| {
            self.var
                .pools
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), self.pool_area[i][k] / span))
                .collect()
        };
        let (pools, pools_memory) = (per_pool(0), per_pool(1));
        let reasons = self
            .reasons
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect();
        RunOutput {
            metrics: m,
            reasons,
            pools,
            pools_memory,
            series: std::mem::take(&mut self.series),
            per_arrival: std::mem::take(&mut self.per_arrival),
            wait_quantiles: (0..=100).map(|i| q(f64::from(i) / 100.0)).collect(),
            event_log_hash: format!("{:016x}", self.hash.0),
            events: self.events,
            errors: std::mem::take(&mut self.errors),
            explanation: self.explanation.take(),
            log: std::mem::take(&mut self.log),
            checked_on_helper,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A cluster large enough to be published on two threads comes out exactly as one thread
    /// publishes it: same objects, same reads, in the nodes' order.
    #[test]
    fn publishing_on_two_threads_keeps_the_nodes_order() {
        let text = r#"
name: many
seed: 1
cluster:
  pools:
    - {name: a, count: 200, model: NVIDIA-A100-SXM4-80GB, cards: 4, memory: 80Gi, nvlink: all, cpu: "64", ram: 512Gi}
    - {name: b, count: 150, model: NVIDIA-Tesla-T4, cards: 2, memory: 15Gi, cpu: "32", ram: 128Gi}
workload:
  arrival: {process: poisson, rate: 1}
  duration: {dist: fixed, value: 10s}
  mix:
    - {name: small, weight: 1, memory: 4Gi, cores: 20}
policies:
  - {name: binpack, node: binpack, device: binpack}
stop: {time: 1m}
"#;
        let sc = Scenario::parse(Path::new("many.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
        let nodes = &sc.variants[0].nodes;
        assert!(nodes.len() >= PARALLEL_NODES_FROM);
        let (sims, reads) = publish_nodes(nodes);
        assert_eq!(sims.len(), nodes.len());
        for (i, ((n, pool), (sim, read))) in nodes.iter().zip(sims.iter().zip(&reads)).enumerate() {
            assert_eq!(sim.node.name, n.name, "node {i}");
            assert_eq!(sim.pool, *pool, "node {i}");
            let alone = read_node(&node_object(n));
            assert_eq!(read.name, alone.name, "node {i}");
            assert_eq!(read.node, alone.node, "node {i}");
        }
    }
}
