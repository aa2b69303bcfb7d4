//! Topology score annotation `hami.io/node-nvidia-score`: `[{"uuid":"GPU-a","score":{"GPU-b":200}}]`.
//! Source: HAMi `pkg/device/devices.go` (`DevicePairScore`, `DecodePairScores`), both fields
//! `omitempty`; Go writes map keys sorted.

use super::CodecError;
use super::json::{self, Ctx};
use std::collections::BTreeMap;

/// The pair scores of one device towards the others (HAMi's `DevicePairScore`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicePairScore {
    /// The device.
    pub uuid: String,
    /// Score towards each other device (Go `map[string]int`), keys sorted.
    pub scores: BTreeMap<String, i64>,
}

/// Encode as Go's `json.Marshal` of `[]DevicePairScore`: empty uuid or score map omitted.
pub fn encode_pair_scores(scores: &[DevicePairScore]) -> String {
    let mut out = String::from("[");
    for (i, s) in scores.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if !s.uuid.is_empty() {
            out.push_str("\"uuid\":");
            json::write_string(&mut out, &s.uuid);
        }
        if !s.scores.is_empty() {
            if !s.uuid.is_empty() {
                out.push(',');
            }
            out.push_str("\"score\":{");
            for (j, (k, v)) in s.scores.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                json::write_string(&mut out, k);
                out.push(':');
                out.push_str(&v.to_string());
            }
            out.push('}');
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// Decode the score annotation; missing fields default, unknown fields are ignored, `null` is
/// empty.
pub fn decode_pair_scores(key: &str, value: &str) -> Result<Vec<DevicePairScore>, CodecError> {
    let root = json::parse(key, value)?;
    let top = Ctx {
        key,
        segment: "top level".to_string(),
    };
    let mut out = Vec::new();
    for (i, item) in top.array("", &root)?.unwrap_or_default().iter().enumerate() {
        let ctx = Ctx {
            key,
            segment: format!("entry {i}"),
        };
        let mut s = DevicePairScore::default();
        if let Some(obj) = ctx.object("", item)? {
            for (k, v) in obj {
                match json::field_name(k, &["uuid", "score"]) {
                    Some("uuid") => s.uuid = ctx.string("uuid", v)?,
                    Some("score") => {
                        for (peer, n) in ctx.object("score", v)?.into_iter().flatten() {
                            let n = ctx.i64_in(&format!("score.{peer}"), n, i64::MIN, i64::MAX)?;
                            s.scores.insert(peer.clone(), n);
                        }
                    }
                    _ => {}
                }
            }
        }
        out.push(s);
    }
    Ok(out)
}
