//! Scenario files (YAML). This module defines the `trace-replay` kind: replay a recorded pod list
//! once, in a seeded random order, with no departures (the FGD paper's experiment). The schema
//! is documented in `scenarios/README.md`; a discrete-event kind can add fields and kinds later.
//!
//! Errors name the file, the line and column, and the field.

use hami_core::policy::NodePolicyKind;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The kinds of scenario this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Replay a pod list without departures (FGD paper experiment).
    TraceReplay,
}

/// How ties between equally scored nodes break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieKind {
    /// A random node permutation drawn once per run; the first tied node in it wins (the FGD
    /// artifact's behaviour).
    NodePriority,
    /// A uniformly random tied node per decision (stock kube-scheduler).
    Uniform,
}

impl TieKind {
    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TieKind::NodePriority => "node-priority",
            TieKind::Uniform => "uniform",
        }
    }
}

/// The trace files, relative to the scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceFiles {
    /// Node list CSV (`sn,cpu_milli,memory_mib,gpu,model`).
    pub nodes: PathBuf,
    /// Pod list CSV (`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,…]`).
    pub pods: PathBuf,
}

/// Expected mean unallocated GPU share of one policy at one arrival level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectUnallocated {
    /// Policy name.
    pub policy: String,
    /// Arrived workload, % of cluster GPU capacity (must be one of `measure_at_pct`).
    pub arrived_pct: u32,
    /// Expected mean over seeds, % of capacity.
    pub mean: f64,
    /// Allowed absolute difference, percentage points.
    pub tolerance: f64,
}

/// What a run must show for `hami fgd check` to pass.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Mean unallocated share per policy and arrival level.
    #[serde(default)]
    pub unallocated: Vec<ExpectUnallocated>,
    /// Policy groups from best (least unallocated) to worst at every `measure_at_pct`: every
    /// policy of a group must beat every policy of the next one; policies inside a group are
    /// not ordered.
    #[serde(default)]
    pub ranking: Vec<Vec<String>>,
    /// Bounds `[low, high]` on the empty cluster's fragmentation, % of capacity.
    #[serde(default)]
    pub empty_frag_pct: Option<[f64; 2]>,
}

/// A scenario file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Scenario kind.
    pub kind: ScenarioKind,
    /// Short name, used as the `trace` column of reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Trace files.
    pub trace: TraceFiles,
    /// Inflate (clone pods) or deflate (drop pods) the list to this total GPU request, % of
    /// cluster GPU capacity.
    #[serde(default = "default_inflation")]
    pub inflation_pct: f64,
    /// Share of pods (0..=100) the FGD target workload's task types must cover.
    #[serde(default = "default_coverage")]
    pub target_coverage_pct: f64,
    /// One run per seed and policy.
    pub seeds: Vec<u64>,
    /// Node policies by name.
    pub policies: Vec<String>,
    /// Tie rule.
    #[serde(default = "default_tie")]
    pub tie: TieKind,
    /// Arrival levels (% of capacity) at which results are reported.
    #[serde(default = "default_measure")]
    pub measure_at_pct: Vec<u32>,
    /// Expectations for `check`.
    #[serde(default)]
    pub expect: Expectations,
}

fn default_inflation() -> f64 {
    130.0
}
fn default_coverage() -> f64 {
    95.0
}
fn default_tie() -> TieKind {
    TieKind::NodePriority
}
fn default_measure() -> Vec<u32> {
    vec![100, 130]
}

/// A validated scenario with resolved paths and parsed policies.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's content.
    pub file: ScenarioFile,
    /// Node list, resolved.
    pub nodes: PathBuf,
    /// Pod list, resolved.
    pub pods: PathBuf,
    /// Policies, parsed, in file order.
    pub policies: Vec<NodePolicyKind>,
}

/// The node policies a trace-replay scenario may name.
pub const REPLAY_POLICIES: [NodePolicyKind; 7] = [
    NodePolicyKind::Random,
    NodePolicyKind::DotProduct,
    NodePolicyKind::Clustering,
    NodePolicyKind::Packing,
    NodePolicyKind::BestFit,
    NodePolicyKind::Fgd,
    NodePolicyKind::FgdExact,
];

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
        .unwrap_or(1)
}

impl Scenario {
    /// Parse `text` (read from `path`) and validate it: kinds, policy names, seeds, paths.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, String> {
        let file: ScenarioFile = serde_saphyr::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("{}:{}:{}: {e}", path.display(), l.line(), l.column()),
            None => format!("{}: {e}", path.display()),
        })?;
        let at = |field: &str| format!("{}:{}: {field}", path.display(), line_of(text, field));
        let mut policies = Vec::new();
        for p in &file.policies {
            let k = NodePolicyKind::parse(p).map_err(|e| format!("{}: {e}", at("policies")))?;
            if !REPLAY_POLICIES.contains(&k) {
                return Err(format!(
                    "{}: policy {p:?} is not one of the trace-replay policies ({})",
                    at("policies"),
                    REPLAY_POLICIES.map(|k| k.as_str()).join(", ")
                ));
            }
            if policies.contains(&k) {
                return Err(format!("{}: policy {p:?} is listed twice", at("policies")));
            }
            policies.push(k);
        }
        if policies.is_empty() {
            return Err(format!("{}: at least one policy is needed", at("policies")));
        }
        if file.seeds.is_empty() {
            return Err(format!("{}: at least one seed is needed", at("seeds")));
        }
        if !(file.inflation_pct.is_finite()
            && file.inflation_pct > 0.0
            && file.inflation_pct <= 1000.0)
        {
            return Err(format!(
                "{}: must be in (0, 1000], got {}",
                at("inflation_pct"),
                file.inflation_pct
            ));
        }
        if !(file.target_coverage_pct > 0.0 && file.target_coverage_pct <= 100.0) {
            return Err(format!(
                "{}: must be in (0, 100], got {}",
                at("target_coverage_pct"),
                file.target_coverage_pct
            ));
        }
        for e in &file.expect.unallocated {
            NodePolicyKind::parse(&e.policy).map_err(|m| {
                format!(
                    "{}: {m}",
                    at("- policy").replace("- policy", "expect.unallocated.policy")
                )
            })?;
            if !file.measure_at_pct.contains(&e.arrived_pct) {
                return Err(format!(
                    "{}: {} is not in measure_at_pct {:?}",
                    at("arrived_pct").replace("arrived_pct", "expect.unallocated.arrived_pct"),
                    e.arrived_pct,
                    file.measure_at_pct
                ));
            }
        }
        for g in &file.expect.ranking {
            for p in g {
                NodePolicyKind::parse(p).map_err(|m| {
                    format!(
                        "{}: {m}",
                        at("ranking").replace("ranking", "expect.ranking")
                    )
                })?;
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path, field: &str| -> Result<PathBuf, String> {
            let full = dir.join(p);
            if !full.is_file() {
                return Err(format!(
                    "{}: {} does not exist (paths are relative to the scenario file)",
                    at(field).replace(field, &format!("trace.{field}")),
                    full.display()
                ));
            }
            Ok(full)
        };
        let nodes = resolve(&file.trace.nodes, "nodes")?;
        let pods = resolve(&file.trace.pods, "pods")?;
        Ok(Scenario {
            path: path.to_path_buf(),
            file,
            nodes,
            pods,
            policies,
        })
    }

    /// Read and validate a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(path, &text)
    }

    /// A scenario file, or every `*.yaml` file of a folder (sorted by name).
    pub fn load_all(path: &Path) -> Result<Vec<Scenario>, String> {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!("{}: no *.yaml scenario files", path.display()));
            }
            files.iter().map(|p| Scenario::load(p)).collect()
        } else {
            Ok(vec![Scenario::load(path)?])
        }
    }
}
