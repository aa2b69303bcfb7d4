//! Run scenarios × policies × seeds in parallel and write the results as CSV.
//!
//! Output files (in the output folder):
//! - `summary.csv`: `trace,policy,seed,pods,unallocated_pct_at_100,unallocated_pct_at_130,frag_pct_at_0`
//!   (the `trace` column is the scenario name; the tie rule is part of it for ablations);
//! - `runs.csv`: the same plus `tie,placed,wall_s`;
//! - `bins.csv`: every run's curve, `trace,tie,policy,seed,arrived_pct,unallocated_pct,frag_pct,frag_idle_pct`.
//!
//! Rows are appended as runs finish, so an interrupted matrix keeps what it computed.

use crate::replay::{Experiment, RunResult};
use crate::scenario::Scenario;
use crate::trace::Trace;
use hami_core::policy::NodePolicyKind;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One finished run with its scenario name.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub trace: String,
    /// Tie rule name.
    pub tie: String,
    /// The run.
    pub run: RunResult,
}

/// Results of a matrix, by scenario.
#[derive(Debug, Default)]
pub struct MatrixResult {
    /// Every run, in completion order.
    pub rows: Vec<Row>,
    /// Total wall time.
    pub wall: Duration,
}

struct Sinks {
    summary: std::fs::File,
    runs: std::fs::File,
    bins: std::fs::File,
}

fn create(dir: &Path, name: &str, header: &str) -> Result<std::fs::File, String> {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    writeln!(f, "{header}").map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(f)
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        format!("{x:.4}")
    }
}

impl Sinks {
    fn new(dir: &Path) -> Result<Sinks, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Sinks {
            summary: create(
                dir,
                "summary.csv",
                "trace,policy,seed,pods,unallocated_pct_at_100,unallocated_pct_at_130,frag_pct_at_0",
            )?,
            runs: create(
                dir,
                "runs.csv",
                "trace,tie,policy,seed,pods,placed,unallocated_pct_at_100,unallocated_pct_at_130,frag_pct_at_0,wall_s",
            )?,
            bins: create(
                dir,
                "bins.csv",
                "trace,tie,policy,seed,arrived_pct,unallocated_pct,frag_pct,frag_idle_pct",
            )?,
        })
    }

    fn write(&mut self, row: &Row) -> std::io::Result<()> {
        let r = &row.run;
        writeln!(
            self.summary,
            "{},{},{},{},{},{},{}",
            row.trace,
            r.policy,
            r.seed,
            r.pods,
            fmt(r.unallocated_at(100)),
            fmt(r.unallocated_at(130)),
            fmt(r.frag_pct_at_0)
        )?;
        writeln!(
            self.runs,
            "{},{},{},{},{},{},{},{},{},{:.3}",
            row.trace,
            row.tie,
            r.policy,
            r.seed,
            r.pods,
            r.placed,
            fmt(r.unallocated_at(100)),
            fmt(r.unallocated_at(130)),
            fmt(r.frag_pct_at_0),
            r.wall.as_secs_f64()
        )?;
        for b in &r.bins {
            writeln!(
                self.bins,
                "{},{},{},{},{},{},{},{}",
                row.trace,
                row.tie,
                r.policy,
                r.seed,
                b.arrived_pct,
                fmt(b.unallocated_pct),
                fmt(b.frag_pct),
                fmt(b.frag_idle_pct)
            )?;
        }
        self.summary.flush()?;
        self.runs.flush()?;
        self.bins.flush()
    }
}

/// Run every scenario's policies × seeds on `jobs` threads; append rows to CSV files in `out`
/// when given; report progress on standard error.
pub fn run_matrix(
    scenarios: &[Scenario],
    jobs: usize,
    out: Option<&Path>,
    progress: bool,
) -> Result<MatrixResult, String> {
    let start = Instant::now();
    // Traces are loaded (and translated) once per distinct file pair.
    let mut traces: BTreeMap<(PathBuf, PathBuf), std::sync::Arc<Trace>> = BTreeMap::new();
    let mut exps = Vec::new();
    for s in scenarios {
        let key = (s.nodes.clone(), s.pods.clone());
        let t = match traces.get(&key) {
            Some(t) => t.clone(),
            None => {
                let t = std::sync::Arc::new(Trace::load(&s.nodes, &s.pods)?);
                traces.insert(key, t.clone());
                t
            }
        };
        exps.push(Experiment::for_scenario(s, (*t).clone())?);
    }
    let mut job_list: Vec<(usize, NodePolicyKind, u64)> = Vec::new();
    for (si, s) in scenarios.iter().enumerate() {
        for &seed in &s.file.seeds {
            for &p in &s.policies {
                job_list.push((si, p, seed));
            }
        }
    }
    let sinks = match out {
        Some(d) => Some(Mutex::new(Sinks::new(d)?)),
        None => None,
    };
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let rows: Mutex<Vec<Row>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let total = job_list.len();
    std::thread::scope(|sc| {
        for _ in 0..jobs.max(1) {
            sc.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(si, p, seed)) = job_list.get(j) else {
                        break;
                    };
                    let s = &scenarios[si];
                    match exps[si].run(p, seed) {
                        Ok(run) => {
                            let row = Row {
                                trace: s.file.name.clone(),
                                tie: s.file.tie.as_str().to_string(),
                                run,
                            };
                            if let Some(sk) = &sinks {
                                let mut g = match sk.lock() {
                                    Ok(g) => g,
                                    Err(p) => p.into_inner(),
                                };
                                if let Err(e) = g.write(&row)
                                    && let Ok(mut er) = errors.lock()
                                {
                                    er.push(format!("writing results: {e}"));
                                }
                            }
                            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                            if progress {
                                eprintln!(
                                    "[{n:>4}/{total}] {:<22} {:<10} seed {:<3} unallocated {:>6.2}% @100 {:>6.2}% @130  ({:.1}s, {:.0}s elapsed)",
                                    row.trace,
                                    p.as_str(),
                                    seed,
                                    row.run.unallocated_at(100),
                                    row.run.unallocated_at(130),
                                    row.run.wall.as_secs_f64(),
                                    start.elapsed().as_secs_f64()
                                );
                            }
                            if let Ok(mut r) = rows.lock() {
                                r.push(row);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut er) = errors.lock() {
                                er.push(format!("{} {p} seed {seed}: {e}", s.file.name));
                            }
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(MatrixResult {
        rows: rows.into_inner().unwrap_or_default(),
        wall: start.elapsed(),
    })
}
