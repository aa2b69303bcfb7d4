//! HAMi's device configuration (`device-config.yaml` of the `hami-scheduler-device` ConfigMap).
//!
//! Parsed from the text of the file (the caller reads it); every key HAMi's chart writes is
//! accepted, unknown keys are errors that name the key and its line, and missing keys take
//! HAMi's defaults.

use serde::Deserialize;

/// The whole device configuration. `Default` is HAMi's built-in configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The NVIDIA section.
    #[serde(default)]
    pub nvidia: NvidiaConfig,
    /// Cambricon MLU resource names.
    #[serde(default)]
    pub cambricon: Option<VendorConfig>,
    /// Hygon DCU resource names.
    #[serde(default)]
    pub hygon: Option<VendorConfig>,
    /// MetaX resource names.
    #[serde(default)]
    pub metax: Option<VendorConfig>,
    /// Enflame resource names.
    #[serde(default)]
    pub enflame: Option<VendorConfig>,
    /// Moore Threads resource names.
    #[serde(default)]
    pub mthreads: Option<VendorConfig>,
    /// Iluvatar chips, one entry per chip.
    #[serde(default)]
    pub iluvatars: Option<Vec<VendorConfig>>,
    /// Kunlunxin resource names.
    #[serde(default)]
    pub kunlun: Option<VendorConfig>,
    /// AWS Neuron resource names.
    #[serde(default)]
    pub awsneuron: Option<VendorConfig>,
    /// AMD resource names.
    #[serde(default)]
    pub amd: Option<VendorConfig>,
    /// Vastai resource names.
    #[serde(default)]
    pub vastai: Option<VendorConfig>,
    /// Biren resource names.
    #[serde(default)]
    pub biren: Option<VendorConfig>,
    /// Ascend vNPU chips and templates.
    #[serde(default)]
    pub vnpus: Option<VnpuConfig>,
}

/// The `nvidia:` section with HAMi's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NvidiaConfig {
    /// Resource for the number of cards (`nvidia.com/gpu`).
    pub resource_count_name: String,
    /// Resource for memory per card, MiB (`nvidia.com/gpumem`).
    pub resource_memory_name: String,
    /// Resource for memory per card, percent (`nvidia.com/gpumem-percentage`).
    pub resource_memory_percentage_name: String,
    /// Resource for the compute share, percent (`nvidia.com/gpucores`).
    pub resource_core_name: String,
    /// Resource for the task priority (`nvidia.com/priority`).
    pub resource_priority_name: String,
    /// Whether the webhook sets `NVIDIA_VISIBLE_DEVICES=none` for containers without GPUs.
    pub overwrite_env: bool,
    /// Memory per card when a container asks none, MiB (0 = the whole card).
    pub default_memory: u64,
    /// Cores per card when a container asks none, percent.
    pub default_cores: u32,
    /// Cards per container when a container asks only memory or cores.
    #[serde(rename = "defaultGPUNum")]
    pub default_gpu_num: u32,
    /// Factor applied to memory requests (HAMi's `memoryFactor`).
    pub memory_factor: u32,
    /// Containers that may share one card.
    pub device_split_count: u32,
    /// Memory oversubscription factor applied at registration.
    pub device_memory_scaling: f64,
    /// Core oversubscription factor applied at registration.
    pub device_core_scaling: f64,
    /// Memory to register for cards whose memory NVML cannot report, MiB (0 = ask NVML).
    pub pre_configured_device_memory: u64,
    /// Pass NUMA topology to kubelet.
    pub enable_numa_topology: bool,
    /// `default`, `force` or `disable` (the interposer's core policy).
    pub gpu_core_policy: String,
    /// Log level injected into containers for the interposer.
    pub lib_cuda_log_level: u32,
    /// RuntimeClass set on GPU pods, when not empty.
    pub runtime_class_name: String,
    /// Disable compute limiting on every node.
    pub disable_core_limit: bool,
    /// MIG profiles allowed per model.
    pub mig_profile_allowlist: Vec<MigAllowlistEntry>,
    /// Extra MIG geometries (accepted for compatibility, unused by the scheduler).
    pub known_mig_geometries: Option<serde_saphyr_value::Any>,
}

impl Default for NvidiaConfig {
    fn default() -> Self {
        NvidiaConfig {
            resource_count_name: "nvidia.com/gpu".into(),
            resource_memory_name: "nvidia.com/gpumem".into(),
            resource_memory_percentage_name: "nvidia.com/gpumem-percentage".into(),
            resource_core_name: "nvidia.com/gpucores".into(),
            resource_priority_name: "nvidia.com/priority".into(),
            overwrite_env: false,
            default_memory: 0,
            default_cores: 0,
            default_gpu_num: 1,
            memory_factor: 1,
            device_split_count: 10,
            device_memory_scaling: 1.0,
            device_core_scaling: 1.0,
            pre_configured_device_memory: 0,
            enable_numa_topology: false,
            gpu_core_policy: "default".into(),
            lib_cuda_log_level: 1,
            runtime_class_name: String::new(),
            disable_core_limit: false,
            mig_profile_allowlist: Vec::new(),
            known_mig_geometries: None,
        }
    }
}

/// Holder for a value we accept and ignore.
pub mod serde_saphyr_value {
    use serde::{Deserialize, Deserializer};

    /// Any YAML value; its content is ignored.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct Any;

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d).map(|_| Any)
        }
    }
}

/// One `migProfileAllowlist` entry: the models it applies to and the profiles they may use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigAllowlistEntry {
    /// Model names (substring of the registered type).
    pub models: Vec<String>,
    /// Allowed profile names.
    pub profiles: Vec<String>,
}

/// Resource-name overrides of a non-NVIDIA vendor. Vendor sections carry vendor-specific keys
/// that the scheduler does not interpret; they are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VendorConfig {
    /// Resource for the number of devices.
    pub resource_count_name: Option<String>,
    /// Resource for memory.
    pub resource_memory_name: Option<String>,
    /// Resource for cores.
    pub resource_core_name: Option<String>,
    /// Chip name (Iluvatar).
    pub chip_name: Option<String>,
    /// Common word (Iluvatar).
    pub common_word: Option<String>,
}

/// The `vnpus:` section: Ascend chips and their memory templates.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VnpuConfig {
    /// Soft slicing through hami-vnpu-core.
    #[serde(default)]
    pub hami_vnpu_core: bool,
    /// One entry per chip.
    #[serde(default)]
    pub configs: Vec<VnpuChip>,
}

/// One Ascend chip of the `vnpus:` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VnpuChip {
    /// Chip name (`910B3`).
    pub chip_name: String,
    /// Common word (`Ascend910B3`): names annotations and the family.
    pub common_word: String,
    /// Resource for the number of NPUs.
    pub resource_name: String,
    /// Resource for memory.
    pub resource_memory_name: String,
    /// Resource for cores.
    #[serde(default)]
    pub resource_core_name: Option<String>,
    /// Memory that may be allocated, MiB.
    #[serde(default)]
    pub memory_allocatable: u64,
    /// Physical memory, MiB.
    #[serde(default)]
    pub memory_capacity: u64,
    /// AI cores of the chip.
    #[serde(default)]
    pub ai_core: u32,
    /// Templates a memory request is rounded up to, smallest first.
    #[serde(default)]
    pub templates: Vec<VnpuTemplate>,
}

/// One vNPU template.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VnpuTemplate {
    /// Template name (`vir05_1c_16g`).
    pub name: String,
    /// Memory of the template, MiB.
    pub memory: u64,
    /// AI cores of the template.
    #[serde(default)]
    pub ai_core: u32,
}

/// A configuration file that could not be used: the message names the key and the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// What was being parsed (a file name, `device-config.yaml` of a ConfigMap, …).
    pub source_name: String,
    /// What is wrong, with the line and column where the parser knows them.
    pub message: String,
}

impl DeviceConfig {
    /// Parse the text of a `device-config.yaml`; `source_name` is used in errors.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<DeviceConfig, ConfigError> {
        let cfg: DeviceConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError {
            source_name: source_name.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let n = &self.nvidia;
        if n.device_split_count == 0 {
            return Err("nvidia.deviceSplitCount must be at least 1".into());
        }
        if !(n.device_memory_scaling > 0.0 && n.device_memory_scaling.is_finite()) {
            return Err(format!(
                "nvidia.deviceMemoryScaling must be a positive number, got {}",
                n.device_memory_scaling
            ));
        }
        if !(n.device_core_scaling > 0.0 && n.device_core_scaling.is_finite()) {
            return Err(format!(
                "nvidia.deviceCoreScaling must be a positive number, got {}",
                n.device_core_scaling
            ));
        }
        if n.default_cores > 100 {
            return Err(format!(
                "nvidia.defaultCores must be 0..=100, got {}",
                n.default_cores
            ));
        }
        if n.memory_factor == 0 {
            return Err("nvidia.memoryFactor must be at least 1".into());
        }
        if !matches!(
            n.gpu_core_policy.as_str(),
            "default" | "force" | "disable" | ""
        ) {
            return Err(format!(
                "nvidia.gpuCorePolicy must be default, force or disable, got {:?}",
                n.gpu_core_policy
            ));
        }
        Ok(())
    }

    /// The Ascend templates configured for a chip `common_word`, if any.
    pub fn vnpu_templates(&self, common_word: &str) -> Option<&[VnpuTemplate]> {
        self.vnpus
            .as_ref()?
            .configs
            .iter()
            .find(|c| c.common_word == common_word)
            .map(|c| c.templates.as_slice())
    }
}
