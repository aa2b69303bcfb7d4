//! `hami record`: a live cluster's GPU nodes, their cards and the history of its GPU pods as a
//! discrete-event scenario (`cluster.nodes` + `workload.pods`, see `scenarios/README.md`) that
//! `hami sim` replays under any policy.
//!
//! The conversion is pure ([`record_node`], [`record_pod`], [`History`], [`render`]): Kubernetes
//! objects and times in, a scenario text and warnings out. The API part ([`record_cluster`]) only
//! lists and watches. One bad object never loses the others: a registration annotation that does
//! not decode drops that family of that node with a [`Warning`] naming the node and the key; a pod
//! whose request does not translate is left out with a warning naming the pod and the field.

use hami_core::codec::devices::decode_pod_devices;
use hami_core::codec::keys;
use hami_core::codec::register::{RegisteredDevice, decode_legacy_register, decode_register_json};
use hami_core::codec::score::decode_pair_scores;
use hami_core::family::{FamilyId, RegisterFormat};
use hami_core::quantity::{parse_cpu_milli, parse_memory_mib};
use hami_core::request::{NUMA_BIND_ANNOTATION, RequestTranslator, VGPU_MODE_ANNOTATION};
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Something left out of (or changed in) a recording, with the object and the key that caused
/// it. Display: `node gpu-b: hami.io/node-nvidia-register: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `node <name>` or `pod <namespace>/<name>`.
    pub object: String,
    /// The annotation key, resource name or field at fault.
    pub key: String,
    /// What was wrong and what the recorder did about it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.key, self.message)
    }
}

/// One card as recorded from a node's registration annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCard {
    /// Device UUID.
    pub id: String,
    /// Family name from the core table (`nvidia`, `hygon`, …).
    pub family: &'static str,
    /// Registered model.
    pub model: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Core units.
    pub cores: u32,
    /// Containers that may share it.
    pub split: u32,
    /// NUMA node.
    pub numa: u32,
    /// Health as registered.
    pub healthy: bool,
    /// Listed in `hami.io/device-cordon`: takes no new pods (replayed as unhealthy, which the
    /// simulator treats the same way).
    pub cordoned: bool,
}

/// One GPU node: allocatable CPU and memory (when readable) and its cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedNode {
    /// Node name.
    pub name: String,
    /// Allocatable CPU, milli-cores.
    pub cpu_milli: Option<u64>,
    /// Allocatable memory, MiB.
    pub memory_mib: Option<u64>,
    /// Cards, families in table order, each in registration order.
    pub cards: Vec<RecordedCard>,
    /// Link scores between cards `(index, index, score)`, first index lower, from
    /// `hami.io/node-nvidia-score`.
    pub links: Vec<(usize, usize, u32)>,
}

/// One container's resources as written in the pod spec (only the names the scheduler reads:
/// device-family resources, `cpu` and `memory`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedContainer {
    /// Container name.
    pub name: String,
    /// `resources.limits`.
    pub limits: BTreeMap<String, String>,
    /// `resources.requests`.
    pub requests: BTreeMap<String, String>,
}

/// One GPU pod and what is known of its life. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (identity across a watch; empty when the object had none).
    pub uid: String,
    /// `metadata.creationTimestamp`.
    pub created_ms: i64,
    /// When it was bound: the `PodScheduled` condition's transition time, if true.
    pub scheduled_ms: Option<i64>,
    /// When it ended: the last container termination of a finished pod, its deletion
    /// timestamp, or when a watch saw it deleted.
    pub ended_ms: Option<i64>,
    /// `spec.priority`.
    pub priority: i32,
    /// The annotations the request translator reads (type/UUID selectors, NUMA, mode).
    pub annotations: BTreeMap<String, String>,
    /// Init containers.
    pub init_containers: Vec<RecordedContainer>,
    /// Containers.
    pub containers: Vec<RecordedContainer>,
    /// Where it really ran and what it was granted (`gpu-a: GPU-…:3000MiB:30%`), for a comment.
    pub placement: Option<String>,
}

impl RecordedPod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn node_object(name: &str) -> String {
    format!("node {name}")
}

/// Decode one node's registration annotations (every family the core decodes from
/// annotations). A family whose annotation does not decode is skipped with a warning; the
/// others stay. Cards made from node capacity (Cambricon, …) cannot be listed card by card in
/// a scenario: a warning counts them. `None` when the node registers no card.
pub fn record_node(node: &Node) -> (Option<RecordedNode>, Vec<Warning>) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut warnings = Vec::new();
    let empty = BTreeMap::new();
    let ann = node.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut cards = Vec::new();
    let cordoned: BTreeSet<&str> = ann
        .get(keys::DEVICE_CORDON)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for f in FamilyId::all() {
        let spec = f.spec();
        if let Some(rule) = spec.capacity_rule() {
            // Cards made from node capacity cannot be listed one by one in a scenario: say
            // how many are left out instead of dropping them without a word.
            let made = hami_core::annotations::capacity_devices(
                f,
                &name,
                hami_core::control::capacity_of(node),
            );
            let n = made.as_ref().map_or(0, Vec::len);
            if n > 0 || made.is_err() {
                warnings.push(Warning {
                    object: node_object(&name),
                    key: format!("status.capacity[{}]", rule.cards_resource),
                    message: format!(
                        "{n} {} card(s) register through node capacity, which a recorded scenario cannot list card by card; left out (a pool of family {} builds such nodes)",
                        spec.name, spec.name
                    ),
                });
            }
            continue;
        }
        let Some(key) = spec.register() else { continue };
        let Some(value) = ann.get(key) else { continue };
        let decoded = match spec.register_format {
            RegisterFormat::Json => decode_register_json(key, value),
            RegisterFormat::LegacyText => decode_legacy_register(key, value),
            RegisterFormat::MetaxJson => hami_core::codec::decode_metax_sdevices(key, value),
            RegisterFormat::NodeCapacity(_) | RegisterFormat::VendorJson => {
                warnings.push(Warning {
                    object: node_object(&name),
                    key: key.to_string(),
                    message: format!(
                        "family {} registers in a vendor format the simulator does not model; its cards are not recorded",
                        spec.name
                    ),
                });
                continue;
            }
        };
        let devs: Vec<RegisteredDevice> = match decoded {
            Ok(d) => d,
            Err(e) => {
                warnings.push(Warning {
                    object: node_object(&name),
                    key: key.to_string(),
                    message: format!(
                        "registration does not decode, its cards are left out: {}: found {:?}, expected {}",
                        e.segment, e.raw, e.expected
                    ),
                });
                continue;
            }
        };
        for d in devs {
            if !d.mode.is_empty() && d.mode != "hami-core" && d.mode != "mps" {
                warnings.push(Warning {
                    object: node_object(&name),
                    key: key.to_string(),
                    message: format!(
                        "card {} is in {} mode; recorded as a hami-core card",
                        d.id, d.mode
                    ),
                });
            }
            cards.push(RecordedCard {
                id: d.id.clone(),
                family: spec.name,
                model: d.device_type.clone(),
                memory_mib: u64::try_from(d.devmem).unwrap_or(0),
                cores: u32::try_from(d.devcore).unwrap_or(0),
                split: u32::try_from(d.count).unwrap_or(0),
                numa: u32::try_from(d.numa).unwrap_or(0),
                healthy: d.health,
                cordoned: cordoned.contains(d.id.as_str()),
            });
        }
    }
    // Cards the simulator would refuse: say so and keep the rest of the node.
    let mut seen = BTreeSet::new();
    cards.retain(|c| {
        let why = if c.id.is_empty() {
            Some("has no id")
        } else if !seen.insert(c.id.clone()) {
            Some("is registered twice")
        } else if c.memory_mib == 0 {
            Some("registers no memory")
        } else {
            None
        };
        if let Some(why) = why {
            warnings.push(Warning {
                object: node_object(&name),
                key: "cards".into(),
                message: format!("card {:?} {why}; left out", c.id),
            });
        }
        why.is_none()
    });
    if cards.len() > 64 {
        warnings.push(Warning {
            object: node_object(&name),
            key: "cards".into(),
            message: format!(
                "{} cards; the simulator takes at most 64, the first 64 are kept",
                cards.len()
            ),
        });
        cards.truncate(64);
    }
    if cards.is_empty() {
        return (None, warnings);
    }
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let mut read = |res: &str, parse: fn(&str) -> Result<u64, String>| {
        let q = alloc.and_then(|a| a.get(res))?;
        match parse(&q.0) {
            Ok(v) if v > 0 => Some(v),
            Ok(_) => None,
            Err(e) => {
                warnings.push(Warning {
                    object: node_object(&name),
                    key: format!("status.allocatable.{res}"),
                    message: format!("{:?} is not a quantity ({e}); not tracked", q.0),
                });
                None
            }
        }
    };
    let cpu_milli = read("cpu", parse_cpu_milli);
    let memory_mib = read("memory", parse_memory_mib);
    let mut links = Vec::new();
    if let Some(v) = ann.get(keys::NODE_NVIDIA_SCORE) {
        match decode_pair_scores(keys::NODE_NVIDIA_SCORE, v) {
            Ok(scores) => {
                let pos: BTreeMap<&str, usize> = cards
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.id.as_str(), i))
                    .collect();
                let mut seen = BTreeSet::new();
                for s in &scores {
                    let Some(&a) = pos.get(s.uuid.as_str()) else {
                        continue;
                    };
                    for (other, score) in &s.scores {
                        let Some(&b) = pos.get(other.as_str()) else {
                            continue;
                        };
                        let key = (a.min(b), a.max(b));
                        if a != b && seen.insert(key) {
                            links.push((key.0, key.1, u32::try_from(*score).unwrap_or(0)));
                        }
                    }
                }
                links.sort_unstable();
            }
            Err(e) => warnings.push(Warning {
                object: node_object(&name),
                key: keys::NODE_NVIDIA_SCORE.to_string(),
                message: format!(
                    "link scores do not decode, recorded without links: {}: found {:?}, expected {}",
                    e.segment, e.raw, e.expected
                ),
            }),
        }
    }
    (
        Some(RecordedNode {
            name,
            cpu_milli,
            memory_mib,
            cards,
            links,
        }),
        warnings,
    )
}

/// Resource names of every device family (count, memory, memory percentage, cores, priority).
fn device_resources() -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for f in FamilyId::all() {
        let s = f.spec();
        out.insert(s.count_resource);
        out.extend(s.memory_resource);
        out.extend(s.memory_percentage_resource);
        out.extend(s.cores_resource);
        out.extend(s.priority_resource);
    }
    out
}

/// Annotation keys the request translator reads for the request itself (per-pod policy
/// overrides are left out: the replay compares policies).
fn request_annotations() -> BTreeSet<&'static str> {
    let mut out = BTreeSet::from([NUMA_BIND_ANNOTATION, VGPU_MODE_ANNOTATION]);
    for f in FamilyId::all() {
        let s = f.spec();
        out.extend(s.use_type_annotation);
        out.extend(s.nouse_type_annotation);
        out.extend(s.use_uuid_annotation);
        out.extend(s.nouse_uuid_annotation);
    }
    out
}

fn containers_of(cs: &[Container], devices: &BTreeSet<&str>) -> Vec<RecordedContainer> {
    let keep = |k: &str| devices.contains(k) || k == "cpu" || k == "memory";
    cs.iter()
        .map(|c| {
            let r = c.resources.as_ref();
            let pick = |m: Option<
                &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
            >| {
                m.map(|m| {
                    m.iter()
                        .filter(|(k, _)| keep(k))
                        .map(|(k, v)| (k.clone(), v.0.clone()))
                        .collect()
                })
                .unwrap_or_default()
            };
            RecordedContainer {
                name: c.name.clone(),
                limits: pick(r.and_then(|r| r.limits.as_ref())),
                requests: pick(r.and_then(|r| r.requests.as_ref())),
            }
        })
        .collect()
}

fn ms(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_millisecond()
}

/// Turn a pod into a recorded pod. `Ok(None)`: the pod asks for no device-family resource (not
/// ours). `Err`: it asks for one but its request does not translate (a malformed quantity, a
/// bad annotation); the warning names the pod and the resource or annotation key.
pub fn record_pod(pod: &Pod) -> Result<Option<RecordedPod>, Warning> {
    let devices = device_resources();
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let name = meta.name.clone().unwrap_or_default();
    let object = format!("pod {namespace}/{name}");
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(None);
    };
    let asks = |c: &Container| {
        c.resources.as_ref().is_some_and(|r| {
            [r.limits.as_ref(), r.requests.as_ref()]
                .into_iter()
                .flatten()
                .any(|m| m.keys().any(|k| devices.contains(k.as_str())))
        })
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    if !spec.containers.iter().chain(init).any(asks) {
        return Ok(None);
    }
    let request = RequestTranslator::default().translate(pod).map_err(|e| {
        let key = match &e {
            hami_core::request::RequestError::Resource {
                container,
                resource,
                ..
            } => format!("container {container:?} resource {resource}"),
            hami_core::request::RequestError::Annotation { key, .. } => {
                format!("annotation {key}")
            }
        };
        Warning {
            object: object.clone(),
            key,
            message: format!("request does not translate, pod left out: {e}"),
        }
    })?;
    if request.total_cards() == 0 {
        return Ok(None);
    }
    let Some(created) = meta.creation_timestamp.as_ref() else {
        return Err(Warning {
            object,
            key: "metadata.creationTimestamp".into(),
            message: "missing; pod left out (no arrival time)".into(),
        });
    };
    let created_ms = ms(created);
    let status = pod.status.as_ref();
    let scheduled_ms = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(ms);
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let finished_ms = if phase == "Succeeded" || phase == "Failed" {
        status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(ms)
            .max()
    } else {
        None
    };
    let ended_ms = finished_ms.or_else(|| meta.deletion_timestamp.as_ref().map(ms));
    let keep = request_annotations();
    let annotations = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| keep.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Some(RecordedPod {
        namespace,
        name,
        uid: meta.uid.clone().unwrap_or_default(),
        created_ms,
        scheduled_ms,
        ended_ms,
        priority: spec.priority.unwrap_or(0),
        annotations,
        init_containers: containers_of(init, &devices),
        containers: containers_of(&spec.containers, &devices),
        placement: placement_of(pod),
    }))
}

/// `gpu-a: GPU-…:3000MiB:30%, …` from the node name and the allocated-devices annotations.
fn placement_of(pod: &Pod) -> Option<String> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    let ann = pod.metadata.annotations.as_ref();
    let mut grants = Vec::new();
    for f in FamilyId::all() {
        let key = f.spec().allocated_annotation;
        let Some(v) = ann.and_then(|a| a.get(key)) else {
            continue;
        };
        if let Ok(pd) = decode_pod_devices(key, v) {
            for d in pd.iter().flatten() {
                grants.push(format!("{}:{}MiB:{}%", d.uuid, d.usedmem, d.usedcores));
            }
        }
    }
    Some(if grants.is_empty() {
        node
    } else {
        format!("{node}: {}", grants.join(" "))
    })
}

/// The pods seen over a recording: a first list, then (when following) watch events. Pods are
/// identified by UID (namespace/name when there is none), so a pod deleted and created again
/// under the same name is two pods.
#[derive(Debug, Clone, Default)]
pub struct History {
    pods: BTreeMap<String, RecordedPod>,
    warned: BTreeSet<String>,
    /// Warnings so far (each pod and key once).
    pub warnings: Vec<Warning>,
}

fn identity(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

impl History {
    /// A pod was listed or changed: record (or refresh) it. An end already observed is kept.
    pub fn observe(&mut self, pod: &Pod) {
        match record_pod(pod) {
            Ok(Some(mut p)) => {
                let id = identity(pod);
                if let Some(old) = self.pods.get(&id) {
                    p.ended_ms = p.ended_ms.or(old.ended_ms);
                    p.scheduled_ms = p.scheduled_ms.or(old.scheduled_ms);
                    p.placement = p.placement.or_else(|| old.placement.clone());
                }
                self.pods.insert(id, p);
            }
            Ok(None) => {}
            Err(w) => {
                // Its latest spec is what the scheduler would read: an earlier, valid version
                // is not what ran.
                self.pods.remove(&identity(pod));
                if self.warned.insert(format!("{}\0{}", w.object, w.key)) {
                    self.warnings.push(w);
                }
            }
        }
    }

    /// A pod was deleted at `now_ms` (watch event): it ended then unless an earlier end is
    /// known.
    pub fn deleted(&mut self, pod: &Pod, now_ms: i64) {
        self.observe(pod);
        if let Some(p) = self.pods.get_mut(&identity(pod)) {
            p.ended_ms = Some(p.ended_ms.map_or(now_ms, |e| e.min(now_ms)));
        }
    }

    /// After a re-list, pods that were not listed again are gone: they ended at `now_ms`.
    pub fn relisted(&mut self, present: &BTreeSet<String>, now_ms: i64) {
        for (id, p) in self.pods.iter_mut() {
            if !present.contains(id) && p.ended_ms.is_none() {
                p.ended_ms = Some(now_ms);
            }
        }
    }

    /// Identity of a pod as [`History`] keys it (UID, else namespace/name).
    pub fn identity(pod: &Pod) -> String {
        identity(pod)
    }

    /// The pods, by identity.
    pub fn pods(&self) -> impl Iterator<Item = &RecordedPod> {
        self.pods.values()
    }
}

/// How to render a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// Scenario name.
    pub name: String,
    /// Free text for `description`.
    pub description: String,
    /// End of the recording, unix ms (the run's stop time is measured to it).
    pub now_ms: i64,
    /// Only pods alive at or after this time, unix ms; the run starts here (pods that arrived
    /// earlier and still ran arrive at 0). `None`: from the first pod's creation.
    pub since_ms: Option<i64>,
    /// `policies:` entries, as YAML flow mappings.
    pub policies: Vec<String>,
}

/// The default policies a recording is replayed under.
pub fn default_policies() -> Vec<String> {
    [
        "{name: binpack, node: binpack, device: binpack}",
        "{name: spread, node: spread, device: spread}",
        "{name: fgd, node: fgd, device: binpack}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A YAML scalar: JSON's string form is a valid YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn dur(ms: i64) -> String {
    let ms = ms.max(0);
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn flow_map(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {}", q(k), q(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn container_yaml(c: &RecordedContainer) -> String {
    let mut parts = vec![format!("name: {}", q(&c.name))];
    if !c.limits.is_empty() {
        parts.push(format!("limits: {}", flow_map(&c.limits)));
    }
    if !c.requests.is_empty() {
        parts.push(format!("requests: {}", flow_map(&c.requests)));
    }
    format!("{{{}}}", parts.join(", "))
}

/// Recordings with more pods than this run the simulator's checker every 200 events instead of
/// after every event.
pub const CHECK_ALL_UP_TO: usize = 500;

/// What a rendering contains (for the command's summary and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// GPU nodes written.
    pub nodes: usize,
    /// Cards written.
    pub cards: usize,
    /// Pods written.
    pub pods: usize,
    /// Of those, pods with a departure.
    pub ended: usize,
    /// Pods that ended before the window and were left out.
    pub before_window: usize,
}

/// Render nodes and pods as a discrete-event scenario (explicit `cluster.nodes` and
/// `workload.pods`). Nodes are sorted by name, pods by arrival then namespace/name, so the same
/// cluster state always gives the same text. Pods are written with their arrival (`at`,
/// relative to the start) and, when they ended, their run time from placement (or from arrival
/// when they never were placed); the run stops at the end of the recording and drains.
pub fn render(
    opts: &RenderOptions,
    nodes: &[RecordedNode],
    pods: &[RecordedPod],
) -> (String, Summary) {
    let mut summary = Summary::default();
    let mut nodes: Vec<&RecordedNode> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut pods: Vec<&RecordedPod> = pods
        .iter()
        .filter(|p| {
            let keep = match (opts.since_ms, p.ended_ms) {
                (Some(s), Some(e)) => e >= s,
                _ => true,
            };
            if !keep {
                summary.before_window += 1;
            }
            keep
        })
        .collect();
    pods.sort_by(|a, b| {
        (a.created_ms, &a.namespace, &a.name).cmp(&(b.created_ms, &b.namespace, &b.name))
    });
    let t0 = opts
        .since_ms
        .or_else(|| pods.first().map(|p| p.created_ms))
        .unwrap_or(opts.now_ms);
    let mut out = String::new();
    let line = |out: &mut String, s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(
        &mut out,
        "# Recorded by `hami record`; replay with `hami sim run <this file>`.",
    );
    line(&mut out, "kind: discrete-event");
    line(&mut out, &format!("name: {}", q(&opts.name)));
    line(&mut out, &format!("description: {}", q(&opts.description)));
    line(&mut out, "seed: 1");
    line(&mut out, "cluster:");
    line(&mut out, "  nodes:");
    for n in &nodes {
        summary.nodes += 1;
        line(&mut out, &format!("    - name: {}", q(&n.name)));
        if let Some(c) = n.cpu_milli {
            line(&mut out, &format!("      cpu: \"{c}m\""));
        }
        if let Some(m) = n.memory_mib {
            line(&mut out, &format!("      ram: \"{m}Mi\""));
        }
        if !n.links.is_empty() {
            let l: Vec<String> = n
                .links
                .iter()
                .map(|(a, b, s)| format!("[{a}, {b}, {s}]"))
                .collect();
            line(&mut out, &format!("      links: [{}]", l.join(", ")));
        }
        line(&mut out, "      cards:");
        for c in &n.cards {
            summary.cards += 1;
            let mut s = format!(
                "        - {{id: {}, family: {}, model: {}, memory: \"{}Mi\", cores: {}, split: {}, numa: {}",
                q(&c.id),
                c.family,
                q(&c.model),
                c.memory_mib,
                c.cores,
                c.split,
                c.numa
            );
            if !c.healthy || c.cordoned {
                s.push_str(", healthy: false");
            }
            s.push('}');
            if c.cordoned {
                s.push_str("  # cordoned (hami.io/device-cordon)");
            }
            line(&mut out, &s);
        }
    }
    line(&mut out, "workload:");
    line(&mut out, "  pods:");
    let mut last_at = 0;
    for p in &pods {
        summary.pods += 1;
        let at = (p.created_ms - t0).max(0);
        last_at = last_at.max(at);
        if let Some(pl) = &p.placement {
            line(&mut out, &format!("    # ran on {pl}"));
        }
        line(&mut out, &format!("    - name: {}", q(&p.key())));
        line(&mut out, &format!("      at: {}", dur(at)));
        if let Some(e) = p.ended_ms {
            summary.ended += 1;
            let start = p
                .scheduled_ms
                .unwrap_or(p.created_ms)
                .max(p.created_ms)
                .max(t0);
            line(&mut out, &format!("      duration: {}", dur(e - start)));
        }
        if p.priority != 0 {
            line(&mut out, &format!("      priority: {}", p.priority));
        }
        if !p.annotations.is_empty() {
            line(
                &mut out,
                &format!("      annotations: {}", flow_map(&p.annotations)),
            );
        }
        if !p.init_containers.is_empty() {
            line(&mut out, "      init_containers:");
            for c in &p.init_containers {
                line(&mut out, &format!("        - {}", container_yaml(c)));
            }
        }
        line(&mut out, "      containers:");
        for c in &p.containers {
            line(&mut out, &format!("        - {}", container_yaml(c)));
        }
    }
    line(&mut out, "policies:");
    for p in &opts.policies {
        line(&mut out, &format!("  - {p}"));
    }
    // Departures after the last arrival happen; pods still running stay to the end.
    let stop = (opts.now_ms - t0).max(last_at) + 1000;
    line(
        &mut out,
        &format!("stop: {{time: {}, drain: true}}", dur(stop)),
    );
    if summary.pods > CHECK_ALL_UP_TO {
        // The outside checker after every event costs O(pods) each time; large replays check
        // every 200th event (and always at the end), as the shipped trace replays do.
        line(&mut out, "check_every: 200");
    }
    (out, summary)
}

/// What [`record_cluster`] returns.
#[derive(Debug, Clone)]
pub struct Recording {
    /// GPU nodes at the end of the recording.
    pub nodes: Vec<RecordedNode>,
    /// Pods seen.
    pub pods: Vec<RecordedPod>,
    /// Node and pod warnings.
    pub warnings: Vec<Warning>,
    /// End of the recording, unix ms.
    pub now_ms: i64,
}

/// Unix milliseconds now (the one clock read of the recorder).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// List the cluster's nodes and pods; when `follow` is set, watch pods until it elapses or
/// `stop` resolves (deletions seen on the way end their pods), then list the nodes again.
pub async fn record_cluster(
    client: ::kube::Client,
    follow: Option<std::time::Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Recording, String> {
    use ::kube::api::{Api, ListParams};
    use ::kube::runtime::WatchStreamExt;
    use ::kube::runtime::watcher::{self, Event as WatchEvent};
    use futures::StreamExt;

    let pods_api: Api<Pod> = Api::all(client.clone());
    let nodes_api: Api<Node> = Api::all(client);
    let mut history = History::default();
    let list = pods_api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing pods: {e}"))?;
    for p in &list.items {
        history.observe(p);
    }
    if let Some(follow) = follow {
        let mut stream = watcher::watcher(pods_api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let deadline = tokio::time::sleep(follow);
        tokio::pin!(deadline);
        tokio::pin!(stop);
        let mut relist: Option<BTreeSet<String>> = None;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = &mut stop => break,
                ev = stream.next() => {
                    let Some(ev) = ev else { break };
                    match ev {
                        Err(e) => tracing::warn!(error = %e, "pod watch error"),
                        Ok(WatchEvent::Init) => relist = Some(BTreeSet::new()),
                        Ok(WatchEvent::InitApply(p)) | Ok(WatchEvent::Apply(p)) => {
                            if let Some(seen) = relist.as_mut() {
                                seen.insert(History::identity(&p));
                            }
                            history.observe(&p);
                        }
                        Ok(WatchEvent::Delete(p)) => history.deleted(&p, unix_now_ms()),
                        Ok(WatchEvent::InitDone) => {
                            if let Some(seen) = relist.take() {
                                history.relisted(&seen, unix_now_ms());
                            }
                        }
                    }
                }
            }
        }
    }
    let now_ms = unix_now_ms();
    let node_list = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    for n in &node_list.items {
        let (rec, w) = record_node(n);
        warnings.extend(w);
        nodes.extend(rec);
    }
    warnings.extend(history.warnings.iter().cloned());
    Ok(Recording {
        nodes,
        pods: history.pods().cloned().collect(),
        warnings,
        now_ms,
    })
}

/// Connect (a kubeconfig file, else `KUBECONFIG` / in-cluster config) and record: the blocking
/// entry point of `hami record`. Ctrl-C or SIGTERM ends a `follow` early and still records.
pub fn run_record(
    kubeconfig: Option<&std::path::Path>,
    follow: Option<std::time::Duration>,
) -> Result<Recording, String> {
    crate::tls::install_ring_provider();
    // Watch errors and retries are logged (RUST_LOG, default warn) to standard error.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    rt.block_on(async move {
        let client = match kubeconfig {
            Some(path) => {
                let kc = ::kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
                let cfg = ::kube::Config::from_custom_kubeconfig(
                    kc,
                    &::kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                ::kube::Client::try_from(cfg)
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
            }
            None => ::kube::Client::try_default().await.map_err(|e| {
                format!("connecting to the Kubernetes API (in-cluster config or KUBECONFIG): {e}")
            })?,
        };
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        };
        record_cluster(client, follow, stop).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_core::annotations::node_register_annotations;
    use hami_core::model::{Device, Node as CoreNode};
    use serde_json::json;

    fn node(name: &str, annotations: BTreeMap<String, String>, cpu: &str) -> Node {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "512Gi", "nvidia.com/gpu": "40"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        n.metadata.annotations = Some(annotations);
        n
    }

    /// Registration annotations as our node agent writes them: two A100s, plus one Hygon DCU
    /// when `dcu`.
    fn registration(dcu: bool) -> BTreeMap<String, String> {
        let mut n = CoreNode::new("x");
        for i in 0..2 {
            let mut d = Device::new(
                format!("GPU-{i}"),
                i,
                FamilyId::NVIDIA,
                "NVIDIA-A100-SXM4-40GB",
                40960,
            );
            d.numa = i as i32;
            n.devices.push(d);
        }
        n.devices[1].healthy = false;
        if dcu {
            let hygon = FamilyId::by_name("hygon").unwrap_or_else(|| panic!("hygon family"));
            n.devices
                .push(Device::new("DCU-0", 0, hygon, "DCU-Z100", 32768));
        }
        node_register_annotations(&n)
    }

    /// (case, annotations, allocatable cpu, cards kept as (id, family), warning keys)
    type NodeCase = (
        &'static str,
        BTreeMap<String, String>,
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<&'static str>,
    );

    #[test]
    fn nodes() {
        let nv = "hami.io/node-nvidia-register";
        let dcu = "hami.io/node-dcu-register";
        let mut broken_nv = registration(true);
        broken_nv.insert(nv.into(), "[{\"id\": 7".into());
        let mut legacy_garbage = registration(false);
        legacy_garbage.insert(dcu.into(), "not:a:device".into());
        let cases: Vec<NodeCase> = vec![
            ("no registration", BTreeMap::new(), "64", vec![], vec![]),
            (
                "nvidia only",
                registration(false),
                "64",
                vec![("GPU-0", "nvidia"), ("GPU-1", "nvidia")],
                vec![],
            ),
            (
                "two families",
                registration(true),
                "64",
                vec![("GPU-0", "nvidia"), ("GPU-1", "nvidia"), ("DCU-0", "hygon")],
                vec![],
            ),
            (
                "bad nvidia keeps hygon",
                broken_nv,
                "64",
                vec![("DCU-0", "hygon")],
                vec![nv],
            ),
            (
                "bad hygon keeps nvidia",
                legacy_garbage,
                "64",
                vec![("GPU-0", "nvidia"), ("GPU-1", "nvidia")],
                vec![dcu],
            ),
            (
                "bad cpu quantity",
                registration(false),
                "lots",
                vec![("GPU-0", "nvidia"), ("GPU-1", "nvidia")],
                vec!["status.allocatable.cpu"],
            ),
        ];
        for (case, ann, cpu, want_cards, want_warn) in cases {
            let (rec, warnings) = record_node(&node("gpu-a", ann, cpu));
            let cards: Vec<(&str, &str)> = rec
                .iter()
                .flat_map(|n| &n.cards)
                .map(|c| (c.id.as_str(), c.family))
                .collect();
            assert_eq!(cards, want_cards, "{case}");
            let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
            assert_eq!(keys, want_warn, "{case}: {warnings:?}");
            for w in &warnings {
                assert_eq!(w.object, "node gpu-a", "{case}");
                assert!(w.to_string().starts_with("node gpu-a: "), "{case}: {w}");
            }
        }
        // Cards made from node capacity cannot be listed: the warning counts them.
        let mut mixed = node("gpu-a", registration(false), "64");
        mixed.status.get_or_insert_with(Default::default).capacity = Some(BTreeMap::from([
            (
                "cambricon.com/mlu.smlu.vcore".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("400".into()),
            ),
            (
                "cambricon.com/mlu.smlu.vmemory".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("384".into()),
            ),
        ]));
        let (rec, w) = record_node(&mixed);
        assert_eq!(rec.map(|n| n.cards.len()), Some(2));
        assert_eq!(
            w.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
            ["status.capacity[cambricon.com/mlu.smlu.vcore]"]
        );
        assert!(w[0].message.starts_with("4 cambricon card(s)"), "{w:?}");
        let (rec, _) = record_node(&node("gpu-a", registration(false), "64"));
        let rec = rec.unwrap_or_else(|| panic!("a GPU node"));
        assert_eq!(rec.cpu_milli, Some(64_000));
        assert_eq!(rec.memory_mib, Some(512 * 1024));
        let c = &rec.cards[1];
        assert_eq!(
            (c.memory_mib, c.cores, c.split, c.numa, c.healthy),
            (40960, 100, 10, 1, false)
        );
        assert_eq!(rec.cards[0].model, "NVIDIA-A100-SXM4-40GB");
        let mut ann = registration(false);
        ann.insert(
            keys::NODE_NVIDIA_SCORE.into(),
            r#"[{"uuid":"GPU-0","score":{"GPU-1":600}},{"uuid":"GPU-1","score":{"GPU-0":600,"GPU-9":50}}]"#.into(),
        );
        let (rec, w) = record_node(&node("gpu-a", ann.clone(), "64"));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(rec.map(|n| n.links), Some(vec![(0, 1, 600)]));
        ann.insert(keys::NODE_NVIDIA_SCORE.into(), "{".into());
        let (rec, w) = record_node(&node("gpu-a", ann, "64"));
        assert_eq!(rec.map(|n| (n.cards.len(), n.links.len())), Some((2, 0)));
        assert_eq!(
            w.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
            [keys::NODE_NVIDIA_SCORE]
        );
        let mut ann = registration(false);
        ann.insert(keys::DEVICE_CORDON.into(), "GPU-0".into());
        let (rec, _) = record_node(&node("gpu-a", ann, "64"));
        let cordoned: Vec<bool> = rec
            .iter()
            .flat_map(|n| &n.cards)
            .map(|c| c.cordoned)
            .collect();
        assert_eq!(cordoned, [true, false]);
        let (text, _) = render(
            &RenderOptions {
                name: "c".into(),
                description: String::new(),
                now_ms: 0,
                since_ms: None,
                policies: default_policies(),
            },
            &rec.into_iter().collect::<Vec<_>>(),
            &[],
        );
        assert!(
            text.contains("numa: 0, healthy: false}  # cordoned"),
            "{text}"
        );
    }

    fn pod(name: &str, extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"containers": [{"name": "main", "image": "x"}]}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn gpu(limits: serde_json::Value) -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "main", "image": "x",
            "resources": {"limits": limits, "requests": {"cpu": "2", "ephemeral-storage": "1Gi"}}}]}})
    }

    const T0: i64 = 1_795_860_000_000; // 2026-11-28T10:00:00Z

    #[test]
    fn pods() {
        enum Want {
            NotOurs,
            Recorded {
                limits: Vec<(&'static str, &'static str)>,
                ended: Option<i64>,
                scheduled: Option<i64>,
            },
            Warns(&'static str),
        }
        let cases: Vec<(&str, Pod, Want)> = vec![
            ("plain", pod("plain", json!({})), Want::NotOurs),
            (
                "sharing",
                pod(
                    "share",
                    gpu(
                        json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000", "nvidia.com/gpucores": "30"}),
                    ),
                ),
                Want::Recorded {
                    limits: vec![
                        ("nvidia.com/gpu", "1"),
                        ("nvidia.com/gpucores", "30"),
                        ("nvidia.com/gpumem", "3000"),
                    ],
                    ended: None,
                    scheduled: None,
                },
            ),
            (
                "malformed quantity",
                pod(
                    "bad",
                    gpu(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3 gigs"})),
                ),
                Want::Warns("container \"main\" resource nvidia.com/gpumem"),
            ),
            (
                "bad annotation",
                {
                    let mut p = pod("badann", gpu(json!({"nvidia.com/gpu": "1"})));
                    p.metadata.annotations = Some(BTreeMap::from([(
                        NUMA_BIND_ANNOTATION.to_string(),
                        "maybe".to_string(),
                    )]));
                    p
                },
                Want::Warns("annotation nvidia.com/numa-bind"),
            ),
            (
                "finished, scheduled",
                {
                    let mut p = pod("done", gpu(json!({"nvidia.com/gpu": "2"})));
                    merge_pod(
                        &mut p,
                        json!({"status": {
                            "phase": "Succeeded",
                            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T10:00:05Z"}],
                            "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-28T10:01:00Z"}}}]
                        }}),
                    );
                    p
                },
                Want::Recorded {
                    limits: vec![("nvidia.com/gpu", "2")],
                    ended: Some(T0 + 60_000),
                    scheduled: Some(T0 + 5_000),
                },
            ),
            (
                "terminating",
                pod("term", {
                    let mut v = gpu(json!({"nvidia.com/gpu": "1"}));
                    merge(
                        &mut v,
                        json!({"metadata": {"deletionTimestamp": "2026-11-28T10:02:00Z"}}),
                    );
                    v
                }),
                Want::Recorded {
                    limits: vec![("nvidia.com/gpu", "1")],
                    ended: Some(T0 + 120_000),
                    scheduled: None,
                },
            ),
        ];
        for (case, p, want) in cases {
            let got = record_pod(&p);
            match (want, got) {
                (Want::NotOurs, Ok(None)) => {}
                (
                    Want::Recorded {
                        limits,
                        ended,
                        scheduled,
                    },
                    Ok(Some(r)),
                ) => {
                    let l: Vec<(&str, &str)> = r.containers[0]
                        .limits
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    assert_eq!(l, limits, "{case}");
                    // Requests keep cpu, drop what the scheduler does not read.
                    assert_eq!(
                        r.containers[0].requests.keys().collect::<Vec<_>>(),
                        ["cpu"],
                        "{case}"
                    );
                    assert_eq!(r.created_ms, T0, "{case}");
                    assert_eq!(r.ended_ms, ended, "{case}");
                    assert_eq!(r.scheduled_ms, scheduled, "{case}");
                }
                (Want::Warns(key), Err(w)) => {
                    assert_eq!(w.key, key, "{case}");
                    assert!(w.object.starts_with("pod default/"), "{case}: {w}");
                }
                (_, got) => panic!("{case}: unexpected {got:?}"),
            }
        }
    }

    fn merge_pod(p: &mut Pod, extra: serde_json::Value) {
        let mut v = serde_json::to_value(&*p).unwrap_or_else(|e| panic!("{e}"));
        merge(&mut v, extra);
        *p = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn history_ends_deleted_and_vanished_pods_once() {
        let a = pod("a", gpu(json!({"nvidia.com/gpu": "1"})));
        let b = pod("b", gpu(json!({"nvidia.com/gpu": "1"})));
        let bad = pod("bad", gpu(json!({"nvidia.com/gpu": "x"})));
        let mut h = History::default();
        for p in [&a, &b, &bad, &bad] {
            h.observe(p);
        }
        assert_eq!(h.warnings.len(), 1, "one warning per pod and key");
        // A pod that turns bad (annotated after admission) is dropped.
        let mut b2 = b.clone();
        b2.metadata.annotations = Some(BTreeMap::from([(
            NUMA_BIND_ANNOTATION.to_string(),
            "maybe".to_string(),
        )]));
        h.observe(&b2);
        assert_eq!(h.pods().count(), 1);
        assert_eq!(h.warnings.len(), 2);
        h.observe(&b);
        h.deleted(&a, T0 + 10_000);
        h.observe(&a); // a late update must not revive it
        h.relisted(&BTreeSet::from([History::identity(&a)]), T0 + 20_000);
        let ends: Vec<(String, Option<i64>)> =
            h.pods().map(|p| (p.name.clone(), p.ended_ms)).collect();
        assert_eq!(
            ends,
            [
                ("a".to_string(), Some(T0 + 10_000)),
                ("b".to_string(), Some(T0 + 20_000))
            ]
        );
    }

    fn sample() -> (Vec<RecordedNode>, Vec<RecordedPod>) {
        let (n, _) = record_node(&node("gpu-a", registration(false), "64"));
        let mut typed = pod(
            "typed",
            gpu(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50"})),
        );
        typed.metadata.annotations = Some(BTreeMap::from([
            ("nvidia.com/use-gputype".to_string(), "A100".to_string()),
            (
                "hami.io/node-scheduler-policy".to_string(),
                "spread".to_string(),
            ),
            (
                "hami.io/vgpu-devices-allocated".to_string(),
                "GPU-0,NVIDIA,20480,0:;".to_string(),
            ),
        ]));
        merge_pod(
            &mut typed,
            json!({"metadata": {"creationTimestamp": "2026-11-28T10:00:02Z"},
            "spec": {"nodeName": "gpu-a", "priority": 7}}),
        );
        let mut done = pod("done", gpu(json!({"nvidia.com/gpu": "2"})));
        merge_pod(
            &mut done,
            json!({"metadata": {"deletionTimestamp": "2026-11-28T10:00:30Z"}}),
        );
        let pods = [&typed, &done]
            .iter()
            .filter_map(|p| record_pod(p).ok().flatten())
            .collect();
        (n.into_iter().collect(), pods)
    }

    #[test]
    fn rendered_scenario() {
        let (nodes, pods) = sample();
        let opts = RenderOptions {
            name: "recorded".into(),
            description: "test".into(),
            now_ms: T0 + 60_000,
            since_ms: None,
            policies: default_policies(),
        };
        let (text, summary) = render(&opts, &nodes, &pods);
        assert_eq!(
            summary,
            Summary {
                nodes: 1,
                cards: 2,
                pods: 2,
                ended: 1,
                before_window: 0
            }
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn large_recordings_check_every_200_events() {
        let (nodes, pods) = sample();
        let opts = RenderOptions {
            name: "big".into(),
            description: String::new(),
            now_ms: T0 + 60_000,
            since_ms: None,
            policies: default_policies(),
        };
        let many: Vec<RecordedPod> = (0..=CHECK_ALL_UP_TO)
            .map(|i| RecordedPod {
                name: format!("p{i}"),
                ..pods[0].clone()
            })
            .collect();
        assert!(!render(&opts, &nodes, &pods).0.contains("check_every"));
        assert!(
            render(&opts, &nodes, &many)
                .0
                .ends_with("check_every: 200\n")
        );
    }

    #[test]
    fn since_window_drops_old_pods_and_starts_at_its_beginning() {
        let (nodes, pods) = sample();
        let opts = RenderOptions {
            name: "w".into(),
            description: String::new(),
            now_ms: T0 + 60_000,
            since_ms: Some(T0 + 40_000),
            policies: default_policies(),
        };
        let (text, summary) = render(&opts, &nodes, &pods);
        assert_eq!((summary.pods, summary.before_window), (1, 1));
        assert!(
            text.contains("name: \"default/typed\"\n      at: 0s\n"),
            "{text}"
        );
        assert!(text.contains("stop: {time: 21s, drain: true}"), "{text}");
    }
}
