//! `hami node-agent`: discover cards (NVML, or a fake inventory) and publish HAMi's node
//! registration annotation `hami.io/node-nvidia-register` (and `hami.io/node-nvidia-score` when
//! the topology is known), patching only when the encoded value changed.
//!
//! One process can act for many fake nodes: a YAML inventory lists nodes and their cards.
//!
//! # Inventory YAML
//!
//! ```yaml
//! nodes:
//!   - name: gpu-node-1
//!     cards:
//!       - uuid: GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448
//!         model: Tesla V100-PCIE-32GB     # NVML name; "NVIDIA-" is prefixed as HAMi does
//!         memoryMiB: 32768
//!         numa: 0                          # optional, default 0
//!         index: 0                         # optional, default position in the list
//!         healthy: true                    # optional, default true
//!     links:                               # optional pair scores (HAMi's units)
//!       - { a: 0, b: 1, score: 200 }
//!   - name: gpu-node-2
//!     fake: "count=2;name=NVIDIA A100-SXM4-80GB;memory=80g"   # fake-devices key=value text
//! ```
//!
//! A file that is not YAML with `nodes:` is read as one node in the fake-devices `key=value`
//! format (the same file the fake `libnvidia-ml.so.1` reads).

pub mod config;
pub mod nvml;

use crate::allocate::source::{AnnotationPatch, PodSource};
use config::NodeSettings;
use hami_core::annotations::node_register_annotations;
use hami_core::codec::keys;
use hami_core::codec::score::{DevicePairScore, encode_pair_scores};
use hami_core::family::FamilyId;
use hami_core::model::{Device, DeviceMode, MigProfile, Node};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One discovered card, before HAMi's scaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredCard {
    /// Card UUID.
    pub uuid: String,
    /// NVML index.
    pub index: u32,
    /// NVML name (`Tesla V100-PCIE-32GB`).
    pub model: String,
    /// Physical memory, MiB (0 when the card cannot report it).
    pub memory_mib: u64,
    /// NUMA node.
    pub numa: i32,
    /// Whether the card is healthy.
    pub healthy: bool,
    /// MIG profiles the card offers (published in MIG mode only, filtered by the allowlist).
    /// Fake cards get the geometry of their model from
    /// [`hami_fake_devices::mig::profiles_for`]; NVML discovery reads NVML's GPU instance
    /// profiles and placements ([`nvml::discover`]).
    pub mig_profiles: Vec<MigProfile>,
}

/// The fake MIG geometry of a card (none for models without MIG).
pub fn fake_mig_profiles(model: &str, memory_mib: u64) -> Vec<MigProfile> {
    hami_fake_devices::mig::profiles_for(model, memory_mib)
        .into_iter()
        .map(|p| MigProfile {
            name: p.name,
            memory_mib: p.memory_mib,
            cores: p.cores,
            slice_count: p.slice_count,
            placements: p.placements,
        })
        .collect()
}

/// One node's cards and the pair scores between them (indexes into `cards`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInventory {
    /// Node name.
    pub name: String,
    /// Cards in NVML order.
    pub cards: Vec<DiscoveredCard>,
    /// Pair scores `(a, b, score)`, HAMi's units (NVLink k → 100·k, single switch 50, ...).
    pub links: Vec<(usize, usize, u32)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlFile {
    nodes: Vec<YamlNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlNode {
    name: String,
    #[serde(default)]
    cards: Vec<YamlCard>,
    #[serde(default)]
    fake: Option<String>,
    #[serde(default)]
    links: Vec<YamlLink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct YamlCard {
    uuid: String,
    model: String,
    #[serde(rename = "memoryMiB")]
    memory_mib: u64,
    #[serde(default)]
    numa: i32,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    healthy: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlLink {
    a: usize,
    b: usize,
    score: u32,
}

/// Cards from fake-devices `key=value` inventory text.
pub fn cards_from_fake(text: &str, source: &str) -> Result<Vec<DiscoveredCard>, String> {
    let inv =
        hami_fake_devices::inventory::Inventory::parse(text, source).map_err(|e| e.to_string())?;
    Ok(inv
        .devices
        .iter()
        .map(|d| DiscoveredCard {
            uuid: d.uuid.clone(),
            index: d.index,
            model: d.name.clone(),
            memory_mib: d.memory_bytes / (1024 * 1024),
            numa: d.numa,
            healthy: true,
            mig_profiles: fake_mig_profiles(&d.name, d.memory_bytes / (1024 * 1024)),
        })
        .collect())
}

/// Read an inventory: YAML with `nodes:` (many nodes), else fake-devices text for `default_node`.
/// Errors name `source`.
pub fn parse_inventory(
    text: &str,
    source: &str,
    default_node: &str,
) -> Result<Vec<NodeInventory>, String> {
    let looks_yaml = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("nodes:"));
    if !looks_yaml {
        return Ok(vec![NodeInventory {
            name: default_node.to_string(),
            cards: cards_from_fake(text, source)?,
            links: Vec::new(),
        }]);
    }
    let file: YamlFile = serde_saphyr::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    let mut out = Vec::new();
    for n in file.nodes {
        let mut cards: Vec<DiscoveredCard> = n
            .cards
            .into_iter()
            .enumerate()
            .map(|(i, c)| DiscoveredCard {
                mig_profiles: fake_mig_profiles(&c.model, c.memory_mib),
                uuid: c.uuid,
                index: c.index.unwrap_or(u32::try_from(i).unwrap_or(u32::MAX)),
                model: c.model,
                memory_mib: c.memory_mib,
                numa: c.numa,
                healthy: c.healthy.unwrap_or(true),
            })
            .collect();
        if let Some(f) = &n.fake {
            cards.extend(cards_from_fake(f, &format!("{source}: node {}", n.name))?);
        }
        let links = n.links.iter().map(|l| (l.a, l.b, l.score)).collect();
        for &(a, b, _) in &links {
            if a >= cards.len() || b >= cards.len() {
                return Err(format!(
                    "{source}: node {}: link ({a}, {b}) names a card that does not exist ({} cards)",
                    n.name,
                    cards.len()
                ));
            }
        }
        out.push(NodeInventory {
            name: n.name,
            cards,
            links,
        });
    }
    Ok(out)
}

/// HAMi's registered model name: `NVIDIA-` prefixed unless the NVML name starts with `NVIDIA`.
pub fn registered_model(nvml_name: &str) -> String {
    if nvml_name.starts_with("NVIDIA") {
        nvml_name.to_string()
    } else {
        format!("NVIDIA-{nvml_name}")
    }
}

/// The node model the agent registers: filtered cards, HAMi's scaling and split count. In MIG
/// mode a card registers the MIG profiles the device config's `migProfileAllowlist` grants its
/// model ([`allowed_mig_profiles`]) and `count` = the most instances one profile allows; a card
/// without any is left out, as HAMi's plugin skips it.
pub fn build_node(inv: &NodeInventory, s: &NodeSettings) -> Node {
    let mig = s.mode == "mig";
    let mut node = Node::new(&inv.name);
    for c in &inv.cards {
        if s.filter.uuid.contains(&c.uuid) || s.filter.index.contains(&c.index) {
            continue;
        }
        let mut mem = c.memory_mib;
        if mem == 0 {
            mem = s.preconfigured_memory_mib;
        }
        // HAMi truncates to int32 after scaling.
        if !mig && s.memory_scaling != 1.0 {
            mem = (mem as f64 * s.memory_scaling) as u64;
        }
        let cores = if mig {
            100
        } else {
            (s.core_scaling * 100.0) as u32
        };
        let mut d = Device::new(
            &c.uuid,
            c.index,
            FamilyId::NVIDIA,
            registered_model(&c.model),
            mem,
        );
        d.cores = cores;
        d.split_count = s.split_count;
        d.numa = c.numa;
        d.healthy = c.healthy;
        d.mode = DeviceMode::parse(&s.mode).unwrap_or_default();
        if mig {
            // HAMi registers a MIG-mode card only with the profiles the allowlist grants its
            // model, and as many replicas as the profile with the most instances has placements.
            let profiles = allowed_mig_profiles(&d.model, &c.mig_profiles, &s.mig_allowlist);
            if profiles.is_empty() {
                continue;
            }
            d.split_count = profiles
                .iter()
                .map(|p| u32::try_from(p.placements.len()).unwrap_or(u32::MAX))
                .max()
                .unwrap_or(0);
            d.mig_profiles = profiles;
        }
        node.devices.push(d);
    }
    node
}

/// The MIG profiles a card of registered model `model` publishes, HAMi's way
/// (`discoverMigProfiles`): the first allowlist entry one of whose models is a substring of
/// `model` names the profiles; each is matched by its slice group (`3g` of `3g.40gb`) to what the
/// card offers and registered under the allowlist's name with the card's memory, compute share
/// and placements. No matching entry, no profiles.
pub fn allowed_mig_profiles(
    model: &str,
    offered: &[MigProfile],
    allowlist: &[hami_core::config::MigAllowlistEntry],
) -> Vec<MigProfile> {
    let group = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let Some(entry) = allowlist
        .iter()
        .find(|e| e.models.iter().any(|m| model.contains(m.as_str())))
    else {
        return Vec::new();
    };
    entry
        .profiles
        .iter()
        .filter_map(|name| {
            offered
                .iter()
                .find(|p| group(&p.name) == group(name))
                .map(|p| MigProfile {
                    name: name.clone(),
                    ..p.clone()
                })
        })
        .collect()
}

/// HAMi's pair-score annotation value for the node's links (only cards still registered).
pub fn pair_scores(inv: &NodeInventory, node: &Node) -> Option<String> {
    if inv.links.is_empty() {
        return None;
    }
    let kept: Vec<&str> = node.devices.iter().map(|d| d.uuid.as_str()).collect();
    let mut per: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for &(a, b, score) in &inv.links {
        let (Some(ca), Some(cb)) = (inv.cards.get(a), inv.cards.get(b)) else {
            continue;
        };
        if a == b || !kept.contains(&ca.uuid.as_str()) || !kept.contains(&cb.uuid.as_str()) {
            continue;
        }
        per.entry(ca.uuid.clone())
            .or_default()
            .insert(cb.uuid.clone(), i64::from(score));
        per.entry(cb.uuid.clone())
            .or_default()
            .insert(ca.uuid.clone(), i64::from(score));
    }
    let list: Vec<DevicePairScore> = per
        .into_iter()
        .map(|(uuid, scores)| DevicePairScore { uuid, scores })
        .collect();
    Some(encode_pair_scores(&list))
}

/// The annotations the agent publishes for one node, in HAMi's exact encoding.
pub fn node_annotations(inv: &NodeInventory, s: &NodeSettings) -> BTreeMap<String, String> {
    let node = build_node(inv, s);
    let mut out = node_register_annotations(&node);
    if let Some(v) = pair_scores(inv, &node) {
        out.insert(keys::NODE_NVIDIA_SCORE.to_string(), v);
    }
    out
}

/// The patch that brings `current` to `wanted`; empty when nothing changed (no write then).
pub fn diff(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> AnnotationPatch {
    wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

/// Publish one node's annotations if they changed; `Ok(true)` when a patch was written.
pub async fn publish<P: PodSource>(
    source: &P,
    node: &str,
    wanted: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let current = source
        .node_annotations(node)
        .await
        .map_err(|e| e.to_string())?;
    let patch = diff(&current, wanted);
    if patch.is_empty() {
        return Ok(false);
    }
    source
        .patch_node_annotations(node, patch)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Settings of the `hami node-agent` process.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// This node's name; with a multi-node YAML inventory, `None` acts for every node in it.
    pub node_name: Option<String>,
    /// Fake inventory file (YAML or fake-devices `key=value`); `None` discovers through NVML.
    pub inventory: Option<std::path::PathBuf>,
    /// Another `libnvidia-ml.so.1` to load.
    pub nvml_lib: Option<std::path::PathBuf>,
    /// HAMi's `device-config.yaml` (global NVIDIA settings).
    pub device_config: Option<std::path::PathBuf>,
    /// HAMi's per-node `config.json`.
    pub node_config: Option<std::path::PathBuf>,
    /// Seconds between registrations (HAMi: 30).
    pub interval_secs: u64,
    /// Publish once and exit.
    pub once: bool,
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Load the inventories this process acts for (every call, so file edits are picked up).
pub fn load_nodes(o: &AgentOptions) -> Result<Vec<NodeInventory>, String> {
    match &o.inventory {
        Some(p) => {
            let default = o.node_name.clone().unwrap_or_else(|| "localhost".into());
            let all = parse_inventory(&read(p)?, &p.display().to_string(), &default)?;
            Ok(match &o.node_name {
                Some(n) => all.into_iter().filter(|i| &i.name == n).collect(),
                None => all,
            })
        }
        None => {
            let node = o
                .node_name
                .clone()
                .ok_or("--node-name (or NODE_NAME) is required without an inventory")?;
            Ok(vec![nvml::discover(&node, o.nvml_lib.as_deref())?])
        }
    }
}

/// The global NVIDIA settings and the per-node file named in the options (defaults if absent).
pub fn load_settings(
    o: &AgentOptions,
) -> Result<(hami_core::config::NvidiaConfig, config::NodeConfigFile), String> {
    let global = match &o.device_config {
        Some(p) => {
            hami_core::config::DeviceConfig::from_yaml(&p.display().to_string(), &read(p)?)
                .map_err(|e| e.to_string())?
                .nvidia
        }
        None => hami_core::config::NvidiaConfig::default(),
    };
    let file = match &o.node_config {
        Some(p) => config::parse_node_config(&p.display().to_string(), &read(p)?)?,
        None => config::NodeConfigFile::default(),
    };
    Ok((global, file))
}

/// Run the agent against the API server until SIGTERM/Ctrl-C (or once). Errors of one cycle are
/// logged and retried after 5 s, as HAMi does.
pub fn main_blocking(o: AgentOptions) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let source = crate::allocate::source::KubeSource::from_env()
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let cycle = async {
                let (global, file) = load_settings(&o)?;
                for inv in load_nodes(&o)? {
                    let s = config::settings_for(&inv.name, &global, &file);
                    let wanted = node_annotations(&inv, &s);
                    if publish(&source, &inv.name, &wanted).await? {
                        tracing::info!("node {}: registration updated", inv.name);
                    }
                }
                Ok::<(), String>(())
            };
            let wait = match cycle.await {
                Ok(()) if o.once => return Ok(()),
                Ok(()) => o.interval_secs.max(1),
                Err(e) if o.once => return Err(e),
                Err(e) => {
                    tracing::warn!("registration: {e}; retrying in 5 s");
                    5
                }
            };
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}
