//! What one container receives from `Allocate`: HAMi's environment and mounts, as a pure
//! function of the grant and the plugin settings.

use super::api::{ContainerAllocateResponse, Mount};
use crate::allocate::ContainerInfo;
use hami_core::codec::devices::ContainerDevices;
use std::collections::HashMap;

/// Where the container-facing files live inside every container (HAMi's fixed path).
pub const CONTAINER_VGPU_DIR: &str = "/usr/local/vgpu";

/// Settings that shape every container response.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseConfig {
    /// Host directory holding `libvgpu.so`, `ld.so.preload` and `containers/` (HAMi's
    /// `/usr/local/vgpu`).
    pub host_vgpu_dir: String,
    /// `LIBCUDA_LOG_LEVEL` injected into containers.
    pub lib_cuda_log_level: u32,
    /// Memory scaling of the node; above 1 sets `CUDA_OVERSUBSCRIBE=true`.
    pub memory_scaling: f64,
    /// Sets `GPU_CORE_UTILIZATION_POLICY=disable`.
    pub disable_core_limit: bool,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            host_vgpu_dir: CONTAINER_VGPU_DIR.into(),
            lib_cuda_log_level: 1,
            memory_scaling: 1.0,
            disable_core_limit: false,
        }
    }
}

/// Host directory of one container's shared accounting files: `<host>/containers/<uid>_<name>`.
pub fn container_dir(cfg: &ResponseConfig, pod_uid: &str, container: &str) -> String {
    format!("{}/containers/{pod_uid}_{container}", cfg.host_vgpu_dir)
}

/// A UUID-shaped name for the shared cache file, stable for one (pod, container) so a retried
/// Allocate gives the same file, and distinct between containers.
pub fn cache_file_name(pod_uid: &str, container_index: usize) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in pod_uid
        .bytes()
        .chain(container_index.to_le_bytes())
        .chain(*b"hami-rs")
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let x = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// The response for one container: HAMi's env (`NVIDIA_VISIBLE_DEVICES`,
/// `CUDA_DEVICE_MEMORY_LIMIT_<i>`, `CUDA_DEVICE_SM_LIMIT`, `CUDA_DEVICE_MEMORY_SHARED_CACHE`,
/// `LIBCUDA_LOG_LEVEL`, optional `CUDA_OVERSUBSCRIBE` and `GPU_CORE_UTILIZATION_POLICY`) and
/// mounts (interposer, per-container directory, lock directory, and `/etc/ld.so.preload` unless
/// the container set `CUDA_DISABLE_CONTROL=true`).
pub fn container_response(
    cfg: &ResponseConfig,
    pod_uid: &str,
    container_index: usize,
    container: &ContainerInfo,
    devices: &ContainerDevices,
) -> ContainerAllocateResponse {
    let mut envs = HashMap::new();
    envs.insert(
        "NVIDIA_VISIBLE_DEVICES".to_string(),
        devices
            .iter()
            .map(|d| d.uuid.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    for (i, d) in devices.iter().enumerate() {
        envs.insert(
            format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"),
            format!("{}m", d.usedmem),
        );
    }
    if let Some(first) = devices.first() {
        envs.insert(
            "CUDA_DEVICE_SM_LIMIT".to_string(),
            first.usedcores.to_string(),
        );
    }
    envs.insert(
        "CUDA_DEVICE_MEMORY_SHARED_CACHE".to_string(),
        format!(
            "{CONTAINER_VGPU_DIR}/{}.cache",
            cache_file_name(pod_uid, container_index)
        ),
    );
    envs.insert(
        "LIBCUDA_LOG_LEVEL".to_string(),
        cfg.lib_cuda_log_level.to_string(),
    );
    if cfg.memory_scaling > 1.0 {
        envs.insert("CUDA_OVERSUBSCRIBE".to_string(), "true".to_string());
    }
    if cfg.disable_core_limit {
        envs.insert(
            "GPU_CORE_UTILIZATION_POLICY".to_string(),
            "disable".to_string(),
        );
    }
    let mut mounts = vec![
        Mount {
            container_path: format!("{CONTAINER_VGPU_DIR}/libvgpu.so"),
            host_path: format!("{}/libvgpu.so", cfg.host_vgpu_dir),
            read_only: true,
        },
        Mount {
            container_path: CONTAINER_VGPU_DIR.to_string(),
            host_path: container_dir(cfg, pod_uid, &container.name),
            read_only: false,
        },
        Mount {
            container_path: "/tmp/vgpulock".to_string(),
            host_path: "/tmp/vgpulock".to_string(),
            read_only: false,
        },
    ];
    if !container.disable_control {
        mounts.push(Mount {
            container_path: "/etc/ld.so.preload".to_string(),
            host_path: format!("{}/ld.so.preload", cfg.host_vgpu_dir),
            read_only: true,
        });
    }
    ContainerAllocateResponse {
        envs,
        mounts,
        devices: Vec::new(),
        annotations: HashMap::new(),
        cdi_devices: Vec::new(),
    }
}

/// The response for a container served in MIG mode: it sees its MIG devices
/// (`NVIDIA_VISIBLE_DEVICES=<MIG UUID,…>`, device order) and nothing of HAMi-core — no memory or
/// core limits, no interposer, no shared cache — as HAMi's plugin answers in MIG mode, where the
/// hardware partition is the isolation.
pub fn mig_container_response(mig_uuids: &[String]) -> ContainerAllocateResponse {
    let mut envs = HashMap::new();
    envs.insert("NVIDIA_VISIBLE_DEVICES".to_string(), mig_uuids.join(","));
    ContainerAllocateResponse {
        envs,
        mounts: Vec::new(),
        devices: Vec::new(),
        annotations: HashMap::new(),
        cdi_devices: Vec::new(),
    }
}
