//! MIG allocations `hami.io/vgpu-mig-allocations`: the scheduler's exact MIG placements, later
//! completed by the device plugin. Source: HAMi `pkg/device/nvidia/mig_allocations.go`
//! (`MigAllocation`; `migUUID`, `gpuInstanceID`, `computeInstanceID` are `omitempty`).

use super::CodecError;
use super::json::{self, Ctx};
use super::register::{MigPlacement, decode_placement};

/// One MIG device reserved for one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigAllocation {
    /// Container index, init containers first.
    pub container_index: i64,
    /// Device index within the container's device list.
    pub device_index: i64,
    /// Physical GPU UUID.
    pub gpu_uuid: String,
    /// MIG profile name.
    pub profile: String,
    /// Placement on the GPU.
    pub placement: MigPlacement,
    /// MIG device UUID, filled in by the device plugin (empty before).
    pub mig_uuid: String,
    /// GPU instance id, filled in by the device plugin.
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id, filled in by the device plugin.
    pub compute_instance_id: Option<u32>,
}

impl MigAllocation {
    /// The runtime identity the device plugin filled in — `(migUUID, gpuInstanceID,
    /// computeInstanceID)` — or `None` while the instance is only reserved. HAMi calls an
    /// allocation with all three "runtime ready"; [`check_mig_allocations`] refuses partial ones.
    pub fn runtime_identity(&self) -> Option<(&str, u32, u32)> {
        match (self.gpu_instance_id, self.compute_instance_id) {
            (Some(gi), Some(ci)) if !self.mig_uuid.is_empty() => Some((&self.mig_uuid, gi, ci)),
            _ => None,
        }
    }
}

/// HAMi's consistency rules for a decoded MIG allocations value (its `DecodeMigAllocations`):
/// container and device index not negative, GPU UUID and profile not empty, placement size not
/// zero, the runtime identity all three fields or none, and at most one allocation per
/// (container, device). The error names `key` and the allocation's position.
pub fn check_mig_allocations(key: &str, allocs: &[MigAllocation]) -> Result<(), CodecError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in allocs.iter().enumerate() {
        let err = |raw: String, expected: &str| {
            Err(CodecError::new(
                key,
                format!("allocation {i}"),
                &raw,
                expected,
            ))
        };
        if a.container_index < 0 || a.device_index < 0 {
            return err(
                format!(
                    "containerIndex {}, deviceIndex {}",
                    a.container_index, a.device_index
                ),
                "indexes that are not negative",
            );
        }
        if a.gpu_uuid.is_empty() || a.profile.is_empty() || a.placement.size == 0 {
            return err(
                format!(
                    "gpuUUID {:?}, profile {:?}, placement size {}",
                    a.gpu_uuid, a.profile, a.placement.size
                ),
                "a complete reservation: gpuUUID, profile and a placement of at least one slice",
            );
        }
        let present = [
            !a.mig_uuid.is_empty(),
            a.gpu_instance_id.is_some(),
            a.compute_instance_id.is_some(),
        ];
        if present.iter().any(|p| *p) && !present.iter().all(|p| *p) {
            return err(
                format!(
                    "migUUID {:?}, gpuInstanceID {:?}, computeInstanceID {:?}",
                    a.mig_uuid, a.gpu_instance_id, a.compute_instance_id
                ),
                "migUUID, gpuInstanceID and computeInstanceID all set or all absent",
            );
        }
        if !seen.insert((a.container_index, a.device_index)) {
            return err(
                format!(
                    "containerIndex {}, deviceIndex {}",
                    a.container_index, a.device_index
                ),
                "one allocation per container and device",
            );
        }
    }
    Ok(())
}

/// [`decode_mig_allocations`] followed by [`check_mig_allocations`]: what a consumer that acts
/// on the value (device plugin, ledger rebuild, metrics) reads. An empty value is no allocation.
pub fn decode_checked_mig_allocations(
    key: &str,
    value: &str,
) -> Result<Vec<MigAllocation>, CodecError> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let allocs = decode_mig_allocations(key, value)?;
    check_mig_allocations(key, &allocs)?;
    Ok(allocs)
}

/// Encode as Go's `json.Marshal` of `[]MigAllocation` (an empty list is `[]`).
pub fn encode_mig_allocations(allocs: &[MigAllocation]) -> String {
    let mut out = String::from("[");
    for (i, a) in allocs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"containerIndex\":{},\"deviceIndex\":{},\"gpuUUID\":",
            a.container_index, a.device_index
        ));
        json::write_string(&mut out, &a.gpu_uuid);
        out.push_str(",\"profile\":");
        json::write_string(&mut out, &a.profile);
        out.push_str(&format!(
            ",\"placement\":{{\"start\":{},\"size\":{}}}",
            a.placement.start, a.placement.size
        ));
        if !a.mig_uuid.is_empty() {
            out.push_str(",\"migUUID\":");
            json::write_string(&mut out, &a.mig_uuid);
        }
        if let Some(g) = a.gpu_instance_id {
            out.push_str(&format!(",\"gpuInstanceID\":{g}"));
        }
        if let Some(c) = a.compute_instance_id {
            out.push_str(&format!(",\"computeInstanceID\":{c}"));
        }
        out.push('}');
    }
    out.push(']');
    out
}

const FIELDS: &[&str] = &[
    "containerindex",
    "deviceindex",
    "gpuuuid",
    "profile",
    "placement",
    "miguuid",
    "gpuinstanceid",
    "computeinstanceid",
];

/// Decode the MIG allocations annotation (missing fields default, unknown ignored).
pub fn decode_mig_allocations(key: &str, value: &str) -> Result<Vec<MigAllocation>, CodecError> {
    let root = json::parse(key, value)?;
    let top = Ctx {
        key,
        segment: "top level".to_string(),
    };
    let mut out = Vec::new();
    for (i, item) in top.array("", &root)?.unwrap_or_default().iter().enumerate() {
        let ctx = Ctx {
            key,
            segment: format!("allocation {i}"),
        };
        let mut a = MigAllocation::default();
        if let Some(obj) = ctx.object("", item)? {
            for (k, v) in obj {
                match json::field_name(k, FIELDS) {
                    Some("containerindex") => {
                        a.container_index = ctx.i64_in("containerIndex", v, i64::MIN, i64::MAX)?
                    }
                    Some("deviceindex") => {
                        a.device_index = ctx.i64_in("deviceIndex", v, i64::MIN, i64::MAX)?
                    }
                    Some("gpuuuid") => a.gpu_uuid = ctx.string("gpuUUID", v)?,
                    Some("profile") => a.profile = ctx.string("profile", v)?,
                    Some("placement") => a.placement = decode_placement(&ctx, v)?,
                    Some("miguuid") => a.mig_uuid = ctx.string("migUUID", v)?,
                    Some("gpuinstanceid") => {
                        a.gpu_instance_id = (!v.is_null())
                            .then(|| ctx.u32("gpuInstanceID", v))
                            .transpose()?
                    }
                    Some("computeinstanceid") => {
                        a.compute_instance_id = (!v.is_null())
                            .then(|| ctx.u32("computeInstanceID", v))
                            .transpose()?
                    }
                    _ => {}
                }
            }
        }
        out.push(a);
    }
    Ok(out)
}
