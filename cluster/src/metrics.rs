//! Prometheus metrics of the scheduler (prometheus-client).
//!
//! HAMi's allocation gauges (`hami_gpu_*`, `hami_node_gpu_*`, `hami_vgpu_*`) are computed from
//! the ledger at scrape time with HAMi's label names and the constant label `zone="vGPU"`;
//! filter/bind latency histograms and decision counters are kept as they happen.

use hami_core::ledger::Ledger;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};

/// Label set of the event metrics.
pub type Labels = Vec<(String, String)>;

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One gauge sample: labels and value.
type Sample = (Labels, f64);

/// A point-in-time copy of what the allocation gauges need, refreshed from the ledger.
#[derive(Debug, Default, Clone)]
pub struct LedgerSnapshot {
    families: Vec<(&'static str, &'static str, Vec<Sample>)>,
}

impl LedgerSnapshot {
    /// Compute every allocation gauge from `ledger`.
    pub fn from_ledger(ledger: &Ledger) -> LedgerSnapshot {
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
                    mem_ratio.push((l(&base), u.used_mem as f64 / d.memory_mib as f64));
                }
            }
        }
        for (key, grant) in ledger.grants() {
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
                }
            }
        }
        LedgerSnapshot {
            families: vec![
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
                    "GPU memory allocated ratio on a certain GPU",
                    mem_ratio,
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
            ],
        }
    }
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
        }
    }

    /// Refresh the allocation gauges from `ledger` (called right before encoding).
    pub fn refresh(&self, ledger: &Ledger) {
        let snap = LedgerSnapshot::from_ledger(ledger);
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
