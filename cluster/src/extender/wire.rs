//! kube-scheduler's extender wire types (`k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go structs carry no JSON tags, so the keys on the wire are the Go field names
//! (`Pod`, `NodeNames`, `PodUID`, …). Each field is renamed explicitly; Go decodes keys
//! case-insensitively, so lower-case and lowerCamel aliases are accepted on input too.

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of `POST /filter`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderArgs {
    /// The pod being scheduled.
    #[serde(rename = "Pod", alias = "pod")]
    pub pod: Option<Pod>,
    /// Candidate nodes as full objects (only when the extender is not `nodeCacheCapable`).
    /// Kept as raw JSON: only names are read, and the chosen node's object is echoed back.
    #[serde(
        rename = "Nodes",
        alias = "nodes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nodes: Option<serde_json::Value>,
    /// Candidate node names (`nodeCacheCapable: true`).
    #[serde(
        rename = "NodeNames",
        alias = "nodeNames",
        alias = "nodenames",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_names: Option<Vec<String>>,
}

/// The answer to `POST /filter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtenderFilterResult {
    /// Nodes that fit, as objects (answer to a request that sent `Nodes`).
    #[serde(
        rename = "Nodes",
        alias = "nodes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nodes: Option<serde_json::Value>,
    /// Names of the nodes that fit (exactly one for a managed pod).
    #[serde(
        rename = "NodeNames",
        alias = "nodeNames",
        alias = "nodenames",
        default
    )]
    pub node_names: Option<Vec<String>>,
    /// Node name → why it does not fit (HAMi's reason summary).
    #[serde(
        rename = "FailedNodes",
        alias = "failedNodes",
        alias = "failednodes",
        default
    )]
    pub failed_nodes: BTreeMap<String, String>,
    /// Node name → why it does not fit, where preemption cannot help either.
    #[serde(
        rename = "FailedAndUnresolvableNodes",
        alias = "failedAndUnresolvableNodes",
        alias = "failedandunresolvablenodes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub failed_and_unresolvable_nodes: BTreeMap<String, String>,
    /// An error for the whole request; empty when none.
    #[serde(rename = "Error", alias = "error", default)]
    pub error: String,
}

/// The body of `POST /bind`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtenderBindingArgs {
    /// Pod name.
    #[serde(rename = "PodName", alias = "podName", alias = "podname")]
    pub pod_name: String,
    /// Pod namespace.
    #[serde(
        rename = "PodNamespace",
        alias = "podNamespace",
        alias = "podnamespace"
    )]
    pub pod_namespace: String,
    /// Pod UID.
    #[serde(
        rename = "PodUID",
        alias = "podUID",
        alias = "podUid",
        alias = "poduid",
        default
    )]
    pub pod_uid: String,
    /// The node kube-scheduler chose.
    #[serde(rename = "Node", alias = "node")]
    pub node: String,
}

/// The answer to `POST /bind`: HTTP 200 with an empty `Error` on success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtenderBindingResult {
    /// Why the bind failed; empty on success.
    #[serde(rename = "Error", alias = "error", default)]
    pub error: String,
}

/// Node names of a `Nodes` list object (`items[].metadata.name`).
pub fn node_list_names(nodes: &serde_json::Value) -> Vec<String> {
    nodes
        .get("items")
        .and_then(|i| i.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|n| n.pointer("/metadata/name").and_then(|v| v.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `Nodes` list object reduced to the items whose names are in `keep`.
pub fn node_list_keep(nodes: &serde_json::Value, keep: &[String]) -> serde_json::Value {
    let mut out = nodes.clone();
    if let Some(items) = out.get_mut("items").and_then(|i| i.as_array_mut()) {
        items.retain(|n| {
            n.pointer("/metadata/name")
                .and_then(|v| v.as_str())
                .is_some_and(|name| keep.iter().any(|k| k == name))
        });
    }
    out
}
