//! `hami`: the single front end of hami-rs.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod commands;

// mimalloc, not glibc's malloc: a simulation allocates and frees small objects per event,
// and glibc's malloc cost a fifth of a run's instructions (and more of its wall time).
#[global_allocator]
static GLOBAL: hami_sim::alloc::MiMalloc = hami_sim::alloc::MiMalloc;

/// hami-rs: a simulation-first GPU/NPU sharing scheduler for Kubernetes, wire-compatible with HAMi.
#[derive(Debug, Parser)]
#[command(name = "hami", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a node's or pod's HAMi annotations (YAML/JSON object file, or `-` for stdin).
    Inspect(commands::inspect::Args),
    /// The scheduler extender (filter/bind), webhook, metrics and leader election.
    Scheduler(commands::scheduler::Args),
    /// The mutating admission webhook alone.
    Webhook(commands::webhook::Args),
    /// The FGD paper's experiment: replay a GPU trace under each policy, report and check.
    Fgd(commands::fgd::Args),
    /// The discrete-event simulator: compare policies on a scenario, check it in CI, explain a pod.
    Sim(commands::sim::Args),
    /// kubelet device plugin for `nvidia.com/gpu`: HAMi-compatible Allocate that never guesses.
    DevicePlugin(commands::device_plugin::Args),
    /// Publish HAMi's node registration annotation (NVML or a fake inventory of many nodes).
    NodeAgent(commands::node_agent::Args),
    /// Record a live cluster's GPU nodes, cards and pod history as a scenario for `hami sim`.
    Record(commands::record::Args),
    /// Sim-to-real parity: replay a scenario's steps on a real control plane and compare placements.
    Replay(commands::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Scheduler(a) => commands::scheduler::run(a),
        Command::Webhook(a) => commands::webhook::run(a),
        Command::Fgd(a) => commands::fgd::run(a),
        Command::Sim(a) => commands::sim::run(a),
        Command::DevicePlugin(a) => commands::device_plugin::run(a),
        Command::NodeAgent(a) => commands::node_agent::run(a),
        Command::Record(a) => commands::record::run(a),
        Command::Replay(a) => commands::replay::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
