//! `hami sim`: the discrete-event simulator — run a scenario under every policy and seed and
//! write a report, check it against expectations and a baseline (CI), explain one pod's
//! placement, or validate scenario files.

use hami_sim::des::explain::{explain, render};
use hami_sim::des::model::Scenario;
use hami_sim::des::progress::Bar;
use hami_sim::des::report::{summary_table, write_all};
use hami_sim::des::results::{Baseline, Quiet, check_scenario, read_baseline, run_all};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `hami sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Run every policy × seed (× sweep value) in parallel; print a summary table; write
    /// results.json, report.md, report.html and plots (PNG + SVG) to --out.
    Run {
        /// Scenario file (YAML).
        scenario: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "sim-results")]
        out: PathBuf,
        /// Parallel runs (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Run and exit 1 when an expectation fails or an outcome regressed against --baseline.
    Check {
        /// Scenario file.
        scenario: PathBuf,
        /// Baseline JSON written by --write-baseline.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Write the current outcomes as a baseline to this file (and pass).
        #[arg(long)]
        write_baseline: Option<PathBuf>,
        /// Relative tolerance of the written baseline (0.02 = 2 %).
        #[arg(long, default_value_t = 0.02)]
        tolerance: f64,
        /// Parallel runs (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Why each node was or was not chosen for one pod (at the attempt that placed it).
    Explain {
        /// Scenario file.
        scenario: PathBuf,
        /// Pod name (`<mix entry>-<arrival index>`, e.g. `share-small-42`), or a mix entry's name
        /// for its first pod.
        #[arg(long)]
        pod: String,
        /// Policy name (default: the scenario's first).
        #[arg(long)]
        policy: Option<String>,
        /// How many feasible nodes to list.
        #[arg(long, default_value_t = 15)]
        top: usize,
    },
    /// Parse and validate scenario files; print what they describe.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run `hami sim`.
pub fn run(a: Args) -> Result<ExitCode, String> {
    // A batch job: freed memory is reused by the next runs (see the function).
    hami_sim::alloc::keep_freed_memory();
    match a.cmd {
        Cmd::Run {
            scenario,
            out,
            jobs: j,
            quiet,
        } => {
            let sc = Scenario::load(&scenario)?;
            let bar = Bar::default();
            let res = if quiet {
                run_all(&sc, jobs(j), &Quiet)
            } else {
                run_all(&sc, jobs(j), &bar)
            };
            bar.finish();
            let res = res?;
            print!("{}", summary_table(&res, &sc.table));
            for v in &res.verdicts {
                println!(
                    "{} {} — {}",
                    if v.pass { "PASS" } else { "FAIL" },
                    v.expectation,
                    v.detail
                );
            }
            for r in &res.runs {
                for e in r.errors.iter().take(3) {
                    eprintln!(
                        "warning: {} / {} / seed {}: {e}",
                        r.variant, r.policy, r.seed
                    );
                }
            }
            write_all(&sc, &res, &out)?;
            println!(
                "wrote {}/results.json, report.md, report.html and plots",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            scenario,
            baseline,
            write_baseline,
            tolerance,
            jobs: j,
        } => {
            let sc = Scenario::load(&scenario)?;
            let base = baseline.as_deref().map(read_baseline).transpose()?;
            let bar = Bar::default();
            let outcome = check_scenario(&sc, base.as_ref(), jobs(j), &bar);
            bar.finish();
            let outcome = outcome?;
            print!("{}", summary_table(&outcome.results, &sc.table));
            print!("{}", outcome.render());
            if let Some(p) = write_baseline {
                let b = Baseline::of(&outcome.results, tolerance, 1e-6);
                let text = serde_json::to_string_pretty(&b).map_err(|e| e.to_string())?;
                std::fs::write(&p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
                println!("wrote baseline {}", p.display());
            }
            Ok(if outcome.pass() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Explain {
            scenario,
            pod,
            policy,
            top,
        } => {
            let sc = Scenario::load(&scenario)?;
            let e = explain(&sc, policy.as_deref(), &pod)?;
            print!("{}", render(&e, top));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate { scenarios } => {
            let mut bad = false;
            for p in scenarios {
                match Scenario::load(&p) {
                    Ok(sc) => {
                        for v in &sc.variants {
                            println!(
                                "{}: ok — {}: {} nodes, {} cards, {} pod classes; policies {}; seeds {:?}; {} fault(s); {} expectation(s)",
                                p.display(),
                                v.name,
                                v.nodes.len(),
                                v.total_cards,
                                v.classes.len(),
                                sc.policies
                                    .iter()
                                    .map(|p| p.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                sc.seeds,
                                sc.faults.len(),
                                sc.expect.len()
                            );
                        }
                    }
                    Err(e) => {
                        bad = true;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if bad {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
