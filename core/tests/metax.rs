//! MetaX shared GPUs: nodes read from MetaX's own card list (`metax-tech.com/node-gpu-devices`),
//! requests translated as HAMi's MetaX code does, and a pod placed through the controller.

use hami_core::build::{PodBuilder, k8s_node};
use hami_core::control::{Action, Controller, Event, read_node};
use hami_core::family::FamilyId;
use hami_core::model::{Device, Node};
use hami_core::pipeline::{Scheduler, SchedulerConfig};
use hami_core::request::{MemoryRequest, RequestTranslator};
use k8s_openapi::api::core::v1::Node as K8sNode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

const KEY: &str = "metax-tech.com/node-gpu-devices";

fn sgpu() -> FamilyId {
    FamilyId::by_name("metax-sgpu").expect("in the table")
}

/// A Node object with MetaX's card list as its only annotation.
fn metax_node(list: &str) -> K8sNode {
    K8sNode {
        metadata: ObjectMeta {
            name: Some("mx-1".into()),
            annotations: Some(BTreeMap::from([(KEY.to_string(), list.to_string())])),
            ..ObjectMeta::default()
        },
        ..K8sNode::default()
    }
}

const TWO_CARDS: &str = r#"[{"uuid":"GPU-m0","model":"MXC500","totalDevCount":16,"totalCompute":100,"totalVRam":65536,"numa":0,"healthy":true,"qosPolicy":"best-effort"},{"uuid":"GPU-m1","model":"MXC500","totalDevCount":16,"totalCompute":100,"totalVRam":65536,"numa":1,"healthy":true}]"#;

#[test]
fn a_node_is_read_from_metax_card_list_and_written_back_the_same() {
    let node = read_node(&metax_node(TWO_CARDS)).node.expect("valid list");
    let cards: Vec<_> = node
        .devices
        .iter()
        .map(|d| {
            (
                d.uuid.as_str(),
                d.index,
                d.family,
                d.model.as_str(),
                d.memory_mib,
                d.cores,
                d.split_count,
                d.numa,
                d.healthy,
            )
        })
        .collect();
    assert_eq!(
        cards,
        [
            ("GPU-m0", 0, sgpu(), "MXC500", 65536, 100, 16, 0, true),
            ("GPU-m1", 1, sgpu(), "MXC500", 65536, 100, 16, 1, true),
        ]
    );
    // Our own Node object for the same cards reads back unchanged.
    let again = read_node(&k8s_node(&node)).node.expect("own annotation");
    assert_eq!(again, node);
}

#[test]
fn a_bad_card_list_names_the_annotation() {
    let read = read_node(&metax_node(r#"[{"uuid":"GPU-m0","totalVRam":"64G"}]"#));
    let e = read.node.expect_err("a string where a number goes");
    assert!(
        e.starts_with("annotation metax-tech.com/node-gpu-devices: line 1 column"),
        "{e}"
    );
}

#[test]
fn memory_is_gib_unless_written_with_a_unit_and_cores_default_to_the_whole_card() {
    let tr = RequestTranslator::default();
    // (vmemory as written, vcore, the memory asked per card, the cores asked)
    let cases = [
        (Some("8"), None, MemoryRequest::Mib(8192), 100),
        (Some("8Gi"), Some("30"), MemoryRequest::Mib(8192), 30),
        (Some("512Mi"), None, MemoryRequest::Mib(512), 100),
        (Some("1500M"), None, MemoryRequest::Mib(1430), 100),
        // Less than a MiB written with a unit is no memory: the whole card, as HAMi reads it.
        (Some("100Ki"), None, MemoryRequest::Percent(100), 100),
        // Milli and exponent forms are bare numbers to HAMi (Go prints them without a unit).
        (Some("2000m"), None, MemoryRequest::Mib(2048), 100),
        (Some("3e0"), None, MemoryRequest::Mib(3072), 100),
        (None, Some("50"), MemoryRequest::Percent(100), 50),
    ];
    for (mem, cores, want_mem, want_cores) in cases {
        let mut limits = vec![("metax-tech.com/sgpu", "1")];
        if let Some(m) = mem {
            limits.push(("metax-tech.com/vmemory", m));
        }
        if let Some(c) = cores {
            limits.push(("metax-tech.com/vcore", c));
        }
        let pod = PodBuilder::new("p").container("main", &limits).build();
        let req = tr.translate(&pod).expect("valid");
        let d = &req.containers[0].devices[0];
        assert_eq!(d.family, sgpu());
        assert_eq!(
            (d.memory, d.cores),
            (want_mem, want_cores),
            "{mem:?} {cores:?}"
        );
    }
}

#[test]
fn a_memory_larger_than_any_card_is_refused() {
    let pod = PodBuilder::new("p")
        .container(
            "main",
            &[
                ("metax-tech.com/sgpu", "1"),
                ("metax-tech.com/vmemory", "3Pi"),
            ],
        )
        .build();
    let e = RequestTranslator::default()
        .translate(&pod)
        .expect_err("3 PiB");
    assert!(e.to_string().contains("more than any card has"), "{e}");
}

#[test]
fn a_metax_pod_is_placed_on_a_shared_card() {
    let mut c = Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        3,
    );
    assert_eq!(
        c.handle(0, Event::NodeChanged(Box::new(metax_node(TWO_CARDS)))),
        vec![]
    );
    let pod = PodBuilder::new("infer")
        .container(
            "main",
            &[
                ("metax-tech.com/sgpu", "1"),
                ("metax-tech.com/vmemory", "16"),
                ("metax-tech.com/vcore", "25"),
            ],
        )
        .build();
    let acts = c.handle(1, Event::PodPending(Box::new(pod)));
    let Some(Action::PatchPod { annotations, .. }) = acts.first() else {
        panic!("the pod is placed: {acts:?}")
    };
    let list = annotations
        .get("hami.io/metax-sgpu-devices-allocated")
        .cloned()
        .flatten();
    let list = list.as_deref().unwrap_or("");
    assert!(
        list == "GPU-m0,Metax-SGPU,16384,25:;" || list == "GPU-m1,Metax-SGPU,16384,25:;",
        "{list}"
    );
    // MetaX's own allocation record, for its device plugin, names the same card.
    let uuid = &list[..6];
    let record = annotations
        .get("metax-tech.com/gpu-devices-allocated")
        .cloned()
        .flatten();
    assert_eq!(
        record.as_deref(),
        Some(format!(r#"[[{{"uuid":"{uuid}","compute":25,"vRam":16384}}]]"#).as_str())
    );
    assert_eq!(
        annotations.get("metax-tech.com/predicate-time"),
        Some(&Some("1000000000".to_string()))
    );
    c.ledger().check_invariants().expect("invariants");
}

#[test]
fn unhealthy_metax_cards_take_no_pods() {
    let mut node = Node::new("mx-2");
    let mut d = Device::new("GPU-sick", 0, sgpu(), "MXC500", 65536);
    d.healthy = false;
    node.devices.push(d);
    let read = read_node(&k8s_node(&node)).node.expect("own annotation");
    assert!(!read.devices[0].healthy);
}
