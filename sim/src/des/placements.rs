//! Sim-to-real parity: the simulator's event order and placements as a replayable plan.
//!
//! A run recorded with [`super::engine::RunOptions::record`] yields a [`LogEntry`] list: every
//! pod's arrival, each placement (node and the device annotation the control loop wrote), each
//! transition to unschedulable, and each departure, in the order the engine processed them.
//! [`plan`] turns it into a [`Plan`]: the nodes as the simulator's controller saw them, the pod
//! objects, and [`Step`]s (`schedule` / `delete`) whose expected outcomes are [`Observation`]s.
//! A driver against a real control plane (`hami replay`) performs the same steps in the same
//! order, one at a time, and records what the real extender decided as [`Observation`]s too;
//! [`first_difference`] compares the two lists.
//!
//! Only what a real cluster can reproduce is accepted ([`check_replayable`]): one variant, no
//! faults, no failing binds, NVIDIA pools whose model the node agent registers unchanged, the
//! extender's node policies (`binpack`, `spread`) with the name-order tie rule, priority 0.

use super::engine::{Engine, RunOptions, node_object};
use super::model::{PolicyRes, Scenario, Variant};
use super::scenario::TieSpec;
use hami_core::annotations::node_from_annotations;
use hami_core::codec::devices::decode_pod_devices;
use hami_core::family::FamilyId;
use hami_core::model::Node;
use hami_core::policy::NodePolicyKind;
pub use hami_core::replay::{CardGrant, Observation, Step};
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One thing the engine did, in processing order (recorded when [`RunOptions::record`] is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LogEntry {
    /// A pod arrived (created, pending).
    Arrived {
        /// Virtual time, ms.
        t_ms: u64,
        /// Pod name.
        pod: String,
        /// Its class index in the variant.
        class: u32,
    },
    /// The control loop placed a pod.
    Placed {
        /// Virtual time, ms.
        t_ms: u64,
        /// Pod name.
        pod: String,
        /// Node name.
        node: String,
        /// The pod's device annotations after the placement (allocated lists by key).
        devices: BTreeMap<String, String>,
    },
    /// A pod was found unschedulable (tried, or skipped because its class just failed).
    Unschedulable {
        /// Virtual time, ms.
        t_ms: u64,
        /// Pod name.
        pod: String,
        /// Main reason.
        reason: String,
    },
    /// A running pod ended and was deleted.
    Deleted {
        /// Virtual time, ms.
        t_ms: u64,
        /// Pod name.
        pod: String,
    },
}

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    /// Node name.
    pub name: String,
    /// The registration annotations the simulator's controller saw for it.
    pub annotations: BTreeMap<String, String>,
    /// Allocatable CPU, milli (0 = not tracked).
    pub cpu_milli: u64,
    /// Allocatable memory, MiB (0 = not tracked).
    pub memory_mib: u64,
    /// Cards as the node agent's fake inventory must list them.
    pub cards: Vec<InventoryCard>,
    /// Pair scores `(a, b, score)` between cards (indexes into `cards`), `a < b`.
    pub links: Vec<(usize, usize, u32)>,
    /// `nvidia.com/gpu` allocatable a device plugin would advertise (cards × split).
    pub gpu_allocatable: u64,
}

/// One card of a fake inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryCard {
    /// UUID.
    pub uuid: String,
    /// Index.
    pub index: u32,
    /// Model as NVML would name it (the agent registers it unchanged: it starts with NVIDIA).
    pub model: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// NUMA node.
    pub numa: i32,
}

/// Everything a replay needs, and what the simulator decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Format tag.
    pub schema: String,
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// `--node-scheduler-policy` the extender must run with.
    pub node_policy: String,
    /// `--gpu-scheduler-policy` the extender must run with.
    pub gpu_policy: String,
    /// Seed of the run.
    pub seed: u64,
    /// Nodes.
    pub nodes: Vec<PlanNode>,
    /// Pod objects by class name (name and namespace are set per pod).
    pub classes: BTreeMap<String, Pod>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// The simulator's outcome of every `schedule` step, in step order.
    pub expected: Vec<Observation>,
}

/// Format tag of [`Plan::schema`].
pub const PLAN_SCHEMA: &str = "hami-replay/plan/v1";

/// Why a scenario cannot be replayed on a real control plane, or `Ok`.
pub fn check_replayable(sc: &Scenario, p: &PolicyRes) -> Result<(), String> {
    let file = sc.path.display();
    let mut bad = Vec::new();
    if sc.variants.len() != 1 {
        bad.push(format!(
            "it has {} variants (a sweep); replay needs exactly one",
            sc.variants.len()
        ));
    }
    if !sc.faults.is_empty() {
        bad.push(format!(
            "faults: {} fault(s); a real control plane cannot replay simulated faults",
            sc.faults.len()
        ));
    }
    if sc.file.api.bind_failure > 0.0 {
        bad.push(format!(
            "api.bind_failure: {} (simulated failing binds cannot be replayed); use 0",
            sc.file.api.bind_failure
        ));
    }
    if !matches!(p.node, NodePolicyKind::Binpack | NodePolicyKind::Spread) {
        bad.push(format!(
            "policy {}: node policy {} — the extender (`hami scheduler --node-scheduler-policy`) offers binpack and spread",
            p.name,
            p.node.as_str()
        ));
    }
    if p.tie != TieSpec::NameOrder {
        bad.push(format!(
            "policy {}: tie rule uniform — the extender breaks ties by node name (tie: name-order)",
            p.name
        ));
    }
    for v in &sc.variants {
        for pool in &v.pools {
            if pool.family != FamilyId::NVIDIA {
                bad.push(format!(
                    "cluster pool {}: family {} — the node agent's fake inventory registers NVIDIA cards only",
                    pool.name,
                    pool.family.spec().name
                ));
            } else if !pool.model.starts_with("NVIDIA") {
                bad.push(format!(
                    "cluster pool {}: model {:?} — the node agent registers \"NVIDIA-{}\"; name the model with the NVIDIA prefix",
                    pool.name, pool.model, pool.model
                ));
            }
        }
        for c in v.classes.iter() {
            if c.request.priority != 0 {
                bad.push(format!(
                    "workload class {}: priority {} — replay creates pods without PriorityClasses; use priority 0",
                    c.name, c.request.priority
                ));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{file}: cannot be replayed on a real control plane:\n  - {}",
            bad.join("\n  - ")
        ))
    }
}

/// Find a policy by name (default: the scenario's first).
pub fn find_policy<'a>(sc: &'a Scenario, name: Option<&str>) -> Result<&'a PolicyRes, String> {
    match name {
        None => sc
            .policies
            .first()
            .ok_or_else(|| format!("{}: no policies", sc.path.display())),
        Some(n) => sc.policies.iter().find(|p| p.name == n).ok_or_else(|| {
            format!(
                "--policy {n:?}: not in {} (it has {})",
                sc.path.display(),
                sc.policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
    }
}

fn plan_node(n: &Node) -> PlanNode {
    let k = node_object(n);
    let annotations = k.metadata.annotations.unwrap_or_default();
    let cards = n
        .devices
        .iter()
        .map(|d| InventoryCard {
            uuid: d.uuid.clone(),
            index: d.index,
            model: d.model.clone(),
            memory_mib: d.memory_mib,
            numa: d.numa,
        })
        .collect();
    let nd = n.devices.len();
    let mut links = Vec::new();
    if n.links.is_known() {
        for a in 0..nd {
            for b in (a + 1)..nd {
                let s = n.links.get(a, b);
                if s > 0 {
                    links.push((a, b, s));
                }
            }
        }
    }
    PlanNode {
        name: n.name.clone(),
        annotations,
        cpu_milli: n.cpu_milli,
        memory_mib: n.memory_mib,
        cards,
        links,
        gpu_allocatable: n.devices.iter().map(|d| u64::from(d.split_count)).sum(),
    }
}

/// The nodes of a variant as a replay needs them (registration as the simulator publishes it,
/// inventory cards, links, allocatable).
pub fn plan_nodes(var: &Variant) -> Vec<PlanNode> {
    var.nodes.iter().map(|(n, _)| plan_node(n)).collect()
}

/// Decode a pod's allocated device annotations into cards per container, indexes looked up on
/// `node`. Unreadable annotations are an error naming the key.
pub fn grants_from_annotations(
    annotations: &BTreeMap<String, String>,
    node: Option<&Node>,
) -> Result<Vec<Vec<CardGrant>>, String> {
    let mut out: Vec<Vec<CardGrant>> = Vec::new();
    for f in FamilyId::all() {
        let key = f.spec().allocated_annotation;
        if key.is_empty() {
            continue;
        }
        let Some(v) = annotations.get(key) else {
            continue;
        };
        let devs = decode_pod_devices(key, v).map_err(|e| e.to_string())?;
        if out.len() < devs.len() {
            out.resize(devs.len(), Vec::new());
        }
        for (ci, c) in devs.iter().enumerate() {
            for d in c {
                let index =
                    node.and_then(|n| n.devices.iter().find(|x| x.uuid == d.uuid).map(|x| x.index));
                out[ci].push(CardGrant {
                    uuid: d.uuid.clone(),
                    index,
                    memory_mib: i64::from(d.usedmem),
                    cores: i64::from(d.usedcores),
                });
            }
        }
    }
    Ok(out)
}

/// The node as a controller decodes it from `annotations` (what both sides must agree on).
pub fn decoded_node(name: &str, annotations: &BTreeMap<String, String>) -> Result<Node, String> {
    node_from_annotations(name, annotations, 0, 0).map_err(|e| format!("node {name}: {e}"))
}

/// A readable description of a decoded node's cards and links, for comparing registrations.
pub fn describe_node(n: &Node) -> Vec<String> {
    let mut out: Vec<String> = n
        .devices
        .iter()
        .map(|d| {
            format!(
                "card {} index {} model {} memory {} MiB cores {} split {} numa {} healthy {}",
                d.uuid, d.index, d.model, d.memory_mib, d.cores, d.split_count, d.numa, d.healthy
            )
        })
        .collect();
    let nd = n.devices.len();
    if n.links.is_known() {
        for a in 0..nd {
            for b in 0..nd {
                let s = n.links.get(a, b);
                if a != b && s > 0 {
                    out.push(format!("link {a}-{b} score {s}"));
                }
            }
        }
    }
    out
}

/// Run the simulator for `policy` and `seed` with recording on and build the plan.
pub fn plan(sc: &Scenario, policy: &PolicyRes, seed: u64) -> Result<Plan, String> {
    check_replayable(sc, policy)?;
    let var: &Variant = sc
        .variants
        .first()
        .ok_or_else(|| format!("{}: no variant", sc.path.display()))?;
    let opts = RunOptions {
        record: true,
        ..RunOptions::default()
    };
    let out = Engine::new(sc, var, policy, seed, opts).run()?;
    let nodes = plan_nodes(var);
    let by_name: BTreeMap<&str, &Node> = var
        .nodes
        .iter()
        .map(|(n, _)| (n.name.as_str(), n))
        .collect();
    let mut classes = BTreeMap::new();
    for c in var.classes.iter() {
        classes.insert(c.name.clone(), c.template.clone());
    }
    let mut class_of: BTreeMap<String, String> = BTreeMap::new();
    let mut unsched: BTreeSet<String> = BTreeSet::new();
    let mut steps = Vec::new();
    let mut expected = Vec::new();
    let class_name = |class: u32| -> Result<String, String> {
        var.classes
            .get(class as usize)
            .map(|c| c.name.clone())
            .ok_or_else(|| format!("recorded class {class} does not exist"))
    };
    for e in out.log {
        match e {
            LogEntry::Arrived { pod, class, .. } => {
                class_of.insert(pod, class_name(class)?);
            }
            LogEntry::Placed {
                pod, node, devices, ..
            } => {
                unsched.remove(&pod);
                let class = class_of
                    .get(&pod)
                    .cloned()
                    .ok_or_else(|| format!("pod {pod} placed before it arrived"))?;
                let containers =
                    grants_from_annotations(&devices, by_name.get(node.as_str()).copied())
                        .map_err(|e| format!("pod {pod}: {e}"))?;
                expected.push(Observation {
                    step: steps.len(),
                    pod: pod.clone(),
                    node: Some(node),
                    containers,
                    reason: None,
                });
                steps.push(Step::Schedule { pod, class });
            }
            LogEntry::Unschedulable { pod, reason, .. } => {
                // Only the transition is a step: a pod that stays unschedulable changes nothing.
                if !unsched.insert(pod.clone()) {
                    continue;
                }
                let class = class_of
                    .get(&pod)
                    .cloned()
                    .ok_or_else(|| format!("pod {pod} tried before it arrived"))?;
                expected.push(Observation {
                    step: steps.len(),
                    pod: pod.clone(),
                    node: None,
                    containers: Vec::new(),
                    reason: Some(reason),
                });
                steps.push(Step::Schedule { pod, class });
            }
            LogEntry::Deleted { pod, .. } => {
                steps.push(Step::Delete { pod });
            }
        }
    }
    Ok(Plan {
        schema: PLAN_SCHEMA.into(),
        scenario: sc.file.name.clone(),
        policy: policy.name.clone(),
        node_policy: policy.node.as_str().to_string(),
        gpu_policy: policy.device.to_text(),
        seed,
        nodes,
        classes,
        steps,
        expected,
    })
}

/// The node agent's YAML inventory for `nodes` (see `hami node-agent --inventory`).
pub fn inventory_yaml(scenario: &str, nodes: &[PlanNode]) -> String {
    let mut s = format!(
        "# Fake inventory of scenario {scenario} (generated by `hami replay inventory`).\nnodes:\n"
    );
    for n in nodes {
        s.push_str(&format!("  - name: {}\n", n.name));
        if n.cards.is_empty() {
            s.push_str("    cards: []\n");
        } else {
            s.push_str("    cards:\n");
        }
        for c in &n.cards {
            s.push_str(&format!(
                "      - {{uuid: {}, model: {}, memoryMiB: {}, numa: {}, index: {}}}\n",
                c.uuid, c.model, c.memory_mib, c.numa, c.index
            ));
        }
        if !n.links.is_empty() {
            s.push_str("    links:\n");
            for (a, b, sc) in &n.links {
                s.push_str(&format!("      - {{a: {a}, b: {b}, score: {sc}}}\n"));
            }
        }
    }
    s
}

fn describe(o: &Observation) -> String {
    match &o.node {
        None => format!(
            "unschedulable ({})",
            o.reason.as_deref().unwrap_or("no reason given")
        ),
        Some(n) => {
            let cs: Vec<String> = o
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let cards: Vec<String> = c
                        .iter()
                        .map(|g| {
                            format!(
                                "{}#{} {} MiB {}%",
                                g.uuid,
                                g.index.map_or("?".into(), |i| i.to_string()),
                                g.memory_mib,
                                g.cores
                            )
                        })
                        .collect();
                    format!("container {i}: [{}]", cards.join(", "))
                })
                .collect();
            format!("node {n}; {}", cs.join("; "))
        }
    }
}

/// The first difference between the simulator's and the real cluster's observations, or `None`
/// when every placement (node, cards, memory and cores per container) and every unschedulable
/// verdict is identical. Reasons are not compared.
pub fn first_difference(sim: &[Observation], real: &[Observation]) -> Option<String> {
    for (i, s) in sim.iter().enumerate() {
        let Some(r) = real.get(i) else {
            return Some(format!(
                "step {} (pod {}): the real run stopped after {} observations; the simulator: {}",
                s.step,
                s.pod,
                real.len(),
                describe(s)
            ));
        };
        let same =
            s.step == r.step && s.pod == r.pod && s.node == r.node && s.containers == r.containers;
        if !same {
            return Some(format!(
                "observation {i}, step {} (pod {}):\n  simulator: {}\n  real:      {} (pod {}, step {})",
                s.step,
                s.pod,
                describe(s),
                describe(r),
                r.pod,
                r.step
            ));
        }
    }
    if real.len() > sim.len() {
        let r = &real[sim.len()];
        return Some(format!(
            "the real run has {} more observations, first: step {} pod {}: {}",
            real.len() - sim.len(),
            r.step,
            r.pod,
            describe(r)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(step: usize, pod: &str, node: Option<&str>, mem: i64) -> Observation {
        Observation {
            step,
            pod: pod.into(),
            node: node.map(Into::into),
            containers: node
                .map(|_| {
                    vec![vec![CardGrant {
                        uuid: "GPU-a-0".into(),
                        index: Some(0),
                        memory_mib: mem,
                        cores: 10,
                    }]]
                })
                .unwrap_or_default(),
            reason: None,
        }
    }

    #[test]
    fn identical_lists_have_no_difference() {
        let a = vec![obs(0, "p-0", Some("n1"), 100), obs(1, "p-1", None, 0)];
        assert_eq!(first_difference(&a, &a.clone()), None);
    }

    #[test]
    fn a_memory_difference_is_reported_at_its_step() {
        let a = vec![
            obs(0, "p-0", Some("n1"), 100),
            obs(2, "p-1", Some("n1"), 100),
        ];
        let mut b = a.clone();
        b[1].containers[0][0].memory_mib = 200;
        let d = first_difference(&a, &b).expect("a difference");
        assert!(d.contains("step 2 (pod p-1)"), "{d}");
        assert!(d.contains("100 MiB") && d.contains("200 MiB"), "{d}");
    }

    #[test]
    fn a_shorter_real_run_is_a_difference() {
        let a = vec![obs(0, "p-0", Some("n1"), 100), obs(1, "p-1", None, 0)];
        let d = first_difference(&a, &a[..1]).expect("a difference");
        assert!(d.contains("stopped after 1"), "{d}");
        let d = first_difference(&a[..1], &a).expect("a difference");
        assert!(d.contains("1 more"), "{d}");
    }

    #[test]
    fn reasons_are_not_compared() {
        let a = vec![obs(0, "p-0", None, 0)];
        let mut b = a.clone();
        b[0].reason = Some("something else".into());
        assert_eq!(first_difference(&a, &b), None);
    }
}
