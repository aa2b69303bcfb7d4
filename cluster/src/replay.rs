//! `hami replay`: drive a real control plane through a simulator plan, one step at a time, and
//! record every placement the real extender made.
//!
//! The plan (JSON written by `hami_sim::des::placements`, read here with the same field names)
//! lists the nodes as the simulator's controller saw them and the steps in the simulator's
//! processing order: `schedule` a pod (create it on first use, then wait until it is bound or
//! reported unschedulable) and `delete` a pod. The driver:
//!
//! 1. creates the namespace and one KWOK Node per plan node (allocatable as a device plugin would
//!    report, label `hami.io/replay=<namespace>`), but never their HAMi annotations: the node
//!    agent, fed the fake inventory generated from the same plan, must publish them;
//! 2. waits until every node's registration, decoded by the core's codec, equals what the
//!    simulator decoded, and (with `metrics_url`) until the scheduler's ledger lists every card;
//! 3. runs the steps. Pods get a `nodeSelector` on the replay label, so kube-scheduler sends our
//!    extender exactly the scenario's nodes. After a bind it plays kubelet's part of the allocate
//!    protocol (bind phase `success`, to-allocate emptied) so the next pod is not held back; after
//!    a delete it waits until the scheduler's ledger (its `/metrics`) no longer holds the pod, so
//!    the next decision sees the same state the simulator's did.
//!
//! A pod reported unschedulable is **withdrawn** (deleted) once its verdict is recorded, and
//! created again at the step where the simulator retries and places it. A waiting pod holds
//! nothing, so the cluster's state is the same; what this leaves out is the order in which
//! several waiting pods are retried after a departure — the simulator retries them in arrival
//! order, kube-scheduler by its queue (priority, then the backoff that grows with each failed
//! attempt, so the pod that waited longest is often retried last). That order is
//! kube-scheduler's, not a decision of ours, and with both waiting the first difference would
//! be which pod got the freed node.

use ::kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use hami_core::annotations::node_from_annotations;
use hami_core::codec::devices::decode_pod_devices;
use hami_core::codec::keys;
use hami_core::family::FamilyId;
use hami_core::model::Node as CoreNode;
use hami_core::replay::{CardGrant, Observation, Step};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, NodeStatus, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The label every replayed node and pod carries (value: the namespace).
pub const REPLAY_LABEL: &str = "hami.io/replay";

/// One node of a plan (the fields the driver needs; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayNode {
    /// Node name.
    pub name: String,
    /// Registration annotations the simulator's controller saw.
    pub annotations: BTreeMap<String, String>,
    /// Allocatable CPU, milli (0 = not tracked: a large value is advertised).
    pub cpu_milli: u64,
    /// Allocatable memory, MiB (0 = not tracked: a large value is advertised).
    pub memory_mib: u64,
    /// `nvidia.com/gpu` allocatable (cards × split).
    pub gpu_allocatable: u64,
}

/// A plan as the driver reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayPlan {
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// Node policy the extender must run with.
    pub node_policy: String,
    /// GPU policy the extender must run with.
    pub gpu_policy: String,
    /// Nodes.
    pub nodes: Vec<ReplayNode>,
    /// Pod objects by class name.
    pub classes: BTreeMap<String, Pod>,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Kubeconfig file.
    pub kubeconfig: PathBuf,
    /// Namespace for the pods (created when missing); also the value of [`REPLAY_LABEL`].
    pub namespace: String,
    /// The scheduler's plain-HTTP metrics URL (`http://127.0.0.1:PORT/metrics`), used to wait
    /// until its ledger has seen registrations and deletions. Without it the driver sleeps.
    pub metrics_url: Option<String>,
    /// How long a pod may take to be bound (or reported unschedulable).
    pub step_timeout: Duration,
    /// How long a pod the simulator placed may stay unschedulable before that is the outcome.
    pub settle: Duration,
    /// How long the node agent may take to publish the registrations.
    pub registration_timeout: Duration,
}

/// What a replay produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayResult {
    /// One per `schedule` step, in order.
    pub observed: Vec<Observation>,
    /// Seconds from a pod's creation to its bind, per bound pod (first attempt only).
    pub bind_latency_s: Vec<f64>,
    /// Wall seconds of the whole step loop.
    pub steps_wall_s: f64,
}

fn kerr(what: &str) -> impl Fn(::kube::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn is_status(e: &::kube::Error, code: u16) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == code)
}

/// A minimal HTTP/1.0 GET for a plain `http://host:port/path` URL on loopback.
pub async fn http_get(url: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--metrics-url {url:?}: only plain http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("--metrics-url {url}: {e}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("--metrics-url {url}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("--metrics-url {url}: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("--metrics-url {url}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Err(format!("--metrics-url {url}: {status}"));
    }
    Ok(body.to_string())
}

/// Labels of one Prometheus text line `name{a="b",c="d"} value` (`None` for other names).
pub fn metric_labels(line: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let rest = line.strip_prefix(name)?.strip_prefix('{')?;
    let mut out = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next() != Some('"') {
            return Some(out);
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            o => o,
                        });
                    }
                }
                '"' => break,
                o => val.push(o),
            }
        }
        out.insert(key.trim().to_string(), val);
        match chars.next() {
            Some(',') => continue,
            _ => return Some(out),
        }
    }
}

/// From the scheduler's metrics: cards per node in its ledger, and the pods holding grants.
fn ledger_from_metrics(text: &str) -> (BTreeMap<String, usize>, BTreeSet<(String, String)>) {
    let mut cards = BTreeMap::new();
    let mut pods = BTreeSet::new();
    for line in text.lines() {
        if let Some(l) = metric_labels(line, "hami_gpu_memory_limit_bytes") {
            if let Some(n) = l.get("node") {
                *cards.entry(n.clone()).or_insert(0) += 1;
            }
        } else if let Some(l) = metric_labels(line, "hami_vgpu_memory_allocated_bytes")
            && let (Some(ns), Some(p)) = (l.get("namespace"), l.get("pod"))
        {
            pods.insert((ns.clone(), p.clone()));
        }
    }
    (cards, pods)
}

fn describe_node(n: &CoreNode) -> Vec<String> {
    let mut out: Vec<String> = n
        .devices
        .iter()
        .map(|d| {
            format!(
                "card {} index {} model {} memory {} MiB cores {} split {} numa {} healthy {}",
                d.uuid, d.index, d.model, d.memory_mib, d.cores, d.split_count, d.numa, d.healthy
            )
        })
        .collect();
    let k = n.devices.len();
    for a in 0..k {
        for b in 0..k {
            let s = n.links.get(a, b);
            if a != b && s > 0 {
                out.push(format!("link {a}-{b} score {s}"));
            }
        }
    }
    out
}

/// Why the real registration differs from the simulator's (first differing line), or `None`.
fn registration_difference(want: &CoreNode, got: &CoreNode) -> Option<String> {
    if want.devices == got.devices && want.links == got.links {
        return None;
    }
    let (w, g) = (describe_node(want), describe_node(got));
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            return Some(format!(
                "simulator: {}; node agent: {}",
                a.map_or("(nothing)", String::as_str),
                b.map_or("(nothing)", String::as_str)
            ));
        }
    }
    Some("the decoded nodes differ".into())
}

fn node_object(n: &ReplayNode, label: &str) -> Node {
    let cpu = if n.cpu_milli > 0 {
        format!("{}m", n.cpu_milli)
    } else {
        "1000".into()
    };
    let mem = if n.memory_mib > 0 {
        format!("{}Mi", n.memory_mib)
    } else {
        "4Ti".into()
    };
    let res: BTreeMap<String, Quantity> = [
        ("cpu", cpu),
        ("memory", mem),
        ("pods", "1000".to_string()),
        ("nvidia.com/gpu", n.gpu_allocatable.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(n.name.clone()),
            labels: Some(
                [
                    ("kubernetes.io/hostname", n.name.as_str()),
                    ("type", "kwok"),
                    (REPLAY_LABEL, label),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            annotations: Some(
                [("kwok.x-k8s.io/node".to_string(), "fake".to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(res.clone()),
            capacity: Some(res),
            ..NodeStatus::default()
        }),
    }
}

/// The pod object for step `pod` of class `class`.
pub fn pod_object(plan: &ReplayPlan, pod: &str, class: &str, ns: &str) -> Result<Pod, String> {
    let mut p = plan.classes.get(class).cloned().ok_or_else(|| {
        format!("plan: step for pod {pod} names class {class:?}, which the plan does not define")
    })?;
    p.metadata.name = Some(pod.to_string());
    p.metadata.namespace = Some(ns.to_string());
    p.metadata.uid = None;
    p.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REPLAY_LABEL.into(), ns.into());
    let spec = p
        .spec
        .as_mut()
        .ok_or_else(|| format!("plan: class {class:?} has no pod spec"))?;
    if spec.priority.is_some_and(|v| v != 0) {
        return Err(format!(
            "plan: class {class:?} sets priority; replay creates pods without PriorityClasses"
        ));
    }
    spec.priority = None;
    spec.termination_grace_period_seconds = Some(0);
    spec.node_selector
        .get_or_insert_with(BTreeMap::new)
        .insert(REPLAY_LABEL.into(), ns.into());
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if c.image.as_deref().is_none_or(str::is_empty) {
            c.image = Some("registry.invalid/hami-replay:never-pulled".into());
        }
    }
    Ok(p)
}

/// Cards per container from a pod's allocated device annotations; indexes from `node`.
pub fn grants_of(
    ann: &BTreeMap<String, String>,
    node: Option<&CoreNode>,
) -> Result<Vec<Vec<CardGrant>>, String> {
    let mut out: Vec<Vec<CardGrant>> = Vec::new();
    for f in FamilyId::all() {
        let key = f.spec().allocated_annotation;
        let Some(v) = ann.get(key) else { continue };
        let devs = decode_pod_devices(key, v).map_err(|e| e.to_string())?;
        if out.len() < devs.len() {
            out.resize(devs.len(), Vec::new());
        }
        for (ci, c) in devs.iter().enumerate() {
            for d in c {
                out[ci].push(CardGrant {
                    uuid: d.uuid.clone(),
                    index: node
                        .and_then(|n| n.devices.iter().find(|x| x.uuid == d.uuid).map(|x| x.index)),
                    memory_mib: i64::from(d.usedmem),
                    cores: i64::from(d.usedcores),
                });
            }
        }
    }
    Ok(out)
}

fn unschedulable_message(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

struct Driver {
    nodes: Api<Node>,
    pods: Api<Pod>,
    opts: ReplayOptions,
    registered: BTreeMap<String, CoreNode>,
}

impl Driver {
    async fn metrics(&self) -> Result<Option<String>, String> {
        match &self.opts.metrics_url {
            Some(u) => http_get(u).await.map(Some),
            None => Ok(None),
        }
    }

    async fn setup(&mut self, client: ::kube::Client, plan: &ReplayPlan) -> Result<(), String> {
        let ns_api: Api<Namespace> = Api::all(client);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.opts.namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match ns_api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(format!("creating namespace {}: {e}", self.opts.namespace)),
        }
        for n in &plan.nodes {
            let obj = node_object(n, &self.opts.namespace);
            match self.nodes.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) => {
                    let cur = self
                        .nodes
                        .get(&n.name)
                        .await
                        .map_err(kerr(&format!("reading node {}", n.name)))?;
                    let ours = cur
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(REPLAY_LABEL))
                        .is_some_and(|v| *v == self.opts.namespace);
                    if !ours {
                        return Err(format!(
                            "node {} already exists and is not a replay node of namespace {} (label {REPLAY_LABEL}); delete it or use another cluster",
                            n.name, self.opts.namespace
                        ));
                    }
                }
                Err(e) => return Err(format!("creating node {}: {e}", n.name)),
            }
        }
        // The registrations: published by the node agent, decoded as the controller would.
        let mut want = BTreeMap::new();
        for n in &plan.nodes {
            let w = node_from_annotations(&n.name, &n.annotations, 0, 0)
                .map_err(|e| format!("plan: node {}: {e}", n.name))?;
            want.insert(n.name.clone(), w);
        }
        let deadline = Instant::now() + self.opts.registration_timeout;
        loop {
            let mut first_bad: Option<String> = None;
            for (name, w) in &want {
                if self.registered.get(name) == Some(w) {
                    continue;
                }
                let cur = self
                    .nodes
                    .get(name)
                    .await
                    .map_err(kerr(&format!("reading node {name}")))?;
                let ann = cur.metadata.annotations.unwrap_or_default();
                let got = node_from_annotations(name, &ann, 0, 0).map_err(|e| {
                    format!(
                        "node {name}: registration published by the node agent does not decode: {e}"
                    )
                })?;
                match registration_difference(w, &got) {
                    None => {
                        self.registered.insert(name.clone(), got);
                    }
                    Some(d) => {
                        if first_bad.is_none() {
                            first_bad = Some(format!("node {name}: {d}"));
                        }
                    }
                }
            }
            let Some(bad) = first_bad else { break };
            if Instant::now() > deadline {
                return Err(format!(
                    "the node agent's registrations do not match the scenario after {:?} (is `hami node-agent --inventory` running with the inventory from `hami replay inventory`, and the device config's split/scaling at their defaults?): {bad}",
                    self.opts.registration_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The scheduler's ledger must list every card before the first decision.
        if self.opts.metrics_url.is_some() {
            loop {
                let text = self.metrics().await?.unwrap_or_default();
                let (cards, _) = ledger_from_metrics(&text);
                let missing = want
                    .iter()
                    .find(|(n, w)| cards.get(*n).copied().unwrap_or(0) != w.devices.len());
                let Some((n, w)) = missing else { break };
                if Instant::now() > deadline {
                    return Err(format!(
                        "the scheduler's ledger (metrics) lists {} cards on node {n}, the scenario {}",
                        cards.get(n).copied().unwrap_or(0),
                        w.devices.len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }

    /// Play kubelet's part after a bind: Allocate done (bind phase success, nothing left to
    /// allocate), so the extender does not hold back the next same-shape bind on this node.
    async fn allocated(&self, pod: &Pod) -> Result<(), String> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ann = pod.metadata.annotations.clone().unwrap_or_default();
        let mut patch = serde_json::Map::new();
        patch.insert(keys::BIND_PHASE.into(), "success".into());
        for f in FamilyId::all() {
            if let Some(k) = f.spec().to_allocate()
                && let Some(v) = ann.get(k)
            {
                let n = decode_pod_devices(k, v).map(|d| d.len()).unwrap_or(0);
                patch.insert(k.into(), ";".repeat(n).into());
            }
        }
        let body = serde_json::json!({ "metadata": { "annotations": patch } });
        self.pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(body))
            .await
            .map_err(kerr(&format!("marking pod {name} allocated")))?;
        Ok(())
    }

    async fn schedule(
        &self,
        step: usize,
        pod: &str,
        expect_bound: bool,
        started: Instant,
    ) -> Result<(Observation, Option<f64>), String> {
        let deadline = started + self.opts.step_timeout;
        let mut unsched_since: Option<Instant> = None;
        loop {
            let p = self
                .pods
                .get(pod)
                .await
                .map_err(kerr(&format!("reading pod {pod}")))?;
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            if let Some(node) = node {
                let ann = p.metadata.annotations.clone().unwrap_or_default();
                let containers = grants_of(&ann, self.registered.get(&node))
                    .map_err(|e| format!("pod {pod}: {e}"))?;
                let phase = ann.get(keys::BIND_PHASE).map(String::as_str);
                if phase == Some("allocating") {
                    self.allocated(&p).await?;
                }
                return Ok((
                    Observation {
                        step,
                        pod: pod.into(),
                        node: Some(node),
                        containers,
                        reason: None,
                    },
                    Some(started.elapsed().as_secs_f64()),
                ));
            }
            if let Some(msg) = unschedulable_message(&p) {
                let since = *unsched_since.get_or_insert_with(Instant::now);
                if !expect_bound || since.elapsed() >= self.opts.settle {
                    return Ok((
                        Observation {
                            step,
                            pod: pod.into(),
                            node: None,
                            containers: Vec::new(),
                            reason: Some(msg),
                        },
                        None,
                    ));
                }
            }
            if Instant::now() > deadline {
                return Ok((
                    Observation {
                        step,
                        pod: pod.into(),
                        node: None,
                        containers: Vec::new(),
                        reason: Some(format!(
                            "neither bound nor reported unschedulable within {:?}",
                            self.opts.step_timeout
                        )),
                    },
                    None,
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn delete(&self, pod: &str) -> Result<(), String> {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match self.pods.delete(pod, &dp).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(format!("deleting pod {pod}: {e}")),
        }
        let deadline = Instant::now() + self.opts.step_timeout;
        loop {
            match self.pods.get_opt(pod).await {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) => return Err(format!("reading pod {pod}: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pod {pod} still exists {:?} after its deletion",
                    self.opts.step_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The scheduler must have released it before the next decision.
        if self.opts.metrics_url.is_some() {
            let key = (self.opts.namespace.clone(), pod.to_string());
            loop {
                let text = self.metrics().await?.unwrap_or_default();
                let (_, pods) = ledger_from_metrics(&text);
                if !pods.contains(&key) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the scheduler's ledger still holds pod {pod} {:?} after its deletion",
                        self.opts.step_timeout
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }
}

/// Run the plan against the cluster of `opts.kubeconfig`. `expected_bound[i]` says whether the
/// simulator bound the pod at `schedule` step `i` (it decides how long an unschedulable verdict
/// is waited out). `progress` receives a line now and then.
pub async fn replay(
    plan: &ReplayPlan,
    expected_bound: &BTreeMap<usize, bool>,
    opts: ReplayOptions,
    mut progress: impl FnMut(&str),
) -> Result<ReplayResult, String> {
    crate::tls::install_ring_provider();
    if let Some(u) = &opts.metrics_url
        && !u.starts_with("http://")
    {
        return Err(format!(
            "--metrics-url {u:?}: only plain http:// URLs are supported (the scheduler's --metrics-bind-address serves plain HTTP)"
        ));
    }
    let kc = ::kube::config::Kubeconfig::read_from(&opts.kubeconfig)
        .map_err(|e| format!("--kubeconfig {}: {e}", opts.kubeconfig.display()))?;
    let cfg = ::kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| format!("--kubeconfig {}: {e}", opts.kubeconfig.display()))?;
    let client = ::kube::Client::try_from(cfg)
        .map_err(|e| format!("--kubeconfig {}: {e}", opts.kubeconfig.display()))?;
    let mut d = Driver {
        nodes: Api::all(client.clone()),
        pods: Api::namespaced(client.clone(), &opts.namespace),
        opts,
        registered: BTreeMap::new(),
    };
    let t0 = Instant::now();
    d.setup(client, plan).await?;
    progress(&format!(
        "{} nodes registered as the simulator saw them ({:.1}s); {} steps to run",
        plan.nodes.len(),
        t0.elapsed().as_secs_f64(),
        plan.steps.len()
    ));
    let mut res = ReplayResult::default();
    // Pods that exist in the cluster now (created, not deleted or withdrawn).
    let mut live: BTreeSet<String> = BTreeSet::new();
    let t1 = Instant::now();
    for (i, s) in plan.steps.iter().enumerate() {
        match s {
            Step::Schedule { pod, class } => {
                let started = Instant::now();
                let created = live.insert(pod.clone());
                if created {
                    let obj = pod_object(plan, pod, class, &d.opts.namespace)?;
                    d.pods
                        .create(&PostParams::default(), &obj)
                        .await
                        .map_err(kerr(&format!("creating pod {pod}")))?;
                }
                let bound = expected_bound.get(&i).copied().unwrap_or(true);
                let (o, lat) = d.schedule(i, pod, bound, started).await?;
                if created && let Some(l) = lat {
                    res.bind_latency_s.push(l);
                }
                let waiting = o.node.is_none();
                res.observed.push(o);
                if waiting {
                    // Withdrawn until the simulator's retry (module docs).
                    d.delete(pod).await?;
                    live.remove(pod);
                }
            }
            Step::Delete { pod } => {
                d.delete(pod).await?;
                live.remove(pod);
            }
        }
        if (i + 1) % 50 == 0 {
            progress(&format!(
                "{}/{} steps ({:.1}s)",
                i + 1,
                plan.steps.len(),
                t1.elapsed().as_secs_f64()
            ));
        }
    }
    res.steps_wall_s = t1.elapsed().as_secs_f64();
    Ok(res)
}

/// [`replay`] on its own runtime.
pub fn replay_blocking(
    plan: &ReplayPlan,
    expected_bound: &BTreeMap<usize, bool>,
    opts: ReplayOptions,
    progress: impl FnMut(&str),
) -> Result<ReplayResult, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(replay(plan, expected_bound, opts, progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_parsed_with_escapes() {
        let l = metric_labels(
            r#"hami_vgpu_memory_allocated_bytes{namespace="ns",node="n-1",pod="p\"x",zone="vGPU"} 1024"#,
            "hami_vgpu_memory_allocated_bytes",
        )
        .expect("labels");
        assert_eq!(l.get("pod").map(String::as_str), Some("p\"x"));
        assert_eq!(l.get("node").map(String::as_str), Some("n-1"));
        assert!(
            metric_labels("hami_other{a=\"b\"} 1", "hami_vgpu_memory_allocated_bytes").is_none()
        );
    }

    #[test]
    fn ledger_from_metrics_counts_cards_and_pods() {
        let text = "\
hami_gpu_memory_limit_bytes{node=\"a\",device_uuid=\"u0\",zone=\"vGPU\"} 1\n\
hami_gpu_memory_limit_bytes{node=\"a\",device_uuid=\"u1\",zone=\"vGPU\"} 1\n\
hami_vgpu_memory_allocated_bytes{namespace=\"r\",node=\"a\",pod=\"p-1\"} 5\n";
        let (cards, pods) = ledger_from_metrics(text);
        assert_eq!(cards.get("a"), Some(&2));
        assert!(pods.contains(&("r".to_string(), "p-1".to_string())));
        assert_eq!(pods.len(), 1);
    }

    #[test]
    fn pod_object_pins_the_pod_to_replay_nodes() {
        let mut classes = BTreeMap::new();
        classes.insert(
            "share".to_string(),
            Pod {
                spec: Some(k8s_openapi::api::core::v1::PodSpec {
                    containers: vec![k8s_openapi::api::core::v1::Container {
                        name: "main".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let plan = ReplayPlan {
            scenario: "s".into(),
            policy: "p".into(),
            node_policy: "binpack".into(),
            gpu_policy: "spread".into(),
            nodes: Vec::new(),
            classes,
            steps: Vec::new(),
        };
        let p = pod_object(&plan, "share-3", "share", "replay").expect("pod");
        let spec = p.spec.expect("spec");
        assert_eq!(
            spec.node_selector
                .and_then(|s| s.get(REPLAY_LABEL).cloned()),
            Some("replay".to_string())
        );
        assert!(spec.containers[0].image.is_some());
        let e = pod_object(&plan, "x-1", "missing", "replay").expect_err("unknown class");
        assert!(e.contains("\"missing\""), "{e}");
    }
}
