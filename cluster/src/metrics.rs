//! Prometheus metrics of the scheduler (prometheus-client).
//!
//! HAMi's allocation gauges (`hami_gpu_*`, `hami_node_gpu_*`, `hami_vgpu_*`,
//! `hami_resource_quota_*`) are computed from the ledger at scrape time with HAMi's label names
//! and the constant label `zone="vGPU"`; filter/bind latency histograms and decision counters
//! are kept as they happen. With legacy names on (HAMi's `--legacy-metrics`), the pre-v2.9
//! names and labels (`GPUDeviceMemoryLimit{nodeid,deviceuuid,…}`, `vGPUMemoryAllocated`,
//! `QuotaUsed`, …) are emitted alongside the current ones, so old dashboards keep working.
//!
//! `hami_node_gpu_mig_instance_info` (legacy `nodeGPUMigInstance`) needs what the ledger does not
//! hold: the runtime identity (MIG UUID, GPU and compute instance ids) the device plugin writes
//! into a pod's `hami.io/vgpu-mig-allocations` once it created the instance. The pod watch feeds
//! those values in ([`Metrics::observe_pod`]); a series appears for each instance whose pod
//! still holds its grant and whose identity is complete, as in HAMi.

use crate::quota::QuotaNames;
use hami_core::codec::{MigAllocation, decode_checked_mig_allocations, keys};
use hami_core::family::FamilyId;
use hami_core::ledger::{Ledger, Quota};
use hami_core::model::DeviceMode;
use hami_core::request::PodKey;
use k8s_openapi::api::core::v1::Pod;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Label set of the event metrics.
pub type Labels = Vec<(String, String)>;

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One gauge sample: labels and value.
type Sample = (Labels, f64);

/// Builds a sample's labels from `(name, value)` pairs (adding the constant ones).
type LabelFn<'a> = dyn Fn(&[(&str, String)]) -> Labels + 'a;

/// A point-in-time copy of what the allocation gauges need, refreshed from the ledger.
#[derive(Debug, Default, Clone)]
pub struct LedgerSnapshot {
    families: Vec<(&'static str, &'static str, Vec<Sample>)>,
}

/// Namespace quotas as the metrics show them: every family's resource names and each
/// namespace's limits.
#[derive(Debug, Clone, Default)]
pub struct QuotaView {
    /// Memory and core resource names per family (the `quota_name` label).
    pub names: QuotaNames,
    /// Effective quota per namespace.
    pub quotas: BTreeMap<String, Quota>,
}

/// MIG allocations per pod as the device plugin last recorded them (decoded and checked).
pub type MigView = BTreeMap<PodKey, Vec<MigAllocation>>;

impl LedgerSnapshot {
    /// Compute every allocation gauge from `ledger` (current names only, no quotas).
    pub fn from_ledger(ledger: &Ledger) -> LedgerSnapshot {
        LedgerSnapshot::compute(ledger, &QuotaView::default(), &MigView::new(), false)
    }

    /// Compute every gauge from `ledger`, the namespace quotas and the pods' recorded MIG
    /// allocations; with `legacy`, HAMi's pre-v2.9 names and labels too.
    ///
    /// Quotas, per family as HAMi keys them by resource name: `hami_resource_quota_used` for
    /// every namespace and resource with a grant or a limit (HAMi also reports usage where no
    /// quota is set, with `limit="0"`), `hami_resource_quota_limit` where a limit is set. Memory
    /// is in MiB as granted (after `memoryFactor` and the vendor unit), limits in the same MiB;
    /// HAMi's limit label and gauge carry the quota's raw number instead, which is the same
    /// whenever a memory unit is 1 MiB.
    ///
    /// MIG: one `hami_node_gpu_mig_instance_info` (value 1) per instance with a complete runtime
    /// identity on a card in MIG mode, held by a pod that still holds a grant of that card.
    pub fn compute(
        ledger: &Ledger,
        quotas: &QuotaView,
        mig: &MigView,
        legacy: bool,
    ) -> LedgerSnapshot {
        const MIB: f64 = 1024.0 * 1024.0;
        let mut limit = Vec::new();
        let mut core_limit = Vec::new();
        let mut mem_alloc = Vec::new();
        let mut shared = Vec::new();
        let mut core_alloc = Vec::new();
        let mut overview = Vec::new();
        let mut mem_ratio = Vec::new();
        let mut vmem = Vec::new();
        let mut vcore = Vec::new();
        let l = |pairs: &[(&str, String)]| -> Labels {
            let mut v: Labels = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            v.push(("zone".into(), "vGPU".into()));
            v
        };
        for view in ledger.views() {
            let node = view.node.name.clone();
            for (i, d) in view.node.devices.iter().enumerate() {
                let u = view.usage.get(i).copied().unwrap_or_default();
                let base = [
                    ("node", node.clone()),
                    ("device_uuid", d.uuid.clone()),
                    ("device_index", d.index.to_string()),
                ];
                let with_type = |extra: &[(&str, String)]| {
                    let mut p: Vec<(&str, String)> = base.to_vec();
                    p.extend_from_slice(extra);
                    p.push(("device_type", d.model.clone()));
                    l(&p)
                };
                limit.push((with_type(&[]), d.memory_mib as f64 * MIB));
                core_limit.push((with_type(&[]), f64::from(d.cores)));
                mem_alloc.push((
                    with_type(&[("device_cores", d.cores.to_string())]),
                    u.used_mem as f64 * MIB,
                ));
                shared.push((with_type(&[]), f64::from(u.used)));
                core_alloc.push((with_type(&[]), f64::from(u.used_cores)));
                overview.push((
                    with_type(&[
                        ("device_cores", d.cores.to_string()),
                        ("device_memory_limit", d.memory_mib.to_string()),
                    ]),
                    u.used_mem as f64 * MIB,
                ));
                if d.memory_mib > 0 {
                    mem_ratio.push((with_type(&[]), u.used_mem as f64 / d.memory_mib as f64));
                }
            }
        }
        let mut ns_used: BTreeMap<(&str, FamilyId), (u64, u64)> = BTreeMap::new();
        // The scrape lists pods in key order (the ledger's map is hashed).
        let mut grants: Vec<_> = ledger.grants().iter().collect();
        grants.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, grant) in grants {
            for (ci, ctr) in grant.containers.iter().enumerate() {
                for dev in ctr {
                    let labels = l(&[
                        ("namespace", key.namespace.clone()),
                        ("node", grant.node.clone()),
                        ("pod", key.name.clone()),
                        ("container_index", ci.to_string()),
                        ("device_uuid", dev.uuid.clone()),
                    ]);
                    vmem.push((labels.clone(), dev.memory_mib as f64 * MIB));
                    vcore.push((labels, f64::from(dev.cores)));
                    let u = ns_used
                        .entry((key.namespace.as_str(), dev.family))
                        .or_default();
                    u.0 += dev.memory_mib;
                    u.1 += u64::from(dev.cores);
                }
            }
        }
        // (namespace, resource, used, limit) per family resource with usage or a limit.
        let mut cells: std::collections::BTreeSet<(&str, FamilyId)> =
            ns_used.keys().copied().collect();
        for (ns, q) in &quotas.quotas {
            cells.extend(q.families().map(|(f, _)| (ns.as_str(), f)));
        }
        let mut quota_rows: Vec<(String, String, u64, Option<u64>)> = Vec::new();
        for (ns, f) in cells {
            let (mem, cores) = ns_used.get(&(ns, f)).copied().unwrap_or_default();
            let fq = quotas.quotas.get(ns).map(|q| q.get(f)).unwrap_or_default();
            // Usage of a family counts both its resources (HAMi's usage entries); a family
            // only limited shows the resources it limits (HAMi's quota entries).
            let in_use = ns_used.contains_key(&(ns, f));
            if let Some(r) = quotas.names.memory_resource(f)
                && (in_use || fq.memory_mib.is_some())
            {
                quota_rows.push((ns.to_string(), r.to_string(), mem, fq.memory_mib));
            }
            if let Some(r) = quotas.names.cores_resource(f)
                && (in_use || fq.cores.is_some())
            {
                quota_rows.push((ns.to_string(), r.to_string(), cores, fq.cores));
            }
        }
        let quota_used: Vec<Sample> = quota_rows
            .iter()
            .map(|(ns, r, used, limit)| {
                (
                    l(&[
                        ("namespace", ns.clone()),
                        ("quota_name", r.clone()),
                        ("limit", limit.unwrap_or(0).to_string()),
                    ]),
                    *used as f64,
                )
            })
            .collect();
        let quota_limit: Vec<Sample> = quota_rows
            .iter()
            .filter_map(|(ns, r, _, limit)| {
                let limit = (*limit)?;
                Some((
                    l(&[("namespace", ns.clone()), ("quota_name", r.clone())]),
                    limit as f64,
                ))
            })
            .collect();
        let (mig_info, legacy_mig) = mig_samples(ledger, mig, &l);
        let mut families = vec![
            (
                "hami_gpu_memory_limit_bytes",
                "Device memory limit for a certain GPU",
                limit,
            ),
            (
                "hami_gpu_core_limit_ratio",
                "Device core limit for a certain GPU",
                core_limit,
            ),
            (
                "hami_gpu_memory_allocated_bytes",
                "Device memory allocated for a certain GPU",
                mem_alloc,
            ),
            (
                "hami_gpu_shared_count",
                "Number of containers sharing this GPU",
                shared,
            ),
            (
                "hami_gpu_core_allocated_ratio",
                "Device core allocated for a certain GPU",
                core_alloc,
            ),
            (
                "hami_node_gpu_overview",
                "GPU overview on a certain node",
                overview,
            ),
            (
                "hami_node_gpu_memory_allocated_ratio",
                "GPU Memory Allocated Percentage on a certain GPU",
                mem_ratio,
            ),
            (
                "hami_node_gpu_mig_instance_info",
                "Realized MIG instance identity and scheduler placement",
                mig_info,
            ),
            (
                "hami_vgpu_memory_allocated_bytes",
                "vGPU memory allocated from a container",
                vmem,
            ),
            (
                "hami_vgpu_core_allocated_ratio",
                "vGPU core allocated from a container",
                vcore,
            ),
            (
                "hami_resource_quota_used",
                "resourcequota usage for a certain device",
                quota_used,
            ),
            (
                "hami_resource_quota_limit",
                "resourcequota limit for a certain device",
                quota_limit,
            ),
        ];
        if legacy {
            families.extend(legacy_families(&families));
            families.push((
                "nodeGPUMigInstance",
                "GPU Sharing mode. 0 for hami-core, 1 for mig, 2 for mps",
                legacy_mig,
            ));
        }
        LedgerSnapshot { families }
    }

    /// Names of the metric families in this snapshot, in emission order.
    pub fn names(&self) -> Vec<&'static str> {
        self.families.iter().map(|(n, _, _)| *n).collect()
    }
}

/// The MIG instance series, current and legacy: for every pod in `mig` that still holds a
/// grant, each allocation with a complete runtime identity on a card of the grant that its node
/// runs in MIG mode. Legacy `nodeGPUMigInstance` names the instance `<profile>-<GI id>`.
fn mig_samples(ledger: &Ledger, mig: &MigView, l: &LabelFn<'_>) -> (Vec<Sample>, Vec<Sample>) {
    let mut current = Vec::new();
    let mut legacy = Vec::new();
    for (key, allocs) in mig {
        let Some(grant) = ledger.grant(key) else {
            continue;
        };
        let Some(entry) = ledger.node_id(&grant.node).and_then(|id| ledger.entry(id)) else {
            continue;
        };
        for a in allocs {
            let Some((mig_uuid, gi, ci)) = a.runtime_identity() else {
                continue;
            };
            let Some(dev) = entry
                .node
                .devices
                .iter()
                .find(|d| d.uuid == a.gpu_uuid && d.mode == DeviceMode::Mig)
            else {
                continue;
            };
            if !grant.devices().any(|d| d.uuid == a.gpu_uuid) {
                continue;
            }
            current.push((
                l(&[
                    ("node", grant.node.clone()),
                    ("device_uuid", dev.uuid.clone()),
                    ("device_index", dev.index.to_string()),
                    ("mig_uuid", mig_uuid.to_string()),
                    ("profile", a.profile.clone()),
                    ("gpu_instance_id", gi.to_string()),
                    ("compute_instance_id", ci.to_string()),
                    ("placement_start", a.placement.start.to_string()),
                    ("placement_size", a.placement.size.to_string()),
                ]),
                1.0,
            ));
            legacy.push((
                l(&[
                    ("nodeid", grant.node.clone()),
                    ("deviceuuid", dev.uuid.clone()),
                    ("deviceidx", dev.index.to_string()),
                    ("migname", format!("{}-{gi}", a.profile)),
                ]),
                1.0,
            ));
        }
    }
    (current, legacy)
}

/// One legacy family: the current name it mirrors, HAMi's old name, its help, and the label
/// renames (current → old). Labels absent from the renames are dropped (the legacy series had
/// fewer labels).
type LegacyFamily = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// HAMi's pre-v2.9 families, in HAMi's order.
const LEGACY: &[LegacyFamily] = &[
    (
        "hami_gpu_memory_limit_bytes",
        "GPUDeviceMemoryLimit",
        "Device memory limit for a certain GPU",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
            ("device_type", "devicetype"),
        ],
    ),
    (
        "hami_gpu_core_limit_ratio",
        "GPUDeviceCoreLimit",
        "Device memory core limit for a certain GPU",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
            ("device_type", "devicetype"),
        ],
    ),
    (
        "hami_gpu_memory_allocated_bytes",
        "GPUDeviceMemoryAllocated",
        "Device memory allocated for a certain GPU",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
            ("device_cores", "devicecores"),
            ("device_type", "devicetype"),
        ],
    ),
    (
        "hami_gpu_shared_count",
        "GPUDeviceSharedNum",
        "Number of containers sharing this GPU",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
            ("device_type", "devicetype"),
        ],
    ),
    (
        "hami_gpu_core_allocated_ratio",
        "GPUDeviceCoreAllocated",
        "Device core allocated for a certain GPU",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
            ("device_type", "devicetype"),
        ],
    ),
    (
        "hami_node_gpu_overview",
        "nodeGPUOverview",
        "GPU overview on a certain node",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
            ("device_cores", "devicecores"),
            ("device_memory_limit", "devicememorylimit"),
            ("device_type", "devicetype"),
        ],
    ),
    (
        "hami_node_gpu_memory_allocated_ratio",
        "nodeGPUMemoryPercentage",
        "GPU Memory Allocated Percentage on a certain GPU",
        &[
            ("node", "nodeid"),
            ("device_uuid", "deviceuuid"),
            ("device_index", "deviceidx"),
        ],
    ),
    (
        "hami_vgpu_memory_allocated_bytes",
        "vGPUMemoryAllocated",
        "vGPU memory allocated from a container",
        &[
            ("namespace", "podnamespace"),
            ("node", "nodename"),
            ("pod", "podname"),
            ("container_index", "containeridx"),
            ("device_uuid", "deviceuuid"),
        ],
    ),
    (
        "hami_vgpu_core_allocated_ratio",
        "vGPUCoreAllocated",
        "vGPU core allocated from a container",
        &[
            ("namespace", "podnamespace"),
            ("node", "nodename"),
            ("pod", "podname"),
            ("container_index", "containeridx"),
            ("device_uuid", "deviceuuid"),
        ],
    ),
    (
        "hami_resource_quota_used",
        "QuotaUsed",
        "resourcequota usage for a certain device",
        &[
            ("namespace", "quotanamespace"),
            ("quota_name", "quotaName"),
            ("limit", "limit"),
        ],
    ),
];

/// The legacy families derived from the current ones: same values, HAMi's old names and
/// labels (the constant `zone` label is kept, as HAMi's wrapping registerer adds it to all).
fn legacy_families(
    current: &[(&'static str, &'static str, Vec<Sample>)],
) -> Vec<(&'static str, &'static str, Vec<Sample>)> {
    let mut out = Vec::new();
    for (cur, old, help, renames) in LEGACY {
        let Some((_, _, samples)) = current.iter().find(|(n, _, _)| n == cur) else {
            continue;
        };
        let renamed = samples
            .iter()
            .map(|(labels, v)| {
                let ls: Labels = labels
                    .iter()
                    .filter_map(|(k, val)| {
                        if k == "zone" {
                            return Some((k.clone(), val.clone()));
                        }
                        renames
                            .iter()
                            .find(|(from, _)| from == k)
                            .map(|(_, to)| (to.to_string(), val.clone()))
                    })
                    .collect();
                (ls, *v)
            })
            .collect();
        out.push((*old, *help, renamed));
    }
    out
}

/// The collector that encodes the latest [`LedgerSnapshot`] on each scrape.
#[derive(Debug, Default)]
struct LedgerCollector {
    snapshot: Arc<RwLock<LedgerSnapshot>>,
}

impl Collector for LedgerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(_) => return Ok(()),
        };
        for (name, help, samples) in &snap.families {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, v) in samples {
                ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// Every scheduler metric, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshot: Arc<RwLock<LedgerSnapshot>>,
    filter_duration: Family<Labels, Histogram>,
    bind_duration: Family<Labels, Histogram>,
    filter_total: Family<Labels, Counter>,
    bind_total: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    api_writes: Family<Labels, Counter>,
    is_leader: Gauge,
    cache_synced: Gauge,
    legacy: AtomicBool,
    quotas: RwLock<QuotaView>,
    mig: RwLock<MigView>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with HAMi's names; `hami_build_info` carries this crate's version.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let snapshot = Arc::new(RwLock::new(LedgerSnapshot::default()));
        let hist = || Histogram::new(BUCKETS);
        let filter_duration = Family::<Labels, Histogram>::new_with_constructor(hist as fn() -> _);
        let bind_duration = Family::<Labels, Histogram>::new_with_constructor(hist as fn() -> _);
        let filter_total = Family::<Labels, Counter>::default();
        let bind_total = Family::<Labels, Counter>::default();
        let decisions = Family::<Labels, Counter>::default();
        let api_writes = Family::<Labels, Counter>::default();
        let is_leader = Gauge::default();
        let cache_synced = Gauge::default();
        let build = Family::<Labels, Gauge>::default();
        build
            .get_or_create(&vec![
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
                (
                    "revision".into(),
                    option_env!("HAMI_REVISION").unwrap_or("unknown").into(),
                ),
                (
                    "build_date".into(),
                    option_env!("HAMI_BUILD_DATE").unwrap_or("unknown").into(),
                ),
                ("go_version".into(), "none".into()),
                ("compiler".into(), "rustc".into()),
                (
                    "platform".into(),
                    format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
                ),
            ])
            .set(1);
        registry.register(
            "hami_build_info",
            "hami build metadata exposed as labels with a constant value of 1",
            build,
        );
        registry.register_collector(Box::new(LedgerCollector {
            snapshot: snapshot.clone(),
        }));
        registry.register(
            "hami_scheduler_filter_duration_seconds",
            "Time spent processing Filter requests",
            filter_duration.clone(),
        );
        registry.register(
            "hami_scheduler_bind_duration_seconds",
            "Time spent processing Bind requests",
            bind_duration.clone(),
        );
        registry.register(
            "hami_scheduler_filter",
            "Filter requests processed, by result",
            filter_total.clone(),
        );
        registry.register(
            "hami_scheduler_bind",
            "Bind requests processed, by result",
            bind_total.clone(),
        );
        registry.register(
            "hami_scheduler_decisions",
            "Scheduling decisions by result and main reason",
            decisions.clone(),
        );
        registry.register(
            "hami_scheduler_api_writes",
            "Kubernetes API writes issued, by kind",
            api_writes.clone(),
        );
        registry.register(
            "hami_scheduler_is_leader",
            "1 when this replica holds the leader lease",
            is_leader.clone(),
        );
        registry.register(
            "hami_scheduler_cache_synced",
            "1 once the node and pod caches are synced",
            cache_synced.clone(),
        );
        Metrics {
            registry,
            snapshot,
            filter_duration,
            bind_duration,
            filter_total,
            bind_total,
            decisions,
            api_writes,
            is_leader,
            cache_synced,
            legacy: AtomicBool::new(false),
            quotas: RwLock::new(QuotaView::default()),
            mig: RwLock::new(MigView::new()),
        }
    }

    /// Also emit HAMi's pre-v2.9 metric names and labels (HAMi's `--legacy-metrics`).
    pub fn set_legacy(&self, on: bool) {
        self.legacy.store(on, Ordering::SeqCst);
    }

    /// The NVIDIA family's resource names the quota metrics carry in `quota_name` (from the
    /// device config); the other families' come from the family table.
    pub fn set_quota_resources(&self, memory: &str, cores: &str) {
        if let Ok(mut q) = self.quotas.write() {
            q.names.set_nvidia(memory, cores);
        }
    }

    /// Every family's resource names for `quota_name` (from the device config).
    pub fn set_quota_names(&self, names: QuotaNames) {
        if let Ok(mut q) = self.quotas.write() {
            q.names = names;
        }
    }

    /// Keep the pod's recorded MIG allocations (`hami.io/vgpu-mig-allocations`, with the runtime
    /// identity the device plugin added) for `hami_node_gpu_mig_instance_info`. A pod without
    /// the annotation is forgotten. A value that does not decode or breaks HAMi's rules (a
    /// partial identity, a duplicate) is not used and the error names the pod and the key.
    pub fn observe_pod(&self, pod: &Pod) -> Result<(), String> {
        let key = hami_core::control::key_of(pod);
        let raw = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::MIG_ALLOCATIONS));
        let parsed = match raw {
            None => Ok(Vec::new()),
            Some(v) => decode_checked_mig_allocations(keys::MIG_ALLOCATIONS, v)
                .map_err(|e| format!("pod {key}: {e}")),
        };
        if let Ok(mut m) = self.mig.write() {
            match &parsed {
                Ok(a) if !a.is_empty() => {
                    m.insert(key, a.clone());
                }
                _ => {
                    m.remove(&key);
                }
            }
        }
        parsed.map(|_| ())
    }

    /// Forget a deleted pod's MIG allocations.
    pub fn forget_pod(&self, key: &PodKey) {
        if let Ok(mut m) = self.mig.write() {
            m.remove(key);
        }
    }

    /// Record a namespace's effective device quota (`None`: it has none any more).
    pub fn set_quota(&self, namespace: &str, quota: Option<Quota>) {
        if let Ok(mut q) = self.quotas.write() {
            match quota {
                Some(v) => q.quotas.insert(namespace.to_string(), v),
                None => q.quotas.remove(namespace),
            };
        }
    }

    /// Refresh the allocation gauges from `ledger` (called right before encoding).
    pub fn refresh(&self, ledger: &Ledger) {
        let quotas = self.quotas.read().map(|q| q.clone()).unwrap_or_default();
        let mig = self.mig.read().map(|m| m.clone()).unwrap_or_default();
        let snap =
            LedgerSnapshot::compute(ledger, &quotas, &mig, self.legacy.load(Ordering::SeqCst));
        if let Ok(mut s) = self.snapshot.write() {
            *s = snap;
        }
    }

    /// Record one filter: seconds taken and result (`success`, `failed`, `error`, `unmanaged`).
    pub fn filter_done(&self, seconds: f64, result: &str) {
        let l = vec![("result".to_string(), result.to_string())];
        self.filter_duration.get_or_create(&l).observe(seconds);
        self.filter_total.get_or_create(&l).inc();
    }

    /// Record one bind: seconds taken and result (`success`, `error`).
    pub fn bind_done(&self, seconds: f64, result: &str) {
        let l = vec![("result".to_string(), result.to_string())];
        self.bind_duration.get_or_create(&l).observe(seconds);
        self.bind_total.get_or_create(&l).inc();
    }

    /// Count a decision by result and reason word (`CardInsufficientMemory`, `none`, …).
    pub fn decision(&self, result: &str, reason: &str) {
        self.decisions
            .get_or_create(&vec![
                ("result".to_string(), result.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .inc();
    }

    /// Count one API write of `kind` (`patch_pod`, `bind`, `event`, `patch_node`).
    pub fn api_write(&self, kind: &str) {
        self.api_writes
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc();
    }

    /// Set the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.is_leader.set(i64::from(leader));
    }

    /// Set the cache-synced gauge.
    pub fn set_synced(&self, synced: bool) {
        self.cache_synced.set(i64::from(synced));
    }

    /// Encode everything in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_core::build::NodeBuilder;
    use hami_core::ledger::{DeviceGrant, FamilyQuota, PodGrant};

    fn grant(node: &str, cards: &[(&str, FamilyId, u64, u32)]) -> PodGrant {
        PodGrant {
            node: node.into(),
            containers: vec![
                cards
                    .iter()
                    .map(|(uuid, family, memory_mib, cores)| DeviceGrant {
                        uuid: (*uuid).into(),
                        family: *family,
                        memory_mib: *memory_mib,
                        cores: *cores,
                        mig: None,
                    })
                    .collect(),
            ],
            cpu_milli: 0,
            memory_mib: 0,
        }
    }

    /// Quota series per family, as HAMi keys them by resource name: usage for every namespace
    /// and family resource in use (limit "0" where none is set), limits only where set, and
    /// the legacy `QuotaUsed` beside them.
    #[test]
    fn quota_series_per_family() {
        let mlu = FamilyId::by_name("cambricon").expect("cambricon");
        let mut ledger = Ledger::new();
        ledger.upsert_node(NodeBuilder::new("g").gpus(1, "NVIDIA-T4", 16000).build());
        ledger.upsert_node(NodeBuilder::new("m").cards(1, mlu, "MLU370", 24576).build());
        let pods = [
            (
                "team",
                "a",
                grant("g", &[("GPU-g-0", FamilyId::NVIDIA, 3000, 30)]),
            ),
            ("team", "b", grant("m", &[("GPU-m-0", mlu, 2048, 20)])),
            (
                "free",
                "c",
                grant("g", &[("GPU-g-0", FamilyId::NVIDIA, 1000, 10)]),
            ),
        ];
        for (ns, name, g) in pods {
            ledger.reserve(&PodKey::new(ns, name), g).expect("reserve");
        }
        let m = Metrics::new();
        m.set_legacy(true);
        m.set_quota(
            "team",
            Some(
                Quota::new()
                    .with(mlu, FamilyQuota::memory(4096))
                    .with(FamilyId::NVIDIA, FamilyQuota::cores(100)),
            ),
        );
        m.set_quota("idle", Some(Quota::new().with(mlu, FamilyQuota::cores(0))));
        m.refresh(&ledger);
        let out = m.encode();
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.to_lowercase().contains("quota"))
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    /// A bad MIG value on a pod: an error naming pod and key, nothing kept; a good one kept;
    /// no annotation forgets.
    #[test]
    fn observe_pod_table() {
        use k8s_openapi::api::core::v1::Pod;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let pod = |v: Option<&str>| Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("p".into()),
                annotations: v.map(|v| [(keys::MIG_ALLOCATIONS.to_string(), v.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let good = r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-0","profile":"1g.10gb","placement":{"start":0,"size":1}}]"#;
        let duplicate = format!("{},{}", &good[..good.len() - 1], &good[1..]);
        let m = Metrics::new();
        let key = PodKey::new("ns", "p");
        let held = |m: &Metrics| m.mig.read().map(|x| x.contains_key(&key)).unwrap_or(false);
        // (what, value, Ok or the error's text, kept afterwards)
        type Case<'a> = (&'a str, Option<&'a str>, Result<(), &'a str>, bool);
        let cases: [Case<'_>; 5] = [
            ("reservation", Some(good), Ok(()), true),
            (
                "not JSON",
                Some("nope"),
                Err("pod ns/p: annotation hami.io/vgpu-mig-allocations"),
                false,
            ),
            ("good again", Some(good), Ok(()), true),
            (
                "duplicate",
                Some(duplicate.as_str()),
                Err("one allocation per container and device"),
                false,
            ),
            ("annotation removed", None, Ok(()), false),
        ];
        for (what, v, want, kept) in cases {
            let got = m.observe_pod(&pod(v));
            match (&got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(text)) => assert!(e.contains(text), "{what}: {e}"),
                _ => panic!("{what}: got {got:?}, want {want:?}"),
            }
            assert_eq!(held(&m), kept, "{what}");
        }
    }
}
