//! `hami fgd`: the FGD paper's experiment (trace replay without departures) — run scenarios,
//! check their expectations, or redraw a report from saved results.

use hami_sim::matrix::run_matrix;
use hami_sim::report;
use hami_sim::report::{RunRow, check, read_runs, summary_table};
use hami_sim::scenario::Scenario;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `hami fgd`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Run scenarios (a file, or every *.yaml of a folder): policies × seeds in parallel; print
    /// mean ± sd unallocated GPU at 100 % and 130 % arrival; write CSV files and plots.
    Run {
        /// Scenario file or folder (e.g. scenarios/fgd).
        path: PathBuf,
        /// Output folder for summary.csv, runs.csv, bins.csv and plots.
        #[arg(long, default_value = "fgd-results")]
        out: PathBuf,
        /// Parallel runs (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Use only the first N seeds of each scenario (quick looks).
        #[arg(long)]
        seeds: Option<usize>,
        /// Do not print one line per finished run.
        #[arg(long)]
        quiet: bool,
    },
    /// Run a scenario (or read saved results) and exit non-zero when an expectation fails.
    Check {
        /// Scenario file or folder.
        path: PathBuf,
        /// Check the runs saved in this folder (runs.csv) instead of running.
        #[arg(long)]
        results: Option<PathBuf>,
        /// Parallel runs (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Redraw tables and plots from a results folder written by `run`.
    Report {
        /// Results folder (with runs.csv and bins.csv).
        results: PathBuf,
    },
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run the command.
pub fn run(args: Args) -> Result<ExitCode, String> {
    // A batch job: freed memory is reused by the next runs (see the function).
    hami_sim::alloc::keep_freed_memory();
    match args.cmd {
        Cmd::Run {
            path,
            out,
            jobs: j,
            seeds,
            quiet,
        } => {
            let mut sc = Scenario::load_all(&path)?;
            if let Some(n) = seeds {
                for s in &mut sc {
                    s.file.seeds.truncate(n.max(1));
                }
            }
            let total: usize = sc
                .iter()
                .map(|s| s.file.seeds.len() * s.policies.len())
                .sum();
            let j = jobs(j);
            eprintln!(
                "running {} scenario(s), {total} runs on {j} thread(s); results in {}",
                sc.len(),
                out.display()
            );
            let m = run_matrix(&sc, j, Some(&out), !quiet)?;
            let rows: Vec<RunRow> = m.rows.iter().map(RunRow::of).collect();
            println!("{}", summary_table(&rows));
            println!(
                "{} runs in {:.1} s wall ({} threads)",
                rows.len(),
                m.wall.as_secs_f64(),
                j
            );
            match report::draw_all(&out, &rows) {
                Ok(files) => {
                    for f in files {
                        println!("plot: {}", f.display());
                    }
                }
                Err(e) => eprintln!("warning: plots not drawn: {e}"),
            }
            let mut failed = 0;
            for s in &sc {
                for f in check(s, &rows) {
                    println!("expectation failed: {f}");
                    failed += 1;
                }
            }
            if failed > 0 {
                println!("{failed} expectation(s) failed (run is still written)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            path,
            results,
            jobs: j,
        } => {
            let sc = Scenario::load_all(&path)?;
            let rows = match results {
                Some(dir) => read_runs(&dir)?,
                None => {
                    let m = run_matrix(&sc, jobs(j), None, false)?;
                    m.rows.iter().map(RunRow::of).collect()
                }
            };
            println!("{}", summary_table(&rows));
            let mut failed = 0;
            for s in &sc {
                let fails = check(s, &rows);
                if fails.is_empty() {
                    println!("ok: {}", s.file.name);
                }
                for f in fails {
                    println!("FAILED: {f}");
                    failed += 1;
                }
            }
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Report { results } => {
            let rows = read_runs(&results)?;
            println!("{}", report::summary_table(&rows));
            for f in report::draw_all(&results, &rows)? {
                println!("plot: {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
