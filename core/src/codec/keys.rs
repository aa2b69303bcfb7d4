//! Annotation keys and label keys shared by every vendor family, in one place.
//!
//! Per-family keys (register, to-allocate, allocated, handshake, use/nouse) live in
//! [`crate::family::FAMILIES`]. Sources: HAMi `pkg/util/types.go`,
//! `pkg/util/nodelock/nodelock.go`, `pkg/device/nvidia/device.go`,
//! `pkg/device/nvidia/mig_allocations.go`.

/// Pod annotation (and label): the node the scheduler picked in Filter.
pub const VGPU_NODE: &str = "hami.io/vgpu-node";
/// Pod annotation: Unix seconds when Filter assigned the node.
pub const VGPU_TIME: &str = "hami.io/vgpu-time";
/// Pod annotation: [`super::BindPhase`] text.
pub const BIND_PHASE: &str = "hami.io/bind-phase";
/// Pod annotation: Unix seconds when Bind started.
pub const BIND_TIME: &str = "hami.io/bind-time";
/// Node annotation: the node lock, [`super::NodeLock`] text; shared by all vendors.
pub const NODE_LOCK: &str = "hami.io/mutex.lock";
/// Node annotation: comma list of device UUIDs/indexes the operator cordoned.
pub const DEVICE_CORDON: &str = "hami.io/device-cordon";
/// Pod annotation: node policy override (`binpack`, `spread`).
pub const NODE_SCHEDULER_POLICY: &str = "hami.io/node-scheduler-policy";
/// Pod annotation: device policy override (`binpack`, `spread`, `topology-aware`, ...).
pub const GPU_SCHEDULER_POLICY: &str = "hami.io/gpu-scheduler-policy";
/// Pod annotation: per-pod slot/core/memory scoring weights.
pub const DEVICE_SCORING_WEIGHTS: &str = "hami.io/device-scoring-weights";
/// Pod annotation: `"true"` asks that all of a container's GPUs share a NUMA node.
pub const NUMA_BIND: &str = "nvidia.com/numa-bind";
/// Pod annotation: required NVIDIA sharing mode (`hami-core`, `mig`, `mps`).
pub const VGPU_MODE: &str = "nvidia.com/vgpu-mode";
/// Pod annotation: MIG allocations JSON, [`super::MigAllocation`].
pub const MIG_ALLOCATIONS: &str = "hami.io/vgpu-mig-allocations";
/// Node annotation: NVIDIA topology pair scores JSON, [`super::DevicePairScore`].
pub const NODE_NVIDIA_SCORE: &str = "hami.io/node-nvidia-score";
/// Ascend pod annotation: `hami-core` asks for soft slicing.
pub const ASCEND_VNPU_MODE: &str = "huawei.com/vnpu-mode";
/// Label HAMi's own pods carry so the webhook skips them (value `ignore`).
pub const WEBHOOK_IGNORE_LABEL: &str = "hami.io/webhook";
/// Label that makes a pod a PodGroup member (longer node-lock retry).
pub const POD_GROUP_LABEL: &str = "scheduling.x-k8s.io/pod-group";

/// Every shared key above, for tools that list what they know.
pub const SHARED_KEYS: &[&str] = &[
    VGPU_NODE,
    VGPU_TIME,
    BIND_PHASE,
    BIND_TIME,
    NODE_LOCK,
    DEVICE_CORDON,
    NODE_SCHEDULER_POLICY,
    GPU_SCHEDULER_POLICY,
    DEVICE_SCORING_WEIGHTS,
    NUMA_BIND,
    VGPU_MODE,
    MIG_ALLOCATIONS,
    NODE_NVIDIA_SCORE,
    ASCEND_VNPU_MODE,
];
