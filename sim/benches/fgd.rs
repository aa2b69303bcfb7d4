//! FGD-experiment benchmark: one run per policy of a trace-replay scenario (first seed, one
//! run at a time), printing wall time and placements per second of wall time.
//!
//! ```sh
//! cargo bench -p hami-sim --bench fgd                       # scenarios/fgd/default.yaml
//! cargo bench -p hami-sim --bench fgd -- scenarios/fgd/multigpu50.yaml fgd bestfit
//! ```
//! Arguments: scenario file, then optionally policy names (default: the scenario's).
//! Instruction counts, independent of machine load:
//! `valgrind --tool=callgrind target/release/deps/fgd-* scenarios/fgd/default.yaml fgd`.

use hami_core::policy::NodePolicyKind;
use hami_sim::replay::Experiment;
use hami_sim::scenario::Scenario;
use hami_sim::trace::Trace;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut path = PathBuf::from(
        args.first()
            .map_or("scenarios/fgd/default.yaml", String::as_str),
    );
    if !path.exists() {
        // cargo runs benches from the package folder.
        path = PathBuf::from("..").join(path);
    }
    let t = Instant::now();
    let prepared = Scenario::load(&path).and_then(|s| {
        let exp = Experiment::for_scenario(&s, Trace::load(&s.nodes, &s.pods)?)?;
        Ok((s, exp))
    });
    let (sc, exp) = match prepared {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "loaded {} ({} pods, {} nodes) in {:.2}s",
        path.display(),
        exp.trace.pods.len(),
        exp.ledger.node_count(),
        t.elapsed().as_secs_f64()
    );
    let mut policies = sc.policies.clone();
    if args.len() > 1 {
        policies = Vec::new();
        for a in &args[1..] {
            match NodePolicyKind::parse(a) {
                Ok(k) => policies.push(k),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
            }
        }
    }
    let Some(&seed) = sc.file.seeds.first() else {
        eprintln!("{}: no seeds", path.display());
        std::process::exit(2);
    };
    println!(
        "{:<11} {:>6} {:>7} {:>9} {:>14}",
        "policy", "pods", "placed", "wall s", "placements/s"
    );
    for p in policies {
        match exp.run(p, seed) {
            Ok(r) => {
                let wall = r.wall.as_secs_f64();
                println!(
                    "{:<11} {:>6} {:>7} {:>9.3} {:>14.0}",
                    p.as_str(),
                    r.pods,
                    r.placed,
                    wall,
                    r.placed as f64 / wall.max(1e-9)
                );
            }
            Err(e) => {
                eprintln!("{p}: {e}");
                std::process::exit(1);
            }
        }
    }
}
