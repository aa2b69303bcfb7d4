//! The node lock `hami.io/mutex.lock`: `<RFC3339 time>,<namespace>,<pod>`, or a bare RFC 3339
//! time as older HAMi wrote it. Source: HAMi `pkg/util/nodelock/nodelock.go`
//! (`GenerateNodeLockKeyByPod`, `ParseNodeLock`).

use super::{CodecError, WireTime};

/// The pod a node lock was taken for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockOwner {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// A decoded node lock value.
///
/// Contract: `owner` is `None` only for the legacy bare-time form; a value with commas must have
/// exactly three parts (namespace and name may be empty, as HAMi accepts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeLock {
    /// When the lock was taken.
    pub at: WireTime,
    /// Who holds it.
    pub owner: Option<LockOwner>,
}

impl NodeLock {
    /// Encode as HAMi writes it.
    pub fn encode(&self) -> String {
        match &self.owner {
            None => self.at.to_rfc3339(),
            Some(o) => format!("{},{},{}", self.at.to_rfc3339(), o.namespace, o.name),
        }
    }

    /// Decode as HAMi's `ParseNodeLock`: no comma means a bare time; otherwise three
    /// comma-separated parts, the first an RFC 3339 time.
    pub fn decode(key: &str, value: &str) -> Result<NodeLock, CodecError> {
        let bad_time = |raw: &str| {
            CodecError::new(
                key,
                "lock time",
                raw,
                "an RFC 3339 time like 2026-08-21T06:20:39Z",
            )
        };
        if !value.contains(',') {
            let at = WireTime::parse_rfc3339(value).ok_or_else(|| bad_time(value))?;
            return Ok(NodeLock { at, owner: None });
        }
        let parts: Vec<&str> = value.split(',').collect();
        let [t, ns, name] = parts.as_slice() else {
            return Err(CodecError::new(
                key,
                "whole value",
                value,
                format!(
                    "3 comma-separated parts <time>,<namespace>,<pod>, got {}",
                    parts.len()
                ),
            ));
        };
        let at = WireTime::parse_rfc3339(t).ok_or_else(|| bad_time(t))?;
        Ok(NodeLock {
            at,
            owner: Some(LockOwner {
                namespace: (*ns).to_string(),
                name: (*name).to_string(),
            }),
        })
    }
}
