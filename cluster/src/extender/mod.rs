//! The scheduler extender: kube-scheduler's `filter` and `bind` verbs over HTTP(S), plus the
//! webhook, health, readiness and metrics endpoints of the same server.
//!
//! Every decision is made by [`hami_core::control::Controller`]; this module only turns JSON
//! into events, actions into API writes (through [`writer::ApiWriter`]) and answers back.
//!
//! **Filter decides, bind writes.** `/filter` chooses the node and cards and reserves them in
//! the in-memory ledger only — no API write, so kube-scheduler's serial scheduling cycle never
//! waits for the API server. `/bind` (kube-scheduler's asynchronous binding cycle) writes one
//! merge patch (the device annotations, the `hami.io/vgpu-node` label and the bind phase) and
//! then the Binding: two writes per GPU pod beyond its creation, and the annotations always
//! precede the Binding, so a device plugin that looks up the pod at Allocate finds its grant.
//! HAMi writes the annotations in Filter; why we differ and what that changes is in
//! `cluster/docs/extender.md`.
//!
//! A reservation that no bind claims is released: when the pod is deleted, when the same pod is
//! filtered again, when this replica stops leading, and at the latest after
//! [`DEFAULT_RESERVATION_TTL_S`] ([`Extender::expire_reservations`], run periodically). A bind
//! without a reservation of this process (a restart or leader change since the filter, or an
//! expired one) fails without writing anything, and kube-scheduler filters the pod again.

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
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
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

/// How long a filter's reservation waits for its bind before it is released (seconds), unless
/// configured otherwise ([`Extender::set_reservation_ttl`]). kube-scheduler binds right after
/// its Reserve, Permit and PreBind plugins; PreBind may wait for a volume to be provisioned, so
/// the bound is generous. It only matters for a decision that kube-scheduler abandoned without
/// deleting or re-filtering the pod.
pub const DEFAULT_RESERVATION_TTL_S: i64 = 300;

/// How long after a failed filter new capacity (a release, or a node or card added) still makes
/// the pod worth a nudge (seconds): the lag by which kube-scheduler may have seen the pod
/// deletion or Node update before our watch.
pub const RELEASE_RACE_WINDOW_S: i64 = 10;

/// At most this many recently failed filters are remembered for the nudge.
const FAILED_CAP: usize = 4096;

/// How long after new capacity the nudge waits for kube-scheduler's own retry (milliseconds).
/// A pod filtered again meanwhile needs no nudge: its new verdict saw the new capacity.
pub const NUDGE_DELAY_MS: u64 = 1000;

/// The annotation the nudge sets on a pending pod. Its value says what made room and when:
/// `<namespace>/<released pod>@<unix s>` after a release, `node:<node>@<unix s>` after the node
/// registered or gained capacity (neither a namespace nor a node name can hold a `:`). Any
/// change of an unscheduled pod's metadata makes kube-scheduler requeue it; this key means
/// nothing else and nothing reads it (its name predates the node case).
pub const RETRY_ANNOTATION: &str = "hami.io/retry-after-release";

/// A filter decision that no bind has completed yet.
#[derive(Debug, Clone)]
struct Reservation {
    /// The chosen node.
    node: String,
    /// The grant's annotations (devices, `hami.io/vgpu-node`, `hami.io/vgpu-time`), written by
    /// the bind.
    annotations: BTreeMap<String, Option<String>>,
    /// Card count of each non-empty container of the grant (the bind rule's input).
    counts: Vec<usize>,
    /// Clock seconds of the filter.
    at: i64,
    /// A bind claimed it: it no longer expires and the pod is not re-decided meanwhile.
    binding: bool,
}

/// A filter that found no node, remembered briefly for the release nudge.
#[derive(Debug, Clone)]
struct FailedFilter {
    /// The pod as kube-scheduler sent it.
    pod: Arc<Pod>,
    /// Clock seconds of the failure.
    at: i64,
    /// Which filter call it was (a later filter of the pod replaces the entry).
    seq: u64,
    /// A nudge for this failure is already due: later capacity need not check the pod again.
    nudging: bool,
}

/// Whether a card may take new grants.
fn usable(d: &hami_core::model::Device) -> bool {
    d.healthy && !d.cordoned
}

/// Whether a node's new registration `after` can place something that `before` (`None`: the
/// ledger did not know the node) could not: a usable card that is new, or that turned healthy
/// or un-cordoned; a usable card with more memory, cores or slots, or another sharing mode or
/// MIG profile list; more allocatable CPU or memory (0 means not tracked, i.e. no limit). Usage,
/// labels, removed or shrunk cards add nothing. Used to decide whether a Node event is worth
/// the nudge's fit checks.
pub fn adds_capacity(
    before: Option<&hami_core::model::Node>,
    after: &hami_core::model::Node,
) -> bool {
    let Some(before) = before else {
        return after.devices.iter().any(usable);
    };
    let grew = |b: u64, a: u64| b != 0 && (a == 0 || a > b);
    if grew(before.cpu_milli, after.cpu_milli) || grew(before.memory_mib, after.memory_mib) {
        return true;
    }
    after.devices.iter().filter(|d| usable(d)).any(|d| {
        match before.devices.iter().find(|b| b.uuid == d.uuid) {
            None => true,
            Some(b) => {
                !usable(b)
                    || d.memory_mib > b.memory_mib
                    || d.cores > b.cores
                    || d.split_count > b.split_count
                    || d.mode != b.mode
                    || d.mig_profiles != b.mig_profiles
            }
        }
    })
}

/// The extender's shared state. One per process; handlers hold an `Arc` of it.
///
/// Lock order: the controller (async) before any of the std mutexes; no std mutex is held
/// across an `.await`.
pub struct Extender {
    controller: tokio::sync::Mutex<Controller>,
    writer: Arc<dyn ApiWriter>,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    leader: Arc<AtomicBool>,
    clock: Clock,
    webhook: WebhookConfig,
    reservation_ttl_s: AtomicI64,
    /// Filter decisions awaiting their bind (also held in the controller's ledger).
    reservations: std::sync::Mutex<BTreeMap<PodKey, Reservation>>,
    /// Pods whose last filter found no node, and when.
    failed: Arc<std::sync::Mutex<BTreeMap<PodKey, FailedFilter>>>,
    /// Filter calls so far (numbers the failures).
    filter_seq: std::sync::atomic::AtomicU64,
    /// Pods bound to a node that still await Allocate: node and the card counts still to
    /// serve. Fed by our own binds and by the pod watch (so a restart rebuilds it).
    inflight: std::sync::Mutex<BTreeMap<PodKey, (String, Vec<usize>)>>,
    /// Pods known bound (our completed binds, and pods the watch shows with a node), and
    /// where: a filter for one of them comes from a stale view of kube-scheduler's and must not
    /// replace its grant.
    bound: std::sync::Mutex<BTreeMap<PodKey, String>>,
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
            reservation_ttl_s: AtomicI64::new(DEFAULT_RESERVATION_TTL_S),
            reservations: std::sync::Mutex::new(BTreeMap::new()),
            failed: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
            filter_seq: std::sync::atomic::AtomicU64::new(0),
            inflight: std::sync::Mutex::new(BTreeMap::new()),
            bound: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Release filter reservations that no bind claimed within `seconds` (at least 1).
    pub fn set_reservation_ttl(&self, seconds: i64) {
        self.reservation_ttl_s
            .store(seconds.max(1), Ordering::SeqCst);
    }

    /// The reservation time-to-live in seconds.
    pub fn reservation_ttl(&self) -> i64 {
        self.reservation_ttl_s.load(Ordering::SeqCst)
    }

    /// Pods with a filter decision that no bind has completed yet, and their node.
    pub fn reserved(&self) -> BTreeMap<PodKey, String> {
        self.reservations
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.node.clone())).collect())
            .unwrap_or_default()
    }

    /// Release every reservation no bind has claimed that is older than the time-to-live, or
    /// all of them when this replica does not lead (its filters will get no bind). Returns the
    /// released pods. Call it periodically; it is cheap when nothing is reserved.
    pub async fn expire_reservations(&self) -> Vec<PodKey> {
        let now = (self.clock)();
        let ttl = self.reservation_ttl();
        let leader = self.is_leader();
        let mut c = self.controller.lock().await;
        let expired: Vec<PodKey> = match self.reservations.lock() {
            Ok(mut r) => {
                let keys: Vec<PodKey> = r
                    .iter()
                    .filter(|(_, v)| !v.binding && (!leader || v.at.saturating_add(ttl) <= now))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &keys {
                    r.remove(k);
                }
                keys
            }
            Err(_) => Vec::new(),
        };
        for k in &expired {
            c.handle(now, Event::BindFailed(k.clone()));
            tracing::info!(pod = %k, leader, ttl_s = ttl, "filter reservation released without a bind");
        }
        expired
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
    ///
    /// A deleted pod's reservation and in-flight entry go with it, and when its grant frees
    /// capacity, pods whose filter failed just before are nudged ([`RETRY_ANNOTATION`]); so are
    /// they when a node change adds capacity ([`adds_capacity`]). A pod
    /// seen bound while this process only holds an unclaimed filter reservation for it (another
    /// replica bound it) loses that reservation, so the ledger takes the recorded grant.
    pub async fn observe(&self, event: Event) -> Vec<Action> {
        let now = (self.clock)();
        let mut c = self.controller.lock().await;
        match &event {
            Event::PodDeleted(k) => {
                if let Ok(mut r) = self.reservations.lock() {
                    r.remove(k);
                }
                if let Ok(mut f) = self.failed.lock() {
                    f.remove(k);
                }
                if let Ok(mut f) = self.inflight.lock() {
                    f.remove(k);
                }
                if let Ok(mut b) = self.bound.lock() {
                    b.remove(k);
                }
                self.metrics.forget_pod(k);
                let released = c.ledger().grant(k).map(|g| g.node.clone());
                let actions = c.handle(now, event.clone());
                if let Some(node) = released {
                    let nudge = self.worth_a_retry(&c, now, &node);
                    drop(c);
                    if !nudge.is_empty() {
                        self.spawn_retry(nudge, k.to_string(), now);
                    }
                }
                return actions;
            }
            Event::NodeChanged(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                // The registration before the change, only while some failed pod may want it.
                let before = self
                    .recently_failed(now)
                    .then(|| Self::registration(&c, &name).cloned());
                let actions = c.handle(now, event);
                let added = before.is_some_and(|before| {
                    Self::registration(&c, &name)
                        .is_some_and(|after| adds_capacity(before.as_ref(), after))
                });
                if added {
                    let nudge = self.worth_a_retry(&c, now, &name);
                    drop(c);
                    if !nudge.is_empty() {
                        self.spawn_retry(nudge, format!("node:{name}"), now);
                    }
                }
                return actions;
            }
            Event::PodObserved(pod) => {
                self.track_inflight(pod);
                // MIG runtime identity for hami_node_gpu_mig_instance_info.
                if let Err(e) = self.metrics.observe_pod(pod) {
                    tracing::warn!(error = %e, "MIG allocations not used for metrics");
                }
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .filter(|n| !n.is_empty());
                if let Some(node) = node {
                    let key = key_of(pod);
                    if let Ok(mut b) = self.bound.lock() {
                        b.insert(key.clone(), node.to_string());
                    }
                    let foreign = self.reservations.lock().ok().is_some_and(|mut r| {
                        let unclaimed = r.get(&key).is_some_and(|v| !v.binding);
                        if unclaimed {
                            r.remove(&key);
                        }
                        unclaimed
                    });
                    if foreign {
                        tracing::info!(pod = %key, "pod bound elsewhere: our filter reservation gives way to its recorded grant");
                        c.handle(now, Event::BindFailed(key));
                    }
                }
            }
            Event::QuotaChanged { namespace, quota } => {
                self.metrics.set_quota(namespace, quota.clone())
            }
            _ => {}
        }
        c.handle(now, event)
    }

    /// The ledger's registration of node `name`, if it knows the node.
    fn registration<'c>(c: &'c Controller, name: &str) -> Option<&'c hami_core::model::Node> {
        let l = c.ledger();
        l.node_id(name).and_then(|id| l.entry(id)).map(|e| &e.node)
    }

    /// Whether some filter failed within [`RELEASE_RACE_WINDOW_S`] before `now` and has no
    /// nudge due yet (forgets the older ones): without one, new capacity needs no fit check.
    fn recently_failed(&self, now: i64) -> bool {
        let Ok(mut failed) = self.failed.lock() else {
            return false;
        };
        failed.retain(|_, f| f.at >= now - RELEASE_RACE_WINDOW_S);
        failed.values().any(|f| !f.nudging)
    }

    /// The pods whose filter failed within [`RELEASE_RACE_WINDOW_S`] before `now`, that have no
    /// nudge due yet and that fit on `node` now, with the number of that failed filter; they are
    /// marked as due, so further capacity does not check them again.
    fn worth_a_retry(&self, c: &Controller, now: i64, node: &str) -> Vec<(PodKey, u64)> {
        let Ok(mut failed) = self.failed.lock() else {
            return Vec::new();
        };
        failed.retain(|_, f| f.at >= now - RELEASE_RACE_WINDOW_S);
        failed
            .iter_mut()
            .filter(|(_, f)| !f.nudging && c.fits_on(&f.pod, node))
            .map(|(k, f)| {
                f.nudging = true;
                (k.clone(), f.seq)
            })
            .collect()
    }

    /// Nudge `pods` (pending; each filter failed just before `cause` made room — a released
    /// pod's key, or `node:<name>` for a node that registered or gained capacity — and each
    /// fits now). kube-scheduler retries a rejected pod on any cluster event, the deletion or
    /// Node update included; when it did so before our watch saw the change, the retry failed
    /// and the pod would wait for an unrelated event. After [`NUDGE_DELAY_MS`], a pod whose
    /// failed filter is still its latest (kube-scheduler has not retried it since) gets one
    /// annotation patch, which makes kube-scheduler requeue it; a pod filtered again meanwhile
    /// gets nothing.
    fn spawn_retry(&self, pods: Vec<(PodKey, u64)>, cause: String, now: i64) {
        let writer = self.writer.clone();
        let metrics = self.metrics.clone();
        let failed = self.failed.clone();
        let value = format!("{cause}@{now}");
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(NUDGE_DELAY_MS)).await;
            let due: Vec<PodKey> = match failed.lock() {
                Ok(mut f) => {
                    let due: Vec<PodKey> = pods
                        .into_iter()
                        .filter(|(k, seq)| f.get(k).is_some_and(|x| x.seq == *seq))
                        .map(|(k, _)| k)
                        .collect();
                    for k in &due {
                        f.remove(k);
                    }
                    due
                }
                Err(_) => Vec::new(),
            };
            for pod in due {
                metrics.api_write("patch_pod_retry");
                let ann = BTreeMap::from([(RETRY_ANNOTATION.to_string(), Some(value.clone()))]);
                match writer.patch_pod(&pod, &BTreeMap::new(), &ann).await {
                    Ok(()) => {
                        tracing::info!(%pod, cause = %value, "pending pod nudged after new capacity (requeue)")
                    }
                    Err(e) => tracing::debug!(%pod, error = %e, "nudging a pending pod failed"),
                }
            }
        });
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

    /// Claim the pod's filter reservation for a bind to `node` and apply the Bind side of
    /// `cluster/docs/allocate-protocol.md` ([`crate::allocate::bind_conflict`]'s rule): binding
    /// must wait while another pod there still awaits Allocate for a container with the same
    /// card count, or the device plugin could not tell them apart. Check and claim are one step
    /// under the lock, because kube-scheduler runs binding cycles concurrently.
    ///
    /// `Err((message, release))`: the bind fails; `release` says whether a reservation exists
    /// that must be released with it.
    fn claim_bind(&self, key: &PodKey, node: &str) -> Result<Reservation, (String, bool)> {
        let Ok(mut r) = self.reservations.lock() else {
            return Err((
                "reservation table unavailable (poisoned lock)".into(),
                false,
            ));
        };
        let Some(res) = r.get_mut(key) else {
            return Err((
                format!(
                    "bind to {node:?} without a filter decision of this scheduler process (it restarted, \
                     lost the lead, or the decision expired after {} s); kube-scheduler filters the pod again",
                    self.reservation_ttl()
                ),
                false,
            ));
        };
        if res.node != node {
            return Err((
                format!(
                    "bind to {node:?} but the filter placed the pod on {:?}",
                    res.node
                ),
                true,
            ));
        }
        if res.binding {
            return Err(("a bind of this pod is already in progress".into(), false));
        }
        let Ok(mut f) = self.inflight.lock() else {
            return Err(("in-flight table unavailable (poisoned lock)".into(), true));
        };
        let counts = &res.counts;
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
            return Err((c, true));
        }
        if !counts.is_empty() {
            f.insert(key.clone(), (node.to_string(), counts.clone()));
        }
        res.binding = true;
        Ok(res.clone())
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
        let kept = Arc::new(pod.clone());
        let mut c = self.controller.lock().await;
        // A bound pod is never scheduled again: kube-scheduler's view of it is behind (it saw
        // our bind patch before the Binding). Re-deciding would drop the pod's real grant.
        let already = self.bound.lock().ok().and_then(|b| b.get(&key).cloned());
        if let Some(node) = already {
            return err(format!(
                "pod {key} is already bound to node {node}; kube-scheduler's view of it is behind"
            ));
        }
        // A pod whose bind is writing its grant must not be re-decided under it.
        let binding = self
            .reservations
            .lock()
            .ok()
            .is_some_and(|r| r.get(&key).is_some_and(|v| v.binding));
        if binding {
            return err(format!(
                "pod {key}: a bind of this pod is in progress; retry after it"
            ));
        }
        let actions = c.handle(
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
        // The controller dropped any earlier decision for this pod; the tables follow it while
        // the controller is still locked (see the lock order on [`Extender`]).
        if let Ok(mut r) = self.reservations.lock() {
            r.remove(&key);
            if let (Some(node), Some(annotations)) = (&chosen, &patch) {
                let counts = annotations
                    .get(to_allocate_key())
                    .and_then(|v| v.as_deref())
                    .and_then(|v| {
                        hami_core::codec::devices::decode_pod_devices(to_allocate_key(), v).ok()
                    })
                    .map(|devs| devs.iter().map(Vec::len).filter(|&n| n > 0).collect())
                    .unwrap_or_default();
                r.insert(
                    key.clone(),
                    Reservation {
                        node: node.clone(),
                        annotations: annotations.clone(),
                        counts,
                        at: now,
                        binding: false,
                    },
                );
            }
        }
        if let Ok(mut f) = self.failed.lock() {
            if result == "failed" {
                if f.len() >= FAILED_CAP {
                    f.retain(|_, v| v.at >= now - RELEASE_RACE_WINDOW_S);
                }
                if f.len() < FAILED_CAP || f.contains_key(&key) {
                    let seq = self.filter_seq.fetch_add(1, Ordering::SeqCst);
                    f.insert(
                        key.clone(),
                        FailedFilter {
                            pod: kept,
                            at: now,
                            seq,
                            nudging: false,
                        },
                    );
                }
            } else {
                f.remove(&key);
            }
        }
        drop(c);
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
            // Reserved in memory only: the bind writes the grant (module docs).
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
        let res = match self.claim_bind(&key, &args.node) {
            Ok(r) => r,
            Err((reason, true)) => return self.bind_failed(now, &key, reason).await,
            // Nothing of ours to release, nothing written: kube-scheduler filters again.
            Err((reason, false)) => return fail(format!("pod {key}: {reason}")),
        };
        let actions = self.controller.lock().await.handle(
            now,
            Event::Bind {
                pod: key.clone(),
                node: args.node.clone(),
            },
        );
        if let Some(error) = actions.iter().find_map(|a| match a {
            Action::Rejected { error, .. } => Some(error.clone()),
            _ => None,
        }) {
            return self.bind_failed(now, &key, error).await;
        }
        // One merge patch: the filter's grant, the bind phase, and HAMi's pod label.
        let mut annotations = res.annotations;
        for a in &actions {
            if let Action::PatchPod { annotations: a, .. } = a {
                annotations.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        annotations.insert(keys::BIND_PHASE.into(), Some("allocating".into()));
        annotations.insert(keys::BIND_TIME.into(), Some(now.to_string()));
        let labels = vgpu_node_label(&key, &args.node);
        self.metrics.api_write("patch_pod");
        if let Err(e) = self.writer.patch_pod(&key, &labels, &annotations).await {
            return self
                .bind_failed(
                    now,
                    &key,
                    format!("writing the device annotations failed: {e}"),
                )
                .await;
        }
        for a in actions {
            if let Action::BindPod { node, .. } = a {
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
        }
        if let Ok(mut r) = self.reservations.lock() {
            r.remove(&key);
        }
        if let Ok(mut b) = self.bound.lock() {
            b.insert(key, args.node.clone());
        }
        ExtenderBindingResult::default()
    }

    /// Release the pod's reservation and grant, record a `BindingFailed` event, answer `msg`.
    async fn bind_failed(&self, now: i64, key: &PodKey, msg: String) -> ExtenderBindingResult {
        let mut c = self.controller.lock().await;
        if let Ok(mut f) = self.inflight.lock() {
            f.remove(key);
        }
        if let Ok(mut r) = self.reservations.lock() {
            r.remove(key);
        }
        c.handle(now, Event::BindFailed(key.clone()));
        drop(c);
        let msg = format!("pod {key}: {msg}");
        self.spawn_event(key, "Warning", "BindingFailed", msg.clone());
        ExtenderBindingResult { error: msg }
    }
}

#[cfg(test)]
mod tests {
    use hami_core::family::FamilyId;
    use hami_core::model::{Device, DeviceMode, Node};

    /// What counts as added capacity, including the node's CPU and memory (0: not tracked).
    #[test]
    fn adds_capacity_table() {
        let card = |uuid: &str| Device::new(uuid, 0, FamilyId::NVIDIA, "A100", 16000);
        let node = |cards: Vec<Device>, cpu: u64, mem: u64| {
            let mut n = Node::new("n");
            n.devices = cards;
            n.cpu_milli = cpu;
            n.memory_mib = mem;
            n
        };
        let base = node(vec![card("a")], 8000, 0);
        let with = |f: &dyn Fn(&mut Device)| {
            let mut d = card("a");
            f(&mut d);
            node(vec![d], 8000, 0)
        };
        let cases: Vec<(&str, Option<&Node>, Node, bool)> = vec![
            ("new node with a card", None, base.clone(), true),
            ("new node without cards", None, node(vec![], 8000, 0), false),
            ("unchanged", Some(&base), base.clone(), false),
            (
                "second card",
                Some(&base),
                node(vec![card("a"), card("b")], 8000, 0),
                true,
            ),
            (
                "card replaced",
                Some(&base),
                node(vec![card("b")], 8000, 0),
                true,
            ),
            ("card removed", Some(&base), node(vec![], 8000, 0), false),
            (
                "more memory",
                Some(&base),
                with(&|d| d.memory_mib = 32000),
                true,
            ),
            (
                "less memory",
                Some(&base),
                with(&|d| d.memory_mib = 8000),
                false,
            ),
            (
                "more slots",
                Some(&base),
                with(&|d| d.split_count = 20),
                true,
            ),
            (
                "other mode",
                Some(&base),
                with(&|d| d.mode = DeviceMode::Mig),
                true,
            ),
            (
                "unhealthy",
                Some(&base),
                with(&|d| d.healthy = false),
                false,
            ),
            ("cordoned", Some(&base), with(&|d| d.cordoned = true), false),
            (
                "more CPU",
                Some(&base),
                node(vec![card("a")], 16000, 0),
                true,
            ),
            (
                "CPU untracked now",
                Some(&base),
                node(vec![card("a")], 0, 0),
                true,
            ),
            (
                "less CPU",
                Some(&base),
                node(vec![card("a")], 4000, 0),
                false,
            ),
            (
                "memory tracked now",
                Some(&base),
                node(vec![card("a")], 8000, 1024),
                false,
            ),
        ];
        for (name, before, after, want) in cases {
            assert_eq!(super::adds_capacity(before, &after), want, "{name}");
        }
        let sick = with(&|d| d.healthy = false);
        assert!(super::adds_capacity(Some(&sick), &base), "healthy again");
        let cordoned = with(&|d| d.cordoned = true);
        assert!(super::adds_capacity(Some(&cordoned), &base), "un-cordoned");
    }

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
