//! Time one default-trace run per policy: `cargo run --release -p hami-sim --example one_run`.
use hami_core::policy::NodePolicyKind;
use hami_sim::replay::Experiment;
use hami_sim::scenario::TieKind;
use hami_sim::trace::Trace;
use std::path::Path;

fn main() -> Result<(), String> {
    let dir = Path::new("/work/shared/data/alibaba-gpu-v2023/csv");
    let args: Vec<String> = std::env::args().collect();
    let pods = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("openb_pod_list_default.csv");
    let t = Trace::load(&dir.join("openb_node_list_gpu_node.csv"), &dir.join(pods))?;
    let e = Experiment::new(t, 130.0, 95.0, TieKind::NodePriority)?;
    println!(
        "empty frag {:.3}% tasks {}",
        100.0 * e.empty_frag_milli() / e.trace.capacity_milli as f64,
        e.workload.tasks().len()
    );
    let pols: Vec<NodePolicyKind> = match args.get(2) {
        Some(p) => vec![NodePolicyKind::parse(p)?],
        None => hami_sim::scenario::REPLAY_POLICIES.to_vec(),
    };
    for k in pols {
        let r = e.run(k, 42)?;
        println!(
            "{k:>10} pods {} placed {} u100 {:.2} u130 {:.2} {:?}",
            r.pods,
            r.placed,
            r.unallocated_at(100),
            r.unallocated_at(130),
            r.wall
        );
    }
    Ok(())
}
