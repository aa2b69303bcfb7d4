//! Where the device plugin and the node agent read pods and write annotations: a small trait with
//! an in-memory fake for tests and a kube-rs implementation for production.

use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// An API read or write failed; the text says which object and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Annotation changes for a merge patch: `Some(v)` sets, `None` removes (JSON `null`).
pub type AnnotationPatch = BTreeMap<String, Option<String>>;

/// The API calls the device plugin and node agent make.
///
/// Contract: `list_node_pods` returns every pod whose `spec.nodeName` is `node`, read from the
/// API server (not a lagging cache) so that a pod kubelet is admitting is in the list; patches are
/// JSON merge patches of `metadata.annotations`.
pub trait PodSource: Send + Sync + 'static {
    /// Pods bound to `node`.
    fn list_node_pods(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<Pod>, SourceError>> + Send;
    /// Merge-patch a pod's annotations.
    fn patch_pod_annotations(
        &self,
        namespace: &str,
        name: &str,
        patch: AnnotationPatch,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// A node's annotations (empty map when it has none).
    fn node_annotations(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, SourceError>> + Send;
    /// Merge-patch a node's annotations.
    fn patch_node_annotations(
        &self,
        node: &str,
        patch: AnnotationPatch,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Record a core/v1 Event on a pod; `kind` is `Normal` or `Warning`.
    fn pod_event(
        &self,
        namespace: &str,
        name: &str,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}

fn apply_patch(target: &mut BTreeMap<String, String>, patch: &AnnotationPatch) {
    for (k, v) in patch {
        match v {
            Some(v) => {
                target.insert(k.clone(), v.clone());
            }
            None => {
                target.remove(k);
            }
        }
    }
}

/// One write the fake recorded, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// A pod annotation patch (`namespace/name`).
    Pod(String, AnnotationPatch),
    /// A node annotation patch.
    Node(String, AnnotationPatch),
    /// An Event on a pod (`namespace/name`).
    Event {
        /// `namespace/name`.
        pod: String,
        /// `Normal` or `Warning`.
        kind: String,
        /// The reason word.
        reason: String,
        /// Human text.
        message: String,
    },
}

#[derive(Debug, Default)]
struct FakeState {
    pods: BTreeMap<String, Pod>,
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    writes: Vec<Write>,
    fail_pod_patches: bool,
}

/// In-memory pods and nodes: the tests' API server. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct FakeSource {
    state: Arc<Mutex<FakeState>>,
}

impl FakeSource {
    /// An empty fake cluster.
    pub fn new() -> FakeSource {
        FakeSource::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// Add or replace a pod (keyed by namespace/name).
    pub fn put_pod(&self, pod: Pod) {
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        self.with(|s| s.pods.insert(key, pod));
    }

    /// Remove a pod, as if it was deleted.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.with(|s| s.pods.remove(&format!("{namespace}/{name}")));
    }

    /// A pod by namespace/name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.with(|s| s.pods.get(&format!("{namespace}/{name}")).cloned())
    }

    /// A pod's annotations (empty when absent).
    pub fn pod_annotations(&self, namespace: &str, name: &str) -> BTreeMap<String, String> {
        self.pod(namespace, name)
            .and_then(|p| p.metadata.annotations)
            .unwrap_or_default()
    }

    /// Set a node's annotations.
    pub fn put_node(&self, node: &str, annotations: BTreeMap<String, String>) {
        self.with(|s| s.nodes.insert(node.to_string(), annotations));
    }

    /// A node's annotations, if the node exists.
    pub fn node(&self, node: &str) -> Option<BTreeMap<String, String>> {
        self.with(|s| s.nodes.get(node).cloned())
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.with(|s| s.writes.clone())
    }

    /// Make pod patches fail (an API outage).
    pub fn fail_pod_patches(&self, fail: bool) {
        self.with(|s| s.fail_pod_patches = fail);
    }
}

impl PodSource for FakeSource {
    async fn list_node_pods(&self, node: &str) -> Result<Vec<Pod>, SourceError> {
        Ok(self.with(|s| {
            s.pods
                .values()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
                .cloned()
                .collect()
        }))
    }

    async fn patch_pod_annotations(
        &self,
        namespace: &str,
        name: &str,
        patch: AnnotationPatch,
    ) -> Result<(), SourceError> {
        let key = format!("{namespace}/{name}");
        self.with(|s| {
            if s.fail_pod_patches {
                return Err(SourceError(format!("patch pod {key}: injected failure")));
            }
            let Some(pod) = s.pods.get_mut(&key) else {
                return Err(SourceError(format!("patch pod {key}: not found")));
            };
            apply_patch(pod.metadata.annotations.get_or_insert_default(), &patch);
            s.writes.push(Write::Pod(key, patch));
            Ok(())
        })
    }

    async fn node_annotations(&self, node: &str) -> Result<BTreeMap<String, String>, SourceError> {
        self.with(|s| {
            s.nodes
                .get(node)
                .cloned()
                .ok_or_else(|| SourceError(format!("node {node}: not found")))
        })
    }

    async fn patch_node_annotations(
        &self,
        node: &str,
        patch: AnnotationPatch,
    ) -> Result<(), SourceError> {
        self.with(|s| {
            let Some(n) = s.nodes.get_mut(node) else {
                return Err(SourceError(format!("patch node {node}: not found")));
            };
            apply_patch(n, &patch);
            s.writes.push(Write::Node(node.to_string(), patch));
            Ok(())
        })
    }

    async fn pod_event(
        &self,
        namespace: &str,
        name: &str,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), SourceError> {
        self.with(|s| {
            s.writes.push(Write::Event {
                pod: format!("{namespace}/{name}"),
                kind: kind.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
            });
        });
        Ok(())
    }
}

/// The production source: the API server through kube-rs.
#[derive(Clone)]
pub struct KubeSource {
    client: ::kube::Client,
}

impl KubeSource {
    /// Wrap a client.
    pub fn new(client: ::kube::Client) -> KubeSource {
        KubeSource { client }
    }

    /// A client from the in-cluster service account or the local kubeconfig.
    pub async fn from_env() -> Result<KubeSource, SourceError> {
        ::kube::Client::try_default()
            .await
            .map(KubeSource::new)
            .map_err(|e| SourceError(format!("kubernetes client: {e}")))
    }
}

fn merge_patch(patch: &AnnotationPatch) -> serde_json::Value {
    let ann: serde_json::Map<String, serde_json::Value> = patch
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_ref().map_or(serde_json::Value::Null, |s| {
                    serde_json::Value::String(s.clone())
                }),
            )
        })
        .collect();
    serde_json::json!({ "metadata": { "annotations": ann } })
}

impl PodSource for KubeSource {
    async fn list_node_pods(&self, node: &str) -> Result<Vec<Pod>, SourceError> {
        let api: ::kube::Api<Pod> = ::kube::Api::all(self.client.clone());
        // No resourceVersion: a quorum read, so a pod kubelet already sees bound is listed.
        let lp = ::kube::api::ListParams::default().fields(&format!("spec.nodeName={node}"));
        api.list(&lp)
            .await
            .map(|l| l.items)
            .map_err(|e| SourceError(format!("list pods on node {node}: {e}")))
    }

    async fn patch_pod_annotations(
        &self,
        namespace: &str,
        name: &str,
        patch: AnnotationPatch,
    ) -> Result<(), SourceError> {
        let api: ::kube::Api<Pod> = ::kube::Api::namespaced(self.client.clone(), namespace);
        api.patch(
            name,
            &::kube::api::PatchParams::default(),
            &::kube::api::Patch::Merge(merge_patch(&patch)),
        )
        .await
        .map(|_| ())
        .map_err(|e| SourceError(format!("patch pod {namespace}/{name}: {e}")))
    }

    async fn node_annotations(&self, node: &str) -> Result<BTreeMap<String, String>, SourceError> {
        let api: ::kube::Api<Node> = ::kube::Api::all(self.client.clone());
        api.get(node)
            .await
            .map(|n| n.metadata.annotations.unwrap_or_default())
            .map_err(|e| SourceError(format!("get node {node}: {e}")))
    }

    async fn patch_node_annotations(
        &self,
        node: &str,
        patch: AnnotationPatch,
    ) -> Result<(), SourceError> {
        let api: ::kube::Api<Node> = ::kube::Api::all(self.client.clone());
        api.patch(
            node,
            &::kube::api::PatchParams::default(),
            &::kube::api::Patch::Merge(merge_patch(&patch)),
        )
        .await
        .map(|_| ())
        .map_err(|e| SourceError(format!("patch node {node}: {e}")))
    }

    async fn pod_event(
        &self,
        namespace: &str,
        name: &str,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), SourceError> {
        let api: ::kube::Api<k8s_openapi::api::core::v1::Event> =
            ::kube::Api::namespaced(self.client.clone(), namespace);
        let ev = crate::kube::pod_event_object(
            namespace,
            name,
            kind,
            reason,
            message,
            "hami-device-plugin",
        );
        api.create(&::kube::api::PostParams::default(), &ev)
            .await
            .map(|_| ())
            .map_err(|e| SourceError(format!("event on pod {namespace}/{name}: {e}")))
    }
}
