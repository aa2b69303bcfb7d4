//! Decisions for a fixed cluster and pod stream, driven through the sans-IO control loop and
//! rendered as a readable table (insta snapshot), plus the loop's bind/filter/restart contract.

use hami_core::build::{NodeBuilder, PodBuilder};
use hami_core::control::{Action, Controller, Event};
use hami_core::model::LinkScores;
use hami_core::pipeline::{Scheduler, SchedulerConfig};
use hami_core::request::{PodKey, RequestTranslator};
use std::fmt::Write;

fn cluster() -> Vec<k8s_openapi::api::core::v1::Node> {
    vec![
        NodeBuilder::new("a100-0")
            .gpus(4, "NVIDIA-A100-SXM4-80GB", 81920)
            .links(LinkScores::uniform(4, 1200))
            .two_numa()
            .cpu_mem(64000, 512000)
            .k8s(),
        NodeBuilder::new("t4-0")
            .gpus(2, "NVIDIA-Tesla T4", 15360)
            .cpu_mem(16000, 64000)
            .k8s(),
        NodeBuilder::new("t4-1")
            .gpus(2, "NVIDIA-Tesla T4", 15360)
            .with_last(|d| d.healthy = false)
            .cpu_mem(16000, 64000)
            .k8s(),
    ]
}

fn pods() -> Vec<k8s_openapi::api::core::v1::Pod> {
    vec![
        PodBuilder::new("infer-small").gpu(1, 4000, 25).build(),
        PodBuilder::new("infer-pct")
            .container(
                "main",
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem-percentage", "50"),
                ],
            )
            .build(),
        PodBuilder::new("train-2x").gpu(2, 0, 0).build(),
        PodBuilder::new("want-t4")
            .gpu(1, 8000, 30)
            .annotation("nvidia.com/use-gputype", "t4")
            .build(),
        PodBuilder::new("no-t4")
            .gpu(1, 8000, 30)
            .annotation("nvidia.com/nouse-gputype", "T4")
            .build(),
        PodBuilder::new("numa-pair")
            .gpu(2, 10000, 20)
            .annotation("nvidia.com/numa-bind", "true")
            .build(),
        PodBuilder::new("too-big").gpu(1, 90000, 0).build(),
        PodBuilder::new("spread-me")
            .gpu(1, 1000, 10)
            .annotation("hami.io/node-scheduler-policy", "spread")
            .build(),
        PodBuilder::new("cpu-only")
            .container("main", &[("cpu", "2")])
            .build(),
        PodBuilder::new("bad-cores")
            .container("main", &[("nvidia.com/gpucores", "120")])
            .build(),
        PodBuilder::new("sidecars")
            .init_container(
                "init",
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "2000")],
            )
            .container(
                "app",
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "3000")],
            )
            .container("log", &[])
            .build(),
    ]
}

fn render(actions: &[Action]) -> String {
    let mut s = String::new();
    for a in actions {
        match a {
            Action::PatchPod { annotations, .. } => {
                for (k, v) in annotations {
                    if k.ends_with("devices-allocated") || k == "hami.io/vgpu-node" {
                        let _ = write!(s, " {k}={}", v.as_deref().unwrap_or("<removed>"));
                    }
                }
            }
            Action::BindPod { node, .. } => {
                let _ = write!(s, " → bind {node}");
            }
            Action::Unschedulable { summary, .. } => {
                let _ = write!(s, " unschedulable: {}", summary.headline());
                for (n, rc) in &summary.per_node {
                    let _ = write!(s, "\n      {n}: {rc}");
                }
            }
            Action::Rejected { error, .. } => {
                let _ = write!(s, " rejected: {error}");
            }
            Action::NotManaged(_) => s.push_str(" not managed (default scheduler)"),
            other => {
                let _ = write!(s, " {other:?}");
            }
        }
    }
    s
}

#[test]
fn decisions_for_a_fixed_cluster() {
    let mut c = Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        42,
    );
    for n in cluster() {
        assert_eq!(c.handle(0, Event::NodeChanged(Box::new(n))), vec![]);
    }
    let mut table = String::from("pod | decision\n");
    for (i, p) in pods().into_iter().enumerate() {
        let name = p.metadata.name.clone().unwrap_or_default();
        let actions = c.handle(100 + i as i64, Event::PodPending(Box::new(p)));
        let _ = writeln!(table, "{name} |{}", render(&actions));
        c.ledger().check_invariants().expect("invariants");
    }
    insta::assert_snapshot!(table);
}

#[test]
fn extender_filter_then_bind_and_restart_recovers() {
    let mut c = Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        1,
    );
    for n in cluster() {
        c.handle(0, Event::NodeChanged(Box::new(n)));
    }
    let pod = PodBuilder::new("p").gpu(1, 4000, 20).build();
    let key = PodKey::new("default", "p");
    let acts = c.handle(
        10,
        Event::Filter {
            pod: Box::new(pod.clone()),
            nodes: vec!["t4-0".into(), "t4-1".into()],
        },
    );
    let Some(Action::PatchPod { annotations, .. }) = acts.first() else {
        panic!("filter patches annotations: {acts:?}")
    };
    assert_eq!(
        annotations.get("hami.io/vgpu-node"),
        Some(&Some("t4-0".to_string()))
    );
    assert_eq!(
        annotations.get("hami.io/vgpu-time"),
        Some(&Some("10".to_string()))
    );
    assert_eq!(
        annotations.get("hami.io/vgpu-devices-to-allocate"),
        Some(&Some("GPU-t4-0-0,NVIDIA,4000,20:;".to_string()))
    );
    assert!(matches!(acts.last(), Some(Action::FilterResult { node: Some(n), .. }) if n == "t4-0"));
    // A bind to another node than the filter chose is refused, never guessed.
    assert!(matches!(
        c.handle(
            11,
            Event::Bind {
                pod: key.clone(),
                node: "t4-1".into()
            }
        )
        .as_slice(),
        [Action::Rejected { .. }]
    ));
    let bind = c.handle(
        11,
        Event::Bind {
            pod: key.clone(),
            node: "t4-0".into(),
        },
    );
    assert!(matches!(bind.last(), Some(Action::BindPod { node, .. }) if node == "t4-0"));

    // Restart: a fresh controller sees the nodes and the annotated pod and rebuilds the ledger.
    let mut annotated = pod;
    let ann = annotated
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (k, v) in annotations {
        if let Some(v) = v {
            ann.insert(k.clone(), v.clone());
        }
    }
    let mut fresh = Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        1,
    );
    for n in cluster() {
        fresh.handle(0, Event::NodeChanged(Box::new(n)));
    }
    fresh.handle(20, Event::PodObserved(Box::new(annotated)));
    assert_eq!(fresh.ledger().grants(), c.ledger().grants());
    // Deleting frees the share.
    fresh.handle(30, Event::PodDeleted(key));
    assert!(fresh.ledger().grants().is_empty());
    fresh.ledger().check_invariants().expect("invariants");
}

#[test]
fn filter_of_a_pod_without_devices_returns_the_node_untouched() {
    let mut c = Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        1,
    );
    let pod = PodBuilder::new("cpu")
        .container("main", &[("cpu", "1")])
        .build();
    let acts = c.handle(
        0,
        Event::Filter {
            pod: Box::new(pod),
            nodes: vec!["x".into()],
        },
    );
    assert!(
        matches!(acts.as_slice(), [Action::FilterResult { node: Some(n), error: None, .. }] if n == "x")
    );
}
