//! Scenario errors name the file, line, column and field path: one snapshot per broken file
//! in `tests/des_broken/`.

use hami_sim::des::model::Scenario;
use std::path::Path;

fn message(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/des_broken");
    let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap_or_default();
    // A stable, relative path so the snapshots do not depend on the checkout's location.
    match Scenario::parse(&Path::new("des_broken").join(format!("{name}.yaml")), &text) {
        Ok(_) => format!("{name}: accepted (expected an error)"),
        Err(e) => e,
    }
}

#[test]
fn the_base_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/des_broken");
    let sc = Scenario::load(&dir.join("base.yaml"));
    assert!(sc.is_ok(), "{:?}", sc.err());
}

macro_rules! broken {
    ($($f:ident => $file:literal),* $(,)?) => {$(
        #[test]
        fn $f() {
            insta::assert_snapshot!(stringify!($f), message($file));
        }
    )*};
}

broken! {
    unknown_key => "unknown-key",
    wrong_type => "wrong-type",
    bad_memory_unit => "bad-memory-unit",
    bad_duration_unit => "bad-duration-unit",
    unknown_node_policy => "unknown-node-policy",
    unknown_device_policy => "unknown-device-policy",
    unknown_family => "unknown-family",
    vendor_format_family => "vendor-format-family",
    capacity_model => "capacity-model",
    capacity_fixed_memory => "capacity-fixed-memory",
    capacity_memory_unit => "capacity-memory-unit",
    capacity_nvlink => "capacity-nvlink",
    capacity_explicit_card => "capacity-explicit-card",
    capacity_fault => "capacity-fault",
    capacity_fault_nodes => "capacity-fault-nodes",
    missing_trace_file => "missing-trace-file",
    expectation_unknown_policy => "expectation-unknown-policy",
    expectation_bad_form => "expectation-bad-form",
    expectation_unknown_metric => "expectation-unknown-metric",
    fault_unknown_pool => "fault-unknown-pool",
    fault_unknown_kind => "fault-unknown-kind",
    duplicate_policy => "duplicate-policy",
    duration_missing_value => "duration-missing-value",
    memory_and_percent => "memory-and-percent",
    yaml_syntax => "yaml-syntax",
    empty_pool => "empty-pool",
    fault_too_many_nodes => "fault-too-many-nodes",
    fault_too_many_cards => "fault-too-many-cards",
    duplicate_key => "duplicate-key",
    trace_replay_kind => "trace-replay-kind",
}
