//! `inspect` rendering of a real node and a real pod, snapshotted.

use hami_core::inspect::{ObjectKind, inspect_annotations};
use std::collections::BTreeMap;

fn fixture(name: &str) -> BTreeMap<String, String> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture file");
    serde_json::from_str(&text).expect("fixture is a JSON object of strings")
}

#[test]
fn node_report() {
    let a = fixture("node-nvidia.json");
    let report = inspect_annotations(ObjectKind::Auto, &a).unwrap();
    assert_eq!(inspect_annotations(ObjectKind::Node, &a).unwrap(), report);
    insta::assert_snapshot!(report);
}

#[test]
fn pod_report() {
    let a = fixture("pod-nvidia.json");
    let report = inspect_annotations(ObjectKind::Auto, &a).unwrap();
    assert_eq!(inspect_annotations(ObjectKind::Pod, &a).unwrap(), report);
    insta::assert_snapshot!(report);
}

#[test]
fn bad_annotations_are_reported_with_key_and_segment() {
    let mut a = fixture("pod-nvidia.json");
    a.insert(
        "hami.io/vgpu-devices-allocated".into(),
        "GPU-a,NVIDIA,3000,0:;GPU-b,NVIDIA,x,0:;".into(),
    );
    a.insert("hami.io/bind-phase".into(), "done".into());
    let err = inspect_annotations(ObjectKind::Pod, &a).unwrap_err();
    assert_eq!(err.errors.len(), 2);
    assert!(err.report.contains("to-allocate"));
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn empty_object() {
    let a = BTreeMap::new();
    let r = inspect_annotations(ObjectKind::Auto, &a).unwrap();
    assert!(r.contains("(none registered)"));
}
