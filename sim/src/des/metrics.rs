//! Named metrics of a run: what they mean, their unit, and which direction is better.

use serde::{Deserialize, Serialize};

/// Every scalar metric a run reports (the keys of `metrics` in `results.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricName {
    /// Time-averaged share of card compute (cores) granted, 0..1.
    AllocationRatio,
    /// Time-averaged share of card memory granted, 0..1.
    MemoryRatio,
    /// Time-averaged share of cards holding at least one grant, 0..1.
    CardsRatio,
    /// Time-averaged FGD fragmentation for the scenario's request mix, share of GPU capacity.
    Fragmentation,
    /// Time-averaged GPU capacity (card equivalents of compute) not granted.
    UnallocatedGpus,
    /// Median wait from arrival to placement, seconds.
    WaitP50,
    /// 95th percentile wait, seconds.
    WaitP95,
    /// 99th percentile wait, seconds.
    WaitP99,
    /// Time-averaged number of pending pods.
    PendingMean,
    /// Pending pods when the run ended.
    PendingEnd,
    /// Pods that arrived.
    Arrived,
    /// Placements (a resubmitted pod counts again).
    Placed,
    /// Scheduling attempts that found no node.
    Unschedulable,
    /// Pods whose request was invalid.
    Rejected,
    /// Pods failed by node loss and resubmitted.
    Evicted,
    /// Binds that failed (API faults) and were retried.
    BindFailures,
    /// Simulator events processed.
    Events,
    /// Placements per second of wall time.
    PlacementsPerSec,
    /// Events per second of wall time.
    EventsPerSec,
    /// Wall time of the run, seconds.
    WallSecs,
}

impl MetricName {
    /// Every metric, in report order.
    pub const ALL: [MetricName; 20] = [
        MetricName::AllocationRatio,
        MetricName::MemoryRatio,
        MetricName::CardsRatio,
        MetricName::Fragmentation,
        MetricName::UnallocatedGpus,
        MetricName::WaitP50,
        MetricName::WaitP95,
        MetricName::WaitP99,
        MetricName::PendingMean,
        MetricName::PendingEnd,
        MetricName::Arrived,
        MetricName::Placed,
        MetricName::Unschedulable,
        MetricName::Rejected,
        MetricName::Evicted,
        MetricName::BindFailures,
        MetricName::Events,
        MetricName::PlacementsPerSec,
        MetricName::EventsPerSec,
        MetricName::WallSecs,
    ];

    /// Default columns of the summary table.
    pub const DEFAULT_TABLE: [MetricName; 7] = [
        MetricName::AllocationRatio,
        MetricName::Fragmentation,
        MetricName::UnallocatedGpus,
        MetricName::WaitP99,
        MetricName::PendingMean,
        MetricName::Placed,
        MetricName::PlacementsPerSec,
    ];

    /// The name in files.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::AllocationRatio => "allocation_ratio",
            MetricName::MemoryRatio => "memory_ratio",
            MetricName::CardsRatio => "cards_ratio",
            MetricName::Fragmentation => "fragmentation",
            MetricName::UnallocatedGpus => "unallocated_gpus",
            MetricName::WaitP50 => "wait_p50",
            MetricName::WaitP95 => "wait_p95",
            MetricName::WaitP99 => "wait_p99",
            MetricName::PendingMean => "pending_mean",
            MetricName::PendingEnd => "pending_end",
            MetricName::Arrived => "arrived",
            MetricName::Placed => "placed",
            MetricName::Unschedulable => "unschedulable",
            MetricName::Rejected => "rejected",
            MetricName::Evicted => "evicted",
            MetricName::BindFailures => "bind_failures",
            MetricName::Events => "events",
            MetricName::PlacementsPerSec => "placements_per_s",
            MetricName::EventsPerSec => "events_per_s",
            MetricName::WallSecs => "wall_s",
        }
    }

    /// Parse a name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<MetricName, String> {
        MetricName::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown metric {s:?}; expected one of {}",
                    MetricName::ALL.map(|m| m.as_str()).join(", ")
                )
            })
    }

    /// Unit shown in tables (`""` for counts and ratios).
    pub fn unit(self) -> &'static str {
        match self {
            MetricName::WaitP50 | MetricName::WaitP95 | MetricName::WaitP99 => "s",
            MetricName::WallSecs => "s",
            MetricName::UnallocatedGpus => "GPUs",
            MetricName::PlacementsPerSec | MetricName::EventsPerSec => "/s",
            _ => "",
        }
    }

    /// Whether a larger value is better (for `beats` and regressions).
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            MetricName::AllocationRatio
                | MetricName::MemoryRatio
                | MetricName::CardsRatio
                | MetricName::Placed
                | MetricName::PlacementsPerSec
                | MetricName::EventsPerSec
                | MetricName::Arrived
        )
    }

    /// Whether the value depends only on the scenario and seed (not on the machine): only
    /// these are compared against baselines.
    pub fn deterministic(self) -> bool {
        !matches!(
            self,
            MetricName::PlacementsPerSec | MetricName::EventsPerSec | MetricName::WallSecs
        )
    }

    /// Whether the metric is a 0..1 ratio (shown as a percentage).
    pub fn is_ratio(self) -> bool {
        matches!(
            self,
            MetricName::AllocationRatio
                | MetricName::MemoryRatio
                | MetricName::CardsRatio
                | MetricName::Fragmentation
        )
    }

    /// One line of documentation.
    pub fn describe(self) -> &'static str {
        match self {
            MetricName::AllocationRatio => "time-averaged share of card compute granted (0..1)",
            MetricName::MemoryRatio => "time-averaged share of card memory granted (0..1)",
            MetricName::CardsRatio => "time-averaged share of cards with at least one grant (0..1)",
            MetricName::Fragmentation => {
                "time-averaged FGD fragmentation for the request mix, share of GPU capacity (0..1)"
            }
            MetricName::UnallocatedGpus => {
                "time-averaged GPU capacity not granted, card equivalents of compute"
            }
            MetricName::WaitP50 => {
                "median wait from arrival to first placement (a pod still waiting at the end counts the time so far), seconds"
            }
            MetricName::WaitP95 => "95th percentile wait (as wait_p50), seconds",
            MetricName::WaitP99 => "99th percentile wait (as wait_p50), seconds",
            MetricName::PendingMean => "time-averaged pending pods",
            MetricName::PendingEnd => "pending pods at the end",
            MetricName::Arrived => "pods that arrived",
            MetricName::Placed => "placements (resubmitted pods count again)",
            MetricName::Unschedulable => "scheduling attempts that found no node",
            MetricName::Rejected => "pods with an invalid request",
            MetricName::Evicted => "pods failed by node loss and resubmitted",
            MetricName::BindFailures => "binds that failed and were retried",
            MetricName::Events => "simulator events processed",
            MetricName::PlacementsPerSec => "placements per second of wall time",
            MetricName::EventsPerSec => "events per second of wall time",
            MetricName::WallSecs => "wall time of the run, seconds",
        }
    }

    /// Format a value for tables.
    pub fn format(self, v: f64) -> String {
        if v.is_nan() {
            return "–".into();
        }
        if self.is_ratio() {
            return format!("{:.1}%", v * 100.0);
        }
        match self {
            MetricName::WaitP50 | MetricName::WaitP95 | MetricName::WaitP99 => {
                format!("{v:.1}s")
            }
            MetricName::UnallocatedGpus | MetricName::PendingMean => format!("{v:.1}"),
            MetricName::WallSecs => format!("{v:.2}s"),
            MetricName::PlacementsPerSec | MetricName::EventsPerSec => {
                if v >= 1e6 {
                    format!("{:.2}M", v / 1e6)
                } else if v >= 1e3 {
                    format!("{:.1}k", v / 1e3)
                } else {
                    format!("{v:.0}")
                }
            }
            _ => format!("{v:.0}"),
        }
    }
}

impl std::fmt::Display for MetricName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MetricName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for MetricName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `q` quantile (0..=1) of sorted values, linear interpolation; NaN when empty.
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Mean and sample standard deviation; NaN values are skipped.
pub fn mean_sd(v: impl IntoIterator<Item = f64>) -> (f64, f64, usize) {
    let v: Vec<f64> = v.into_iter().filter(|x| !x.is_nan()).collect();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, sd, n)
}
