//! Per-card and per-node fit: HAMi's rejection rules with their reason words.
//!
//! The checks are pure functions of a card, its usage and one request. Their order is HAMi's,
//! so the first failing rule names the reason HAMi would give.

use crate::family::{FamilyId, Quirk};
use crate::model::{Device, DeviceMode, DeviceUsage, Node, NodeUsage};
use crate::request::{DeviceRequest, MemoryRequest};

/// Why a card or a node was rejected. `as_str` is HAMi's reason word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Reason {
    /// The card's model or mode does not match the pod's selectors.
    CardTypeMismatch,
    /// The card's UUID is excluded or not among the selected.
    CardUuidMismatch,
    /// Every slot of the card is taken (split count reached).
    CardTimeSlicingExhausted,
    /// A request without cores cannot land on a card whose cores are all granted.
    CardComputeUnitsExhausted,
    /// Not enough free memory on the card.
    CardInsufficientMemory,
    /// Not enough free cores on the card.
    CardInsufficientCore,
    /// The card is unhealthy.
    CardNotHealth,
    /// The card is cordoned.
    CardCordoned,
    /// No NUMA node holds enough fitting cards.
    NumaNotFit,
    /// An exclusive request meets a used card, or the mutex policy meets a busy card.
    ExclusiveDeviceAllocateConflict,
    /// No MIG profile placement is free for the request.
    CardMigTopologyInfeasible,
    /// The node has too few cards of the family.
    NodeInsufficientDevice,
    /// Some cards fit, but fewer than the request needs.
    AllocatedCardsInsufficientRequest,
    /// The node cannot take the pod for a node-level reason.
    NodeUnfitPod,
    /// Not enough allocatable CPU left on the node.
    NodeInsufficientCpu,
    /// Not enough allocatable memory left on the node.
    NodeInsufficientMemory,
    /// The card would take the pod's namespace over its ResourceQuota of device memory or cores.
    ResourceQuotaNotFit,
}

impl Reason {
    /// Number of reasons (for counting arrays).
    pub const COUNT: usize = 17;

    /// Every reason, in declaration order.
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::CardTypeMismatch,
        Reason::CardUuidMismatch,
        Reason::CardTimeSlicingExhausted,
        Reason::CardComputeUnitsExhausted,
        Reason::CardInsufficientMemory,
        Reason::CardInsufficientCore,
        Reason::CardNotHealth,
        Reason::CardCordoned,
        Reason::NumaNotFit,
        Reason::ExclusiveDeviceAllocateConflict,
        Reason::CardMigTopologyInfeasible,
        Reason::NodeInsufficientDevice,
        Reason::AllocatedCardsInsufficientRequest,
        Reason::NodeUnfitPod,
        Reason::NodeInsufficientCpu,
        Reason::NodeInsufficientMemory,
        Reason::ResourceQuotaNotFit,
    ];

    /// HAMi's reason word.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CardTypeMismatch => "CardTypeMismatch",
            Reason::CardUuidMismatch => "CardUuidMismatch",
            Reason::CardTimeSlicingExhausted => "CardTimeSlicingExhausted",
            Reason::CardComputeUnitsExhausted => "CardComputeUnitsExhausted",
            Reason::CardInsufficientMemory => "CardInsufficientMemory",
            Reason::CardInsufficientCore => "CardInsufficientCore",
            Reason::CardNotHealth => "CardNotHealth",
            Reason::CardCordoned => "CardCordoned",
            Reason::NumaNotFit => "NumaNotFit",
            Reason::ExclusiveDeviceAllocateConflict => "ExclusiveDeviceAllocateConflict",
            Reason::CardMigTopologyInfeasible => "CardMigTopologyInfeasible",
            Reason::NodeInsufficientDevice => "NodeInsufficientDevice",
            Reason::AllocatedCardsInsufficientRequest => "AllocatedCardsInsufficientRequest",
            Reason::NodeUnfitPod => "NodeUnfitPod",
            Reason::NodeInsufficientCpu => "NodeInsufficientCpu",
            Reason::NodeInsufficientMemory => "NodeInsufficientMemory",
            Reason::ResourceQuotaNotFit => "ResourceQuotaNotFit",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reason counts for one node, rendered like HAMi: `2/8 CardInsufficientMemory, 6/8 …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReasonCounts {
    counts: [u32; Reason::COUNT],
    /// Cards considered (the denominator).
    pub cards: u32,
}

impl ReasonCounts {
    /// Count one occurrence of `r`.
    pub fn add(&mut self, r: Reason) {
        self.counts[r as usize] += 1;
    }

    /// Add `n` occurrences of `r`.
    pub fn add_n(&mut self, r: Reason, n: u32) {
        self.counts[r as usize] += n;
    }

    /// Occurrences of `r`.
    pub fn get(&self, r: Reason) -> u32 {
        self.counts[r as usize]
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// Non-zero reasons with their counts, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u32)> + '_ {
        Reason::ALL
            .iter()
            .map(|&r| (r, self.counts[r as usize]))
            .filter(|(_, c)| *c > 0)
    }
}

impl std::fmt::Display for ReasonCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (r, c) in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{c}/{} {r}", self.cards.max(c))?;
        }
        Ok(())
    }
}

/// A MIG instance chosen for a request: profile index on the card and its slice range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MigPick {
    /// Index into the card's `mig_profiles`.
    pub profile: u16,
    /// First memory slice.
    pub start: u32,
    /// Number of slices.
    pub size: u32,
}

impl MigPick {
    /// The slice bitmask this instance occupies.
    pub fn mask(self) -> u32 {
        let bits = if self.size >= 32 {
            u32::MAX
        } else {
            (1u32 << self.size) - 1
        };
        bits.checked_shl(self.start).unwrap_or(0)
    }
}

/// Memory a request takes on `dev`, after the family's rounding (Ascend templates), or `None`
/// when no template is large enough.
pub fn memory_needed(dev: &Device, req: &DeviceRequest, templates: &[u64]) -> Option<u64> {
    memory_needed_caps(&CardCaps::of(dev), req, templates)
}

/// [`memory_needed`] from a card's hot numbers.
#[inline]
pub fn memory_needed_caps(caps: &CardCaps, req: &DeviceRequest, templates: &[u64]) -> Option<u64> {
    let raw = req.memory_on(caps.memory_mib);
    if caps.ascend && !templates.is_empty() {
        if req.memory == MemoryRequest::Percent(100) {
            return Some(caps.memory_mib);
        }
        return templates.iter().copied().filter(|&t| t >= raw).min();
    }
    Some(raw)
}

/// Check one card for one request, in HAMi's order. On success returns the MIG instance when the
/// card is in MIG mode. `mutex` is the device policy that only accepts idle cards.
pub fn check_card(
    dev: &Device,
    usage: &DeviceUsage,
    req: &DeviceRequest,
    mem: Option<u64>,
    mutex: bool,
) -> Result<Option<MigPick>, Reason> {
    check_card_caps(&CardCaps::of(dev), dev, usage, req, mem, mutex)
}

/// [`check_card`] reading the numbers from the card's compact [`CardCaps`] and touching the
/// full [`Device`] only for selectors and MIG (the filter's hot loop stays in a few cache lines).
/// Always inlined into that loop (a call per card cost a tenth of the filter); MIG's search is
/// out of line.
#[inline(always)]
pub fn check_card_caps(
    caps: &CardCaps,
    dev: &Device,
    usage: &DeviceUsage,
    req: &DeviceRequest,
    mem: Option<u64>,
    mutex: bool,
) -> Result<Option<MigPick>, Reason> {
    if !caps.healthy {
        return Err(Reason::CardNotHealth);
    }
    if caps.cordoned {
        return Err(Reason::CardCordoned);
    }
    let wants_mig = req.mode == Some(DeviceMode::Mig);
    let mode_ok = match req.mode {
        None => caps.mode != DeviceMode::Mig || !dev.mig_profiles.is_empty(),
        Some(m) => m == caps.mode,
    };
    // `type_ok`/`uuid_ok` return before touching the device's strings when no selector is set.
    if caps.family != req.family || !mode_ok || !req.selectors.type_ok(&dev.model) {
        return Err(Reason::CardTypeMismatch);
    }
    if !req.selectors.uuid_ok(&dev.uuid) {
        return Err(Reason::CardUuidMismatch);
    }
    if usage.used >= caps.split_count {
        return Err(Reason::CardTimeSlicingExhausted);
    }
    if mutex && usage.used > 0 {
        return Err(Reason::ExclusiveDeviceAllocateConflict);
    }
    let Some(mem) = mem else {
        return Err(Reason::CardInsufficientMemory);
    };
    if caps.memory_mib.saturating_sub(usage.used_mem) < mem {
        return Err(Reason::CardInsufficientMemory);
    }
    let cores = req.cores.min(100);
    if caps.cores.saturating_sub(usage.used_cores) < cores {
        return Err(Reason::CardInsufficientCore);
    }
    if caps.cores == 100 && cores == 100 && usage.used > 0 {
        return Err(Reason::ExclusiveDeviceAllocateConflict);
    }
    if caps.cores != 0 && usage.used_cores >= caps.cores && cores == 0 {
        return Err(Reason::CardComputeUnitsExhausted);
    }
    if caps.mode == DeviceMode::Mig && (wants_mig || req.mode.is_none()) {
        return mig_pick(dev, usage, mem)
            .map(Some)
            .ok_or(Reason::CardMigTopologyInfeasible);
    }
    Ok(None)
}

/// The numbers of a card the filter reads for every pod, packed together (the full [`Device`]
/// with its strings is only touched for selectors and MIG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardCaps {
    /// Memory capacity, MiB.
    pub memory_mib: u64,
    /// Core units.
    pub cores: u32,
    /// Slots.
    pub split_count: u32,
    /// Family.
    pub family: FamilyId,
    /// Healthy.
    pub healthy: bool,
    /// Cordoned.
    pub cordoned: bool,
    /// Sharing mode.
    pub mode: DeviceMode,
    /// Memory rounds up to Ascend templates.
    pub ascend: bool,
}

impl CardCaps {
    /// The hot numbers of `dev`.
    pub fn of(dev: &Device) -> CardCaps {
        CardCaps {
            memory_mib: dev.memory_mib,
            cores: dev.cores,
            split_count: dev.split_count,
            family: dev.family,
            healthy: dev.healthy,
            cordoned: dev.cordoned,
            mode: dev.mode,
            ascend: dev.family.spec().quirk == Quirk::AscendTemplates,
        }
    }
}

/// The smallest MIG profile with at least `mem` MiB that has a free placement (lowest start).
#[cold]
#[inline(never)]
fn mig_pick(dev: &Device, usage: &DeviceUsage, mem: u64) -> Option<MigPick> {
    let mut best: Option<(u64, MigPick)> = None;
    for (i, p) in dev.mig_profiles.iter().enumerate() {
        if p.memory_mib < mem {
            continue;
        }
        for &(start, size) in &p.placements {
            let pick = MigPick {
                profile: i as u16,
                start,
                size,
            };
            if pick.mask() & usage.mig_slices == 0 && pick.mask() != 0 {
                if best.is_none_or(|(m, _)| p.memory_mib < m) {
                    best = Some((p.memory_mib, pick));
                }
                break;
            }
        }
    }
    best.map(|(_, p)| p)
}

/// The CPU (milli-cores) and memory (MiB) still unrequested on `node`; `u64::MAX` for what
/// the node does not track (a capacity of 0): a pod fits exactly when it asks no more.
pub fn node_room(node: &Node, used: &NodeUsage) -> (u64, u64) {
    let free = |total: u64, used: u64| {
        if total == 0 {
            u64::MAX
        } else {
            total.saturating_sub(used)
        }
    };
    (
        free(node.cpu_milli, used.cpu_milli),
        free(node.memory_mib, used.memory_mib),
    )
}

/// Node-level resources: CPU and memory, when the node tracks them ([`node_room`]).
pub fn check_node_resources(
    node: &Node,
    used: &NodeUsage,
    cpu_milli: u64,
    memory_mib: u64,
) -> Result<(), Reason> {
    let (cpu, memory) = node_room(node, used);
    if cpu < cpu_milli {
        return Err(Reason::NodeInsufficientCpu);
    }
    if memory < memory_mib {
        return Err(Reason::NodeInsufficientMemory);
    }
    Ok(())
}

/// One card granted to one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pick {
    /// Position of the card in the node's `devices`.
    pub device: u16,
    /// Family of the card.
    pub family: FamilyId,
    /// Memory granted, MiB.
    pub memory_mib: u64,
    /// Cores granted, percent.
    pub cores: u32,
    /// MIG instance, in MIG mode.
    pub mig: Option<MigPick>,
}

impl Pick {
    /// Apply this pick to a card's usage.
    pub fn apply(&self, u: &mut DeviceUsage) {
        u.used += 1;
        u.used_mem += self.memory_mib;
        u.used_cores += self.cores;
        if let Some(m) = self.mig {
            u.mig_slices |= m.mask();
        }
    }

    /// Undo [`Pick::apply`].
    pub fn remove(&self, u: &mut DeviceUsage) {
        u.used = u.used.saturating_sub(1);
        u.used_mem = u.used_mem.saturating_sub(self.memory_mib);
        u.used_cores = u.used_cores.saturating_sub(self.cores);
        if let Some(m) = self.mig {
            u.mig_slices &= !m.mask();
        }
    }
}
