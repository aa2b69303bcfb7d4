//! HAMi's per-node device-plugin configuration (`config.json` of the `hami-device-plugin`
//! ConfigMap): `nodeconfig[]` entries override the global NVIDIA settings for one node.

use hami_core::config::{MigAllowlistEntry, NvidiaConfig};
use serde::Deserialize;

/// The whole `config.json`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct NodeConfigFile {
    /// One entry per node that differs from the global settings.
    #[serde(default)]
    pub nodeconfig: Vec<NodeConfigEntry>,
}

/// Which cards a node keeps out of registration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct FilterDevices {
    /// Card UUIDs to hide.
    #[serde(default)]
    pub uuid: Vec<String>,
    /// Card indexes to hide.
    #[serde(default)]
    pub index: Vec<u32>,
}

/// One `nodeconfig[]` entry; absent fields keep the global value. Keys are HAMi's lower-case
/// names; unknown keys (HAMi adds some over time) are ignored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct NodeConfigEntry {
    /// Node name the entry applies to.
    pub name: String,
    /// `hami-core` or `mig`.
    #[serde(default)]
    pub operatingmode: Option<String>,
    /// Memory oversubscription factor.
    #[serde(default)]
    pub devicememoryscaling: Option<f64>,
    /// Core oversubscription factor.
    #[serde(default)]
    pub devicecorescaling: Option<f64>,
    /// Replicas per card.
    #[serde(default)]
    pub devicesplitcount: Option<u32>,
    /// Memory to register when NVML cannot report it, MiB.
    #[serde(default)]
    pub preconfigureddevicememory: Option<u64>,
    /// Cards to hide.
    #[serde(default)]
    pub filterdevices: Option<FilterDevices>,
}

/// The settings that shape one node's registration after overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Replicas per card (`count`).
    pub split_count: u32,
    /// Memory scaling (`devmem` = MiB × scaling, except in MIG mode).
    pub memory_scaling: f64,
    /// Core scaling (`devcore` = 100 × scaling, except in MIG mode).
    pub core_scaling: f64,
    /// `hami-core` or `mig`.
    pub mode: String,
    /// Memory to register when the card reports none, MiB (0 = none).
    pub preconfigured_memory_mib: u64,
    /// Hidden cards.
    pub filter: FilterDevices,
    /// `migProfileAllowlist` of the device config: which MIG profiles each model registers.
    pub mig_allowlist: Vec<MigAllowlistEntry>,
}

/// Parse `config.json`; the error names the source and what serde saw.
pub fn parse_node_config(source: &str, text: &str) -> Result<NodeConfigFile, String> {
    serde_json::from_str(text).map_err(|e| format!("{source}: {e}"))
}

/// The settings for `node`: the global NVIDIA section, then the node's entry on top.
pub fn settings_for(node: &str, global: &NvidiaConfig, file: &NodeConfigFile) -> NodeSettings {
    let mut s = NodeSettings {
        split_count: global.device_split_count,
        memory_scaling: global.device_memory_scaling,
        core_scaling: global.device_core_scaling,
        mode: "hami-core".into(),
        preconfigured_memory_mib: global.pre_configured_device_memory,
        filter: FilterDevices::default(),
        mig_allowlist: global.mig_profile_allowlist.clone(),
    };
    for e in file.nodeconfig.iter().filter(|e| e.name == node) {
        if let Some(m) = &e.operatingmode {
            s.mode.clone_from(m);
        }
        if let Some(v) = e.devicememoryscaling {
            s.memory_scaling = v;
        }
        if let Some(v) = e.devicecorescaling {
            s.core_scaling = v;
        }
        if let Some(v) = e.devicesplitcount {
            s.split_count = v;
        }
        if let Some(v) = e.preconfigureddevicememory {
            s.preconfigured_memory_mib = v;
        }
        if let Some(f) = &e.filterdevices {
            s.filter = f.clone();
        }
    }
    s
}
