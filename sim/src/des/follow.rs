//! The incremental checker's work moved to a helper thread, behind the engine.
//!
//! After each event this thread writes down what the checker reads and the engine will have
//! changed by the time a helper gets to it: per touched pod, its annotations and the
//! fingerprint of the grant the ledger holds for it; per ledger node changed, its usage, pod
//! count and digest ([`Writer`], into a reusable batch of [`Facts`]). What needs the live
//! ledger is checked here while writing: the ledger's own node invariants, that every grant is
//! listed on its node, that no pending pod lacks a reason and no holder lacks its object.
//! A [`Follower`] on the helper decodes the annotations with the production codec, keeps
//! per node the totals they add up to, and compares them with the ledger's, as
//! [`super::checker::Incremental`] does, grant for grant by fingerprint instead of card by
//! card (a 2^-64 chance of a miss, as the node digests already accept).
//!
//! The follower only says *at which event* something disagreed: the engine then runs the
//! same seed again with the checker on its own thread, which stops at the first violation
//! with its usual readable dump, so a run's outcome and error never depend on threads.
//! Nodes with MIG cards are beyond it (their usage is not the sum of whole-card grants).
//!
//! The helper also keeps the fragmentation metric ([`Metric`]): the engine writes down each
//! node's free card shares when it would have computed the node's FGD measure, when the clock
//! moves and when it samples, and the helper repeats the engine's arithmetic in that order,
//! so the numbers are the engine's to the last bit.
//!
//! Why a helper pays: on the Alibaba trace the checker and the metric were a fifth of the
//! engine thread's instructions and more of its cache; what crosses to the helper is a few
//! hundred bytes per event, written into batches that come back for reuse.

use super::checker::Touched;
use hami_core::annotations::{grant_from_annotations, is_grant_annotation};
use hami_core::hash::FastBuild;
use hami_core::ledger::{Ledger, NodeId, NodeView};
use hami_core::model::DeviceMode;
use hami_core::policy::fgd::{AccessRows, TargetWorkload};
use hami_core::policy::paper::card_free_milli;
use hami_core::request::PodKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A byte range of [`Facts::text`].
type Span = (u32, u32);

/// A card's slots, cores and memory (MiB) in use (in this order: 16 bytes, not 24).
type CardUse = (u32, u32, u64);

/// Where one event's facts end in a batch.
#[derive(Debug, Clone, Copy)]
struct EventMark {
    /// The engine's event index.
    event: u64,
    /// End of its pods in [`Facts::pods`].
    pods: u32,
    /// End of its nodes in [`Facts::nodes`].
    nodes: u32,
}

/// One touched pod.
#[derive(Debug, Clone, Copy)]
struct PodFact {
    /// Its index (as [`Touched::index`]).
    index: u32,
    /// Its key's namespace and name; empty unless it holds cards.
    namespace: Span,
    name: Span,
    /// Whether it holds cards (running or binding on a node).
    holds: bool,
    /// Its grant annotations ([`is_grant_annotation`]), a range of [`Facts::pairs`]; empty
    /// unless it holds cards.
    pairs: (u32, u32),
    /// The fingerprint of the grant the ledger holds for it.
    ledger: Option<u64>,
}

/// One ledger node changed by the event.
#[derive(Debug, Clone, Copy)]
struct NodeFact {
    id: NodeId,
    /// `None`: the ledger no longer has it.
    entry: Option<NodeUse>,
}

/// A ledger node's totals.
#[derive(Debug, Clone, Copy)]
struct NodeUse {
    pods: u32,
    digest: u64,
    /// Usage per card by position, a range of [`Facts::cards`].
    cards: (u32, u32),
    /// Its name and card UUIDs (a range of [`Facts::spans`]), the first time it is told.
    named: Option<(Span, (u32, u32))>,
}

/// One step of the fragmentation metric (the FGD measure summed over nodes, and its
/// integral over time), as the engine took it.
#[derive(Debug, Clone, Copy)]
enum MetricOp {
    /// The clock moved to this time (ms).
    Advance(u64),
    /// Recompute node `ni`'s fragmentation (the engine's node index).
    Refresh {
        ni: u32,
        /// Its free CPU (milli-cores) and its cards' free shares (a range of
        /// [`Facts::frees`]); `None` when it counts as nothing (down or not registered).
        cards: Option<(u64, (u32, u32))>,
        /// Its card models (a range of [`Facts::spans`]), the first time they are told.
        models: Option<(u32, u32)>,
    },
    /// A sample of the metric is taken now.
    Sample,
}

/// A batch of events' facts, written by a [`Writer`] and read by a [`Follower`]. Its buffers
/// are kept when cleared, so a batch that goes back and forth allocates nothing once grown.
#[derive(Debug, Default)]
pub struct Facts {
    text: String,
    events: Vec<EventMark>,
    pods: Vec<PodFact>,
    pairs: Vec<(Span, Span)>,
    nodes: Vec<NodeFact>,
    cards: Vec<CardUse>,
    /// Lists of strings (card UUIDs, card models), as ranges of it.
    spans: Vec<Span>,
    /// The fragmentation metric's steps, in the engine's order.
    metric: Vec<MetricOp>,
    /// Free shares of cards (milli-GPU), as ranges of it.
    frees: Vec<u64>,
}

impl Facts {
    /// Events written since the last [`Facts::clear`].
    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// Forget every event, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.events.clear();
        self.pods.clear();
        self.pairs.clear();
        self.nodes.clear();
        self.cards.clear();
        self.spans.clear();
        self.metric.clear();
        self.frees.clear();
    }

    fn put(&mut self, s: &str) -> Span {
        let from = self.text.len() as u32;
        self.text.push_str(s);
        (from, self.text.len() as u32)
    }

    fn get(&self, (from, to): Span) -> &str {
        &self.text[from as usize..to as usize]
    }
}

/// What [`Writer::event`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The event's facts are in the batch.
    Facts,
    /// The live ledger or the pods already show a violation: check on this thread.
    Violation,
    /// A node the follower cannot follow (MIG cards): check on this thread.
    Unfollowable,
}

/// This thread's side: what it has told the follower so far.
#[derive(Debug, Default)]
pub struct Writer {
    /// Per engine node index, whether its card models were told.
    models: Vec<bool>,
    /// The ledger clock at the last event; `None` before the first (every node is told then).
    clock: Option<u64>,
    /// Per ledger node id, whether its name and cards were told.
    named: Vec<bool>,
    /// The ledger nodes changed by the event being written.
    ids: Vec<NodeId>,
}

impl Writer {
    /// Append to `facts` that the clock moved to `t` (ms).
    pub fn advance(&mut self, facts: &mut Facts, t: u64) {
        facts.metric.push(MetricOp::Advance(t));
    }

    /// Append to `facts` that a sample of the metric is taken now.
    pub fn sample(&mut self, facts: &mut Facts) {
        facts.metric.push(MetricOp::Sample);
    }

    /// Append to `facts` that the fragmentation of engine node `ni` is recomputed now, from
    /// `view` (`None`: it counts as nothing).
    pub fn refresh(&mut self, facts: &mut Facts, ni: u32, view: Option<&NodeView<'_>>) {
        let Some(v) = view else {
            facts.metric.push(MetricOp::Refresh {
                ni,
                cards: None,
                models: None,
            });
            return;
        };
        let from = facts.frees.len() as u32;
        for (d, u) in v.node.devices.iter().zip(v.usage) {
            facts.frees.push(card_free_milli(d, u));
        }
        let cpu_free = v.node.cpu_milli.saturating_sub(v.used.cpu_milli);
        if self.models.len() <= ni as usize {
            self.models.resize(ni as usize + 1, false);
        }
        let models = (!self.models[ni as usize]).then(|| {
            self.models[ni as usize] = true;
            let from = facts.spans.len() as u32;
            for d in &v.node.devices {
                let m = facts.put(&d.model);
                facts.spans.push(m);
            }
            (from, facts.spans.len() as u32)
        });
        facts.metric.push(MetricOp::Refresh {
            ni,
            cards: Some((cpu_free, (from, facts.frees.len() as u32))),
            models,
        });
    }

    /// Append to `facts` what the follower needs to check event `event`, after which the
    /// engine's state is `ledger` and `touched` are the pods it changed (as for
    /// [`super::checker::Incremental::after_event`]; every pod changed since the last event
    /// must be among them). The ledger must be one lineage: every call's ledger is the last
    /// one's, changed, and a node's registration (its name and cards) must not change once
    /// told (the engine follows only runs without faults). A result other than
    /// [`Written::Facts`] leaves `facts` half written.
    pub fn event(
        &mut self,
        facts: &mut Facts,
        event: u64,
        ledger: &Ledger,
        touched: &[Touched<'_>],
    ) -> Written {
        // Each changed node once (the ledger skips changes a later one supersedes).
        self.ids.clear();
        match self.clock.and_then(|c| ledger.latest_changes_since(c)) {
            Some((_, changed)) => self.ids.extend(changed),
            None => self.ids.extend(0..ledger.node_id_bound() as NodeId),
        }
        self.clock = Some(ledger.clock());
        for &id in &self.ids {
            let Some(e) = ledger.entry(id) else {
                facts.nodes.push(NodeFact { id, entry: None });
                continue;
            };
            if self.named.len() <= id as usize {
                self.named.resize(id as usize + 1, false);
            }
            let first = !self.named[id as usize];
            // Registrations do not change once told: their cards' modes are read once.
            if first && e.node.devices.iter().any(|d| d.mode == DeviceMode::Mig) {
                return Written::Unfollowable;
            }
            if !ledger.check_node_bounds(id).is_empty() {
                return Written::Violation;
            }
            let from = facts.cards.len() as u32;
            facts
                .cards
                .extend(e.usage.iter().map(|u| (u.used, u.used_cores, u.used_mem)));
            let cards = (from, facts.cards.len() as u32);
            let named = first.then(|| {
                self.named[id as usize] = true;
                let name = facts.put(&e.node.name);
                let from = facts.spans.len() as u32;
                for d in &e.node.devices {
                    let u = facts.put(&d.uuid);
                    facts.spans.push(u);
                }
                (name, (from, facts.spans.len() as u32))
            });
            facts.nodes.push(NodeFact {
                id,
                entry: Some(NodeUse {
                    pods: e.pods.len() as u32,
                    digest: e.digest,
                    cards,
                    named,
                }),
            });
        }
        for t in touched {
            let c = &t.check;
            if (c.pending && c.reason.is_none())
                || (c.holds && c.meta.is_none())
                || ledger.check_listed(t.key).is_some()
            {
                return Written::Violation;
            }
            let mut fact = PodFact {
                index: t.index as u32,
                namespace: (0, 0),
                name: (0, 0),
                holds: c.holds,
                pairs: (0, 0),
                ledger: ledger.grant(t.key).map(|g| g.fingerprint(t.key)),
            };
            if c.holds {
                fact.namespace = facts.put(&t.key.namespace);
                fact.name = facts.put(&t.key.name);
                let from = facts.pairs.len() as u32;
                // Only what the codec reads for a grant: the helper decodes the same grant
                // from less text to hand over.
                for (k, v) in c
                    .meta
                    .and_then(|m| m.annotations.as_ref())
                    .into_iter()
                    .flatten()
                {
                    if is_grant_annotation(k) {
                        let pair = (facts.put(k), facts.put(v));
                        facts.pairs.push(pair);
                    }
                }
                fact.pairs = (from, facts.pairs.len() as u32);
            }
            facts.pods.push(fact);
        }
        facts.events.push(EventMark {
            event,
            pods: facts.pods.len() as u32,
            nodes: facts.nodes.len() as u32,
        });
        Written::Facts
    }
}

/// Per node: the pod count, digest and per-card usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Totals {
    pods: u32,
    digest: u64,
    cards: Vec<CardUse>,
}

/// One ledger node as the follower knows it.
#[derive(Debug, Default)]
struct Followed {
    /// Its card UUIDs, by position.
    uuids: Vec<String>,
    /// Whether the ledger has it.
    present: bool,
    /// What the ledger says.
    ledger: Totals,
    /// What the annotations of the pods recorded here add up to.
    annotated: Totals,
}

/// A pod's grant as its annotations record it.
#[derive(Debug)]
struct Recorded {
    node: NodeId,
    fingerprint: u64,
    /// Per card: its position on the node, cores and memory.
    cards: Vec<(u32, u32, u64)>,
}

/// The fragmentation metric, kept on the helper exactly as the engine keeps it on its own
/// thread otherwise: the same operations in the same order, so the same numbers to the bit.
#[derive(Debug)]
pub struct Metric {
    target: Arc<TargetWorkload>,
    rows: AccessRows,
    /// `cards × 1000`: a node's fragmentation (milli-GPU) over this is a share of the cluster.
    scale: f64,
    /// Per engine node index: its card models, and its fragmentation as last computed.
    models: Vec<Vec<String>>,
    node_frag: Vec<f64>,
    /// The sum over nodes.
    pub frag: f64,
    /// The time (ms) the integral has reached.
    last_t: u64,
    /// The integral of `frag / scale` over time (ms).
    pub area: f64,
    /// `max(frag, 0) / scale` at each sample, in order.
    pub samples: Vec<f64>,
}

impl Metric {
    /// The metric for a cluster of `cards` cards measured against `target`, carrying on from
    /// the engine's state: per engine node index its fragmentation, their running sum `frag`,
    /// and the integral `area` up to time `last_t`.
    pub fn new(
        target: Arc<TargetWorkload>,
        cards: u64,
        node_frag: Vec<f64>,
        frag: f64,
        last_t: u64,
        area: f64,
    ) -> Metric {
        Metric {
            target,
            rows: AccessRows::default(),
            scale: cards.max(1) as f64 * 1000.0,
            models: vec![Vec::new(); node_frag.len()],
            frag,
            node_frag,
            last_t,
            area,
            samples: Vec::new(),
        }
    }

    fn apply(&mut self, facts: &Facts, op: MetricOp) {
        match op {
            MetricOp::Advance(t) => {
                if t > self.last_t {
                    let dt = (t - self.last_t) as f64;
                    self.area += dt * self.frag / self.scale;
                    self.last_t = t;
                }
            }
            MetricOp::Sample => self.samples.push(self.frag.max(0.0) / self.scale),
            MetricOp::Refresh { ni, cards, models } => {
                let ni = ni as usize;
                if self.node_frag.len() <= ni {
                    self.node_frag.resize(ni + 1, 0.0);
                    self.models.resize_with(ni + 1, Vec::new);
                }
                if let Some((from, to)) = models {
                    self.models[ni] = facts.spans[from as usize..to as usize]
                        .iter()
                        .map(|&m| facts.get(m).to_string())
                        .collect();
                }
                let f = match cards {
                    None => 0.0,
                    Some((cpu_free, (from, to))) => {
                        let frees = &facts.frees[from as usize..to as usize];
                        let cards = self.models[ni]
                            .iter()
                            .map(String::as_str)
                            .zip(frees.iter().copied());
                        self.target.cards_frag_with(cards, cpu_free, &mut self.rows)
                    }
                };
                self.frag += f - self.node_frag[ni];
                self.node_frag[ni] = f;
            }
        }
    }
}

/// The helper's side: the annotated grants and the ledger's node totals, followed event by
/// event from [`Facts`].
#[derive(Debug, Default)]
pub struct Follower {
    nodes: Vec<Followed>,
    by_name: HashMap<String, NodeId, FastBuild>,
    recorded: Vec<Option<Recorded>>,
    marked: Vec<NodeId>,
    /// One pod's annotations, rebuilt per pod for the codec.
    annotations: BTreeMap<String, String>,
}

impl Follower {
    /// Follow a batch's events in order. `Err(event)`: the first event after which the
    /// annotations and the ledger disagree; the follower's state is then no longer meaningful.
    pub fn follow(&mut self, facts: &Facts) -> Result<(), u64> {
        let (mut pods, mut nodes) = (0, 0);
        for m in &facts.events {
            let ok = self.event(
                facts,
                &facts.pods[pods..m.pods as usize],
                &facts.nodes[nodes..m.nodes as usize],
            );
            if !ok {
                return Err(m.event);
            }
            (pods, nodes) = (m.pods as usize, m.nodes as usize);
        }
        Ok(())
    }

    fn event(&mut self, facts: &Facts, pods: &[PodFact], nodes: &[NodeFact]) -> bool {
        self.marked.clear();
        for n in nodes {
            let id = n.id as usize;
            if self.nodes.len() <= id {
                self.nodes.resize_with(id + 1, Followed::default);
            }
            let f = &mut self.nodes[id];
            f.present = n.entry.is_some();
            if let Some(e) = &n.entry {
                if let Some((name, (from, to))) = e.named {
                    f.uuids = facts.spans[from as usize..to as usize]
                        .iter()
                        .map(|&u| facts.get(u).to_string())
                        .collect();
                    f.annotated.cards.resize(f.uuids.len(), (0, 0, 0));
                    self.by_name.insert(facts.get(name).to_string(), n.id);
                }
                f.ledger.pods = e.pods;
                f.ledger.digest = e.digest;
                f.ledger.cards.clear();
                f.ledger
                    .cards
                    .extend_from_slice(&facts.cards[e.cards.0 as usize..e.cards.1 as usize]);
            }
            self.marked.push(n.id);
        }
        for p in pods {
            if !self.pod(facts, p) {
                return false;
            }
        }
        self.marked.sort_unstable();
        self.marked.dedup();
        self.marked.iter().all(|&id| {
            let f = &self.nodes[id as usize];
            if f.present {
                f.ledger == f.annotated
            } else {
                f.annotated.pods == 0
            }
        })
    }

    /// Decode one touched pod's annotations, compare with the ledger's grant, and move its
    /// record; false on a disagreement.
    fn pod(&mut self, facts: &Facts, p: &PodFact) -> bool {
        let mut grant = None;
        if p.holds {
            self.annotations.clear();
            for &(k, v) in &facts.pairs[p.pairs.0 as usize..p.pairs.1 as usize] {
                self.annotations
                    .insert(facts.get(k).to_string(), facts.get(v).to_string());
            }
            match grant_from_annotations(&self.annotations, 0, 0) {
                Ok(g) => grant = g,
                Err(_) => return false,
            }
        }
        let key = PodKey::new(facts.get(p.namespace), facts.get(p.name));
        let fingerprint = grant.as_ref().map(|g| g.fingerprint(&key));
        if fingerprint != p.ledger {
            return false;
        }
        let i = p.index as usize;
        if self.recorded.len() <= i {
            self.recorded.resize_with(i + 1, || None);
        }
        if let Some(old) = self.recorded[i].take() {
            let t = &mut self.nodes[old.node as usize].annotated;
            t.pods = t.pods.wrapping_sub(1);
            t.digest = t.digest.wrapping_sub(old.fingerprint);
            for &(at, cores, mem) in &old.cards {
                let c = &mut t.cards[at as usize];
                *c = (
                    c.0.wrapping_sub(1),
                    c.1.wrapping_sub(cores),
                    c.2.wrapping_sub(mem),
                );
            }
            self.marked.push(old.node);
        }
        let (Some(g), Some(fingerprint)) = (grant, fingerprint) else {
            return true;
        };
        let Some(&node) = self.by_name.get(&g.node) else {
            return false;
        };
        let f = &mut self.nodes[node as usize];
        let mut cards = Vec::with_capacity(g.containers.iter().map(Vec::len).sum());
        for d in g.devices() {
            let Some(at) = f.uuids.iter().position(|u| *u == d.uuid) else {
                return false;
            };
            cards.push((at as u32, d.cores, d.memory_mib));
        }
        let t = &mut f.annotated;
        t.pods = t.pods.wrapping_add(1);
        t.digest = t.digest.wrapping_add(fingerprint);
        for &(at, cores, mem) in &cards {
            let c = &mut t.cards[at as usize];
            *c = (
                c.0.wrapping_add(1),
                c.1.wrapping_add(cores),
                c.2.wrapping_add(mem),
            );
        }
        self.recorded[i] = Some(Recorded {
            node,
            fingerprint,
            cards,
        });
        self.marked.push(node);
        true
    }
}

/// Events per batch handed to the helper: enough that waking it is rare, few enough that it
/// starts early and finishes soon after the last event.
const BATCH: usize = 64;

/// Why the checker must run on this thread after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// The facts of this event (by index) disagree, or this thread saw a violation while
    /// writing them.
    Violation(u64),
    /// A node the follower cannot follow, or the helper is gone.
    Unfollowable,
}

/// How long the helper waits for the next batch before it sleeps: waking a sleeping thread
/// costs the engine's thread tens of microseconds per batch on a virtual machine, while a
/// batch comes every few hundred microseconds.
const SPIN: std::time::Duration = std::time::Duration::from_micros(500);

/// Batches kept back from reuse (about 3 MB once grown, more than a core's own cache).
const COLD_BATCHES: usize = 16;

/// The next batch from `rx`, or `None` once the sender is gone and the queue empty.
fn next_batch(rx: &std::sync::mpsc::Receiver<Facts>) -> Option<Facts> {
    use std::sync::mpsc::TryRecvError;
    let mut since: Option<std::time::Instant> = None;
    loop {
        match rx.try_recv() {
            Ok(b) => return Some(b),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        let t = *since.get_or_insert_with(std::time::Instant::now);
        if t.elapsed() > SPIN {
            return rx.recv().ok();
        }
        // Waiting, but giving the core to any other thread that wants it (the full check's
        // helper, another run).
        std::thread::yield_now();
    }
}

/// A [`Follower`] on its own thread, fed batches of [`Facts`] by a [`Writer`] on this one.
#[derive(Debug)]
pub struct FollowerThread {
    writer: Writer,
    batch: Facts,
    tx: Option<std::sync::mpsc::SyncSender<Facts>>,
    /// Batches the helper has read, back for reuse.
    spare: std::sync::mpsc::Receiver<Facts>,
    /// The first event the helper rejected (`u64::MAX`: none yet), read at every batch.
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    verdict: std::sync::mpsc::Receiver<Option<u64>>,
    handle: Option<std::thread::JoinHandle<(Follower, Metric)>>,
    /// Batches back from the helper, oldest first.
    pool: std::collections::VecDeque<Facts>,
}

impl FollowerThread {
    /// Start the helper, which keeps `metric` too; `None` when no thread can be started.
    pub fn start(mut metric: Metric) -> Option<FollowerThread> {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, mpsc};
        // A few batches in flight: the helper keeps up on average, and this thread waits
        // only if it falls far behind.
        let (tx, rx) = mpsc::sync_channel::<Facts>(8);
        let (spare_tx, spare) = mpsc::channel::<Facts>();
        let (verdict_tx, verdict) = mpsc::channel();
        let failed = Arc::new(AtomicU64::new(u64::MAX));
        let seen = Arc::clone(&failed);
        let handle = std::thread::Builder::new()
            .name("hami-sim-check".into())
            .spawn(move || {
                let mut follower = Follower::default();
                if std::env::var_os("WARMF").is_some() {
                    let v: Vec<Vec<u8>> = (0..100_000).map(|i| vec![i as u8; 64]).collect();
                    std::hint::black_box(&v);
                }
                let mut bad = None;
                while let Some(mut batch) = next_batch(&rx) {
                    if bad.is_none()
                        && let Err(at) = follower.follow(&batch)
                    {
                        bad = Some(at);
                        seen.store(at, Ordering::Relaxed);
                    }
                    for &op in &batch.metric {
                        metric.apply(&batch, op);
                    }
                    batch.clear();
                    let _ = spare_tx.send(batch);
                }
                let _ = verdict_tx.send(bad);
                // The records go back with the thread, for the engine to free off its time.
                (follower, metric)
            })
            .ok()?;
        Some(FollowerThread {
            writer: Writer::default(),
            batch: Facts::default(),
            tx: Some(tx),
            spare,
            failed,
            verdict,
            handle: Some(handle),
            pool: Default::default(),
        })
    }

    /// Hand over event `event` (as [`Writer::event`]). An error: check on this thread.
    pub fn event(
        &mut self,
        event: u64,
        ledger: &Ledger,
        touched: &[Touched<'_>],
    ) -> Result<(), Halt> {
        match self.writer.event(&mut self.batch, event, ledger, touched) {
            Written::Facts => {}
            Written::Violation => return Err(Halt::Violation(event)),
            Written::Unfollowable => return Err(Halt::Unfollowable),
        }
        if self.batch.events() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Halt> {
        let at = self.failed.load(std::sync::atomic::Ordering::Relaxed);
        if at != u64::MAX {
            return Err(Halt::Violation(at));
        }
        while let Ok(b) = self.spare.try_recv() {
            self.pool.push_back(b);
        }
        // The batch the helper read longest ago: its lines have more likely left the helper's
        // cache, and writing them here then takes no transfer between the cores.
        let next = if self.pool.len() > COLD_BATCHES {
            self.pool.pop_front().unwrap_or_default()
        } else {
            Facts::default()
        };
        let full = std::mem::replace(&mut self.batch, next);
        match &self.tx {
            Some(tx) => tx.send(full).map_err(|_| Halt::Unfollowable),
            None => Err(Halt::Unfollowable),
        }
    }

    /// Record that the clock moved to `t` (ms), for the metric.
    pub fn advance(&mut self, t: u64) {
        self.writer.advance(&mut self.batch, t);
    }

    /// Record that a sample of the metric is taken now.
    pub fn sample(&mut self) {
        self.writer.sample(&mut self.batch);
    }

    /// Record that engine node `ni`'s fragmentation is recomputed now (as [`Writer::refresh`]).
    pub fn refresh(&mut self, ni: u32, view: Option<&NodeView<'_>>) {
        self.writer.refresh(&mut self.batch, ni, view);
    }

    /// Hand over the last events and wait for the helper's verdict on all of them; the
    /// helper thread has ended then, and its records and the metric come back (`None` if it
    /// failed).
    pub fn finish(mut self) -> (Result<(), Halt>, Option<(Follower, Metric)>) {
        let sent = if self.batch.events() > 0 || !self.batch.metric.is_empty() {
            self.flush()
        } else {
            Ok(())
        };
        // The helper's loop ends once its queue is empty and this end is gone.
        self.tx = None;
        let verdict = match (sent, self.verdict.recv()) {
            (_, Ok(Some(at))) => Err(Halt::Violation(at)),
            (Err(h), _) => Err(h),
            (Ok(()), Ok(None)) => Ok(()),
            (Ok(()), Err(_)) => Err(Halt::Unfollowable),
        };
        let records = self.handle.take().and_then(|h| h.join().ok());
        (verdict, records)
    }
}
