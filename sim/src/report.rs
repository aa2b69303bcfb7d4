//! Summaries, expectation checks and plots for trace-replay results (from a finished matrix or
//! from the CSV files it wrote).

use crate::matrix::Row;
use crate::scenario::Scenario;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One run, as in `runs.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Scenario name.
    pub trace: String,
    /// Tie rule.
    pub tie: String,
    /// Policy name.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Pods tried.
    pub pods: usize,
    /// Unallocated GPU at 100 % arrival, % of capacity.
    pub u100: f64,
    /// Unallocated GPU at 130 % arrival, % of capacity.
    pub u130: f64,
    /// Empty-cluster fragmentation, % of capacity.
    pub frag0: f64,
    /// Wall time, seconds.
    pub wall_s: f64,
}

/// One curve bin of one run, as in `bins.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinRow {
    /// Scenario name.
    pub trace: String,
    /// Policy name.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Arrived GPU, % of capacity (rounded).
    pub arrived: i32,
    /// Unallocated GPU, % of capacity.
    pub unallocated: f64,
}

impl RunRow {
    /// From an in-memory run.
    pub fn of(r: &Row) -> RunRow {
        RunRow {
            trace: r.trace.clone(),
            tie: r.tie.clone(),
            policy: r.run.policy.as_str().to_string(),
            seed: r.run.seed,
            pods: r.run.pods,
            u100: r.run.unallocated_at(100),
            u130: r.run.unallocated_at(130),
            frag0: r.run.frag_pct_at_0,
            wall_s: r.run.wall.as_secs_f64(),
        }
    }
}

fn parse_f(s: &str) -> f64 {
    s.trim().parse().unwrap_or(f64::NAN)
}

/// Read `runs.csv` from a results folder.
pub fn read_runs(dir: &Path) -> Result<Vec<RunRow>, String> {
    let p = dir.join("runs.csv");
    let mut r = csv::Reader::from_path(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", p.display()))?;
        let g = |i: usize| rec.get(i).unwrap_or("");
        out.push(RunRow {
            trace: g(0).into(),
            tie: g(1).into(),
            policy: g(2).into(),
            seed: g(3).parse().unwrap_or(0),
            pods: g(4).parse().unwrap_or(0),
            u100: parse_f(g(6)),
            u130: parse_f(g(7)),
            frag0: parse_f(g(8)),
            wall_s: parse_f(g(9)),
        });
    }
    Ok(out)
}

/// Read `bins.csv` from a results folder (only the scenarios in `traces`).
pub fn read_bins(dir: &Path, traces: &[&str]) -> Result<Vec<BinRow>, String> {
    let p = dir.join("bins.csv");
    let mut r = csv::Reader::from_path(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", p.display()))?;
        let g = |i: usize| rec.get(i).unwrap_or("");
        if !traces.contains(&g(0)) {
            continue;
        }
        out.push(BinRow {
            trace: g(0).into(),
            policy: g(2).into(),
            seed: g(3).parse().unwrap_or(0),
            arrived: g(4).parse().unwrap_or(0),
            unallocated: parse_f(g(5)),
        });
    }
    Ok(out)
}

/// Mean and sample standard deviation (n − 1) of the finite values.
pub fn mean_sd(xs: impl IntoIterator<Item = f64>) -> (f64, f64, usize) {
    let v: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, sd, n)
}

/// Per (trace, policy): (mean, sd) at 100 %, at 130 %, seeds, mean empty fragmentation,
/// mean wall seconds.
pub type Stats = BTreeMap<(String, String), ((f64, f64), (f64, f64), usize, f64, f64)>;

/// Aggregate runs per scenario and policy.
pub fn stats(rows: &[RunRow]) -> Stats {
    let mut g: BTreeMap<(String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in rows {
        g.entry((r.trace.clone(), r.policy.clone()))
            .or_default()
            .push(r);
    }
    g.into_iter()
        .map(|(k, v)| {
            let (m1, s1, n) = mean_sd(v.iter().map(|r| r.u100));
            let (m2, s2, _) = mean_sd(v.iter().map(|r| r.u130));
            let (f0, _, _) = mean_sd(v.iter().map(|r| r.frag0));
            let (w, _, _) = mean_sd(v.iter().map(|r| r.wall_s));
            (k, ((m1, s1), (m2, s2), n, f0, w))
        })
        .collect()
}

/// Policy display order of the paper.
pub const POLICY_ORDER: [&str; 7] = [
    "random",
    "dotproduct",
    "clustering",
    "packing",
    "bestfit",
    "fgd",
    "fgd-exact",
];

fn policy_rank(p: &str) -> usize {
    POLICY_ORDER
        .iter()
        .position(|x| *x == p)
        .unwrap_or(POLICY_ORDER.len())
}

/// A plain-text table: per scenario and policy, mean ± sd unallocated % at 100 % and 130 %.
pub fn summary_table(rows: &[RunRow]) -> String {
    let st = stats(rows);
    let mut keys: Vec<&(String, String)> = st.keys().collect();
    keys.sort_by_key(|(t, p)| (t.clone(), policy_rank(p)));
    let mut s = format!(
        "{:<22} {:<10} {:>5} {:>16} {:>16} {:>8} {:>8}\n",
        "scenario", "policy", "seeds", "unalloc@100 %", "unalloc@130 %", "frag0 %", "run s"
    );
    for k in keys {
        let ((m1, s1), (m2, s2), n, f0, w) = st[k];
        s += &format!(
            "{:<22} {:<10} {:>5} {:>9.2} ± {:<4.2} {:>9.2} ± {:<4.2} {:>8.2} {:>8.1}\n",
            k.0, k.1, n, m1, s1, m2, s2, f0, w
        );
    }
    s
}

/// Check a scenario's expectations against its runs; returns one line per failure.
pub fn check(s: &Scenario, rows: &[RunRow]) -> Vec<String> {
    let name = &s.file.name;
    let mine: Vec<RunRow> = rows.iter().filter(|r| &r.trace == name).cloned().collect();
    let st = stats(&mine);
    let get = |p: &str, at: u32| -> f64 {
        let canon = hami_core::policy::NodePolicyKind::parse(p)
            .map(|k| k.as_str().to_string())
            .unwrap_or_else(|_| p.to_string());
        st.get(&(name.clone(), canon))
            .map(|v| if at == 100 { v.0.0 } else { v.1.0 })
            .unwrap_or(f64::NAN)
    };
    let mut fails = Vec::new();
    for e in &s.file.expect.unallocated {
        let m = get(&e.policy, e.arrived_pct);
        let d = m - e.mean;
        if !m.is_finite() || d.abs() > e.tolerance {
            fails.push(format!(
                "{name}: {} unallocated at {} % arrival is {m:.2} %, expected {:.2} ± {:.2} (off by {d:+.2} points)",
                e.policy, e.arrived_pct, e.mean, e.tolerance
            ));
        }
    }
    for at in &s.file.measure_at_pct {
        for w in s.file.expect.ranking.windows(2) {
            let worst_better = w[0].iter().map(|p| (p, get(p, *at))).fold(
                (None, f64::NEG_INFINITY),
                |a, (p, v)| {
                    if v > a.1 || v.is_nan() {
                        (Some(p), v)
                    } else {
                        a
                    }
                },
            );
            let best_worse =
                w[1].iter()
                    .map(|p| (p, get(p, *at)))
                    .fold((None, f64::INFINITY), |a, (p, v)| {
                        if v < a.1 || v.is_nan() {
                            (Some(p), v)
                        } else {
                            a
                        }
                    });
            if worst_better.1.partial_cmp(&best_worse.1) != Some(std::cmp::Ordering::Less) {
                fails.push(format!(
                    "{name}: ranking at {at} %: {} ({:.2} %) should leave less unallocated than {} ({:.2} %)",
                    worst_better.0.map(String::as_str).unwrap_or("?"),
                    worst_better.1,
                    best_worse.0.map(String::as_str).unwrap_or("?"),
                    best_worse.1
                ));
            }
        }
    }
    if let Some([lo, hi]) = s.file.expect.empty_frag_pct {
        let (f, _, _) = mean_sd(mine.iter().map(|r| r.frag0));
        if !(lo..=hi).contains(&f) {
            fails.push(format!(
                "{name}: empty-cluster fragmentation is {f:.3} % of capacity, expected {lo}..{hi}"
            ));
        }
    }
    fails
}

/// Trace families of the paper's matrix, for the bar charts.
pub const FAMILIES: [(&str, &[&str]); 4] = [
    ("cpu", &["cpu050", "default", "cpu100", "cpu200", "cpu250"]),
    (
        "gpushare",
        &[
            "default",
            "gpushare40",
            "gpushare60",
            "gpushare80",
            "gpushare100",
        ],
    ),
    (
        "gpuspec",
        &[
            "default",
            "gpuspec10",
            "gpuspec20",
            "gpuspec25",
            "gpuspec33",
        ],
    ),
    (
        "multigpu",
        &[
            "default",
            "multigpu20",
            "multigpu30",
            "multigpu40",
            "multigpu50",
        ],
    ),
];

/// Draw plots for whatever scenarios the results hold: a curve per scenario, bars per family.
pub fn draw_all(dir: &Path, rows: &[RunRow]) -> Result<Vec<PathBuf>, String> {
    let mut names: Vec<&str> = rows.iter().map(|r| r.trace.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let bins = read_bins(dir, &names)?;
    let mut out = Vec::new();
    for n in &names {
        let p = dir.join(format!("curve-{n}"));
        crate::plot::curve(
            &bins,
            n,
            &format!("Unallocated GPU vs arrived workload ({n}; median, 25–75 % over seeds)"),
            &p,
        )?;
        out.push(p.with_extension("png"));
    }
    for (fam, traces) in FAMILIES {
        if traces.iter().filter(|t| names.contains(t)).count() >= 2 {
            let p = dir.join(format!("bars-{fam}"));
            crate::plot::bars(
                rows,
                traces,
                &format!("Unallocated GPU at 100 % arrival, {fam} traces (mean ± sd)"),
                &p,
            )?;
            out.push(p.with_extension("png"));
        }
    }
    Ok(out)
}
