//! Go `encoding/json` compatible writing and lenient reading helpers.
//!
//! HAMi's JSON annotations are produced by Go's `json.Marshal`, whose output differs from
//! serde_json's in string escaping (`<`, `>`, `&`, U+2028 and U+2029 are escaped) and in float
//! formatting. Writing through these helpers makes our output byte-identical. Reading mirrors
//! Go's decoder: object keys match struct fields case-insensitively, unknown keys are ignored and
//! `null` leaves a field at its zero value.

use super::CodecError;
use serde_json::{Map, Value};

/// Append `s` as a JSON string exactly as Go's `json.Marshal` writes it (HTML-safe escaping).
pub fn write_string(out: &mut String, s: &str) {
    // Nearly every string (UUIDs, models, modes) is printable ASCII with nothing to escape.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&'))
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        write_escaped(out, s);
    }
}

/// [`write_string`] character by character.
fn write_escaped(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u32;
                out.push_str("\\u00");
                out.push(char::from(HEX[(b >> 4) as usize & 0xf]));
                out.push(char::from(HEX[b as usize & 0xf]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append an arbitrary JSON value as Go writes a decoded `any`: object keys sorted, numbers as
/// float64 (`1e+21` style exponents outside `[1e-6, 1e21)`).
pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_go_float(out, n.as_f64().unwrap_or(0.0)),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(out, m),
    }
}

/// Append a map with sorted keys (serde_json's default map is a BTreeMap, sorted by bytes as Go
/// sorts map keys).
pub fn write_object(out: &mut String, m: &Map<String, Value>) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

/// Go's float64 JSON formatting: shortest round-trip digits, exponent form outside
/// `[1e-6, 1e21)`, with `e+XX` / `e-X` exponents.
fn write_go_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        // Go refuses to marshal these; JSON has no spelling for them.
        out.push_str("null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if exp < 0 {
            out.push_str(&format!("{mantissa}e-{}", -exp));
        } else {
            out.push_str(&format!("{mantissa}e+{exp:02}"));
        }
    } else {
        out.push_str(&format!("{f}"));
    }
}

/// Where a JSON value sits, for error messages.
pub(crate) struct Ctx<'a> {
    pub key: &'a str,
    pub segment: String,
}

impl Ctx<'_> {
    pub fn err(&self, field: &str, v: &Value, expected: &str) -> CodecError {
        let raw = v.to_string();
        let segment = if field.is_empty() {
            self.segment.clone()
        } else {
            format!("{}, field {field:?}", self.segment)
        };
        CodecError::new(self.key, segment, &raw, expected)
    }

    pub fn i64_in(&self, field: &str, v: &Value, min: i64, max: i64) -> Result<i64, CodecError> {
        match v {
            Value::Null => Ok(0),
            Value::Number(n) => n
                .as_i64()
                .filter(|x| (min..=max).contains(x))
                .ok_or_else(|| self.err(field, v, &format!("an integer in {min}..={max}"))),
            _ => Err(self.err(field, v, "an integer")),
        }
    }

    pub fn u64(&self, field: &str, v: &Value) -> Result<u64, CodecError> {
        match v {
            Value::Null => Ok(0),
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| self.err(field, v, "a non-negative integer")),
            _ => Err(self.err(field, v, "a non-negative integer")),
        }
    }

    pub fn i32(&self, field: &str, v: &Value) -> Result<i32, CodecError> {
        let x = self.i64_in(field, v, i64::from(i32::MIN), i64::from(i32::MAX))?;
        i32::try_from(x).map_err(|_| self.err(field, v, "a 32-bit integer"))
    }

    pub fn u32(&self, field: &str, v: &Value) -> Result<u32, CodecError> {
        let x = self.i64_in(field, v, 0, i64::from(u32::MAX))?;
        u32::try_from(x).map_err(|_| self.err(field, v, "a 32-bit unsigned integer"))
    }

    pub fn string(&self, field: &str, v: &Value) -> Result<String, CodecError> {
        match v {
            Value::Null => Ok(String::new()),
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.err(field, v, "a string")),
        }
    }

    pub fn bool(&self, field: &str, v: &Value) -> Result<bool, CodecError> {
        match v {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(*b),
            _ => Err(self.err(field, v, "true or false")),
        }
    }

    pub fn object<'v>(
        &self,
        field: &str,
        v: &'v Value,
    ) -> Result<Option<&'v Map<String, Value>>, CodecError> {
        match v {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(Some(m)),
            _ => Err(self.err(field, v, "a JSON object")),
        }
    }

    pub fn array<'v>(&self, field: &str, v: &'v Value) -> Result<Option<&'v [Value]>, CodecError> {
        match v {
            Value::Null => Ok(None),
            Value::Array(a) => Ok(Some(a)),
            _ => Err(self.err(field, v, "a JSON array")),
        }
    }
}

/// Parse a whole annotation as JSON, naming the key on failure.
pub(crate) fn parse(key: &str, value: &str) -> Result<Value, CodecError> {
    serde_json::from_str(value).map_err(|e| {
        CodecError::new(
            key,
            format!("JSON at line {} column {}", e.line(), e.column()),
            value,
            format!("valid JSON ({e})"),
        )
    })
}

/// Go matches object keys to struct fields ignoring ASCII case; `known` must be lowercase.
pub(crate) fn field_name<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().copied().find(|k| k.eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The unescaped shortcut writes what the character-by-character writer writes.
        #[test]
        fn strings_are_written_as_the_escaping_writer_writes_them(
            s in "[ -~]{0,24}|\\PC{0,12}|[a-z<>&\"\\\\\u{2028}\u{1}]{0,8}",
        ) {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_string(&mut fast, &s);
            write_escaped(&mut slow, &s);
            proptest::prop_assert_eq!(fast, slow);
        }
    }
}
