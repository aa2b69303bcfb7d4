//! `hami replay`: sim-to-real parity. Run a scenario in the simulator, replay the simulator's
//! steps (pod creations in its scheduling order, departures as deletions) against a real control
//! plane, and compare every placement — node, cards, memory and cores per container.
//!
//! ```sh
//! hami replay inventory scenarios/parity.yaml --out inv.yaml   # for `hami node-agent --inventory`
//! hami replay run --kubeconfig kc scenarios/parity.yaml --metrics-url http://127.0.0.1:9395/metrics --out parity/
//! hami replay plan scenarios/parity.yaml --out sim.json        # the simulator's steps and placements
//! hami replay compare parity/sim.json parity/real.json         # first difference, exit 1
//! ```

use hami_cluster::replay::{ReplayOptions, ReplayPlan, replay_blocking};
use hami_sim::des::model::Scenario;
use hami_sim::des::placements::{
    Observation, Plan, check_replayable, find_policy, first_difference, inventory_yaml, plan,
    plan_nodes,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `hami replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Write the node agent's fake inventory for the scenario's cluster.
    Inventory {
        /// Scenario file (YAML).
        scenario: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the simulator with recording and write its plan (steps and placements) as JSON.
    Plan {
        /// Scenario file.
        scenario: PathBuf,
        /// Policy name (default: the scenario's first).
        #[arg(long)]
        policy: Option<String>,
        /// Seed (default: the scenario's first).
        #[arg(long)]
        seed: Option<u64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Simulate, replay against the cluster, compare; exit 1 on the first difference.
    Run {
        /// Scenario file.
        scenario: PathBuf,
        /// Kubeconfig of the cluster (our scheduler, webhook, node agent and KWOK running).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Policy name (default: the scenario's first); the scheduler must run with its
        /// node and GPU policies.
        #[arg(long)]
        policy: Option<String>,
        /// Seed (default: the scenario's first).
        #[arg(long)]
        seed: Option<u64>,
        /// Namespace of the replayed pods (created when missing); also the node label value.
        #[arg(long, default_value = "hami-replay")]
        namespace: String,
        /// Our scheduler's plain-HTTP metrics URL, to wait until its ledger saw each change.
        #[arg(long)]
        metrics_url: Option<String>,
        /// Seconds a pod may take to be bound or reported unschedulable.
        #[arg(long, default_value_t = 60)]
        step_timeout: u64,
        /// Seconds a pod the simulator placed may stay unschedulable before that is the outcome.
        #[arg(long, default_value_t = 15)]
        settle: u64,
        /// Folder for sim.json (plan), real.json (observations) and summary.json.
        #[arg(long, default_value = "replay-results")]
        out: PathBuf,
    },
    /// Compare a plan (or observation list) with observations; exit 1 on a difference.
    Compare {
        /// The simulator's plan (`sim.json`) or an observation list.
        sim: PathBuf,
        /// The real cluster's observations (`real.json`).
        real: PathBuf,
    },
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

fn make_plan(scenario: &Path, policy: Option<&str>, seed: Option<u64>) -> Result<Plan, String> {
    let sc = Scenario::load(scenario)?;
    let p = find_policy(&sc, policy)?;
    check_replayable(&sc, p)?;
    let seed = seed.or_else(|| sc.seeds.first().copied()).unwrap_or(0);
    plan(&sc, p, seed)
}

/// Observations from a file holding either a plan (its `expected`) or an observation list.
fn read_observations(path: &Path) -> Result<Vec<Observation>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let list = if v.is_object() {
        v.get("expected")
            .or_else(|| v.get("observed"))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{}: neither a plan (`expected`) nor a replay result (`observed`)",
                    path.display()
                )
            })?
    } else {
        v
    };
    serde_json::from_value(list).map_err(|e| format!("{}: observations: {e}", path.display()))
}

fn verdict(sim: &[Observation], real: &[Observation]) -> ExitCode {
    match first_difference(sim, real) {
        None => {
            let placed = sim.iter().filter(|o| o.node.is_some()).count();
            println!(
                "parity: identical — {} scheduling steps ({} placements, {} unschedulable verdicts): same node, cards, memory and cores per container",
                sim.len(),
                placed,
                sim.len() - placed
            );
            ExitCode::SUCCESS
        }
        Some(d) => {
            println!("parity: FIRST DIFFERENCE at {d}");
            ExitCode::from(1)
        }
    }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Run `hami replay`.
pub fn run(a: Args) -> Result<ExitCode, String> {
    match a.cmd {
        Cmd::Inventory { scenario, out } => {
            let sc = Scenario::load(&scenario)?;
            let var = sc
                .variants
                .first()
                .ok_or_else(|| format!("{}: no variant", scenario.display()))?;
            let nodes = plan_nodes(var);
            write(&out, &inventory_yaml(&sc.file.name, &nodes))?;
            println!(
                "wrote {} ({} nodes, {} cards)",
                out.display(),
                nodes.len(),
                nodes.iter().map(|n| n.cards.len()).sum::<usize>()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plan {
            scenario,
            policy,
            seed,
            out,
        } => {
            let p = make_plan(&scenario, policy.as_deref(), seed)?;
            write(&out, &json(&p)?)?;
            println!(
                "wrote {}: {} steps, {} scheduling outcomes",
                out.display(),
                p.steps.len(),
                p.expected.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            scenario,
            kubeconfig,
            policy,
            seed,
            namespace,
            metrics_url,
            step_timeout,
            settle,
            out,
        } => {
            let p = make_plan(&scenario, policy.as_deref(), seed)?;
            write(&out.join("sim.json"), &json(&p)?)?;
            let placed = p.expected.iter().filter(|o| o.node.is_some()).count();
            let deletes = p.steps.len() - p.expected.len();
            println!(
                "simulator: policy {} (scheduler must run --node-scheduler-policy {} --gpu-scheduler-policy {}), seed {}: {} nodes, {} steps: {} placements, {} unschedulable verdicts, {} deletions",
                p.policy,
                p.node_policy,
                p.gpu_policy,
                p.seed,
                p.nodes.len(),
                p.steps.len(),
                placed,
                p.expected.len() - placed,
                deletes
            );
            let rp: ReplayPlan = serde_json::to_value(&p)
                .and_then(serde_json::from_value)
                .map_err(|e| format!("plan conversion: {e}"))?;
            let expected_bound: BTreeMap<usize, bool> = p
                .expected
                .iter()
                .map(|o| (o.step, o.node.is_some()))
                .collect();
            let opts = ReplayOptions {
                kubeconfig,
                namespace,
                metrics_url,
                step_timeout: Duration::from_secs(step_timeout),
                settle: Duration::from_secs(settle),
                registration_timeout: Duration::from_secs(90),
            };
            let res = replay_blocking(&rp, &expected_bound, opts, |m| println!("replay: {m}"))?;
            write(&out.join("real.json"), &json(&res.observed)?)?;
            let real: &[Observation] = &res.observed;
            let mut lat = res.bind_latency_s.clone();
            let summary = serde_json::json!({
                "scenario": p.scenario,
                "policy": p.policy,
                "steps": p.steps.len(),
                "steps_wall_s": res.steps_wall_s,
                "bind_latency_p50_s": quantile(&mut lat, 0.5),
                "bind_latency_p99_s": quantile(&mut lat, 0.99),
                "identical": first_difference(&p.expected, real).is_none(),
            });
            write(&out.join("summary.json"), &json(&summary)?)?;
            println!(
                "replay: {} steps in {:.1}s; create→bound p50 {:.3}s p99 {:.3}s; wrote {}/sim.json, real.json, summary.json",
                p.steps.len(),
                res.steps_wall_s,
                quantile(&mut lat, 0.5),
                quantile(&mut lat, 0.99),
                out.display()
            );
            Ok(verdict(&p.expected, real))
        }
        Cmd::Compare { sim, real } => {
            let s = read_observations(&sim)?;
            let r = read_observations(&real)?;
            Ok(verdict(&s, &r))
        }
    }
}
