//! The cluster model: devices, nodes, topology and per-device usage.
//!
//! These are plain values. They are built from node annotations (through the codec) in a
//! cluster, from scenario files in the simulator, and from builders in tests.

use crate::family::FamilyId;

/// How a card is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum DeviceMode {
    /// Software slicing enforced by the interposer (HAMi-core compatible). The default.
    #[default]
    HamiCore,
    /// Hardware partitioning into MIG instances.
    Mig,
    /// NVIDIA MPS (accepted on the wire; scheduled like hami-core).
    Mps,
}

impl DeviceMode {
    /// The wire name HAMi uses (`hami-core`, `mig`, `mps`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceMode::HamiCore => "hami-core",
            DeviceMode::Mig => "mig",
            DeviceMode::Mps => "mps",
        }
    }

    /// Parse a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeviceMode> {
        match s {
            "hami-core" => Some(DeviceMode::HamiCore),
            "mig" => Some(DeviceMode::Mig),
            "mps" => Some(DeviceMode::Mps),
            _ => None,
        }
    }
}

/// One MIG profile a card offers (e.g. `1g.10gb`), with the slice positions it may start at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigProfile {
    /// Profile name as NVIDIA spells it (`1g.10gb`).
    pub name: String,
    /// Memory of one instance, MiB.
    pub memory_mib: u64,
    /// Compute share of one instance, percent of the card.
    pub cores: u32,
    /// Number of memory slices one instance occupies.
    pub slice_count: u32,
    /// Allowed placements as (first slice, slices).
    pub placements: Vec<(u32, u32)>,
}

/// A physical card (or NPU) as registered by its node.
///
/// Contract: `memory_mib`, `cores` and `split_count` are capacities after HAMi's scaling
/// (`devmem`, `devcore`, `count` of the registration annotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// UUID as the vendor reports it (`GPU-…`).
    pub uuid: String,
    /// Index on its node.
    pub index: u32,
    /// Vendor family.
    pub family: FamilyId,
    /// Model name (`NVIDIA-A100-SXM4-80GB`); type selectors match substrings of it.
    pub model: String,
    /// Memory capacity, MiB.
    pub memory_mib: u64,
    /// Compute capacity in core units (100 = one whole card at core scaling 1).
    pub cores: u32,
    /// How many containers may share the card at once.
    pub split_count: u32,
    /// NUMA node of the card.
    pub numa: i32,
    /// Whether the device plugin reports the card healthy.
    pub healthy: bool,
    /// Sharing mode.
    pub mode: DeviceMode,
    /// MIG profiles (only meaningful in MIG mode).
    pub mig_profiles: Vec<MigProfile>,
    /// Excluded from new allocations (`hami.io/device-cordon`).
    pub cordoned: bool,
}

impl Device {
    /// A healthy hami-core card with HAMi's default split count of 10 and 100 core units.
    pub fn new(
        uuid: impl Into<String>,
        index: u32,
        family: FamilyId,
        model: impl Into<String>,
        memory_mib: u64,
    ) -> Device {
        Device {
            uuid: uuid.into(),
            index,
            family,
            model: model.into(),
            memory_mib,
            cores: 100,
            split_count: 10,
            numa: 0,
            healthy: true,
            mode: DeviceMode::HamiCore,
            mig_profiles: Vec::new(),
            cordoned: false,
        }
    }
}

/// Pairwise link scores between the cards of one node (HAMi's topology score: NVLink k links
/// = 100·k, PCIe single switch 50, …). Symmetric; unknown pairs score 0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkScores {
    n: usize,
    scores: Vec<u32>,
}

impl LinkScores {
    /// No links known for `n` cards (every pair scores 0).
    pub fn new(n: usize) -> LinkScores {
        LinkScores {
            n,
            scores: vec![0; n * n],
        }
    }

    /// Set the score of the pair (`a`, `b`) in both directions; out-of-range pairs are ignored.
    pub fn set(&mut self, a: usize, b: usize, score: u32) {
        if a < self.n && b < self.n && a != b {
            self.scores[a * self.n + b] = score;
            self.scores[b * self.n + a] = score;
        }
    }

    /// Score of the pair (`a`, `b`); 0 when unknown.
    pub fn get(&self, a: usize, b: usize) -> u32 {
        if a < self.n && b < self.n {
            self.scores[a * self.n + b]
        } else {
            0
        }
    }

    /// Whether any pair has a non-zero score.
    pub fn is_known(&self) -> bool {
        self.scores.iter().any(|&s| s > 0)
    }

    /// A fully NVLinked node: every pair gets `score`.
    pub fn uniform(n: usize, score: u32) -> LinkScores {
        let mut l = LinkScores::new(n);
        for a in 0..n {
            for b in (a + 1)..n {
                l.set(a, b, score);
            }
        }
        l
    }
}

/// A node: its cards, their topology and its allocatable CPU and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name (unique in a cluster).
    pub name: String,
    /// Cards, in registration order (position in this vector is the device's slot in usage).
    pub devices: Vec<Device>,
    /// Link scores indexed by position in `devices`.
    pub links: LinkScores,
    /// Allocatable CPU, milli-cores (0 = not tracked).
    pub cpu_milli: u64,
    /// Allocatable memory, MiB (0 = not tracked).
    pub memory_mib: u64,
}

impl Node {
    /// A node with no cards and untracked CPU/memory.
    pub fn new(name: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            devices: Vec::new(),
            links: LinkScores::new(0),
            cpu_milli: 0,
            memory_mib: 0,
        }
    }
}

/// What is in use on one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DeviceUsage {
    /// Containers holding a share of the card.
    pub used: u32,
    /// Memory granted, MiB.
    pub used_mem: u64,
    /// Core units granted.
    pub used_cores: u32,
    /// MIG memory slices taken (bit i = slice i).
    pub mig_slices: u32,
}

/// What is in use on one node besides its cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NodeUsage {
    /// CPU requested by pods placed here, milli-cores.
    pub cpu_milli: u64,
    /// Memory requested by pods placed here, MiB.
    pub memory_mib: u64,
}
