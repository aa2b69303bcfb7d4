//! The sim-to-real replay's wire format shared by the simulator (which writes a plan and its
//! expected outcomes) and the cluster driver (which replays the steps and reports what the real
//! cluster did): one definition, so the two sides cannot drift apart.

use serde::{Deserialize, Serialize};

/// One card granted to one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardGrant {
    /// Card UUID.
    pub uuid: String,
    /// Card index on its node (registration order), `None` when the node does not list it.
    pub index: Option<u32>,
    /// Memory granted, MiB.
    pub memory_mib: i64,
    /// Compute share granted, percent.
    pub cores: i64,
}

/// What happened to a pod at one scheduling step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Index of the step in the plan's steps.
    pub step: usize,
    /// Pod name.
    pub pod: String,
    /// Node it was bound to; `None` when it stayed unschedulable.
    pub node: Option<String>,
    /// Cards per container (init containers first), empty when unschedulable.
    pub containers: Vec<Vec<CardGrant>>,
    /// Unschedulable reason as reported (informational: never compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One step of a replay, in the simulator's processing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Step {
    /// Create the pod if it does not exist yet, then wait until it is bound or reported
    /// unschedulable.
    Schedule {
        /// Pod name.
        pod: String,
        /// Class name (the plan's pod object of that class, given this name).
        class: String,
    },
    /// Delete the pod and wait until the scheduler has released it.
    Delete {
        /// Pod name.
        pod: String,
    },
}
