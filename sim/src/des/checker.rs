//! The outside checker: after every event it proves that
//! 1. the ledger's own invariants hold (no card over its slots, memory or cores; usage equals
//!    the sum of grants) — [`hami_core::ledger::Ledger::check_invariants`];
//! 2. the ledger equals what the pods holding cards say in their annotations, decoded with the
//!    production codec ([`hami_core::annotations::grant_from_annotations`]), and a ledger
//!    rebuilt from those annotations alone fits the cards (what a restarted scheduler would do);
//! 3. every pod is running, pending with a reason, or finished.
//!
//! [`check`] proves all three over the whole state. [`Incremental`] proves them after one
//! event from what the event touched: the ledger nodes its change log names and the pods the
//! engine changed. That is complete because nothing else changed, and it costs what the event
//! cost instead of the size of the cluster; the engine still runs the full [`check`] every
//! `check_every` events and at the end, and the two must agree.

use hami_core::annotations::grant_from_annotations;
use hami_core::control::key_of_meta;
use hami_core::hash::FastBuild;
use hami_core::ledger::{DeviceGrant, Ledger, NodeEntry, NodeId, PodGrant};
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

/// The rebuild-from-annotations check for one card: the recorded totals must fit it.
fn fits_card(ledger: &Ledger, node: &str, uuid: &str, totals: (u32, u64, u32)) -> Option<String> {
    let dev = ledger
        .node_id(node)
        .and_then(|id| ledger.entry(id))
        .and_then(|e| e.node.devices.iter().find(|d| d.uuid == uuid));
    match dev {
        None => Some(no_such_card(node, uuid)),
        Some(d) => overfull(node, d, totals),
    }
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

/// Add grant `a`'s cards to per-card totals (slots, memory, cores).
fn add_cards<'g>(
    sums: &mut HashMap<(&'g str, &'g str), (u32, u64, u32), FastBuild>,
    a: &'g PodGrant,
) {
    for d in a.devices() {
        let e = sums
            .entry((a.node.as_str(), d.uuid.as_str()))
            .or_insert((0, 0, 0));
        e.0 += 1;
        e.1 += d.memory_mib;
        e.2 += d.cores;
    }
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
    check_all(ledger, pods).0
}

/// Each holding pod's position in the checked iterator, key and decoded grant.
type Recorded = Vec<(usize, PodKey, PodGrant)>;

/// A holding pod's key and what its annotations decode to ([`decode`]).
type Decoded = (PodKey, Result<Option<PodGrant>, String>);

/// [`Decoded`] for each pod of `pods` that holds cards and has an object, in order.
fn decode_holders(pods: &[PodCheck<'_>]) -> Vec<Decoded> {
    pods.iter()
        .filter(|p| p.holds)
        .filter_map(|p| p.meta)
        .map(|meta| (key_of_meta(meta), decode(meta)))
        .collect()
}

/// Below this many pods a full check runs on one thread (a helper costs more than it saves).
const PARALLEL_FROM: usize = 4096;

/// [`check`], also returning each holding pod's decoded grant by its position in `pods`.
///
/// The ledger's own invariants and the decoding of every holder's annotations (most of the
/// work) are independent: on a large state a helper thread takes the invariants and the last
/// quarter of the pods while this thread decodes the rest (the invariants cost about half of
/// the decoding on the Alibaba trace). What they find is reported in the same order as on one
/// thread.
fn check_all<'a>(
    ledger: &Ledger,
    pods: impl Iterator<Item = PodCheck<'a>>,
) -> (Result<(), String>, Recorded) {
    let pods: Vec<PodCheck<'a>> = pods.collect();
    let (invariants, decoded) = if pods.len() < PARALLEL_FROM {
        (ledger.check_invariants(), decode_holders(&pods))
    } else {
        let (head, tail) = pods.split_at(pods.len() * 3 / 4);
        std::thread::scope(|s| {
            let helper = s.spawn(|| (ledger.check_invariants(), decode_holders(tail)));
            let mut decoded = decode_holders(head);
            match helper.join() {
                Ok((invariants, rest)) => {
                    decoded.extend(rest);
                    (invariants, decoded)
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    };
    let mut dump = Dump::default();
    if let Err(vs) = invariants {
        for v in vs {
            dump.say(format!("ledger invariant: {v}"));
        }
    }
    let mut from_ann: HashMap<PodKey, (usize, PodGrant), FastBuild> =
        HashMap::with_capacity_and_hasher(decoded.len(), FastBuild::default());
    let mut decoded = decoded.into_iter();
    for (i, p) in pods.iter().enumerate() {
        if p.pending && p.reason.is_none() {
            dump.say(format!("pod #{i} is pending without a reason"));
        }
        if !p.holds {
            continue;
        }
        if p.meta.is_none() {
            dump.say(format!("pod #{i} holds cards but has no object"));
            continue;
        }
        // `decoded` holds one entry per holder with an object, in this order.
        let Some((key, grant)) = decoded.next() else {
            continue;
        };
        match grant {
            Ok(Some(g)) => {
                from_ann.insert(key, (i, g));
            }
            Ok(None) => {}
            Err(e) => dump.say(format!("pod {key}: annotations do not decode: {e}")),
        }
    }
    // Both maps are hashed (a tree of a million string keys made this check slow); what they
    // find is sorted before it is shown, so the dump reads in a stable order.
    let mut found: Vec<String> = Vec::new();
    let grants = ledger.grants();
    for (k, g) in grants {
        found.extend(mismatch(k, Some(g), from_ann.get(k).map(|(_, a)| a)));
    }
    for (k, (_, a)) in &from_ann {
        if !grants.contains_key(k) {
            found.extend(mismatch(k, None, Some(a)));
        }
    }
    // Rebuild from annotations alone: the cards' totals must fit (what a restarted scheduler
    // would have to accept).
    let mut sums: HashMap<(&str, &str), (u32, u64, u32), FastBuild> = HashMap::default();
    for (_, a) in from_ann.values() {
        add_cards(&mut sums, a);
    }
    for ((node, uuid), totals) in sums {
        found.extend(fits_card(ledger, node, uuid, totals));
    }
    found.sort_unstable();
    for f in found {
        dump.say(f);
    }
    let recorded = from_ann.into_iter().map(|(k, (i, g))| (i, k, g)).collect();
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
        let (r, recorded) = check_all(ledger, pods);
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
