//! HAMi's annotation wire formats, encoded and decoded byte for byte.
//!
//! Every value HAMi's scheduler, device plugins and vendor plugins exchange through Kubernetes
//! annotations has a typed form here: node registration (v2.8+ JSON and the legacy text form),
//! per-container device lists, the node lock, the handshake, the topology score, the MIG
//! allocations, the bind phase. The types are wire-level on purpose: integer widths follow HAMi's
//! Go structs (`int32`, `uint`, `int`), so any value HAMi can write decodes and re-encodes to the
//! same bytes. Turning them into the scheduler's model is the caller's job.
//!
//! Every decoder takes the annotation key it reads so that a [`CodecError`] can name it; decoders
//! never panic, whatever the input.
//!
//! The module depends on nothing else in the crate except [`crate::family`] (through
//! [`crate::inspect`]); it is pure.

pub mod devices;
pub mod handshake;
pub mod json;
pub mod keys;
pub mod lock;
pub mod metax;
pub mod mig;
pub mod phase;
pub mod register;
pub mod score;
pub mod time;

pub use devices::{
    ContainerDevice, ContainerDevices, DeviceRef, PodDevices, decode_container_devices,
    decode_pod_devices, encode_container_devices, encode_pod_devices, visit_pod_devices,
};
pub use handshake::Handshake;
pub use lock::{LockOwner, NodeLock};
pub use metax::{decode_metax_sdevices, encode_metax_allocation, encode_metax_sdevices};
pub use mig::{
    MigAllocation, check_mig_allocations, decode_checked_mig_allocations, decode_mig_allocations,
    encode_mig_allocations,
};
pub use phase::BindPhase;
pub use register::{
    LegacyMigTemplate, MigPlacement, MigProfile, RegisteredDevice, decode_legacy_register,
    decode_register, decode_register_json, encode_legacy_register, encode_register_json,
};
pub use score::{DevicePairScore, decode_pair_scores, encode_pair_scores};
pub use time::WireTime;

/// A value that could not be decoded: which annotation, where in it, what was there and what was
/// expected.
///
/// Contract: `key` is the annotation key the caller passed to the decoder, or the path of a Node
/// object field when the value came from one (`status.capacity`, named as such); `segment` locates the
/// problem inside the value (for example `container 1, device 3, field "usedmem"`; indexes are
/// 0-based as in the value); `raw` is the offending text (shortened to 120 characters); `expected`
/// says in words what would have been accepted. The Display form is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {segment}: found {raw:?}, expected {expected}", place(key))]
pub struct CodecError {
    /// The annotation key whose value failed to decode, or a `status.…` field path.
    pub key: String,
    /// Where inside the value the problem is.
    pub segment: String,
    /// The offending text, shortened.
    pub raw: String,
    /// What would have been accepted.
    pub expected: String,
}

impl CodecError {
    /// Build an error; `raw` is shortened so a huge annotation never floods a log line.
    pub fn new(
        key: &str,
        segment: impl Into<String>,
        raw: &str,
        expected: impl Into<String>,
    ) -> CodecError {
        CodecError {
            key: key.to_string(),
            segment: segment.into(),
            raw: shorten(raw),
            expected: expected.into(),
        }
    }
}

/// How an error names where its value came from: `annotation KEY`, or a Node field path as is.
fn place(key: &str) -> std::borrow::Cow<'_, str> {
    if key.starts_with("status.") {
        key.into()
    } else {
        format!("annotation {key}").into()
    }
}

/// Cut text to 120 characters on a char boundary so error messages stay one readable line.
fn shorten(raw: &str) -> String {
    const MAX: usize = 120;
    if raw.chars().count() <= MAX {
        raw.to_string()
    } else {
        let mut s: String = raw.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

/// Go's `strconv.ParseInt(s, 10, 32)`: optional sign, ASCII digits, in `i32` range.
pub(crate) fn parse_i32(s: &str) -> Option<i32> {
    parse_i64(s).and_then(|v| i32::try_from(v).ok())
}

/// Go's `strconv.Atoi` on a 64-bit platform: `[+-]?[0-9]+` (no spaces, no underscores), in
/// `i64` range. One pass over the digits: every device of every grant annotation has two.
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    if digits.is_empty() {
        return None;
    }
    // Summed as a negative number: `i64::MIN` has no positive counterpart.
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    if negative { Some(v) } else { v.checked_neg() }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Append the decimal digits of `v` to `out`, exactly as `v.to_string()` writes them, without
/// the formatting machinery: the annotation encoders run for every placement.
pub fn push_decimal(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written, so this never falls back.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// [`push_decimal`] into a string of its own: `v.to_string()` without the formatting
/// machinery (annotation values written per placement, such as a bind time).
pub fn decimal(v: i64) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, v);
    out
}

#[cfg(test)]
mod decimal_tests {
    use super::{decimal, parse_i32, parse_i64, push_decimal};
    use proptest::prelude::*;

    /// Go's integer syntax, at the edges of both ranges.
    #[test]
    fn integers_parse_as_go_reads_them() {
        let cases: &[(&str, Option<i64>, Option<i32>)] = &[
            ("0", Some(0), Some(0)),
            ("-0", Some(0), Some(0)),
            ("+7", Some(7), Some(7)),
            ("007", Some(7), Some(7)),
            ("81920", Some(81920), Some(81920)),
            ("2147483647", Some(2147483647), Some(i32::MAX)),
            ("2147483648", Some(2147483648), None),
            ("-2147483648", Some(-2147483648), Some(i32::MIN)),
            ("-2147483649", Some(-2147483649), None),
            ("9223372036854775807", Some(i64::MAX), None),
            ("-9223372036854775808", Some(i64::MIN), None),
            ("9223372036854775808", None, None),
            ("-9223372036854775809", None, None),
            ("", None, None),
            ("-", None, None),
            ("+", None, None),
            ("+-1", None, None),
            ("1_000", None, None),
            (" 1", None, None),
            ("1 ", None, None),
            ("0x10", None, None),
            ("\u{663}", None, None),
        ];
        for &(s, want64, want32) in cases {
            assert_eq!(parse_i64(s), want64, "{s:?}");
            assert_eq!(parse_i32(s), want32, "{s:?}");
        }
    }

    proptest! {
        /// Over signs, digits and a few strangers, the same answers as the standard parser,
        /// whose syntax for these characters is Go's.
        #[test]
        fn integers_parse_as_the_standard_parser_does(s in "[-+0-9 _a]{0,24}") {
            prop_assert_eq!(parse_i64(&s), s.parse::<i64>().ok());
            prop_assert_eq!(parse_i32(&s), s.parse::<i32>().ok());
        }
    }

    #[test]
    fn push_decimal_writes_what_to_string_writes() {
        for v in [0, 1, -1, 9, 10, 99, 100, -100, 81920, i64::MAX, i64::MIN] {
            let mut s = String::from("x");
            push_decimal(&mut s, v);
            assert_eq!(s, format!("x{v}"));
            assert_eq!(decimal(v), v.to_string());
        }
    }
}
