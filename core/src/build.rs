//! Builders for pods, nodes and devices: the vocabulary of tests, scenarios and examples.
//!
//! They build real k8s-openapi objects, so what they produce goes through the same request
//! translation and annotation codec as a cluster's objects.

use crate::annotations::{node_capacity, node_register_annotations};
use crate::family::FamilyId;
use crate::model::{Device, DeviceMode, LinkScores, MigProfile, Node};
use k8s_openapi::api::core::v1::{
    Container, Node as K8sNode, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Builds a [`Node`] of identical NVIDIA cards.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    /// A node named `name` with no cards and untracked CPU/memory.
    pub fn new(name: &str) -> NodeBuilder {
        NodeBuilder {
            node: Node::new(name),
        }
    }

    /// Add `n` NVIDIA cards of `model` with `memory_mib` each (UUIDs `GPU-<node>-<i>`).
    pub fn gpus(self, n: u32, model: &str, memory_mib: u64) -> NodeBuilder {
        self.cards(n, FamilyId::NVIDIA, model, memory_mib)
    }

    /// Add `n` cards of `family`.
    pub fn cards(mut self, n: u32, family: FamilyId, model: &str, memory_mib: u64) -> NodeBuilder {
        for _ in 0..n {
            let i = self.node.devices.len() as u32;
            let uuid = format!("GPU-{}-{i}", self.node.name);
            self.node
                .devices
                .push(Device::new(uuid, i, family, model, memory_mib));
        }
        self.node.links = LinkScores::new(self.node.devices.len());
        self
    }

    /// Change the last added card.
    pub fn with_last(mut self, f: impl FnOnce(&mut Device)) -> NodeBuilder {
        if let Some(d) = self.node.devices.last_mut() {
            f(d);
        }
        self
    }

    /// Change every card.
    pub fn with_each(mut self, f: impl Fn(&mut Device)) -> NodeBuilder {
        self.node.devices.iter_mut().for_each(f);
        self
    }

    /// Put every card in MIG mode (7 slices) offering the named A100-80GB profiles, in the
    /// order given; names not in that card's table are ignored.
    pub fn a100_80gb_mig(self, profiles: &[&str]) -> NodeBuilder {
        // NVIDIA's A100-80GB geometry: (name, MiB, cores %, slices, allowed placements).
        let table = |name: &str| -> Option<MigProfile> {
            let (memory_mib, cores, slice_count, placements): (u64, u32, u32, Vec<(u32, u32)>) =
                match name {
                    "1g.10gb" => (9728, 14, 1, (0..7).map(|s| (s, 1)).collect()),
                    "3g.40gb" => (40192, 42, 4, vec![(0, 4), (4, 4)]),
                    "7g.80gb" => (80896, 100, 8, vec![(0, 8)]),
                    _ => return None,
                };
            Some(MigProfile {
                name: name.into(),
                memory_mib,
                cores,
                slice_count,
                placements,
            })
        };
        let chosen: Vec<MigProfile> = profiles.iter().filter_map(|p| table(p)).collect();
        self.with_each(|d| {
            d.mode = DeviceMode::Mig;
            d.split_count = 7;
            d.mig_profiles = chosen.clone();
        })
    }

    /// Put cards `0..n/2` on NUMA 0 and the rest on NUMA 1.
    pub fn two_numa(mut self) -> NodeBuilder {
        let half = self.node.devices.len() / 2;
        for (i, d) in self.node.devices.iter_mut().enumerate() {
            d.numa = if i < half { 0 } else { 1 };
        }
        self
    }

    /// Set pairwise link scores.
    pub fn links(mut self, l: LinkScores) -> NodeBuilder {
        self.node.links = l;
        self
    }

    /// Track allocatable CPU (milli) and memory (MiB).
    pub fn cpu_mem(mut self, cpu_milli: u64, memory_mib: u64) -> NodeBuilder {
        self.node.cpu_milli = cpu_milli;
        self.node.memory_mib = memory_mib;
        self
    }

    /// The node.
    pub fn build(self) -> Node {
        self.node
    }

    /// A Kubernetes Node object carrying the registration annotations HAMi's device plugin
    /// would write for this node, and its allocatable CPU/memory.
    pub fn k8s(self) -> K8sNode {
        k8s_node(&self.node)
    }
}

/// A Kubernetes Node object for `node`: HAMi registration annotations, and its allocatable CPU
/// and memory plus the cards of the node-capacity families ([`node_capacity`]); when it has
/// such cards, `status.capacity` holds the same entries (else it is left out).
pub fn k8s_node(node: &Node) -> K8sNode {
    let mut alloc = BTreeMap::new();
    if node.cpu_milli > 0 {
        alloc.insert("cpu".to_string(), Quantity(format!("{}m", node.cpu_milli)));
    }
    if node.memory_mib > 0 {
        alloc.insert(
            "memory".to_string(),
            Quantity(format!("{}Mi", node.memory_mib)),
        );
    }
    // Cards of the families without a registration annotation are advertised as capacity,
    // all allocatable (every card healthy, as those families report). Only then is there a
    // capacity to write: the simulator publishes every node through here, and a copy of the
    // allocatable map per node was a cost for nothing the scheduler reads.
    let cards = node_capacity(node);
    let capacity = (!cards.is_empty()).then(|| {
        for (resource, count) in cards {
            alloc.insert(resource, Quantity(count));
        }
        alloc.clone()
    });
    K8sNode {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            annotations: Some(node_register_annotations(node)),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            capacity,
            allocatable: Some(alloc),
            ..NodeStatus::default()
        }),
        ..K8sNode::default()
    }
}

/// Builds a Pod object container by container.
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    /// A pod `default/<name>` with no containers.
    pub fn new(name: &str) -> PodBuilder {
        PodBuilder {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec::default()),
                ..Pod::default()
            },
        }
    }

    /// Add an app container with these resource limits (`("nvidia.com/gpu", "1")`, …).
    pub fn container(self, name: &str, limits: &[(&str, &str)]) -> PodBuilder {
        self.push(name, limits, false)
    }

    /// Add an init container with these resource limits.
    pub fn init_container(self, name: &str, limits: &[(&str, &str)]) -> PodBuilder {
        self.push(name, limits, true)
    }

    /// Shorthand: one app container `main` asking `gpus` cards with `mem` MiB and `cores` %.
    pub fn gpu(self, gpus: u32, mem: u64, cores: u32) -> PodBuilder {
        let g = gpus.to_string();
        let m = mem.to_string();
        let c = cores.to_string();
        let mut l: Vec<(&str, &str)> = vec![("nvidia.com/gpu", &g)];
        if mem > 0 {
            l.push(("nvidia.com/gpumem", &m));
        }
        if cores > 0 {
            l.push(("nvidia.com/gpucores", &c));
        }
        self.container("main", &l)
    }

    fn push(mut self, name: &str, limits: &[(&str, &str)], init: bool) -> PodBuilder {
        let mut lim = BTreeMap::new();
        let mut req = BTreeMap::new();
        for (k, v) in limits {
            if *k == "cpu" || *k == "memory" {
                req.insert(k.to_string(), Quantity(v.to_string()));
            } else {
                lim.insert(k.to_string(), Quantity(v.to_string()));
            }
        }
        let c = Container {
            name: name.to_string(),
            resources: Some(ResourceRequirements {
                limits: (!lim.is_empty()).then_some(lim),
                requests: (!req.is_empty()).then_some(req),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        if let Some(spec) = self.pod.spec.as_mut() {
            if init {
                spec.init_containers.get_or_insert_with(Vec::new).push(c);
            } else {
                spec.containers.push(c);
            }
        }
        self
    }

    /// Set an annotation.
    pub fn annotation(mut self, k: &str, v: &str) -> PodBuilder {
        self.pod
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_string(), v.to_string());
        self
    }

    /// Set the namespace.
    pub fn namespace(mut self, ns: &str) -> PodBuilder {
        self.pod.metadata.namespace = Some(ns.to_string());
        self
    }

    /// The pod.
    pub fn build(self) -> Pod {
        self.pod
    }
}
