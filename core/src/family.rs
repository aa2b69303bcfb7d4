//! Device families as data.
//!
//! Every vendor family HAMi supports is one row of [`FAMILIES`]: the Kubernetes resource names a
//! pod asks with, the node and pod annotation keys the vendor's device plugin and HAMi's scheduler
//! exchange, the memory granularity and the multi-card rule. The scheduling code never matches on
//! a vendor; it reads the row. Vendor quirks that are more than data (Ascend memory templates,
//! MIG profiles) are small [`Quirk`] values interpreted in one place.

/// A device family: one row of the vendor table.
///
/// Contract: every string is exactly what HAMi uses on the wire for this family (resource names,
/// annotation keys, the device-list type keyword), so pods, nodes and vendor device plugins
/// written for HAMi work unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilySpec {
    /// Stable short name used in our own CLI, scenarios and reports (`nvidia`, `ascend910b3`, ...).
    pub name: &'static str,
    /// Vendor keyword written as the TYPE field of the per-container device list (`NVIDIA`).
    pub keyword: &'static str,
    /// Resource for the number of physical cards per container (`nvidia.com/gpu`).
    pub count_resource: &'static str,
    /// Resource for memory per card, in this family's memory unit (`nvidia.com/gpumem`).
    pub memory_resource: Option<&'static str>,
    /// Resource for memory per card as a percentage of the card (`nvidia.com/gpumem-percentage`).
    pub memory_percentage_resource: Option<&'static str>,
    /// Resource for the compute share per card, percent (`nvidia.com/gpucores`).
    pub cores_resource: Option<&'static str>,
    /// Resource for the task priority (`nvidia.com/priority`).
    pub priority_resource: Option<&'static str>,
    /// Node annotation that carries the device registration.
    pub register_annotation: &'static str,
    /// Encoding of the registration annotation.
    pub register_format: RegisterFormat,
    /// Pod annotation the scheduler writes for the device plugin to consume.
    pub to_allocate_annotation: &'static str,
    /// Pod annotation that keeps the permanent record of what was allocated.
    pub allocated_annotation: &'static str,
    /// Node handshake annotation, when the family has one.
    pub handshake_annotation: Option<&'static str>,
    /// Pod annotation restricting the card model (comma list, case-insensitive substring).
    pub use_type_annotation: Option<&'static str>,
    /// Pod annotation excluding card models (comma list, case-insensitive substring).
    pub nouse_type_annotation: Option<&'static str>,
    /// Pod annotation restricting cards by UUID (comma list, exact).
    pub use_uuid_annotation: Option<&'static str>,
    /// Pod annotation excluding cards by UUID (comma list, exact).
    pub nouse_uuid_annotation: Option<&'static str>,
    /// How many MiB one unit of the memory resource stands for (1 for MiB, 256 for Iluvatar).
    pub memory_unit_mib: u64,
    /// Whether one container may take several cards of this family.
    pub multi_card: bool,
    /// Behaviour beyond data, interpreted by [`crate::family::Quirk`] users.
    pub quirk: Quirk,
}

/// How a family encodes its node registration annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterFormat {
    /// HAMi v2.8+ JSON array of device objects (zero fields omitted).
    Json,
    /// Legacy `UUID,count,devmem,devcore,type,numa,health[,index,mode]:` text (HAMi <= v2.7).
    LegacyText,
}

/// Vendor behaviour that is more than a table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// No special behaviour.
    None,
    /// NVIDIA: cards may run in MIG mode with per-model profiles.
    Mig,
    /// Ascend: memory requests are rounded up to the card's vNPU template sizes.
    AscendTemplates,
}

/// Index of a family in [`FAMILIES`]; cheap to copy and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FamilyId(pub u8);

impl FamilyId {
    /// The NVIDIA family, the reference.
    pub const NVIDIA: FamilyId = FamilyId(0);

    /// The table row of this family.
    pub fn spec(self) -> &'static FamilySpec {
        &FAMILIES[self.0 as usize]
    }

    /// Find a family by its short name (case-insensitive).
    pub fn by_name(name: &str) -> Option<FamilyId> {
        FAMILIES
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
            .map(|i| FamilyId(i as u8))
    }

    /// Find a family by its device-list keyword (`NVIDIA`, `MLU`, ...).
    pub fn by_keyword(keyword: &str) -> Option<FamilyId> {
        FAMILIES
            .iter()
            .position(|f| f.keyword == keyword)
            .map(|i| FamilyId(i as u8))
    }

    /// Every family, in table order.
    pub fn all() -> impl Iterator<Item = FamilyId> {
        (0..FAMILIES.len()).map(|i| FamilyId(i as u8))
    }
}

/// The NVIDIA row: the reference every other row is compared with.
pub const NVIDIA: FamilySpec = FamilySpec {
    name: "nvidia",
    keyword: "NVIDIA",
    count_resource: "nvidia.com/gpu",
    memory_resource: Some("nvidia.com/gpumem"),
    memory_percentage_resource: Some("nvidia.com/gpumem-percentage"),
    cores_resource: Some("nvidia.com/gpucores"),
    priority_resource: Some("nvidia.com/priority"),
    register_annotation: "hami.io/node-nvidia-register",
    register_format: RegisterFormat::Json,
    to_allocate_annotation: "hami.io/vgpu-devices-to-allocate",
    allocated_annotation: "hami.io/vgpu-devices-allocated",
    handshake_annotation: Some("hami.io/node-handshake"),
    use_type_annotation: Some("nvidia.com/use-gputype"),
    nouse_type_annotation: Some("nvidia.com/nouse-gputype"),
    use_uuid_annotation: Some("nvidia.com/use-gpuuuid"),
    nouse_uuid_annotation: Some("nvidia.com/nouse-gpuuuid"),
    memory_unit_mib: 1,
    multi_card: true,
    quirk: Quirk::Mig,
};

/// Every family hami-rs knows, NVIDIA first. Rows other than NVIDIA follow HAMi's vendor code.
pub static FAMILIES: &[FamilySpec] = &[NVIDIA];
