//! Bind ↔ Allocate without guessing: which pod and container a kubelet `Allocate` call is for.
//!
//! kubelet's `Allocate` names device IDs, never a pod. HAMi's plugin guesses the pod from the node
//! lock or "the first pending pod", and its users have seen containers receive another pod's
//! cards and limits (HAMi issues #3096, #781, #1741, #2640, #404). This module decides from
//! evidence only, as pure functions over plain values:
//!
//! * [`decide`]: the candidates (pods bound to this node with their to-allocate annotation), the
//!   cards this plugin advertises and the replica IDs kubelet passed → allocate container `k` of
//!   pod `p`, wait (the evidence may still arrive) or refuse (with a reason that names the pods).
//! * [`preferred`]: the `GetPreferredAllocation` answer that steers kubelet to one replica of
//!   each card the identified container was granted.
//! * [`bind_conflict`]: the scheduler-side rule that keeps two in-flight pods on one node from
//!   ever being indistinguishable to the plugin, without serialising the whole node.
//!
//! The protocol and its argument are written up in `cluster/docs/allocate-protocol.md`.
//! The I/O around these functions (listing pods, patching annotations, retrying a wait) lives in
//! [`crate::deviceplugin`]; the pod source is [`source::PodSource`].

pub mod source;
pub mod testing;

use hami_core::codec::devices::{ContainerDevices, PodDevices, decode_pod_devices};
use hami_core::codec::{BindPhase, MigAllocation, decode_checked_mig_allocations, keys};
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, BTreeSet};

/// One pod bound to this node that may still need devices from this plugin.
///
/// Contract: built from the API object by [`Candidate::from_pod`]; `to_allocate` is index-aligned
/// with `containers` (init containers first, then app containers, as HAMi v2.9+ writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID (used for the per-container cache directory).
    pub uid: String,
    /// `spec.nodeName`; empty when not bound yet.
    pub node_name: String,
    /// `hami.io/vgpu-node`, the node the scheduler granted the devices on.
    pub vgpu_node: Option<String>,
    /// `hami.io/bind-phase`, when present and valid.
    pub bind_phase: Option<BindPhase>,
    /// `hami.io/bind-time` in Unix seconds, when present and numeric.
    pub bind_time: Option<i64>,
    /// `status.phase` is `Pending` (or absent, which the API never returns for a bound pod).
    pub pending: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase` is `Succeeded` or `Failed`: the pod's MIG instances may be destroyed.
    pub finished: bool,
    /// Decoded to-allocate annotation; `Err` keeps the decode error text for the refusal reason.
    pub to_allocate: Result<PodDevices, String>,
    /// Decoded and checked `hami.io/vgpu-mig-allocations` (empty when absent: no MIG instance);
    /// `Err` names the pod and the key.
    pub mig_allocations: Result<Vec<MigAllocation>, String>,
    /// Container names and whether each disabled isolation (`CUDA_DISABLE_CONTROL=true`), init
    /// containers first.
    pub containers: Vec<ContainerInfo>,
}

/// What the device plugin needs to know about one container of a candidate pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerInfo {
    /// Container name.
    pub name: String,
    /// The container's env sets `CUDA_DISABLE_CONTROL=true`: no `/etc/ld.so.preload` mount.
    pub disable_control: bool,
}

impl Candidate {
    /// Read a pod's HAMi annotations for the family whose to-allocate key is `to_allocate_key`.
    /// Never fails: unreadable values become `None` / `Err(text)`, which [`decide`] turns into a
    /// refusal or an ineligible pod rather than a guess.
    pub fn from_pod(pod: &Pod, to_allocate_key: &str) -> Candidate {
        let meta = &pod.metadata;
        let ann = meta.annotations.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let mut containers = Vec::new();
        if let Some(spec) = spec {
            for c in spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
            {
                let disable_control = c.env.iter().flatten().any(|e| {
                    e.name == "CUDA_DISABLE_CONTROL"
                        && e.value
                            .as_deref()
                            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                });
                containers.push(ContainerInfo {
                    name: c.name.clone(),
                    disable_control,
                });
            }
        }
        let to_allocate = match ann.get(to_allocate_key) {
            None => Ok(Vec::new()),
            Some(v) => decode_pod_devices(to_allocate_key, v).map_err(|e| e.to_string()),
        };
        let mig_allocations = match ann.get(keys::MIG_ALLOCATIONS) {
            None => Ok(Vec::new()),
            Some(v) => decode_checked_mig_allocations(keys::MIG_ALLOCATIONS, v).map_err(|e| {
                format!(
                    "pod {}/{}: {e}",
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default()
                )
            }),
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        Candidate {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            vgpu_node: ann.get(keys::VGPU_NODE).cloned(),
            bind_phase: ann
                .get(keys::BIND_PHASE)
                .and_then(|v| BindPhase::decode(keys::BIND_PHASE, v).ok()),
            bind_time: ann.get(keys::BIND_TIME).and_then(|v| v.trim().parse().ok()),
            pending: phase.is_none_or(|p| p == "Pending"),
            deleting: meta.deletion_timestamp.is_some(),
            finished: phase.is_some_and(|p| p == "Succeeded" || p == "Failed"),
            to_allocate,
            mig_allocations,
            containers,
        }
    }

    /// `namespace/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Index of the next container still to be served, skipping containers already `served`
    /// by this plugin (a memo that protects against a stale read of our own patch).
    pub fn next_pending(&self, served: &BTreeSet<(String, usize)>) -> Option<usize> {
        let devs = self.to_allocate.as_ref().ok()?;
        devs.iter()
            .enumerate()
            .position(|(i, c)| !c.is_empty() && !served.contains(&(self.uid.clone(), i)))
    }

    /// Device counts of every container still to be served, in container order.
    pub fn pending_counts(&self, served: &BTreeSet<(String, usize)>) -> Vec<usize> {
        match &self.to_allocate {
            Ok(devs) => devs
                .iter()
                .enumerate()
                .filter(|(i, c)| !c.is_empty() && !served.contains(&(self.uid.clone(), *i)))
                .map(|(_, c)| c.len())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether the pod is one this plugin may serve at all: bound to `node`, placed there by the
    /// scheduler, bind phase `allocating`, still `Pending`, not being deleted.
    pub fn in_flight(&self, node: &str) -> bool {
        self.node_name == node
            && self.vgpu_node.as_deref() == Some(node)
            && self.bind_phase == Some(BindPhase::Allocating)
            && self.pending
            && !self.deleting
    }
}

/// One device kubelet asked for, split into the physical card and the replica number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplicaId {
    /// Physical card UUID.
    pub uuid: String,
    /// Replica number (`0..split_count`).
    pub replica: u32,
}

/// The kubelet-facing ID of replica `n` of card `uuid` (`<UUID>-<n>`, as HAMi advertises).
pub fn replica_id(uuid: &str, n: u32) -> String {
    format!("{uuid}-{n}")
}

/// Split `<UUID>-<n>` against the cards this plugin advertises; `None` for an ID we never
/// advertised (the longest matching card UUID wins, so UUIDs that prefix each other are safe).
pub fn parse_replica_id(id: &str, cards: &BTreeSet<String>) -> Option<ReplicaId> {
    let (uuid, n) = id.rsplit_once('-')?;
    let replica: u32 = n.parse().ok()?;
    cards.contains(uuid).then(|| ReplicaId {
        uuid: uuid.to_string(),
        replica,
    })
}

/// The plugin's answer for one container request of an `Allocate` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve container `container` of `candidates[pod]` with these devices.
    Allocate(Assignment),
    /// The evidence is not there yet (annotations not visible, or two pods still match): list the
    /// pods again and retry until the wait deadline, then refuse with this reason.
    Wait(String),
    /// Never serve this request: the reason says what did not match.
    Refuse(String),
}

/// A container identified beyond doubt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Index into the candidate list passed to [`decide`].
    pub pod: usize,
    /// Container index (init containers first) inside that pod.
    pub container: usize,
    /// The container's devices as the scheduler granted them (annotation order).
    pub devices: ContainerDevices,
}

/// In-flight candidates whose next unserved container needs `n` cards, as `(candidate,
/// container)`, and in-flight candidates whose to-allocate annotation is unreadable.
fn awaiting(
    node: &str,
    candidates: &[Candidate],
    served: &BTreeSet<(String, usize)>,
    n: usize,
) -> (Vec<(usize, usize)>, Vec<usize>) {
    let mut matching = Vec::new();
    let mut broken = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if !c.in_flight(node) {
            continue;
        }
        let Ok(devs) = &c.to_allocate else {
            broken.push(i);
            continue;
        };
        if let Some(k) = c.next_pending(served)
            && devs.get(k).map_or(0, Vec::len) == n
        {
            matching.push((i, k));
        }
    }
    (matching, broken)
}

/// Which candidates a refused `Allocate` of `size` cards concerns (indices into `candidates`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefusalTargets {
    /// Pods identified beyond doubt: kubelet fails their admission with the refusal, so their
    /// bind phase becomes `failed` (HAMi's value) and they get an Event. Also pods whose
    /// annotation is unreadable when no pod matches: they can never be served.
    pub failed: Vec<usize>,
    /// Pods the refusal is about without identifying one (an ambiguity): an Event each, bind
    /// phase untouched — the others are still to be admitted and must stay servable.
    pub informed: Vec<usize>,
}

/// The pods a refusal of a `size`-card request concerns, by the same evidence [`decide`] uses:
/// exactly one in-flight pod awaiting `size` cards → it failed; several → all informed, none
/// failed; none → the in-flight pods with unreadable annotations failed (if any).
pub fn refusal_targets(
    node: &str,
    candidates: &[Candidate],
    served: &BTreeSet<(String, usize)>,
    size: usize,
) -> RefusalTargets {
    let (matching, broken) = awaiting(node, candidates, served, size);
    match matching.as_slice() {
        [] => RefusalTargets {
            failed: broken,
            informed: Vec::new(),
        },
        [(p, _)] => RefusalTargets {
            failed: vec![*p],
            informed: Vec::new(),
        },
        many => RefusalTargets {
            failed: Vec::new(),
            informed: many.iter().map(|(p, _)| *p).collect(),
        },
    }
}

/// Decide which container a kubelet `Allocate` container request is for.
///
/// Rules, in order (the argument is in `cluster/docs/allocate-protocol.md`):
/// 1. Every requested ID must be a replica of a card in `cards`, at most one replica per card
///    (a container never gets two slices of one card), else refuse.
/// 2. Only pods [`Candidate::in_flight`] on `node` count. Their next unserved container is the one
///    kubelet can be asking for (kubelet serves a pod's containers in order).
/// 3. Identity is the device count: exactly one in-flight pod whose next container needs `n`
///    cards → that container. None → wait (the annotations may not be visible yet). Two or more
///    → wait (one may be failed by kubelet or deleted meanwhile), then refuse; never pick one.
/// 4. The identified container's cards must be exactly the cards kubelet picked (we steered it
///    there with [`preferred`]); otherwise refuse — kubelet's accounting and the grant disagree.
///
/// The node lock is deliberately not evidence: it names the pod the scheduler bound last, not
/// the pod kubelet is admitting (HAMi #3096).
pub fn decide(
    node: &str,
    cards: &BTreeSet<String>,
    candidates: &[Candidate],
    served: &BTreeSet<(String, usize)>,
    request_ids: &[String],
) -> Decision {
    if request_ids.is_empty() {
        return Decision::Refuse("kubelet asked for zero devices".into());
    }
    let mut physical: Vec<String> = Vec::with_capacity(request_ids.len());
    for id in request_ids {
        let Some(r) = parse_replica_id(id, cards) else {
            return Decision::Refuse(format!(
                "device ID {id:?} is not a replica of any card this plugin advertises"
            ));
        };
        if physical.contains(&r.uuid) {
            return Decision::Refuse(format!(
                "kubelet picked two replicas of card {} for one container; HAMi grants at most \
                 one slice of a card per container (kubelet ignored the preferred allocation)",
                r.uuid
            ));
        }
        physical.push(r.uuid);
    }
    let n = physical.len();
    let (matching, broken) = awaiting(node, candidates, served, n);
    let broken: Vec<String> = broken
        .iter()
        .map(|&i| {
            let c = &candidates[i];
            let e = c.to_allocate.as_ref().err().cloned().unwrap_or_default();
            format!("{}: {e}", c.key())
        })
        .collect();
    match matching.as_slice() {
        [] if !broken.is_empty() => Decision::Refuse(format!(
            "no pod on node {node} awaits {n} card(s) with a readable annotation; unreadable: {}",
            broken.join("; ")
        )),
        [] => Decision::Wait(format!(
            "no pod bound to node {node} awaits {n} card(s) yet (cards {})",
            physical.join(",")
        )),
        [(p, k)] => {
            let c = &candidates[*p];
            let devices = c
                .to_allocate
                .as_ref()
                .map(|d| d[*k].clone())
                .unwrap_or_default();
            let granted: BTreeSet<&str> = devices.iter().map(|d| d.uuid.as_str()).collect();
            let picked: BTreeSet<&str> = physical.iter().map(String::as_str).collect();
            if granted != picked || granted.len() != devices.len() {
                return Decision::Refuse(format!(
                    "pod {} container {k} was granted cards {} but kubelet picked {}",
                    c.key(),
                    devices
                        .iter()
                        .map(|d| d.uuid.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    physical.join(",")
                ));
            }
            Decision::Allocate(Assignment {
                pod: *p,
                container: *k,
                devices,
            })
        }
        many => Decision::Wait(format!(
            "ambiguous: pods {} all await {n} card(s) on node {node}; refusing to guess",
            many.iter()
                .map(|(p, _)| candidates[*p].key())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The answer to one `GetPreferredAllocation` container request.
///
/// When exactly one in-flight pod's next container needs `size` cards, prefer one available
/// replica of each of its cards (lowest replica number first, `must_include` honoured). Otherwise
/// (no candidate yet, or an ambiguity [`decide`] will wait on or refuse) prefer `size` replicas
/// of distinct cards, so kubelet never puts two slices of one card in one container (#1741).
/// Returns fewer than `size` IDs only when `available` cannot supply them; kubelet then falls
/// back to its own choice.
pub fn preferred(
    node: &str,
    cards: &BTreeSet<String>,
    candidates: &[Candidate],
    served: &BTreeSet<(String, usize)>,
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut by_card: BTreeMap<String, Vec<ReplicaId>> = BTreeMap::new();
    for id in available {
        if let Some(r) = parse_replica_id(id, cards) {
            by_card.entry(r.uuid.clone()).or_default().push(r);
        }
    }
    for v in by_card.values_mut() {
        v.sort();
    }
    let must: Vec<ReplicaId> = must_include
        .iter()
        .filter_map(|id| parse_replica_id(id, cards))
        .collect();
    let pick = |uuid: &str| -> Option<String> {
        if let Some(m) = must.iter().find(|m| m.uuid == uuid) {
            return Some(replica_id(&m.uuid, m.replica));
        }
        by_card
            .get(uuid)
            .and_then(|v| v.first())
            .map(|r| replica_id(&r.uuid, r.replica))
    };
    let matching: Vec<&ContainerDevices> = candidates
        .iter()
        .filter(|c| c.in_flight(node))
        .filter_map(|c| {
            let k = c.next_pending(served)?;
            let d = c.to_allocate.as_ref().ok()?.get(k)?;
            (d.len() == size).then_some(d)
        })
        .collect();
    if let [devs] = matching.as_slice() {
        let ids: Vec<String> = devs.iter().filter_map(|d| pick(&d.uuid)).collect();
        if ids.len() == size {
            return ids;
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for m in &must {
        if used.insert(m.uuid.clone()) {
            out.push(replica_id(&m.uuid, m.replica));
        }
    }
    for (uuid, reps) in &by_card {
        if out.len() >= size {
            break;
        }
        if let Some(r) = reps.first()
            && used.insert(uuid.clone())
        {
            out.push(replica_id(&r.uuid, r.replica));
        }
    }
    out.truncate(size);
    out
}

/// Scheduler-side rule: may `pod` (its device counts per container still to serve) be bound to
/// a node where `in_flight` pods still await their Allocate calls?
///
/// `None` means yes. `Some(reason)` names the in-flight pod the new one would be
/// indistinguishable from: some container of each needs the same number of cards, so the
/// device plugin could not tell which of the two kubelet is admitting. Pods with disjoint counts
/// bind concurrently; nothing else on the node waits. The bind retries once that pod's
/// container is served (one Allocate), not after a lock timeout.
pub fn bind_conflict(
    node: &str,
    pod_key: &str,
    pod_counts: &[usize],
    in_flight: &[Candidate],
    served: &BTreeSet<(String, usize)>,
) -> Option<String> {
    let mine: BTreeSet<usize> = pod_counts.iter().copied().filter(|&n| n > 0).collect();
    for c in in_flight {
        if !c.in_flight(node) || c.key() == pod_key {
            continue;
        }
        let theirs: BTreeSet<usize> = c.pending_counts(served).into_iter().collect();
        if let Some(n) = mine.intersection(&theirs).next() {
            return Some(format!(
                "pod {} on node {node} still awaits Allocate for a container with {n} card(s); \
                 binding {pod_key} now would make the two indistinguishable to the device plugin",
                c.key()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;
