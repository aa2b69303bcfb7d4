//! Pure translation of a Kubernetes Pod into a scheduling request, with HAMi's defaults and
//! validation. Every error names the container and the field (resource or annotation key).

use crate::config::DeviceConfig;
use crate::family::{FamilyId, Quirk};
use crate::hash::FastBuild;
use crate::model::DeviceMode;
use crate::policy::{DevicePolicyChain, NodePolicyKind};
use crate::quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Annotation selecting the node policy for one pod.
pub const NODE_POLICY_ANNOTATION: &str = "hami.io/node-scheduler-policy";
/// Annotation selecting the device policy (chain) for one pod.
pub const DEVICE_POLICY_ANNOTATION: &str = "hami.io/gpu-scheduler-policy";
/// Annotation forcing all cards of a container onto one NUMA node.
pub const NUMA_BIND_ANNOTATION: &str = "nvidia.com/numa-bind";
/// Annotation selecting the sharing mode (`hami-core`, `mig`, `mps`).
pub const VGPU_MODE_ANNOTATION: &str = "nvidia.com/vgpu-mode";

/// Identity of a pod: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    /// Namespace (`default` when the object has none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PodKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> PodKey {
        PodKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Memory asked per card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryRequest {
    /// A fixed amount, MiB.
    Mib(u64),
    /// A share of each card's memory, percent (1..=100).
    Percent(u32),
}

/// Card selectors of one family, from the pod's use/nouse annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Selectors {
    /// Model substrings one of which must match (lower case); empty = any.
    pub use_types: Vec<String>,
    /// Model substrings none of which may match (lower case).
    pub nouse_types: Vec<String>,
    /// UUIDs one of which must match; empty = any.
    pub use_uuids: Vec<String>,
    /// UUIDs that must not be used.
    pub nouse_uuids: Vec<String>,
}

impl Selectors {
    /// Whether a card of `model` passes the type selectors (case-insensitive substring).
    /// Asked per card in every filter pass: without selectors (most pods) it is two loads
    /// where it is asked, and only a pod that has some pays for the call.
    #[inline]
    pub fn type_ok(&self, model: &str) -> bool {
        (self.use_types.is_empty() && self.nouse_types.is_empty()) || self.types_match(model)
    }

    fn types_match(&self, model: &str) -> bool {
        // No lower-cased copy of the model: this runs per card for every filter pass.
        (self.use_types.is_empty() || self.use_types.iter().any(|t| contains_ci(model, t)))
            && !self.nouse_types.iter().any(|t| contains_ci(model, t))
    }

    /// Whether a card with `uuid` passes the UUID selectors (inline like
    /// [`Selectors::type_ok`]).
    #[inline]
    pub fn uuid_ok(&self, uuid: &str) -> bool {
        (self.use_uuids.is_empty() && self.nouse_uuids.is_empty()) || self.uuids_match(uuid)
    }

    fn uuids_match(&self, uuid: &str) -> bool {
        (self.use_uuids.is_empty() || self.use_uuids.iter().any(|u| u == uuid))
            && !self.nouse_uuids.iter().any(|u| u == uuid)
    }
}

/// Whether `haystack`, ASCII-lower-cased, contains `lower` (already lower case): the same as
/// `haystack.to_ascii_lowercase().contains(lower)`, without the copy.
fn contains_ci(haystack: &str, lower: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), lower.as_bytes());
    n.is_empty()
        || h.windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// What one container asks of one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceRequest {
    /// The family.
    pub family: FamilyId,
    /// Number of distinct physical cards.
    pub count: u32,
    /// Memory per card.
    pub memory: MemoryRequest,
    /// Compute per card, percent (100 = the card exclusively).
    pub cores: u32,
    /// Task priority (0 high, 1 low), when asked.
    pub priority: Option<u32>,
    /// Sharing mode the pod asks for (NVIDIA `vgpu-mode`), when any.
    pub mode: Option<DeviceMode>,
    /// Card selectors.
    pub selectors: Selectors,
}

impl DeviceRequest {
    /// Memory this request takes on a card of `memory_mib`, before vendor rounding.
    pub fn memory_on(&self, card_memory_mib: u64) -> u64 {
        match self.memory {
            MemoryRequest::Mib(m) => m,
            MemoryRequest::Percent(p) => card_memory_mib * u64::from(p) / 100,
        }
    }
}

/// What one container asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRequest {
    /// Container name.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// Device requests, one per family, in family table order.
    pub devices: Vec<DeviceRequest>,
}

/// The scheduling request of a pod.
///
/// Contract: `containers` holds every container, init containers first, in spec order (even
/// those asking no device) so indexes line up with HAMi's per-container annotations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRequest {
    /// Namespace and name.
    pub key: PodKey,
    /// UID, when the object has one.
    pub uid: Option<String>,
    /// Containers in annotation order.
    pub containers: Vec<ContainerRequest>,
    /// Effective CPU request of the pod, milli-cores (Kubernetes' init/app container rule).
    pub cpu_milli: u64,
    /// Effective memory request of the pod, MiB.
    pub memory_mib: u64,
    /// All cards of a container on one NUMA node.
    pub numa_bind: bool,
    /// Per-pod node policy override.
    pub node_policy: Option<NodePolicyKind>,
    /// Per-pod device policy override.
    pub device_policy: Option<DevicePolicyChain>,
    /// Kubernetes priority (`spec.priority`), 0 when unset.
    pub priority: i32,
}

impl PodRequest {
    /// Whether the pod asks for any managed device at all.
    pub fn wants_devices(&self) -> bool {
        self.containers.iter().any(|c| !c.devices.is_empty())
    }

    /// Total cards asked over all containers.
    pub fn total_cards(&self) -> u32 {
        self.containers
            .iter()
            .flat_map(|c| &c.devices)
            .map(|d| d.count)
            .sum()
    }
}

/// A pod that cannot be turned into a request. The message names the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A resource of a container is wrong.
    #[error("pod {pod}: container {container:?}: resource {resource}: {problem}")]
    Resource {
        /// The pod.
        pod: String,
        /// The container name.
        container: String,
        /// The resource name.
        resource: String,
        /// What is wrong.
        problem: String,
    },
    /// An annotation is wrong.
    #[error("pod {pod}: annotation {key}={value:?}: {problem}")]
    Annotation {
        /// The pod.
        pod: String,
        /// The annotation key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
}

/// Resource names of one family after config overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FamilyNames {
    family: FamilyId,
    count: String,
    memory: Option<String>,
    memory_pct: Option<String>,
    cores: Option<String>,
    priority: Option<String>,
}

/// Which of a family's resources a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Count,
    Memory,
    MemoryPct,
    Cores,
    Priority,
}

// `container_devices` keeps a bit per family in a u128.
const _: () = assert!(crate::family::FAMILIES.len() <= 128);

/// The translator: resource names and defaults resolved once from the device configuration.
#[derive(Debug, Clone)]
pub struct RequestTranslator {
    names: Vec<FamilyNames>,
    /// Every managed resource name → the (position in `names`, [`Slot`]) pairs that use it: a
    /// container lists a handful of resources, and one pass over them finds every value the
    /// families ask for (looking each name up in the resource maps cost ten map searches).
    by_resource: HashMap<String, Vec<(usize, Slot)>, FastBuild>,
    /// Every type/UUID selector annotation key of any family: a pod none of whose annotations
    /// is one of these has no selectors, without probing each family's four keys.
    selector_keys: HashSet<&'static str, FastBuild>,
    default_memory: u64,
    default_cores: u32,
    default_count: u32,
    memory_factor: u64,
}

impl Default for RequestTranslator {
    fn default() -> Self {
        RequestTranslator::new(&DeviceConfig::default())
    }
}

impl RequestTranslator {
    /// Resolve resource names and defaults from `config`.
    pub fn new(config: &DeviceConfig) -> RequestTranslator {
        let n = &config.nvidia;
        let names = FamilyId::all()
            .map(|f| {
                let spec = f.spec();
                if f == FamilyId::NVIDIA {
                    FamilyNames {
                        family: f,
                        count: n.resource_count_name.clone(),
                        memory: Some(n.resource_memory_name.clone()),
                        memory_pct: Some(n.resource_memory_percentage_name.clone()),
                        cores: Some(n.resource_core_name.clone()),
                        priority: Some(n.resource_priority_name.clone()),
                    }
                } else {
                    FamilyNames {
                        family: f,
                        count: spec.count_resource.to_string(),
                        memory: spec.memory_resource.map(str::to_string),
                        memory_pct: spec.memory_percentage_resource.map(str::to_string),
                        cores: spec.cores_resource.map(str::to_string),
                        priority: spec.priority_resource.map(str::to_string),
                    }
                }
            })
            .collect::<Vec<FamilyNames>>();
        let mut by_resource: HashMap<String, Vec<(usize, Slot)>, FastBuild> = HashMap::default();
        for (i, n) in names.iter().enumerate() {
            for (r, slot) in [
                (Some(&n.count), Slot::Count),
                (n.memory.as_ref(), Slot::Memory),
                (n.memory_pct.as_ref(), Slot::MemoryPct),
                (n.cores.as_ref(), Slot::Cores),
                (n.priority.as_ref(), Slot::Priority),
            ] {
                if let Some(r) = r {
                    by_resource.entry(r.clone()).or_default().push((i, slot));
                }
            }
        }
        let selector_keys = FamilyId::all()
            .flat_map(|f| {
                let s = f.spec();
                [
                    s.use_type_annotation,
                    s.nouse_type_annotation,
                    s.use_uuid_annotation,
                    s.nouse_uuid_annotation,
                ]
            })
            .flatten()
            .collect();
        RequestTranslator {
            names,
            by_resource,
            selector_keys,
            default_memory: n.default_memory,
            default_cores: n.default_cores,
            default_count: n.default_gpu_num.max(1),
            memory_factor: u64::from(n.memory_factor.max(1)),
        }
    }

    /// Whether `resource` is one this translator manages (a webhook routes such pods).
    pub fn is_managed_resource(&self, resource: &str) -> bool {
        self.names.iter().any(|n| {
            n.count == resource
                || n.memory.as_deref() == Some(resource)
                || n.memory_pct.as_deref() == Some(resource)
                || n.cores.as_deref() == Some(resource)
                || n.priority.as_deref() == Some(resource)
        })
    }

    /// Every managed resource name (for the extender's managedResources).
    pub fn managed_resources(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .names
            .iter()
            .flat_map(|n| {
                [
                    Some(n.count.clone()),
                    n.memory.clone(),
                    n.memory_pct.clone(),
                    n.cores.clone(),
                    n.priority.clone(),
                ]
            })
            .flatten()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Translate a pod. Pure: the same pod always gives the same request or error.
    pub fn translate(&self, pod: &Pod) -> Result<PodRequest, RequestError> {
        let meta = &pod.metadata;
        let key = PodKey::new(
            meta.namespace.clone().unwrap_or_else(|| "default".into()),
            meta.name.clone().unwrap_or_default(),
        );
        let empty = BTreeMap::new();
        let ann = meta.annotations.as_ref().unwrap_or(&empty);
        let ann_err = |k: &str, value: &str, problem: String| RequestError::Annotation {
            pod: key.to_string(),
            key: k.to_string(),
            value: value.to_string(),
            problem,
        };

        let numa_bind = match ann.get(NUMA_BIND_ANNOTATION).map(|s| s.trim()) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v.is_empty() => false,
            Some(v) => {
                return Err(ann_err(
                    NUMA_BIND_ANNOTATION,
                    v,
                    "expected \"true\" or \"false\"".into(),
                ));
            }
        };
        let node_policy = match ann.get(NODE_POLICY_ANNOTATION) {
            None => None,
            Some(v) => {
                Some(NodePolicyKind::parse(v).map_err(|p| ann_err(NODE_POLICY_ANNOTATION, v, p))?)
            }
        };
        let device_policy = match ann.get(DEVICE_POLICY_ANNOTATION) {
            None => None,
            Some(v) => Some(
                DevicePolicyChain::parse(v).map_err(|p| ann_err(DEVICE_POLICY_ANNOTATION, v, p))?,
            ),
        };
        let mode = match ann.get(VGPU_MODE_ANNOTATION) {
            None => None,
            Some(v) => Some(DeviceMode::parse(v.trim()).ok_or_else(|| {
                ann_err(
                    VGPU_MODE_ANNOTATION,
                    v,
                    "expected hami-core, mig or mps".into(),
                )
            })?),
        };
        let mut selectors: BTreeMap<FamilyId, Selectors> = BTreeMap::new();
        // Without any selector annotation no family has selectors: skip probing their keys.
        let has_selectors = ann.keys().any(|k| self.selector_keys.contains(k.as_str()));
        for f in FamilyId::all().filter(|_| has_selectors) {
            let spec = f.spec();
            let list = |k: Option<&str>, lower: bool| -> Result<Vec<String>, RequestError> {
                let Some(k) = k else { return Ok(Vec::new()) };
                let Some(v) = ann.get(k) else {
                    return Ok(Vec::new());
                };
                let items: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if lower {
                            s.to_ascii_lowercase()
                        } else {
                            s.to_string()
                        }
                    })
                    .collect();
                if items.is_empty() {
                    return Err(ann_err(k, v, "empty list".into()));
                }
                Ok(items)
            };
            let s = Selectors {
                use_types: list(spec.use_type_annotation, true)?,
                nouse_types: list(spec.nouse_type_annotation, true)?,
                use_uuids: list(spec.use_uuid_annotation, false)?,
                nouse_uuids: list(spec.nouse_uuid_annotation, false)?,
            };
            // A family without selectors is simply absent (the default: any card).
            if s != Selectors::default() {
                selectors.insert(f, s);
            }
        }

        let spec = pod.spec.as_ref();
        let init = spec
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or(&[]);
        let app = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
        let mut containers = Vec::with_capacity(init.len() + app.len());
        for (c, is_init) in init
            .iter()
            .map(|c| (c, true))
            .chain(app.iter().map(|c| (c, false)))
        {
            let devices = self.container_devices(&key, c, mode, &selectors)?;
            containers.push(ContainerRequest {
                name: c.name.clone(),
                init: is_init,
                devices,
            });
        }

        // Kubernetes' effective request: max(sum of app containers, largest init container).
        let mut cpu_app = 0u64;
        let mut mem_app = 0u64;
        let mut cpu_init = 0u64;
        let mut mem_init = 0u64;
        for (c, is_init) in init
            .iter()
            .map(|c| (c, true))
            .chain(app.iter().map(|c| (c, false)))
        {
            let (cpu, mem) = cpu_mem(&key, c)?;
            if is_init {
                cpu_init = cpu_init.max(cpu);
                mem_init = mem_init.max(mem);
            } else {
                cpu_app += cpu;
                mem_app += mem;
            }
        }
        Ok(PodRequest {
            key,
            uid: meta.uid.clone(),
            containers,
            cpu_milli: cpu_app.max(cpu_init),
            memory_mib: mem_app.max(mem_init),
            numa_bind,
            node_policy,
            device_policy,
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
        })
    }

    fn container_devices<'a>(
        &'a self,
        pod: &PodKey,
        c: &Container,
        mode: Option<DeviceMode>,
        selectors: &BTreeMap<FamilyId, Selectors>,
    ) -> Result<Vec<DeviceRequest>, RequestError> {
        let res = c.resources.as_ref();
        let limits = res.and_then(|r| r.limits.as_ref());
        let requests = res.and_then(|r| r.requests.as_ref());
        // Every (family position, slot) value the container lists, in one pass over its
        // resources. HAMi reads limits first and falls back to requests: a value from the
        // limits is never replaced.
        let mut found: SmallVec<[(usize, Slot, &str); 8]> = SmallVec::new();
        // A bit per position in `names` (one per family, far fewer than 128).
        let mut listed: u128 = 0;
        for (k, q) in limits.into_iter().chain(requests).flatten() {
            for &(i, slot) in self.by_resource.get(k.as_str()).into_iter().flatten() {
                if !found.iter().any(|&(j, s, _)| j == i && s == slot) {
                    found.push((i, slot, q.0.as_str()));
                    listed |= 1u128.checked_shl(i as u32).unwrap_or(0);
                }
            }
        }
        let err = |resource: &str, problem: String| RequestError::Resource {
            pod: pod.to_string(),
            container: c.name.clone(),
            resource: resource.to_string(),
            problem,
        };
        // Only the families one of whose resources the container lists can ask for anything;
        // visited in configuration order, as if every family were probed.
        let mut out = Vec::new();
        for (i, names) in self
            .names
            .iter()
            .enumerate()
            .filter(|(i, _)| listed & 1u128.checked_shl(*i as u32).unwrap_or(0) != 0)
        {
            let count_of = |name: &str, slot: Slot| -> Result<Option<u64>, RequestError> {
                match found.iter().find(|&&(j, s, _)| j == i && s == slot) {
                    None => Ok(None),
                    Some(&(_, _, v)) => {
                        quantity::parse_count(v).map(Some).map_err(|p| err(name, p))
                    }
                }
            };
            let named = |n: &'a Option<String>,
                         slot: Slot|
             -> Result<Option<(&'a String, u64)>, RequestError> {
                match n {
                    Some(n) => Ok(count_of(n, slot)?.map(|v| (n, v))),
                    None => Ok(None),
                }
            };
            let spec = names.family.spec();
            let count = count_of(&names.count, Slot::Count)?;
            let mem = named(&names.memory, Slot::Memory)?;
            let pct = named(&names.memory_pct, Slot::MemoryPct)?;
            let cores = named(&names.cores, Slot::Cores)?;
            let prio = named(&names.priority, Slot::Priority)?;
            if count.is_none() && mem.is_none() && pct.is_none() && cores.is_none() {
                continue;
            }
            let count = match count {
                Some(0) if mem.is_none() && pct.is_none() && cores.is_none() => continue,
                Some(0) | None => u64::from(self.default_count),
                Some(n) => n,
            };
            if count > 64 {
                return Err(err(
                    &names.count,
                    format!("{count} cards in one container is more than any node has"),
                ));
            }
            if count > 1 && !spec.multi_card {
                return Err(err(
                    &names.count,
                    format!("{} allows one card per container, asked {count}", spec.name),
                ));
            }
            if let Some((n, p)) = pct
                && p > 100
            {
                return Err(err(n, format!("percentage must be 0..=100, got {p}")));
            }
            if spec.quirk == Quirk::XpuGroups && ![1, 2, 4, 8].contains(&count) {
                return Err(err(
                    &names.count,
                    format!(
                        "{} takes 1, 2, 4 or 8 cards per container (HAMi's topology selection places no other count), asked {count}",
                        spec.name
                    ),
                ));
            }
            // Moore Threads asks memory and cores for all the container's cards: each card
            // gets an equal share (rounded down, as HAMi divides).
            let shared = spec.quirk == Quirk::TotalsAcrossCards && count > 1;
            let cores = cores.map(|(n, v)| (n, if shared { v / count } else { v }));
            if let Some((n, v)) = cores
                && v > 100
            {
                return Err(err(
                    n,
                    format!("cores are a percentage of one card and must be 0..=100, got {v}"),
                ));
            }
            if let Some((n, v)) = prio
                && v > 1
            {
                return Err(err(
                    n,
                    format!("priority must be 0 (high) or 1 (low), got {v}"),
                ));
            }
            let unit = spec.memory_unit_mib.max(1);
            // MetaX sGPU reads a memory value written with a unit as bytes (whole MiB, cut).
            let bytes_written = spec.quirk == Quirk::MemoryWithUnitIsBytes
                && found
                    .iter()
                    .any(|&(j, s, v)| j == i && s == Slot::Memory && has_byte_unit(v));
            if let Some((n, m)) = mem
                && bytes_written
                && m >> 20 > i32::MAX as u64
            {
                return Err(err(n, format!("{} MiB is more than any card has", m >> 20)));
            }
            let memory = match (mem, pct) {
                (Some((_, m)), _) if bytes_written && m >> 20 > 0 => MemoryRequest::Mib(m >> 20),
                (Some(_), _) if bytes_written => MemoryRequest::Percent(100),
                (Some((_, m)), _) if m > 0 => MemoryRequest::Mib(m * unit * self.memory_factor),
                (_, Some((_, p))) if p > 0 => MemoryRequest::Percent(p as u32),
                _ if self.default_memory > 0 && names.family == FamilyId::NVIDIA => {
                    MemoryRequest::Mib(self.default_memory)
                }
                _ => MemoryRequest::Percent(100),
            };
            let mut cores_v = match (cores, spec.cores_unasked) {
                (Some((_, v)), _) => v as u32,
                (None, Some(fixed)) => fixed,
                (None, None) if names.family == FamilyId::NVIDIA => self.default_cores,
                (None, None) => 0,
            };
            // HAMi >= 2.8: a whole-card request without a compute share takes the card
            // exclusively (families with their own answer keep it).
            if memory == MemoryRequest::Percent(100)
                && cores_v == 0
                && spec.cores_resource.is_some()
                && spec.cores_unasked.is_none()
            {
                cores_v = 100;
            }
            let memory = match memory {
                MemoryRequest::Mib(m) if shared => MemoryRequest::Mib(m / count),
                other => other,
            };
            let mode = if names.family == FamilyId::NVIDIA {
                mode
            } else {
                None
            };
            if spec.quirk != Quirk::Mig && mode == Some(DeviceMode::Mig) {
                return Err(err(
                    &names.count,
                    "MIG mode is only available for NVIDIA cards".into(),
                ));
            }
            out.push(DeviceRequest {
                family: names.family,
                count: count as u32,
                memory,
                cores: cores_v,
                priority: prio.map(|(_, v)| v as u32),
                mode,
                selectors: selectors.get(&names.family).cloned().unwrap_or_default(),
            });
        }
        debug_assert!(out.windows(2).all(|w| w[0].family < w[1].family));
        Ok(out)
    }
}

/// Whether a quantity is written with a unit of bytes (`8Gi`, `1500M`, `2k`): what HAMi's
/// MetaX code takes for a byte count. A bare number, milli (`1000m`) or an exponent (`5e0`)
/// is not one.
fn has_byte_unit(text: &str) -> bool {
    const UNITS: [&str; 12] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let t = text.trim();
    UNITS.iter().any(|u| {
        t.strip_suffix(u)
            .is_some_and(|num| num.ends_with(|c: char| c.is_ascii_digit() || c == '.'))
    })
}

fn cpu_mem(pod: &PodKey, c: &Container) -> Result<(u64, u64), RequestError> {
    let res = c.resources.as_ref();
    let pick = |name: &str| {
        res.and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(name))
            .or_else(|| {
                res.and_then(|r| r.limits.as_ref())
                    .and_then(|m| m.get(name))
            })
            .map(|q| q.0.as_str())
    };
    let err = |resource: &str, problem: String| RequestError::Resource {
        pod: pod.to_string(),
        container: c.name.clone(),
        resource: resource.to_string(),
        problem,
    };
    let cpu = match pick("cpu") {
        Some(v) => quantity::parse_cpu_milli(v).map_err(|p| err("cpu", p))?,
        None => 0,
    };
    let mem = match pick("memory") {
        Some(v) => quantity::parse_memory_mib(v).map_err(|p| err("memory", p))?,
        None => 0,
    };
    Ok((cpu, mem))
}

#[cfg(test)]
mod type_match_tests {
    use super::contains_ci;

    #[test]
    fn matches_like_a_lower_cased_copy() {
        let models = ["NVIDIA-A100-SXM4-80GB", "Tesla V100", "", "ÄV100x", "a100"];
        let needles = ["a100", "v100", "", "x", "nvidia-a100-sxm4-80gb-long", "äv"];
        for m in models {
            for n in needles {
                assert_eq!(
                    contains_ci(m, n),
                    m.to_ascii_lowercase().contains(n),
                    "{m:?} ∋ {n:?}"
                );
            }
        }
    }
}
