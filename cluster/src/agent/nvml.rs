//! Card discovery through NVML (nvml-wrapper): names, UUIDs, memory, NUMA and the NVLink/PCIe
//! topology turned into HAMi's pair scores.

use super::{DiscoveredCard, NodeInventory};
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TopologyLevel;
use std::path::Path;

/// NVLink links a card can have (NVML's `NVML_NVLINK_MAX_LINKS`).
const MAX_NVLINKS: u32 = 18;

/// HAMi's score of one PCIe relation: cross-CPU 10, same CPU 20, host bridge 30, multi-switch 40,
/// single switch 50, same board 60.
pub fn pcie_score(level: TopologyLevel) -> u32 {
    match level {
        TopologyLevel::System => 10,
        TopologyLevel::Node => 20,
        TopologyLevel::HostBridge => 30,
        TopologyLevel::Multiple => 40,
        TopologyLevel::Single => 50,
        TopologyLevel::Internal => 60,
    }
}

/// NVML's GPU instance profile ids (`NVML_GPU_INSTANCE_PROFILE_<g>_SLICE`) by compute slices `g`
/// (HAMi's `profileNameToGIProfileID`).
const GI_PROFILES: [(u32, u32); 7] = [(1, 0), (2, 1), (3, 2), (4, 3), (6, 6), (7, 4), (8, 5)];

/// The MIG profiles NVML reports for a card, as HAMi's `discoverMigProfiles` reads them: per GPU
/// instance profile the card supports, its memory, slices and possible placements, and its compute
/// share = multiprocessors × 100 / the largest profile's, rounded up. Named `<g>g.<GB>gb`; the
/// allowlist gives the registered names ([`super::allowed_mig_profiles`]). A card without MIG
/// answers `NOT_SUPPORTED` for every profile: no profiles. Tested against the fake
/// `libnvidia-ml.so.1` only; unverified on a MIG-capable card.
fn mig_profiles(nvml: &Nvml, d: &nvml_wrapper::Device<'_>) -> Vec<hami_core::model::MigProfile> {
    let infos: Vec<(u32, u32, nvml_wrapper::struct_wrappers::device::ProfileInfo)> = GI_PROFILES
        .iter()
        .filter_map(|&(g, id)| d.profile_info(id).ok().map(|i| (g, id, i)))
        .collect();
    let full = infos
        .iter()
        .map(|(_, _, i)| i.multiprocessor_count)
        .max()
        .unwrap_or(0);
    infos
        .into_iter()
        .filter_map(|(g, id, info)| {
            let placements = possible_placements(nvml, d, id)?;
            Some(hami_core::model::MigProfile {
                name: format!("{g}g.{}gb", info.memory_size_mb / 1024),
                memory_mib: info.memory_size_mb,
                cores: if full > 0 {
                    (info.multiprocessor_count * 100).div_ceil(full)
                } else {
                    0
                },
                slice_count: info.slice_count,
                placements,
            })
        })
        .collect()
}

/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2` through the raw binding: nvml-wrapper 0.13's
/// `Device::possible_placements` never sets the length of the buffer NVML fills, so it always
/// returns an empty list. `None` when the call fails.
fn possible_placements(
    nvml: &Nvml,
    d: &nvml_wrapper::Device<'_>,
    profile: u32,
) -> Option<Vec<(u32, u32)>> {
    /// `nvmlGpuInstancePlacement_t`: first slice, slices.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Placement {
        start: std::os::raw::c_uint,
        size: std::os::raw::c_uint,
    }
    let sym = nvml
        .lib()
        .nvmlDeviceGetGpuInstancePossiblePlacements_v2
        .as_ref()
        .ok()?;
    let mut count: std::os::raw::c_uint = 0;
    // SAFETY: the handle belongs to this live `Nvml`; NVML's two-call protocol: a null buffer
    // asks for the count, then a buffer of `count` placements is filled and `count` updated.
    unsafe {
        let h = d.handle();
        if sym(h, profile, std::ptr::null_mut(), &mut count) != 0 {
            return None;
        }
        let mut buf = vec![Placement { start: 0, size: 0 }; count as usize];
        if sym(h, profile, buf.as_mut_ptr().cast(), &mut count) != 0 {
            return None;
        }
        buf.truncate(count as usize);
        Some(buf.iter().map(|p| (p.start, p.size)).collect())
    }
}

/// Discover the cards of this machine. `lib_path` loads another `libnvidia-ml.so.1` (the fake one
/// in tests). Errors say which NVML call failed; no GPU means an error, never a panic.
pub fn discover(node: &str, lib_path: Option<&Path>) -> Result<NodeInventory, String> {
    let nvml = match lib_path {
        Some(p) => Nvml::builder().lib_path(p.as_os_str()).init(),
        None => Nvml::init(),
    }
    .map_err(|e| format!("NVML init: {e}"))?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML device count: {e}"))?;
    let mut cards = Vec::new();
    let mut buses = Vec::new();
    for i in 0..count {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| format!("NVML device {i}: {e}"))?;
        let uuid = d.uuid().map_err(|e| format!("NVML device {i} uuid: {e}"))?;
        let model = d.name().map_err(|e| format!("NVML device {i} name: {e}"))?;
        let memory_mib = d
            .memory_info()
            .map(|m| m.total / (1024 * 1024))
            .unwrap_or(0);
        let numa = d
            .numa_node_id()
            .ok()
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(0);
        buses.push(d.pci_info().map(|p| p.bus_id.to_lowercase()).ok());
        cards.push(DiscoveredCard {
            uuid,
            index: d.index().unwrap_or(i),
            model,
            memory_mib,
            numa,
            healthy: true,
            mig_profiles: mig_profiles(&nvml, &d),
        });
    }
    let mut links = Vec::new();
    for a in 0..cards.len() {
        for b in (a + 1)..cards.len() {
            let (Ok(da), Ok(db)) = (
                nvml.device_by_index(a as u32),
                nvml.device_by_index(b as u32),
            ) else {
                continue;
            };
            let mut score = 0u32;
            if let Some(Some(bus_b)) = buses.get(b) {
                for l in 0..MAX_NVLINKS {
                    let link = da.link_wrapper_for(l);
                    if link.is_active().unwrap_or(false)
                        && link
                            .remote_pci_info()
                            .is_ok_and(|p| p.bus_id.to_lowercase() == *bus_b)
                    {
                        score += 100;
                    }
                }
            }
            // NVLink-connected pairs score by their links (the fixture's 2 links give 200);
            // others by their PCIe relation.
            if score == 0
                && let Ok(level) = da.topology_common_ancestor(db)
            {
                score = pcie_score(level);
            }
            if score > 0 {
                links.push((a, b, score));
            }
        }
    }
    Ok(NodeInventory {
        name: node.to_string(),
        cards,
        links,
    })
}
