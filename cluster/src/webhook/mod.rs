//! The mutating admission webhook (AdmissionReview v1, pod CREATE).
//!
//! Only pods that ask for a managed resource are changed: their `schedulerName` is set, HAMi's
//! validations run (no containers, privileged containers, a preset `nodeName`, and every
//! request error of [`RequestTranslator::translate`] — percentage range, cores over 100, …),
//! and the task-priority / core-policy environment is injected. Served by the scheduler process,
//! the webhook also denies a pod that cannot fit its namespace's device ResourceQuota (HAMi's
//! quota extension, [`quota_denial`]). Every other review is allowed
//! unchanged. The answer carries a JSONPatch as a base64 string (`patchType: JSONPatch`), as
//! the API documents.

use crate::quota::QuotaNames;
use base64::Engine;
use hami_core::config::{DeviceConfig, NvidiaConfig};
use hami_core::family::FamilyId;
use hami_core::ledger::QuotaLeft;
use hami_core::request::{MemoryRequest, PodRequest, RequestTranslator};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The API group/version of the reviews we answer.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// An `AdmissionReview` (request or response side).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// `admission.k8s.io/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `AdmissionReview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// What the API server asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    /// Our answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

/// Group, version and kind of the object under review.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group (empty for core).
    #[serde(default)]
    pub group: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Kind (`Pod`).
    #[serde(default)]
    pub kind: String,
}

/// The fields of an admission request this webhook reads; the rest is ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Copied into the response.
    pub uid: String,
    /// Kind of the object.
    #[serde(default)]
    pub kind: Option<GroupVersionKind>,
    /// `CREATE`, `UPDATE`, …
    #[serde(default)]
    pub operation: Option<String>,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name (may be empty for generateName pods).
    #[serde(default)]
    pub name: Option<String>,
    /// The object as it will be stored.
    #[serde(default)]
    pub object: Option<Value>,
}

/// `status` of a denied review.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdmissionStatus {
    /// HTTP-like code (403 denied, 400 bad request).
    pub code: u16,
    /// Why.
    pub message: String,
}

/// Our answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the object is admitted.
    pub allowed: bool,
    /// Why not (or a note), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AdmissionStatus>,
    /// Base64 of the JSONPatch document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
}

/// Webhook settings (HAMi's `--scheduler-name`, `--force-overwrite-default-scheduler` and the
/// `nvidia:` section of the device configuration).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The scheduler name set on managed pods (`hami-scheduler`).
    pub scheduler_name: String,
    /// Overwrite `default-scheduler` (HAMi's default: true).
    pub force_overwrite_default_scheduler: bool,
    /// Resource names and validations.
    pub translator: RequestTranslator,
    /// NVIDIA settings: resource names, default count, core policy, overwriteEnv, runtime class.
    pub nvidia: NvidiaConfig,
    /// Every family's quota resources (for the quota check's messages and units).
    pub quota_names: QuotaNames,
}

impl WebhookConfig {
    /// Settings from a device configuration.
    pub fn new(scheduler_name: impl Into<String>, config: &DeviceConfig) -> WebhookConfig {
        WebhookConfig {
            scheduler_name: scheduler_name.into(),
            force_overwrite_default_scheduler: true,
            translator: RequestTranslator::new(config),
            nvidia: config.nvidia.clone(),
            quota_names: QuotaNames::new(config),
        }
    }
}

/// The HTTP answer to one review: status code and JSON or text body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookReply {
    /// HTTP status (200 for every answered review; 400 when no review could be read).
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// Whether `body` is JSON (else plain text).
    pub json: bool,
}

fn text_reply(status: u16, msg: String) -> WebhookReply {
    WebhookReply {
        status,
        body: msg.into_bytes(),
        json: false,
    }
}

fn review_reply(resp: AdmissionResponse) -> WebhookReply {
    let review = AdmissionReview {
        api_version: Some(ADMISSION_API_VERSION.into()),
        kind: Some("AdmissionReview".into()),
        request: None,
        response: Some(resp),
    };
    match serde_json::to_vec(&review) {
        Ok(body) => WebhookReply {
            status: 200,
            body,
            json: true,
        },
        Err(e) => text_reply(500, format!("encoding the AdmissionReview failed: {e}")),
    }
}

fn deny(uid: &str, code: u16, message: impl Into<String>) -> AdmissionResponse {
    AdmissionResponse {
        uid: uid.to_string(),
        allowed: false,
        status: Some(AdmissionStatus {
            code,
            message: message.into(),
        }),
        patch: None,
        patch_type: None,
    }
}

fn allow(uid: &str) -> AdmissionResponse {
    AdmissionResponse {
        uid: uid.to_string(),
        allowed: true,
        ..AdmissionResponse::default()
    }
}

/// Answer one review body. Never panics: unreadable JSON gets HTTP 400 with the parser's
/// message; a readable uid with a bad request gets a review with `allowed: false`.
pub fn handle(body: &[u8], cfg: &WebhookConfig) -> WebhookReply {
    handle_with_quota(body, cfg, None)
}

/// The namespace an AdmissionReview body is about (`request.namespace`, else the object's),
/// read leniently: `None` when the body does not say. Used to look its quota up before the
/// review is decided.
pub fn review_namespace(body: &[u8]) -> Option<String> {
    let raw: Value = serde_json::from_slice(body).ok()?;
    raw.pointer("/request/namespace")
        .or_else(|| raw.pointer("/request/object/metadata/namespace"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// [`handle`], plus HAMi's quota check when `quota` gives what a namespace may still take
/// (the scheduler process knows it from its ledger; the standalone webhook does not).
pub fn handle_with_quota(
    body: &[u8],
    cfg: &WebhookConfig,
    quota: Option<(String, QuotaLeft)>,
) -> WebhookReply {
    let raw: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return text_reply(400, format!("malformed AdmissionReview JSON: {e}")),
    };
    let uid = raw
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let review: AdmissionReview = match serde_json::from_value(raw) {
        Ok(r) => r,
        Err(e) => {
            return match uid {
                Some(u) => review_reply(deny(&u, 400, format!("malformed AdmissionReview: {e}"))),
                None => text_reply(400, format!("malformed AdmissionReview: {e}")),
            };
        }
    };
    let Some(req) = review.request else {
        return text_reply(400, "AdmissionReview has no request".into());
    };
    review_reply(review_request_with_quota(&req, cfg, quota.as_ref()))
}

/// Decide one admission request (no quota check).
pub fn review_request(req: &AdmissionRequest, cfg: &WebhookConfig) -> AdmissionResponse {
    review_request_with_quota(req, cfg, None)
}

/// HAMi's webhook quota check, per family (HAMi keys quotas by resource name): the pod's
/// request of each family — memory per card × cards and cores per card × cards, summed over
/// the app containers, or the largest init container's if that is more (init containers run
/// one after another) — against what the namespace may still take of that family. A
/// percentage of memory is only known once a card is chosen and is not counted, as in HAMi.
/// `Some(reason)` denies, naming the namespace, the resource and both amounts.
pub fn quota_denial(req: &PodRequest, left: &QuotaLeft, cfg: &WebhookConfig) -> Option<String> {
    /// Memory MiB and cores.
    type Amount = (u64, u64);
    // Per family: app containers summed, the largest init container.
    let mut need: BTreeMap<FamilyId, (Amount, Amount)> = BTreeMap::new();
    for c in &req.containers {
        let mut here: BTreeMap<FamilyId, (u64, u64)> = BTreeMap::new();
        for d in &c.devices {
            let h = here.entry(d.family).or_default();
            if let MemoryRequest::Mib(m) = d.memory {
                h.0 = h.0.saturating_add(m.saturating_mul(u64::from(d.count)));
            }
            h.1 =
                h.1.saturating_add(u64::from(d.cores).saturating_mul(u64::from(d.count)));
        }
        for (f, (mem, cores)) in here {
            let (app, init) = need.entry(f).or_default();
            if c.init {
                *init = (init.0.max(mem), init.1.max(cores));
            } else {
                *app = (app.0.saturating_add(mem), app.1.saturating_add(cores));
            }
        }
    }
    let ns = &req.key.namespace;
    for (f, (app, init)) in need {
        let (mem, cores) = (app.0.max(init.0), app.1.max(init.1));
        let l = left.of(f);
        if mem > l.memory_mib {
            let resource = cfg.quota_names.memory_resource(f).unwrap_or(f.spec().name);
            return Some(format!(
                "ResourceQuotaNotFit: namespace {ns} may still take {} MiB of {resource} under its ResourceQuota; the pod asks {mem} MiB",
                l.memory_mib
            ));
        }
        if cores > l.cores {
            let resource = cfg.quota_names.cores_resource(f).unwrap_or(f.spec().name);
            return Some(format!(
                "ResourceQuotaNotFit: namespace {ns} may still take {} of {resource} under its ResourceQuota; the pod asks {cores}",
                l.cores
            ));
        }
    }
    None
}

/// Decide one admission request; with `quota` (namespace, what it may still take) also deny a
/// pod that cannot fit its namespace's device quota, as HAMi's webhook does.
pub fn review_request_with_quota(
    req: &AdmissionRequest,
    cfg: &WebhookConfig,
    quota: Option<&(String, QuotaLeft)>,
) -> AdmissionResponse {
    let uid = req.uid.as_str();
    let is_pod = req.kind.as_ref().is_none_or(|k| k.kind == "Pod");
    let is_create = req.operation.as_deref().is_none_or(|o| o == "CREATE");
    if !is_pod || !is_create {
        return allow(uid);
    }
    let Some(object) = req.object.as_ref() else {
        return deny(uid, 400, "admission request has no object");
    };
    let mut pod: Pod = match serde_json::from_value(object.clone()) {
        Ok(p) => p,
        Err(e) => return deny(uid, 400, format!("object is not a valid Pod: {e}")),
    };
    if pod.metadata.namespace.is_none() {
        pod.metadata.namespace = req.namespace.clone();
    }
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        pod.metadata.name = pod
            .metadata
            .generate_name
            .clone()
            .or_else(|| req.name.clone());
    }
    let Some(spec) = pod.spec.as_ref() else {
        return deny(uid, 400, "pod has no spec");
    };
    if spec.containers.is_empty() {
        return deny(uid, 403, "pod has no containers");
    }
    let current = spec.scheduler_name.as_deref().unwrap_or("");
    if !current.is_empty()
        && current != cfg.scheduler_name
        && (current != "default-scheduler" || !cfg.force_overwrite_default_scheduler)
    {
        return allow(uid);
    }
    let init = spec.init_containers.as_deref().unwrap_or(&[]);
    let all: Vec<(String, &Container)> = init
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("/spec/initContainers/{i}"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("/spec/containers/{i}"), c)),
        )
        .collect();
    let managed = |c: &Container| {
        c.resources.as_ref().is_some_and(|r| {
            [r.limits.as_ref(), r.requests.as_ref()]
                .into_iter()
                .flatten()
                .any(|m| m.keys().any(|k| cfg.translator.is_managed_resource(k)))
        })
    };
    if !all.iter().any(|(_, c)| managed(c)) {
        return allow(uid);
    }
    if let Some((_, c)) = all.iter().find(|(_, c)| {
        c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
    }) {
        return deny(uid, 403, format!("container {} is privileged", c.name));
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return deny(uid, 403, "pod has node assigned");
    }
    let request = match cfg.translator.translate(&pod) {
        Ok(r) => r,
        Err(e) => return deny(uid, 403, e.to_string()),
    };
    if let Some((ns, left)) = quota
        && *ns == request.key.namespace
        && let Some(why) = quota_denial(&request, left, cfg)
    {
        return deny(uid, 403, why);
    }
    let mut ops: Vec<Value> = Vec::new();
    for (path, c) in &all {
        container_ops(path, c, cfg, &mut ops);
    }
    if current != cfg.scheduler_name {
        ops.push(json!({"op": "add", "path": "/spec/schedulerName", "value": cfg.scheduler_name}));
    }
    let rc = cfg.nvidia.runtime_class_name.as_str();
    if !rc.is_empty() && spec.runtime_class_name.is_none() {
        ops.push(json!({"op": "add", "path": "/spec/runtimeClassName", "value": rc}));
    }
    let mut resp = allow(uid);
    if !ops.is_empty() {
        let doc = Value::Array(ops).to_string();
        resp.patch = Some(base64::engine::general_purpose::STANDARD.encode(doc));
        resp.patch_type = Some("JSONPatch".into());
    }
    resp
}

/// Escape a JSON-pointer token (`/` → `~1`, `~` → `~0`).
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The NVIDIA part of HAMi's per-container mutation: default card count, task priority and
/// core-policy environment, and `NVIDIA_VISIBLE_DEVICES=none` with `overwriteEnv`.
fn container_ops(path: &str, c: &Container, cfg: &WebhookConfig, ops: &mut Vec<Value>) {
    let n = &cfg.nvidia;
    let res = c.resources.as_ref();
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let has = |name: &str| {
        limits.is_some_and(|m| m.contains_key(name))
            || requests.is_some_and(|m| m.contains_key(name))
    };
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(p) = limits
        .and_then(|m| m.get(&n.resource_priority_name))
        .or_else(|| requests.and_then(|m| m.get(&n.resource_priority_name)))
    {
        env.push(("CUDA_TASK_PRIORITY".into(), p.0.trim().to_string()));
    }
    let mut has_count = has(&n.resource_count_name);
    let wants_share = has(&n.resource_memory_name)
        || has(&n.resource_memory_percentage_name)
        || has(&n.resource_core_name);
    if !has_count && wants_share && n.default_gpu_num > 0 {
        let count = json!(n.default_gpu_num.to_string());
        let token = pointer_token(&n.resource_count_name);
        if limits.is_some() {
            ops.push(json!({"op": "add", "path": format!("{path}/resources/limits/{token}"), "value": count}));
        } else if res.is_some() {
            ops.push(json!({"op": "add", "path": format!("{path}/resources/limits"), "value": {n.resource_count_name.clone(): count}}));
        } else {
            ops.push(json!({"op": "add", "path": format!("{path}/resources"), "value": {"limits": {n.resource_count_name.clone(): count}}}));
        }
        has_count = true;
    }
    if has_count && !n.gpu_core_policy.is_empty() && n.gpu_core_policy != "default" {
        env.push((
            "GPU_CORE_UTILIZATION_POLICY".into(),
            n.gpu_core_policy.clone(),
        ));
    }
    if !has_count && n.overwrite_env {
        env.push(("NVIDIA_VISIBLE_DEVICES".into(), "none".into()));
    }
    let existing = c.env.as_deref().unwrap_or(&[]);
    env.retain(|(k, _)| !existing.iter().any(|e| &e.name == k));
    if env.is_empty() {
        return;
    }
    let vars: Vec<Value> = env
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if existing.is_empty() {
        ops.push(json!({"op": "add", "path": format!("{path}/env"), "value": vars}));
    } else {
        for v in vars {
            ops.push(json!({"op": "add", "path": format!("{path}/env/-"), "value": v}));
        }
    }
}

async fn webhook_route(
    axum::extract::State(cfg): axum::extract::State<std::sync::Arc<WebhookConfig>>,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let b = match crate::extender::server::read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reply = handle(&b, &cfg);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ct = if reply.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, ct)], reply.body).into_response()
}

/// The routes of a webhook-only process: `POST /webhook`, `GET /healthz`, `GET /readyz`.
pub fn router(cfg: std::sync::Arc<WebhookConfig>) -> axum::Router {
    axum::Router::new()
        .route("/webhook", axum::routing::post(webhook_route))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .with_state(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_core::build::PodBuilder;
    use hami_core::ledger::{FamilyQuota, Ledger, Quota};

    /// HAMi's webhook quota check per family: a pod is measured against its own family's
    /// limits only, app containers summed, the largest init container if that is more.
    #[test]
    fn quota_denial_per_family_table() {
        let mlu = FamilyId::by_name("cambricon").expect("cambricon");
        let dcu = FamilyId::by_name("hygon").expect("hygon");
        let cfg = WebhookConfig::new("hami-scheduler", &DeviceConfig::default());
        let mlu_ctr = |units: &'static str| -> Vec<(&'static str, &'static str)> {
            vec![
                ("cambricon.com/vmlu", "1"),
                ("cambricon.com/mlu.smlu.vmemory", units),
            ]
        };
        // (what, pod, Ok or the denial's text)
        let cases: Vec<(&str, Pod, Result<(), &str>)> = vec![
            (
                "8 units of 256 MiB fit 4096 MiB",
                PodBuilder::new("p").container("c", &mlu_ctr("8")).build(),
                Ok(()),
            ),
            (
                "20 units do not",
                PodBuilder::new("p").container("c", &mlu_ctr("20")).build(),
                Err(
                    "namespace default may still take 4096 MiB of cambricon.com/mlu.smlu.vmemory under its ResourceQuota; the pod asks 5120 MiB",
                ),
            ),
            (
                "app containers are summed",
                PodBuilder::new("p")
                    .container("a", &mlu_ctr("10"))
                    .container("b", &mlu_ctr("10"))
                    .build(),
                Err("the pod asks 5120 MiB"),
            ),
            (
                "an init container runs alone: the larger of the two counts",
                PodBuilder::new("p")
                    .init_container("i", &mlu_ctr("12"))
                    .container("a", &mlu_ctr("4"))
                    .build(),
                Ok(()),
            ),
            (
                "a too large init container",
                PodBuilder::new("p")
                    .init_container("i", &mlu_ctr("17"))
                    .container("a", &mlu_ctr("4"))
                    .build(),
                Err("the pod asks 4352 MiB"),
            ),
            (
                "another family's pod is not limited by the Cambricon quota",
                PodBuilder::new("p").gpu(1, 30000, 50).build(),
                Ok(()),
            ),
            (
                "Hygon cores over its own limit",
                PodBuilder::new("p")
                    .container(
                        "c",
                        &[
                            ("hygon.com/dcunum", "2"),
                            ("hygon.com/dcumem", "1000"),
                            ("hygon.com/dcucores", "30"),
                        ],
                    )
                    .build(),
                Err(
                    "may still take 50 of hygon.com/dcucores under its ResourceQuota; the pod asks 60",
                ),
            ),
        ];
        let mut ledger = Ledger::new();
        ledger.set_quota(
            "default",
            Some(
                Quota::new()
                    .with(mlu, FamilyQuota::memory(4096))
                    .with(dcu, FamilyQuota::cores(50)),
            ),
        );
        let left = ledger.quota_left("default").expect("quota");
        for (what, pod, want) in cases {
            let req = cfg.translator.translate(&pod).expect("valid pod");
            match (quota_denial(&req, &left, &cfg), want) {
                (None, Ok(())) => {}
                (Some(why), Err(text)) => {
                    assert!(why.starts_with("ResourceQuotaNotFit: "), "{what}: {why}");
                    assert!(why.contains(text), "{what}: {why}");
                }
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }
}
