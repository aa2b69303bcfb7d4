//! `hami device-plugin`: kubelet's device-plugin API for `nvidia.com/gpu` on this node.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `hami device-plugin`.
#[derive(Debug, Parser)]
pub struct Args {
    /// kubelet's device-plugin directory.
    #[arg(long, default_value = hami_cluster::deviceplugin::DEFAULT_PLUGIN_DIR)]
    pub plugin_dir: PathBuf,
    /// Our socket's file name in that directory.
    #[arg(long, default_value = "hami-nvidia.sock")]
    pub socket_name: String,
    /// Resource to advertise.
    #[arg(long, default_value = "nvidia.com/gpu")]
    pub resource_name: String,
    /// Host directory with libvgpu.so, ld.so.preload and containers/.
    #[arg(long, default_value = "/usr/local/vgpu")]
    pub host_vgpu_dir: String,
    /// How long Allocate waits for identity evidence before refusing, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub allocate_wait_ms: u64,
    /// LIBCUDA_LOG_LEVEL given to containers.
    #[arg(long, default_value_t = 1)]
    pub lib_cuda_log_level: u32,
    /// Set GPU_CORE_UTILIZATION_POLICY=disable in containers.
    #[arg(long)]
    pub disable_core_limit: bool,
    /// Card source and settings, as for `hami node-agent`.
    #[command(flatten)]
    pub cards: super::node_agent::Args,
}

/// Run until SIGTERM/Ctrl-C; the socket is removed on exit.
pub fn run(args: Args) -> Result<ExitCode, String> {
    let node = args
        .cards
        .resolved_node_name()
        .ok_or("--node-name (or NODE_NAME) is required")?;
    let mut config = hami_cluster::deviceplugin::PluginConfig::new(&node);
    config.plugin_dir = args.plugin_dir;
    config.socket_name = args.socket_name;
    config.resource_name = args.resource_name;
    config.allocate_wait = Duration::from_millis(args.allocate_wait_ms);
    config.response.host_vgpu_dir = args.host_vgpu_dir;
    config.response.lib_cuda_log_level = args.lib_cuda_log_level;
    config.response.disable_core_limit = args.disable_core_limit;
    let cards = args.cards.options();
    if let Some(path) = &cards.device_config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dc = hami_core::config::DeviceConfig::from_yaml(&path.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
        config.response.memory_scaling = dc.nvidia.device_memory_scaling;
        config.response.disable_core_limit |= dc.nvidia.disable_core_limit;
        config.response.lib_cuda_log_level = dc.nvidia.lib_cuda_log_level;
    }
    hami_cluster::deviceplugin::main_blocking(hami_cluster::deviceplugin::PluginOptions {
        config,
        cards,
    })?;
    Ok(ExitCode::SUCCESS)
}
