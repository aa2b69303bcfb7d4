//! Property tests: no decoder panics on any input, and encode/decode round-trip on generated
//! values. Case counts are sized to keep the whole file well under the crate's test-time budget
//! in debug builds.

use hami_core::codec::{
    self, BindPhase, ContainerDevice, Handshake, NodeLock, RegisteredDevice, WireTime,
};
use hami_core::inspect::{ObjectKind, inspect_annotations};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Strings biased towards the separators and shapes the decoders split on.
fn wireish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9,:;_ .+TZ-]{0,60}",
        "(GPU-[a-f0-9]{0,4},(NVIDIA|x)?,-?[0-9]{0,11},-?[0-9]{0,3}[:;]{0,2}){0,4}",
        "[\\[\\]{}\":,0-9a-z.eE+ -]{0,60}",
        "(Requesting_|Reported |Deleted)?[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?(,[a-z]*){0,3}",
    ]
}

/// Well-formed JSON of arbitrary shape reaches the field-level checks, not just the parser.
fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9 ]{0,8}".prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("id".to_string()),
        Just("count".to_string()),
        Just("devmem".to_string()),
        Just("health".to_string()),
        Just("migProfiles".to_string()),
        Just("placements".to_string()),
        Just("uuid".to_string()),
        Just("score".to_string()),
        Just("placement".to_string()),
        Just("gpuInstanceID".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|v| v.to_string())
}

fn all_decoders(s: &str) {
    let _ = codec::decode_register_json("k", s);
    let _ = codec::decode_legacy_register("k", s);
    let _ = codec::decode_register("k", s);
    let _ = codec::decode_pod_devices("k", s);
    let _ = codec::decode_container_devices("k", 0, s);
    let _ = codec::decode_pair_scores("k", s);
    let _ = codec::decode_mig_allocations("k", s);
    let _ = NodeLock::decode("k", s);
    let _ = Handshake::decode("k", s);
    let _ = BindPhase::decode("k", s);
    let _ = WireTime::parse_rfc3339(s);
    let _ = codec::time::parse_datetime(s);
}

/// One device as a device list carries it: container, UUID, type keyword, memory, cores.
type Device = (usize, String, String, i32, i32);

/// HAMi's device-list format read the plainest way, independently of the codec: `;` ends a
/// container (text after the last is not one), `:` separates devices (empty ones skipped), a
/// device is `UUID,TYPE,MEM,CORES[,…]` with base-10 numbers. `None` when any device is
/// malformed; else the devices and the number of containers.
fn plain_reading(text: &str) -> Option<(Vec<Device>, usize)> {
    if text.is_empty() {
        return Some((Vec::new(), 0));
    }
    let body = text.strip_suffix(';').unwrap_or(text);
    let containers: Vec<&str> = body.split(';').collect();
    let mut out = Vec::new();
    for (c, segment) in containers.iter().enumerate() {
        for dev in segment.split(':').filter(|d| !d.is_empty()) {
            let fields: Vec<&str> = dev.split(',').collect();
            if fields.len() < 4 {
                return None;
            }
            let number = |f: &str| f.parse::<i32>().ok().filter(|_| !f.starts_with('+'));
            out.push((
                c,
                fields[0].to_string(),
                fields[1].to_string(),
                number(fields[2])?,
                number(fields[3])?,
            ));
        }
    }
    Some((out, containers.len()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_text(s in wireish()) {
        all_decoders(&s);
    }

    #[test]
    fn decoders_never_panic_on_json(s in jsonish()) {
        all_decoders(&s);
        let wrapped = format!("[{s}]");
        all_decoders(&wrapped);
    }

    #[test]
    fn inspect_never_panics(key in prop_oneof![
        Just("hami.io/node-nvidia-register".to_string()),
        Just("hami.io/node-dcu-register".to_string()),
        Just("hami.io/vgpu-devices-allocated".to_string()),
        Just("hami.io/mutex.lock".to_string()),
        Just("hami.io/node-handshake".to_string()),
        Just("hami.io/node-nvidia-score".to_string()),
        Just("hami.io/vgpu-mig-allocations".to_string()),
        Just("hami.io/bind-phase".to_string()),
    ], value in wireish()) {
        let a = BTreeMap::from([(key, value)]);
        let _ = inspect_annotations(ObjectKind::Auto, &a);
        let _ = inspect_annotations(ObjectKind::Node, &a);
        let _ = inspect_annotations(ObjectKind::Pod, &a);
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9-]{1,12}"
}

fn container_device() -> impl Strategy<Value = ContainerDevice> {
    (token(), token(), any::<i32>(), any::<i32>()).prop_map(
        |(uuid, type_keyword, usedmem, usedcores)| ContainerDevice {
            uuid,
            type_keyword,
            usedmem,
            usedcores,
        },
    )
}

fn registered_device() -> impl Strategy<Value = RegisteredDevice> {
    (
        (
            any::<String>(),
            any::<u64>(),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
        ),
        (
            any::<String>(),
            any::<i64>(),
            "(|hami-core|mig|mps)",
            any::<bool>(),
        ),
    )
        .prop_map(
            |((id, index, count, devmem, devcore), (device_type, numa, mode, health))| {
                RegisteredDevice {
                    id,
                    index,
                    count,
                    devmem,
                    devcore,
                    device_type,
                    numa,
                    mode,
                    health,
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn device_lists_round_trip(pod in prop::collection::vec(prop::collection::vec(container_device(), 0..3), 0..4)) {
        let text = codec::encode_pod_devices(&pod);
        prop_assert_eq!(codec::decode_pod_devices("k", &text).unwrap(), pod);
    }

    #[test]
    fn visiting_device_lists_agrees_with_a_plain_reading(
        pod in prop::collection::vec(prop::collection::vec(container_device(), 0..3), 0..4),
        noise in "[GPUab,:;0-9x-]{0,40}",
        use_noise: bool,
    ) {
        let text = if use_noise { noise } else { codec::encode_pod_devices(&pod) };
        let mut seen: Vec<Device> = Vec::new();
        let visited = codec::visit_pod_devices("k", &text, |c, d| {
            seen.push((c, d.uuid.into(), d.type_keyword.into(), d.usedmem, d.usedcores));
        });
        match plain_reading(&text) {
            Some((want, containers)) => {
                prop_assert_eq!(visited.map_err(|e| e.to_string()), Ok(containers));
                prop_assert_eq!(seen, want);
            }
            None => prop_assert!(visited.is_err(), "{text:?} read as {seen:?}"),
        }
        // The decoder is built on the visitor: the same devices, containers and errors.
        match codec::decode_pod_devices("k", &text) {
            Ok(decoded) => {
                let flat: Vec<Device> = decoded
                    .iter()
                    .enumerate()
                    .flat_map(|(c, devs)| {
                        devs.iter().map(move |d| {
                            (c, d.uuid.clone(), d.type_keyword.clone(), d.usedmem, d.usedcores)
                        })
                    })
                    .collect();
                prop_assert_eq!(Some((flat, decoded.len())), plain_reading(&text));
            }
            Err(_) => prop_assert_eq!(plain_reading(&text), None),
        }
    }

    #[test]
    fn json_register_round_trips(devs in prop::collection::vec(registered_device(), 0..4)) {
        let text = codec::encode_register_json(&devs);
        let back = codec::decode_register_json("k", &text).unwrap();
        prop_assert_eq!(&back, &devs);
        // Our JSON is valid JSON with the same content serde sees.
        prop_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    }

    #[test]
    fn legacy_register_round_trips(devs in prop::collection::vec(registered_device(), 0..4)) {
        let devs: Vec<RegisteredDevice> = devs.into_iter().map(|mut d| {
            d.id = d.id.replace([',', ':'], "");
            d.device_type = d.device_type.replace([',', ':'], "");
            d.index %= i64::MAX as u64;
            if d.mode.is_empty() { d.mode = "hami-core".into(); }
            d
        }).collect();
        let text = codec::encode_legacy_register(&devs);
        if !devs.is_empty() {
            prop_assert_eq!(codec::decode_legacy_register("k", &text).unwrap(), devs);
        }
    }

    #[test]
    fn times_round_trip(secs in -62_135_596_800i64..253_402_300_799i64, off in -86_399i32..86_400i32) {
        let off = off / 60 * 60;
        let t = WireTime { unix_seconds: secs, utc_offset_seconds: off };
        prop_assert_eq!(WireTime::parse_rfc3339(&t.to_rfc3339()), Some(t));
        let h = Handshake::Requesting { wall_seconds: secs };
        prop_assert_eq!(Handshake::decode("k", &h.encode()).unwrap(), h);
    }
}
