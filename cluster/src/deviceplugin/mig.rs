//! The device plugin's MIG path: realise the exact MIG instances the scheduler reserved in
//! `hami.io/vgpu-mig-allocations` and record their runtime identity in the same annotation, as
//! HAMi's plugin does (v2.10 dynamic MIG: `EnsureAllocation`, `annotateMigRuntimeInfo`).
//!
//! * A container whose grant has MIG reservations is served in MIG mode: each reserved
//!   (card, profile, placement) is created exactly — never another placement — and the
//!   container sees the MIG devices (`NVIDIA_VISIBLE_DEVICES=MIG-…`), without HAMi-core's
//!   environment and mounts (HAMi gives MIG containers none). Reservations must match the
//!   container's cards one to one, in device order; anything else is refused with a reason that
//!   names the pod and the annotation key, never a panic.
//! * The identity (`migUUID`, `gpuInstanceID`, `computeInstanceID` — all three) is written for
//!   every reservation of the pod whose instance is live, in the same annotation patch that
//!   consumes the container's device segment: one API write, and nothing is handed out that is
//!   not recorded.
//! * Before creating, instances no live pod on the node reserves any more are destroyed (HAMi's
//!   `reconcileActiveMigAllocations`); if any pod's reservations are unreadable nothing is
//!   destroyed (fail closed).
//!
//! Instances come from a [`MigBackend`]: [`FakeMigBackend`] (fake cards, deterministic
//! identities from `hami_fake_devices::mig`) or [`NoMigBackend`], which refuses. nvml-wrapper
//! 0.13 has no safe API for creating GPU or compute instances (only profile info and possible
//! placements); its raw bindings do, but that path needs a MIG-capable card to verify and is not
//! wired: on real cards this plugin refuses MIG reservations with a clear reason.

use crate::allocate::Candidate;
use hami_core::codec::devices::ContainerDevices;
use hami_core::codec::{MigAllocation, encode_mig_allocations, keys};
use hami_fake_devices::mig::{FakeMig, MigIdentity};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// One reserved instance: card UUID, profile, first slice, slices.
pub type Reservation = (String, String, u32, u32);

/// Creates, finds and destroys MIG instances on this node's cards.
pub trait MigBackend: Send + Sync + 'static {
    /// Create the instance of `profile` at exactly `start`/`size` on card `gpu_uuid`, or return
    /// the live one with that profile and placement; the flag says whether this call created it.
    fn ensure(
        &self,
        gpu_uuid: &str,
        profile: &str,
        start: u32,
        size: u32,
    ) -> Result<(MigIdentity, bool), String>;
    /// The live instance with this card, profile and placement, if any.
    fn lookup(&self, gpu_uuid: &str, profile: &str, start: u32, size: u32) -> Option<MigIdentity>;
    /// Destroy the instance with this MIG UUID (used to roll back a partial Allocate).
    fn release(&self, mig_uuid: &str);
    /// Destroy every live instance that is not in `active`; returns the MIG UUIDs destroyed.
    fn reconcile(&self, active: &BTreeSet<Reservation>) -> Vec<String>;
}

/// Fake cards: [`hami_fake_devices::mig::FakeMig`] behind a lock.
#[derive(Debug, Default)]
pub struct FakeMigBackend {
    inner: Mutex<FakeMig>,
}

impl FakeMigBackend {
    /// No instances yet.
    pub fn new() -> FakeMigBackend {
        FakeMigBackend::default()
    }

    /// The live instances of a card (for tests and diagnostics).
    pub fn instances(&self, gpu_uuid: &str) -> Vec<hami_fake_devices::mig::MigInstance> {
        self.inner
            .lock()
            .map(|m| m.instances(gpu_uuid).to_vec())
            .unwrap_or_default()
    }
}

impl MigBackend for FakeMigBackend {
    fn ensure(
        &self,
        gpu_uuid: &str,
        profile: &str,
        start: u32,
        size: u32,
    ) -> Result<(MigIdentity, bool), String> {
        self.inner
            .lock()
            .map_err(|_| "fake MIG state poisoned".to_string())?
            .ensure(gpu_uuid, profile, start, size)
    }

    fn lookup(&self, gpu_uuid: &str, profile: &str, start: u32, size: u32) -> Option<MigIdentity> {
        let m = self.inner.lock().ok()?;
        m.instances(gpu_uuid)
            .iter()
            .find(|i| i.profile == profile && i.start == start && i.size == size)
            .map(|i| i.identity.clone())
    }

    fn release(&self, mig_uuid: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.release(mig_uuid);
        }
    }

    fn reconcile(&self, active: &BTreeSet<Reservation>) -> Vec<String> {
        let Ok(mut m) = self.inner.lock() else {
            return Vec::new();
        };
        let stale: Vec<String> = m
            .cards()
            .flat_map(|(gpu, live)| {
                live.iter()
                    .filter(|i| {
                        !active.contains(&(gpu.to_string(), i.profile.clone(), i.start, i.size))
                    })
                    .map(|i| i.identity.mig_uuid.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        for u in &stale {
            m.release(u);
        }
        stale
    }
}

/// No MIG support: every MIG reservation is refused with the reason.
#[derive(Debug, Clone, Default)]
pub struct NoMigBackend;

/// Why [`NoMigBackend`] refuses.
pub const NO_MIG: &str = "this device plugin cannot create MIG instances on real cards (NVML GPU/compute instance creation is not wired; see cluster/src/deviceplugin/mig.rs)";

impl MigBackend for NoMigBackend {
    fn ensure(&self, _: &str, _: &str, _: u32, _: u32) -> Result<(MigIdentity, bool), String> {
        Err(NO_MIG.to_string())
    }
    fn lookup(&self, _: &str, _: &str, _: u32, _: u32) -> Option<MigIdentity> {
        None
    }
    fn release(&self, _: &str) {}
    fn reconcile(&self, _: &BTreeSet<Reservation>) -> Vec<String> {
        Vec::new()
    }
}

/// The reservations of container `container` of `pod`, in device order, checked against the
/// container's granted `devices`: `Ok(None)` when the container has none (not a MIG
/// container), `Err` (naming pod, key and container) when the annotation is unreadable or the
/// reservations do not match the cards one to one. Pure.
pub fn container_reservations(
    pod: &Candidate,
    container: usize,
    devices: &ContainerDevices,
) -> Result<Option<Vec<MigAllocation>>, String> {
    let all = pod.mig_allocations.as_ref().map_err(Clone::clone)?;
    let mut mine: Vec<MigAllocation> = all
        .iter()
        .filter(|a| usize::try_from(a.container_index).ok() == Some(container))
        .cloned()
        .collect();
    if mine.is_empty() {
        return Ok(None);
    }
    mine.sort_by_key(|a| a.device_index);
    let key = keys::MIG_ALLOCATIONS;
    let who = pod.key();
    if mine.len() != devices.len() {
        return Err(format!(
            "pod {who}: annotation {key}: container {container} has {} MIG reservation(s) for {} card(s)",
            mine.len(),
            devices.len()
        ));
    }
    for (i, (a, d)) in mine.iter().zip(devices).enumerate() {
        if usize::try_from(a.device_index).ok() != Some(i) || a.gpu_uuid != d.uuid {
            return Err(format!(
                "pod {who}: annotation {key}: container {container} device {i} is card {}, but its MIG reservation is device {} on card {}",
                d.uuid, a.device_index, a.gpu_uuid
            ));
        }
    }
    Ok(Some(mine))
}

/// Every reservation of the pods on the node that are not finished or being deleted (what
/// [`MigBackend::reconcile`] keeps), or the first unreadable annotation's error.
pub fn active_reservations(pods: &[Candidate]) -> Result<BTreeSet<Reservation>, String> {
    let mut out = BTreeSet::new();
    for p in pods.iter().filter(|p| !p.finished && !p.deleting) {
        for a in p.mig_allocations.as_ref().map_err(Clone::clone)? {
            out.insert((
                a.gpu_uuid.clone(),
                a.profile.clone(),
                a.placement.start,
                a.placement.size,
            ));
        }
    }
    Ok(out)
}

/// Create the instances of `mine` (one container's reservations) on `backend`. On a failure
/// the instances this call created are destroyed again and the error names the pod, the key
/// and the reservation. Returns the MIG UUIDs in device order.
pub fn realise(
    backend: &dyn MigBackend,
    pod: &Candidate,
    mine: &[MigAllocation],
) -> Result<Vec<String>, String> {
    let mut created = Vec::new();
    let mut out = Vec::with_capacity(mine.len());
    for a in mine {
        match backend.ensure(&a.gpu_uuid, &a.profile, a.placement.start, a.placement.size) {
            Ok((id, fresh)) => {
                if fresh {
                    created.push(id.mig_uuid.clone());
                }
                out.push(id.mig_uuid);
            }
            Err(e) => {
                for u in created.iter().rev() {
                    backend.release(u);
                }
                return Err(format!(
                    "pod {}: annotation {}: container {} device {}: create {} at slice {} (+{}) on card {}: {e}",
                    pod.key(),
                    keys::MIG_ALLOCATIONS,
                    a.container_index,
                    a.device_index,
                    a.profile,
                    a.placement.start,
                    a.placement.size,
                    a.gpu_uuid
                ));
            }
        }
    }
    Ok(out)
}

/// The pod's MIG allocations with the runtime identity of every live instance filled in (the
/// others keep what they had), encoded for the annotation; `None` when the pod has none.
pub fn completed_annotation(backend: &dyn MigBackend, pod: &Candidate) -> Option<String> {
    let mut all = pod.mig_allocations.clone().ok()?;
    if all.is_empty() {
        return None;
    }
    for a in &mut all {
        if let Some(id) =
            backend.lookup(&a.gpu_uuid, &a.profile, a.placement.start, a.placement.size)
        {
            a.mig_uuid = id.mig_uuid;
            a.gpu_instance_id = Some(id.gpu_instance_id);
            a.compute_instance_id = Some(id.compute_instance_id);
        }
    }
    Some(encode_mig_allocations(&all))
}
