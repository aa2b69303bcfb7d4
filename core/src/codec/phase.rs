//! `hami.io/bind-phase` values. Source: HAMi `pkg/util/types.go`.

use super::CodecError;

/// The bind phase the scheduler and device plugin move a pod through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindPhase {
    /// `allocating`: bound by the scheduler, waiting for the device plugin.
    Allocating,
    /// `success`: the device plugin served every container.
    Success,
    /// `failed`: the device plugin could not serve the pod.
    Failed,
}

impl BindPhase {
    /// The wire text.
    pub fn as_str(self) -> &'static str {
        match self {
            BindPhase::Allocating => "allocating",
            BindPhase::Success => "success",
            BindPhase::Failed => "failed",
        }
    }

    /// Parse the exact wire text (case-sensitive, as HAMi compares).
    pub fn decode(key: &str, value: &str) -> Result<BindPhase, CodecError> {
        match value {
            "allocating" => Ok(BindPhase::Allocating),
            "success" => Ok(BindPhase::Success),
            "failed" => Ok(BindPhase::Failed),
            _ => Err(CodecError::new(
                key,
                "whole value",
                value,
                "allocating, success or failed",
            )),
        }
    }
}

impl std::fmt::Display for BindPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
