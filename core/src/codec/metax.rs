//! MetaX's own shared-GPU registration (`metax-tech.com/node-gpu-devices`): the JSON array
//! MetaX's device plugin writes for its sGPU cards, which HAMi's scheduler reads instead of a
//! HAMi registration annotation.
//!
//! Each element is one card: `uuid`, `bdf`, `model`, `totalDevCount` (how many containers may
//! share it), `totalCompute`, `totalVRam` (MiB), the `available…` counterparts, `numa`,
//! `healthy`, `qosPolicy` and `linkZone`. Every field but `uuid` may be left out (Go's
//! `omitempty`). HAMi makes a card of each element in order: index = position, split count =
//! `totalDevCount`, memory = `totalVRam`, cores = `totalCompute`; that is what decoding gives,
//! as [`RegisteredDevice`] values like every other registration.

use super::CodecError;
use super::register::RegisteredDevice;
use serde::{Deserialize, Serialize};

/// One card as MetaX's device plugin writes it (the fields the scheduler reads, and the ones
/// it keeps for the vendor's own use).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaxSDevice {
    uuid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    bdf: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    model: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    total_dev_count: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    total_compute: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    total_v_ram: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    available_dev_count: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    available_compute: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    available_v_ram: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    numa: i32,
    #[serde(default, skip_serializing_if = "is_false")]
    healthy: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    qos_policy: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    link_zone: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Decode MetaX's sGPU card list under annotation `key`: one [`RegisteredDevice`] per element,
/// index = position, `count` = `totalDevCount`, `devmem` = `totalVRam`, `devcore` =
/// `totalCompute`, `device_type` = `model`, `numa`, `health` = `healthy`. An empty array is no
/// card. Errors name `key`, the element and what was wrong (malformed JSON, a missing or empty
/// `uuid`, a value of the wrong type).
pub fn decode_metax_sdevices(key: &str, value: &str) -> Result<Vec<RegisteredDevice>, CodecError> {
    let cards: Vec<MetaxSDevice> = serde_json::from_str(value).map_err(|e| {
        CodecError::new(
            key,
            format!("line {} column {}", e.line(), e.column()),
            value,
            format!("MetaX's card list, a JSON array of objects with a uuid ({e})"),
        )
    })?;
    cards
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            if c.uuid.trim().is_empty() {
                return Err(CodecError::new(
                    key,
                    format!("card {i}, field \"uuid\""),
                    &c.uuid,
                    "the card's UUID",
                ));
            }
            Ok(RegisteredDevice {
                id: c.uuid,
                index: i as u64,
                count: c.total_dev_count,
                devmem: c.total_v_ram,
                devcore: c.total_compute,
                device_type: c.model,
                numa: i64::from(c.numa),
                health: c.healthy,
                ..RegisteredDevice::default()
            })
        })
        .collect()
}

/// Encode cards as MetaX's device plugin writes them, in order: `uuid`, `model`,
/// `totalDevCount`, `totalCompute`, `totalVRam`, the same three as available (a fresh
/// registration: nothing is in use), `numa`, `healthy`; zero and empty fields left out as Go
/// does. [`decode_metax_sdevices`] reads it back to the same cards (indexes by position).
pub fn encode_metax_sdevices(devices: &[RegisteredDevice]) -> String {
    let cards: Vec<MetaxSDevice> = devices
        .iter()
        .map(|d| MetaxSDevice {
            uuid: d.id.clone(),
            model: d.device_type.clone(),
            total_dev_count: d.count,
            total_compute: d.devcore,
            total_v_ram: d.devmem,
            available_dev_count: d.count,
            available_compute: d.devcore,
            available_v_ram: d.devmem,
            numa: i32::try_from(d.numa).unwrap_or(0),
            healthy: d.health,
            ..MetaxSDevice::default()
        })
        .collect();
    // A vector of plain structs with string keys always serializes.
    serde_json::to_string(&cards).unwrap_or_default()
}

/// One card of a container's MetaX allocation (`metax-tech.com/gpu-devices-allocated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct MetaxGrant<'a> {
    uuid: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    compute: i32,
    #[serde(rename = "vRam", skip_serializing_if = "is_zero")]
    v_ram: i32,
}

/// MetaX's allocation record of a pod: per container (every container, in order, `[]` for
/// one without MetaX cards) the cards as `{"uuid", "compute", "vRam"}` (MiB), zero values
/// left out as Go does.
pub fn encode_metax_allocation(containers: &[Vec<(&str, i32, i32)>]) -> String {
    let doc: Vec<Vec<MetaxGrant<'_>>> = containers
        .iter()
        .map(|c| {
            c.iter()
                .map(|&(uuid, compute, v_ram)| MetaxGrant {
                    uuid,
                    compute,
                    v_ram,
                })
                .collect()
        })
        .collect();
    // Plain structs with string keys always serialize.
    serde_json::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "metax-tech.com/node-gpu-devices";

    #[test]
    fn the_vendor_list_decodes_to_cards_in_order() {
        let v = r#"[{"uuid":"GPU-a","bdf":"0000:3b:00.0","model":"MXC500","totalDevCount":16,"totalCompute":100,"totalVRam":65536,"availableDevCount":16,"availableCompute":100,"availableVRam":65536,"numa":1,"healthy":true,"qosPolicy":"best-effort","linkZone":1,"futureField":7},{"uuid":"GPU-b"}]"#;
        let cards = decode_metax_sdevices(KEY, v).expect("valid");
        assert_eq!(cards.len(), 2);
        let a = &cards[0];
        assert_eq!(
            (
                a.id.as_str(),
                a.index,
                a.count,
                a.devmem,
                a.devcore,
                a.device_type.as_str(),
                a.numa,
                a.health
            ),
            ("GPU-a", 0, 16, 65536, 100, "MXC500", 1, true)
        );
        // Every field but the UUID may be absent: zero, empty, unhealthy.
        let b = &cards[1];
        assert_eq!(
            (b.id.as_str(), b.index, b.count, b.devmem, b.health),
            ("GPU-b", 1, 0, 0, false)
        );
        assert!(decode_metax_sdevices(KEY, "[]").expect("valid").is_empty());
    }

    #[test]
    fn encoding_reads_back_to_the_same_cards() {
        let cards = vec![
            RegisteredDevice {
                id: "GPU-x".into(),
                index: 0,
                count: 8,
                devmem: 32768,
                devcore: 100,
                device_type: "MXC500".into(),
                numa: 0,
                health: true,
                ..RegisteredDevice::default()
            },
            RegisteredDevice {
                id: "GPU-y".into(),
                index: 1,
                count: 8,
                devmem: 32768,
                devcore: 100,
                device_type: "MXC500".into(),
                numa: 1,
                health: false,
                ..RegisteredDevice::default()
            },
        ];
        let text = encode_metax_sdevices(&cards);
        assert_eq!(
            text,
            r#"[{"uuid":"GPU-x","model":"MXC500","totalDevCount":8,"totalCompute":100,"totalVRam":32768,"availableDevCount":8,"availableCompute":100,"availableVRam":32768,"healthy":true},{"uuid":"GPU-y","model":"MXC500","totalDevCount":8,"totalCompute":100,"totalVRam":32768,"availableDevCount":8,"availableCompute":100,"availableVRam":32768,"numa":1}]"#
        );
        assert_eq!(decode_metax_sdevices(KEY, &text).expect("own text"), cards);
    }

    #[test]
    fn the_allocation_record_lists_every_container() {
        let text =
            encode_metax_allocation(&[vec![], vec![("GPU-a", 30, 8192), ("GPU-b", 0, 1024)]]);
        assert_eq!(
            text,
            r#"[[],[{"uuid":"GPU-a","compute":30,"vRam":8192},{"uuid":"GPU-b","vRam":1024}]]"#
        );
    }

    #[test]
    fn bad_lists_name_the_key_and_the_place() {
        let cases = [
            ("{}", "line 1 column 0"),
            (r#"[{"model":"MXC500"}]"#, "line 1 column 19"),
            (r#"[{"uuid":" "}]"#, "card 0, field \"uuid\""),
            (r#"[{"uuid":"a","totalVRam":"lots"}]"#, "line 1 column 31"),
        ];
        for (v, segment) in cases {
            let e = decode_metax_sdevices(KEY, v).expect_err(v);
            assert_eq!(e.key, KEY, "{v}");
            assert_eq!(e.segment, segment, "{v}: {e}");
        }
    }
}
