//! HAMi's node handshake, the pure part: given the time and a node's annotations and
//! allocatable, which handshake keys to stamp or remove and which families' devices to ignore.
//!
//! HAMi's scheduler stamps `hami.io/node-handshake[-<word>]` with `Requesting_<datetime>`
//! whenever the value does not already hold a request. A request older than 60 seconds that
//! nobody answered marks the family unhealthy, unless the node still advertises allocatable of
//! the family's count resource (v2.8+ device plugins answer through allocatable, not the
//! annotation). An unhealthy family's devices are dropped and its handshake key removed.

use hami_core::codec::Handshake;
use hami_core::family::FamilyId;
use std::collections::BTreeMap;

/// How long an unanswered `Requesting_…` stays healthy, seconds (HAMi's code uses 60 s).
pub const HANDSHAKE_EXPIRY_SECS: i64 = 60;

/// What the scheduler should do about one node's handshakes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeDecision {
    /// Annotation keys to set (`Some`) or remove (`None`) on the node.
    pub patch: BTreeMap<String, Option<String>>,
    /// Register annotation keys whose devices must be ignored (their family is unhealthy).
    pub ignore_register: Vec<String>,
}

/// Decide for one node at `now` (unix seconds, written as the scheduler's wall clock in UTC).
/// `allocatable` maps resource names to their quantity text. Only families that have both a
/// handshake key and a register annotation on this node are considered.
pub fn decide(
    now: i64,
    annotations: &BTreeMap<String, String>,
    allocatable: &BTreeMap<String, String>,
) -> HandshakeDecision {
    let mut out = HandshakeDecision::default();
    for f in FamilyId::all() {
        let spec = f.spec();
        let (Some(hs_key), Some(reg_key)) = (spec.handshake_annotation, spec.register()) else {
            continue;
        };
        if !annotations.contains_key(reg_key) {
            continue;
        }
        let stamp = || Some(Handshake::Requesting { wall_seconds: now }.encode());
        match annotations.get(hs_key) {
            None => {
                out.patch.insert(hs_key.to_string(), stamp());
            }
            Some(v) => match Handshake::decode(hs_key, v) {
                Ok(Handshake::Requesting { wall_seconds }) => {
                    let has_alloc = allocatable
                        .get(spec.count_resource)
                        .is_some_and(|q| q.trim() != "0" && !q.trim().is_empty());
                    if now - wall_seconds > HANDSHAKE_EXPIRY_SECS && !has_alloc {
                        out.patch.insert(hs_key.to_string(), None);
                        out.ignore_register.push(reg_key.to_string());
                    }
                }
                // A `Reported …` or `Deleted…` answer, or text we cannot read: ask again.
                Ok(_) | Err(_) => {
                    out.patch.insert(hs_key.to_string(), stamp());
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "hami.io/node-nvidia-register";
    const HS: &str = "hami.io/node-handshake";
    // 2026-01-01 00:00:00 UTC
    const T0: i64 = 1_767_225_600;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            now: i64,
            ann: BTreeMap<String, String>,
            alloc: BTreeMap<String, String>,
            patch: Option<Option<String>>,
            ignored: bool,
        }
        let requesting = "Requesting_2026-01-01 00:00:00".to_string();
        let cases = [
            Case {
                name: "no register annotation: nothing to do",
                now: T0,
                ann: ann(&[]),
                alloc: ann(&[]),
                patch: None,
                ignored: false,
            },
            Case {
                name: "first sight: stamp",
                now: T0,
                ann: ann(&[(REG, "[]")]),
                alloc: ann(&[]),
                patch: Some(Some(requesting.clone())),
                ignored: false,
            },
            Case {
                name: "old plugin answered: stamp again",
                now: T0,
                ann: ann(&[(REG, "[]"), (HS, "Reported 2025-12-31 23:59:59 +0000 UTC")]),
                alloc: ann(&[]),
                patch: Some(Some(requesting.clone())),
                ignored: false,
            },
            Case {
                name: "fresh request: healthy, no write",
                now: T0 + 60,
                ann: ann(&[(REG, "[]"), (HS, &requesting)]),
                alloc: ann(&[]),
                patch: None,
                ignored: false,
            },
            Case {
                name: "expired request, no allocatable: unhealthy, remove key",
                now: T0 + 61,
                ann: ann(&[(REG, "[]"), (HS, &requesting)]),
                alloc: ann(&[("nvidia.com/gpu", "0")]),
                patch: Some(None),
                ignored: true,
            },
            Case {
                name: "expired request but allocatable: healthy (v2.8+ plugin)",
                now: T0 + 3600,
                ann: ann(&[(REG, "[]"), (HS, &requesting)]),
                alloc: ann(&[("nvidia.com/gpu", "80")]),
                patch: None,
                ignored: false,
            },
            Case {
                name: "garbage value: stamp",
                now: T0,
                ann: ann(&[(REG, "[]"), (HS, "what")]),
                alloc: ann(&[]),
                patch: Some(Some(requesting.clone())),
                ignored: false,
            },
        ];
        for c in cases {
            let d = decide(c.now, &c.ann, &c.alloc);
            assert_eq!(d.patch.get(HS).cloned(), c.patch, "{}", c.name);
            assert_eq!(
                d.ignore_register.contains(&REG.to_string()),
                c.ignored,
                "{}",
                c.name
            );
        }
    }
}
