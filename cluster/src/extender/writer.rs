//! The API writes the extender carries out, behind a small trait so tests and the benchmark
//! can use an in-memory fake that records every call.

use futures::future::BoxFuture;
use hami_core::request::PodKey;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A failed API write, as text (the HTTP layer only reports it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ApiError(pub String);

/// One API write, as recorded by [`RecordingWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiWrite {
    /// One JSON merge patch of pod labels and annotations (`None` removes the key).
    PatchPod {
        /// The pod.
        pod: PodKey,
        /// Label keys set or removed (empty: the patch has no `labels` part).
        labels: BTreeMap<String, Option<String>>,
        /// Annotation keys set or removed.
        annotations: BTreeMap<String, Option<String>>,
    },
    /// A merge patch of node annotations.
    PatchNode {
        /// The node.
        node: String,
        /// Keys set or removed.
        annotations: BTreeMap<String, Option<String>>,
    },
    /// A `pods/binding` create.
    Bind {
        /// The pod.
        pod: PodKey,
        /// Its UID (may be empty when kube-scheduler did not send one).
        uid: String,
        /// The node.
        node: String,
    },
    /// A core/v1 Event on the pod.
    Event {
        /// The pod.
        pod: PodKey,
        /// `Normal` or `Warning`.
        kind: String,
        /// HAMi's reason word (`FilteringFailed`, `BindingFailed`, …).
        reason: String,
        /// Human text.
        message: String,
    },
}

impl ApiWrite {
    /// The pod this write concerns, if any.
    pub fn pod(&self) -> Option<&PodKey> {
        match self {
            ApiWrite::PatchPod { pod, .. }
            | ApiWrite::Bind { pod, .. }
            | ApiWrite::Event { pod, .. } => Some(pod),
            ApiWrite::PatchNode { .. } => None,
        }
    }
}

/// What the extender needs from the Kubernetes API. Implementations must be cheap to share.
pub trait ApiWriter: Send + Sync + 'static {
    /// Merge-patch the pod's labels and annotations in one write (`labels` may be empty).
    fn patch_pod(
        &self,
        pod: &PodKey,
        labels: &BTreeMap<String, Option<String>>,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Merge-patch the node's annotations.
    fn patch_node_annotations(
        &self,
        node: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Create the pod's Binding to `node`.
    fn bind(&self, pod: &PodKey, uid: &str, node: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Record an Event on the pod (best effort; callers ignore failures).
    fn event(
        &self,
        pod: &PodKey,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// A semaphore that starts closed (no permits).
#[derive(Debug)]
struct Gate(tokio::sync::Semaphore);

impl Default for Gate {
    fn default() -> Gate {
        Gate(tokio::sync::Semaphore::new(0))
    }
}

/// An in-memory [`ApiWriter`] that records every write; optionally fails binds or pod patches,
/// or holds Bindings back (an API server slow to answer).
#[derive(Debug, Default)]
pub struct RecordingWriter {
    writes: Mutex<Vec<ApiWrite>>,
    fail_binds: std::sync::atomic::AtomicBool,
    fail_patches: std::sync::atomic::AtomicBool,
    hold_binds: std::sync::atomic::AtomicBool,
    /// Permits for held Bindings (none until [`RecordingWriter::release_binds`]).
    bind_permits: Gate,
    /// Notified when a held Binding starts waiting.
    bind_waiting: tokio::sync::Notify,
}

impl RecordingWriter {
    /// An empty recorder.
    pub fn new() -> RecordingWriter {
        RecordingWriter::default()
    }

    /// Make every later bind fail (to test the failure path).
    pub fn fail_binds(&self, fail: bool) {
        self.fail_binds
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Make every later pod patch fail (to test the failure path); it is still recorded.
    pub fn fail_patches(&self, fail: bool) {
        self.fail_patches
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Make every later Binding wait (recorded once it goes through) until
    /// [`RecordingWriter::release_binds`] lets it.
    pub fn hold_binds(&self) {
        self.hold_binds
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Let `n` held Bindings through.
    pub fn release_binds(&self, n: usize) {
        self.bind_permits.0.add_permits(n);
    }

    /// Wait until a held Binding is waiting.
    pub async fn bind_held(&self) {
        self.bind_waiting.notified().await;
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<ApiWrite> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Writes that concern `pod`.
    pub fn writes_for(&self, pod: &PodKey) -> Vec<ApiWrite> {
        self.writes()
            .into_iter()
            .filter(|w| w.pod() == Some(pod))
            .collect()
    }

    /// Forget what was recorded.
    pub fn clear(&self) {
        if let Ok(mut w) = self.writes.lock() {
            w.clear();
        }
    }

    fn push(&self, w: ApiWrite) {
        if let Ok(mut v) = self.writes.lock() {
            v.push(w);
        }
    }
}

impl ApiWriter for RecordingWriter {
    fn patch_pod(
        &self,
        pod: &PodKey,
        labels: &BTreeMap<String, Option<String>>,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        self.push(ApiWrite::PatchPod {
            pod: pod.clone(),
            labels: labels.clone(),
            annotations: annotations.clone(),
        });
        let fail = self.fail_patches.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if fail {
                Err(ApiError("injected patch failure".into()))
            } else {
                Ok(())
            }
        })
    }

    fn patch_node_annotations(
        &self,
        node: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        self.push(ApiWrite::PatchNode {
            node: node.to_string(),
            annotations: annotations.clone(),
        });
        Box::pin(async { Ok(()) })
    }

    fn bind(&self, pod: &PodKey, uid: &str, node: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let write = ApiWrite::Bind {
            pod: pod.clone(),
            uid: uid.to_string(),
            node: node.to_string(),
        };
        let fail = self.fail_binds.load(std::sync::atomic::Ordering::SeqCst);
        let hold = self.hold_binds.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if hold {
                self.bind_waiting.notify_one();
                if let Ok(permit) = self.bind_permits.0.acquire().await {
                    permit.forget();
                }
            }
            self.push(write);
            if fail {
                Err(ApiError("injected bind failure".into()))
            } else {
                Ok(())
            }
        })
    }

    fn event(
        &self,
        pod: &PodKey,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        self.push(ApiWrite::Event {
            pod: pod.clone(),
            kind: kind.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        });
        Box::pin(async { Ok(()) })
    }
}
