//! The sans-IO control loop: one state machine, `(now, event) → actions`.
//!
//! The simulator and the cluster components both drive exactly this machine. It never reads a
//! clock, a file or a socket: time comes in with each event, randomness from the seed it was
//! built with, and every effect goes out as an [`Action`] for the driver to carry out.

use crate::annotations::{
    attach_mig_allocations, bind_annotations_into, grant_from_annotations,
    mig_allocations_annotation, needs_vendor_bind, node_from_registration, vendor_bind_annotations,
};
use crate::codec::keys;
use crate::ledger::{Ledger, NodeId, PodGrant, Quota};
use crate::memo::ScoreMemo;
use crate::model::Node;
use crate::pipeline::{Decision, FailureSummary, Reasons, Scheduler};
use crate::request::{PodKey, RequestTranslator};
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A Node object as the controller reads it: its name and its model decoded from the
/// registration annotations (and, for the families without one, `status.capacity`) and
/// allocatable CPU and memory, or why they were refused.
#[derive(Debug, Clone)]
pub struct NodeRead {
    /// The Node object's name.
    pub name: String,
    /// The node, or the decoder's message.
    pub node: Result<Node, String>,
}

/// The first half of [`Event::NodeChanged`], which reads no controller state: decode a Node
/// object. A driver that registers many nodes at once may read them on several threads and
/// hand each to [`Controller::node_read`] in order; the outcome is that of `NodeChanged`.
pub fn read_node(n: &K8sNode) -> NodeRead {
    let name = n.metadata.name.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let ann = n.metadata.annotations.as_ref().unwrap_or(&empty);
    let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let q = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.as_str());
    let cpu = q("cpu")
        .and_then(|v| crate::quantity::parse_cpu_milli(v).ok())
        .unwrap_or(0);
    let mem = q("memory")
        .and_then(|v| crate::quantity::parse_memory_mib(v).ok())
        .unwrap_or(0);
    let node =
        node_from_registration(&name, ann, capacity_of(n), cpu, mem).map_err(|e| e.to_string());
    NodeRead { name, node }
}

/// A Node object's `status.capacity` as a lookup by resource name (the quantity's text), the
/// form [`crate::annotations::capacity_devices`] reads it in.
pub fn capacity_of<'a>(n: &'a K8sNode) -> impl Fn(&str) -> Option<&'a str> + 'a {
    let capacity = n.status.as_ref().and_then(|s| s.capacity.as_ref());
    move |r| capacity.and_then(|c| c.get(r)).map(|q| q.0.as_str())
}

/// Something the driver observed or was asked.
#[derive(Debug, Clone)]
pub enum Event {
    /// A node appeared or its annotations/allocatable changed.
    NodeChanged(Box<K8sNode>),
    /// A node is gone.
    NodeRemoved(String),
    /// A pod waits to be placed; place and bind it in one step (the simulator's path, and a
    /// scheduler that binds directly).
    PodPending(Box<Pod>),
    /// A pod is seen running or bound with annotations (a watch event): make sure the ledger
    /// holds its grant (how state is rebuilt after a restart).
    PodObserved(Box<Pod>),
    /// A pod ended or was deleted: release its grant.
    PodDeleted(PodKey),
    /// kube-scheduler's extender filter: choose one node among `nodes` for the pod.
    Filter {
        /// The pod.
        pod: Box<Pod>,
        /// Candidate node names.
        nodes: Vec<String>,
    },
    /// kube-scheduler's extender bind: bind the pod to `node`.
    Bind {
        /// The pod.
        pod: PodKey,
        /// The node kube-scheduler chose.
        node: String,
    },
    /// The API write for a bind failed: release the pod's grant so it can be retried.
    BindFailed(PodKey),
    /// A namespace's device ResourceQuota appeared, changed (`Some`) or went away (`None`).
    QuotaChanged {
        /// The namespace.
        namespace: String,
        /// The quota.
        quota: Option<Quota>,
    },
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Merge these annotations into the pod (`None` removes a key).
    PatchPod {
        /// The pod.
        pod: PodKey,
        /// Keys to set or remove.
        annotations: BTreeMap<String, Option<String>>,
    },
    /// Create the Binding of the pod to the node.
    BindPod {
        /// The pod.
        pod: PodKey,
        /// The node.
        node: String,
    },
    /// The answer to a filter: one node, or per-node reasons, or an error.
    FilterResult {
        /// The pod.
        pod: PodKey,
        /// The chosen node.
        node: Option<String>,
        /// Per node name, HAMi's reason summary (`2/8 CardInsufficientMemory, …`).
        failed: BTreeMap<String, String>,
        /// An error for the whole request.
        error: Option<String>,
    },
    /// The pod cannot be placed now; it stays pending with this reason.
    Unschedulable {
        /// The pod.
        pod: PodKey,
        /// Per-node reasons.
        summary: FailureSummary,
    },
    /// The pod's request is invalid; it will never be placed until changed.
    Rejected {
        /// The pod.
        pod: PodKey,
        /// The error, naming the container and field.
        error: String,
    },
    /// The pod asks for no managed device; leave it to the default path.
    NotManaged(PodKey),
    /// The node's annotations could not be decoded; its devices are not used.
    NodeError {
        /// Node name.
        node: String,
        /// The error, naming the annotation.
        error: String,
    },
}

/// A filter's candidate nodes, as the driver holds them.
enum Candidates<'a> {
    /// Node names (kube-scheduler's extender call); unknown names are skipped.
    Names(&'a [String]),
    /// Ledger node ids; ids of removed nodes are skipped.
    Ids(Vec<NodeId>),
}

/// The control loop state: scheduler, translator, ledger and the seeded RNG.
#[derive(Debug, Clone)]
pub struct Controller {
    scheduler: Scheduler,
    translator: RequestTranslator,
    ledger: Ledger,
    rng: ChaCha8Rng,
    /// Per-node verdicts remembered between pods (exact: see [`crate::memo`]).
    memo: ScoreMemo,
    /// How much an unschedulable decision says about each node.
    reasons: Reasons,
}

impl Controller {
    /// A controller with an empty ledger. `seed` feeds the policies that draw randomness.
    pub fn new(scheduler: Scheduler, translator: RequestTranslator, seed: u64) -> Controller {
        Controller {
            scheduler,
            translator,
            ledger: Ledger::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            memo: ScoreMemo::new(),
            reasons: Reasons::PerNode,
        }
    }

    /// How much [`Action::Unschedulable`] and a failed [`Action::FilterResult`] say: per node
    /// by name ([`Reasons::PerNode`], the default; what the extender returns to
    /// kube-scheduler), only the totals per reason ([`Reasons::Totals`]: `failed` stays empty),
    /// or nothing ([`Reasons::Skip`]). Decisions are the same in every mode.
    pub fn with_reasons(mut self, reasons: Reasons) -> Controller {
        self.reasons = reasons;
        self
    }

    /// The ledger (read-only; every change goes through events).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The translator.
    pub fn translator(&self) -> &RequestTranslator {
        &self.translator
    }

    /// Whether `pod` would be placed on `node` now. A pure check: nothing is reserved, and the
    /// draw of a randomised policy is thrown away (the controller's own generator is untouched).
    /// False for an unknown node and for a pod that asks for no device or does not translate.
    pub fn fits_on(&self, pod: &Pod, node: &str) -> bool {
        let Some(id) = self.ledger.node_id(node) else {
            return false;
        };
        let Ok(req) = self.translator.translate(pod) else {
            return false;
        };
        if !req.wants_devices() {
            return false;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        matches!(
            self.scheduler.schedule_with(
                &self.ledger,
                &req,
                Some(&[id]),
                &mut rng,
                None,
                Reasons::Skip
            ),
            Decision::Placed { .. }
        )
    }

    /// [`Event::PodPending`] for a driver that keeps the pod object (the simulator): the same
    /// decision and actions, without handing the object over.
    pub fn pod_pending(&mut self, now: i64, pod: &Pod) -> Vec<Action> {
        self.place(now, pod, None, true)
    }

    /// [`Event::Filter`] for a driver that keeps the pod object and already holds the ledger's
    /// node ids (from [`Ledger::node_id`]), such as the simulator's model of kube-scheduler: the
    /// same decision and actions without a name lookup per candidate. Ids the ledger no longer
    /// knows are skipped, as unknown names are.
    pub fn filter_ids(&mut self, now: i64, pod: &Pod, nodes: Vec<NodeId>) -> Vec<Action> {
        self.place(now, pod, Some(Candidates::Ids(nodes)), false)
    }

    /// Handle one event at time `now` (unix seconds) and return what the driver must do.
    pub fn handle(&mut self, now: i64, event: Event) -> Vec<Action> {
        match event {
            Event::NodeChanged(n) => self.node_changed(&n),
            Event::NodeRemoved(name) => {
                self.ledger.remove_node(&name);
                Vec::new()
            }
            Event::PodPending(pod) => self.pod_pending(now, &pod),
            Event::PodObserved(pod) => self.observe(&pod),
            Event::PodDeleted(key) => {
                self.ledger.unreserve(&key);
                Vec::new()
            }
            Event::Filter { pod, nodes } => {
                self.place(now, &pod, Some(Candidates::Names(&nodes)), false)
            }
            Event::Bind { pod, node } => self.bind(now, pod, node),
            Event::BindFailed(key) => {
                self.ledger.unreserve(&key);
                Vec::new()
            }
            Event::QuotaChanged { namespace, quota } => {
                self.ledger.set_quota(&namespace, quota);
                Vec::new()
            }
        }
    }

    fn node_changed(&mut self, n: &K8sNode) -> Vec<Action> {
        self.node_read(read_node(n))
    }

    /// The second half of [`Event::NodeChanged`]: take a node as [`read_node`] read it. The
    /// ledger holds the node afterwards, or the action says why its annotations were refused.
    pub fn node_read(&mut self, read: NodeRead) -> Vec<Action> {
        match read.node {
            Ok(node) => {
                self.ledger.upsert_node(node);
                Vec::new()
            }
            Err(error) => vec![Action::NodeError {
                node: read.name,
                error,
            }],
        }
    }

    fn observe(&mut self, pod: &Pod) -> Vec<Action> {
        let key = key_of(pod);
        let terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if terminal || pod.metadata.deletion_timestamp.is_some() {
            self.ledger.unreserve(&key);
            return Vec::new();
        }
        if self.ledger.grant(&key).is_some() {
            return Vec::new();
        }
        let empty = BTreeMap::new();
        let ann = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let (cpu, mem) = match self.translator.translate(pod) {
            Ok(r) => (r.cpu_milli, r.memory_mib),
            Err(_) => (0, 0),
        };
        match grant_from_annotations(ann, cpu, mem) {
            Ok(Some(mut g)) => {
                // MIG slices live in their own annotation; without them a rebuilt ledger would
                // hand the same slices out twice. A bad value is reported, and the cards still
                // count (memory, cores, slots) so nothing else is over-granted.
                let mig_error = self.recover_mig(&key, ann, &mut g);
                let mut out: Vec<Action> = match self.ledger.reserve(&key, g) {
                    Ok(()) => Vec::new(),
                    Err(e) => vec![Action::Rejected {
                        pod: key.clone(),
                        error: format!("recorded grant does not fit the ledger: {e}"),
                    }],
                };
                out.extend(mig_error.map(|error| Action::Rejected { pod: key, error }));
                out
            }
            Ok(None) => Vec::new(),
            Err(e) => vec![Action::Rejected {
                pod: key,
                error: e.to_string(),
            }],
        }
    }

    /// Attach the MIG instances of the pod's `hami.io/vgpu-mig-allocations` to its recorded
    /// grant; the error (naming pod and key) when the value is unreadable or does not match.
    fn recover_mig(
        &self,
        key: &PodKey,
        ann: &BTreeMap<String, String>,
        grant: &mut PodGrant,
    ) -> Option<String> {
        let raw = ann.get(keys::MIG_ALLOCATIONS)?;
        let named = |e: String| format!("pod {key}: annotation {}: {e}", keys::MIG_ALLOCATIONS);
        let allocs = match crate::codec::decode_checked_mig_allocations(keys::MIG_ALLOCATIONS, raw)
        {
            Ok(a) if a.is_empty() => return None,
            Ok(a) => a,
            Err(e) => return Some(format!("pod {key}: {e}")),
        };
        let node = self
            .ledger
            .node_id(&grant.node)
            .and_then(|id| self.ledger.entry(id))?;
        attach_mig_allocations(grant, &node.node, &allocs)
            .err()
            .map(named)
    }

    fn place(
        &mut self,
        now: i64,
        pod: &Pod,
        candidates: Option<Candidates<'_>>,
        bind_now: bool,
    ) -> Vec<Action> {
        let key = key_of(pod);
        let req = match self.translator.translate(pod) {
            Ok(r) => r,
            Err(e) => {
                let error = e.to_string();
                return vec![match candidates {
                    Some(_) => Action::FilterResult {
                        pod: key,
                        node: None,
                        failed: BTreeMap::new(),
                        error: Some(error),
                    },
                    None => Action::Rejected { pod: key, error },
                }];
            }
        };
        if !req.wants_devices() {
            // Not ours: every candidate passes untouched.
            let only = match &candidates {
                Some(Candidates::Names([name])) => Some(name.clone()),
                Some(Candidates::Ids(ids)) if ids.len() == 1 => ids
                    .first()
                    .and_then(|&id| self.ledger.view(id))
                    .map(|v| v.node.name.clone()),
                _ => None,
            };
            return match only {
                Some(node) => vec![Action::FilterResult {
                    pod: key,
                    node: Some(node),
                    failed: BTreeMap::new(),
                    error: None,
                }],
                None => vec![Action::NotManaged(key)],
            };
        }
        let ids: Option<Vec<NodeId>> = candidates.map(|c| match c {
            Candidates::Names(names) => names
                .iter()
                .filter_map(|name| self.ledger.node_id(name))
                .collect(),
            Candidates::Ids(mut ids) => {
                ids.retain(|&id| self.ledger.view(id).is_some());
                ids
            }
        });
        let nodes = ids.as_deref();
        // A repeated filter for the same pod replaces its earlier (unbound) choice.
        self.ledger.unreserve(&key);
        let decision = self.scheduler.schedule_with(
            &self.ledger,
            &req,
            nodes,
            &mut self.rng,
            Some(&mut self.memo),
            self.reasons,
        );
        let mut actions = Vec::new();
        match decision {
            Decision::Placed { grant, .. } => {
                let node = grant.node.clone();
                let mut patch: BTreeMap<String, Option<String>> = BTreeMap::new();
                bind_annotations_into(&grant, now, &mut patch, Some);
                // The vendor plugins that read more than the device lists get it (Cambricon,
                // Kunlunxin, Moore Threads, MetaX sGPU); the others skip the node lookup.
                if needs_vendor_bind(&grant)
                    && let Some(e) = self
                        .ledger
                        .node_id(&node)
                        .and_then(|id| self.ledger.entry(id))
                {
                    for (k, v) in vendor_bind_annotations(&grant, &e.node, now) {
                        patch.insert(k, Some(v));
                    }
                }
                // Only a grant of MIG instances has allocations to write: the others skip the
                // node lookup.
                let holds_mig = grant.devices().any(|d| d.mig.is_some());
                if holds_mig
                    && let Some(v) = self
                        .ledger
                        .node_id(&node)
                        .and_then(|id| self.ledger.entry(id))
                        .and_then(|e| mig_allocations_annotation(&grant, &e.node))
                {
                    patch.insert(keys::MIG_ALLOCATIONS.to_string(), Some(v));
                }
                if let Err(e) = self.ledger.reserve(&key, grant) {
                    actions.push(Action::Rejected {
                        pod: key,
                        error: format!("reserve failed: {e}"),
                    });
                    return actions;
                }
                if bind_now {
                    patch.insert(keys::BIND_PHASE.to_string(), Some("allocating".to_string()));
                    patch.insert(
                        keys::BIND_TIME.to_string(),
                        Some(crate::codec::decimal(now)),
                    );
                }
                actions.push(Action::PatchPod {
                    pod: key.clone(),
                    annotations: patch,
                });
                if bind_now {
                    actions.push(Action::BindPod { pod: key, node });
                } else {
                    actions.push(Action::FilterResult {
                        pod: key,
                        node: Some(node),
                        failed: BTreeMap::new(),
                        error: None,
                    });
                }
            }
            Decision::Unschedulable(summary) => {
                if nodes.is_some() {
                    let failed = summary
                        .per_node
                        .iter()
                        .map(|(n, rc)| (n.clone(), rc.to_string()))
                        .collect();
                    actions.push(Action::FilterResult {
                        pod: key.clone(),
                        node: None,
                        failed,
                        error: None,
                    });
                }
                actions.push(Action::Unschedulable { pod: key, summary });
            }
            Decision::PolicyUnavailable(kind) => {
                actions.push(Action::Rejected {
                    pod: key,
                    error: format!("node policy {kind} is not enabled in this scheduler"),
                });
            }
        }
        actions
    }

    fn bind(&mut self, now: i64, key: PodKey, node: String) -> Vec<Action> {
        match self.ledger.grant(&key) {
            Some(PodGrant { node: n, .. }) if *n == node => {
                let mut patch = BTreeMap::new();
                patch.insert(keys::BIND_PHASE.to_string(), Some("allocating".to_string()));
                patch.insert(
                    keys::BIND_TIME.to_string(),
                    Some(crate::codec::decimal(now)),
                );
                vec![
                    Action::PatchPod {
                        pod: key.clone(),
                        annotations: patch,
                    },
                    Action::BindPod { pod: key, node },
                ]
            }
            Some(g) => vec![Action::Rejected {
                pod: key,
                error: format!(
                    "bind to {node:?} but the filter placed the pod on {:?}",
                    g.node
                ),
            }],
            None => vec![Action::Rejected {
                pod: key,
                error: format!("bind to {node:?} without a filter decision"),
            }],
        }
    }
}

/// The key of a pod object.
pub fn key_of(pod: &Pod) -> PodKey {
    key_of_meta(&pod.metadata)
}

/// [`key_of`] from a pod's metadata alone.
pub fn key_of_meta(meta: &ObjectMeta) -> PodKey {
    PodKey::new(namespace_of(meta), meta.name.clone().unwrap_or_default())
}

/// [`key_of_meta`] written into `key`'s buffers (for a reader that looks up many pods).
pub fn write_key_of_meta(meta: &ObjectMeta, key: &mut PodKey) {
    key.namespace.clear();
    key.namespace.push_str(namespace_of(meta));
    key.name.clear();
    key.name.push_str(meta.name.as_deref().unwrap_or_default());
}

/// A pod's namespace (`default` when its object has none).
fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}
