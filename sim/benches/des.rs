//! Engine benchmark: run one scenario's policies × first seed, one run at a time, and print
//! wall time, placements/s and events/s per run (peak memory: run under `/usr/bin/time -v`).
//!
//! ```sh
//! cargo bench -p hami-sim --bench des -- scenarios/alibaba-nodepart.yaml
//! /usr/bin/time -v cargo bench -p hami-sim --bench des -- scenarios/bench-1m.yaml binpack
//! ```
//! Arguments: scenario file, then optionally policy names to run (default: all).
//!
//! `REPEAT=N` runs each policy N times and adds a line with the median wall time and rates:
//! on a shared or throttled machine single runs of a second or less vary by tens of percent.
//! A run frees its engine on a helper thread; the next run starts once that is done and this
//! thread's heap has taken the freed blocks back ([`hami_sim::des::engine::wait_for_freeing`],
//! [`hami_sim::alloc::collect`], outside the timed part), so that it does not share the second
//! core with the last run's freeing nor pay for it. The first run of a process also pays for
//! fresh memory: to compare two binaries, alternate separate processes (`REPEAT` unset) and
//! take the median of each.

use hami_sim::des::engine::{Engine, RunOptions};
use hami_sim::des::model::Scenario;
use std::path::PathBuf;
use std::time::Instant;

// The `hami` binary's allocator, so the figures are the ones users get.
#[global_allocator]
static GLOBAL: hami_sim::alloc::MiMalloc = hami_sim::alloc::MiMalloc;

fn main() {
    hami_sim::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench -p hami-sim --bench des -- SCENARIO [POLICY…]");
        return;
    };
    let mut path = PathBuf::from(path);
    if !path.exists() {
        // cargo runs benches from the package folder.
        path = PathBuf::from("..").join(path);
    }
    let t = Instant::now();
    let sc = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "loaded {} in {:.2}s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    let repeat = match std::env::var("REPEAT") {
        Err(_) => 1,
        Ok(r) => match r.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                eprintln!("REPEAT: expected a whole number of runs ≥ 1, got {r:?}");
                std::process::exit(2);
            }
        },
    };
    let want: Vec<&String> = args.iter().skip(1).collect();
    for v in &sc.variants {
        for p in sc
            .policies
            .iter()
            .filter(|p| want.is_empty() || want.contains(&&p.name))
        {
            let seed = sc.seeds[0];
            let mut walls = Vec::with_capacity(repeat);
            let mut counts = (0.0, 0u64);
            for _ in 0..repeat {
                hami_sim::des::engine::wait_for_freeing();
                hami_sim::alloc::collect();
                let t = Instant::now();
                match Engine::new(&sc, v, p, seed, RunOptions::default()).run() {
                    Ok(o) => {
                        let wall = t.elapsed().as_secs_f64();
                        walls.push(wall);
                        let m = &o.metrics;
                        counts = (m["placed"], o.events);
                        println!(
                            "{:<28} {:<10} nodes {:>6}  pods {:>8}  placed {:>8}  events {:>9}  wall {:>7.2}s  placements/s {:>9.0}  events/s {:>9.0}  alloc {:.3}  pending_end {}",
                            v.name,
                            p.name,
                            v.nodes.len(),
                            m["arrived"],
                            m["placed"],
                            o.events,
                            wall,
                            m["placed"] / wall,
                            o.events as f64 / wall,
                            m["allocation_ratio"],
                            m["pending_end"],
                        );
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        std::process::exit(1);
                    }
                }
            }
            if repeat > 1 {
                walls.sort_by(f64::total_cmp);
                let median = walls[walls.len() / 2];
                println!(
                    "{:<28} {:<10} median of {repeat}: wall {median:>7.2}s  placements/s {:>9.0}  events/s {:>9.0}  (wall {:.2}–{:.2}s)",
                    v.name,
                    p.name,
                    counts.0 / median,
                    counts.1 as f64 / median,
                    walls[0],
                    walls[walls.len() - 1],
                );
            }
        }
    }
}
