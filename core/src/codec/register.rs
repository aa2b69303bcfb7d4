//! Node registration: the v2.8+ JSON array and the legacy (≤ v2.7) text form.
//!
//! Sources: HAMi `pkg/device/devices.go` (`DeviceInfo`, `MigProfile`, `MigPlacement`,
//! `MarshalNodeDevices`, `UnMarshalNodeDevices`, `EncodeNodeDevices`, `DecodeNodeDevices`).

use super::json::{self, Ctx};
use super::{CodecError, parse_go_bool, parse_i32, parse_i64};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// One device as a device plugin registers it on its node (HAMi's `DeviceInfo`).
///
/// Contract: field types are HAMi's Go types (`int32` counts and MiB, `uint` index, `int` NUMA
/// node) so every value HAMi writes round-trips; a zero value means "absent" exactly as Go's
/// `omitempty` does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegisteredDevice {
    /// Device UUID (`GPU-…` for NVIDIA).
    pub id: String,
    /// Device index on the node.
    pub index: u64,
    /// How many tasks may share the card (deviceSplitCount; max instances in MIG mode).
    pub count: i32,
    /// Memory in MiB, after HAMi's memory scaling.
    pub devmem: i32,
    /// Compute units, 100 per card times the core scaling.
    pub devcore: i32,
    /// Card model (`NVIDIA-Tesla V100-PCIE-32GB`).
    pub device_type: String,
    /// NUMA node.
    pub numa: i64,
    /// Sharing mode (`hami-core`, `mig`, `mps`); empty when not written.
    pub mode: String,
    /// MIG profiles the card can be cut into (MIG mode only).
    pub mig_profiles: Vec<MigProfile>,
    /// Deprecated static MIG geometries (`migtemplate`), kept only to round-trip old values.
    pub mig_template: Vec<Vec<LegacyMigTemplate>>,
    /// Whether the device plugin reports the card healthy.
    pub health: bool,
    /// Vendor word HAMi fills in after decoding; normally absent on the wire.
    pub device_vendor: String,
    /// Vendor-specific extras (`custominfo`); normally absent on the wire.
    pub custom_info: Map<String, Value>,
}

/// A MIG profile a card supports (HAMi's `MigProfile`; no field is `omitempty`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigProfile {
    /// Profile name (`1g.10gb`).
    pub name: String,
    /// Memory of one instance, MiB.
    pub memory_mb: i32,
    /// Compute share of one instance, percent.
    pub core: i32,
    /// Memory slices one instance takes.
    pub slice_count: u32,
    /// Placements the profile can take; `None` is Go's nil slice (`null`).
    pub placements: Option<Vec<MigPlacement>>,
}

/// A MIG placement: first memory slice and slice count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigPlacement {
    /// First slice.
    pub start: u32,
    /// Number of slices.
    pub size: u32,
}

/// One entry of the deprecated `migtemplate` geometry list (Go field names, no JSON tags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegacyMigTemplate {
    /// Template name.
    pub name: String,
    /// Compute share.
    pub core: i32,
    /// Memory, MiB.
    pub memory: i32,
    /// Instances of this template in the geometry.
    pub count: i32,
}

/// Encode devices as HAMi's v2.8+ registration JSON, byte-identical to Go's `json.Marshal` of
/// `[]*DeviceInfo`: fields in Go struct order, zero values omitted.
pub fn encode_register_json(devices: &[RegisteredDevice]) -> String {
    let mut out = String::from("[");
    for (i, d) in devices.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_device(&mut out, d);
    }
    out.push(']');
    out
}

fn encode_device(out: &mut String, d: &RegisteredDevice) {
    let mut first = true;
    let mut sep = |out: &mut String, name: &str| {
        out.push_str(if first { "\"" } else { ",\"" });
        first = false;
        out.push_str(name);
        out.push_str("\":");
    };
    out.push('{');
    if !d.id.is_empty() {
        sep(out, "id");
        json::write_string(out, &d.id);
    }
    if d.index != 0 {
        sep(out, "index");
        // Writing into the string: no number is formatted into a string of its own.
        let _ = write!(out, "{}", d.index);
    }
    for (name, v) in [
        ("count", d.count),
        ("devmem", d.devmem),
        ("devcore", d.devcore),
    ] {
        if v != 0 {
            sep(out, name);
            super::push_decimal(out, i64::from(v));
        }
    }
    if !d.device_type.is_empty() {
        sep(out, "type");
        json::write_string(out, &d.device_type);
    }
    if d.numa != 0 {
        sep(out, "numa");
        super::push_decimal(out, d.numa);
    }
    if !d.mode.is_empty() {
        sep(out, "mode");
        json::write_string(out, &d.mode);
    }
    if !d.mig_profiles.is_empty() {
        sep(out, "migProfiles");
        out.push('[');
        for (i, p) in d.mig_profiles.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json::write_string(out, &p.name);
            out.push_str(&format!(
                ",\"memoryMB\":{},\"core\":{},\"sliceCount\":{},\"placements\":",
                p.memory_mb, p.core, p.slice_count
            ));
            match &p.placements {
                None => out.push_str("null"),
                Some(pl) => {
                    out.push('[');
                    for (j, x) in pl.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        out.push_str(&format!("{{\"start\":{},\"size\":{}}}", x.start, x.size));
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        out.push(']');
    }
    if !d.mig_template.is_empty() {
        sep(out, "migtemplate");
        out.push('[');
        for (i, g) in d.mig_template.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            for (j, t) in g.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"Name\":");
                json::write_string(out, &t.name);
                out.push_str(&format!(
                    ",\"Core\":{},\"Memory\":{},\"Count\":{}}}",
                    t.core, t.memory, t.count
                ));
            }
            out.push(']');
        }
        out.push(']');
    }
    if d.health {
        sep(out, "health");
        out.push_str("true");
    }
    if !d.device_vendor.is_empty() {
        sep(out, "devicevendor");
        json::write_string(out, &d.device_vendor);
    }
    if !d.custom_info.is_empty() {
        sep(out, "custominfo");
        json::write_object(out, &d.custom_info);
    }
    out.push('}');
}

/// Positions in [`DEVICE_FIELDS`] of the fields the fast path reads itself.
mod field {
    pub const ID: usize = 0;
    pub const INDEX: usize = 1;
    pub const COUNT: usize = 2;
    pub const DEVMEM: usize = 3;
    pub const DEVCORE: usize = 4;
    pub const TYPE: usize = 5;
    pub const NUMA: usize = 6;
    pub const MODE: usize = 7;
    pub const HEALTH: usize = 10;
    pub const DEVICE_VENDOR: usize = 11;
}

const DEVICE_FIELDS: &[&str] = &[
    "id",
    "index",
    "count",
    "devmem",
    "devcore",
    "type",
    "numa",
    "mode",
    "migprofiles",
    "migtemplate",
    "health",
    "devicevendor",
    "custominfo",
];

/// Decode HAMi's v2.8+ registration JSON (as Go's `json.Unmarshal` into `[]*DeviceInfo` would):
/// missing fields default to zero, unknown fields are ignored, keys match case-insensitively,
/// `null` is an empty list.
pub fn decode_register_json(key: &str, value: &str) -> Result<Vec<RegisteredDevice>, CodecError> {
    // Registrations are decoded per node change: the plainest form (what our encoder and
    // HAMi's write for cards without MIG) straight from the bytes; other well-formed values
    // through serde without a tree; anything else (and any doubt) through the tree decoder,
    // which names the fault. All give the same devices for every value they accept.
    if let Some(devices) = plain::decode(value) {
        return Ok(devices);
    }
    let mut de = serde_json::Deserializer::from_str(value);
    if let Ok(devices) = serde::Deserializer::deserialize_any(&mut de, fast::List)
        && de.end().is_ok()
    {
        return Ok(devices);
    }
    decode_register_tree(key, value)
}

/// [`decode_register_json`] through a `serde_json::Value` tree: slower, and the source of
/// every error message.
fn decode_register_tree(key: &str, value: &str) -> Result<Vec<RegisteredDevice>, CodecError> {
    let root = json::parse(key, value)?;
    let top = Ctx {
        key,
        segment: "top level".to_string(),
    };
    let Some(items) = top.array("", &root)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ctx = Ctx {
            key,
            segment: format!("device {i}"),
        };
        let mut d = RegisteredDevice::default();
        if let Some(obj) = ctx.object("", item)? {
            for (k, v) in obj {
                if let Some(field) = json::field_name(k, DEVICE_FIELDS) {
                    set_field(&mut d, &ctx, field, v)?;
                }
            }
        }
        // Go's []*DeviceInfo turns a `null` element into a nil pointer; HAMi would crash on it,
        // so we keep it as an all-zero device the scheduler will see as unhealthy.
        out.push(d);
    }
    Ok(out)
}

/// Set `d`'s `field` (one of [`DEVICE_FIELDS`]) from `v`, as Go's decoder would; both
/// decoders go through here.
fn set_field(
    d: &mut RegisteredDevice,
    ctx: &Ctx<'_>,
    field: &str,
    v: &Value,
) -> Result<(), CodecError> {
    match field {
        "id" => d.id = ctx.string("id", v)?,
        "index" => d.index = ctx.u64("index", v)?,
        "count" => d.count = ctx.i32("count", v)?,
        "devmem" => d.devmem = ctx.i32("devmem", v)?,
        "devcore" => d.devcore = ctx.i32("devcore", v)?,
        "type" => d.device_type = ctx.string("type", v)?,
        "numa" => d.numa = ctx.i64_in("numa", v, i64::MIN, i64::MAX)?,
        "mode" => d.mode = ctx.string("mode", v)?,
        "migprofiles" => d.mig_profiles = decode_profiles(ctx, v)?,
        "migtemplate" => d.mig_template = decode_templates(ctx, v)?,
        "health" => d.health = ctx.bool("health", v)?,
        "devicevendor" => d.device_vendor = ctx.string("devicevendor", v)?,
        "custominfo" => d.custom_info = ctx.object("custominfo", v)?.cloned().unwrap_or_default(),
        _ => {}
    }
    Ok(())
}

/// The first path of [`decode_register_json`]: the plainest registrations read straight from
/// the bytes, as our encoder and HAMi's (Go's `json.Marshal`) write them for cards without MIG
/// profiles or vendor extras. Taken: no whitespace; an array of objects (or an empty one);
/// keys spelled exactly as the encoders write them, each at most once, among `id`, `index`,
/// `count`, `devmem`, `devcore`, `type`, `numa`, `mode` and `health`; strings without escapes
/// or control characters; integers without a fraction, exponent, leading zero or `-0`, within
/// the field's range; `true`, `false`; `null` for the zero value. On anything else it gives
/// up (`None`) and the next path decides, so it answers only where the others agree.
mod plain {
    use super::RegisteredDevice;

    /// The devices of `value`, or `None` when it is not in the plainest form.
    pub(super) fn decode(value: &str) -> Option<Vec<RegisteredDevice>> {
        let mut c = Cursor { s: value, i: 0 };
        c.eat(b'[')?;
        let mut out = Vec::new();
        if c.peek() == Some(b']') {
            c.i += 1;
        } else {
            loop {
                out.push(c.device()?);
                match c.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        (c.i == value.len()).then_some(out)
    }

    /// A position in the text.
    struct Cursor<'a> {
        s: &'a str,
        i: usize,
    }

    impl<'a> Cursor<'a> {
        fn peek(&self) -> Option<u8> {
            self.s.as_bytes().get(self.i).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let c = self.peek()?;
            self.i += 1;
            Some(c)
        }

        fn eat(&mut self, want: u8) -> Option<()> {
            (self.next()? == want).then_some(())
        }

        /// Step over `word` if it comes next.
        fn word(&mut self, word: &str) -> bool {
            let found = self.s.as_bytes()[self.i..].starts_with(word.as_bytes());
            if found {
                self.i += word.len();
            }
            found
        }

        fn device(&mut self) -> Option<RegisteredDevice> {
            self.eat(b'{')?;
            let mut d = RegisteredDevice::default();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Some(d);
            }
            let mut seen = 0u16;
            loop {
                let field = match self.text()? {
                    "id" => 0,
                    "index" => 1,
                    "count" => 2,
                    "devmem" => 3,
                    "devcore" => 4,
                    "type" => 5,
                    "numa" => 6,
                    "mode" => 7,
                    "health" => 8,
                    _ => return None,
                };
                if seen & (1 << field) != 0 {
                    return None;
                }
                seen |= 1 << field;
                self.eat(b':')?;
                match field {
                    0 => d.id = self.string()?,
                    1 => d.index = u64::try_from(self.int()?).ok()?,
                    2 => d.count = i32::try_from(self.int()?).ok()?,
                    3 => d.devmem = i32::try_from(self.int()?).ok()?,
                    4 => d.devcore = i32::try_from(self.int()?).ok()?,
                    5 => d.device_type = self.string()?,
                    6 => d.numa = self.int()?,
                    7 => d.mode = self.string()?,
                    _ => d.health = self.boolean()?,
                }
                match self.next()? {
                    b',' => {}
                    b'}' => return Some(d),
                    _ => return None,
                }
            }
        }

        /// A string without escapes or control characters, quotes stepped over.
        fn text(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let from = self.i;
            // One pass to the first byte that ends or spoils the string.
            let len = self.s.as_bytes()[from..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            self.i = from + len;
            self.eat(b'"')?;
            self.s.get(from..from + len)
        }

        /// A string field's value: `null` is empty.
        fn string(&mut self) -> Option<String> {
            if self.word("null") {
                return Some(String::new());
            }
            self.text().map(str::to_string)
        }

        /// An integer field's value: `null` is 0.
        fn int(&mut self) -> Option<i64> {
            if self.word("null") {
                return Some(0);
            }
            let negative = self.peek() == Some(b'-');
            if negative {
                self.i += 1;
            }
            let from = self.i;
            // Summed below zero, so that i64::MIN fits.
            let mut n: i64 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                n = n.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
                self.i += 1;
            }
            let digits = self.i - from;
            let leading_zero = digits > 1 && self.s.as_bytes()[from] == b'0';
            if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            match (negative, n) {
                (true, 0) => None,
                (true, n) => Some(n),
                (false, n) => n.checked_neg(),
            }
        }

        /// A boolean field's value: `null` is false.
        fn boolean(&mut self) -> Option<bool> {
            if self.word("true") {
                Some(true)
            } else if self.word("false") || self.word("null") {
                Some(false)
            } else {
                None
            }
        }
    }
}

/// The fast path of [`decode_register_json`]: devices decoded as the text streams by, with no
/// tree and no key strings. It gives up (any error) on what it cannot decode exactly as the
/// tree decoder does: a value the field refuses, a device that is not an object or `null`,
/// a field given twice (the tree decoder keeps the last in byte order of the keys, not in
/// document order), or a top level that is not an array or `null`.
mod fast {
    use super::{DEVICE_FIELDS, RegisteredDevice, field, set_field};
    use crate::codec::json::Ctx;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;
    use std::fmt;

    // `seen` keeps a bit per field.
    const _: () = assert!(DEVICE_FIELDS.len() <= 32);

    /// The device list (top level).
    pub(super) struct List;

    impl<'de> Visitor<'de> for List {
        type Value = Vec<RegisteredDevice>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a device list")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8));
            while let Some(d) = seq.next_element_seed(Device)? {
                out.push(d);
            }
            Ok(out)
        }
    }

    /// One element of the list: an object, or `null` (an all-zero device).
    struct Device;

    impl<'de> DeserializeSeed<'de> for Device {
        type Value = RegisteredDevice;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Device {
        type Value = RegisteredDevice;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a device object")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(RegisteredDevice::default())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // Errors here only make the caller fall back; the tree decoder words them.
            let ctx = Ctx {
                key: "",
                segment: String::new(),
            };
            let fail = |_| de::Error::custom("");
            let mut d = RegisteredDevice::default();
            let mut seen = 0u32;
            while let Some(field) = map.next_key_seed(Field)? {
                let Some(i) = field else {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                };
                if seen & (1 << i) != 0 {
                    return Err(de::Error::custom(""));
                }
                seen |= 1 << i;
                // Scalars straight from the text (`null` is the zero value, as in the tree
                // decoder; a value of the wrong type or range is an error, so the caller falls
                // back); the nested fields go through a value and the shared setter.
                match i {
                    field::ID => d.id = text(&mut map)?,
                    field::TYPE => d.device_type = text(&mut map)?,
                    field::MODE => d.mode = text(&mut map)?,
                    field::DEVICE_VENDOR => d.device_vendor = text(&mut map)?,
                    field::INDEX => d.index = map.next_value::<Option<u64>>()?.unwrap_or(0),
                    field::NUMA => d.numa = map.next_value::<Option<i64>>()?.unwrap_or(0),
                    field::COUNT => d.count = map.next_value::<Option<i32>>()?.unwrap_or(0),
                    field::DEVMEM => d.devmem = map.next_value::<Option<i32>>()?.unwrap_or(0),
                    field::DEVCORE => d.devcore = map.next_value::<Option<i32>>()?.unwrap_or(0),
                    field::HEALTH => d.health = map.next_value::<Option<bool>>()?.unwrap_or(false),
                    _ => {
                        let v: Value = map.next_value()?;
                        set_field(&mut d, &ctx, DEVICE_FIELDS[i], &v).map_err(fail)?;
                    }
                }
            }
            Ok(d)
        }
    }

    /// A string field's value: `null` is the empty string.
    fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<String, A::Error> {
        Ok(map.next_value::<Option<String>>()?.unwrap_or_default())
    }

    /// An object key: the position of the field it names in [`DEVICE_FIELDS`] (Go's
    /// case-insensitive match), `None` for a key no field has.
    struct Field;

    impl<'de> DeserializeSeed<'de> for Field {
        type Value = Option<usize>;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Field {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field name")
        }

        fn visit_str<E: de::Error>(self, k: &str) -> Result<Self::Value, E> {
            // Our encoder and HAMi's write the names as listed: an exact match (the compiler
            // dispatches on length first) settles nearly every key, and a registration is
            // decoded per node change. Anything else gets Go's case-insensitive match, in one
            // pass: the fields differ from each other even ignoring case.
            let exact = match k {
                "id" => Some(field::ID),
                "index" => Some(field::INDEX),
                "count" => Some(field::COUNT),
                "devmem" => Some(field::DEVMEM),
                "devcore" => Some(field::DEVCORE),
                "type" => Some(field::TYPE),
                "numa" => Some(field::NUMA),
                "mode" => Some(field::MODE),
                "health" => Some(field::HEALTH),
                "devicevendor" => Some(field::DEVICE_VENDOR),
                _ => None,
            };
            Ok(exact.or_else(|| DEVICE_FIELDS.iter().position(|f| f.eq_ignore_ascii_case(k))))
        }
    }
}

fn decode_profiles(dev: &Ctx<'_>, v: &Value) -> Result<Vec<MigProfile>, CodecError> {
    let mut out = Vec::new();
    for (i, p) in dev
        .array("migProfiles", v)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ctx = Ctx {
            key: dev.key,
            segment: format!("{}, migProfiles[{i}]", dev.segment),
        };
        let mut prof = MigProfile::default();
        if let Some(obj) = ctx.object("", p)? {
            for (k, v) in obj {
                match json::field_name(k, &["name", "memorymb", "core", "slicecount", "placements"])
                {
                    Some("name") => prof.name = ctx.string("name", v)?,
                    Some("memorymb") => prof.memory_mb = ctx.i32("memoryMB", v)?,
                    Some("core") => prof.core = ctx.i32("core", v)?,
                    Some("slicecount") => prof.slice_count = ctx.u32("sliceCount", v)?,
                    Some("placements") => {
                        prof.placements = match ctx.array("placements", v)? {
                            None => None,
                            Some(a) => Some(
                                a.iter()
                                    .map(|x| decode_placement(&ctx, x))
                                    .collect::<Result<_, _>>()?,
                            ),
                        }
                    }
                    _ => {}
                }
            }
        }
        out.push(prof);
    }
    Ok(out)
}

/// Decode a `{start,size}` placement object (shared with the MIG allocation annotation).
pub(crate) fn decode_placement(ctx: &Ctx<'_>, v: &Value) -> Result<MigPlacement, CodecError> {
    let mut p = MigPlacement::default();
    if let Some(obj) = ctx.object("placement", v)? {
        for (k, v) in obj {
            match json::field_name(k, &["start", "size"]) {
                Some("start") => p.start = ctx.u32("start", v)?,
                Some("size") => p.size = ctx.u32("size", v)?,
                _ => {}
            }
        }
    }
    Ok(p)
}

fn decode_templates(dev: &Ctx<'_>, v: &Value) -> Result<Vec<Vec<LegacyMigTemplate>>, CodecError> {
    let mut out = Vec::new();
    for g in dev.array("migtemplate", v)?.unwrap_or_default() {
        let mut geo = Vec::new();
        for t in dev.array("migtemplate", g)?.unwrap_or_default() {
            let mut x = LegacyMigTemplate::default();
            if let Some(obj) = dev.object("migtemplate", t)? {
                for (k, v) in obj {
                    match json::field_name(k, &["name", "core", "memory", "count"]) {
                        Some("name") => x.name = dev.string("migtemplate.Name", v)?,
                        Some("core") => x.core = dev.i32("migtemplate.Core", v)?,
                        Some("memory") => x.memory = dev.i32("migtemplate.Memory", v)?,
                        Some("count") => x.count = dev.i32("migtemplate.Count", v)?,
                        _ => {}
                    }
                }
            }
            geo.push(x);
        }
        out.push(geo);
    }
    Ok(out)
}

/// Encode the legacy text registration as HAMi's `EncodeNodeDevices` does: always the 9-field
/// form `UUID,count,devmem,devcore,type,numa,health,index,mode:` per device.
pub fn encode_legacy_register(devices: &[RegisteredDevice]) -> String {
    let mut out = String::new();
    for d in devices {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}:",
            d.id, d.count, d.devmem, d.devcore, d.device_type, d.numa, d.health, d.index, d.mode
        ));
    }
    out
}

/// Decode the legacy text registration as HAMi's `DecodeNodeDevices` does: the value must
/// contain `:`; empty segments are skipped; each device has 7 fields (mode defaults to
/// `hami-core`, index to 0) or 9 fields; anything else is an error.
pub fn decode_legacy_register(key: &str, value: &str) -> Result<Vec<RegisteredDevice>, CodecError> {
    if !value.contains(':') {
        return Err(CodecError::new(
            key,
            "whole value",
            value,
            "devices terminated by ':'",
        ));
    }
    let mut out = Vec::new();
    for (i, seg) in value.split(':').enumerate() {
        if seg.is_empty() {
            continue;
        }
        let f: Vec<&str> = seg.split(',').collect();
        if f.len() != 7 && f.len() != 9 {
            return Err(CodecError::new(
                key,
                format!("device {i}"),
                seg,
                format!(
                    "7 or 9 comma-separated fields (UUID,count,devmem,devcore,type,numa,health[,index,mode]), got {}",
                    f.len()
                ),
            ));
        }
        let at = |n: usize| f.get(n).copied().unwrap_or("");
        let bad = |name: &str, raw: &str, exp: &str| {
            CodecError::new(key, format!("device {i}, field {name:?}"), raw, exp)
        };
        let int32 = |n: usize, name: &str| {
            parse_i32(at(n)).ok_or_else(|| bad(name, at(n), "a 32-bit integer"))
        };
        let mut d = RegisteredDevice {
            id: at(0).to_string(),
            count: int32(1, "count")?,
            devmem: int32(2, "devmem")?,
            devcore: int32(3, "devcore")?,
            device_type: at(4).to_string(),
            numa: parse_i64(at(5)).ok_or_else(|| bad("numa", at(5), "an integer"))?,
            health: parse_go_bool(at(6)).ok_or_else(|| bad("health", at(6), "true or false"))?,
            mode: "hami-core".to_string(),
            ..RegisteredDevice::default()
        };
        if f.len() == 9 {
            let idx = parse_i64(at(7)).ok_or_else(|| bad("index", at(7), "an integer"))?;
            d.index =
                u64::try_from(idx).map_err(|_| bad("index", at(7), "a non-negative integer"))?;
            d.mode = at(8).to_string();
        }
        out.push(d);
    }
    Ok(out)
}

/// Decode a registration value in either format: a value starting with `[` (after spaces) or
/// equal to `null` is JSON, anything else legacy text. HAMi itself picks the decoder per vendor;
/// this is for tools that only have the value.
pub fn decode_register(key: &str, value: &str) -> Result<Vec<RegisteredDevice>, CodecError> {
    let t = value.trim_start();
    if t.starts_with('[') || t.trim_end() == "null" {
        decode_register_json(key, value)
    } else {
        decode_legacy_register(key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path's own answer (`None`: it gave up and the tree decoder would answer).
    fn fast_only(value: &str) -> Option<Vec<RegisteredDevice>> {
        let mut de = serde_json::Deserializer::from_str(value);
        let out = serde::Deserializer::deserialize_any(&mut de, fast::List).ok()?;
        de.end().ok().map(|()| out)
    }

    /// The fast path's field positions name the fields it reads.
    #[test]
    fn field_positions_match_the_field_table() {
        for (at, name) in [
            (field::ID, "id"),
            (field::INDEX, "index"),
            (field::COUNT, "count"),
            (field::DEVMEM, "devmem"),
            (field::DEVCORE, "devcore"),
            (field::TYPE, "type"),
            (field::NUMA, "numa"),
            (field::MODE, "mode"),
            (field::HEALTH, "health"),
            (field::DEVICE_VENDOR, "devicevendor"),
        ] {
            assert_eq!(DEVICE_FIELDS[at], name);
        }
    }

    /// Each quick path answers exactly as the tree decoder or gives up, and takes what it
    /// should: the plain path only the plainest values (our encoder's output among them), the
    /// serde path every well-formed value but a field given twice or a value a field refuses.
    #[test]
    fn quick_paths_decode_exactly_as_the_tree_decoder_or_give_up() {
        let devices = vec![
            RegisteredDevice {
                id: "GPU-0".into(),
                index: 3,
                count: 10,
                devmem: 81920,
                devcore: 100,
                device_type: "NVIDIA-A100 ü".into(),
                numa: -1,
                mode: "hami-core".into(),
                health: true,
                ..RegisteredDevice::default()
            },
            RegisteredDevice::default(),
        ];
        let ours = encode_register_json(&devices);
        assert_eq!(plain::decode(&ours), Some(devices));
        let mig = r#"{"migprofiles":[{"Name":"1g.10gb","MemoryMB":9984,"Core":14,"SliceCount":1,"placements":[{"start":0,"size":1}]}]}"#;
        let mig = format!("[{mig}, null]");
        // (value, whether the plain path must take it, whether the serde path must)
        let cases: &[(&str, bool, bool)] = &[
            (&ours, true, true),
            ("[]", true, true),
            ("[{}]", true, true),
            (
                r#"[{"id":"GPU-0","index":0,"count":10,"devmem":81920,"devcore":100,"type":"NVIDIA-A100","numa":1,"mode":"hami-core","health":true}]"#,
                true,
                true,
            ),
            (
                r#"[{"id":null,"count":null,"health":null},{"health":false}]"#,
                true,
                true,
            ),
            (
                r#"[{"numa":-9223372036854775808,"index":9223372036854775807}]"#,
                true,
                true,
            ),
            (
                r#"[{"count":-2147483648,"devcore":2147483647}]"#,
                true,
                true,
            ),
            // Well formed, but not the plainest form.
            ("null", false, true),
            ("[null]", false, true),
            (r#"[ {"id":"a"}]"#, false, true),
            (r#"[{"id": "a"}]"#, false, true),
            (r#"[{"id":"a"}] "#, false, true),
            // Go matches keys ignoring case and skips unknown ones.
            (
                r#"[{"ID":"GPU-1","DevMem":1024,"Health":true,"extra":{"a":[1,2]}}]"#,
                false,
                true,
            ),
            (&mig, false, true),
            (
                r#"[{"custominfo":{"b":1,"a":"x"},"devicevendor":"NVIDIA"}]"#,
                false,
                true,
            ),
            (r#"[{"id":"GPU-\u0041"}]"#, false, true),
            (r#"[{"\u0069d":"escaped key"}]"#, false, true),
            (r#"[{"index":18446744073709551615}]"#, false, true),
            // The same field twice: the tree decoder's answer (keys in byte order) stands.
            (r#"[{"id":"a","ID":"b"}]"#, false, false),
            (r#"[{"id":"a","id":"b"}]"#, false, false),
            // Refused values and shapes: the tree decoder names the fault.
            ("[{\"id\":\"a\tb\"}]", false, false),
            (r#"[{"count":01}]"#, false, false),
            (r#"[{"count":-0}]"#, false, false),
            (r#"[{"count":1.5}]"#, false, false),
            (r#"[{"devcore":1e2}]"#, false, false),
            (r#"[{"devmem":2147483648}]"#, false, false),
            (r#"[{"count":4294967296}]"#, false, false),
            (r#"[{"index":-1}]"#, false, false),
            (r#"[{"numa":9223372036854775808}]"#, false, false),
            (r#"[{"health":1}]"#, false, false),
            (r#"[{"health":nul}]"#, false, false),
            (r#"[{"health":"yes"}]"#, false, false),
            (r#"[{"id":5}]"#, false, false),
            (r#"[{"type":true}]"#, false, false),
            (r#"[{"mode":["x"]}]"#, false, false),
            (r#"[{"count":"3"}]"#, false, false),
            (r#"[{"migprofiles":{}}]"#, false, false),
            ("[1]", false, false),
            (r#"{"id":"GPU-0"}"#, false, false),
            (r#"[{"id":"a"},]"#, false, false),
            (r#"[{"id":"a""#, false, false),
            ("[] x", false, false),
            ("[", false, false),
            ("", false, false),
        ];
        for &(value, plain_takes, fast_takes) in cases {
            let tree = decode_register_tree("k", value);
            let plain = plain::decode(value);
            assert_eq!(plain.is_some(), plain_takes, "plain path: {value}");
            if let Some(devices) = plain {
                assert_eq!(Ok(devices), tree, "plain path: {value}");
            }
            let fast = fast_only(value);
            assert_eq!(fast.is_some(), fast_takes, "serde path: {value}");
            if let Some(devices) = fast {
                assert_eq!(Ok(devices), tree, "serde path: {value}");
            }
            assert_eq!(decode_register_json("k", value), tree, "{value}");
        }
    }
}
