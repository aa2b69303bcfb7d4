//! `hami node-agent`: publish HAMi's node registration annotation for this node (NVML) or for
//! every node of a fake inventory.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `hami node-agent`.
// `group(skip)`: `hami device-plugin` flattens these arguments into its own `Args`, and two
// automatic argument groups both named "Args" trip clap's debug assertion.
#[derive(Debug, Parser)]
#[group(skip)]
pub struct Args {
    /// Node to act for (default: $NODE_NAME); omit with a multi-node inventory to act for all.
    // Read from the environment by hand: the workspace's clap has no `env` feature.
    #[arg(long)]
    pub node_name: Option<String>,
    /// Fake inventory (YAML `nodes:` list or fake-devices key=value file) instead of NVML.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Load this libnvidia-ml.so.1 instead of the system one.
    #[arg(long)]
    pub nvml_lib: Option<PathBuf>,
    /// HAMi's device-config.yaml (global NVIDIA settings).
    #[arg(long)]
    pub device_config: Option<PathBuf>,
    /// HAMi's per-node config.json (`nodeconfig[]`).
    #[arg(long)]
    pub node_config: Option<PathBuf>,
    /// Seconds between registrations.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Publish once and exit.
    #[arg(long)]
    pub once: bool,
}

impl Args {
    /// `--node-name`, else a non-empty `$NODE_NAME`.
    pub fn resolved_node_name(&self) -> Option<String> {
        self.node_name.clone().or_else(|| {
            std::env::var("NODE_NAME")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
    }

    /// The cluster crate's options.
    pub fn options(&self) -> hami_cluster::agent::AgentOptions {
        hami_cluster::agent::AgentOptions {
            node_name: self.resolved_node_name(),
            inventory: self.inventory.clone(),
            nvml_lib: self.nvml_lib.clone(),
            device_config: self.device_config.clone(),
            node_config: self.node_config.clone(),
            interval_secs: self.interval,
            once: self.once,
        }
    }
}

/// Run until SIGTERM/Ctrl-C (or once).
pub fn run(args: Args) -> Result<ExitCode, String> {
    hami_cluster::agent::main_blocking(args.options())?;
    Ok(ExitCode::SUCCESS)
}
