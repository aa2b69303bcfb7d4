//! Handshake values of `hami.io/node-handshake[-<word>]`.
//!
//! The scheduler writes `Requesting_<YYYY-MM-DD HH:MM:SS>` (Go `time.DateTime`, its local time;
//! source: HAMi `pkg/device/devices.go` `CheckHealth`). Device plugins up to v2.7 wrote
//! `Reported <time.Now().String()>`, and `Deleted…` marked a node being cleaned up; both are kept
//! verbatim because their time text is Go's free-form `Time.String()`.

use super::CodecError;
use super::time::{format_datetime, parse_datetime};

/// A decoded handshake value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Handshake {
    /// `Requesting_<datetime>`: the scheduler asked at this wall-clock time (seconds, read as UTC
    /// because the layout carries no zone).
    Requesting {
        /// Wall-clock seconds of the request.
        wall_seconds: i64,
    },
    /// `Reported <text>`: a ≤ v2.7 device plugin reported; `text` is what follows the space.
    Reported {
        /// Go `Time.String()` text, verbatim.
        text: String,
    },
    /// `Deleted<rest>`: the node's devices were removed; `rest` is verbatim.
    Deleted {
        /// Whatever followed `Deleted`.
        rest: String,
    },
}

impl Handshake {
    /// Encode exactly as HAMi writes each form.
    pub fn encode(&self) -> String {
        match self {
            Handshake::Requesting { wall_seconds } => {
                format!("Requesting_{}", format_datetime(*wall_seconds))
            }
            Handshake::Reported { text } => format!("Reported {text}"),
            Handshake::Deleted { rest } => format!("Deleted{rest}"),
        }
    }

    /// Decode one of the three forms; anything else is an error naming the key.
    pub fn decode(key: &str, value: &str) -> Result<Handshake, CodecError> {
        if let Some(t) = value.strip_prefix("Requesting_") {
            let wall_seconds = parse_datetime(t).ok_or_else(|| {
                CodecError::new(
                    key,
                    "request time",
                    t,
                    "a time like 2006-01-02 15:04:05 after Requesting_",
                )
            })?;
            Ok(Handshake::Requesting { wall_seconds })
        } else if let Some(t) = value.strip_prefix("Reported ") {
            Ok(Handshake::Reported {
                text: t.to_string(),
            })
        } else if let Some(rest) = value.strip_prefix("Deleted") {
            Ok(Handshake::Deleted {
                rest: rest.to_string(),
            })
        } else {
            Err(CodecError::new(
                key,
                "whole value",
                value,
                "Requesting_<YYYY-MM-DD HH:MM:SS>, Reported <time> or Deleted…",
            ))
        }
    }
}
