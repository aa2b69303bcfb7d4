//! The Kubernetes side of the scheduler: the real [`ApiWriter`] and the watches (nodes, pods,
//! ResourceQuotas) that feed the control loop.
//!
//! At start every node and pod is listed and fed in (the ledger is rebuilt from their
//! annotations); only when both initial lists are in is the extender marked ready. A re-list
//! after a broken watch removes what disappeared meanwhile.

use crate::extender::Extender;
use crate::extender::handshake;
use crate::extender::writer::{ApiError, ApiWriter};
use crate::quota::{QuotaBook, QuotaNames};
use ::kube::api::{Api, Patch, PatchParams, PostParams};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event as WatchEvent};
use futures::StreamExt;
use futures::future::BoxFuture;
use hami_core::control::{Event, key_of};
use hami_core::request::PodKey;
use k8s_openapi::api::core::v1::{
    Binding, Event as K8sEvent, EventSource, Node, ObjectReference, Pod, ResourceQuota,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// [`ApiWriter`] against a real API server.
#[derive(Clone)]
pub struct KubeWriter {
    client: ::kube::Client,
    component: String,
}

impl KubeWriter {
    /// A writer using `client`; events name `component` as their source.
    pub fn new(client: ::kube::Client, component: impl Into<String>) -> KubeWriter {
        KubeWriter {
            client,
            component: component.into(),
        }
    }
}

fn annotations_patch(a: &BTreeMap<String, Option<String>>) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({ "metadata": { "annotations": a } }))
}

/// One merge patch carrying labels (when any) and annotations.
fn pod_patch(
    labels: &BTreeMap<String, Option<String>>,
    annotations: &BTreeMap<String, Option<String>>,
) -> Patch<serde_json::Value> {
    if labels.is_empty() {
        return annotations_patch(annotations);
    }
    Patch::Merge(
        serde_json::json!({ "metadata": { "labels": labels, "annotations": annotations } }),
    )
}

fn api_err(e: ::kube::Error) -> ApiError {
    ApiError(e.to_string())
}

impl ApiWriter for KubeWriter {
    fn patch_pod(
        &self,
        pod: &PodKey,
        labels: &BTreeMap<String, Option<String>>,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let name = pod.name.clone();
        let patch = pod_patch(labels, annotations);
        Box::pin(async move {
            api.patch(&name, &PatchParams::default(), &patch)
                .await
                .map(|_| ())
                .map_err(api_err)
        })
    }

    fn patch_node_annotations(
        &self,
        node: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = node.to_string();
        let patch = annotations_patch(annotations);
        Box::pin(async move {
            api.patch(&name, &PatchParams::default(), &patch)
                .await
                .map(|_| ())
                .map_err(api_err)
        })
    }

    fn bind(&self, pod: &PodKey, uid: &str, node: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: (!uid.is_empty()).then(|| uid.to_string()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..ObjectReference::default()
            },
        };
        let name = pod.name.clone();
        Box::pin(async move {
            api.create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map(|_| ())
            .map_err(api_err)
        })
    }

    fn event(
        &self,
        pod: &PodKey,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &pod.namespace);
        let ev = pod_event_object(
            &pod.namespace,
            &pod.name,
            kind,
            reason,
            message,
            &self.component,
        );
        Box::pin(async move {
            api.create(&PostParams::default(), &ev)
                .await
                .map(|_| ())
                .map_err(api_err)
        })
    }
}

/// A core/v1 Event about pod `namespace/name` from `component`, stamped now.
pub fn pod_event_object(
    namespace: &str,
    name: &str,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> K8sEvent {
    let now = k8s_openapi::jiff::Timestamp::now();
    K8sEvent {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(kind.to_string()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..K8sEvent::default()
    }
}

/// Which watch an initial list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Nodes.
    Nodes,
    /// Pods of this scheduler.
    Pods,
    /// ResourceQuota objects.
    Quotas,
}

/// Which initial lists are in; the extender is ready when all are (nodes, pods and, when the
/// quota watch runs, quotas — a filter before the quotas are known would ignore them).
#[derive(Debug)]
pub struct SyncState {
    nodes: AtomicBool,
    pods: AtomicBool,
    quotas: AtomicBool,
}

impl Default for SyncState {
    fn default() -> Self {
        SyncState::new(true)
    }
}

impl SyncState {
    /// A state that waits for nodes, pods and (when `with_quotas`) quotas.
    pub fn new(with_quotas: bool) -> SyncState {
        SyncState {
            nodes: AtomicBool::new(false),
            pods: AtomicBool::new(false),
            quotas: AtomicBool::new(!with_quotas),
        }
    }

    /// Record that `what` finished its initial list; marks `ext` ready once all have.
    pub fn mark(&self, ext: &Extender, what: Watched) {
        match what {
            Watched::Nodes => self.nodes.store(true, Ordering::SeqCst),
            Watched::Pods => self.pods.store(true, Ordering::SeqCst),
            Watched::Quotas => self.quotas.store(true, Ordering::SeqCst),
        }
        if self.nodes.load(Ordering::SeqCst)
            && self.pods.load(Ordering::SeqCst)
            && self.quotas.load(Ordering::SeqCst)
            && !ext.is_ready()
        {
            tracing::info!("node, pod and quota caches synced; ready");
            ext.set_ready(true);
        }
    }
}

fn string_map(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// Apply the handshake to one node: patch its handshake keys (leader only) and feed the node,
/// minus the registrations of unhealthy families, to the controller.
async fn node_seen(
    ext: &Extender,
    writer: &Arc<dyn ApiWriter>,
    node: &Node,
    now: i64,
    handshake_on: bool,
) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut node = node.clone();
    if handshake_on {
        let ann = node.metadata.annotations.clone().unwrap_or_default();
        let alloc = string_map(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        let d = handshake::decide(now, &ann, &alloc);
        if let Some(a) = node.metadata.annotations.as_mut() {
            for k in &d.ignore_register {
                tracing::warn!(node = %name, key = %k, "handshake expired: ignoring the node's devices");
                a.remove(k);
            }
        }
        if !d.patch.is_empty() && ext.is_leader() {
            ext.metrics().api_write("patch_node");
            if let Err(e) = writer.patch_node_annotations(&name, &d.patch).await {
                tracing::warn!(node = %name, error = %e, "handshake patch failed");
            }
        }
    }
    for a in ext.observe(Event::NodeChanged(Box::new(node))).await {
        tracing::warn!(node = %name, action = ?a, "node not usable");
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

/// Watch nodes forever; every `resync` re-run the handshake over the cached nodes.
pub async fn watch_nodes(
    client: ::kube::Client,
    ext: Arc<Extender>,
    writer: Arc<dyn ApiWriter>,
    sync: Arc<SyncState>,
    handshake_on: bool,
    resync: Duration,
) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut cache: BTreeMap<String, Node> = BTreeMap::new();
    let mut relist: Option<BTreeSet<String>> = None;
    let mut tick = tokio::time::interval(resync);
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Err(e) => tracing::warn!(error = %e, "node watch error"),
                    Ok(WatchEvent::Init) => relist = Some(BTreeSet::new()),
                    Ok(WatchEvent::InitApply(n)) | Ok(WatchEvent::Apply(n)) => {
                        let name = n.metadata.name.clone().unwrap_or_default();
                        if let Some(seen) = relist.as_mut() { seen.insert(name.clone()); }
                        node_seen(&ext, &writer, &n, unix_now(), handshake_on).await;
                        cache.insert(name, n);
                    }
                    Ok(WatchEvent::Delete(n)) => {
                        let name = n.metadata.name.clone().unwrap_or_default();
                        cache.remove(&name);
                        ext.observe(Event::NodeRemoved(name)).await;
                    }
                    Ok(WatchEvent::InitDone) => {
                        if let Some(seen) = relist.take() {
                            let gone: Vec<String> = cache.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                            for g in gone {
                                cache.remove(&g);
                                ext.observe(Event::NodeRemoved(g)).await;
                            }
                        }
                        sync.mark(&ext, Watched::Nodes);
                    }
                }
            }
            _ = tick.tick() => {
                let now = unix_now();
                for n in cache.values() {
                    node_seen(&ext, &writer, n, now, handshake_on).await;
                }
            }
        }
    }
}

/// Turn a watched pod into the controller event.
pub fn pod_event(pod: Pod) -> Event {
    let terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if terminal || pod.metadata.deletion_timestamp.is_some() {
        Event::PodDeleted(key_of(&pod))
    } else {
        Event::PodObserved(Box::new(pod))
    }
}

/// Watch pods of `scheduler_name` forever (a field selector keeps other pods out of memory).
pub async fn watch_pods(
    client: ::kube::Client,
    ext: Arc<Extender>,
    sync: Arc<SyncState>,
    scheduler_name: String,
) {
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.schedulerName={scheduler_name}"));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut known: BTreeSet<PodKey> = BTreeSet::new();
    let mut relist: Option<BTreeSet<PodKey>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => tracing::warn!(error = %e, "pod watch error"),
            Ok(WatchEvent::Init) => relist = Some(BTreeSet::new()),
            Ok(WatchEvent::InitApply(p)) | Ok(WatchEvent::Apply(p)) => {
                let key = key_of(&p);
                if let Some(seen) = relist.as_mut() {
                    seen.insert(key.clone());
                }
                let ev = pod_event(p);
                if matches!(ev, Event::PodDeleted(_)) {
                    known.remove(&key);
                } else {
                    known.insert(key);
                }
                for a in ext.observe(ev).await {
                    tracing::warn!(action = ?a, "recorded pod grant not usable");
                }
            }
            Ok(WatchEvent::Delete(p)) => {
                let key = key_of(&p);
                known.remove(&key);
                ext.observe(Event::PodDeleted(key)).await;
            }
            Ok(WatchEvent::InitDone) => {
                if let Some(seen) = relist.take() {
                    let gone: Vec<PodKey> = known
                        .iter()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for g in gone {
                        known.remove(&g);
                        ext.observe(Event::PodDeleted(g)).await;
                    }
                }
                sync.mark(&ext, Watched::Pods);
            }
        }
    }
}

/// Feed one quota watch result into the book and the controller, logging what is wrong.
async fn quota_applied(
    ext: &Extender,
    book: &mut QuotaBook,
    names: &QuotaNames,
    rq: &ResourceQuota,
) {
    let (ev, res) = book.apply(names, rq);
    if let Err(e) = res {
        tracing::error!(error = %e, "ResourceQuota not applied");
    }
    if let Some(ev) = ev {
        ext.observe(ev).await;
    }
}

/// Watch ResourceQuota objects forever and keep the controller's namespace quotas in step
/// (HAMi's quota extension; the rules are in [`crate::quota`]). A re-list drops objects that
/// disappeared meanwhile.
pub async fn watch_quotas(
    client: ::kube::Client,
    ext: Arc<Extender>,
    sync: Arc<SyncState>,
    names: QuotaNames,
) {
    let api: Api<ResourceQuota> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut book = QuotaBook::new();
    let mut relist: Option<BTreeSet<(String, String)>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => tracing::warn!(error = %e, "resourcequota watch error"),
            Ok(WatchEvent::Init) => relist = Some(BTreeSet::new()),
            Ok(WatchEvent::InitApply(q)) | Ok(WatchEvent::Apply(q)) => {
                if let Some(seen) = relist.as_mut() {
                    seen.insert(object_key(&q.metadata));
                }
                quota_applied(&ext, &mut book, &names, &q).await;
            }
            Ok(WatchEvent::Delete(q)) => {
                let (ns, name) = object_key(&q.metadata);
                if let Some(ev) = book.remove(&ns, &name) {
                    ext.observe(ev).await;
                }
            }
            Ok(WatchEvent::InitDone) => {
                if let Some(seen) = relist.take() {
                    for (ns, name) in book.objects() {
                        if !seen.contains(&(ns.clone(), name.clone()))
                            && let Some(ev) = book.remove(&ns, &name)
                        {
                            ext.observe(ev).await;
                        }
                    }
                }
                sync.mark(&ext, Watched::Quotas);
            }
        }
    }
}

fn object_key(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

use ::kube::runtime::watcher::watcher;
