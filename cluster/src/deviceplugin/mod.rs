//! `hami device-plugin`: kubelet's device-plugin API (v1beta1) over a unix socket.
//!
//! Advertises each card as `split_count` replicas `<UUID>-<n>` of `nvidia.com/gpu`, streams the
//! list (again on every health change), steers kubelet with `GetPreferredAllocation`, and serves
//! `Allocate` with HAMi's environment and mounts for the container that
//! [`crate::allocate::decide`] identified — waiting (bounded) or refusing when identity is not
//! certain. Registers with kubelet, re-registers when kubelet restarts (its socket is recreated),
//! and removes its own socket on shutdown.

pub mod mig;
pub mod response;

/// Code generated from `cluster/proto/deviceplugin/v1beta1/api.proto` (kubelet's wire contract).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod api {
    tonic::include_proto!("v1beta1");
}

use crate::allocate::source::{AnnotationPatch, PodSource};
use crate::allocate::{
    Candidate, Decision, RefusalTargets, decide, preferred, refusal_targets, replica_id,
};
use api::device_plugin_server::{DevicePlugin, DevicePluginServer};
use api::registration_client::RegistrationClient;
use hami_core::codec::devices::{encode_pod_devices, fully_consumed};
use hami_core::codec::{BindPhase, NodeLock, keys};
use hami_core::family::FamilyId;
use hyper_util::rt::TokioIo;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{Mutex, watch};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// kubelet's default device-plugin directory.
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
/// kubelet's registration socket name inside the plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// The API version string sent in `Register`.
pub const API_VERSION: &str = "v1beta1";
/// Event reason on a pod whose Allocate was refused (its bind phase is then `failed`).
pub const REASON_FAILED: &str = "AllocationFailed";
/// Event reason on each pod a refused, ambiguous Allocate could have been for.
pub const REASON_AMBIGUOUS: &str = "AllocationAmbiguous";

/// One physical card as the plugin advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Card UUID (`GPU-…`).
    pub uuid: String,
    /// NUMA node, passed to kubelet's topology manager when known.
    pub numa: Option<i64>,
    /// Healthy cards advertise `Healthy` replicas, others `Unhealthy`.
    pub healthy: bool,
}

/// Everything the plugin is configured with.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// This node's name (`NODE_NAME`).
    pub node_name: String,
    /// kubelet's device-plugin directory (holds `kubelet.sock` and our socket).
    pub plugin_dir: PathBuf,
    /// Our socket's file name inside `plugin_dir`.
    pub socket_name: String,
    /// Resource advertised (`nvidia.com/gpu`).
    pub resource_name: String,
    /// Replicas per card (HAMi's `deviceSplitCount`).
    pub split_count: u32,
    /// Env and mount settings.
    pub response: response::ResponseConfig,
    /// How long an Allocate waits for identity evidence before refusing.
    pub allocate_wait: Duration,
    /// Pause between re-lists while waiting.
    pub retry_interval: Duration,
    /// How often kubelet's socket is checked for a restart.
    pub kubelet_poll: Duration,
    /// Create the per-container host directories (off when the host paths are not ours, e.g.
    /// in tests that only look at the response).
    pub create_container_dirs: bool,
}

impl PluginConfig {
    /// Defaults for `node`: HAMi's paths, 10 replicas, a 10 s identity wait.
    pub fn new(node: &str) -> PluginConfig {
        PluginConfig {
            node_name: node.to_string(),
            plugin_dir: PathBuf::from(DEFAULT_PLUGIN_DIR),
            socket_name: "hami-nvidia.sock".into(),
            resource_name: "nvidia.com/gpu".into(),
            split_count: 10,
            response: response::ResponseConfig::default(),
            allocate_wait: Duration::from_secs(10),
            retry_interval: Duration::from_millis(200),
            kubelet_poll: Duration::from_secs(1),
            create_container_dirs: true,
        }
    }

    /// Path of our socket.
    pub fn socket_path(&self) -> PathBuf {
        self.plugin_dir.join(&self.socket_name)
    }

    /// Path of kubelet's registration socket.
    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir.join(KUBELET_SOCKET)
    }
}

/// Errors that stop the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A socket could not be created or removed.
    #[error("socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Serve(String),
}

/// The `DevicePlugin` service: shared state behind the gRPC handlers.
pub struct Service<P> {
    cfg: Arc<PluginConfig>,
    source: Arc<P>,
    cards: watch::Receiver<Vec<Card>>,
    /// Containers served by this process (pod UID, container index). Its lock also serialises
    /// Allocate calls — the only serialisation, one Allocate long.
    served: Arc<Mutex<BTreeSet<(String, usize)>>>,
    /// Flips to `true` when the serving generation stops, ending open ListAndWatch streams so a
    /// restart or shutdown never waits on kubelet's long-lived stream.
    stop: watch::Receiver<bool>,
    /// Creates the MIG instances the scheduler reserved ([`mig`]).
    mig: Arc<dyn mig::MigBackend>,
}

impl<P> Clone for Service<P> {
    fn clone(&self) -> Self {
        Service {
            cfg: self.cfg.clone(),
            source: self.source.clone(),
            cards: self.cards.clone(),
            served: self.served.clone(),
            stop: self.stop.clone(),
            mig: self.mig.clone(),
        }
    }
}

/// The kubelet-facing device list for `cards`.
pub fn device_list(cards: &[Card], split_count: u32) -> Vec<api::Device> {
    let mut out = Vec::new();
    for c in cards {
        for n in 0..split_count {
            out.push(api::Device {
                id: replica_id(&c.uuid, n),
                health: if c.healthy { "Healthy" } else { "Unhealthy" }.to_string(),
                topology: c.numa.map(|id| api::TopologyInfo {
                    nodes: vec![api::NumaNode { id }],
                }),
            });
        }
    }
    out
}

fn to_allocate_key() -> &'static str {
    FamilyId::NVIDIA
        .spec()
        .to_allocate()
        .unwrap_or("hami.io/vgpu-devices-to-allocate")
}

impl<P: PodSource> Service<P> {
    /// A service over `cards` (a watch channel: send a new list to change health). It cannot
    /// create MIG instances ([`mig::NoMigBackend`]) until given a backend with
    /// [`Service::with_mig`].
    pub fn new(cfg: PluginConfig, source: Arc<P>, cards: watch::Receiver<Vec<Card>>) -> Self {
        Service {
            cfg: Arc::new(cfg),
            source,
            cards,
            served: Arc::new(Mutex::new(BTreeSet::new())),
            stop: watch::channel(false).1,
            mig: Arc::new(mig::NoMigBackend),
        }
    }

    /// Use `backend` to create the MIG instances of MIG-mode grants.
    pub fn with_mig(mut self, backend: Arc<dyn mig::MigBackend>) -> Self {
        self.mig = backend;
        self
    }

    fn card_set(&self) -> BTreeSet<String> {
        self.cards.borrow().iter().map(|c| c.uuid.clone()).collect()
    }

    async fn candidates(&self) -> Result<Vec<Candidate>, Status> {
        let pods = self
            .source
            .list_node_pods(&self.cfg.node_name)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(pods
            .iter()
            .map(|p| Candidate::from_pod(p, to_allocate_key()))
            .collect())
    }

    /// Serve one container request: decide, wait while the decision is `Wait`, then write the
    /// annotations and build the response.
    async fn allocate_one(
        &self,
        served: &mut BTreeSet<(String, usize)>,
        ids: &[String],
    ) -> Result<api::ContainerAllocateResponse, Status> {
        let deadline = tokio::time::Instant::now() + self.cfg.allocate_wait;
        let cards = self.card_set();
        loop {
            let cands = match self.candidates().await {
                Ok(c) => c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!("allocate: {e}; retrying");
                    tokio::time::sleep(self.cfg.retry_interval).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let live: BTreeSet<&str> = cands.iter().map(|c| c.uid.as_str()).collect();
            served.retain(|(uid, _)| live.contains(uid.as_str()));
            match decide(&self.cfg.node_name, &cards, &cands, served, ids) {
                Decision::Allocate(a) => return self.commit(served, &cands, a).await,
                Decision::Wait(why) if tokio::time::Instant::now() < deadline => {
                    tracing::info!("allocate {ids:?}: waiting: {why}");
                    tokio::time::sleep(self.cfg.retry_interval).await;
                }
                Decision::Wait(why) | Decision::Refuse(why) => {
                    tracing::warn!("allocate {ids:?} refused: {why}");
                    let t = refusal_targets(&self.cfg.node_name, &cands, served, ids.len());
                    self.record_refusal(&cands, &t, ids.len(), &why).await;
                    return Err(Status::failed_precondition(format!(
                        "hami device plugin refuses to guess: {why}"
                    )));
                }
            }
        }
    }

    async fn commit(
        &self,
        served: &mut BTreeSet<(String, usize)>,
        cands: &[Candidate],
        a: crate::allocate::Assignment,
    ) -> Result<api::ContainerAllocateResponse, Status> {
        let Some(pod) = cands.get(a.pod) else {
            return Err(Status::internal(format!(
                "allocation names candidate {} of {}",
                a.pod,
                cands.len()
            )));
        };
        let info = pod.containers.get(a.container).cloned().unwrap_or_default();
        if info.name.is_empty() {
            let why = format!(
                "pod {} has no container {} for its device segment",
                pod.key(),
                a.container
            );
            self.fail_pod(pod, &why).await;
            return Err(Status::failed_precondition(why));
        }
        let reservations = match mig::container_reservations(pod, a.container, &a.devices) {
            Ok(r) => r,
            Err(why) => {
                self.fail_pod(pod, &why).await;
                return Err(Status::failed_precondition(why));
            }
        };
        let mig_uuids = match &reservations {
            None => None,
            Some(mine) => {
                match mig::active_reservations(cands) {
                    Ok(active) => {
                        let gone = self.mig.reconcile(&active);
                        if !gone.is_empty() {
                            tracing::info!(?gone, "destroyed MIG instances no pod reserves");
                        }
                    }
                    Err(e) => tracing::warn!("MIG reconcile skipped (nothing destroyed): {e}"),
                }
                match mig::realise(&*self.mig, pod, mine) {
                    Ok(u) => Some(u),
                    Err(why) => {
                        self.fail_pod(pod, &why).await;
                        return Err(Status::failed_precondition(why));
                    }
                }
            }
        };
        if self.cfg.create_container_dirs && mig_uuids.is_none() {
            let dir = response::container_dir(&self.cfg.response, &pod.uid, &info.name);
            if let Err(e) = create_shared_dir(Path::new(&dir)).await {
                let why = format!("create {dir}: {e}");
                self.fail_pod(pod, &why).await;
                return Err(Status::internal(why));
            }
        }
        let mut remaining = pod.to_allocate.clone().unwrap_or_default();
        if let Some(seg) = remaining.get_mut(a.container) {
            seg.clear();
        }
        let value = encode_pod_devices(&remaining);
        let done = fully_consumed(&value, FamilyId::NVIDIA.spec().keyword);
        let mut patch = AnnotationPatch::new();
        patch.insert(to_allocate_key().to_string(), Some(value));
        if mig_uuids.is_some()
            && let Some(v) = mig::completed_annotation(&*self.mig, pod)
        {
            patch.insert(keys::MIG_ALLOCATIONS.to_string(), Some(v));
        }
        if done {
            patch.insert(
                keys::BIND_PHASE.to_string(),
                Some(BindPhase::Success.as_str().to_string()),
            );
        }
        self.source
            .patch_pod_annotations(&pod.namespace, &pod.name, patch)
            .await
            .map_err(|e| Status::unavailable(format!("record allocation: {e}")))?;
        served.insert((pod.uid.clone(), a.container));
        if done {
            self.release_lock_if_held(pod).await;
        }
        if let Some(uuids) = mig_uuids {
            return Ok(response::mig_container_response(&uuids));
        }
        Ok(response::container_response(
            &self.cfg.response,
            &pod.uid,
            a.container,
            &info,
            &a.devices,
        ))
    }

    /// A refused Allocate of `size` cards: the pods it identifies get `bind-phase: failed`
    /// (HAMi's value; kubelet fails their admission), HAMi's node lock released when it names
    /// one of them, and an Event; pods it only concerns (an ambiguity) get an Event and keep their
    /// bind phase. Best effort: a failed write is logged, the refusal stands either way.
    async fn record_refusal(
        &self,
        cands: &[Candidate],
        t: &RefusalTargets,
        size: usize,
        why: &str,
    ) {
        for c in t.failed.iter().filter_map(|&i| cands.get(i)) {
            self.fail_pod(c, why).await;
        }
        let node = &self.cfg.node_name;
        for c in t.informed.iter().filter_map(|&i| cands.get(i)) {
            let msg = format!(
                "kubelet's Allocate of {size} card(s) on node {node} was refused because it could                  be for this pod or another; this pod's bind phase is unchanged: {why}"
            );
            if let Err(e) = self
                .source
                .pod_event(&c.namespace, &c.name, "Warning", REASON_AMBIGUOUS, &msg)
                .await
            {
                tracing::warn!("event on pod {}: {e}", c.key());
            }
        }
    }

    /// Mark `pod` `bind-phase: failed`, release HAMi's node lock if it names the pod, and record
    /// a Warning Event naming `why`.
    async fn fail_pod(&self, pod: &Candidate, why: &str) {
        let mut patch = AnnotationPatch::new();
        patch.insert(
            keys::BIND_PHASE.to_string(),
            Some(BindPhase::Failed.as_str().to_string()),
        );
        if let Err(e) = self
            .source
            .patch_pod_annotations(&pod.namespace, &pod.name, patch)
            .await
        {
            tracing::warn!("mark pod {} bind-phase failed: {e}", pod.key());
        }
        self.release_lock_if_held(pod).await;
        let msg = format!(
            "device plugin on node {} refused Allocate: {why}",
            self.cfg.node_name
        );
        if let Err(e) = self
            .source
            .pod_event(&pod.namespace, &pod.name, "Warning", REASON_FAILED, &msg)
            .await
        {
            tracing::warn!("event on pod {}: {e}", pod.key());
        }
    }

    /// Release HAMi's node lock when it names `pod` (HAMi's scheduler waits on it).
    async fn release_lock_if_held(&self, pod: &Candidate) {
        let node = &self.cfg.node_name;
        let ann = match self.source.node_annotations(node).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("read node lock: {e}");
                return;
            }
        };
        let Some(v) = ann.get(keys::NODE_LOCK) else {
            return;
        };
        let held = NodeLock::decode(keys::NODE_LOCK, v)
            .ok()
            .and_then(|l| l.owner)
            .is_some_and(|o| o.namespace == pod.namespace && o.name == pod.name);
        if held {
            let mut patch = AnnotationPatch::new();
            patch.insert(keys::NODE_LOCK.to_string(), None);
            if let Err(e) = self.source.patch_node_annotations(node, patch).await {
                tracing::warn!("release node lock: {e}");
            }
        }
    }
}

async fn create_shared_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(dir).await?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).await
}

type ListStream = Pin<Box<dyn Stream<Item = Result<api::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<P: PodSource> DevicePlugin for Service<P> {
    async fn get_device_plugin_options(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(api::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let split = self.cfg.split_count;
        let lists = tokio_stream::wrappers::WatchStream::new(self.cards.clone()).map(Some);
        let stop = tokio_stream::wrappers::WatchStream::new(self.stop.clone())
            .filter(|stopped| *stopped)
            .map(|_| None);
        let stream = lists
            .merge(stop)
            .take_while(Option::is_some)
            .filter_map(|c| c)
            .map(move |c| {
                Ok(api::ListAndWatchResponse {
                    devices: device_list(&c, split),
                })
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let served = self.served.lock().await;
        let cands = self.candidates().await.unwrap_or_default();
        let cards = self.card_set();
        let container_responses = req
            .into_inner()
            .container_requests
            .iter()
            .map(|r| api::ContainerPreferredAllocationResponse {
                device_i_ds: preferred(
                    &self.cfg.node_name,
                    &cards,
                    &cands,
                    &served,
                    &r.available_device_i_ds,
                    &r.must_include_device_i_ds,
                    usize::try_from(r.allocation_size).unwrap_or(0),
                ),
            })
            .collect();
        Ok(Response::new(api::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let mut served = self.served.lock().await;
        let mut container_responses = Vec::new();
        for r in &req.get_ref().container_requests {
            container_responses.push(self.allocate_one(&mut served, &r.devices_ids).await?);
        }
        Ok(Response::new(api::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}

/// A gRPC channel over the unix socket at `path` (the authority in the URI is ignored).
pub async fn connect_unix(
    path: &Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

/// Register with kubelet on `kubelet.sock`.
pub async fn register(cfg: &PluginConfig) -> Result<(), String> {
    let ch = connect_unix(&cfg.kubelet_socket())
        .await
        .map_err(|e| format!("connect {}: {e}", cfg.kubelet_socket().display()))?;
    RegistrationClient::new(ch)
        .register(api::RegisterRequest {
            version: API_VERSION.into(),
            endpoint: cfg.socket_name.clone(),
            resource_name: cfg.resource_name.clone(),
            options: Some(api::DevicePluginOptions {
                pre_start_required: false,
                get_preferred_allocation_available: true,
            }),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("register with kubelet: {e}"))
}

/// Identity of a file: (inode, change time); a recreated socket changes it.
fn file_identity(path: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

fn remove_socket(path: &Path) -> Result<(), PluginError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PluginError::Socket {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// Run the plugin until `shutdown` resolves: serve on our socket, register with kubelet, and
/// start over (new socket, new registration) whenever kubelet's socket is recreated or ours
/// disappears. On shutdown the server stops and our socket is removed.
pub async fn run<P: PodSource>(
    service: Service<P>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), PluginError> {
    let cfg = service.cfg.clone();
    let sock = cfg.socket_path();
    tokio::pin!(shutdown);
    loop {
        remove_socket(&sock)?;
        let listener = UnixListener::bind(&sock).map_err(|e| PluginError::Socket {
            path: sock.display().to_string(),
            source: e,
        })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (gen_tx, gen_rx) = watch::channel(false);
        let mut generation = service.clone();
        generation.stop = gen_rx;
        let svc = DevicePluginServer::new(generation);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async {
                        let _ = stop_rx.await;
                    },
                ),
        );
        let mut registered_with: Option<(u64, i64, i64)> = None;
        let mut tick = tokio::time::interval(cfg.kubelet_poll);
        let restart = loop {
            tokio::select! {
                () = &mut shutdown => break false,
                _ = tick.tick() => {}
            }
            let kubelet = file_identity(&cfg.kubelet_socket());
            if registered_with.is_some() && kubelet != registered_with {
                tracing::info!("kubelet socket recreated: restarting the plugin server");
                break true;
            }
            if file_identity(&sock).is_none() {
                tracing::info!("our socket was removed: restarting the plugin server");
                break true;
            }
            if registered_with.is_none() && kubelet.is_some() {
                match register(&cfg).await {
                    Ok(()) => {
                        tracing::info!("registered {} with kubelet", cfg.resource_name);
                        registered_with = kubelet;
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        };
        let _ = gen_tx.send(true);
        let _ = stop_tx.send(());
        // Connections kubelet keeps open must not hold a restart or shutdown hostage.
        let mut server = server;
        match tokio::time::timeout(Duration::from_secs(2), &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(PluginError::Serve(e.to_string())),
            Ok(Err(e)) => return Err(PluginError::Serve(e.to_string())),
            Err(_) => server.abort(),
        }
        if !restart {
            remove_socket(&sock)?;
            return Ok(());
        }
    }
}

/// Health changes: a handle that replaces the advertised card list (ListAndWatch re-sends it).
#[derive(Debug, Clone)]
pub struct CardsHandle {
    tx: Arc<watch::Sender<Vec<Card>>>,
}

impl CardsHandle {
    /// A handle and the receiver to give [`Service::new`].
    pub fn new(cards: Vec<Card>) -> (CardsHandle, watch::Receiver<Vec<Card>>) {
        let (tx, rx) = watch::channel(cards);
        (CardsHandle { tx: Arc::new(tx) }, rx)
    }

    /// Mark one card healthy or not; `false` when no card has that UUID.
    pub fn set_health(&self, uuid: &str, healthy: bool) -> bool {
        let mut found = false;
        self.tx.send_if_modified(|cards| {
            let mut changed = false;
            for c in cards.iter_mut().filter(|c| c.uuid == uuid) {
                found = true;
                changed |= c.healthy != healthy;
                c.healthy = healthy;
            }
            changed
        });
        found
    }

    /// The current list.
    pub fn cards(&self) -> Vec<Card> {
        self.tx.borrow().clone()
    }
}

/// Settings of the `hami device-plugin` process.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    /// Plugin configuration (node, paths, timings).
    pub config: PluginConfig,
    /// Where the cards come from (same options as the node agent; its node name must be set).
    pub cards: crate::agent::AgentOptions,
}

/// The cards this node advertises, after the per-node filter and split count.
pub fn cards_for(o: &crate::agent::AgentOptions, node: &str) -> Result<(Vec<Card>, u32), String> {
    let (global, file) = crate::agent::load_settings(o)?;
    let s = crate::agent::config::settings_for(node, &global, &file);
    let inv = crate::agent::load_nodes(o)?
        .into_iter()
        .find(|i| i.name == node)
        .ok_or_else(|| format!("no cards found for node {node}"))?;
    let model = crate::agent::build_node(&inv, &s);
    let cards = model
        .devices
        .iter()
        .map(|d| Card {
            uuid: d.uuid.clone(),
            numa: Some(i64::from(d.numa)),
            healthy: d.healthy,
        })
        .collect();
    // In MIG mode a card's replicas are its most instances (as registered), not the split count.
    let split = if s.mode == "mig" {
        model
            .devices
            .iter()
            .map(|d| d.split_count)
            .max()
            .unwrap_or(s.split_count)
    } else {
        s.split_count
    };
    Ok((cards, split))
}

/// Run the plugin against the API server until SIGTERM or Ctrl-C; the socket is removed on exit.
pub fn main_blocking(mut o: PluginOptions) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let node = o.config.node_name.clone();
        o.cards.node_name = Some(node.clone());
        let (cards, split) = cards_for(&o.cards, &node)?;
        o.config.split_count = split;
        let source = crate::allocate::source::KubeSource::from_env()
            .await
            .map_err(|e| e.to_string())?;
        let (_handle, rx) = CardsHandle::new(cards);
        // Fake cards get fake MIG instances; real cards have no MIG backend yet (see `mig`).
        let backend: Arc<dyn mig::MigBackend> = if o.cards.inventory.is_some() {
            Arc::new(mig::FakeMigBackend::new())
        } else {
            Arc::new(mig::NoMigBackend)
        };
        let svc = Service::new(o.config, Arc::new(source), rx).with_mig(backend);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("SIGTERM handler: {e}"))?;
        run(svc, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
        .map_err(|e| e.to_string())
    })
}
