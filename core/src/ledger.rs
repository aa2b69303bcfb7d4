//! The ledger: nodes, their cards and every pod's grant, in memory.
//!
//! Every reserve re-checks capacity, reserve and unreserve are idempotent, and
//! [`Ledger::check_invariants`] proves that no card is over its slots, memory or cores and that
//! usage equals the sum of the grants. The ledger holds nothing that is not in node and pod
//! annotations, so it can be rebuilt from them after a restart.

use crate::family::FamilyId;
use crate::fit::{CardCaps, MigPick, Pick};
use crate::hash::{FastBuild, FastHasher, mix};
use crate::model::{DeviceUsage, Node, NodeUsage};
use crate::policy::Placement;
use crate::policy::hami::node_usage_score;
use crate::request::PodKey;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// Dense id of a node in one ledger (stable while the ledger lives; not persisted).
pub type NodeId = u32;

/// One card granted to one container, identified by UUID as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceGrant {
    /// Card UUID.
    pub uuid: String,
    /// Family of the card.
    pub family: FamilyId,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Cores, percent.
    pub cores: u32,
    /// MIG instance (profile index, first slice, slices), in MIG mode.
    pub mig: Option<(u16, u32, u32)>,
}

/// Grants by pod, hashed with fixed keys (deterministic, never randomised).
pub type Grants = HashMap<PodKey, PodGrant, FastBuild>;

/// What one pod holds on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodGrant {
    /// Node name.
    pub node: String,
    /// Per container (annotation order), the cards.
    pub containers: Vec<Vec<DeviceGrant>>,
    /// CPU, milli-cores.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
}

impl PodGrant {
    /// Every card of the grant, flattened.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceGrant> {
        self.containers.iter().flatten()
    }

    /// The families the grant holds cards of, each once, in table order.
    pub fn families(&self) -> Vec<FamilyId> {
        let mut families: Vec<FamilyId> = self.devices().map(|d| d.family).collect();
        families.sort_unstable();
        families.dedup();
        families
    }

    /// A 64-bit fingerprint of what the pod's annotations record about this grant: the pod,
    /// the node, and per container the cards with their memory and cores, in any order within
    /// a container (CPU, memory, family and MIG instance are not part of it). Fingerprints
    /// add up (wrapping) to a node's [`NodeEntry::digest`], so two sets of grants with equal
    /// sums are, but for a 2^-64 chance, the same set.
    pub fn fingerprint(&self, key: &PodKey) -> u64 {
        let mut base = FastHasher::default();
        key.hash(&mut base);
        self.node.hash(&mut base);
        let mut sum = mix(base.finish());
        for (i, c) in self.containers.iter().enumerate() {
            for d in c {
                let mut h = base;
                h.write_usize(i);
                d.uuid.hash(&mut h);
                h.write_u64(d.memory_mib);
                h.write_u32(d.cores);
                sum = sum.wrapping_add(mix(h.finish()));
            }
        }
        sum
    }
}

/// A node and what is in use on it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry {
    /// The node as registered.
    pub node: Node,
    /// Usage per card, by position in `node.devices`.
    pub usage: Vec<DeviceUsage>,
    /// CPU and memory in use.
    pub used: NodeUsage,
    /// Pods holding grants here, in no particular order (a hashed set: inserting and removing
    /// one of a node's many pods costs no string compares; whoever shows or acts on them in
    /// turn sorts them first, as [`Ledger::remove_node`] does).
    pub pods: HashSet<PodKey, FastBuild>,
    /// HAMi's node usage score for the current usage (cached: node policies read it per pod).
    pub usage_score: i64,
    /// Compact per-card numbers for the filter's hot loop, by position.
    pub caps: Vec<CardCaps>,
    /// Wrapping sum of [`PodGrant::fingerprint`] over the grants of the pods listed, kept
    /// with every grant written here, so an outside checker can compare the whole set with
    /// what annotations record in constant time ([`Ledger::check_node`] proves it).
    pub digest: u64,
}

/// A read-only view of one node for filters and policies.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// The node's id.
    pub id: NodeId,
    /// The node.
    pub node: &'a Node,
    /// Usage per card.
    pub usage: &'a [DeviceUsage],
    /// CPU and memory in use.
    pub used: &'a NodeUsage,
    /// The whole ledger (for policies that look at the pods on the node).
    pub ledger: &'a Ledger,
    /// HAMi's node usage score of the current usage ([`crate::policy::hami::node_usage_score`]).
    pub usage_score: i64,
    /// Compact per-card numbers, by position.
    pub caps: &'a [CardCaps],
}

impl<'a> NodeView<'a> {
    /// Grants of the pods on this node.
    pub fn pod_grants(&self) -> impl Iterator<Item = &'a PodGrant> + 'a {
        let ledger = self.ledger;
        let entry = ledger.entry(self.id);
        entry
            .into_iter()
            .flat_map(move |e| e.pods.iter().filter_map(move |k| ledger.pods.get(k)))
    }
}

/// Why a reserve was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The node is not in the ledger.
    #[error("node {0:?} is not known")]
    UnknownNode(String),
    /// The node has no card with this UUID.
    #[error("node {node:?} has no card {uuid:?}")]
    UnknownDevice {
        /// Node name.
        node: String,
        /// Card UUID.
        uuid: String,
    },
    /// The card cannot take the grant.
    #[error(
        "card {uuid} on {node:?} cannot take {memory_mib} MiB / {cores} cores / 1 slot more (free {free_mem} MiB, {free_cores} cores, {free_slots} slots)"
    )]
    Capacity {
        /// Node name.
        node: String,
        /// Card UUID.
        uuid: String,
        /// Memory asked.
        memory_mib: u64,
        /// Cores asked.
        cores: u32,
        /// Free memory.
        free_mem: u64,
        /// Free cores.
        free_cores: u32,
        /// Free slots.
        free_slots: u32,
    },
    /// The node cannot take the pod's CPU or memory.
    #[error("node {0:?} has not enough CPU or memory left")]
    NodeResources(String),
    /// The pod already holds a different grant.
    #[error("pod {0} already holds a different grant")]
    AlreadyReserved(PodKey),
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Node name.
    pub node: String,
    /// What is wrong, readable.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.node, self.what)
    }
}

/// One family's device limits in a namespace (`limits.<memory resource>`,
/// `limits.<cores resource>` of a ResourceQuota), counted per card actually granted, as HAMi
/// counts them. `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FamilyQuota {
    /// Device memory, MiB (the quota value × the family's MiB per unit of its memory resource).
    pub memory_mib: Option<u64>,
    /// Cores, percent units summed over cards.
    pub cores: Option<u64>,
}

impl FamilyQuota {
    /// A limit on device memory only, MiB.
    pub fn memory(mib: u64) -> FamilyQuota {
        FamilyQuota {
            memory_mib: Some(mib),
            cores: None,
        }
    }

    /// A limit on cores only (percent units summed over cards).
    pub fn cores(cores: u64) -> FamilyQuota {
        FamilyQuota {
            memory_mib: None,
            cores: Some(cores),
        }
    }

    /// Whether this limits nothing.
    pub fn is_empty(&self) -> bool {
        self.memory_mib.is_none() && self.cores.is_none()
    }
}

/// A namespace's device ResourceQuota, per family: HAMi keys quota limits by resource name, and
/// every family has its own memory and cores resources (`nvidia.com/gpumem`,
/// `cambricon.com/mlu.smlu.vmemory`, `huawei.com/Ascend910B3-memory`, …). A family without an
/// entry is not limited.
///
/// Contract: never holds an empty [`FamilyQuota`] (setting one removes the family), so two
/// quotas that limit the same things compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Quota {
    families: BTreeMap<FamilyId, FamilyQuota>,
}

impl Quota {
    /// A quota that limits nothing.
    pub fn new() -> Quota {
        Quota::default()
    }

    /// This quota with `family` limited by `q` (builder form of [`Quota::set`]).
    pub fn with(mut self, family: FamilyId, q: FamilyQuota) -> Quota {
        self.set(family, q);
        self
    }

    /// Limit `family` by `q`; an empty `q` removes the family's limits.
    pub fn set(&mut self, family: FamilyId, q: FamilyQuota) {
        if q.is_empty() {
            self.families.remove(&family);
        } else {
            self.families.insert(family, q);
        }
    }

    /// The limits of `family` (empty when it is not limited).
    pub fn get(&self, family: FamilyId) -> FamilyQuota {
        self.families.get(&family).copied().unwrap_or_default()
    }

    /// Every limited family with its limits, in family order.
    pub fn families(&self) -> impl Iterator<Item = (FamilyId, FamilyQuota)> + '_ {
        self.families.iter().map(|(f, q)| (*f, *q))
    }

    /// Whether this quota limits nothing.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }
}

/// What a namespace may still take of one family under its quota (`u64::MAX` where unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyLeft {
    /// Device memory, MiB.
    pub memory_mib: u64,
    /// Cores.
    pub cores: u64,
}

impl FamilyLeft {
    /// No limit on either.
    pub const UNLIMITED: FamilyLeft = FamilyLeft {
        memory_mib: u64::MAX,
        cores: u64::MAX,
    };

    /// What is left after also taking `memory_mib` and `cores` (unlimited stays unlimited).
    pub fn minus(self, memory_mib: u64, cores: u64) -> FamilyLeft {
        let sub = |left: u64, x: u64| {
            if left == u64::MAX {
                u64::MAX
            } else {
                left.saturating_sub(x)
            }
        };
        FamilyLeft {
            memory_mib: sub(self.memory_mib, memory_mib),
            cores: sub(self.cores, cores),
        }
    }
}

/// How many families a [`QuotaLeft`] can hold (the family table has fewer rows; a test checks).
pub const QUOTA_FAMILY_SLOTS: usize = 32;

/// What a namespace may still take under its quota, per family. Plain data (`Copy`, no heap)
/// because the filter hands it to every node it fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLeft {
    left: [FamilyLeft; QUOTA_FAMILY_SLOTS],
}

impl Default for QuotaLeft {
    fn default() -> Self {
        QuotaLeft {
            left: [FamilyLeft::UNLIMITED; QUOTA_FAMILY_SLOTS],
        }
    }
}

impl QuotaLeft {
    /// What is left of `family` ([`FamilyLeft::UNLIMITED`] for a family the quota does not limit).
    #[inline]
    pub fn of(&self, family: FamilyId) -> FamilyLeft {
        self.left
            .get(family.0 as usize)
            .copied()
            .unwrap_or(FamilyLeft::UNLIMITED)
    }

    fn set(&mut self, family: FamilyId, left: FamilyLeft) {
        if let Some(slot) = self.left.get_mut(family.0 as usize) {
            *slot = left;
        }
    }
}

/// Nodes, cards and grants.
///
/// Every change to a node (registration, grant, release, removal) stamps it with a new
/// *version* from a ledger-wide counter, so a caller that cached something derived from a
/// node (a filter verdict, a score) knows when to recompute it. Versions are bookkeeping, not
/// state: two ledgers with the same nodes and grants are equal whatever their versions.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    nodes: Vec<Option<NodeEntry>>,
    by_name: BTreeMap<String, NodeId>,
    /// The same map hashed (with fixed keys: the core draws no randomness), because name
    /// lookups are on every extender call's candidate list. Never iterated.
    lookup: HashMap<String, NodeId, FastBuild>,
    /// Grants by pod, hashed with fixed keys: looked up on every reserve, release and check
    /// (a node's check visits each of its pods), which a tree of a million keys made slow.
    pods: Grants,
    quotas: BTreeMap<String, Quota>,
    /// Per node id, the version of its last change (0: never present).
    versions: Vec<u64>,
    /// Per node id, the version of its last change that could have made room for a pod:
    /// every change but a grant added (see [`Ledger::freed`]).
    freed: Vec<u64>,
    /// The last version handed out.
    clock: u64,
    /// The most recent node changes, `(version, node id)` in version order, so that a cache
    /// can catch up by visiting only what changed. Older entries are dropped (bounded by a
    /// small multiple of the node count); [`Ledger::changes_since`] says when that happened.
    changes: VecDeque<(u64, NodeId)>,
    /// Bumped whenever a node name is added, because the name order positions of the other
    /// nodes shift then (a removal keeps their relative order).
    names_epoch: u64,
}

impl PartialEq for Ledger {
    fn eq(&self, other: &Ledger) -> bool {
        self.nodes == other.nodes
            && self.by_name == other.by_name
            && self.pods == other.pods
            && self.quotas == other.quotas
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Stamp node `id` as changed in a way that may have made room (a release, a new
    /// registration, a removal, a planted fault): the default for every change.
    fn touch(&mut self, id: NodeId) {
        self.touch_added(id);
        let i = id as usize;
        if self.freed.len() <= i {
            self.freed.resize(i + 1, 0);
        }
        self.freed[i] = self.clock;
    }

    /// Stamp node `id` as changed by a grant added to it, which only takes room.
    fn touch_added(&mut self, id: NodeId) {
        self.clock += 1;
        let i = id as usize;
        if self.versions.len() <= i {
            self.versions.resize(i + 1, 0);
        }
        self.versions[i] = self.clock;
        // Amortised O(1): once the log holds twice the node count (plus slack), forget the
        // older half. A cache further behind than that rescans, which costs the same anyway.
        if self.changes.len() >= 2 * self.nodes.len() + 1024 {
            let drop = self.changes.len() - self.nodes.len();
            self.changes.drain(..drop);
        }
        self.changes.push_back((self.clock, id));
    }

    /// The newest version handed out (0 for a ledger that never changed).
    #[inline]
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The nodes changed after version `since`, oldest first (a node changed twice appears
    /// twice), or `None` when the log no longer reaches back that far — the caller must then
    /// revisit every node. `since` must be a value [`Ledger::clock`] returned on this ledger or
    /// an ancestor it was cloned from.
    pub fn changes_since(&self, since: u64) -> Option<impl ExactSizeIterator<Item = NodeId> + '_> {
        let from = self.log_from(since)?;
        Some(self.changes.range(from..).map(|&(_, id)| id))
    }

    /// The position in the change log of the first change after version `since`, or `None`
    /// when the log no longer reaches back that far (or `since` is from the future).
    fn log_from(&self, since: u64) -> Option<usize> {
        if since > self.clock {
            return None;
        }
        let covered = match self.changes.front() {
            Some(&(first, _)) => since + 1 >= first,
            None => since == self.clock,
        };
        covered.then(|| self.changes.partition_point(|&(v, _)| v <= since))
    }

    /// [`Ledger::changes_since`] with each changed node once, where it last changed (an entry
    /// that a later change of the same node supersedes is skipped): what a cache that reads
    /// each changed node's current state needs. With it, how many log entries that took (a
    /// bound on the nodes yielded), for a caller that would rather revisit every node.
    pub fn latest_changes_since(
        &self,
        since: u64,
    ) -> Option<(usize, impl Iterator<Item = NodeId> + '_)> {
        let entries = self.changes.range(self.log_from(since)?..);
        let versions = &self.versions;
        Some((
            entries.len(),
            entries
                .filter(move |&&(v, id)| versions.get(id as usize) == Some(&v))
                .map(|&(_, id)| id),
        ))
    }

    /// A counter that changes whenever a node name is added (the positions of node names in
    /// sorted order then shift); equal values on one ledger lineage mean the same name order.
    #[inline]
    pub fn names_epoch(&self) -> u64 {
        self.names_epoch
    }

    /// The version of node `id`'s last change: it differs from every earlier value whenever the
    /// node's registration, usage or pods changed (0 for an id never present).
    #[inline]
    pub fn version(&self, id: NodeId) -> u64 {
        self.versions.get(id as usize).copied().unwrap_or(0)
    }

    /// The version of node `id`'s last change that could have made room for a pod: its
    /// registration, a release, its removal (0 for an id never present). Every later change
    /// only added grants, which take room and give none, so a pod that did not fit the node
    /// at a version at or after this one still does not (a fit needs free slots, memory,
    /// cores, CPU and memory on the node, and idle cards for exclusive requests: all only
    /// shrink). Caches of refusals stay valid across such changes.
    #[inline]
    pub fn freed(&self, id: NodeId) -> u64 {
        self.freed.get(id as usize).copied().unwrap_or(0)
    }

    /// Add a node or replace its registration. Usage is recomputed from the grants of the pods
    /// already on it (a card that disappeared simply stops counting their share).
    pub fn upsert_node(&mut self, node: Node) -> NodeId {
        let id = match self.by_name.get(&node.name) {
            Some(&id) => id,
            None => {
                let id = self.nodes.len() as NodeId;
                self.by_name.insert(node.name.clone(), id);
                self.lookup.insert(node.name.clone(), id);
                self.names_epoch += 1;
                self.nodes.push(None);
                id
            }
        };
        let pods = self.nodes[id as usize]
            .take()
            .map(|e| e.pods)
            .unwrap_or_default();
        let mut entry = NodeEntry {
            usage: vec![DeviceUsage::default(); node.devices.len()],
            node,
            used: NodeUsage::default(),
            pods: HashSet::default(),
            usage_score: 0,
            caps: Vec::new(),
            digest: 0,
        };
        entry.caps = entry.node.devices.iter().map(CardCaps::of).collect();
        for k in &pods {
            if let Some(g) = self.pods.get(k) {
                apply_grant(&mut entry, g, true);
                entry.digest = entry.digest.wrapping_add(g.fingerprint(k));
            }
        }
        entry.pods = pods;
        self.nodes[id as usize] = Some(entry);
        self.touch(id);
        id
    }

    /// Remove a node; returns the pods that held grants there, in key order (their grants are
    /// dropped).
    pub fn remove_node(&mut self, name: &str) -> Vec<PodKey> {
        let Some(id) = self.by_name.remove(name) else {
            return Vec::new();
        };
        self.lookup.remove(name);
        let Some(entry) = self.nodes[id as usize].take() else {
            return Vec::new();
        };
        self.touch(id);
        let mut pods: Vec<PodKey> = entry.pods.into_iter().collect();
        pods.sort_unstable();
        for k in &pods {
            self.pods.remove(k);
        }
        pods
    }

    /// Id of a node by name.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.lookup.get(name).copied()
    }

    /// The entry of a node id, if the node is present.
    pub fn entry(&self, id: NodeId) -> Option<&NodeEntry> {
        self.nodes.get(id as usize).and_then(|e| e.as_ref())
    }

    /// A view of one node.
    pub fn view(&self, id: NodeId) -> Option<NodeView<'_>> {
        self.entry(id).map(|e| NodeView {
            id,
            node: &e.node,
            usage: &e.usage,
            used: &e.used,
            ledger: self,
            usage_score: e.usage_score,
            caps: &e.caps,
        })
    }

    /// Views of every present node, in id order.
    pub fn views(&self) -> impl Iterator<Item = NodeView<'_>> {
        self.nodes.iter().enumerate().filter_map(move |(i, e)| {
            e.as_ref().map(|e| NodeView {
                id: i as NodeId,
                node: &e.node,
                usage: &e.usage,
                used: &e.used,
                ledger: self,
                usage_score: e.usage_score,
                caps: &e.caps,
            })
        })
    }

    /// Number of present nodes.
    pub fn node_count(&self) -> usize {
        self.by_name.len()
    }

    /// Upper bound of node ids (for per-node arrays).
    pub fn node_id_bound(&self) -> usize {
        self.nodes.len()
    }

    /// Node names in sorted order with their ids.
    pub fn names(&self) -> impl Iterator<Item = (&str, NodeId)> {
        self.by_name.iter().map(|(n, &id)| (n.as_str(), id))
    }

    /// Set (or with `None` remove) a namespace's device quota; a quota that limits nothing is
    /// the same as none.
    pub fn set_quota(&mut self, namespace: &str, quota: Option<Quota>) {
        match quota.filter(|q| !q.is_empty()) {
            Some(q) => {
                self.quotas.insert(namespace.to_string(), q);
            }
            None => {
                self.quotas.remove(namespace);
            }
        }
    }

    /// The device quota of `namespace`, if it has one.
    pub fn quota(&self, namespace: &str) -> Option<&Quota> {
        self.quotas.get(namespace)
    }

    /// Every namespace's device quota, by namespace.
    pub fn quotas(&self) -> &BTreeMap<String, Quota> {
        &self.quotas
    }

    /// What `namespace` may still take per family, or `None` when it has no quota. Usage is
    /// summed per family from the grants of the namespace's pods (a restarted scheduler
    /// recovers it from annotations).
    pub fn quota_left(&self, namespace: &str) -> Option<QuotaLeft> {
        let q = self.quotas.get(namespace)?;
        let mut used: BTreeMap<FamilyId, (u64, u64)> = BTreeMap::new();
        for (k, g) in &self.pods {
            if k.namespace == namespace {
                for d in g.devices() {
                    let u = used.entry(d.family).or_default();
                    u.0 += d.memory_mib;
                    u.1 += u64::from(d.cores);
                }
            }
        }
        let mut left = QuotaLeft::default();
        for (f, fq) in q.families() {
            let (mem, cores) = used.get(&f).copied().unwrap_or_default();
            left.set(
                f,
                FamilyLeft {
                    memory_mib: fq.memory_mib.map_or(u64::MAX, |l| l.saturating_sub(mem)),
                    cores: fq.cores.map_or(u64::MAX, |l| l.saturating_sub(cores)),
                },
            );
        }
        Some(left)
    }

    /// The grant of a pod.
    pub fn grant(&self, key: &PodKey) -> Option<&PodGrant> {
        self.pods.get(key)
    }

    /// Every grant, by pod (in no particular order; sort when the order shows).
    pub fn grants(&self) -> &Grants {
        &self.pods
    }

    /// Turn picks on a node into a wire-level grant.
    pub fn grant_from_placement(
        &self,
        id: NodeId,
        placement: &Placement,
        cpu_milli: u64,
        memory_mib: u64,
    ) -> Option<PodGrant> {
        let e = self.entry(id)?;
        let containers = placement
            .iter()
            .map(|picks| {
                // Sized from the picks: a filtered `collect` starts at four (a grant is kept
                // for the pod's lifetime, and most pods take one card).
                let mut cards = Vec::with_capacity(picks.len());
                cards.extend(picks.iter().filter_map(|p| {
                    let d = e.node.devices.get(p.device as usize)?;
                    Some(DeviceGrant {
                        uuid: d.uuid.clone(),
                        family: d.family,
                        memory_mib: p.memory_mib,
                        cores: p.cores,
                        mig: p.mig.map(|m| (m.profile, m.start, m.size)),
                    })
                }));
                cards
            })
            .collect();
        Some(PodGrant {
            node: e.node.name.clone(),
            containers,
            cpu_milli,
            memory_mib,
        })
    }

    /// Reserve `grant` for `key`. Re-checks capacity of every card and of the node; applies all
    /// or nothing. Reserving the identical grant again is a no-op; a different one is refused.
    pub fn reserve(&mut self, key: &PodKey, grant: PodGrant) -> Result<(), LedgerError> {
        if let Some(existing) = self.pods.get(key) {
            return if *existing == grant {
                Ok(())
            } else {
                Err(LedgerError::AlreadyReserved(key.clone()))
            };
        }
        let id = self
            .node_id(&grant.node)
            .ok_or_else(|| LedgerError::UnknownNode(grant.node.clone()))?;
        let entry = self.nodes[id as usize]
            .as_mut()
            .ok_or_else(|| LedgerError::UnknownNode(grant.node.clone()))?;
        // Check on a copy so a failure changes nothing.
        let mut usage = entry.usage.clone();
        for d in grant.devices() {
            let pos = entry
                .node
                .devices
                .iter()
                .position(|x| x.uuid == d.uuid)
                .ok_or_else(|| LedgerError::UnknownDevice {
                    node: grant.node.clone(),
                    uuid: d.uuid.clone(),
                })?;
            let dev = &entry.node.devices[pos];
            let u = &mut usage[pos];
            let mig_clash = d.mig.is_some_and(|(p, s, n)| {
                MigPick {
                    profile: p,
                    start: s,
                    size: n,
                }
                .mask()
                    & u.mig_slices
                    != 0
            });
            if u.used + 1 > dev.split_count
                || u.used_mem + d.memory_mib > dev.memory_mib
                || u.used_cores + d.cores > dev.cores
                || mig_clash
            {
                return Err(LedgerError::Capacity {
                    node: grant.node.clone(),
                    uuid: d.uuid.clone(),
                    memory_mib: d.memory_mib,
                    cores: d.cores,
                    free_mem: dev.memory_mib.saturating_sub(u.used_mem),
                    free_cores: dev.cores.saturating_sub(u.used_cores),
                    free_slots: dev.split_count.saturating_sub(u.used),
                });
            }
            pick_of(d, pos).apply(u);
        }
        let n = &entry.node;
        if (n.cpu_milli > 0 && entry.used.cpu_milli + grant.cpu_milli > n.cpu_milli)
            || (n.memory_mib > 0 && entry.used.memory_mib + grant.memory_mib > n.memory_mib)
        {
            return Err(LedgerError::NodeResources(grant.node.clone()));
        }
        entry.usage = usage;
        entry.usage_score = node_usage_score(&entry.node, &entry.usage);
        entry.used.cpu_milli += grant.cpu_milli;
        entry.used.memory_mib += grant.memory_mib;
        entry.digest = entry.digest.wrapping_add(grant.fingerprint(key));
        entry.pods.insert(key.clone());
        self.pods.insert(key.clone(), grant);
        self.touch_added(id);
        Ok(())
    }

    /// Release a pod's grant; returns it. Releasing an unknown pod is a no-op (`None`).
    pub fn unreserve(&mut self, key: &PodKey) -> Option<PodGrant> {
        let grant = self.pods.remove(key)?;
        if let Some(id) = self.node_id(&grant.node)
            && let Some(entry) = self.nodes[id as usize].as_mut()
        {
            apply_grant(entry, &grant, false);
            entry.digest = entry.digest.wrapping_sub(grant.fingerprint(key));
            entry.pods.remove(key);
            self.touch(id);
        }
        Some(grant)
    }

    /// Prove the ledger's invariants: no card over its slots, memory or cores; no overlapping
    /// MIG instances; usage and grant digests equal to the sums over grants; node CPU/memory
    /// within allocatable.
    pub fn check_invariants(&self) -> Result<(), Vec<Violation>> {
        let mut out = Vec::new();
        for id in 0..self.nodes.len() {
            out.extend(self.check_node(id as NodeId, |_, _| {}));
        }
        for k in self.pods.keys() {
            out.extend(self.check_listed(k));
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// The invariants of node `id` alone (see [`Ledger::check_invariants`]): its cards and
    /// allocatable not exceeded, and its usage (and [`NodeEntry::digest`]) equal to the sum of
    /// the grants (fingerprints) of the pods it lists, each of which names this node. Empty for an id not present. Together with
    /// [`Ledger::check_listed`] for the pods whose grants changed, this proves after a change
    /// what `check_invariants` proves for the whole ledger, in time proportional to the change.
    /// `each` sees every listed pod with its grant (an outside checker compares them on the same
    /// pass instead of looking each pod up again).
    pub fn check_node(
        &self,
        id: NodeId,
        mut each: impl FnMut(&PodKey, Option<&PodGrant>),
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let Some(e) = self.entry(id) else {
            return out;
        };
        let n = &e.node;
        let mut usage = vec![DeviceUsage::default(); n.devices.len()];
        let mut used = NodeUsage::default();
        let mut digest = 0u64;
        for k in &e.pods {
            let g = self.pods.get(k);
            each(k, g);
            match g {
                Some(g) if g.node == n.name => {
                    add_usage(n, &mut usage, &mut used, g, true);
                    digest = digest.wrapping_add(g.fingerprint(k));
                }
                _ => out.push(Violation {
                    node: n.name.clone(),
                    what: format!("pod {k} listed without a grant here"),
                }),
            }
        }
        for ((d, u), sum) in n.devices.iter().zip(&e.usage).zip(&usage) {
            if u != sum {
                out.push(Violation {
                    node: n.name.clone(),
                    what: format!("card {} usage {u:?} != sum of grants {sum:?}", d.uuid),
                });
            }
        }
        if e.used != used {
            out.push(Violation {
                node: n.name.clone(),
                what: format!("node usage {:?} != sum of grants {used:?}", e.used),
            });
        }
        if e.digest != digest {
            out.push(Violation {
                node: n.name.clone(),
                what: format!(
                    "grant digest {:#x} != sum of the listed grants' fingerprints {digest:#x}",
                    e.digest
                ),
            });
        }
        out.extend(self.check_node_bounds(id));
        out
    }

    /// The bounds of node `id` alone, in time proportional to its cards: no card over its
    /// slots, memory or cores, and the node within its allocatable CPU and memory. Part of
    /// [`Ledger::check_node`]; on its own for a checker that proves usage equal to the grants
    /// another way. Empty for an id not present.
    pub fn check_node_bounds(&self, id: NodeId) -> Vec<Violation> {
        let mut out = Vec::new();
        let Some(e) = self.entry(id) else {
            return out;
        };
        let n = &e.node;
        for (d, u) in n.devices.iter().zip(&e.usage) {
            if u.used > d.split_count || u.used_mem > d.memory_mib || u.used_cores > d.cores {
                out.push(Violation {
                    node: n.name.clone(),
                    what: format!(
                        "card {} over capacity: slots {}/{}, memory {}/{} MiB, cores {}/{}",
                        d.uuid,
                        u.used,
                        d.split_count,
                        u.used_mem,
                        d.memory_mib,
                        u.used_cores,
                        d.cores
                    ),
                });
            }
        }
        if (n.cpu_milli > 0 && e.used.cpu_milli > n.cpu_milli)
            || (n.memory_mib > 0 && e.used.memory_mib > n.memory_mib)
        {
            out.push(Violation {
                node: n.name.clone(),
                what: format!("node over allocatable: {:?}", e.used),
            });
        }
        out
    }

    /// Whether pod `key`'s grant, if it has one, is listed on the node it names.
    pub fn check_listed(&self, key: &PodKey) -> Option<Violation> {
        let g = self.pods.get(key)?;
        let listed = self
            .node_id(&g.node)
            .and_then(|id| self.entry(id))
            .is_some_and(|e| e.pods.contains(key));
        (!listed).then(|| Violation {
            node: g.node.clone(),
            what: format!("grant of pod {key} not listed on its node"),
        })
    }

    /// Swap the stored grants of pods `a` and `b` (same node), leaving usage, lists and digest
    /// as they were: a planted bookkeeping bug. Only for tests that prove the checker catches it.
    #[doc(hidden)]
    pub fn swap_grants_for_test(&mut self, a: &PodKey, b: &PodKey) {
        if let (Some(ga), Some(gb)) = (self.pods.get(a).cloned(), self.pods.get(b).cloned()) {
            self.pods.insert(a.clone(), gb);
            self.pods.insert(b.clone(), ga);
        }
    }

    /// Take pod `key` off its node's list, leaving its grant, the usage and the digest: a
    /// planted bookkeeping bug. Only for tests that prove the checker catches it.
    #[doc(hidden)]
    pub fn unlist_for_test(&mut self, key: &PodKey) {
        if let Some(g) = self.pods.get(key)
            && let Some(id) = self.node_id(&g.node)
            && let Some(e) = self.nodes[id as usize].as_mut()
        {
            e.pods.remove(key);
            self.touch(id);
        }
    }

    /// Change a node's grant digest directly. Only for tests that prove the checker catches it.
    #[doc(hidden)]
    pub fn corrupt_digest_for_test(&mut self, node: &str, delta: u64) {
        if let Some(id) = self.node_id(node)
            && let Some(e) = self.nodes[id as usize].as_mut()
        {
            e.digest = e.digest.wrapping_add(delta);
            self.touch(id);
        }
    }

    /// Apply a usage change directly, bypassing the capacity check. Only for tests that plant
    /// corruption to prove the checker catches it.
    #[doc(hidden)]
    pub fn corrupt_usage_for_test(
        &mut self,
        node: &str,
        device: usize,
        f: impl FnOnce(&mut DeviceUsage),
    ) {
        if let Some(id) = self.node_id(node)
            && let Some(e) = self.nodes[id as usize].as_mut()
            && let Some(u) = e.usage.get_mut(device)
        {
            f(u);
            self.touch(id);
        }
    }
}

fn pick_of(d: &DeviceGrant, pos: usize) -> Pick {
    Pick {
        device: pos as u16,
        family: d.family,
        memory_mib: d.memory_mib,
        cores: d.cores,
        mig: d.mig.map(|(profile, start, size)| MigPick {
            profile,
            start,
            size,
        }),
    }
}

fn apply_grant(entry: &mut NodeEntry, g: &PodGrant, add: bool) {
    add_usage(&entry.node, &mut entry.usage, &mut entry.used, g, add);
    entry.usage_score = node_usage_score(&entry.node, &entry.usage);
}

/// Add (or take away) grant `g`'s share to the usage of `node`'s cards and allocatable.
fn add_usage(
    node: &Node,
    usage: &mut [DeviceUsage],
    used: &mut NodeUsage,
    g: &PodGrant,
    add: bool,
) {
    for d in g.devices() {
        if let Some(pos) = node.devices.iter().position(|x| x.uuid == d.uuid) {
            let p = pick_of(d, pos);
            if add {
                p.apply(&mut usage[pos])
            } else {
                p.remove(&mut usage[pos])
            }
        }
    }
    if add {
        used.cpu_milli += g.cpu_milli;
        used.memory_mib += g.memory_mib;
    } else {
        used.cpu_milli = used.cpu_milli.saturating_sub(g.cpu_milli);
        used.memory_mib = used.memory_mib.saturating_sub(g.memory_mib);
    }
}
