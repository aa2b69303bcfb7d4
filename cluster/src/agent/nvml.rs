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
            // MIG profiles are not read from NVML yet (GPU instance profile info and possible
            // placements); unverified without a MIG-capable card.
            mig_profiles: Vec::new(),
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
