//! CI guard for the FGD paper reproduction: the default trace, six policies, ten seeds, scheduled
//! by the core's production pipeline. The bounds are the scenario's `expect` block
//! (scenarios/fgd/default.yaml): every mean within max(0.5, 1.5 reference sd) points of the
//! paper, the paper's ranking, and the empty-cluster fragmentation within 13.9–14.1 %.

use hami_sim::matrix::run_matrix;
use hami_sim::report::{RunRow, check, summary_table};
use hami_sim::scenario::Scenario;
use std::path::Path;

#[test]
fn default_trace_reproduces_the_paper() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/fgd/default.yaml");
    let mut s = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    // The six policies of the paper (the exact-argmin FGD is an extra, reported separately).
    s.policies
        .retain(|p| *p != hami_core::policy::NodePolicyKind::FgdExact);
    assert_eq!(s.policies.len(), 6);
    assert_eq!(s.file.seeds, (42..=51).collect::<Vec<u64>>());
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let m = match run_matrix(std::slice::from_ref(&s), jobs, None, false) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let rows: Vec<RunRow> = m.rows.iter().map(RunRow::of).collect();
    assert_eq!(rows.len(), 60);
    eprintln!("{}", summary_table(&rows));
    let fails = check(&s, &rows);
    assert!(
        fails.is_empty(),
        "expectations failed:\n{}",
        fails.join("\n")
    );
}
