//! The Alibaba GPU cluster trace v2023 (the FGD paper's `openb_*` CSV files): node and pod lists,
//! turned into core `Node`s and, through the production request translation, `PodRequest`s.
//!
//! Mapping to HAMi terms:
//! - a node row becomes a [`Node`] with `cpu_milli`, `memory_mib` and `gpu` cards of `model`;
//!   card memory comes from [`card_memory_mib`], cores are 100 and `split_count` is
//!   [`SPLIT_COUNT`] (the paper has no slot limit; the smallest share in the traces is 50 milli,
//!   so at most 20 pods share a card and 100 slots never bind);
//! - a pod row with `num_gpu = 1` and `gpu_milli < 1000` asks `nvidia.com/gpu: 1`,
//!   `nvidia.com/gpucores` and `nvidia.com/gpumem-percentage` of `gpu_milli / 10`;
//!   whole-card pods ask `nvidia.com/gpu: N` (HAMi makes them exclusive); `gpu_spec`
//!   (`A|B`) becomes the `nvidia.com/use-gputype: A,B` annotation; CPU and memory are container
//!   requests.

use hami_core::family::FamilyId;
use hami_core::model::{Device, LinkScores, Node};
use hami_core::policy::fgd::TaskType;
use hami_core::request::{PodRequest, RequestTranslator};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::path::Path;

/// Slots per card: high enough never to bind for the paper's traces.
pub const SPLIT_COUNT: u32 = 100;

/// Card models of the trace, with the card memory (MiB) we register for them. G1–G3 are
/// undisclosed internal codes; their memory is a placeholder. Memory never decides anything in
/// this experiment: trace pods ask memory as a percentage equal to their compute share.
pub const MODELS: [(&str, u64); 8] = [
    ("G1", 16_384),
    ("G2", 32_768),
    ("G3", 32_768),
    ("T4", 15_360),
    ("P100", 16_384),
    ("V100M16", 16_384),
    ("V100M32", 32_768),
    ("A10", 24_576),
];

/// Card memory of a trace model, MiB; `None` for models not in [`MODELS`].
pub fn card_memory_mib(model: &str) -> Option<u64> {
    MODELS
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, mem)| *mem)
}

/// One node row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceNode {
    /// Node name (`sn`).
    pub name: String,
    /// CPU, milli.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Number of cards.
    pub gpu: u32,
    /// Card model (empty when the node has no card).
    pub model: String,
}

/// One pod row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePod {
    /// Pod name.
    pub name: String,
    /// CPU request, milli.
    pub cpu_milli: u64,
    /// Memory request, MiB.
    pub memory_mib: u64,
    /// Cards.
    pub num_gpu: u32,
    /// Per-card share, milli-GPU.
    pub gpu_milli: u64,
    /// Allowed models, `|`-separated as in the trace (empty = any).
    pub gpu_spec: String,
}

impl TracePod {
    /// Total GPU request, milli-GPU.
    pub fn gpu_total(&self) -> u64 {
        self.gpu_milli * u64::from(self.num_gpu)
    }

    /// Per-card share, milli-GPU (0 for CPU-only pods).
    pub fn gpu_per_card(&self) -> u64 {
        if self.num_gpu == 0 { 0 } else { self.gpu_milli }
    }

    /// The pod's task type for FGD's target workload.
    pub fn task_type(&self) -> TaskType {
        TaskType {
            cpu_milli: self.cpu_milli,
            share: self.gpu_per_card(),
            count: self.num_gpu,
            gpu_spec: self.gpu_spec.clone(),
        }
    }

    /// The Kubernetes Pod this row stands for (see the module documentation).
    pub fn to_pod(&self) -> Pod {
        let q = |s: String| Quantity(s);
        let mut requests = BTreeMap::new();
        requests.insert("cpu".to_string(), q(format!("{}m", self.cpu_milli)));
        requests.insert("memory".to_string(), q(format!("{}Mi", self.memory_mib)));
        let mut limits = BTreeMap::new();
        if self.num_gpu > 0 {
            limits.insert("nvidia.com/gpu".to_string(), q(self.num_gpu.to_string()));
            if self.num_gpu == 1 && self.gpu_milli < 1000 {
                let pct = (self.gpu_milli / 10).to_string();
                limits.insert("nvidia.com/gpucores".to_string(), q(pct.clone()));
                limits.insert("nvidia.com/gpumem-percentage".to_string(), q(pct));
            }
        }
        let mut annotations = BTreeMap::new();
        if !self.gpu_spec.is_empty() {
            annotations.insert(
                "nvidia.com/use-gputype".to_string(),
                self.gpu_spec.split('|').collect::<Vec<_>>().join(","),
            );
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some("default".into()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        limits: (!limits.is_empty()).then_some(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl TraceNode {
    /// The core node for this row; `Err` names the unknown model.
    pub fn to_node(&self) -> Result<Node, String> {
        let mut node = Node::new(self.name.clone());
        node.cpu_milli = self.cpu_milli;
        node.memory_mib = self.memory_mib;
        if self.gpu > 0 {
            let mem = card_memory_mib(&self.model).ok_or_else(|| {
                format!(
                    "node {}: unknown GPU model {:?} (known: {})",
                    self.name,
                    self.model,
                    MODELS.map(|m| m.0).join(", ")
                )
            })?;
            for i in 0..self.gpu {
                let mut d = Device::new(
                    format!("{}-gpu{i}", self.name),
                    i,
                    FamilyId::NVIDIA,
                    self.model.clone(),
                    mem,
                );
                d.split_count = SPLIT_COUNT;
                node.devices.push(d);
            }
            node.links = LinkScores::new(self.gpu as usize);
        }
        Ok(node)
    }
}

fn open(path: &Path) -> Result<csv::Reader<std::fs::File>, String> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Column indexes of `names` in the header, and the header; the error names the missing
/// column.
fn columns(
    path: &Path,
    r: &mut csv::Reader<std::fs::File>,
    names: &[&str],
    optional: &[&str],
) -> Result<(Vec<Option<usize>>, csv::StringRecord), String> {
    let h = r
        .headers()
        .map_err(|e| format!("{}:1: {e}", path.display()))?
        .clone();
    let mut out = Vec::new();
    for n in names {
        let i = h.iter().position(|c| c.trim() == *n).ok_or_else(|| {
            format!(
                "{}:1: missing column {n:?} (header: {})",
                path.display(),
                h.iter().collect::<Vec<_>>().join(",")
            )
        })?;
        out.push(Some(i));
    }
    for n in optional {
        out.push(h.iter().position(|c| c.trim() == *n));
    }
    Ok((out, h))
}

/// A row the CSV reader refused, as `file:line: what`: a row with fewer values than the
/// header names the first column it lacks (the reader's own words give a record number and a
/// byte offset instead).
fn row_error(path: &Path, header: &csv::StringRecord, e: &csv::Error) -> String {
    let line = e.position().map_or(0, csv::Position::line);
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } if len < expected_len => format!(
            "{}:{line}: column {}: missing value ({len} values where the header has {expected_len})",
            path.display(),
            header.get(*len as usize).unwrap_or("?").trim(),
        ),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "{}:{line}: {len} values where the header has {expected_len} columns: value {} has no column (the last is {})",
            path.display(),
            expected_len + 1,
            header
                .get((*expected_len as usize).saturating_sub(1))
                .unwrap_or("?")
                .trim(),
        ),
        _ => format!("{}:{line}: {e}", path.display()),
    }
}

fn field<'a>(
    path: &Path,
    line: u64,
    rec: &'a csv::StringRecord,
    col: Option<usize>,
    name: &str,
) -> Result<&'a str, String> {
    match col {
        None => Ok(""),
        Some(i) => rec
            .get(i)
            .map(str::trim)
            .ok_or_else(|| format!("{}:{line}: column {name}: missing value", path.display())),
    }
}

fn num(path: &Path, line: u64, name: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>().map_err(|_| {
        format!(
            "{}:{line}: column {name}: expected a non-negative integer, got {v:?}",
            path.display()
        )
    })
}

/// Read a node list (`sn,cpu_milli,memory_mib,gpu,model`). Errors carry `file:line` and the
/// column name.
pub fn read_nodes(path: &Path) -> Result<Vec<TraceNode>, String> {
    let mut r = open(path)?;
    let (cols, header) = columns(
        path,
        &mut r,
        &["sn", "cpu_milli", "memory_mib", "gpu", "model"],
        &[],
    )?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| row_error(path, &header, &e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let f = |i: usize, n: &str| field(path, line, &rec, cols[i], n);
        let gpu = num(path, line, "gpu", f(3, "gpu")?)?;
        let model = f(4, "model")?.to_string();
        let model = if model == "nan" { String::new() } else { model };
        if gpu > 0 && card_memory_mib(&model).is_none() {
            return Err(format!(
                "{}:{line}: column model: unknown GPU model {model:?} (known: {})",
                path.display(),
                MODELS.map(|m| m.0).join(", ")
            ));
        }
        out.push(TraceNode {
            name: f(0, "sn")?.to_string(),
            cpu_milli: num(path, line, "cpu_milli", f(1, "cpu_milli")?)?,
            memory_mib: num(path, line, "memory_mib", f(2, "memory_mib")?)?,
            gpu: u32::try_from(gpu).map_err(|_| {
                format!("{}:{line}: column gpu: {gpu} is too large", path.display())
            })?,
            model,
        });
    }
    Ok(out)
}

/// Read a pod list (`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,…]`; the multigpu
/// files have only the first five columns). Errors carry `file:line` and the column name.
pub fn read_pods(path: &Path) -> Result<Vec<TracePod>, String> {
    let mut r = open(path)?;
    let (cols, header) = columns(
        path,
        &mut r,
        &["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"],
        &["gpu_spec"],
    )?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| row_error(path, &header, &e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let f = |i: usize, n: &str| field(path, line, &rec, cols[i], n);
        let num_gpu = num(path, line, "num_gpu", f(3, "num_gpu")?)?;
        let gpu_milli = num(path, line, "gpu_milli", f(4, "gpu_milli")?)?;
        if num_gpu > 64 {
            return Err(format!(
                "{}:{line}: column num_gpu: {num_gpu} cards is more than any node has",
                path.display()
            ));
        }
        if gpu_milli > 1000 || (num_gpu > 0 && (gpu_milli == 0 || gpu_milli % 10 != 0)) {
            return Err(format!(
                "{}:{line}: column gpu_milli: expected a multiple of 10 in 10..=1000 for a GPU pod, got {gpu_milli}",
                path.display()
            ));
        }
        if num_gpu > 1 && gpu_milli != 1000 {
            return Err(format!(
                "{}:{line}: column gpu_milli: a {num_gpu}-card pod must ask whole cards (1000), got {gpu_milli}",
                path.display()
            ));
        }
        let spec = f(5, "gpu_spec")?;
        let spec = if spec == "nan" { "" } else { spec };
        if let Some(bad) = spec
            .split('|')
            .find(|m| !m.is_empty() && card_memory_mib(m).is_none())
        {
            return Err(format!(
                "{}:{line}: column gpu_spec: unknown GPU model {bad:?}",
                path.display()
            ));
        }
        out.push(TracePod {
            name: f(0, "name")?.to_string(),
            cpu_milli: num(path, line, "cpu_milli", f(1, "cpu_milli")?)?,
            memory_mib: num(path, line, "memory_mib", f(2, "memory_mib")?)?,
            num_gpu: num_gpu as u32,
            gpu_milli: if num_gpu == 0 { 0 } else { gpu_milli },
            gpu_spec: spec.to_string(),
        });
    }
    Ok(out)
}

/// A loaded trace: nodes, pods sorted by name, and each pod's request (translated once).
#[derive(Debug, Clone)]
pub struct Trace {
    /// Node rows.
    pub nodes: Vec<TraceNode>,
    /// Pod rows, sorted by name.
    pub pods: Vec<TracePod>,
    /// `requests[i]` is the translated request of `pods[i]`.
    pub requests: Vec<PodRequest>,
    /// Cluster GPU capacity, milli-GPU.
    pub capacity_milli: u64,
}

impl Trace {
    /// Load both files, sort pods by name and translate each through
    /// [`RequestTranslator::translate`] (HAMi's default configuration).
    pub fn load(nodes: &Path, pods: &Path) -> Result<Trace, String> {
        let nodes_v = read_nodes(nodes)?;
        let mut pods_v = read_pods(pods)?;
        pods_v.sort_by(|a, b| a.name.cmp(&b.name));
        let tr = RequestTranslator::default();
        let requests = pods_v
            .iter()
            .map(|p| {
                tr.translate(&p.to_pod())
                    .map_err(|e| format!("{}: {e}", pods.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let capacity_milli = nodes_v.iter().map(|n| u64::from(n.gpu) * 1000).sum();
        Ok(Trace {
            nodes: nodes_v,
            pods: pods_v,
            requests,
            capacity_milli,
        })
    }

    /// The core nodes.
    pub fn core_nodes(&self) -> Result<Vec<Node>, String> {
        self.nodes.iter().map(TraceNode::to_node).collect()
    }
}
