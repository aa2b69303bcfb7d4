//! The bridge between the model and HAMi's annotations: nodes from registration annotations,
//! grants from pod annotations (how a restarted scheduler rebuilds its ledger), and the exact
//! annotations a bind writes.

use crate::codec::CodecError;
use crate::codec::devices::{DeviceRef, push_device, visit_pod_devices};
use crate::codec::keys;
use crate::codec::metax::{decode_metax_sdevices, encode_metax_allocation, encode_metax_sdevices};
use crate::codec::mig::{MigAllocation, encode_mig_allocations};
use crate::codec::register::{
    MigPlacement, RegisteredDevice, decode_legacy_register, decode_register_json,
    encode_legacy_register, encode_register_json,
};
use crate::codec::score::decode_pair_scores;
use crate::family::{CapacityMemory, FamilyId, RegisterFormat, VendorBind, ascend_templates};
use crate::ledger::{DeviceGrant, PodGrant};
use crate::model::{Device, DeviceMode, LinkScores, MigProfile, Node};
use crate::policy::devices::Templates;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// Ascend templates of every family from the family table, as the fit wants them.
pub fn default_templates() -> Templates {
    Templates(
        FamilyId::all()
            .map(|f| ascend_templates(f).iter().map(|t| t.memory_mib).collect())
            .collect(),
    )
}

/// Build a node from its annotations (every family's registration, the topology score and the
/// cordon list) plus allocatable CPU (milli) and memory (MiB). Errors name the annotation.
/// Families that register through node capacity get no cards here: see
/// [`node_from_registration`].
pub fn node_from_annotations(
    name: &str,
    annotations: &BTreeMap<String, String>,
    cpu_milli: u64,
    memory_mib: u64,
) -> Result<Node, CodecError> {
    node_from_registration(name, annotations, |_| None, cpu_milli, memory_mib)
}

/// Build a node as HAMi's scheduler sees it: the cards of every family, each from its
/// registration annotation or, for the families without one, from the Node's
/// `status.capacity` (`capacity` looks a resource up there, see [`capacity_devices`]); then
/// the topology score and the cordon list, plus allocatable CPU (milli) and memory (MiB).
/// Cards come in family table order. Errors name the annotation or the capacity resource.
pub fn node_from_registration<'a>(
    name: &str,
    annotations: &BTreeMap<String, String>,
    capacity: impl Fn(&str) -> Option<&'a str>,
    cpu_milli: u64,
    memory_mib: u64,
) -> Result<Node, CodecError> {
    let mut node = Node::new(name);
    node.cpu_milli = cpu_milli;
    node.memory_mib = memory_mib;
    for f in FamilyId::all() {
        let spec = f.spec();
        if spec.capacity_rule().is_some() {
            node.devices.extend(capacity_devices(f, name, &capacity)?);
            continue;
        }
        let Some(key) = spec.register() else { continue };
        let Some(value) = annotations.get(key) else {
            continue;
        };
        let devs = match spec.register_format {
            RegisterFormat::Json => decode_register_json(key, value)?,
            RegisterFormat::LegacyText => decode_legacy_register(key, value)?,
            RegisterFormat::MetaxJson => decode_metax_sdevices(key, value)?,
            // Enflame's DRS profiles are not decoded (node capacity was read above).
            RegisterFormat::NodeCapacity(_) | RegisterFormat::VendorJson => continue,
        };
        for d in devs {
            node.devices.push(device_from_registered(f, &d));
        }
    }
    let cordoned: Vec<&str> = annotations
        .get(keys::DEVICE_CORDON)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for d in &mut node.devices {
        d.cordoned = cordoned.contains(&d.uuid.as_str());
    }
    node.links = LinkScores::new(node.devices.len());
    if let Some(v) = annotations.get(keys::NODE_NVIDIA_SCORE) {
        let pos: BTreeMap<&str, usize> = node
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.uuid.as_str(), i))
            .collect();
        for s in decode_pair_scores(keys::NODE_NVIDIA_SCORE, v)? {
            let Some(&a) = pos.get(s.uuid.as_str()) else {
                continue;
            };
            for (other, score) in &s.scores {
                if let Some(&b) = pos.get(other.as_str()) {
                    node.links.set(a, b, u32::try_from(*score).unwrap_or(0));
                }
            }
        }
    }
    Ok(node)
}

/// The most cards one family may have on a node made from its capacity: a guard against a
/// capacity value that would make millions of cards (HAMi would loop that many times).
pub const MAX_CAPACITY_CARDS: u64 = 256;

/// Where a capacity value sits in the Node object, as errors name it.
const CAPACITY_FIELD: &str = "status.capacity";

/// The cards HAMi's scheduler makes for family `f` on node `node` from the Node's
/// `status.capacity` ([`crate::family::CapacityRule`]): `ceil(capacity of cards_resource / units_per_card)`
/// cards, named `<node><id_infix><index>`, each with the rule's cores, split count and model,
/// healthy, on NUMA node 0 (or 1 for the second half under `numa_halves`), and memory either
/// fixed or the node's memory capacity times the family's memory unit shared evenly.
///
/// `capacity` looks a resource up (its quantity text). No cards, and no error, when the family
/// has no rule or the node has no such capacity or 0 of it (HAMi's "device not found").
/// Errors, naming `status.capacity` and the resource: a value that is not a whole count, or
/// more than [`MAX_CAPACITY_CARDS`] cards.
pub fn capacity_devices<'a>(
    f: FamilyId,
    node: &str,
    capacity: impl Fn(&str) -> Option<&'a str>,
) -> Result<Vec<Device>, CodecError> {
    let Some(rule) = f.spec().capacity_rule() else {
        return Ok(Vec::new());
    };
    let count = |resource: &str| -> Result<u64, CodecError> {
        match capacity(resource) {
            None => Ok(0),
            Some(text) => crate::quantity::parse_count(text)
                .map_err(|_| CodecError::new(CAPACITY_FIELD, resource, text, "a whole number")),
        }
    };
    let units = count(rule.cards_resource)?;
    if units == 0 {
        return Ok(Vec::new());
    }
    let cards = units.div_ceil(rule.units_per_card.max(1));
    if cards > MAX_CAPACITY_CARDS {
        return Err(CodecError::new(
            CAPACITY_FIELD,
            rule.cards_resource,
            &units.to_string(),
            format!(
                "at most {MAX_CAPACITY_CARDS} cards ({} units each)",
                rule.units_per_card
            ),
        ));
    }
    let memory_mib = match rule.memory {
        CapacityMemory::FixedMib(m) => m,
        CapacityMemory::ShareOf(resource) => {
            // HAMi: memoryTotal * factor * units_per_card / capacity as int32 (which wraps
            // past 2 GiB-1 MiB; held at the largest value here).
            let total = u128::from(count(resource)?);
            let mib =
                total * u128::from(f.spec().memory_unit_mib) * u128::from(rule.units_per_card)
                    / u128::from(units);
            u64::try_from(mib.min(i32::MAX as u128)).unwrap_or(0)
        }
    };
    Ok((0..cards)
        .map(|i| {
            // `cards` is at most MAX_CAPACITY_CARDS, so the index fits.
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let mut d = Device::new(
                format!("{node}{}{i}", rule.id_infix),
                index,
                f,
                rule.model,
                memory_mib,
            );
            d.cores = rule.cores;
            d.split_count = rule.split_count;
            d.numa = i32::from(rule.numa_halves && i >= cards / 2);
            d
        })
        .collect())
}

/// The `status.capacity` entries a vendor device plugin advertises for `node`'s cards of the
/// families that register through node capacity (resource name → whole count), so that
/// [`capacity_devices`] reads the same cards back: the card-counting resource, the memory
/// resource when the rule shares it, and the family's count resource (one per sharing slot)
/// when it is another resource. Cards a rule cannot describe (memory that differs from card to
/// card, or is not a whole number of memory units) come back alike, with the average memory
/// rounded down to a unit. Empty when the node has no such cards.
pub fn node_capacity(node: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in FamilyId::all() {
        let spec = f.spec();
        let Some(rule) = spec.capacity_rule() else {
            continue;
        };
        let cards: Vec<&Device> = node.devices.iter().filter(|d| d.family == f).collect();
        if cards.is_empty() {
            continue;
        }
        let n = cards.len() as u64;
        out.insert(
            rule.cards_resource.to_string(),
            (n * rule.units_per_card).to_string(),
        );
        if let CapacityMemory::ShareOf(resource) = rule.memory {
            let total: u64 = cards.iter().map(|d| d.memory_mib).sum();
            out.insert(
                resource.to_string(),
                (total / spec.memory_unit_mib.max(1)).to_string(),
            );
        }
        if spec.count_resource != rule.cards_resource {
            let slots: u64 = cards.iter().map(|d| u64::from(d.split_count)).sum();
            out.insert(spec.count_resource.to_string(), slots.to_string());
        }
    }
    out
}

fn device_from_registered(family: FamilyId, d: &RegisteredDevice) -> Device {
    Device {
        uuid: d.id.clone(),
        index: u32::try_from(d.index).unwrap_or(u32::MAX),
        family,
        model: d.device_type.clone(),
        memory_mib: u64::try_from(d.devmem).unwrap_or(0),
        cores: u32::try_from(d.devcore).unwrap_or(0),
        split_count: u32::try_from(d.count).unwrap_or(0),
        numa: i32::try_from(d.numa).unwrap_or(0),
        healthy: d.health,
        mode: DeviceMode::parse(&d.mode).unwrap_or_default(),
        mig_profiles: d
            .mig_profiles
            .iter()
            .map(|p| MigProfile {
                name: p.name.clone(),
                memory_mib: u64::try_from(p.memory_mb).unwrap_or(0),
                cores: u32::try_from(p.core).unwrap_or(0),
                slice_count: p.slice_count,
                placements: p
                    .placements
                    .iter()
                    .flatten()
                    .map(|pl| (pl.start, pl.size))
                    .collect(),
            })
            .collect(),
        cordoned: false,
    }
}

/// The registration annotations a device plugin writes for `node` (one per family present), in
/// HAMi's exact encoding; MIG-mode cards carry their profiles (`migProfiles`).
pub fn node_register_annotations(node: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in FamilyId::all() {
        let spec = f.spec();
        let Some(key) = spec.register() else { continue };
        let devs: Vec<RegisteredDevice> = node
            .devices
            .iter()
            .filter(|d| d.family == f)
            .map(|d| RegisteredDevice {
                id: d.uuid.clone(),
                index: u64::from(d.index),
                count: i32::try_from(d.split_count).unwrap_or(i32::MAX),
                devmem: i32::try_from(d.memory_mib).unwrap_or(i32::MAX),
                devcore: i32::try_from(d.cores).unwrap_or(i32::MAX),
                device_type: d.model.clone(),
                numa: i64::from(d.numa),
                mode: d.mode.as_str().to_string(),
                health: d.healthy,
                mig_profiles: d
                    .mig_profiles
                    .iter()
                    .map(|p| crate::codec::register::MigProfile {
                        name: p.name.clone(),
                        memory_mb: i32::try_from(p.memory_mib).unwrap_or(i32::MAX),
                        core: i32::try_from(p.cores).unwrap_or(i32::MAX),
                        slice_count: p.slice_count,
                        placements: (!p.placements.is_empty()).then(|| {
                            p.placements
                                .iter()
                                .map(|&(start, size)| MigPlacement { start, size })
                                .collect()
                        }),
                    })
                    .collect(),
                ..RegisteredDevice::default()
            })
            .collect();
        if devs.is_empty() {
            continue;
        }
        let v = match spec.register_format {
            RegisterFormat::Json => encode_register_json(&devs),
            RegisterFormat::LegacyText => encode_legacy_register(&devs),
            RegisterFormat::MetaxJson => encode_metax_sdevices(&devs),
            RegisterFormat::NodeCapacity(_) | RegisterFormat::VendorJson => continue,
        };
        out.insert(key.to_string(), v);
    }
    out
}

/// The annotations HAMi's scheduler writes on a pod it placed: `hami.io/vgpu-node`,
/// `hami.io/vgpu-time` (unix seconds `now`) and, per family the pod uses, the to-allocate and
/// allocated device lists (one `;` segment per container, init containers first).
pub fn bind_annotations(grant: &PodGrant, now_unix: i64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    bind_annotations_into(grant, now_unix, &mut out, |v| v);
    out
}

/// [`bind_annotations`] written into `out`, each value wrapped by `wrap` (a patch map's
/// `Some`, say): the controller builds its pod patch this way without a second map.
pub fn bind_annotations_into<V>(
    grant: &PodGrant,
    now_unix: i64,
    out: &mut BTreeMap<String, V>,
    wrap: impl Fn(String) -> V,
) {
    out.insert(keys::VGPU_NODE.to_string(), wrap(grant.node.clone()));
    out.insert(
        keys::VGPU_TIME.to_string(),
        wrap(crate::codec::decimal(now_unix)),
    );
    for f in grant.families() {
        let spec = f.spec();
        // `encode_pod_devices` of the family's cards per container, written straight from the
        // grant (the simulator binds a pod per event; the copies were a fifth of this).
        // Sized once: grown a push at a time, the text was copied four or five times.
        let mut v = String::with_capacity(device_list_len(grant, f, spec.keyword));
        for c in &grant.containers {
            for d in c.iter().filter(|d| d.family == f) {
                push_device(
                    &mut v,
                    &d.uuid,
                    spec.keyword,
                    i32::try_from(d.memory_mib).unwrap_or(i32::MAX),
                    i32::try_from(d.cores).unwrap_or(i32::MAX),
                );
            }
            v.push(';');
        }
        for key in spec.device_list_annotations() {
            out.insert(key.to_string(), wrap(v.clone()));
        }
    }
}

/// Whether a bind of `grant` writes annotations beyond HAMi's device lists
/// ([`vendor_bind_annotations`]): a check that costs no node lookup.
pub fn needs_vendor_bind(grant: &PodGrant) -> bool {
    grant
        .devices()
        .any(|d| d.family.spec().vendor_bind != VendorBind::None)
}

/// The annotations the device plugins of `grant`'s families read besides HAMi's device lists
/// ([`VendorBind`]), for a grant on `node` at `now_unix` (seconds; HAMi writes these times in
/// nanoseconds, so they are `now_unix` × 10⁹). A card's index is its index on `node` (0 for a
/// card the node does not list). Empty when no family of the grant has any.
pub fn vendor_bind_annotations(
    grant: &PodGrant,
    node: &Node,
    now_unix: i64,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let index = |uuid: &str| {
        node.devices
            .iter()
            .find(|d| d.uuid == uuid)
            .map_or(0, |d| d.index)
    };
    let nanos = || now_unix.saturating_mul(1_000_000_000).to_string();
    let clamp = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
    for f in grant.families() {
        match f.spec().vendor_bind {
            VendorBind::None => {}
            VendorBind::CambriconProfile => {
                out.insert("CAMBRICON_DSMLU_ASSIGNED".to_string(), "false".to_string());
                if let Some(d) = grant
                    .containers
                    .iter()
                    .find_map(|c| of_family(c, f).first().copied())
                {
                    out.insert(
                        "CAMBRICON_DSMLU_PROFILE".to_string(),
                        format!("{}_{}_{}", index(&d.uuid), d.cores, d.memory_mib / 256),
                    );
                }
            }
            VendorBind::CardIndexes {
                key,
                node_key,
                time_key,
            } => {
                let last = grant
                    .containers
                    .iter()
                    .rev()
                    .map(|c| of_family(c, f))
                    .find(|c| !c.is_empty());
                if let Some(cards) = last {
                    let list: Vec<String> =
                        cards.iter().map(|d| index(&d.uuid).to_string()).collect();
                    out.insert(key.to_string(), list.join(","));
                    if let Some(k) = node_key {
                        out.insert(k.to_string(), grant.node.clone());
                    }
                    if let Some(k) = time_key {
                        out.insert(k.to_string(), nanos());
                    }
                }
            }
            VendorBind::MetaxList => {
                let containers: Vec<Vec<(&str, i32, i32)>> = grant
                    .containers
                    .iter()
                    .map(|c| {
                        of_family(c, f)
                            .iter()
                            .map(|d| {
                                (
                                    d.uuid.as_str(),
                                    clamp(u64::from(d.cores)),
                                    clamp(d.memory_mib),
                                )
                            })
                            .collect()
                    })
                    .collect();
                out.insert(
                    "metax-tech.com/gpu-devices-allocated".to_string(),
                    encode_metax_allocation(&containers),
                );
                out.insert("metax-tech.com/predicate-time".to_string(), nanos());
            }
        }
    }
    out
}

/// The cards of family `f` in one container's grant.
fn of_family(c: &[DeviceGrant], f: FamilyId) -> Vec<&DeviceGrant> {
    c.iter().filter(|d| d.family == f).collect()
}

/// The length of family `f`'s device list for `grant` (what [`bind_annotations_into`] writes,
/// `UUID,TYPE,MEM,CORES:` per card and `;` per container), counting numbers at their widest.
fn device_list_len(grant: &PodGrant, f: FamilyId, keyword: &str) -> usize {
    // Memory and cores are written as 32-bit integers: at most 11 characters each.
    const NUMBERS: usize = 2 * 11;
    grant.containers.len()
        + grant
            .devices()
            .filter(|d| d.family == f)
            .map(|d| d.uuid.len() + keyword.len() + NUMBERS + 4)
            .sum::<usize>()
}

/// Rebuild a pod's grant from its annotations alone: the node from `hami.io/vgpu-node`, the
/// cards from every family's allocated list. `Ok(None)` when the pod holds no grant.
/// MIG instances are not recovered here (their placement lives in the MIG annotation).
pub fn grant_from_annotations(
    annotations: &BTreeMap<String, String>,
    cpu_milli: u64,
    memory_mib: u64,
) -> Result<Option<PodGrant>, CodecError> {
    let mut containers: Vec<Vec<DeviceGrant>> = Vec::new();
    let mut any = false;
    // Straight into the grant: only the UUID of each device is kept as text.
    let Some(read) = visit_grant(annotations, |i, family, d| {
        if containers.len() <= i {
            containers.resize(i + 1, Vec::new());
        }
        any = true;
        // Most containers take one card: no room for four on the first push.
        if containers[i].capacity() == 0 {
            containers[i].reserve_exact(1);
        }
        containers[i].push(DeviceGrant {
            uuid: d.uuid.to_string(),
            family,
            memory_mib: u64::try_from(d.usedmem).unwrap_or(0),
            cores: u32::try_from(d.usedcores).unwrap_or(0),
            mig: None,
        });
    })?
    else {
        return Ok(None);
    };
    if !any {
        return Ok(None);
    }
    if containers.len() < read.containers {
        containers.resize(read.containers, Vec::new());
    }
    Ok(Some(PodGrant {
        node: read.node.to_string(),
        containers,
        cpu_milli,
        memory_mib,
    }))
}

/// Whether [`visit_grant`] (and so [`grant_from_annotations`]) reads annotation `key`: the
/// node annotation and the families' grant annotations. A map of only these decodes to the
/// same grant as the pod's whole map.
pub fn is_grant_annotation(key: &str) -> bool {
    key == keys::VGPU_NODE || !FamilyId::by_allocated_annotation(key).is_empty()
}

/// What [`visit_grant`] read besides the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantRead<'a> {
    /// The node the grant is on (`hami.io/vgpu-node`).
    pub node: &'a str,
    /// The most containers any family's allocated list names (containers without devices
    /// included).
    pub containers: usize,
}

/// [`grant_from_annotations`] without building the grant, for readers that compare or sum
/// instead of keeping it: `visit(container, family, device)` for each granted device in the
/// order the decoded grant lists them per container (families in family-table order, each
/// family's list in its own order). `Ok(None)` when no node is recorded; `Ok(Some(_))` with no
/// visit means a node without cards, which the decoder reads as no grant. On an error, the
/// devices before the bad one have been visited.
pub fn visit_grant<'a>(
    annotations: &'a BTreeMap<String, String>,
    mut visit: impl FnMut(usize, FamilyId, DeviceRef<'a>),
) -> Result<Option<GrantRead<'a>>, CodecError> {
    let Some(node) = annotations.get(keys::VGPU_NODE) else {
        return Ok(None);
    };
    // The grant annotations present, in family table order (the order cards are listed in).
    let mut present: SmallVec<[(FamilyId, &str, &String); 2]> = SmallVec::new();
    for (key, v) in annotations {
        for &f in FamilyId::by_allocated_annotation(key) {
            present.push((f, key, v));
        }
    }
    present.sort_unstable_by_key(|p| p.0);
    let mut containers = 0;
    for (f, key, v) in present {
        let n = visit_pod_devices(key, v, |i, d| visit(i, f, d))?;
        containers = containers.max(n);
    }
    Ok(Some(GrantRead { node, containers }))
}

/// The MIG instances of `grant` as HAMi's `hami.io/vgpu-mig-allocations` entries: one per card
/// granted in MIG mode, `containerIndex` in annotation order (init containers first),
/// `deviceIndex` the card's position among the container's cards of its family (the position in
/// that family's device-list segment), the profile named as `node` registers it. Runtime
/// identity fields are left empty: the device plugin fills them in. A card or profile `node`
/// does not have (a grant that does not belong to this node) contributes nothing.
pub fn mig_allocations_of(grant: &PodGrant, node: &Node) -> Vec<MigAllocation> {
    let mut out = Vec::new();
    for (ci, ctr) in grant.containers.iter().enumerate() {
        let mut per_family: BTreeMap<FamilyId, i64> = BTreeMap::new();
        for d in ctr {
            let slot = per_family.entry(d.family).or_insert(0);
            let di = *slot;
            *slot += 1;
            let Some((profile, start, size)) = d.mig else {
                continue;
            };
            let Some(p) = node
                .devices
                .iter()
                .find(|x| x.uuid == d.uuid)
                .and_then(|x| x.mig_profiles.get(usize::from(profile)))
            else {
                continue;
            };
            out.push(MigAllocation {
                container_index: i64::try_from(ci).unwrap_or(i64::MAX),
                device_index: di,
                gpu_uuid: d.uuid.clone(),
                profile: p.name.clone(),
                placement: MigPlacement { start, size },
                ..MigAllocation::default()
            });
        }
    }
    out
}

/// The value of `hami.io/vgpu-mig-allocations` the scheduler writes beside the device lists
/// when `grant` holds MIG instances ([`mig_allocations_of`]); `None` when it holds none, in
/// which case HAMi writes no such key either.
pub fn mig_allocations_annotation(grant: &PodGrant, node: &Node) -> Option<String> {
    let allocs = mig_allocations_of(grant, node);
    (!allocs.is_empty()).then(|| encode_mig_allocations(&allocs))
}

/// Put the MIG instances recorded in `allocs` (a pod's decoded, checked
/// `hami.io/vgpu-mig-allocations`) back into `grant`, so a rebuilt ledger holds the same slices
/// the scheduler reserved. Each allocation must name a card the grant holds at its container
/// and device position and a profile that card registers on `node`; otherwise the error says
/// which allocation and why, and `grant` is left unchanged.
pub fn attach_mig_allocations(
    grant: &mut PodGrant,
    node: &Node,
    allocs: &[MigAllocation],
) -> Result<(), String> {
    let mut picks = Vec::with_capacity(allocs.len());
    for (i, a) in allocs.iter().enumerate() {
        let ci = usize::try_from(a.container_index).ok();
        let ctr = ci.and_then(|ci| grant.containers.get(ci)).ok_or_else(|| {
            format!(
                "allocation {i}: the pod's grant has no container {}",
                a.container_index
            )
        })?;
        let dev = node
            .devices
            .iter()
            .find(|x| x.uuid == a.gpu_uuid)
            .ok_or_else(|| {
                format!(
                    "allocation {i}: node {} has no card {}",
                    node.name, a.gpu_uuid
                )
            })?;
        let pos = usize::try_from(a.device_index)
            .ok()
            .and_then(|di| {
                ctr.iter()
                    .enumerate()
                    .filter(|(_, d)| d.family == dev.family)
                    .nth(di)
            })
            .map(|(pos, _)| pos)
            .ok_or_else(|| {
                format!(
                    "allocation {i}: container {} has no device {}",
                    a.container_index, a.device_index
                )
            })?;
        if ctr[pos].uuid != a.gpu_uuid {
            return Err(format!(
                "allocation {i}: container {} device {} is card {}, not {}",
                a.container_index, a.device_index, ctr[pos].uuid, a.gpu_uuid
            ));
        }
        let profile = dev
            .mig_profiles
            .iter()
            .position(|p| p.name == a.profile)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                format!(
                    "allocation {i}: card {} on node {} registers no MIG profile {:?}",
                    a.gpu_uuid, node.name, a.profile
                )
            })?;
        picks.push((
            ci.unwrap_or_default(),
            pos,
            (profile, a.placement.start, a.placement.size),
        ));
    }
    for (ci, pos, mig) in picks {
        if let Some(d) = grant.containers.get_mut(ci).and_then(|c| c.get_mut(pos)) {
            d.mig = Some(mig);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::devices::{ContainerDevice, encode_pod_devices};

    fn card(uuid: &str, family: FamilyId, memory_mib: u64, cores: u32) -> DeviceGrant {
        DeviceGrant {
            uuid: uuid.into(),
            family,
            memory_mib,
            cores,
            mig: None,
        }
    }

    #[test]
    fn bind_annotations_write_each_familys_lists_as_the_codec_encodes_them() {
        let ascend = FamilyId::by_name("Ascend910B3").expect("a known family");
        let nvidia = FamilyId::NVIDIA;
        let grant = PodGrant {
            node: "node-1".into(),
            containers: vec![
                vec![
                    card("GPU-a", nvidia, 1000, 30),
                    card("NPU-x", ascend, 2000, 0),
                ],
                vec![],
                vec![
                    card("GPU-b", nvidia, 500, 100),
                    card("GPU-c", nvidia, 500, 100),
                ],
            ],
            cpu_milli: 0,
            memory_mib: 0,
        };
        let ann = bind_annotations(&grant, 7);
        assert_eq!(ann.get(keys::VGPU_NODE).map(String::as_str), Some("node-1"));
        assert_eq!(ann.get(keys::VGPU_TIME).map(String::as_str), Some("7"));
        assert_eq!(
            ann.get(nvidia.spec().allocated_annotation)
                .map(String::as_str),
            Some("GPU-a,NVIDIA,1000,30:;;GPU-b,NVIDIA,500,100:GPU-c,NVIDIA,500,100:;")
        );
        for f in [nvidia, ascend] {
            let spec = f.spec();
            let lists: Vec<Vec<ContainerDevice>> = grant
                .containers
                .iter()
                .map(|c| {
                    c.iter()
                        .filter(|d| d.family == f)
                        .map(|d| ContainerDevice {
                            uuid: d.uuid.clone(),
                            type_keyword: spec.keyword.into(),
                            usedmem: d.memory_mib as i32,
                            usedcores: d.cores as i32,
                        })
                        .collect()
                })
                .collect();
            let want = encode_pod_devices(&lists);
            for key in spec.device_list_annotations() {
                assert_eq!(ann.get(key), Some(&want), "{key}");
            }
        }
        // Node, time and the two lists of each of the two families.
        assert_eq!(ann.len(), 2 + 2 * 2);
    }
}
