//! The sim-to-real parity plan (`hami replay`): deterministic, covers what the issue asks for,
//! and refuses scenarios a real control plane cannot reproduce with errors naming the cause.

use hami_sim::des::model::Scenario;
use hami_sim::des::placements::{Step, check_replayable, find_policy, plan};
use std::path::Path;

fn load(name: &str) -> Scenario {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn parity_plan_is_deterministic_and_covers_the_mix() {
    let sc = load("parity.yaml");
    let p = find_policy(&sc, Some("hami-default")).expect("policy");
    let a = plan(&sc, p, sc.seeds[0]).expect("plan");
    let b = plan(&sc, p, sc.seeds[0]).expect("plan again");
    assert_eq!(
        a, b,
        "the same scenario, policy and seed must give the same plan"
    );
    assert!(a.nodes.len() >= 50, "{} nodes", a.nodes.len());
    let schedules = a
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Schedule { .. }))
        .count();
    let deletes = a.steps.len() - schedules;
    assert!(schedules >= 200, "{schedules} pods");
    assert!(deletes > 0, "no departures");
    assert_eq!(a.expected.len(), schedules);
    let placed: Vec<_> = a.expected.iter().filter(|o| o.node.is_some()).collect();
    assert!(placed.len() < a.expected.len(), "no unschedulable verdict");
    assert!(
        placed.iter().any(|o| o.containers[0].len() >= 4),
        "no multi-card placement"
    );
    assert!(
        placed
            .iter()
            .any(|o| o.containers[0].iter().any(|c| c.cores == 100)),
        "no whole-card placement"
    );
    assert!(
        placed
            .iter()
            .any(|o| o.containers[0].iter().any(|c| c.cores < 100)),
        "no sharing placement"
    );
    // Every card of every placement is known by index on its node.
    for o in &placed {
        for c in o.containers.iter().flatten() {
            assert!(
                c.index.is_some(),
                "{}: card {} without index",
                o.pod,
                c.uuid
            );
        }
    }
}

#[test]
fn unreplayable_scenarios_are_refused_with_the_cause() {
    let sc = load("quickstart.yaml");
    let fgd = find_policy(&sc, Some("fgd")).expect("policy");
    let e = check_replayable(&sc, fgd).expect_err("fgd is not an extender policy");
    assert!(e.contains("node policy fgd"), "{e}");
    assert!(e.contains("priority 100"), "{e}");
    let e = find_policy(&sc, Some("nope")).expect_err("unknown policy");
    assert!(e.contains("\"nope\"") && e.contains("binpack"), "{e}");
    let sc = load("hetero-1000.yaml");
    let e = check_replayable(&sc, &sc.policies[0]).expect_err("faults");
    assert!(e.contains("faults:"), "{e}");
}
