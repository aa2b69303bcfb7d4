//! Families that register through node capacity (Cambricon, MetaX whole GPU, Moore Threads,
//! Enflame whole GCU, Kunlunxin whole XPU): the cards HAMi's scheduler makes from a Node's
//! `status.capacity`, the capacity our own Node objects advertise, and a pod of such a family
//! placed, bound and rebuilt after a restart through the controller.

use hami_core::annotations::{MAX_CAPACITY_CARDS, capacity_devices, node_capacity};
use hami_core::build::{NodeBuilder, PodBuilder, k8s_node};
use hami_core::control::{Action, Controller, Event, read_node};
use hami_core::family::FamilyId;
use hami_core::model::{Device, Node};
use hami_core::pipeline::{Scheduler, SchedulerConfig};
use hami_core::request::{PodKey, RequestTranslator};
use k8s_openapi::api::core::v1::{Node as K8sNode, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

fn family(name: &str) -> FamilyId {
    FamilyId::by_name(name).unwrap_or_else(|| panic!("family {name} is in the table"))
}

/// A Node object with only these capacity entries, as a vendor device plugin leaves it.
fn node_with_capacity(name: &str, capacity: &[(&str, &str)]) -> K8sNode {
    let capacity: BTreeMap<String, Quantity> = capacity
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
    K8sNode {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            capacity: Some(capacity),
            ..NodeStatus::default()
        }),
        ..K8sNode::default()
    }
}

/// One line per card: what the scheduler knows about it.
fn describe(devices: &[Device]) -> Vec<String> {
    devices
        .iter()
        .map(|d| {
            format!(
                "{} #{} {} {} {}MiB cores={} split={} numa={} healthy={}",
                d.family.spec().name,
                d.index,
                d.uuid,
                d.model,
                d.memory_mib,
                d.cores,
                d.split_count,
                d.numa,
                d.healthy
            )
        })
        .collect()
}

#[test]
fn cards_are_made_from_capacity_as_hami_makes_them() {
    struct Case {
        what: &'static str,
        capacity: &'static [(&'static str, &'static str)],
        want: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "Cambricon: 100 vcore units per card, vmemory in 256 MiB units shared evenly",
            capacity: &[
                ("cambricon.com/mlu.smlu.vcore", "200"),
                ("cambricon.com/mlu.smlu.vmemory", "192"),
            ],
            want: &[
                "cambricon #0 n1-cambricon-mlu-0 MLU 24576MiB cores=100 split=100 numa=0 healthy=true",
                "cambricon #1 n1-cambricon-mlu-1 MLU 24576MiB cores=100 split=100 numa=0 healthy=true",
            ],
        },
        Case {
            what: "Cambricon: a remainder of vcore makes one card more; memory divides by units",
            capacity: &[
                ("cambricon.com/mlu.smlu.vcore", "250"),
                ("cambricon.com/mlu.smlu.vmemory", "300"),
            ],
            want: &[
                "cambricon #0 n1-cambricon-mlu-0 MLU 30720MiB cores=100 split=100 numa=0 healthy=true",
                "cambricon #1 n1-cambricon-mlu-1 MLU 30720MiB cores=100 split=100 numa=0 healthy=true",
                "cambricon #2 n1-cambricon-mlu-2 MLU 30720MiB cores=100 split=100 numa=0 healthy=true",
            ],
        },
        Case {
            what: "Cambricon without a memory capacity: cards with no memory",
            capacity: &[("cambricon.com/mlu.smlu.vcore", "100")],
            want: &[
                "cambricon #0 n1-cambricon-mlu-0 MLU 0MiB cores=100 split=100 numa=0 healthy=true",
            ],
        },
        Case {
            what: "Moore Threads: 16 sgpu-core units per card, sgpu-memory in 512 MiB units",
            capacity: &[
                ("mthreads.com/sgpu-core", "32"),
                ("mthreads.com/sgpu-memory", "192"),
            ],
            want: &[
                "mthreads #0 n1-mthreads-0 Mthreads 49152MiB cores=16 split=100 numa=0 healthy=true",
                "mthreads #1 n1-mthreads-1 Mthreads 49152MiB cores=16 split=100 numa=0 healthy=true",
            ],
        },
        Case {
            what: "MetaX whole GPU: one card per unit, 64 GiB each",
            capacity: &[("metax-tech.com/gpu", "2")],
            want: &[
                "metax-gpu #0 n1-metax-0 Metax-GPU 65536MiB cores=100 split=1 numa=0 healthy=true",
                "metax-gpu #1 n1-metax-1 Metax-GPU 65536MiB cores=100 split=1 numa=0 healthy=true",
            ],
        },
        Case {
            what: "Enflame whole GCU: HAMi's token memory of 100",
            capacity: &[("enflame.com/gcu", "1")],
            want: &["enflame-gcu #0 n1-GCU-0 GCU 100MiB cores=100 split=1 numa=0 healthy=true"],
        },
        Case {
            what: "Kunlunxin whole XPU: 96 GiB each, the second half on NUMA node 1",
            capacity: &[("kunlunxin.com/xpu", "4")],
            want: &[
                "kunlun #0 n1-kunlun-0 kunlun 98304MiB cores=100 split=100 numa=0 healthy=true",
                "kunlun #1 n1-kunlun-1 kunlun 98304MiB cores=100 split=100 numa=0 healthy=true",
                "kunlun #2 n1-kunlun-2 kunlun 98304MiB cores=100 split=100 numa=1 healthy=true",
                "kunlun #3 n1-kunlun-3 kunlun 98304MiB cores=100 split=100 numa=1 healthy=true",
            ],
        },
        Case {
            what: "a capacity of 0 is no card (HAMi: device not found)",
            capacity: &[("kunlunxin.com/xpu", "0"), ("metax-tech.com/gpu", "0")],
            want: &[],
        },
        Case {
            what: "two families on one node come in family table order; a lone XPU is in the \
                   second half (HAMi: index >= cards / 2)",
            capacity: &[("kunlunxin.com/xpu", "1"), ("enflame.com/gcu", "1")],
            want: &[
                "enflame-gcu #0 n1-GCU-0 GCU 100MiB cores=100 split=1 numa=0 healthy=true",
                "kunlun #0 n1-kunlun-0 kunlun 98304MiB cores=100 split=100 numa=1 healthy=true",
            ],
        },
    ];
    for c in cases {
        let read = read_node(&node_with_capacity("n1", c.capacity));
        let node = read.node.unwrap_or_else(|e| panic!("{}: {e}", c.what));
        assert_eq!(describe(&node.devices), c.want, "{}", c.what);
    }
}

#[test]
fn a_bad_capacity_value_names_the_field_and_the_resource() {
    let cases = [
        (
            &[("cambricon.com/mlu.smlu.vcore", "lots")][..],
            "status.capacity: cambricon.com/mlu.smlu.vcore: found \"lots\", expected a whole number",
        ),
        (
            &[
                ("mthreads.com/sgpu-core", "16"),
                ("mthreads.com/sgpu-memory", "1.5"),
            ][..],
            "status.capacity: mthreads.com/sgpu-memory: found \"1.5\", expected a whole number",
        ),
        (
            &[("kunlunxin.com/xpu", "100000")][..],
            "status.capacity: kunlunxin.com/xpu: found \"100000\", expected at most 256 cards (1 units each)",
        ),
    ];
    for (capacity, want) in cases {
        let read = read_node(&node_with_capacity("n1", capacity));
        assert_eq!(read.node.err().as_deref(), Some(want), "{capacity:?}");
    }
    assert_eq!(MAX_CAPACITY_CARDS, 256);
}

#[test]
fn families_with_an_annotation_make_no_cards_from_capacity() {
    let cap = |r: &str| (r == "nvidia.com/gpu").then_some("8");
    assert!(
        capacity_devices(FamilyId::NVIDIA, "n1", cap)
            .expect("no rule, no error")
            .is_empty()
    );
}

/// The cards a node of `count` cards of `family` has as HAMi would read it (ids and all),
/// with `memory_mib` each where the family shares its memory capacity.
fn hami_cards(family_name: &str, count: u64, memory_mib: u64) -> Vec<Device> {
    let f = family(family_name);
    let rule = *f.spec().capacity_rule().expect("a capacity family");
    let units = (count * rule.units_per_card).to_string();
    let memory = (count * memory_mib / f.spec().memory_unit_mib).to_string();
    let lookup = |r: &str| {
        if r == rule.cards_resource {
            Some(units.as_str())
        } else {
            Some(memory.as_str())
        }
    };
    capacity_devices(f, "n1", lookup).expect("valid capacity")
}

#[test]
fn our_node_objects_read_back_to_the_same_cards() {
    let cases = [
        ("cambricon", 4, 24576),
        ("cambricon", 1, 16384),
        ("mthreads", 8, 49152),
        ("metax-gpu", 2, 65536),
        ("enflame-gcu", 8, 100),
        ("kunlun", 8, 98304),
        ("kunlun", 3, 98304),
    ];
    for (name, count, memory) in cases {
        let mut node = Node::new("n1");
        node.devices = hami_cards(name, count, memory);
        node.cpu_milli = 64_000;
        node.memory_mib = 512 * 1024;
        let read = read_node(&k8s_node(&node));
        let back = read.node.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back.devices, node.devices, "{name} x{count}");
        assert_eq!((back.cpu_milli, back.memory_mib), (64_000, 512 * 1024));
    }
}

#[test]
fn capacity_advertises_cards_memory_and_sharing_slots() {
    let mut node = Node::new("n1");
    node.devices = hami_cards("cambricon", 4, 24576);
    node.devices.extend(hami_cards("kunlun", 2, 98304));
    let cap = node_capacity(&node);
    let want: BTreeMap<String, String> = [
        ("cambricon.com/mlu.smlu.vcore", "400"),
        ("cambricon.com/mlu.smlu.vmemory", "384"),
        ("cambricon.com/vmlu", "400"),
        ("kunlunxin.com/xpu", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(cap, want);
    // A family with a registration annotation advertises nothing here.
    let nvidia = NodeBuilder::new("g").gpus(2, "NVIDIA-A100", 40960).build();
    assert!(node_capacity(&nvidia).is_empty());
}

fn controller() -> Controller {
    Controller::new(
        Scheduler::new(SchedulerConfig::default()),
        RequestTranslator::default(),
        7,
    )
}

#[test]
fn a_cambricon_pod_is_placed_bound_and_rebuilt_after_a_restart() {
    let mut c = controller();
    let node = node_with_capacity(
        "mlu-node",
        &[
            ("cambricon.com/mlu.smlu.vcore", "200"),
            ("cambricon.com/mlu.smlu.vmemory", "192"),
        ],
    );
    assert_eq!(
        c.handle(0, Event::NodeChanged(Box::new(node.clone()))),
        vec![]
    );
    let pod = PodBuilder::new("infer")
        .container(
            "main",
            &[
                ("cambricon.com/vmlu", "1"),
                ("cambricon.com/mlu.smlu.vmemory", "8"),
                ("cambricon.com/mlu.smlu.vcore", "30"),
            ],
        )
        .build();
    let acts = c.handle(5, Event::PodPending(Box::new(pod.clone())));
    let Some(Action::PatchPod { annotations, .. }) = acts.first() else {
        panic!("the pod is placed: {acts:?}")
    };
    // 8 units of 256 MiB, 30 % of the card, on the card HAMi would name so.
    let list = "mlu-node-cambricon-mlu-0,MLU,2048,30:;";
    for key in [
        "hami.io/cambricon-mlu-devices-allocated",
        "hami.io/cambricon-mlu-devices-to-allocate",
    ] {
        assert_eq!(annotations.get(key), Some(&Some(list.to_string())), "{key}");
    }
    // What Cambricon's device plugin reads: index, cores and memory in 256 MiB units.
    for (k, v) in [
        ("CAMBRICON_DSMLU_PROFILE", "0_30_8"),
        ("CAMBRICON_DSMLU_ASSIGNED", "false"),
    ] {
        assert_eq!(annotations.get(k), Some(&Some(v.to_string())), "{k}");
    }
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::BindPod { node, .. } if node == "mlu-node")),
        "{acts:?}"
    );
    // A fresh controller rebuilds the grant from the pod's annotations alone.
    let mut bound = pod;
    let ann = bound.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in annotations {
        if let Some(v) = v {
            ann.insert(k.clone(), v.clone());
        }
    }
    bound.spec.get_or_insert_with(Default::default).node_name = Some("mlu-node".into());
    let mut fresh = controller();
    fresh.handle(10, Event::NodeChanged(Box::new(node)));
    fresh.handle(11, Event::PodObserved(Box::new(bound)));
    let key = PodKey::new("default", "infer");
    assert!(fresh.ledger().grant(&key).is_some(), "grant rebuilt");
    fresh.ledger().check_invariants().expect("invariants");
}

#[test]
fn a_pod_of_each_capacity_family_lands_on_the_cards_hami_names() {
    struct Case {
        capacity: &'static [(&'static str, &'static str)],
        limits: &'static [(&'static str, &'static str)],
        key: &'static str,
        want: &'static str,
        /// Annotations the vendor's device plugin reads besides the device lists.
        extras: &'static [(&'static str, &'static str)],
    }
    let cases = [
        Case {
            capacity: &[
                ("mthreads.com/sgpu-core", "32"),
                ("mthreads.com/sgpu-memory", "192"),
            ],
            limits: &[
                ("mthreads.com/vgpu", "1"),
                ("mthreads.com/sgpu-memory", "16"),
                ("mthreads.com/sgpu-core", "8"),
            ],
            key: "hami.io/mthreads-vgpu-devices-allocated",
            want: "n1-mthreads-0,Mthreads,8192,8:;",
            extras: &[
                ("mthreads.com/gpu-index", "0"),
                ("mthreads.com/predicate-node", "n1"),
                ("mthreads.com/predicate-time", "1000000000"),
            ],
        },
        // Moore Threads' memory and cores are the container's, shared by its cards: 16 units
        // of 512 MiB and 8 cores for two cards are 4 GiB and 4 cores on each.
        Case {
            capacity: &[
                ("mthreads.com/sgpu-core", "32"),
                ("mthreads.com/sgpu-memory", "192"),
            ],
            limits: &[
                ("mthreads.com/vgpu", "2"),
                ("mthreads.com/sgpu-memory", "16"),
                ("mthreads.com/sgpu-core", "8"),
            ],
            key: "hami.io/mthreads-vgpu-devices-allocated",
            want: "n1-mthreads-0,Mthreads,4096,4:n1-mthreads-1,Mthreads,4096,4:;",
            extras: &[("mthreads.com/gpu-index", "0,1")],
        },
        Case {
            capacity: &[("metax-tech.com/gpu", "2")],
            limits: &[("metax-tech.com/gpu", "2")],
            key: "hami.io/metax-gpu-devices-allocated",
            want: "n1-metax-0,Metax-GPU,65536,100:n1-metax-1,Metax-GPU,65536,100:;",
            extras: &[],
        },
        Case {
            capacity: &[("enflame.com/gcu", "4")],
            limits: &[("enflame.com/gcu", "1")],
            key: "hami.io/enflame-gcu-devices-allocated",
            want: "n1-GCU-0,GCU,100,100:;",
            extras: &[],
        },
        Case {
            capacity: &[("kunlunxin.com/xpu", "8")],
            limits: &[("kunlunxin.com/xpu", "1")],
            key: "hami.io/kunlun-allocated",
            // HAMi's Kunlunxin fit grants the whole card: its memory and its cores.
            want: "n1-kunlun-0,kunlun,98304,100:;",
            extras: &[("BAIDU_COM_DEVICE_IDX", "0")],
        },
    ];
    for c in cases {
        let mut ctl = controller();
        ctl.handle(
            0,
            Event::NodeChanged(Box::new(node_with_capacity("n1", c.capacity))),
        );
        let pod = PodBuilder::new("p").container("main", c.limits).build();
        let acts = ctl.handle(1, Event::PodPending(Box::new(pod)));
        let Some(Action::PatchPod { annotations, .. }) = acts.first() else {
            panic!("{}: the pod is placed: {acts:?}", c.key)
        };
        assert_eq!(
            annotations.get(c.key).cloned().flatten().as_deref(),
            Some(c.want),
            "{}",
            c.key
        );
        for (k, v) in c.extras {
            assert_eq!(
                annotations.get(*k).cloned().flatten().as_deref(),
                Some(*v),
                "{k}"
            );
        }
        ctl.ledger().check_invariants().expect("invariants");
    }
}

#[test]
fn container_counts_hami_cannot_place_are_refused_with_the_reason() {
    let tr = RequestTranslator::default();
    // Kunlunxin XPUs go in groups of 1, 2, 4 or 8.
    for (n, ok) in [
        ("1", true),
        ("2", true),
        ("3", false),
        ("4", true),
        ("6", false),
        ("8", true),
    ] {
        let pod = PodBuilder::new("p")
            .container("main", &[("kunlunxin.com/xpu", n)])
            .build();
        let got = tr.translate(&pod);
        assert_eq!(got.is_ok(), ok, "{n} XPUs: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains("takes 1, 2, 4 or 8 cards"), "{e}");
        }
    }
    // Moore Threads' cores are the container's: 8 cards with 128 cores is 16 per card.
    let pod = PodBuilder::new("p")
        .container(
            "main",
            &[
                ("mthreads.com/vgpu", "8"),
                ("mthreads.com/sgpu-core", "128"),
            ],
        )
        .build();
    let req = tr.translate(&pod).expect("16 cores per card");
    assert_eq!(req.containers[0].devices[0].cores, 16);
}
