//! Running every variant × policy × seed in parallel, the `results.json` schema, expectation
//! checks and baseline comparison.
//!
//! `results.json` (schema `hami-sim/results/v1`):
//! ```text
//! { "schema": "hami-sim/results/v1", "scenario": NAME, "description": TEXT,
//!   "seeds": [u64], "policies": [NAME], "variants": [NAME],
//!   "metrics_doc": { METRIC: "what it means" },
//!   "runs": [ { "variant", "policy", "seed", "event_log_hash",
//!               "metrics": { METRIC: f64 },            // every metric of MetricName
//!               "reasons": { REASON: count },          // unschedulable attempts by main reason
//!               "pools": { POOL: share },              // time-averaged compute allocation
//!               "wait_quantiles": [f64; 101],           // seconds at 0,1,…,100 %
//!               "per_arrival": [[arrived_pct, allocation]],
//!               "series": [ {t, allocation, memory, cards, fragmentation, pending, running} ],
//!               "errors": [TEXT] } ],
//!   "summary": { VARIANT: { POLICY: { METRIC: {"mean", "sd", "n"} } } },
//!   "verdicts": [ {"expectation", "pass", "detail"} ] }
//! ```

use super::engine::{CheckerThread, Engine, RunOptions, RunOutput, Sample};
use super::expect::{Expectation, Verdict};
use super::metrics::{MetricName, mean_sd};
use super::model::Scenario;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One run in `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Variant name.
    pub variant: String,
    /// Policy name.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Event-log hash (hex FNV-1a).
    pub event_log_hash: String,
    /// Every metric.
    pub metrics: BTreeMap<String, f64>,
    /// Unschedulable attempts by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Per-pool compute allocation (time-averaged share of the pool's core units).
    pub pools: BTreeMap<String, f64>,
    /// Per-pool memory allocation (time-averaged share of the pool's card memory); absent in
    /// files written before it was added.
    #[serde(default)]
    pub pools_memory: BTreeMap<String, f64>,
    /// Wait quantiles 0..=100 %, seconds.
    pub wait_quantiles: Vec<f64>,
    /// (arrived %, allocation) per arrival, thinned.
    pub per_arrival: Vec<(f64, f64)>,
    /// Time series.
    pub series: Vec<Sample>,
    /// Rejected requests and node errors.
    pub errors: Vec<String>,
}

/// Mean, sample sd and count of one metric over seeds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub sd: f64,
    /// Seeds.
    pub n: usize,
}

/// The whole `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `hami-sim/results/v1`.
    pub schema: String,
    /// Scenario name.
    pub scenario: String,
    /// Description.
    pub description: String,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Policies in file order.
    pub policies: Vec<String>,
    /// Variants.
    pub variants: Vec<String>,
    /// What each metric means.
    pub metrics_doc: BTreeMap<String, String>,
    /// Every run.
    pub runs: Vec<RunRecord>,
    /// variant → policy → metric → stat.
    pub summary: BTreeMap<String, BTreeMap<String, BTreeMap<String, Stat>>>,
    /// Expectation outcomes.
    pub verdicts: Vec<Verdict>,
}

impl RunRecord {
    fn of(variant: &str, policy: &str, seed: u64, o: RunOutput) -> RunRecord {
        RunRecord {
            variant: variant.into(),
            policy: policy.into(),
            seed,
            event_log_hash: o.event_log_hash,
            metrics: o.metrics,
            reasons: o.reasons,
            pools: o.pools,
            pools_memory: o.pools_memory,
            wait_quantiles: o.wait_quantiles,
            per_arrival: o.per_arrival,
            series: o.series,
            errors: o.errors,
        }
    }
}

/// Progress callbacks (the CLI draws a bar; tests pass a no-op).
pub trait Progress: Sync {
    /// `total` runs are about to start.
    fn start(&self, total: usize);
    /// One run finished.
    fn done(&self, what: &str);
}

/// No progress output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _total: usize) {}
    fn done(&self, _what: &str) {}
}

/// Run every variant × policy × seed on `jobs` threads. The first failing run's error (with its
/// `rerun with SEED=…`) is returned.
pub fn run_all(sc: &Scenario, jobs: usize, progress: &dyn Progress) -> Result<Results, String> {
    let mut work = Vec::new();
    for (vi, v) in sc.variants.iter().enumerate() {
        for (pi, _) in sc.policies.iter().enumerate() {
            for &seed in &sc.seeds {
                work.push((vi, pi, seed));
                let _ = v;
            }
        }
    }
    progress.start(work.len());
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<RunRecord, String>>>> = Mutex::new(vec![None; work.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(work.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(vi, pi, seed)) = work.get(i) else {
                        break;
                    };
                    let v = &sc.variants[vi];
                    let p = &sc.policies[pi];
                    // While every thread here has a run, no core is free for a run's own
                    // helper (its checker and metric): they would only share the cores. Once
                    // fewer runs are left than threads, the idle cores are theirs.
                    let opts = RunOptions {
                        checker_thread: if work.len() - i >= jobs {
                            CheckerThread::This
                        } else {
                            CheckerThread::Auto
                        },
                        ..RunOptions::default()
                    };
                    let r = Engine::new(sc, v, p, seed, opts)
                        .run()
                        .map(|o| RunRecord::of(&v.name, &p.name, seed, o));
                    progress.done(&format!("{} {} seed {seed}", v.name, p.name));
                    if let Ok(mut g) = out.lock() {
                        g[i] = Some(r);
                    }
                }
            });
        }
    });
    let slots = out.into_inner().map_err(|_| "a run panicked".to_string())?;
    let mut runs = Vec::new();
    for r in slots {
        match r {
            Some(Ok(r)) => runs.push(r),
            Some(Err(e)) => return Err(e),
            None => return Err("a run did not finish".into()),
        }
    }
    Ok(assemble(sc, runs))
}

/// Build the summary and verdicts around finished runs.
pub fn assemble(sc: &Scenario, runs: Vec<RunRecord>) -> Results {
    let mut summary: BTreeMap<String, BTreeMap<String, BTreeMap<String, Stat>>> = BTreeMap::new();
    for v in &sc.variants {
        for p in &sc.policies {
            let mine: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| r.variant == v.name && r.policy == p.name)
                .collect();
            let mut m = BTreeMap::new();
            for metric in MetricName::ALL {
                let (mean, sd, n) = mean_sd(
                    mine.iter()
                        .filter_map(|r| r.metrics.get(metric.as_str()).copied()),
                );
                m.insert(metric.as_str().to_string(), Stat { mean, sd, n });
            }
            summary
                .entry(v.name.clone())
                .or_default()
                .insert(p.name.clone(), m);
        }
    }
    let mut res = Results {
        schema: "hami-sim/results/v1".into(),
        scenario: sc.file.name.clone(),
        description: sc.file.description.clone(),
        seeds: sc.seeds.clone(),
        policies: sc.policies.iter().map(|p| p.name.clone()).collect(),
        variants: sc.variants.iter().map(|v| v.name.clone()).collect(),
        metrics_doc: MetricName::ALL
            .iter()
            .map(|m| (m.as_str().to_string(), m.describe().to_string()))
            .collect(),
        runs,
        summary,
        verdicts: Vec::new(),
    };
    res.verdicts = verdicts(&sc.expect, &res);
    res
}

fn mean_of(res: &Results, variant: &str, policy: &str, m: MetricName) -> f64 {
    res.summary
        .get(variant)
        .and_then(|v| v.get(policy))
        .and_then(|p| p.get(m.as_str()))
        .map(|s| s.mean)
        .unwrap_or(f64::NAN)
}

/// Evaluate expectations on the mean over seeds, for every variant.
pub fn verdicts(expect: &[Expectation], res: &Results) -> Vec<Verdict> {
    let mut out = Vec::new();
    for e in expect {
        for v in &res.variants {
            let at = if res.variants.len() > 1 {
                format!(" [{v}]")
            } else {
                String::new()
            };
            match e {
                Expectation::Threshold {
                    policy,
                    metric,
                    op,
                    value,
                } => {
                    let pols: Vec<&String> = match policy {
                        Some(p) => vec![p],
                        None => res.policies.iter().collect(),
                    };
                    for p in pols {
                        let got = mean_of(res, v, p, *metric);
                        let pass = op.holds(got, *value);
                        let by = if pass {
                            String::new()
                        } else {
                            format!(", off by {}", metric.format((got - value).abs()))
                        };
                        out.push(Verdict {
                            expectation: format!("{e}{at}"),
                            pass,
                            detail: format!(
                                "{p}: {metric} = {} (needs {} {}{by})",
                                metric.format(got),
                                op.as_str(),
                                metric.format(*value)
                            ),
                        });
                    }
                }
                Expectation::Beats { a, b, metric } => {
                    let va = mean_of(res, v, a, *metric);
                    let vb = mean_of(res, v, b, *metric);
                    let pass = if metric.higher_is_better() {
                        va > vb
                    } else {
                        va < vb
                    };
                    out.push(Verdict {
                        expectation: format!("{e}{at}"),
                        pass,
                        detail: format!(
                            "{a}: {} vs {b}: {} ({} is better; difference {})",
                            metric.format(va),
                            metric.format(vb),
                            if metric.higher_is_better() {
                                "higher"
                            } else {
                                "lower"
                            },
                            metric.format((va - vb).abs())
                        ),
                    });
                }
            }
        }
    }
    out
}

/// A stored baseline: the mean of every deterministic metric per variant and policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// `hami-sim/baseline/v1`.
    pub schema: String,
    /// Scenario name.
    pub scenario: String,
    /// Seeds the baseline was made with.
    pub seeds: Vec<u64>,
    /// Relative tolerance (0.02 = 2 %) before a worse value is a regression.
    pub tolerance: f64,
    /// Absolute slack added to the tolerance (so values near zero do not flap).
    pub slack: f64,
    /// variant → policy → metric → mean.
    pub metrics: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// variant → policy → seed → event-log hash (informative: a change means the decisions
    /// changed, not that they got worse).
    pub hashes: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

impl Baseline {
    /// The baseline of finished results.
    pub fn of(res: &Results, tolerance: f64, slack: f64) -> Baseline {
        let mut metrics: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>> =
            BTreeMap::new();
        for (v, pols) in &res.summary {
            for (p, ms) in pols {
                for m in MetricName::ALL.iter().filter(|m| m.deterministic()) {
                    if let Some(s) = ms.get(m.as_str()) {
                        metrics
                            .entry(v.clone())
                            .or_default()
                            .entry(p.clone())
                            .or_default()
                            .insert(m.as_str().to_string(), round6(s.mean));
                    }
                }
            }
        }
        let mut hashes: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>> =
            BTreeMap::new();
        for r in &res.runs {
            hashes
                .entry(r.variant.clone())
                .or_default()
                .entry(r.policy.clone())
                .or_default()
                .insert(r.seed.to_string(), r.event_log_hash.clone());
        }
        Baseline {
            schema: "hami-sim/baseline/v1".into(),
            scenario: res.scenario.clone(),
            seeds: res.seeds.clone(),
            tolerance,
            slack,
            metrics,
            hashes,
        }
    }
}

fn round6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        x
    }
}

/// One metric that got worse than the baseline allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Variant.
    pub variant: String,
    /// Policy.
    pub policy: String,
    /// Metric.
    pub metric: MetricName,
    /// Baseline mean.
    pub was: f64,
    /// Current mean.
    pub now: f64,
}

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rel = if self.was.abs() > 1e-12 {
            format!(
                " ({:+.1} %)",
                100.0 * (self.now - self.was) / self.was.abs()
            )
        } else {
            String::new()
        };
        write!(
            f,
            "{} / {}: {} regressed from {} to {}{rel} ({} is better)",
            self.variant,
            self.policy,
            self.metric,
            self.metric.format(self.was),
            self.metric.format(self.now),
            if self.metric.higher_is_better() {
                "higher"
            } else {
                "lower"
            }
        )
    }
}

/// Compare results against a baseline: every deterministic metric that got worse by more than
/// `tolerance × |baseline| + slack`. Also lists what is missing on either side as notes.
pub fn compare(res: &Results, base: &Baseline) -> (Vec<Regression>, Vec<String>) {
    let mut regs = Vec::new();
    let mut notes = Vec::new();
    for (v, pols) in &base.metrics {
        for (p, ms) in pols {
            for (m, &was) in ms {
                let Ok(metric) = MetricName::parse(m) else {
                    notes.push(format!("baseline metric {m:?} is unknown; ignored"));
                    continue;
                };
                let now = mean_of(res, v, p, metric);
                if now.is_nan() && !was.is_nan() {
                    notes.push(format!("{v} / {p}: {m} missing from this run"));
                    continue;
                }
                if was.is_nan() || now.is_nan() {
                    continue;
                }
                let allowed = base.tolerance * was.abs() + base.slack;
                let worse = if metric.higher_is_better() {
                    was - now
                } else {
                    now - was
                };
                if worse > allowed {
                    regs.push(Regression {
                        variant: v.clone(),
                        policy: p.clone(),
                        metric,
                        was,
                        now,
                    });
                }
            }
        }
    }
    for r in &res.runs {
        if let Some(h) = base
            .hashes
            .get(&r.variant)
            .and_then(|x| x.get(&r.policy))
            .and_then(|x| x.get(&r.seed.to_string()))
            && *h != r.event_log_hash
        {
            notes.push(format!(
                "{} / {} / seed {}: event-log hash changed ({h} → {}): decisions differ from the baseline",
                r.variant, r.policy, r.seed, r.event_log_hash
            ));
        }
    }
    (regs, notes)
}

/// What `hami sim check` found.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The results of the runs.
    pub results: Results,
    /// Failed expectations.
    pub failed: Vec<Verdict>,
    /// Regressions against the baseline.
    pub regressions: Vec<Regression>,
    /// Notes (hash changes, missing metrics).
    pub notes: Vec<String>,
}

impl CheckOutcome {
    /// Whether the check passes.
    pub fn pass(&self) -> bool {
        self.failed.is_empty() && self.regressions.is_empty()
    }

    /// A readable report, one line per finding.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for v in &self.results.verdicts {
            s.push_str(&format!(
                "{} {} — {}\n",
                if v.pass { "PASS" } else { "FAIL" },
                v.expectation,
                v.detail
            ));
        }
        for r in &self.regressions {
            s.push_str(&format!("REGRESSION {r}\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s.push_str(if self.pass() {
            "check passed\n"
        } else {
            "check FAILED\n"
        });
        s
    }
}

/// Read a baseline file; errors name the file.
pub fn read_baseline(path: &std::path::Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a baseline file: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Run a scenario and check its expectations and, when given, a baseline.
pub fn check_scenario(
    sc: &Scenario,
    baseline: Option<&Baseline>,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<CheckOutcome, String> {
    let results = run_all(sc, jobs, progress)?;
    let failed = results
        .verdicts
        .iter()
        .filter(|v| !v.pass)
        .cloned()
        .collect();
    let (regressions, notes) = match baseline {
        Some(b) => {
            let mut notes = Vec::new();
            if b.scenario != results.scenario {
                notes.push(format!(
                    "baseline was made for scenario {:?}, this is {:?}",
                    b.scenario, results.scenario
                ));
            }
            if b.seeds != results.seeds {
                notes.push(format!(
                    "baseline seeds {:?} differ from these {:?} (SEED set?)",
                    b.seeds, results.seeds
                ));
            }
            let (r, n) = compare(&results, b);
            notes.extend(n);
            (r, notes)
        }
        None => (Vec::new(), Vec::new()),
    };
    Ok(CheckOutcome {
        results,
        failed,
        regressions,
        notes,
    })
}
