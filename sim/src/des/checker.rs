//! The outside checker: after every event it proves that
//! 1. the ledger's own invariants hold (no card over its slots, memory or cores; usage equals
//!    the sum of grants) — [`hami_core::ledger::Ledger::check_invariants`];
//! 2. the ledger equals what the pods holding cards say in their annotations, read with the
//!    production codec ([`hami_core::annotations::grant_from_annotations`], or its visitor
//!    [`hami_core::annotations::visit_grant`] where nothing needs keeping), and a ledger
//!    rebuilt from those annotations alone fits the cards (what a restarted scheduler would do);
//! 3. every pod is running, pending with a reason, or finished.
//!
//! [`check`] proves all three over the whole state. [`Incremental`] proves them after one
//! event from what the event touched: the ledger nodes its change log names and the pods the
//! engine changed. That is complete because nothing else changed, and it costs what the event
//! cost instead of the size of the cluster; the engine still runs the full [`check`] every
//! `check_every` events and at the end, and the two must agree.

use super::turns::in_turns;
use hami_core::annotations::{grant_from_annotations, visit_grant};
use hami_core::control::write_key_of_meta;
use hami_core::hash::FastBuild;
use hami_core::ledger::{DeviceGrant, Ledger, NodeEntry, NodeId, PodGrant, Violation};
use hami_core::model::{Device, DeviceMode};
use hami_core::request::PodKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// What the checker needs to know about one simulated pod.
#[derive(Debug, Clone, Copy)]
pub struct PodCheck<'a> {
    /// The Pod object's metadata (None once finished).
    pub meta: Option<&'a ObjectMeta>,
    /// Whether it holds cards (running or binding on a node).
    pub holds: bool,
    /// Whether it waits.
    pub pending: bool,
    /// Its current reason, when pending.
    pub reason: Option<&'static str>,
}

fn cards(g: &PodGrant) -> Vec<(usize, String, u64, u32)> {
    let mut v: Vec<(usize, String, u64, u32)> = g
        .containers
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.iter()
                .map(move |d: &DeviceGrant| (i, d.uuid.clone(), d.memory_mib, d.cores))
        })
        .collect();
    v.sort();
    v
}

fn show(g: &PodGrant) -> String {
    let parts: Vec<String> = cards(g)
        .iter()
        .map(|(c, u, m, k)| format!("c{c}:{u} {m}MiB {k}%"))
        .collect();
    format!("{} [{}]", g.node, parts.join(", "))
}

/// Violations gathered for one check, rendered as a readable dump (at most 20 lines).
#[derive(Default)]
struct Dump {
    out: String,
    n: usize,
}

impl Dump {
    fn say(&mut self, s: String) {
        self.n += 1;
        if self.n <= 20 {
            let _ = writeln!(self.out, "  - {s}");
        }
    }

    fn extend(&mut self, v: Option<String>) {
        if let Some(s) = v {
            self.say(s);
        }
    }

    fn finish(mut self) -> Result<(), String> {
        if self.n == 0 {
            return Ok(());
        }
        if self.n > 20 {
            let _ = writeln!(self.out, "  … and {} more", self.n - 20);
        }
        Err(format!("{} violation(s):\n{}", self.n, self.out))
    }
}

/// Whether grants `a` and `b` name the same node and the same cards with the same shares
/// (per container, in any order).
fn same(a: &PodGrant, b: &PodGrant) -> bool {
    fn card(d: &DeviceGrant) -> (&str, u64, u32) {
        (d.uuid.as_str(), d.memory_mib, d.cores)
    }
    let in_order = a.containers.len() == b.containers.len()
        && a.containers
            .iter()
            .zip(&b.containers)
            .all(|(x, y)| x.len() == y.len() && x.iter().map(card).eq(y.iter().map(card)));
    // Equal in order is the usual case; otherwise compare sorted copies.
    a.node == b.node && (in_order || cards(a) == cards(b))
}

fn no_such_card(node: &str, uuid: &str) -> String {
    format!("rebuilding from annotations: card {uuid} on {node} does not exist")
}

/// The message when recorded totals (slots, memory, cores) exceed card `d`.
fn overfull(node: &str, d: &Device, (slots, mem, cores): (u32, u64, u32)) -> Option<String> {
    (slots > d.split_count || mem > d.memory_mib || cores > d.cores).then(|| {
        format!(
            "rebuilding from annotations: card {} on {node} does not fit the recorded grants: {mem} MiB of {} MiB, {cores} of {} cores, {slots} of {} slots",
            d.uuid, d.memory_mib, d.cores, d.split_count
        )
    })
}

/// The grant pod `pod`'s annotations record (`Ok(None)`: none), decoded by the production codec.
fn decode(meta: &ObjectMeta) -> Result<Option<PodGrant>, String> {
    let empty = BTreeMap::new();
    let ann = meta.annotations.as_ref().unwrap_or(&empty);
    grant_from_annotations(ann, 0, 0).map_err(|e| e.to_string())
}

/// The messages both checkers give for a pod whose ledger grant and annotations disagree.
fn mismatch(key: &PodKey, ledger: Option<&PodGrant>, ann: Option<&PodGrant>) -> Option<String> {
    match (ledger, ann) {
        (None, None) => None,
        (Some(g), None) => Some(format!(
            "ledger holds {} for pod {key}, whose annotations record no grant",
            show(g)
        )),
        (None, Some(a)) => Some(format!(
            "pod {key} annotations record {} but the ledger holds nothing",
            show(a)
        )),
        (Some(g), Some(a)) if !same(a, g) => Some(format!(
            "pod {key}: ledger says {} but its annotations say {}",
            show(g),
            show(a)
        )),
        _ => None,
    }
}

/// Check the three properties; the error is a readable dump of every violation (at most 20).
pub fn check<'a>(ledger: &Ledger, pods: impl Iterator<Item = PodCheck<'a>>) -> Result<(), String> {
    check_all(ledger, pods, false).0
}

/// Each holding pod's position in the checked iterator, key and decoded grant.
type Recorded = Vec<(usize, PodKey, PodGrant)>;

/// Below this many pods a full check runs on one thread (a helper costs more than it saves).
const PARALLEL_FROM: usize = 4096;

/// Pods per unit of work that the full check's threads take in turn.
const CHUNK: usize = 256;

/// Ledger nodes per unit of work (their invariants).
const NODE_CHUNK: usize = 128;

/// Every card of the ledger's nodes at one flat position: node id `n`'s cards are
/// `start[n]..start[n + 1]`, in the node's order.
struct CardIndex {
    start: Vec<usize>,
}

impl CardIndex {
    fn new(ledger: &Ledger) -> CardIndex {
        let mut start = Vec::with_capacity(ledger.node_id_bound() + 1);
        let mut at = 0;
        for id in 0..ledger.node_id_bound() {
            start.push(at);
            at += ledger
                .entry(id as NodeId)
                .map_or(0, |e| e.node.devices.len());
        }
        start.push(at);
        CardIndex { start }
    }

    fn cards(&self) -> usize {
        self.start.last().copied().unwrap_or(0)
    }
}

/// What one chunk of pods adds to the dump, kept apart so that the dump reads in pod order
/// whichever thread took the chunk.
#[derive(Default)]
struct ChunkOut {
    /// Messages about single pods, in pod order.
    said: Vec<String>,
    /// Grant mismatches (shown sorted with the card messages).
    found: Vec<String>,
    /// With `keep`: each holder's decoded grant.
    recorded: Recorded,
    /// The ledger's own invariant for each holder's grant ([`Ledger::check_listed`]).
    listed: Vec<Violation>,
}

/// One thread's share of a full check.
struct Share {
    /// The invariants of each unit of ledger nodes, by unit number.
    nodes: Vec<(usize, Vec<Violation>)>,
    /// Chunk outputs by chunk number.
    chunks: Vec<(usize, ChunkOut)>,
    /// Per flat card ([`CardIndex`]): slots, memory and cores the annotations record.
    sums: Vec<(u32, u64, u32)>,
    /// (node, card) pairs annotations name that the ledger's nodes do not have.
    unknown: Vec<(String, String)>,
    /// The ledger grants a holder was compared with, by address: distinct keys are distinct
    /// entries, so their count says whether every ledger grant was compared.
    matched: Vec<usize>,
}

/// What a holder's annotations record, read in place.
struct Scratch<'a> {
    key: PodKey,
    /// (container, card UUID, memory, cores) in decoded order.
    devs: Vec<(usize, &'a str, u64, u32)>,
    /// Per container, how many of the ledger grant's cards matched so far.
    pos: Vec<usize>,
}

/// Whether the devices read from annotations (`devs`, in decoded order, over `containers`
/// containers) equal ledger grant `g`'s in the same order: the usual case, decided without
/// building the decoded grant. `false` sends the pod to the exact comparison.
fn same_in_order(
    g: &PodGrant,
    node: &str,
    containers: usize,
    devs: &[(usize, &str, u64, u32)],
    pos: &mut Vec<usize>,
) -> bool {
    if g.node != node || g.containers.len() != containers {
        return false;
    }
    pos.clear();
    pos.resize(containers, 0);
    for &(c, uuid, mem, cores) in devs {
        let Some(d) = g.containers.get(c).and_then(|ctr| ctr.get(pos[c])) else {
            return false;
        };
        if d.uuid != uuid || d.memory_mib != mem || d.cores != cores {
            return false;
        }
        pos[c] += 1;
    }
    g.containers
        .iter()
        .zip(pos.iter())
        .all(|(c, &n)| c.len() == n)
}

/// Check pods `chunk` (positions from `base`): the per-pod properties, each holder's
/// annotations against its ledger grant, and what they record added to the share's card sums.
fn check_chunk<'a>(
    ledger: &Ledger,
    cards: &CardIndex,
    keep: bool,
    base: usize,
    chunk: &[PodCheck<'a>],
    share: &mut Share,
    scratch: &mut Scratch<'a>,
) -> ChunkOut {
    // Borrowed for as long as the pods' annotations (the cards read point into them).
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let grants = ledger.grants();
    let mut out = ChunkOut::default();
    for (k, p) in chunk.iter().enumerate() {
        let i = base + k;
        if p.pending && p.reason.is_none() {
            out.said
                .push(format!("pod #{i} is pending without a reason"));
        }
        if !p.holds {
            continue;
        }
        let Some(meta) = p.meta else {
            out.said
                .push(format!("pod #{i} holds cards but has no object"));
            continue;
        };
        let key = &mut scratch.key;
        write_key_of_meta(meta, key);
        let g = grants.get(&*key);
        if let Some(g) = g {
            share.matched.push(std::ptr::from_ref(g) as usize);
            out.listed.extend(ledger.check_listed(key));
        }
        let ann = meta.annotations.as_ref().unwrap_or(&EMPTY);
        let devs = &mut scratch.devs;
        devs.clear();
        let read = visit_grant(ann, |c, _, d| {
            devs.push((
                c,
                d.uuid,
                u64::try_from(d.usedmem).unwrap_or(0),
                u32::try_from(d.usedcores).unwrap_or(0),
            ));
        });
        let read = match read {
            Ok(Some(r)) if !devs.is_empty() => r,
            Ok(_) => {
                out.found.extend(mismatch(key, g, None));
                continue;
            }
            Err(e) => {
                out.said
                    .push(format!("pod {key}: annotations do not decode: {e}"));
                out.found.extend(mismatch(key, g, None));
                continue;
            }
        };
        let equal =
            g.is_some_and(|g| same_in_order(g, read.node, read.containers, devs, &mut scratch.pos));
        // The grant itself: to keep, or to compare exactly as the decoder reads it (cards in
        // another order may still be the same).
        let decoded = if keep || !equal {
            decode(meta).ok().flatten()
        } else {
            None
        };
        if !equal {
            out.found.extend(mismatch(key, g, decoded.as_ref()));
        }
        // Rebuilt from annotations alone, the cards must hold what they record.
        let on = ledger.node_id(read.node).and_then(|id| {
            ledger
                .entry(id)
                .map(|e| (cards.start[id as usize], &e.node.devices))
        });
        for &(_, uuid, mem, cores) in devs.iter() {
            match on.and_then(|(at, ds)| ds.iter().position(|d| d.uuid == uuid).map(|p| at + p)) {
                Some(flat) => {
                    let t = &mut share.sums[flat];
                    t.0 += 1;
                    t.1 += mem;
                    t.2 += cores;
                }
                None => share
                    .unknown
                    .push((read.node.to_string(), uuid.to_string())),
            }
        }
        if keep && let Some(a) = decoded {
            out.recorded.push((i, key.clone(), a));
        }
    }
    out
}

/// One thread's empty share of a full check over `cards` flat cards, with its scratch.
fn new_share<'a>(cards: &CardIndex) -> (Share, Scratch<'a>) {
    let share = Share {
        nodes: Vec::new(),
        chunks: Vec::new(),
        sums: vec![(0, 0, 0); cards.cards()],
        unknown: Vec::new(),
        matched: Vec::new(),
    };
    let scratch = Scratch {
        key: PodKey::new(String::new(), String::new()),
        devs: Vec::new(),
        pos: Vec::new(),
    };
    (share, scratch)
}

/// [`check`], also returning (with `keep`) each holding pod's decoded grant by its position
/// in `pods`.
///
/// Each holder's annotations are read in place with the production decoder's visitor
/// ([`visit_grant`]) and compared with its ledger grant in decoded order; only a pod that
/// differs there is decoded into a grant, for the exact comparison and its message. A ledger
/// grant that no holder was compared with is one whose pod's annotations record nothing.
/// The ledger's own invariants are proven as [`Ledger::check_invariants`] does, in parts: each
/// node's, and each grant's listing where its holder is compared. On a large state a helper
/// thread takes units of work (nodes, then pods) in turn with this thread. What they find is
/// reported in the same order as on one thread.
fn check_all<'a>(
    ledger: &Ledger,
    pods: impl Iterator<Item = PodCheck<'a>>,
    keep: bool,
) -> (Result<(), String>, Recorded) {
    let pods: Vec<PodCheck<'a>> = pods.collect();
    let cards = CardIndex::new(ledger);
    // Units of work, taken in turn: first the ledger's nodes, [`NODE_CHUNK`] at a time (their
    // invariants), then the pods, [`CHUNK`] at a time.
    let node_units = ledger.node_id_bound().div_ceil(NODE_CHUNK);
    let shares = in_turns(
        node_units + pods.len().div_ceil(CHUNK),
        pods.len() < PARALLEL_FROM,
        || new_share(&cards),
        |(share, scratch), u| {
            if u < node_units {
                let ids = u * NODE_CHUNK..((u + 1) * NODE_CHUNK).min(ledger.node_id_bound());
                let found = ids
                    .flat_map(|id| ledger.check_node(id as NodeId, |_, _| {}))
                    .collect();
                share.nodes.push((u, found));
                return;
            }
            let c = u - node_units;
            let chunk = &pods[c * CHUNK..((c + 1) * CHUNK).min(pods.len())];
            let out = check_chunk(ledger, &cards, keep, c * CHUNK, chunk, share, scratch);
            share.chunks.push((c, out));
        },
    )
    .into_iter()
    .map(|(share, _)| share);
    let mut sums = vec![(0u32, 0u64, 0u32); cards.cards()];
    let mut unknown: Vec<(String, String)> = Vec::new();
    let mut matched: Vec<usize> = Vec::new();
    let mut nodes: Vec<(usize, Vec<Violation>)> = Vec::new();
    let mut chunks: Vec<(usize, ChunkOut)> = Vec::new();
    for sh in shares {
        for (t, s) in sums.iter_mut().zip(&sh.sums) {
            t.0 += s.0;
            t.1 += s.1;
            t.2 += s.2;
        }
        unknown.extend(sh.unknown);
        matched.extend(sh.matched);
        nodes.extend(sh.nodes);
        chunks.extend(sh.chunks);
    }
    nodes.sort_unstable_by_key(|n| n.0);
    chunks.sort_unstable_by_key(|c| c.0);
    // The ledger's own invariants, as `Ledger::check_invariants` proves them: every node's,
    // then every grant's listing (the holders' above, the others' below).
    let mut invariants: Vec<Violation> = nodes.into_iter().flat_map(|n| n.1).collect();
    let mut found: Vec<String> = Vec::new();
    for c in &mut chunks {
        invariants.append(&mut c.1.listed);
    }
    // A ledger grant no holder was compared with: its pod's annotations record nothing.
    let grants = ledger.grants();
    matched.sort_unstable();
    matched.dedup();
    if matched.len() != grants.len() {
        for (k, g) in grants {
            if matched
                .binary_search(&(std::ptr::from_ref(g) as usize))
                .is_err()
            {
                found.extend(mismatch(k, Some(g), None));
                invariants.extend(ledger.check_listed(k));
            }
        }
    }
    let mut dump = Dump::default();
    for v in invariants {
        dump.say(format!("ledger invariant: {v}"));
    }
    let mut recorded = Recorded::new();
    for (_, c) in chunks {
        for m in c.said {
            dump.say(m);
        }
        found.extend(c.found);
        recorded.extend(c.recorded);
    }
    // Rebuild from annotations alone: the cards' totals must fit (what a restarted scheduler
    // would have to accept).
    for id in 0..ledger.node_id_bound() {
        let Some(e) = ledger.entry(id as NodeId) else {
            continue;
        };
        let at = cards.start[id];
        for (p, d) in e.node.devices.iter().enumerate() {
            let t = sums[at + p];
            if t != (0, 0, 0) {
                found.extend(overfull(&e.node.name, d, t));
            }
        }
    }
    unknown.sort_unstable();
    unknown.dedup();
    for (node, uuid) in &unknown {
        found.push(no_such_card(node, uuid));
    }
    found.sort_unstable();
    for f in found {
        dump.say(f);
    }
    (dump.finish(), recorded)
}

/// One pod an event touched, for [`Incremental::after_event`].
#[derive(Debug, Clone)]
pub struct Touched<'a> {
    /// The pod's index, as in the full check's iteration order.
    pub index: usize,
    /// The pod's key (also for a finished pod, whose object is gone).
    pub key: &'a PodKey,
    /// Its state.
    pub check: PodCheck<'a>,
}

/// The checker after each event, in time proportional to what the event touched.
///
/// It remembers, per pod index, the grant that pod's annotations record (decoded when the pod
/// is touched) and, per node name, which pods' annotations put them there together with their
/// totals: per card the slots, memory and cores they record, and the sum of their grants'
/// [`PodGrant::fingerprint`]s. After an event it proves, for the pods the event touched: its
/// ledger grant against its annotations and its pending reason; and for every ledger node
/// whose version changed, in time proportional to its cards:
/// - the ledger's per-card usage (what the scheduler decides from) equals the totals the
///   annotations record, and no card or node is over its bounds, so a ledger rebuilt from
///   annotations alone fits the cards;
/// - the ledger lists as many pods as annotations put there, and its grant digest
///   ([`hami_core::ledger::NodeEntry::digest`]) equals the fingerprint sum of the annotated
///   grants: the two sets of grants are the same (but for a 2^-64 chance).
///
/// The digest is the ledger's own bookkeeping, kept where grants are written; the full
/// [`check`] recomputes it from the grants. When these totals disagree, or on a node with MIG
/// cards (whose slices annotations do not carry), the node gets the per-pod comparison, which
/// also names the pods for the dump.
///
/// Sound only if the driver reports every pod whose state or annotations it changed; the full
/// [`check`] (run every `check_every` events, and whenever the ledger's change log no longer
/// reaches back) catches a driver that does not.
#[derive(Debug, Default)]
pub struct Incremental {
    /// Per pod index, the grant its annotations record while it holds cards, with its
    /// fingerprint.
    recorded: Vec<Option<(PodGrant, u64)>>,
    /// Per node name, what the annotations of the pods recorded there add up to.
    on_node: HashMap<String, NodeRecord, FastBuild>,
    /// The ledger clock at the last check; `None` until [`Incremental::full_check`].
    clock: Option<u64>,
    /// Per ledger node id, its name as last seen (a removed node's id outlives its entry).
    names: Vec<Option<String>>,
}

/// What the annotations of the pods recorded on one node add up to.
#[derive(Debug, Default)]
struct NodeRecord {
    /// The pods, by index.
    pods: BTreeSet<usize>,
    /// Wrapping sum of their grants' fingerprints.
    digest: u64,
    /// Per card UUID ever recorded here: slots, memory (MiB) and cores.
    cards: Vec<(String, (u32, u64, u32))>,
}

impl NodeRecord {
    fn add(&mut self, i: usize, g: &PodGrant, fp: u64, add: bool) {
        if add {
            self.pods.insert(i);
            self.digest = self.digest.wrapping_add(fp);
        } else {
            self.pods.remove(&i);
            self.digest = self.digest.wrapping_sub(fp);
        }
        for d in g.devices() {
            let at = match self.cards.iter().position(|(u, _)| *u == d.uuid) {
                Some(at) => at,
                None => {
                    self.cards.push((d.uuid.clone(), (0, 0, 0)));
                    self.cards.len() - 1
                }
            };
            let t = &mut self.cards[at].1;
            if add {
                t.0 += 1;
                t.1 += d.memory_mib;
                t.2 += d.cores;
            } else {
                t.0 = t.0.wrapping_sub(1);
                t.1 = t.1.wrapping_sub(d.memory_mib);
                t.2 = t.2.wrapping_sub(d.cores);
            }
        }
    }

    /// Whether the ledger's entry holds exactly these totals: pod count, digest, and per card
    /// the usage, with no recorded card missing from the node.
    fn agrees(&self, e: &NodeEntry) -> bool {
        if self.pods.len() != e.pods.len() || self.digest != e.digest {
            return false;
        }
        let mut matched = 0;
        for (p, (d, u)) in e.node.devices.iter().zip(&e.usage).enumerate() {
            // Cards are seeded in the node's order (see `Incremental::record`): try there first.
            let t = match self.cards.get(p) {
                Some((uuid, t)) if *uuid == d.uuid => *t,
                _ => self
                    .cards
                    .iter()
                    .find(|(uuid, _)| *uuid == d.uuid)
                    .map_or((0, 0, 0), |c| c.1),
            };
            if t != (u.used, u.used_mem, u.used_cores) {
                return false;
            }
            matched += usize::from(t != (0, 0, 0));
        }
        matched == self.cards.iter().filter(|c| c.1 != (0, 0, 0)).count()
    }
}

impl Incremental {
    /// Run the full [`check`] and start following from this state (`pods` as for `check`).
    pub fn full_check<'a>(
        &mut self,
        ledger: &Ledger,
        pods: impl Iterator<Item = PodCheck<'a>>,
    ) -> Result<(), String> {
        let (r, recorded) = check_all(ledger, pods, true);
        self.recorded.clear();
        self.on_node.clear();
        for (i, key, g) in recorded {
            self.record(ledger, i, &key, Some(g));
        }
        self.clock = Some(ledger.clock());
        r
    }

    /// Whether the change log still reaches back to the last check (otherwise the driver must
    /// run [`Incremental::full_check`]).
    pub fn can_follow(&self, ledger: &Ledger) -> bool {
        self.clock
            .is_some_and(|c| ledger.changes_since(c).is_some())
    }

    /// Forget the ledger position (a scheduler restart built a new ledger).
    pub fn invalidate(&mut self) {
        self.clock = None;
    }

    fn record(&mut self, ledger: &Ledger, i: usize, key: &PodKey, g: Option<PodGrant>) {
        if self.recorded.len() <= i {
            self.recorded.resize(i + 1, None);
        }
        if let Some((old, fp)) = self.recorded[i].take()
            && let Some(rec) = self.on_node.get_mut(&old.node)
        {
            rec.add(i, &old, fp, false);
        }
        self.recorded[i] = g.map(|g| {
            let fp = g.fingerprint(key);
            match self.on_node.get_mut(&g.node) {
                Some(rec) => rec.add(i, &g, fp, true),
                None => {
                    // Seeded with the node's cards in order, so that comparing with the
                    // ledger's usage finds each card at its own position.
                    let cards = ledger
                        .node_id(&g.node)
                        .and_then(|id| ledger.entry(id))
                        .map(|e| {
                            e.node
                                .devices
                                .iter()
                                .map(|d| (d.uuid.clone(), (0, 0, 0)))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut rec = NodeRecord {
                        cards,
                        ..NodeRecord::default()
                    };
                    rec.add(i, &g, fp, true);
                    self.on_node.insert(g.node.clone(), rec);
                }
            }
            (g, fp)
        });
    }

    fn recorded(&self, i: usize) -> Option<&PodGrant> {
        self.recorded
            .get(i)
            .and_then(Option::as_ref)
            .map(|(g, _)| g)
    }

    /// Check after one event. `touched` are the pods the event changed (duplicates allowed);
    /// `index_of` maps a ledger pod key to its index. Call [`Incremental::can_follow`] first.
    pub fn after_event(
        &mut self,
        ledger: &Ledger,
        touched: &[Touched<'_>],
        index_of: impl Fn(&PodKey) -> Option<usize>,
    ) -> Result<(), String> {
        let mut dump = Dump::default();
        let since = self.clock.unwrap_or(0);
        let mut nodes: Vec<NodeId> = ledger
            .changes_since(since)
            .map(|c| c.collect())
            .unwrap_or_default();
        // Nodes the ledger no longer has whose recorded pods changed (before or after).
        let mut gone: Vec<String> = Vec::new();
        for t in touched {
            let p = &t.check;
            if p.pending && p.reason.is_none() {
                dump.say(format!("pod #{} is pending without a reason", t.index));
            }
            let mut g = None;
            if p.holds {
                match p.meta {
                    None => dump.say(format!("pod #{} holds cards but has no object", t.index)),
                    Some(meta) => match decode(meta) {
                        Ok(d) => g = d,
                        Err(e) => {
                            dump.say(format!("pod {}: annotations do not decode: {e}", t.key))
                        }
                    },
                }
            }
            // The nodes this pod's recorded grant leaves and joins: their totals must agree.
            for name in [self.recorded(t.index), g.as_ref()]
                .into_iter()
                .flatten()
                .map(|r| &r.node)
            {
                match ledger.node_id(name) {
                    Some(id) => nodes.push(id),
                    None if !gone.contains(name) => gone.push(name.clone()),
                    None => {}
                }
            }
            dump.extend(mismatch(t.key, ledger.grant(t.key), g.as_ref()));
            if let Some(v) = ledger.check_listed(t.key) {
                dump.say(format!("ledger invariant: {v}"));
            }
            self.record(ledger, t.index, t.key, g);
        }
        nodes.sort_unstable();
        nodes.dedup();
        gone.sort_unstable();
        for name in &gone {
            // The node is gone from the ledger, yet annotations still put pods there.
            self.orphans(name, "but the ledger holds nothing", &mut dump);
        }
        for id in nodes {
            let Some(entry) = ledger.entry(id) else {
                // Removed: no pod's annotations may still put it there.
                if let Some(name) = self.names.get(id as usize).and_then(|n| n.as_ref()) {
                    self.orphans(name, "on a node the ledger removed", &mut dump);
                }
                continue;
            };
            if self.names.len() <= id as usize {
                self.names.resize(id as usize + 1, None);
            }
            if self.names[id as usize].as_ref() != Some(&entry.node.name) {
                self.names[id as usize] = Some(entry.node.name.clone());
            }
            let rec = self.on_node.get(&entry.node.name);
            let mig = entry.node.devices.iter().any(|d| d.mode == DeviceMode::Mig);
            let agrees = match rec {
                Some(r) => r.agrees(entry),
                None => {
                    entry.pods.is_empty()
                        && entry.digest == 0
                        && entry
                            .usage
                            .iter()
                            .all(|u| (u.used, u.used_mem, u.used_cores) == (0, 0, 0))
                }
            };
            if agrees && !mig {
                for v in ledger.check_node_bounds(id) {
                    dump.say(format!("ledger invariant: {v}"));
                }
            } else {
                let before = dump.n;
                self.compare_node(ledger, id, entry, &index_of, &mut dump);
                if dump.n == before && !agrees {
                    dump.say(format!(
                        "node {}: the checker's totals from annotations disagree with the ledger, though every grant matches",
                        entry.node.name
                    ));
                }
            }
        }
        self.clock = Some(ledger.clock());
        dump.finish()
    }

    /// Report every pod whose annotations put it on node `name`, which the ledger does not
    /// hold (`why` ends the message).
    fn orphans(&self, name: &str, why: &str, dump: &mut Dump) {
        for &i in self
            .on_node
            .get(name)
            .map(|r| &r.pods)
            .into_iter()
            .flatten()
        {
            if let Some(a) = self.recorded(i) {
                dump.say(format!("pod #{i} annotations record {} {why}", show(a)));
            }
        }
    }

    /// Node `id` pod by pod: the ledger's own node invariants, every listed grant against the
    /// annotations recorded here, the counts, and the recorded grants rebuilt onto its cards.
    fn compare_node(
        &self,
        ledger: &Ledger,
        id: NodeId,
        entry: &NodeEntry,
        index_of: &impl Fn(&PodKey) -> Option<usize>,
        dump: &mut Dump,
    ) {
        let name = &entry.node.name;
        let recorded_here = self.on_node.get(name).map(|r| &r.pods);
        let violations = ledger.check_node(id, |k, g| {
            let ann = index_of(k)
                .filter(|i| recorded_here.is_some_and(|s| s.contains(i)))
                .and_then(|i| self.recorded(i));
            dump.extend(mismatch(k, g, ann));
        });
        for v in violations {
            dump.say(format!("ledger invariant: {v}"));
        }
        // Every listed pod matched a distinct recorded one above: equal counts make the two
        // sets equal.
        let recorded = recorded_here.map_or(0, BTreeSet::len);
        if recorded != entry.pods.len() {
            dump.say(format!(
                "node {name}: annotations put {recorded} pod(s) here, the ledger lists {}",
                entry.pods.len()
            ));
        }
        // Rebuilt from the annotations alone, this node's cards must hold what they record.
        let devices = &entry.node.devices;
        let mut sums = vec![(0u32, 0u64, 0u32); devices.len()];
        for &i in recorded_here.into_iter().flatten() {
            for d in self.recorded(i).into_iter().flat_map(PodGrant::devices) {
                match devices.iter().position(|x| x.uuid == d.uuid) {
                    Some(p) => {
                        sums[p].0 += 1;
                        sums[p].1 += d.memory_mib;
                        sums[p].2 += d.cores;
                    }
                    None => dump.say(no_such_card(name, &d.uuid)),
                }
            }
        }
        for (d, totals) in devices.iter().zip(sums) {
            dump.extend(overfull(name, d, totals));
        }
    }
}
