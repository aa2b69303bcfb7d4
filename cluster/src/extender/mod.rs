//! The scheduler extender: kube-scheduler's `filter` and `bind` verbs over HTTP(S), plus the
//! webhook, health, readiness and metrics endpoints of the same server.
//!
//! Every decision is made by [`hami_core::control::Controller`]; this module only turns JSON
//! into events, actions into API writes (through [`writer::ApiWriter`]) and answers back.
//! Writes are coalesced so that a GPU pod costs two writes beyond its creation: one annotation
//! patch at filter time that already carries the bind phase, and the Binding.

pub mod handshake;
pub mod run;
pub mod server;
pub mod wire;
pub mod writer;

use crate::metrics::Metrics;
use crate::webhook::WebhookConfig;
use hami_core::codec::keys;
use hami_core::control::{Action, Controller, Event, key_of};
use hami_core::request::PodKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wire::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, node_list_keep,
    node_list_names,
};
use writer::ApiWriter;

/// The time source: unix seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// Text of the filter/bind error a follower gives.
pub const NOT_LEADER: &str = "not the leader: this hami scheduler replica does not hold the lease; kube-scheduler should reach the leader";
/// Text of the filter error before the caches are synced.
pub const NOT_SYNCED: &str = "scheduler caches are not synced yet; retry shortly";

/// The extender's shared state. One per process; handlers hold an `Arc` of it.
pub struct Extender {
    controller: tokio::sync::Mutex<Controller>,
    writer: Arc<dyn ApiWriter>,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    leader: Arc<AtomicBool>,
    clock: Clock,
    webhook: WebhookConfig,
    /// Pods whose bind phase went out with the filter patch, and the node it named.
    phased: std::sync::Mutex<BTreeMap<PodKey, String>>,
    /// Card count of each container of the grant written at filter time (non-empty ones).
    grant_counts: std::sync::Mutex<BTreeMap<PodKey, Vec<usize>>>,
    /// Pods bound to a node that still await Allocate: node and the card counts still to
    /// serve. Fed by our own binds and by the pod watch (so a restart rebuilds it).
    inflight: std::sync::Mutex<BTreeMap<PodKey, (String, Vec<usize>)>>,
}

/// The NVIDIA family's to-allocate annotation (the only family the device plugin serves).
fn to_allocate_key() -> &'static str {
    hami_core::family::FamilyId::NVIDIA
        .spec()
        .to_allocate()
        .unwrap_or("hami.io/vgpu-devices-to-allocate")
}

impl std::fmt::Debug for Extender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extender")
            .field("ready", &self.ready)
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

/// Whether `v` is a valid Kubernetes label value: at most 63 characters, alphanumerics, `-`,
/// `_` and `.`, starting and ending with an alphanumeric (or empty).
pub fn is_label_value(v: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && ok_end(v.chars().next())
        && ok_end(v.chars().last())
}

/// The `hami.io/vgpu-node` label HAMi sets beside the annotation of the same name. A node name
/// longer than a label value may be (node names go to 253 characters) gets no label rather than
/// a patch the API server would reject as a whole; the annotation still carries it.
fn vgpu_node_label(pod: &PodKey, node: &str) -> BTreeMap<String, Option<String>> {
    let mut labels = BTreeMap::new();
    if is_label_value(node) {
        labels.insert(keys::VGPU_NODE.to_string(), Some(node.to_string()));
    } else {
        tracing::warn!(%pod, node, "node name is not a valid label value: hami.io/vgpu-node label left out");
    }
    labels
}

/// What a filter concluded, for metrics.
fn main_reason(actions: &[Action]) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Unschedulable { summary, .. } => {
                summary.main_reason().map(|r| format!("{r:?}"))
            }
            _ => None,
        })
        .unwrap_or_else(|| "none".into())
}

impl Extender {
    /// An extender around `controller`. It starts not ready and leading; callers running
    /// leader election set leadership with [`Extender::leader_flag`].
    pub fn new(
        controller: Controller,
        writer: Arc<dyn ApiWriter>,
        webhook: WebhookConfig,
        clock: Clock,
    ) -> Extender {
        Extender {
            controller: tokio::sync::Mutex::new(controller),
            writer,
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
            leader: Arc::new(AtomicBool::new(true)),
            clock,
            webhook,
            phased: std::sync::Mutex::new(BTreeMap::new()),
            grant_counts: std::sync::Mutex::new(BTreeMap::new()),
            inflight: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The webhook settings.
    pub fn webhook(&self) -> &WebhookConfig {
        &self.webhook
    }

    /// The shared leader flag (true while this replica may filter and bind).
    pub fn leader_flag(&self) -> Arc<AtomicBool> {
        self.leader.clone()
    }

    /// Mark the caches synced (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.metrics.set_synced(ready);
    }

    /// Whether the caches are synced.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Feed a watch event (node or pod) into the controller; returns its actions for logging.
    pub async fn observe(&self, event: Event) -> Vec<Action> {
        let now = (self.clock)();
        match &event {
            Event::PodDeleted(k) => {
                if let Ok(mut p) = self.phased.lock() {
                    p.remove(k);
                }
                if let Ok(mut g) = self.grant_counts.lock() {
                    g.remove(k);
                }
                if let Ok(mut f) = self.inflight.lock() {
                    f.remove(k);
                }
            }
            Event::PodObserved(pod) => self.track_inflight(pod),
            Event::QuotaChanged { namespace, quota } => self.metrics.set_quota(namespace, *quota),
            _ => {}
        }
        self.controller.lock().await.handle(now, event)
    }

    /// Run `f` with the controller locked (read access for metrics and tests).
    pub async fn with_controller<R>(&self, f: impl FnOnce(&Controller) -> R) -> R {
        f(&*self.controller.lock().await)
    }

    /// Refresh the allocation gauges and encode every metric.
    pub async fn metrics_text(&self) -> String {
        {
            let c = self.controller.lock().await;
            self.metrics.refresh(c.ledger());
        }
        self.metrics.set_leader(self.is_leader());
        self.metrics.encode()
    }

    /// Keep [`Extender::inflight`] in step with a watched pod: bound and awaiting Allocate →
    /// tracked with its pending counts; bound and served (or failed) → dropped. An unbound view
    /// changes nothing (the watch may not show our Binding yet).
    fn track_inflight(&self, pod: &k8s_openapi::api::core::v1::Pod) {
        let c = crate::allocate::Candidate::from_pod(pod, to_allocate_key());
        if c.node_name.is_empty() {
            return;
        }
        let key = key_of(pod);
        let counts = c.pending_counts(&std::collections::BTreeSet::new());
        if let Ok(mut f) = self.inflight.lock() {
            if c.in_flight(&c.node_name) && !counts.is_empty() {
                f.insert(key, (c.node_name.clone(), counts));
            } else {
                f.remove(&key);
            }
        }
    }

    /// The Bind side of `cluster/docs/allocate-protocol.md` ([`crate::allocate::bind_conflict`]'s
    /// rule): binding `key` to `node` must wait while another pod there still awaits Allocate
    /// for a container with the same card count, or the device plugin could not tell them apart.
    /// Without a conflict the pod is claimed in flight at once, under the same lock: kube-scheduler
    /// runs binding cycles concurrently, so check and claim must be one step.
    fn claim_bind(&self, key: &PodKey, node: &str) -> Result<(), String> {
        let Some(counts) = self
            .grant_counts
            .lock()
            .ok()
            .and_then(|g| g.get(key).cloned())
        else {
            return Ok(());
        };
        let Ok(mut f) = self.inflight.lock() else {
            return Ok(());
        };
        let conflict = f
            .iter()
            .filter(|(k, (n, _))| *k != key && n == node)
            .find_map(|(k, (_, theirs))| {
                theirs.iter().find(|c| counts.contains(c)).map(|c| {
                    format!(
                        "pod {k} on node {node} still awaits Allocate for a container with {c} card(s); \
                         binding {key} now would make the two indistinguishable to the device plugin (retried)"
                    )
                })
            });
        if let Some(c) = conflict {
            return Err(c);
        }
        if !counts.is_empty() {
            f.insert(key.clone(), (node.to_string(), counts));
        }
        Ok(())
    }

    fn phased_node(&self, key: &PodKey) -> Option<String> {
        self.phased.lock().ok().and_then(|p| p.get(key).cloned())
    }

    fn set_phased(&self, key: &PodKey, node: Option<String>) {
        if let Ok(mut p) = self.phased.lock() {
            match node {
                Some(n) => p.insert(key.clone(), n),
                None => p.remove(key),
            };
        }
    }

    fn spawn_event(&self, pod: &PodKey, kind: &'static str, reason: &'static str, msg: String) {
        let writer = self.writer.clone();
        let metrics = self.metrics.clone();
        let pod = pod.clone();
        tokio::spawn(async move {
            metrics.api_write("event");
            if let Err(e) = writer.event(&pod, kind, reason, &msg).await {
                tracing::debug!(%pod, error = %e, "recording an event failed");
            }
        });
    }

    /// kube-scheduler's filter verb.
    pub async fn filter(&self, args: ExtenderArgs) -> ExtenderFilterResult {
        let started = Instant::now();
        let (res, result) = self.filter_inner(args).await;
        self.metrics
            .filter_done(started.elapsed().as_secs_f64(), result);
        res
    }

    async fn filter_inner(&self, args: ExtenderArgs) -> (ExtenderFilterResult, &'static str) {
        let err = |e: String| {
            (
                ExtenderFilterResult {
                    error: e,
                    ..ExtenderFilterResult::default()
                },
                "error",
            )
        };
        let Some(pod) = args.pod else {
            return err("ExtenderArgs has no Pod".into());
        };
        let by_objects = args.node_names.is_none() && args.nodes.is_some();
        let names = match (&args.node_names, &args.nodes) {
            (Some(n), _) => n.clone(),
            (None, Some(list)) => node_list_names(list),
            (None, None) => return err("ExtenderArgs has neither NodeNames nor Nodes".into()),
        };
        if !self.is_leader() {
            return err(NOT_LEADER.into());
        }
        if !self.is_ready() {
            return err(NOT_SYNCED.into());
        }
        let key = key_of(&pod);
        let now = (self.clock)();
        let actions = self.controller.lock().await.handle(
            now,
            Event::Filter {
                pod: Box::new(pod),
                nodes: names.clone(),
            },
        );
        let reason = main_reason(&actions);
        let mut patch = None;
        let mut out = ExtenderFilterResult::default();
        let mut chosen = None;
        let mut result = "error";
        for a in actions {
            match a {
                Action::PatchPod { annotations, .. } => patch = Some(annotations),
                Action::FilterResult {
                    node,
                    failed,
                    error,
                    ..
                } => {
                    if let Some(e) = error {
                        out.error = e;
                        result = "error";
                    } else if let Some(n) = node {
                        chosen = Some(n);
                        result = "success";
                    } else {
                        out.failed_nodes = failed;
                        result = "failed";
                    }
                }
                Action::NotManaged(_) => {
                    chosen = None;
                    out.node_names = Some(names.clone());
                    result = "unmanaged";
                }
                Action::Rejected { error, .. } => {
                    out.error = error;
                    result = "error";
                }
                _ => {}
            }
        }
        if result == "unmanaged" {
            // A pod that asks for no managed resource passes every candidate untouched.
            if by_objects {
                out.nodes = args.nodes;
                out.node_names = None;
            }
            self.metrics.decision("unmanaged", "none");
            return (out, result);
        }
        if let Some(node) = chosen {
            if let Some(mut ann) = patch {
                // Coalesce the bind phase into the filter patch: the Binding is then the only
                // other write this pod costs.
                if let Some(Some(v)) = ann.get(to_allocate_key())
                    && let Ok(devs) =
                        hami_core::codec::devices::decode_pod_devices(to_allocate_key(), v)
                    && let Ok(mut g) = self.grant_counts.lock()
                {
                    let counts = devs.iter().map(Vec::len).filter(|&n| n > 0).collect();
                    g.insert(key.clone(), counts);
                }
                ann.insert(keys::BIND_PHASE.into(), Some("allocating".into()));
                ann.insert(keys::BIND_TIME.into(), Some(now.to_string()));
                // HAMi copies `hami.io/vgpu-node` to a pod label; it rides in the same patch.
                let labels = vgpu_node_label(&key, &node);
                self.metrics.api_write("patch_pod");
                if let Err(e) = self.writer.patch_pod(&key, &labels, &ann).await {
                    self.controller
                        .lock()
                        .await
                        .handle(now, Event::BindFailed(key.clone()));
                    self.set_phased(&key, None);
                    self.metrics.decision("error", "AnnotationPatchFailed");
                    return err(format!(
                        "pod {key}: writing the device annotations failed: {e}"
                    ));
                }
                self.set_phased(&key, Some(node.clone()));
            }
            self.metrics.decision("success", "none");
            if by_objects {
                out.nodes = args.nodes.as_ref().map(|l| node_list_keep(l, &[node]));
            } else {
                out.node_names = Some(vec![node]);
            }
            return (out, "success");
        }
        if result == "failed" {
            out.node_names = Some(Vec::new());
            // Candidates the ledger does not know still need a reason.
            for n in &names {
                out.failed_nodes.entry(n.clone()).or_insert_with(|| {
                    "NodeUnfitPod: no HAMi devices registered on this node".into()
                });
            }
            let msg = format!(
                "no node fits: {} nodes not fit ({})",
                out.failed_nodes.len(),
                reason
            );
            self.spawn_event(&key, "Warning", "FilteringFailed", msg);
        }
        self.metrics.decision(result, &reason);
        (out, result)
    }

    /// kube-scheduler's bind verb.
    pub async fn bind(&self, args: ExtenderBindingArgs) -> ExtenderBindingResult {
        let started = Instant::now();
        let res = self.bind_inner(args).await;
        let result = if res.error.is_empty() {
            "success"
        } else {
            "error"
        };
        self.metrics
            .bind_done(started.elapsed().as_secs_f64(), result);
        res
    }

    async fn bind_inner(&self, args: ExtenderBindingArgs) -> ExtenderBindingResult {
        let fail = |e: String| ExtenderBindingResult { error: e };
        if !self.is_leader() {
            return fail(NOT_LEADER.into());
        }
        if args.pod_name.is_empty() || args.node.is_empty() {
            return fail("ExtenderBindingArgs needs PodName and Node".into());
        }
        let ns = if args.pod_namespace.is_empty() {
            "default".to_string()
        } else {
            args.pod_namespace.clone()
        };
        let key = PodKey::new(ns, args.pod_name.clone());
        let now = (self.clock)();
        if let Err(reason) = self.claim_bind(&key, &args.node) {
            return self.bind_failed(now, &key, reason).await;
        }
        let actions = self.controller.lock().await.handle(
            now,
            Event::Bind {
                pod: key.clone(),
                node: args.node.clone(),
            },
        );
        let phased = self.phased_node(&key).as_deref() == Some(args.node.as_str());
        for a in &actions {
            if let Action::Rejected { error, .. } = a {
                return fail(format!("pod {key}: {error}"));
            }
        }
        for a in actions {
            match a {
                Action::PatchPod { annotations, .. } if !phased => {
                    self.metrics.api_write("patch_pod");
                    if let Err(e) = self
                        .writer
                        .patch_pod(&key, &BTreeMap::new(), &annotations)
                        .await
                    {
                        return self
                            .bind_failed(now, &key, format!("patching the bind phase failed: {e}"))
                            .await;
                    }
                }
                Action::BindPod { node, .. } => {
                    self.metrics.api_write("bind");
                    if let Err(e) = self.writer.bind(&key, &args.pod_uid, &node).await {
                        return self
                            .bind_failed(
                                now,
                                &key,
                                format!("creating the Binding to {node} failed: {e}"),
                            )
                            .await;
                    }
                }
                _ => {}
            }
        }
        self.set_phased(&key, None);
        if let Ok(mut g) = self.grant_counts.lock() {
            g.remove(&key);
        }
        ExtenderBindingResult::default()
    }

    async fn bind_failed(&self, now: i64, key: &PodKey, msg: String) -> ExtenderBindingResult {
        if let Ok(mut f) = self.inflight.lock() {
            f.remove(key);
        }
        self.controller
            .lock()
            .await
            .handle(now, Event::BindFailed(key.clone()));
        self.set_phased(key, None);
        let msg = format!("pod {key}: {msg}");
        self.spawn_event(key, "Warning", "BindingFailed", msg.clone());
        ExtenderBindingResult { error: msg }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        let cases: &[(&str, bool)] = &[
            ("gpu-node-1", true),
            ("", true),
            ("node.example_1", true),
            (&long, true),
            (&too_long, false),
            ("-node", false),
            ("node-", false),
            ("node/1", false),
            ("nöde", false),
        ];
        for (v, want) in cases {
            assert_eq!(super::is_label_value(v), *want, "{v:?}");
        }
    }
}
