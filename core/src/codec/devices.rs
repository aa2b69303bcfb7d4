//! Per-container device lists: `UUID,TYPE,MEM,CORES:` per device, `;` per container.
//!
//! Sources: HAMi `pkg/device/devices.go` (`EncodeContainerDevices`, `EncodePodSingleDevice`,
//! `DecodeContainerDevices`, `DecodePodDevices`). The same format is used by every vendor's
//! to-allocate and allocated annotation; containers are ordered init containers first.

use super::{CodecError, parse_i32};

/// One device granted to one container.
///
/// Contract: `usedmem` is MiB (after HAMi's memory factor), `usedcores` percent; widths are Go's
/// `int32`. `type_keyword` is the family keyword (`NVIDIA`, `MLU`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ContainerDevice {
    /// Device UUID.
    pub uuid: String,
    /// Vendor keyword written as the TYPE field.
    pub type_keyword: String,
    /// Memory granted, MiB.
    pub usedmem: i32,
    /// Compute share granted, percent.
    pub usedcores: i32,
}

/// The devices of one container (empty when the container has none of this family).
pub type ContainerDevices = Vec<ContainerDevice>;

/// One entry per container, init containers first, index-aligned with the pod spec.
pub type PodDevices = Vec<ContainerDevices>;

/// Encode one container's devices, each terminated by `:` (HAMi `EncodeContainerDevices`).
pub fn encode_container_devices(devices: &[ContainerDevice]) -> String {
    let mut out = String::new();
    push_container_devices(&mut out, devices);
    out
}

/// [`encode_container_devices`] appended to `out`.
fn push_container_devices(out: &mut String, devices: &[ContainerDevice]) {
    for d in devices {
        push_device(out, &d.uuid, &d.type_keyword, d.usedmem, d.usedcores);
    }
}

/// One device's `UUID,TYPE,MEM,CORES:` appended to `out`, for writers that hold the fields
/// elsewhere than in a [`ContainerDevice`] (a container's list is its devices, then `;`).
pub fn push_device(out: &mut String, uuid: &str, type_keyword: &str, usedmem: i32, usedcores: i32) {
    out.push_str(uuid);
    out.push(',');
    out.push_str(type_keyword);
    out.push(',');
    super::push_decimal(out, i64::from(usedmem));
    out.push(',');
    super::push_decimal(out, i64::from(usedcores));
    out.push(':');
}

/// Encode a pod's device list: each container terminated by `;` (HAMi `EncodePodSingleDevice`).
/// An empty container gives an empty segment, so `[[], []]` encodes as `;;` (the to-allocate
/// value once the device plugin has served every container).
pub fn encode_pod_devices(pod: &[ContainerDevices]) -> String {
    let mut out = String::new();
    for c in pod {
        push_container_devices(&mut out, c);
        out.push(';');
    }
    out
}

/// Decode one container segment (the text between two `;`). `container` is only used to locate
/// errors.
///
/// Empty device segments are skipped; a device needs at least 4 comma fields (extra fields are
/// ignored, as HAMi does); MEM and CORES must be 32-bit integers. Stricter than HAMi on one
/// point: a non-empty device segment without any comma is an error here, where HAMi silently
/// drops it.
pub fn decode_container_devices(
    key: &str,
    container: usize,
    segment: &str,
) -> Result<ContainerDevices, CodecError> {
    let mut out = Vec::new();
    visit_container_devices(key, container, segment, |d| out.push(d.into()))?;
    Ok(out)
}

impl From<DeviceRef<'_>> for ContainerDevice {
    fn from(d: DeviceRef<'_>) -> ContainerDevice {
        ContainerDevice {
            uuid: d.uuid.to_string(),
            type_keyword: d.type_keyword.to_string(),
            usedmem: d.usedmem,
            usedcores: d.usedcores,
        }
    }
}

/// One decoded device, borrowing its text from the annotation value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRef<'a> {
    /// Device UUID.
    pub uuid: &'a str,
    /// Vendor keyword (the TYPE field).
    pub type_keyword: &'a str,
    /// Memory granted, MiB.
    pub usedmem: i32,
    /// Compute share granted, percent.
    pub usedcores: i32,
}

/// [`decode_container_devices`] without building the list: each device goes to `visit`, in
/// order; the first error stops the walk (devices before it have been visited).
///
/// One pass over the bytes: every grant decode (scheduler, checker, device plugin) reads these
/// lists, and a split per separator costs several times the text's length. `:` and `,` are
/// ASCII, so every cut falls on a character boundary.
fn visit_container_devices<'a>(
    key: &str,
    container: usize,
    segment: &'a str,
    mut visit: impl FnMut(DeviceRef<'a>),
) -> Result<(), CodecError> {
    let bytes = segment.as_bytes();
    let mut index = 0;
    let mut start = 0;
    while start <= bytes.len() {
        // The device runs to the next `:` (or the end); its first four commas cut the fields.
        let mut commas = [0usize; 4];
        let mut found = 0;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b':' {
            if bytes[end] == b',' && found < 4 {
                commas[found] = end - start;
                found += 1;
            }
            end += 1;
        }
        let dev = &segment[start..end];
        if !dev.is_empty() {
            device(key, (container, index), dev, &commas[..found], &mut visit)?;
        }
        index += 1;
        start = end + 1;
    }
    Ok(())
}

/// One non-empty device `dev`, the `index`-th of its container's segment; `commas` are the
/// positions in `dev` of its first commas, at most four.
fn device<'a>(
    key: &str,
    (container, index): (usize, usize),
    dev: &'a str,
    commas: &[usize],
    visit: &mut impl FnMut(DeviceRef<'a>),
) -> Result<(), CodecError> {
    let place = || format!("container {container}, device {index}");
    let &[c1, c2, c3, ..] = commas else {
        return Err(CodecError::new(
            key,
            place(),
            dev,
            format!(
                "at least 4 comma-separated fields UUID,TYPE,MEM,CORES, got {}",
                commas.len() + 1
            ),
        ));
    };
    let c4 = commas.get(3).copied().unwrap_or(dev.len());
    let num = |raw: &str, name: &str| {
        parse_i32(raw).ok_or_else(|| {
            CodecError::new(
                key,
                format!("{}, field {name:?}", place()),
                raw,
                "a 32-bit integer",
            )
        })
    };
    visit(DeviceRef {
        uuid: &dev[..c1],
        type_keyword: &dev[c1 + 1..c2],
        usedmem: num(&dev[c2 + 1..c3], "usedmem")?,
        usedcores: num(&dev[c3 + 1..c4], "usedcores")?,
    });
    Ok(())
}

/// Decode a pod device-list annotation into one entry per container.
///
/// `;` terminates a container, so the empty text after the last `;` is not a container (HAMi's
/// Go decoder keeps it as an extra empty entry; dropping it makes `encode(decode(v)) == v` for
/// every value HAMi writes). Empty containers in between are kept to preserve index alignment.
/// A value without a trailing `;` still decodes its last segment.
pub fn decode_pod_devices(key: &str, value: &str) -> Result<PodDevices, CodecError> {
    let mut out: PodDevices = Vec::new();
    let containers = visit_pod_devices(key, value, |i, d| {
        if out.len() <= i {
            out.resize(i + 1, Vec::new());
        }
        out[i].push(d.into());
    })?;
    // Containers without devices still take their place.
    out.resize(containers, Vec::new());
    Ok(out)
}

/// [`decode_pod_devices`] without building the lists: `visit(container, device)` for each
/// device in order, and the number of containers on success (the same errors, at the same
/// first bad device). For readers that keep only some fields, such as a grant decoder; the
/// one place the value is split into containers.
pub fn visit_pod_devices<'a>(
    key: &str,
    value: &'a str,
    mut visit: impl FnMut(usize, DeviceRef<'a>),
) -> Result<usize, CodecError> {
    if value.is_empty() {
        return Ok(0);
    }
    // `;` terminates a container: the text after the last one is not a container.
    let body = value.strip_suffix(';').unwrap_or(value);
    let bytes = body.as_bytes();
    let mut container = 0;
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b';')
            .map_or(bytes.len(), |n| start + n);
        visit_container_devices(key, container, &body[start..end], |d| visit(container, d))?;
        container += 1;
        if end == bytes.len() {
            return Ok(container);
        }
        start = end + 1;
    }
}

/// Index of the first container that still has devices to hand out: the one HAMi's device plugin
/// serves next from the to-allocate annotation.
pub fn first_pending_container(pod: &[ContainerDevices]) -> Option<usize> {
    pod.iter().position(|c| !c.is_empty())
}

/// Whether a to-allocate value no longer mentions `keyword`: HAMi's test for "every container of
/// this family has been served" (then bind-phase becomes `success`).
pub fn fully_consumed(value: &str, keyword: &str) -> bool {
    !value.contains(keyword)
}
