//! A validated, runnable scenario: the file resolved into nodes (core model and Kubernetes
//! objects), pod classes with their Pod templates, policies, faults and expectations. Sweeps
//! expand into one [`Variant`] per value.

use super::engine::can_fail;
use super::expect::Expectation;
use super::metrics::MetricName;
use super::scenario::{
    ArrivalKind, ArrivalSpec, DesFile, DurationKind, DurationSpec, FaultKind, NvLink, TieSpec,
    TraceMode, Where, parse_file,
};
use super::units::Dur;
use crate::trace::{TraceNode, TracePod, read_nodes, read_pods};
use hami_core::annotations::{capacity_devices, node_capacity};
use hami_core::family::{CapacityMemory, FamilyId};
use hami_core::model::{Device, LinkScores, Node};
use hami_core::policy::fgd::{TargetWorkload, TaskType};
use hami_core::policy::{DevicePolicyChain, NodePolicyKind};
use hami_core::request::{MemoryRequest, PodRequest, RequestTranslator};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One node pool after resolution.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Family of its cards.
    pub family: FamilyId,
    /// Card model.
    pub model: String,
}

/// One kind of pod: every pod of a class has the same request.
#[derive(Debug, Clone)]
pub struct PodClass {
    /// Name (mix entry, or `trace-<n>`).
    pub name: String,
    /// The Pod object every pod of the class is cloned from (name set per pod).
    pub template: Pod,
    /// The request, translated once by the production translator (for bounds and metrics).
    pub request: PodRequest,
    /// GPU demand of one pod in card equivalents (compute share).
    pub gpu_demand: f64,
    /// Mix weight (generators).
    pub weight: f64,
    /// Duration override (generators).
    pub duration: Option<DurationSpec>,
}

/// One pod of a trace.
#[derive(Debug, Clone, Copy)]
pub struct TraceArrival {
    /// Class index.
    pub class: u32,
    /// Arrival, virtual ms.
    pub at: u64,
    /// Run time, ms (`None`: never ends).
    pub duration: Option<u64>,
}

/// Where pods come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Generators.
    Generated {
        /// Arrival process.
        arrival: ArrivalSpec,
        /// Default duration distribution.
        duration: DurationSpec,
    },
    /// A trace, pods in arrival order (times already ordered; shuffled mode draws per seed).
    Trace {
        /// Pods.
        pods: Arc<Vec<TraceArrival>>,
        /// Mode.
        mode: TraceMode,
        /// Pods per second for ordered modes.
        rate: f64,
        /// Replay at most this many.
        limit: Option<usize>,
    },
}

/// A resolved policy combination.
#[derive(Debug, Clone)]
pub struct PolicyRes {
    /// Name.
    pub name: String,
    /// Node policy.
    pub node: NodePolicyKind,
    /// Device policy chain.
    pub device: DevicePolicyChain,
    /// Tie rule.
    pub tie: TieSpec,
    /// FGD coverage, 0..1.
    pub coverage: f64,
}

/// A resolved fault.
#[derive(Debug, Clone)]
pub struct FaultRes {
    /// When, ms.
    pub at: u64,
    /// What.
    pub kind: FaultKind,
    /// How many nodes.
    pub nodes: u32,
    /// Pool index restriction.
    pub pool: Option<u16>,
    /// Cards per node.
    pub cards: u32,
    /// Recovery delay.
    pub recover_after: Option<u64>,
}

/// One runnable variant of a scenario (one sweep value, or the scenario itself).
#[derive(Debug, Clone)]
pub struct Variant {
    /// `name` or `name@nodes=1000`.
    pub name: String,
    /// Node pools.
    pub pools: Vec<Pool>,
    /// Nodes with their pool index.
    pub nodes: Arc<Vec<(Node, u16)>>,
    /// Pod classes.
    pub classes: Arc<Vec<PodClass>>,
    /// Pod source.
    pub source: Source,
    /// FGD target workload (also the fragmentation measure).
    pub target: Arc<TargetWorkload>,
    /// Total GPUs (cards).
    pub total_cards: u64,
}

/// How many events apart the full checker runs when a scenario does not say. The incremental
/// checker proves every event in between at the cost of what the event touched; the full one
/// costs the whole state, so running it after every event made a 160-node, 4-hour scenario
/// take tens of minutes instead of seconds.
pub const DEFAULT_CHECK_EVERY: u64 = 1000;

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file.
    pub file: DesFile,
    /// Seeds (the `SEED` environment variable replaces the first).
    pub seeds: Vec<u64>,
    /// Variants (one without sweeps).
    pub variants: Vec<Variant>,
    /// Policies.
    pub policies: Vec<PolicyRes>,
    /// Faults.
    pub faults: Vec<FaultRes>,
    /// Expectations.
    pub expect: Vec<Expectation>,
    /// Summary table columns.
    pub table: Vec<MetricName>,
    /// Stop time, ms (None: at the last arrival or when drained).
    pub stop_time: Option<u64>,
    /// Stop after this many arrivals.
    pub stop_pods: Option<u64>,
    /// Metric sample interval, ms.
    pub sample_every: u64,
    /// Run the full checker every N events (the incremental one after every event).
    pub check_every: u64,
    /// kube-scheduler's percentage of nodes to score (extender path), if set.
    pub nodes_to_score_pct: Option<u32>,
}

/// Translate a template Pod through the production translator.
fn translate(pod: &Pod) -> Result<PodRequest, String> {
    RequestTranslator::default()
        .translate(pod)
        .map_err(|e| e.to_string())
}

fn q(s: String) -> Quantity {
    Quantity(s)
}

/// The node of a pool: cards registered with the family's row. A family that registers
/// through node capacity gets the cards HAMi makes from the capacity its device plugin would
/// advertise for the pool ([`capacity_pool_problem`] has turned away what that cannot carry).
fn pool_node(p: &super::scenario::PoolSpec, name: String) -> Node {
    let mut node = Node::new(name.clone());
    node.cpu_milli = p.cpu.map(|c| c.0).unwrap_or(0);
    node.memory_mib = p.ram.map(|m| m.0).unwrap_or(0);
    if p.family.0.spec().capacity_rule().is_some() {
        node.devices = (0..p.cards)
            .map(|i| Device::new(String::new(), i, p.family.0, p.model.clone(), p.memory.0))
            .collect();
        let capacity = node_capacity(&node);
        // A validated pool (1..=64 cards) advertises whole counts within the core's limits,
        // so reading them back cannot fail; were it to, the node would have no cards.
        node.devices = capacity_devices(p.family.0, &name, |r| capacity.get(r).map(String::as_str))
            .unwrap_or_default();
        node.links = LinkScores::new(node.devices.len());
        return node;
    }
    let numa = p.numa.unwrap_or(1).max(1);
    let per_numa = p.cards.div_ceil(numa).max(1);
    for i in 0..p.cards {
        let mut d = Device::new(
            format!("{}-{name}-{i}", p.family.0.spec().keyword),
            i,
            p.family.0,
            p.model.clone(),
            p.memory.0,
        );
        d.cores = p.cores.unwrap_or(100);
        d.split_count = p.split.unwrap_or(10);
        d.numa = (i / per_numa) as i32;
        node.devices.push(d);
    }
    let n = p.cards as usize;
    node.links = match p.nvlink {
        NvLink::None => LinkScores::new(n),
        NvLink::All => LinkScores::uniform(n, 600),
        NvLink::Pairs => {
            let mut l = LinkScores::new(n);
            for a in 0..n {
                for b in (a + 1)..n {
                    l.set(a, b, if a / 2 == b / 2 { 600 } else { 20 });
                }
            }
            l
        }
    };
    node
}

/// What a pool of a family that registers through node capacity asks that such a
/// registration cannot carry, as (field, message): HAMi makes every card of such a node alike,
/// with the vendor's model, cores, split count and NUMA node, and memory either fixed or the
/// node's advertised total (in the family's memory units) shared evenly. `None` when the pool
/// fits, or its family registers through an annotation.
fn capacity_pool_problem(v: &super::scenario::PoolSpec) -> Option<(&'static str, String)> {
    let spec = v.family.0.spec();
    let rule = spec.capacity_rule()?;
    let name = spec.name;
    let why = format!("{name} cards register through node capacity, and HAMi gives each");
    let mem_text = |m: u64| {
        if m.is_multiple_of(1024) {
            format!("{}Gi", m / 1024)
        } else {
            format!("{m}Mi")
        }
    };
    if v.model != rule.model {
        return Some((
            "model",
            format!(
                "{why} the model {:?}; write model: {}",
                rule.model, rule.model
            ),
        ));
    }
    match rule.memory {
        CapacityMemory::FixedMib(m) if v.memory.0 != m => {
            return Some((
                "memory",
                format!("{why} {}; write memory: {}", mem_text(m), mem_text(m)),
            ));
        }
        CapacityMemory::ShareOf(resource) if !v.memory.0.is_multiple_of(spec.memory_unit_mib) => {
            return Some((
                "memory",
                format!(
                    "{name} memory is advertised as {resource} in units of {}Mi, and {} is not a whole number of them",
                    spec.memory_unit_mib,
                    mem_text(v.memory.0)
                ),
            ));
        }
        _ => {}
    }
    if let Some(c) = v.cores.filter(|&c| c != rule.cores) {
        return Some((
            "cores",
            format!("{why} {} core units, not {c}; remove cores", rule.cores),
        ));
    }
    if let Some(c) = v.split.filter(|&c| c != rule.split_count) {
        return Some((
            "split",
            format!(
                "{why} a split count of {}, not {c}; remove split",
                rule.split_count
            ),
        ));
    }
    if v.numa.is_some() {
        return Some((
            "numa",
            format!("HAMi decides the NUMA node of {name} cards itself; remove numa"),
        ));
    }
    if v.nvlink != NvLink::None {
        return Some((
            "nvlink",
            format!("HAMi reads no card topology for {name}; remove nvlink"),
        ));
    }
    None
}

fn class_of_mix(m: &super::scenario::MixEntry) -> Result<PodClass, String> {
    let spec = m.family.0.spec();
    let cards = m.cards.unwrap_or(1);
    let mut limits = BTreeMap::new();
    limits.insert(spec.count_resource.to_string(), q(cards.to_string()));
    if let Some(mem) = m.memory {
        let r = spec
            .memory_resource
            .ok_or_else(|| format!("family {} has no memory resource", spec.name))?;
        let units = mem.0.div_ceil(spec.memory_unit_mib.max(1));
        limits.insert(r.to_string(), q(units.to_string()));
    }
    if let Some(p) = m.memory_percent {
        let r = spec.memory_percentage_resource.ok_or_else(|| {
            format!(
                "family {} has no memory percentage resource; use memory",
                spec.name
            )
        })?;
        limits.insert(r.to_string(), q(p.to_string()));
    }
    if let Some(c) = m.cores {
        let r = spec
            .cores_resource
            .ok_or_else(|| format!("family {} has no cores resource", spec.name))?;
        limits.insert(r.to_string(), q(c.to_string()));
    }
    let mut requests = BTreeMap::new();
    if let Some(c) = m.cpu {
        requests.insert("cpu".to_string(), q(format!("{}m", c.0)));
    }
    if let Some(r) = m.ram {
        requests.insert("memory".to_string(), q(format!("{}Mi", r.0)));
    }
    let mut ann = BTreeMap::new();
    if let Some(t) = &m.gpu_type {
        let key = spec.use_type_annotation.ok_or_else(|| {
            format!(
                "family {} has no card type annotation (gpu_type)",
                spec.name
            )
        })?;
        ann.insert(key.to_string(), t.clone());
    }
    let template = Pod {
        metadata: ObjectMeta {
            namespace: Some("sim".into()),
            annotations: (!ann.is_empty()).then_some(ann),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            priority: (m.priority != 0).then_some(m.priority),
            containers: vec![Container {
                name: "main".into(),
                resources: Some(ResourceRequirements {
                    limits: Some(limits),
                    requests: (!requests.is_empty()).then_some(requests),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let request = translate(&template)?;
    let per_card = match (m.cores, m.memory, m.memory_percent) {
        (Some(c), _, _) => f64::from(c.min(100)) / 100.0,
        (None, None, Some(p)) => f64::from(p.min(100)) / 100.0,
        (None, None, None) => 1.0,
        (None, Some(_), _) => 0.0,
    };
    Ok(PodClass {
        name: m.name.clone(),
        template,
        request,
        gpu_demand: per_card * f64::from(cards),
        weight: m.weight,
        duration: m.duration.clone(),
    })
}

fn task_of_class(c: &PodClass) -> TaskType {
    let cards: u32 = c.request.total_cards();
    let share = if cards == 0 {
        0
    } else {
        ((c.gpu_demand / f64::from(cards)) * 1000.0).round() as u64
    };
    let gpu_spec = c
        .request
        .containers
        .iter()
        .flat_map(|x| &x.devices)
        .flat_map(|d| d.selectors.use_types.iter().cloned())
        .collect::<Vec<_>>()
        .join("|");
    TaskType {
        cpu_milli: c.request.cpu_milli,
        share,
        count: cards,
        gpu_spec,
    }
}

fn kind_name(k: DurationKind) -> &'static str {
    match k {
        DurationKind::Fixed => "fixed",
        DurationKind::Exponential => "exponential",
        DurationKind::Lognormal => "lognormal",
        DurationKind::Empirical => "empirical",
    }
}

fn check_duration(w: &Where, line: u64, field: &str, d: &DurationSpec) -> Result<(), String> {
    let need = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(w.at(
                line,
                1,
                Some(field),
                format!("dist {} needs `{what}`", kind_name(d.dist)),
            ))
        }
    };
    match d.dist {
        DurationKind::Fixed => need("value", d.value.is_some()),
        DurationKind::Exponential => need("mean", d.mean.is_some_and(|m| m.0 > 0)),
        DurationKind::Lognormal => need(
            "median (and a positive sigma)",
            d.median.is_some_and(|m| m.0 > 0) && d.sigma.is_none_or(|s| s > 0.0 && s < 10.0),
        ),
        DurationKind::Empirical => need("values", !d.values.is_empty()),
    }
}

/// Read a trace pod list's timestamps (`creation_time`, `deletion_time`, `scheduled_time`),
/// seconds. Errors carry `file:line` and the column.
pub fn read_pod_times(path: &Path) -> Result<Vec<(u64, Option<u64>)>, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let h = r
        .headers()
        .map_err(|e| format!("{}:1: {e}", path.display()))?
        .clone();
    let col = |n: &str| h.iter().position(|c| c.trim() == n);
    let (Some(c), d, s) = (
        col("creation_time"),
        col("deletion_time"),
        col("scheduled_time"),
    ) else {
        return Err(format!(
            "{}:1: missing column \"creation_time\" (mode timestamps and departures need creation_time and deletion_time)",
            path.display()
        ));
    };
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let num = |i: Option<usize>, name: &str| -> Result<Option<u64>, String> {
            let Some(i) = i else { return Ok(None) };
            let v = rec.get(i).map(str::trim).unwrap_or("");
            if v.is_empty() || v == "nan" {
                return Ok(None);
            }
            v.parse::<f64>()
                .ok()
                .filter(|x| *x >= 0.0 && x.is_finite())
                .map(|x| Some(x as u64))
                .ok_or_else(|| {
                    format!(
                        "{}:{line}: column {name}: expected a non-negative number of seconds, got {v:?}",
                        path.display()
                    )
                })
        };
        let created = num(Some(c), "creation_time")?.unwrap_or(0);
        let deleted = num(d, "deletion_time")?;
        let sched = num(s, "scheduled_time")?.filter(|&x| x > 0);
        let start = sched.unwrap_or(created).max(created);
        out.push((created, deleted.map(|d| d.saturating_sub(start))));
    }
    Ok(out)
}

/// Classes and arrivals of a trace pod list: pods with equal requests share a class.
fn trace_classes(
    pods: &[TracePod],
    times: &[(u64, Option<u64>)],
    spec: &super::scenario::TraceSpec,
) -> Result<(Vec<PodClass>, Vec<TraceArrival>), String> {
    let mut classes: Vec<PodClass> = Vec::new();
    let mut index: BTreeMap<(u64, u64, u32, u64, String), u32> = BTreeMap::new();
    let mut arrivals = Vec::with_capacity(pods.len());
    let scale = spec.time_scale.unwrap_or(1.0);
    for (i, p) in pods.iter().enumerate() {
        let key = (
            p.cpu_milli,
            p.memory_mib,
            p.num_gpu,
            p.gpu_milli,
            p.gpu_spec.clone(),
        );
        let class = match index.get(&key) {
            Some(&c) => c,
            None => {
                let mut template = p.to_pod();
                template.metadata.name = None;
                template.metadata.namespace = Some("sim".into());
                let request = translate(&template)?;
                let c = classes.len() as u32;
                classes.push(PodClass {
                    name: format!("trace-{c}"),
                    template,
                    request,
                    gpu_demand: p.gpu_total() as f64 / 1000.0,
                    weight: 0.0,
                    duration: None,
                });
                index.insert(key, c);
                c
            }
        };
        classes[class as usize].weight += 1.0;
        let (at, dur) = times.get(i).copied().unwrap_or((0, None));
        arrivals.push(TraceArrival {
            class,
            at: ((at as f64 / scale) * 1000.0) as u64,
            duration: if spec.departures {
                dur.map(|d| (((d as f64) / scale) * 1000.0) as u64)
            } else {
                None
            },
        });
    }
    // Arrival order: creation time, then file order (stable).
    arrivals.sort_by_key(|a| a.at);
    Ok((classes, arrivals))
}

/// Nodes of `cluster.nodes`: one core node per entry; each gets the pool of its first card's
/// family and model (created on first use, named after the model).
fn explicit_nodes(
    w: &Where,
    specs: &[serde_saphyr::Spanned<super::scenario::NodeSpec>],
    pools: &mut Vec<Pool>,
) -> Result<Vec<(Node, u16)>, String> {
    let mut out = Vec::with_capacity(specs.len());
    let mut names = std::collections::BTreeSet::new();
    for (i, n) in specs.iter().enumerate() {
        let f = format!("cluster.nodes[{i}]");
        let v = &n.value;
        let err = |field: String, msg: String| w.at_loc(n.referenced, Some(&field), msg);
        if v.name.is_empty() || !names.insert(v.name.clone()) {
            return Err(err(
                format!("{f}.name"),
                format!("node name {:?} is empty or used twice", v.name),
            ));
        }
        if v.cards.is_empty() || v.cards.len() > 64 {
            return Err(err(
                format!("{f}.cards"),
                format!("node {:?}: 1..=64 cards are needed", v.name),
            ));
        }
        let mut node = Node::new(v.name.clone());
        node.cpu_milli = v.cpu.map(|c| c.0).unwrap_or(0);
        node.memory_mib = v.ram.map(|m| m.0).unwrap_or(0);
        let mut ids = std::collections::BTreeSet::new();
        for (j, c) in v.cards.iter().enumerate() {
            if c.id.is_empty() || !ids.insert(c.id.as_str()) {
                return Err(err(
                    format!("{f}.cards[{j}].id"),
                    format!(
                        "card id {:?} is empty or used twice on node {:?}",
                        c.id, v.name
                    ),
                ));
            }
            if c.memory.0 == 0 {
                return Err(err(
                    format!("{f}.cards[{j}].memory"),
                    "memory must be positive".into(),
                ));
            }
            if c.family.0.spec().capacity_rule().is_some() {
                return Err(err(
                    format!("{f}.cards[{j}].family"),
                    format!(
                        "{} cards register through node capacity, where HAMi names and sizes them itself; a pool builds such nodes",
                        c.family.0.spec().name
                    ),
                ));
            }
            let mut d = Device::new(
                c.id.clone(),
                j as u32,
                c.family.0,
                c.model.clone(),
                c.memory.0,
            );
            d.cores = c.cores.unwrap_or(100);
            d.split_count = c.split.unwrap_or(10);
            d.numa = c.numa.map_or(0, |x| i32::try_from(x).unwrap_or(i32::MAX));
            d.healthy = c.healthy;
            node.devices.push(d);
        }
        let count = v.cards.len();
        node.links = match v.nvlink {
            NvLink::None => LinkScores::new(count),
            NvLink::All => LinkScores::uniform(count, 600),
            NvLink::Pairs => {
                let mut l = LinkScores::new(count);
                for a in 0..count {
                    for b in (a + 1)..count {
                        l.set(a, b, if a / 2 == b / 2 { 600 } else { 20 });
                    }
                }
                l
            }
        };
        for (k, &[a, b, score]) in v.links.iter().enumerate() {
            let (a, b) = (a as usize, b as usize);
            if a >= count || b >= count || a == b {
                return Err(err(
                    format!("{f}.links[{k}]"),
                    format!(
                        "link [{a}, {b}, {score}]: card indexes must differ and be below {count}"
                    ),
                ));
            }
            node.links.set(a, b, score);
        }
        let (family, model) = (v.cards[0].family.0, &v.cards[0].model);
        let pi = match pools
            .iter()
            .position(|p| p.family == family && &p.model == model)
        {
            Some(p) => p,
            None => {
                pools.push(Pool {
                    name: model.clone(),
                    family,
                    model: model.clone(),
                });
                pools.len() - 1
            }
        };
        out.push((node, pi as u16));
    }
    Ok(out)
}

/// Classes and arrivals of `workload.pods`: one class per pod (named after it), arrivals in
/// time order (equal times keep the list order).
fn explicit_pods(
    w: &Where,
    specs: &[serde_saphyr::Spanned<super::scenario::PodEntry>],
) -> Result<(Vec<PodClass>, Vec<TraceArrival>), String> {
    let mut classes = Vec::with_capacity(specs.len());
    let mut arrivals = Vec::with_capacity(specs.len());
    let container = |c: &super::scenario::ContainerSpec, i: usize, init: bool| {
        let map = |m: &BTreeMap<String, super::scenario::QuantityText>| {
            (!m.is_empty()).then(|| {
                m.iter()
                    .map(|(k, v)| (k.clone(), Quantity(v.0.clone())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: c.name.clone().unwrap_or_else(|| {
                if init {
                    format!("init{i}")
                } else {
                    format!("c{i}")
                }
            }),
            resources: Some(ResourceRequirements {
                limits: map(&c.limits),
                requests: map(&c.requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    };
    for (i, p) in specs.iter().enumerate() {
        let f = format!("workload.pods[{i}]");
        let v = &p.value;
        if v.containers.is_empty() {
            return Err(w.at_loc(
                p.referenced,
                Some(&format!("{f}.containers")),
                format!("pod {:?} needs at least one container", v.name),
            ));
        }
        let class_name: String = v
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let template = Pod {
            metadata: ObjectMeta {
                namespace: Some("sim".into()),
                name: Some(class_name.clone()),
                annotations: (!v.annotations.is_empty()).then(|| v.annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                priority: (v.priority != 0).then_some(v.priority),
                init_containers: (!v.init_containers.is_empty()).then(|| {
                    v.init_containers
                        .iter()
                        .enumerate()
                        .map(|(i, c)| container(c, i, true))
                        .collect()
                }),
                containers: v
                    .containers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| container(c, i, false))
                    .collect(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let request = translate(&template).map_err(|e| w.at_loc(p.referenced, Some(&f), e))?;
        if request.total_cards() == 0 {
            return Err(w.at_loc(
                p.referenced,
                Some(&f),
                format!("pod {:?} asks for no device", v.name),
            ));
        }
        let mut template = template;
        template.metadata.name = None;
        let gpu_demand: f64 = request
            .containers
            .iter()
            .flat_map(|c| &c.devices)
            .map(|d| {
                let share = if d.cores > 0 {
                    f64::from(d.cores.min(100)) / 100.0
                } else {
                    match d.memory {
                        MemoryRequest::Percent(pct) => f64::from(pct.min(100)) / 100.0,
                        MemoryRequest::Mib(_) => 0.0,
                    }
                };
                share * f64::from(d.count)
            })
            .sum();
        arrivals.push(TraceArrival {
            class: classes.len() as u32,
            at: v.at.0,
            duration: v.duration.map(|d| d.0),
        });
        classes.push(PodClass {
            name: class_name,
            template,
            request,
            gpu_demand,
            weight: 1.0,
            duration: None,
        });
    }
    arrivals.sort_by_key(|a| a.at);
    Ok((classes, arrivals))
}

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(path, &text)
    }

    /// Parse and validate `text` read from `path` (paths inside are relative to it).
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, String> {
        let file = parse_file(path, text)?;
        let w = Where { path, text };
        let dir = path.parent().unwrap_or(Path::new("."));
        let top = |field: &str, msg: String| {
            let line = text
                .lines()
                .position(|l| l.starts_with(&format!("{field}:")))
                .map(|i| i + 1)
                .unwrap_or(1);
            format!("{}:{line}:1: {field}: {msg}", path.display())
        };
        let resolve =
            |p: &serde_saphyr::Spanned<PathBuf>, field: &str| -> Result<PathBuf, String> {
                let full = dir.join(&p.value);
                if full.is_file() {
                    Ok(full)
                } else {
                    Err(w.at_loc(
                    p.referenced,
                    Some(field),
                    format!(
                        "trace file {} does not exist (paths are relative to the scenario file)",
                        full.display()
                    ),
                ))
                }
            };

        // Cluster.
        let mut pools = Vec::new();
        let mut base_nodes: Vec<(Node, u16)> = Vec::new();
        let mut pool_specs = Vec::new();
        let given = usize::from(file.cluster.trace.is_some())
            + usize::from(!file.cluster.pools.is_empty())
            + usize::from(!file.cluster.nodes.is_empty());
        if given > 1 {
            return Err(top(
                "cluster",
                "give one of `pools`, `trace` or `nodes`, not several".into(),
            ));
        }
        match (&file.cluster.trace, file.cluster.pools.is_empty()) {
            (None, true) if !file.cluster.nodes.is_empty() => {
                base_nodes = explicit_nodes(&w, &file.cluster.nodes, &mut pools)?;
            }
            (None, true) => {
                return Err(top(
                    "cluster",
                    "needs `pools`, a `trace` node list or explicit `nodes`".into(),
                ));
            }
            (Some(_), false) => {
                return Err(top(
                    "cluster",
                    "give one of `pools`, `trace` or `nodes`, not several".into(),
                ));
            }
            (Some(t), true) => {
                let p = resolve(t, "cluster.trace")?;
                let rows: Vec<TraceNode> = read_nodes(&p)?;
                let mut by_model: BTreeMap<String, u16> = BTreeMap::new();
                for r in rows.iter().filter(|r| r.gpu > 0) {
                    let next = by_model.len() as u16;
                    let pi = *by_model.entry(r.model.clone()).or_insert(next);
                    if pi as usize == pools.len() {
                        pools.push(Pool {
                            name: r.model.clone(),
                            family: FamilyId::NVIDIA,
                            model: r.model.clone(),
                        });
                    }
                    base_nodes.push((r.to_node()?, pi));
                }
            }
            (None, false) => {
                let mut seen = std::collections::BTreeSet::new();
                for (i, p) in file.cluster.pools.iter().enumerate() {
                    let f = format!("cluster.pools[{i}]");
                    let v = &p.value;
                    if !seen.insert(v.name.clone()) {
                        return Err(w.at_loc(
                            p.referenced,
                            Some(&f),
                            format!("pool name {:?} is used twice", v.name),
                        ));
                    }
                    if v.count == 0 {
                        // Left out, a pool would still get a node (sweeps keep every pool at
                        // least one): say so instead of building what the file did not ask.
                        return Err(w.at_loc(
                            p.referenced,
                            Some(&format!("{f}.count")),
                            "count must be at least 1 (remove the pool to leave it out)",
                        ));
                    }
                    if v.cards == 0 || v.cards > 64 {
                        return Err(w.at_loc(
                            p.referenced,
                            Some(&format!("{f}.cards")),
                            "cards must be in 1..=64",
                        ));
                    }
                    if v.memory.0 == 0 {
                        return Err(w.at_loc(
                            p.referenced,
                            Some(&format!("{f}.memory")),
                            "memory must be positive",
                        ));
                    }
                    if let Some((field, msg)) = capacity_pool_problem(v) {
                        return Err(w.at_loc(p.referenced, Some(&format!("{f}.{field}")), msg));
                    }
                    if v.name.is_empty()
                        || !v
                            .name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        return Err(w.at_loc(
                            p.referenced,
                            Some(&format!("{f}.name")),
                            "pool names use letters, digits and '-'",
                        ));
                    }
                    pools.push(Pool {
                        name: v.name.clone(),
                        family: v.family.0,
                        model: v.model.clone(),
                    });
                    pool_specs.push(v.clone());
                }
            }
        }

        // Workload.
        let wl = &file.workload;
        let mut classes = Vec::new();
        let explicit = !wl.pods.is_empty();
        let source = if explicit {
            if wl.trace.is_some()
                || !wl.mix.is_empty()
                || wl.arrival.is_some()
                || wl.duration.is_some()
            {
                return Err(top(
                    "workload",
                    "give one of `mix` (with `arrival` and `duration`), `trace` or `pods`, not several"
                        .into(),
                ));
            }
            let (cl, arrivals) = explicit_pods(&w, &wl.pods)?;
            classes = cl;
            Source::Trace {
                pods: Arc::new(arrivals),
                mode: TraceMode::Timestamps,
                rate: 10.0,
                limit: None,
            }
        } else {
            match (&wl.trace, wl.mix.is_empty()) {
                (Some(_), false) => {
                    return Err(top(
                        "workload",
                        "give either `mix` or `trace`, not both".into(),
                    ));
                }
                (None, true) => {
                    return Err(top(
                        "workload",
                        "needs a request `mix` (with `arrival` and `duration`) or a `trace`".into(),
                    ));
                }
                (Some(t), true) => {
                    let p = resolve(&t.pods, "workload.trace.pods")?;
                    let pods = read_pods(&p)?;
                    let times = if t.departures || t.mode == TraceMode::Timestamps {
                        read_pod_times(&p)?
                    } else {
                        Vec::new()
                    };
                    if t.time_scale.is_some_and(|s| s.is_nan() || s <= 0.0) {
                        return Err(top("workload", "trace.time_scale must be positive".into()));
                    }
                    let (cl, arrivals) = trace_classes(&pods, &times, t)?;
                    classes = cl;
                    Source::Trace {
                        pods: Arc::new(arrivals),
                        mode: t.mode,
                        rate: t.rate.unwrap_or(10.0),
                        limit: t.limit,
                    }
                }
                (None, false) => {
                    let Some(arrival) = wl.arrival.clone() else {
                        return Err(top("workload", "generators need `arrival`".into()));
                    };
                    let Some(duration) = wl.duration.clone() else {
                        return Err(top("workload", "generators need `duration`".into()));
                    };
                    if !(arrival.rate > 0.0 && arrival.rate.is_finite()) {
                        return Err(top(
                            "workload",
                            "arrival.rate must be positive (pods per second)".into(),
                        ));
                    }
                    if arrival.process == ArrivalKind::Bursts
                        && arrival.burst_size.is_none_or(|b| b == 0)
                    {
                        return Err(top(
                            "workload",
                            "arrival.process bursts needs a positive burst_size".into(),
                        ));
                    }
                    if arrival.peak_ratio.is_some_and(|r| r < 1.0) {
                        return Err(top("workload", "arrival.peak_ratio must be >= 1".into()));
                    }
                    let dline = text
                        .lines()
                        .position(|l| l.trim_start().starts_with("duration:"))
                        .map(|i| i + 1)
                        .unwrap_or(1);
                    check_duration(&w, dline as u64, "workload.duration", &duration)?;
                    let mut names = std::collections::BTreeSet::new();
                    for (i, m) in wl.mix.iter().enumerate() {
                        let f = format!("workload.mix[{i}]");
                        let v = &m.value;
                        if !names.insert(v.name.clone()) {
                            return Err(w.at_loc(
                                m.referenced,
                                Some(&f),
                                format!("mix name {:?} is used twice", v.name),
                            ));
                        }
                        if !(v.weight > 0.0 && v.weight.is_finite()) {
                            return Err(w.at_loc(
                                m.referenced,
                                Some(&format!("{f}.weight")),
                                "weight must be positive",
                            ));
                        }
                        if v.memory.is_some() && v.memory_percent.is_some() {
                            return Err(w.at_loc(
                                m.referenced,
                                Some(&f),
                                "give memory or memory_percent, not both",
                            ));
                        }
                        if let Some(d) = &v.duration {
                            check_duration(&w, m.referenced.line(), &format!("{f}.duration"), d)?;
                        }
                        let c = class_of_mix(v).map_err(|e| w.at_loc(m.referenced, Some(&f), e))?;
                        classes.push(c);
                    }
                    Source::Generated { arrival, duration }
                }
            }
        };

        // Policies.
        let mut policies: Vec<PolicyRes> = Vec::new();
        if file.policies.is_empty() {
            return Err(top("policies", "at least one policy is needed".into()));
        }
        for (i, p) in file.policies.iter().enumerate() {
            let v = &p.value;
            if policies.iter().any(|x| x.name == v.name) {
                return Err(w.at_loc(
                    p.referenced,
                    Some(&format!("policies[{i}].name")),
                    format!("policy name {:?} is used twice", v.name),
                ));
            }
            let cov = v.fgd_coverage.unwrap_or(95.0);
            if !(cov > 0.0 && cov <= 100.0) {
                return Err(w.at_loc(
                    p.referenced,
                    Some(&format!("policies[{i}].fgd_coverage")),
                    "must be in (0, 100]",
                ));
            }
            policies.push(PolicyRes {
                name: v.name.clone(),
                node: v.node.0,
                device: v.device.clone().map(|d| d.0).unwrap_or_default(),
                tie: v.tie.unwrap_or(file.tie),
                coverage: cov / 100.0,
            });
        }

        // Faults.
        let mut faults = Vec::new();
        for (i, f) in file.faults.iter().enumerate() {
            let v = &f.value;
            let field = format!("faults[{i}]");
            let pool = match &v.pool {
                None => None,
                Some(name) => Some(
                    pools
                        .iter()
                        .position(|p| &p.name == name)
                        .map(|x| x as u16)
                        .ok_or_else(|| {
                            w.at_loc(
                                f.referenced,
                                Some(&format!("{field}.pool")),
                                format!(
                                    "unknown pool {name:?}; pools: {}",
                                    pools
                                        .iter()
                                        .map(|p| p.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?,
                ),
            };
            faults.push(FaultRes {
                at: v.at.0,
                kind: v.kind,
                nodes: v.nodes.unwrap_or(1),
                pool,
                cards: v.cards.unwrap_or(1),
                recover_after: v.recover_after.map(|d| d.0),
            });
        }
        if !(0.0..=1.0).contains(&file.api.bind_failure) {
            return Err(top("api", "bind_failure is a probability in 0..=1".into()));
        }

        // Expectations.
        let mut expect = Vec::new();
        for (i, e) in file.expect.iter().enumerate() {
            let names: Vec<&str> = match &e.value {
                Expectation::Threshold { policy, .. } => {
                    policy.iter().map(String::as_str).collect()
                }
                Expectation::Beats { a, b, .. } => vec![a.as_str(), b.as_str()],
            };
            for n in names {
                if !policies.iter().any(|p| p.name == n) {
                    return Err(w.at_loc(
                        e.referenced,
                        Some(&format!("expect[{i}]")),
                        format!(
                            "unknown policy {n:?}; policies: {}",
                            policies
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            expect.push(e.value.clone());
        }

        // Stop.
        let stop_time = file.stop.time.map(|d| d.0);
        let stop_pods = file.stop.pods;
        if stop_time.is_none() && stop_pods.is_none() && !matches!(source, Source::Trace { .. }) {
            return Err(top("stop", "needs `time` or `pods`".into()));
        }

        // Seeds.
        let reps = file.repetitions.unwrap_or(1).max(1);
        let base = match std::env::var("SEED") {
            Ok(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("SEED={s:?} is not a non-negative integer"))?,
            Err(_) => file.seed,
        };
        let seeds: Vec<u64> = (0..u64::from(reps)).map(|i| base.wrapping_add(i)).collect();

        // Variants.
        let mut variants = Vec::new();
        let sweep: Vec<Option<u32>> = if file.sweep.nodes.is_empty() {
            vec![None]
        } else {
            file.sweep.nodes.iter().map(|&n| Some(n)).collect()
        };
        if !file.sweep.nodes.is_empty() && pool_specs.is_empty() {
            return Err(top(
                "sweep",
                "sweep.nodes needs node pools (not a trace node list)".into(),
            ));
        }
        let total_spec: u64 = pool_specs.iter().map(|p| u64::from(p.count)).sum();
        for s in sweep {
            let factor = match s {
                Some(n) => f64::from(n) / total_spec.max(1) as f64,
                None => 1.0,
            };
            let nodes: Vec<(Node, u16)> = if pool_specs.is_empty() {
                base_nodes.clone()
            } else {
                let mut v = Vec::new();
                for (pi, p) in pool_specs.iter().enumerate() {
                    let count = ((f64::from(p.count) * factor).round() as u64).max(1);
                    for i in 0..count {
                        v.push((pool_node(p, format!("{}-{i:05}", p.name)), pi as u16));
                    }
                }
                v
            };
            if nodes.is_empty() {
                return Err(top("cluster", "the cluster has no GPU nodes".into()));
            }
            // A fault may not ask for more nodes, or more cards per node, than this cluster
            // has where it strikes (the engine would take fewer without a word).
            for (i, (f, res)) in file.faults.iter().zip(&faults).enumerate() {
                let hit: Vec<&Node> = nodes
                    .iter()
                    .filter(|(_, p)| res.pool.is_none_or(|want| *p == want))
                    .map(|(n, _)| n)
                    .collect();
                // Only cards whose health HAMi reads can fail, and a device fault strikes
                // only nodes that have one (see the engine's fault): per node, how many.
                let failable: Vec<usize> = hit
                    .iter()
                    .map(|n| n.devices.iter().filter(|d| can_fail(d)).count())
                    .collect();
                let most_cards = failable.iter().copied().max().unwrap_or(0);
                let eligible = failable.iter().filter(|&&c| c > 0).count();
                // A card that cannot fail is one made from node capacity.
                let unseen = if hit.iter().zip(&failable).any(|(n, &c)| c < n.devices.len()) {
                    " cards whose health HAMi reads (cards made from node capacity have none)"
                } else {
                    ""
                };
                let size = match &s {
                    Some(n) => format!(" at sweep size {n}"),
                    None => String::new(),
                };
                if res.nodes == 0 || res.nodes as usize > hit.len() {
                    return Err(w.at_loc(
                        f.referenced,
                        Some(&format!("faults[{i}].nodes")),
                        format!(
                            "asks for {} node(s); the cluster has {} where this fault strikes{size}",
                            res.nodes,
                            hit.len()
                        ),
                    ));
                }
                if res.kind != FaultKind::DeviceUnhealthy {
                    continue;
                }
                if eligible < hit.len() && res.nodes as usize > eligible {
                    return Err(w.at_loc(
                        f.referenced,
                        Some(&format!("faults[{i}].nodes")),
                        format!(
                            "asks for {} node(s); the cluster has {eligible} with cards whose health HAMi reads where this fault strikes (cards made from node capacity have none){size}",
                            res.nodes
                        ),
                    ));
                }
                if res.cards == 0 || res.cards as usize > most_cards {
                    return Err(w.at_loc(
                        f.referenced,
                        Some(&format!("faults[{i}].cards")),
                        format!(
                            "asks for {} card(s) per node; its nodes have at most {most_cards}{unseen}{size}",
                            res.cards
                        ),
                    ));
                }
            }
            let total_cards: u64 = nodes.iter().map(|(n, _)| n.devices.len() as u64).sum();
            let mut source = source.clone();
            if let Source::Generated { arrival, .. } = &mut source {
                arrival.rate *= factor;
            }
            let mut tasks: Vec<(TaskType, f64)> = classes
                .iter()
                .map(|c| (task_of_class(c), c.weight))
                .collect();
            if explicit {
                // One class per listed pod: equal requests are one task type of the target.
                let mut merged: BTreeMap<TaskType, f64> = BTreeMap::new();
                for (t, w) in tasks {
                    *merged.entry(t).or_default() += w;
                }
                tasks = merged.into_iter().collect();
            }
            tasks.sort_by(|a, b| b.1.total_cmp(&a.1));
            let cov = policies
                .iter()
                .map(|p| p.coverage)
                .fold(0.0f64, f64::max)
                .max(0.95);
            let total_w: f64 = tasks.iter().map(|t| t.1).sum();
            let mut keep = Vec::new();
            let mut cum = 0.0;
            for t in tasks {
                if !keep.is_empty() && cum >= cov * total_w {
                    break;
                }
                cum += t.1;
                keep.push(t);
            }
            variants.push(Variant {
                name: match s {
                    Some(n) => format!("{}@nodes={n}", file.name),
                    None => file.name.clone(),
                },
                pools: pools.clone(),
                nodes: Arc::new(nodes),
                classes: Arc::new(classes.clone()),
                source,
                target: Arc::new(TargetWorkload::new(keep)),
                total_cards,
            });
        }
        let table = if file.metrics.is_empty() {
            MetricName::DEFAULT_TABLE.to_vec()
        } else {
            file.metrics.clone()
        };
        let horizon = stop_time.unwrap_or_else(|| match variants.first().map(|v| &v.source) {
            Some(Source::Trace {
                pods,
                mode,
                rate,
                limit,
            }) => {
                let n = limit.map_or(pods.len(), |l| l.min(pods.len()));
                match mode {
                    TraceMode::Timestamps => {
                        let t0 = pods.first().map(|p| p.at).unwrap_or(0);
                        pods.get(n.saturating_sub(1))
                            .map(|p| p.at - t0)
                            .unwrap_or(0)
                    }
                    _ => (n as f64 / rate * 1000.0) as u64,
                }
            }
            Some(Source::Generated { arrival, .. }) => stop_pods
                .map(|p| (p as f64 / arrival.rate * 1000.0) as u64)
                .unwrap_or(3_600_000),
            None => 3_600_000,
        });
        let sample_every = file
            .sample_every
            .map(|d: Dur| d.0)
            .unwrap_or((horizon / 200).max(1))
            .max(1);
        Ok(Scenario {
            path: path.to_path_buf(),
            seeds,
            variants,
            policies,
            faults,
            expect,
            table,
            stop_time,
            stop_pods,
            sample_every,
            check_every: file.check_every.unwrap_or(DEFAULT_CHECK_EVERY).max(1),
            nodes_to_score_pct: file.percentage_of_nodes_to_score.map(|p| p.clamp(1, 100)),
            file,
        })
    }
}
