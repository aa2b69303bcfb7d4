//! Builders for the pods the allocation tests need: a pod bound to a node with HAMi's scheduler
//! annotations, in a few lines.

use hami_core::codec::devices::{ContainerDevice, encode_pod_devices};
use hami_core::codec::keys;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::BTreeMap;

/// The NVIDIA to-allocate annotation key.
pub const TO_ALLOCATE: &str = "hami.io/vgpu-devices-to-allocate";
/// The NVIDIA allocated annotation key.
pub const ALLOCATED: &str = "hami.io/vgpu-devices-allocated";

/// One device grant: (card UUID, MiB, cores percent).
pub type Grant<'a> = (&'a str, i32, i32);

/// A pod builder. Containers are app containers unless added with [`PodBuilder::init`].
#[derive(Debug, Clone)]
pub struct PodBuilder {
    name: String,
    namespace: String,
    node: String,
    init: Vec<(String, Vec<ContainerDevice>, bool)>,
    app: Vec<(String, Vec<ContainerDevice>, bool)>,
    bind_phase: Option<String>,
    bind_time: i64,
    phase: String,
    deleting: bool,
    vgpu_node: Option<String>,
    extra: BTreeMap<String, String>,
}

fn devices(grants: &[Grant<'_>]) -> Vec<ContainerDevice> {
    grants
        .iter()
        .map(|(u, m, c)| ContainerDevice {
            uuid: (*u).to_string(),
            type_keyword: "NVIDIA".into(),
            usedmem: *m,
            usedcores: *c,
        })
        .collect()
}

impl PodBuilder {
    /// A pod `default/<name>` bound to `node`, bind phase `allocating`, phase `Pending`.
    pub fn new(name: &str, node: &str) -> PodBuilder {
        PodBuilder {
            name: name.into(),
            namespace: "default".into(),
            node: node.into(),
            init: Vec::new(),
            app: Vec::new(),
            bind_phase: Some("allocating".into()),
            bind_time: 1_700_000_000,
            phase: "Pending".into(),
            deleting: false,
            vgpu_node: Some(node.into()),
            extra: BTreeMap::new(),
        }
    }

    /// Add an app container with these grants (empty: a container without GPUs).
    pub fn container(mut self, name: &str, grants: &[Grant<'_>]) -> PodBuilder {
        self.app.push((name.into(), devices(grants), false));
        self
    }

    /// Add an app container that sets `CUDA_DISABLE_CONTROL=true`.
    pub fn uncontrolled(mut self, name: &str, grants: &[Grant<'_>]) -> PodBuilder {
        self.app.push((name.into(), devices(grants), true));
        self
    }

    /// Add an init container with these grants.
    pub fn init(mut self, name: &str, grants: &[Grant<'_>]) -> PodBuilder {
        self.init.push((name.into(), devices(grants), false));
        self
    }

    /// Set `hami.io/bind-phase` (`None` removes it).
    pub fn bind_phase(mut self, p: Option<&str>) -> PodBuilder {
        self.bind_phase = p.map(str::to_string);
        self
    }

    /// Set `hami.io/bind-time`.
    pub fn bind_time(mut self, t: i64) -> PodBuilder {
        self.bind_time = t;
        self
    }

    /// Set `status.phase`.
    pub fn phase(mut self, p: &str) -> PodBuilder {
        self.phase = p.into();
        self
    }

    /// Mark the pod as being deleted.
    pub fn deleting(mut self) -> PodBuilder {
        self.deleting = true;
        self
    }

    /// Set or remove `hami.io/vgpu-node`.
    pub fn vgpu_node(mut self, n: Option<&str>) -> PodBuilder {
        self.vgpu_node = n.map(str::to_string);
        self
    }

    /// Set one more annotation (e.g. `hami.io/vgpu-mig-allocations`).
    pub fn annotation(mut self, key: &str, value: &str) -> PodBuilder {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The pod's UID (derived from its name, stable).
    pub fn uid_of(name: &str) -> String {
        format!("uid-{name}")
    }

    /// Build the API object.
    pub fn build(self) -> Pod {
        let segs: Vec<Vec<ContainerDevice>> = self
            .init
            .iter()
            .chain(self.app.iter())
            .map(|(_, d, _)| d.clone())
            .collect();
        let value = encode_pod_devices(&segs);
        let mut ann = BTreeMap::new();
        if let Some(n) = &self.vgpu_node {
            ann.insert(keys::VGPU_NODE.to_string(), n.clone());
        }
        ann.insert(keys::VGPU_TIME.to_string(), self.bind_time.to_string());
        ann.insert(TO_ALLOCATE.to_string(), value.clone());
        ann.insert(ALLOCATED.to_string(), value);
        if let Some(p) = &self.bind_phase {
            ann.insert(keys::BIND_PHASE.to_string(), p.clone());
        }
        ann.insert(keys::BIND_TIME.to_string(), self.bind_time.to_string());
        ann.extend(self.extra.clone());
        let ctr = |(name, _, uncontrolled): &(String, Vec<ContainerDevice>, bool)| Container {
            name: name.clone(),
            env: uncontrolled.then(|| {
                vec![EnvVar {
                    name: "CUDA_DISABLE_CONTROL".into(),
                    value: Some("true".into()),
                    ..EnvVar::default()
                }]
            }),
            ..Container::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(PodBuilder::uid_of(&self.name)),
                annotations: Some(ann),
                deletion_timestamp: self
                    .deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(self.node.clone()),
                init_containers: (!self.init.is_empty())
                    .then(|| self.init.iter().map(ctr).collect()),
                containers: self.app.iter().map(ctr).collect(),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(self.phase.clone()),
                ..PodStatus::default()
            }),
        }
    }
}
