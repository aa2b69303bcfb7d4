//! Device families as data.
//!
//! Every vendor family HAMi supports is one row of [`FAMILIES`]: the Kubernetes resource names a
//! pod asks with, the node and pod annotation keys the vendor's device plugin and HAMi's scheduler
//! exchange, the memory granularity and the multi-card rule. The scheduling code never matches on
//! a vendor; it reads the row. Vendor quirks that are more than data (Ascend memory templates,
//! MIG profiles) are small [`Quirk`] values interpreted in one place.

use crate::hash::FastBuild;
use std::collections::HashMap;
use std::sync::LazyLock;

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
    /// Node annotation that carries the device registration; empty when `register_format` is
    /// [`RegisterFormat::NodeCapacity`] (use [`FamilySpec::register`]).
    pub register_annotation: &'static str,
    /// Encoding of the registration annotation.
    pub register_format: RegisterFormat,
    /// Pod annotation the scheduler writes for the device plugin to consume; empty for the
    /// families where HAMi writes only the allocated record (Kunlunxin whole XPU, Enflame vGCU);
    /// use [`FamilySpec::to_allocate`].
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
    /// How many MiB one unit of the memory resource stands for (1 for MiB, 256 for Iluvatar and
    /// Cambricon, 512 for Moore Threads, 1024 for MetaX sGPU). The device lists on the wire are
    /// always in MiB.
    pub memory_unit_mib: u64,
    /// Whether one container may take several cards of this family. Ascend allows several cards
    /// only when each is a whole card (HAMi: "vNPU not supported for multiple devices"); Enflame
    /// vGCU always gives one card per container.
    pub multi_card: bool,
    /// HAMi's `CommonWord()` / chip name of this family (`NVIDIA`, `Ascend910B3`, `MR-V100`): the
    /// word the per-family annotation keys are built from. Equal to `keyword` for every family
    /// HAMi ships today; kept separate because HAMi keeps the two concepts apart.
    pub common_word: &'static str,
    /// Core units a container gets on each card when it asks none of this family's cores:
    /// `None` follows HAMi's general rule (NVIDIA's configured `defaultCores`, and a whole-card
    /// request taking the card's compute exclusively when the family has a cores resource);
    /// `Some(c)` is the vendor's own fixed answer (Cambricon, MetaX and Enflame whole cards,
    /// MetaX sGPU and Kunlunxin whole XPUs 100; Moore Threads 0).
    pub cores_unasked: Option<u32>,
    /// Pod annotations the vendor's device plugin reads besides the device lists, written
    /// at bind ([`crate::annotations::vendor_bind_annotations`]).
    pub vendor_bind: VendorBind,
    /// Behaviour beyond data, interpreted by [`crate::family::Quirk`] users.
    pub quirk: Quirk,
}

/// The pod annotations a vendor's device plugin reads besides HAMi's device lists, as HAMi's
/// `PatchAnnotations` for that vendor writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorBind {
    /// Nothing more.
    None,
    /// Cambricon: `CAMBRICON_DSMLU_ASSIGNED` = `false`, and `CAMBRICON_DSMLU_PROFILE` =
    /// `<index>_<cores>_<memory / 256 MiB>` of the first card of the first container that
    /// holds one.
    CambriconProfile,
    /// The indexes of the cards of the last container that holds some, comma-separated, under
    /// `key`; with `node_key` the node's name, with `time_key` the bind time in nanoseconds
    /// (Kunlunxin: `BAIDU_COM_DEVICE_IDX`; Moore Threads: `mthreads.com/gpu-index`, …).
    CardIndexes {
        /// Annotation of the index list.
        key: &'static str,
        /// Annotation of the node name, if written.
        node_key: Option<&'static str>,
        /// Annotation of the bind time (ns), if written.
        time_key: Option<&'static str>,
    },
    /// MetaX sGPU: `metax-tech.com/gpu-devices-allocated` = per container a JSON list of
    /// `{uuid, compute, vRam}` (empty containers as `[]`), and `metax-tech.com/predicate-time`
    /// = the bind time in nanoseconds.
    MetaxList,
}

/// How a family encodes its node registration annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterFormat {
    /// HAMi v2.8+ JSON array of device objects (zero fields omitted).
    Json,
    /// Legacy `UUID,count,devmem,devcore,type,numa,health[,index,mode]:` text (HAMi <= v2.7).
    LegacyText,
    /// No registration annotation: HAMi derives the devices from the node's
    /// `status.capacity` of the vendor resources (Cambricon, MetaX whole GPU, Moore Threads,
    /// Enflame whole GCU, Kunlunxin whole XPU) by the rule carried here.
    /// `register_annotation` is then empty.
    NodeCapacity(CapacityRule),
    /// MetaX's own JSON card list (`metax-tech.com/node-gpu-devices`), written by MetaX's
    /// device plugin for its shared GPUs ([`crate::codec::metax`]).
    MetaxJson,
    /// A vendor-specific JSON annotation written by the vendor's own device plugin that the
    /// core does not decode (Enflame `enflame.com/gcu-drs-capacity`: DRS slice profiles, which
    /// HAMi fits by its own rules).
    VendorJson,
}

/// How HAMi makes the cards of a family that has no registration annotation out of the node's
/// `status.capacity` (`GetNodeDevices` of the vendor's scheduler-side code): every card of the
/// node is alike, so a few totals say everything the scheduler knows about them.
///
/// Contract: [`crate::annotations::capacity_devices`] and
/// [`crate::annotations::node_capacity`] read and write exactly these rules, so a node written
/// by one is read back unchanged by the other (for cards this rule can describe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityRule {
    /// The resource whose capacity counts the cards: `units_per_card` of it per card, and one
    /// card more for a remainder (HAMi loops while `index * units_per_card < capacity`).
    pub cards_resource: &'static str,
    /// Capacity units of `cards_resource` one card stands for (100 for Cambricon's
    /// `mlu.smlu.vcore`, 16 for Moore Threads' `sgpu-core`, 1 for a plain card count).
    pub units_per_card: u64,
    /// The memory of each card.
    pub memory: CapacityMemory,
    /// Core units of each card (HAMi's `Devcore`).
    pub cores: u32,
    /// Containers that may share a card (HAMi's `Count`).
    pub split_count: u32,
    /// Card ids are `<node name><id_infix><index>`, as HAMi names them.
    pub id_infix: &'static str,
    /// The model HAMi registers every card with (its `Type`).
    pub model: &'static str,
    /// Whether the cards from index `cards / 2` on (rounded down, so a lone card too) sit on
    /// NUMA node 1, as HAMi places Kunlunxin XPUs; else every card is on node 0.
    pub numa_halves: bool,
}

/// The memory of a card made from node capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityMemory {
    /// Every card has this many MiB, whatever the node says.
    FixedMib(u64),
    /// The node's capacity of this resource (in the family's memory units,
    /// [`FamilySpec::memory_unit_mib`]) is shared evenly by its cards.
    ShareOf(&'static str),
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
    /// MetaX sGPU: a memory value written with a unit (`8Gi`) is a byte quantity, cut to
    /// whole MiB; a bare number is in the family's memory units (GiB).
    MemoryWithUnitIsBytes,
    /// Kunlunxin whole XPUs: a container takes 1, 2, 4 or 8 of them (HAMi's topology
    /// selection places no other count; which cards it picks is not modelled).
    XpuGroups,
    /// Moore Threads: the memory and cores a container asks are for all of its cards
    /// together; each card is asked an equal share (rounded down, as HAMi divides).
    TotalsAcrossCards,
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

    /// The families whose grant annotation ([`FamilySpec::allocated_annotation`]) is `key`,
    /// in table order (none for any other key). One hashed lookup: decoding a pod's grant
    /// asks this for each of its few annotations instead of probing one key per family.
    pub fn by_allocated_annotation(key: &str) -> &'static [FamilyId] {
        static BY_KEY: LazyLock<HashMap<&'static str, Vec<FamilyId>, FastBuild>> =
            LazyLock::new(|| {
                let mut m: HashMap<&'static str, Vec<FamilyId>, FastBuild> = HashMap::default();
                for f in FamilyId::all() {
                    let key = f.spec().allocated_annotation;
                    if !key.is_empty() {
                        m.entry(key).or_default().push(f);
                    }
                }
                m
            });
        // Every grant key ends so; a pod's other annotations are turned away without hashing.
        if !key.ends_with("-allocated") {
            return &[];
        }
        BY_KEY.get(key).map_or(&[], Vec::as_slice)
    }
}

impl FamilySpec {
    /// The registration annotation key, or `None` when the family registers through node capacity.
    pub fn register(&self) -> Option<&'static str> {
        non_empty(self.register_annotation)
    }

    /// How the family's cards are made from node capacity, or `None` when it registers
    /// through an annotation.
    pub fn capacity_rule(&self) -> Option<&CapacityRule> {
        match &self.register_format {
            RegisterFormat::NodeCapacity(rule) => Some(rule),
            _ => None,
        }
    }

    /// The to-allocate annotation key, or `None` when HAMi writes only the allocated record.
    pub fn to_allocate(&self) -> Option<&'static str> {
        non_empty(self.to_allocate_annotation)
    }

    /// Every pod annotation key that carries a device list of this family (to-allocate first).
    pub fn device_list_annotations(&self) -> impl Iterator<Item = &'static str> {
        [self.to_allocate(), Some(self.allocated_annotation)]
            .into_iter()
            .flatten()
    }
}

/// Empty strings in the table mean "HAMi has no such key for this family".
fn non_empty(s: &'static str) -> Option<&'static str> {
    (!s.is_empty()).then_some(s)
}

/// One Ascend vNPU template: a memory size (MiB) and the AI cores it carries.
///
/// Contract: values are HAMi's defaults from `charts/hami/templates/scheduler/device-configmap.yaml`
/// (`vnpus.configs[].templates`), sorted by memory ascending as HAMi sorts them before rounding a
/// request up to the first template that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AscendTemplate {
    /// Template name as the Ascend runtime knows it (`vir05_1c_16g`).
    pub name: &'static str,
    /// Memory of the template in MiB.
    pub memory_mib: u64,
    /// AI cores of the template.
    pub aicore: u32,
    /// AI CPUs of the template (0 when HAMi's config does not set one).
    pub aicpu: u32,
}

/// Card-level facts of an Ascend chip from HAMi's default vNPU config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AscendChip {
    /// `chipName` in HAMi's config (`910B3`, `310P3`, `Ascend910`).
    pub chip_name: &'static str,
    /// Memory a whole-card request is given, MiB (`memoryAllocatable`).
    pub memory_allocatable_mib: u64,
    /// Memory the card has, MiB (`memoryCapacity`); requests above it cannot fit.
    pub memory_capacity_mib: u64,
    /// AI cores of the whole card.
    pub aicore: u32,
    /// AI CPUs of the whole card.
    pub aicpu: u32,
    /// vNPU templates, memory ascending.
    pub templates: &'static [AscendTemplate],
}

const fn tpl(name: &'static str, memory_mib: u64, aicore: u32, aicpu: u32) -> AscendTemplate {
    AscendTemplate {
        name,
        memory_mib,
        aicore,
        aicpu,
    }
}

static ASCEND_910A: AscendChip = AscendChip {
    chip_name: "910A",
    memory_allocatable_mib: 32768,
    memory_capacity_mib: 32768,
    aicore: 30,
    aicpu: 0,
    templates: &[
        tpl("vir02", 2184, 2, 0),
        tpl("vir04", 4369, 4, 0),
        tpl("vir08", 8738, 8, 0),
        tpl("vir16", 17476, 16, 0),
    ],
};
static ASCEND_910B2: AscendChip = AscendChip {
    chip_name: "910B2",
    memory_allocatable_mib: 65536,
    memory_capacity_mib: 65536,
    aicore: 24,
    aicpu: 6,
    templates: &[
        tpl("vir03_1c_8g", 8192, 3, 1),
        tpl("vir06_1c_16g", 16384, 6, 1),
        tpl("vir12_3c_32g", 32768, 12, 3),
    ],
};
static ASCEND_910B3: AscendChip = AscendChip {
    chip_name: "910B3",
    memory_allocatable_mib: 65536,
    memory_capacity_mib: 65536,
    aicore: 20,
    aicpu: 7,
    templates: &[
        tpl("vir05_1c_16g", 16384, 5, 1),
        tpl("vir10_3c_32g", 32768, 10, 3),
    ],
};
static ASCEND_910B4_1: AscendChip = AscendChip {
    chip_name: "910B4-1",
    memory_allocatable_mib: 65536,
    memory_capacity_mib: 65536,
    aicore: 20,
    aicpu: 7,
    templates: &[
        tpl("vir05_1c_16g", 16384, 5, 1),
        tpl("vir10_3c_32g", 32768, 10, 3),
    ],
};
static ASCEND_910B4: AscendChip = AscendChip {
    chip_name: "910B4",
    memory_allocatable_mib: 32768,
    memory_capacity_mib: 32768,
    aicore: 20,
    aicpu: 7,
    templates: &[
        tpl("vir05_1c_8g", 8192, 5, 1),
        tpl("vir10_3c_16g", 16384, 10, 3),
    ],
};
static ASCEND_310P: AscendChip = AscendChip {
    chip_name: "310P3",
    memory_allocatable_mib: 21527,
    memory_capacity_mib: 24576,
    aicore: 8,
    aicpu: 7,
    templates: &[
        tpl("vir01", 3072, 1, 1),
        tpl("vir02", 6144, 2, 2),
        tpl("vir04", 12288, 4, 4),
    ],
};
static ASCEND_910C: AscendChip = AscendChip {
    chip_name: "Ascend910",
    memory_allocatable_mib: 65536,
    memory_capacity_mib: 65536,
    aicore: 20,
    aicpu: 7,
    templates: &[
        tpl("vir05_1c_16g", 16384, 5, 1),
        tpl("vir10_3c_32g", 32768, 10, 3),
    ],
};

/// The Ascend chip facts of a family, `None` for families without [`Quirk::AscendTemplates`].
pub fn ascend_chip(family: FamilyId) -> Option<&'static AscendChip> {
    match family.spec().name {
        "ascend910a" => Some(&ASCEND_910A),
        "ascend910b2" => Some(&ASCEND_910B2),
        "ascend910b3" => Some(&ASCEND_910B3),
        "ascend910b4" => Some(&ASCEND_910B4),
        "ascend910b4-1" => Some(&ASCEND_910B4_1),
        "ascend910c" => Some(&ASCEND_910C),
        "ascend310p" => Some(&ASCEND_310P),
        _ => None,
    }
}

/// The vNPU templates of a family (memory ascending); empty for non-Ascend families.
pub fn ascend_templates(family: FamilyId) -> &'static [AscendTemplate] {
    ascend_chip(family).map_or(&[], |c| c.templates)
}

/// The NVIDIA row: the reference every other row is compared with.
pub const NVIDIA: FamilySpec = FamilySpec {
    name: "nvidia",
    keyword: "NVIDIA",
    common_word: "NVIDIA",
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
    cores_unasked: None,
    vendor_bind: VendorBind::None,
    quirk: Quirk::Mig,
};

/// Ascend rows differ only in the common word; HAMi builds every key from it
/// (`pkg/device/ascend/device.go`, `InitDevices`).
macro_rules! ascend {
    ($name:literal, $word:literal) => {
        FamilySpec {
            name: $name,
            keyword: $word,
            common_word: $word,
            count_resource: concat!("huawei.com/", $word),
            memory_resource: Some(concat!("huawei.com/", $word, "-memory")),
            memory_percentage_resource: None,
            cores_resource: Some(concat!("huawei.com/", $word, "-core")),
            priority_resource: None,
            register_annotation: concat!("hami.io/node-register-", $word),
            register_format: RegisterFormat::Json,
            to_allocate_annotation: concat!("hami.io/", $word, "-devices-to-allocate"),
            allocated_annotation: concat!("hami.io/", $word, "-devices-allocated"),
            handshake_annotation: Some(concat!("hami.io/node-handshake-", $word)),
            use_type_annotation: None,
            nouse_type_annotation: None,
            use_uuid_annotation: Some(concat!("hami.io/use-", $word, "-uuid")),
            nouse_uuid_annotation: Some(concat!("hami.io/no-use-", $word, "-uuid")),
            memory_unit_mib: 1,
            multi_card: true,
            cores_unasked: None,
            vendor_bind: VendorBind::None,
            quirk: Quirk::AscendTemplates,
        }
    };
}

/// Every family hami-rs knows, NVIDIA first. Rows other than NVIDIA follow HAMi's vendor code
/// (`pkg/device/<vendor>/device.go`) and the default names of its Helm chart
/// (`charts/hami/values.yaml`, `templates/scheduler/device-configmap.yaml`).
pub static FAMILIES: &[FamilySpec] = &[
    NVIDIA,
    ascend!("ascend910a", "Ascend910A"),
    ascend!("ascend910b2", "Ascend910B2"),
    ascend!("ascend910b3", "Ascend910B3"),
    ascend!("ascend910b4", "Ascend910B4"),
    ascend!("ascend910b4-1", "Ascend910B4-1"),
    ascend!("ascend910c", "Ascend910C"),
    ascend!("ascend310p", "Ascend310P"),
    // Cambricon: devices come from node capacity; memory resource in 256 MiB units.
    FamilySpec {
        name: "cambricon",
        keyword: "MLU",
        common_word: "MLU",
        count_resource: "cambricon.com/vmlu",
        memory_resource: Some("cambricon.com/mlu.smlu.vmemory"),
        memory_percentage_resource: None,
        cores_resource: Some("cambricon.com/mlu.smlu.vcore"),
        priority_resource: None,
        register_annotation: "",
        register_format: RegisterFormat::NodeCapacity(CapacityRule {
            cards_resource: "cambricon.com/mlu.smlu.vcore",
            units_per_card: 100,
            memory: CapacityMemory::ShareOf("cambricon.com/mlu.smlu.vmemory"),
            cores: 100,
            split_count: 100,
            id_infix: "-cambricon-mlu-",
            model: "MLU",
            numa_halves: false,
        }),
        to_allocate_annotation: "hami.io/cambricon-mlu-devices-to-allocate",
        allocated_annotation: "hami.io/cambricon-mlu-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: Some("cambricon.com/use-mlutype"),
        nouse_type_annotation: Some("cambricon.com/nouse-mlutype"),
        use_uuid_annotation: Some("cambricon.com/use-gpuuuid"),
        nouse_uuid_annotation: Some("cambricon.com/nouse-gpuuuid"),
        memory_unit_mib: 256,
        multi_card: true,
        cores_unasked: Some(100),
        vendor_bind: VendorBind::CambriconProfile,
        quirk: Quirk::None,
    },
    // Hygon DCU: legacy text registration; memoryFactor 1 in the default config.
    FamilySpec {
        name: "hygon",
        keyword: "DCU",
        common_word: "DCU",
        count_resource: "hygon.com/dcunum",
        memory_resource: Some("hygon.com/dcumem"),
        memory_percentage_resource: None,
        cores_resource: Some("hygon.com/dcucores"),
        priority_resource: None,
        register_annotation: "hami.io/node-dcu-register",
        register_format: RegisterFormat::LegacyText,
        to_allocate_annotation: "hami.io/dcu-devices-to-allocate",
        allocated_annotation: "hami.io/dcu-devices-allocated",
        handshake_annotation: Some("hami.io/node-handshake-dcu"),
        use_type_annotation: Some("hygon.com/use-dcutype"),
        nouse_type_annotation: Some("hygon.com/nouse-dcutype"),
        use_uuid_annotation: Some("hygon.com/use-gpuuuid"),
        nouse_uuid_annotation: Some("hygon.com/nouse-gpuuuid"),
        memory_unit_mib: 1,
        multi_card: true,
        cores_unasked: None,
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
    // Iluvatar: the first chip of HAMi's default `iluvatars` list; memory in 256 MiB units.
    FamilySpec {
        name: "iluvatar",
        keyword: "MR-V100",
        common_word: "MR-V100",
        count_resource: "iluvatar.ai/MR-V100-vgpu",
        memory_resource: Some("iluvatar.ai/MR-V100.vMem"),
        memory_percentage_resource: None,
        cores_resource: Some("iluvatar.ai/MR-V100.vCore"),
        priority_resource: None,
        register_annotation: "hami.io/node-MR-V100-register",
        register_format: RegisterFormat::LegacyText,
        to_allocate_annotation: "hami.io/MR-V100-devices-to-allocate",
        allocated_annotation: "hami.io/MR-V100-devices-allocated",
        handshake_annotation: Some("hami.io/node-handshake-MR-V100"),
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("hami.io/use-MR-V100-uuid"),
        nouse_uuid_annotation: Some("hami.io/no-use-MR-V100-uuid"),
        memory_unit_mib: 256,
        multi_card: true,
        cores_unasked: None,
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
    // MetaX whole GPU: devices from node capacity (64 GiB per card in HAMi).
    FamilySpec {
        name: "metax-gpu",
        keyword: "Metax-GPU",
        common_word: "Metax-GPU",
        count_resource: "metax-tech.com/gpu",
        memory_resource: None,
        memory_percentage_resource: None,
        cores_resource: None,
        priority_resource: None,
        register_annotation: "",
        register_format: RegisterFormat::NodeCapacity(CapacityRule {
            cards_resource: "metax-tech.com/gpu",
            units_per_card: 1,
            memory: CapacityMemory::FixedMib(65536),
            cores: 100,
            split_count: 1,
            id_infix: "-metax-",
            model: "Metax-GPU",
            numa_halves: false,
        }),
        to_allocate_annotation: "hami.io/metax-gpu-devices-to-allocate",
        allocated_annotation: "hami.io/metax-gpu-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("metax-tech.com/use-gpuuuid"),
        nouse_uuid_annotation: Some("metax-tech.com/nouse-gpuuuid"),
        memory_unit_mib: 1,
        multi_card: true,
        cores_unasked: Some(100),
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
    // MetaX shared GPU: MetaX's own JSON card list; vmemory in GiB (MemoryFactor 1024) unless
    // written with a unit; 100 cores when none are asked.
    FamilySpec {
        name: "metax-sgpu",
        keyword: "Metax-SGPU",
        common_word: "Metax-SGPU",
        count_resource: "metax-tech.com/sgpu",
        memory_resource: Some("metax-tech.com/vmemory"),
        memory_percentage_resource: None,
        cores_resource: Some("metax-tech.com/vcore"),
        priority_resource: None,
        register_annotation: "metax-tech.com/node-gpu-devices",
        register_format: RegisterFormat::MetaxJson,
        to_allocate_annotation: "hami.io/metax-sgpu-devices-to-allocate",
        allocated_annotation: "hami.io/metax-sgpu-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("metax-tech.com/use-gpuuuid"),
        nouse_uuid_annotation: Some("metax-tech.com/nouse-gpuuuid"),
        memory_unit_mib: 1024,
        multi_card: true,
        cores_unasked: Some(100),
        vendor_bind: VendorBind::MetaxList,
        quirk: Quirk::MemoryWithUnitIsBytes,
    },
    // Moore Threads: devices from node capacity; sgpu-memory in 512 MiB units.
    FamilySpec {
        name: "mthreads",
        keyword: "Mthreads",
        common_word: "Mthreads",
        count_resource: "mthreads.com/vgpu",
        memory_resource: Some("mthreads.com/sgpu-memory"),
        memory_percentage_resource: None,
        cores_resource: Some("mthreads.com/sgpu-core"),
        priority_resource: None,
        register_annotation: "",
        register_format: RegisterFormat::NodeCapacity(CapacityRule {
            cards_resource: "mthreads.com/sgpu-core",
            units_per_card: 16,
            memory: CapacityMemory::ShareOf("mthreads.com/sgpu-memory"),
            cores: 16,
            split_count: 100,
            id_infix: "-mthreads-",
            model: "Mthreads",
            numa_halves: false,
        }),
        to_allocate_annotation: "hami.io/mthreads-vgpu-devices-to-allocate",
        allocated_annotation: "hami.io/mthreads-vgpu-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("mthreads.ai/use-gpuuuid"),
        nouse_uuid_annotation: Some("mthreads.ai/nouse-gpuuuid"),
        memory_unit_mib: 512,
        multi_card: true,
        cores_unasked: Some(0),
        vendor_bind: VendorBind::CardIndexes {
            key: "mthreads.com/gpu-index",
            node_key: Some("mthreads.com/predicate-node"),
            time_key: Some("mthreads.com/predicate-time"),
        },
        quirk: Quirk::TotalsAcrossCards,
    },
    // Enflame whole GCU: devices from node capacity.
    FamilySpec {
        name: "enflame-gcu",
        keyword: "GCU",
        common_word: "GCU",
        count_resource: "enflame.com/gcu",
        memory_resource: None,
        memory_percentage_resource: None,
        cores_resource: None,
        priority_resource: None,
        register_annotation: "",
        register_format: RegisterFormat::NodeCapacity(CapacityRule {
            cards_resource: "enflame.com/gcu",
            units_per_card: 1,
            // HAMi registers a whole GCU with a token 100 "MiB" and asks 100 for it.
            memory: CapacityMemory::FixedMib(100),
            cores: 100,
            split_count: 1,
            id_infix: "-GCU-",
            model: "GCU",
            numa_halves: false,
        }),
        to_allocate_annotation: "hami.io/enflame-gcu-devices-to-allocate",
        allocated_annotation: "hami.io/enflame-gcu-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: None,
        nouse_uuid_annotation: None,
        memory_unit_mib: 1,
        multi_card: true,
        cores_unasked: Some(100),
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
    // Enflame shared GCU (DRS): one card per container, capacity from the vendor's JSON
    // annotation; gcu-memory is read as GB unless it is clearly MiB (HAMi heuristic).
    FamilySpec {
        name: "enflame-vgcu",
        keyword: "Enflame",
        common_word: "Enflame",
        count_resource: "enflame.com/drs-gcu",
        memory_resource: Some("enflame.com/gcu-memory"),
        memory_percentage_resource: None,
        cores_resource: Some("enflame.com/gcu-core"),
        priority_resource: None,
        register_annotation: "enflame.com/gcu-drs-capacity",
        register_format: RegisterFormat::VendorJson,
        to_allocate_annotation: "",
        allocated_annotation: "hami.io/enflame-vgpu-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("enflame.com/use-gpuuuid"),
        nouse_uuid_annotation: Some("enflame.com/nouse-gpuuuid"),
        memory_unit_mib: 1024,
        multi_card: false,
        cores_unasked: None,
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
    // Kunlunxin whole XPU: devices from node capacity, only the allocated record is written;
    // HAMi grants each card whole (its memory and 100 cores).
    FamilySpec {
        name: "kunlun",
        keyword: "kunlun",
        common_word: "kunlun",
        count_resource: "kunlunxin.com/xpu",
        memory_resource: None,
        memory_percentage_resource: None,
        cores_resource: None,
        priority_resource: None,
        register_annotation: "",
        register_format: RegisterFormat::NodeCapacity(CapacityRule {
            cards_resource: "kunlunxin.com/xpu",
            units_per_card: 1,
            memory: CapacityMemory::FixedMib(98304),
            cores: 100,
            split_count: 100,
            id_infix: "-kunlun-",
            model: "kunlun",
            numa_halves: true,
        }),
        to_allocate_annotation: "",
        allocated_annotation: "hami.io/kunlun-allocated",
        handshake_annotation: None,
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("baidu.com/use-gpuuuid"),
        nouse_uuid_annotation: Some("baidu.com/nouse-gpuuuid"),
        memory_unit_mib: 1,
        multi_card: true,
        cores_unasked: Some(100),
        vendor_bind: VendorBind::CardIndexes {
            key: "BAIDU_COM_DEVICE_IDX",
            node_key: None,
            time_key: None,
        },
        quirk: Quirk::XpuGroups,
    },
    // Kunlunxin shared XPU: JSON registration; memory rounded to HAMi's vXPU sizes (MiB).
    FamilySpec {
        name: "kunlun-vxpu",
        keyword: "XPU",
        common_word: "XPU",
        count_resource: "kunlunxin.com/vxpu",
        memory_resource: Some("kunlunxin.com/vxpu-memory"),
        memory_percentage_resource: None,
        cores_resource: None,
        priority_resource: None,
        register_annotation: "hami.io/node-register-xpu",
        register_format: RegisterFormat::Json,
        to_allocate_annotation: "hami.io/xpu-devices-to-allocate",
        allocated_annotation: "hami.io/xpu-devices-allocated",
        handshake_annotation: Some("hami.io/node-handshake-xpu"),
        use_type_annotation: None,
        nouse_type_annotation: None,
        use_uuid_annotation: Some("hami.io/use-xpu-uuid"),
        nouse_uuid_annotation: Some("hami.io/no-use-xpu-uuid"),
        memory_unit_mib: 1,
        multi_card: true,
        cores_unasked: None,
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
    // AMD: JSON registration, no handshake key.
    FamilySpec {
        name: "amd",
        keyword: "AMD",
        common_word: "AMD",
        count_resource: "amd.com/gpu",
        memory_resource: Some("amd.com/gpumem"),
        memory_percentage_resource: None,
        cores_resource: Some("amd.com/gpucores"),
        priority_resource: None,
        register_annotation: "hami.io/node-amd-register",
        register_format: RegisterFormat::Json,
        to_allocate_annotation: "hami.io/amd-devices-to-allocate",
        allocated_annotation: "hami.io/amd-devices-allocated",
        handshake_annotation: None,
        use_type_annotation: Some("amd.com/use-gputype"),
        nouse_type_annotation: Some("amd.com/nouse-gputype"),
        use_uuid_annotation: Some("amd.com/use-gpu-uuid"),
        nouse_uuid_annotation: Some("amd.com/nouse-gpu-uuid"),
        memory_unit_mib: 1,
        multi_card: true,
        cores_unasked: None,
        vendor_bind: VendorBind::None,
        quirk: Quirk::None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn nvidia_row_is_exact_and_first() {
        let n = FamilyId::NVIDIA.spec();
        assert_eq!(n.name, "nvidia");
        assert_eq!(n.keyword, "NVIDIA");
        assert_eq!(n.count_resource, "nvidia.com/gpu");
        assert_eq!(n.memory_resource, Some("nvidia.com/gpumem"));
        assert_eq!(
            n.memory_percentage_resource,
            Some("nvidia.com/gpumem-percentage")
        );
        assert_eq!(n.cores_resource, Some("nvidia.com/gpucores"));
        assert_eq!(n.priority_resource, Some("nvidia.com/priority"));
        assert_eq!(n.register(), Some("hami.io/node-nvidia-register"));
        assert_eq!(n.to_allocate(), Some("hami.io/vgpu-devices-to-allocate"));
        assert_eq!(n.allocated_annotation, "hami.io/vgpu-devices-allocated");
        assert_eq!(n.handshake_annotation, Some("hami.io/node-handshake"));
        assert_eq!(n.use_uuid_annotation, Some("nvidia.com/use-gpuuuid"));
        assert_eq!(n.nouse_type_annotation, Some("nvidia.com/nouse-gputype"));
        assert_eq!(n.quirk, Quirk::Mig);
    }

    #[test]
    fn rows_are_unique() {
        let mut names = BTreeSet::new();
        let mut keywords = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name.to_ascii_lowercase()), "name {}", f.name);
            assert!(keywords.insert(f.keyword), "keyword {}", f.keyword);
            assert!(
                !f.keyword.contains([',', ':', ';']),
                "keyword {} breaks the list",
                f.keyword
            );
            assert!(keys.insert(f.count_resource), "count {}", f.count_resource);
            assert!(
                keys.insert(f.allocated_annotation),
                "allocated {}",
                f.allocated_annotation
            );
            for k in [f.register(), f.to_allocate(), f.handshake_annotation]
                .into_iter()
                .flatten()
            {
                assert!(keys.insert(k), "key {k} of {}", f.name);
            }
            assert_eq!(
                f.register().is_none(),
                matches!(f.register_format, RegisterFormat::NodeCapacity(_))
            );
            assert!(f.memory_unit_mib >= 1);
        }
        assert!(FAMILIES.len() < u8::MAX as usize);
    }

    #[test]
    fn grant_annotation_keys_find_their_family() {
        for id in FamilyId::all() {
            let key = id.spec().allocated_annotation;
            assert_eq!(FamilyId::by_allocated_annotation(key), [id], "{key}");
        }
        for other in ["", "hami.io/vgpu-node", "hami.io/VGPU-devices-allocated"] {
            assert!(
                FamilyId::by_allocated_annotation(other).is_empty(),
                "{other}"
            );
        }
    }

    #[test]
    fn lookups_and_templates() {
        let b3 = FamilyId::by_name("Ascend910B3").unwrap();
        assert_eq!(FamilyId::by_keyword("Ascend910B3"), Some(b3));
        assert_eq!(b3.spec().count_resource, "huawei.com/Ascend910B3");
        assert_eq!(
            b3.spec().register(),
            Some("hami.io/node-register-Ascend910B3")
        );
        for id in FamilyId::all() {
            let t = ascend_templates(id);
            assert_eq!(
                !t.is_empty(),
                id.spec().quirk == Quirk::AscendTemplates,
                "{}",
                id.spec().name
            );
            assert!(t.windows(2).all(|w| w[0].memory_mib < w[1].memory_mib));
            if let Some(chip) = ascend_chip(id) {
                assert!(t.iter().all(|x| x.memory_mib <= chip.memory_capacity_mib));
            }
        }
        assert_eq!(
            FamilyId::by_keyword("MLU").map(|f| f.spec().name),
            Some("cambricon")
        );
    }
}
