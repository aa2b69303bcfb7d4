//! Device selection: order a node's cards by the device policy and fit every container's
//! request greedily, as HAMi does, on a scratch copy of the node's usage.

use super::{DevicePolicyChain, DevicePolicyKind, Placement};
use crate::family::FamilyId;
use crate::fit::{
    CardCaps, MigPick, Pick, Reason, ReasonCounts, check_card_caps, check_node_resources,
    memory_needed_caps,
};
use crate::ledger::{FamilyLeft, NodeView, QuotaLeft};
use crate::model::{DeviceUsage, Node};
use crate::request::{DeviceRequest, PodRequest};

/// Ascend-style memory templates per family (MiB, any order); empty for families without.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates(pub Vec<Vec<u64>>);

impl Templates {
    /// Templates of `family`.
    pub fn of(&self, family: FamilyId) -> &[u64] {
        self.0
            .get(family.0 as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The settings a fit runs under: device policy chain, vendor templates, and whether node
/// CPU/memory are checked.
#[derive(Debug, Clone, Copy)]
pub struct FitEnv<'a> {
    /// Device policy chain.
    pub chain: &'a DevicePolicyChain,
    /// Ascend memory templates.
    pub templates: &'a Templates,
    /// Check node CPU and memory.
    pub check_node: bool,
    /// What the pod's namespace may still take under its quota, when it has one.
    pub quota: Option<QuotaLeft>,
}

impl FitEnv<'_> {
    /// The card half of the filter: these settings without the node's CPU and memory check.
    /// What fits (and why not) under it depends on the pod's device requests alone, which is
    /// what lets the memo share it between pod shapes.
    pub fn cards_only(&self) -> Self {
        FitEnv {
            check_node: false,
            ..*self
        }
    }
}

/// Reusable buffers so that filtering thousands of nodes allocates nothing per node.
#[derive(Debug, Default, Clone)]
pub struct FitScratch {
    usage: Vec<DeviceUsage>,
    cand: Vec<Cand>,
    chosen: Vec<usize>,
    /// Device memory and cores the pod's earlier requests took on this node, per family (for
    /// quotas, which are per family).
    taken: Vec<(FamilyId, u64, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct Cand {
    pos: u16,
    mem: u64,
    mig: Option<MigPick>,
    key: f64,
}

/// HAMi's card usage score: slots, cores and memory fractions in use, summed.
pub fn card_usage_score(node: &Node, usage: &[DeviceUsage], pos: usize) -> f64 {
    let d = &node.devices[pos];
    let u = &usage[pos];
    let f = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    f(u.used as f64, d.split_count as f64)
        + f(u.used_cores as f64, d.cores as f64)
        + f(u.used_mem as f64, d.memory_mib as f64)
}

/// Fit the whole pod on one node. With `want_placement = false` it only answers whether the
/// pod fits (cheaper for single-container pods); `reasons`, when given, collects why cards and
/// the node were rejected. Pure: the node's real usage is not touched.
pub fn fit_pod(
    view: &NodeView<'_>,
    req: &PodRequest,
    env: &FitEnv<'_>,
    scratch: &mut FitScratch,
    mut reasons: Option<&mut ReasonCounts>,
    want_placement: bool,
) -> Option<Placement> {
    let FitEnv {
        chain,
        templates,
        check_node,
        ..
    } = *env;
    // By reference: the per-family table is a few hundred bytes, and most pods have no quota.
    let quota = env.quota.as_ref();
    scratch.taken.clear();
    let node = view.node;
    if check_node
        && let Err(r) = check_node_resources(node, view.used, req.cpu_milli, req.memory_mib)
    {
        if let Some(rc) = reasons.as_deref_mut() {
            rc.add(r);
            rc.cards = rc.cards.max(1);
        }
        return None;
    }
    let device_containers = req
        .containers
        .iter()
        .filter(|c| !c.devices.is_empty())
        .count();
    let quick = !want_placement && device_containers <= 1;
    // A quick answer reads the node's usage as it is; otherwise the picks so far are applied
    // to a copy, for the next request to see.
    scratch.usage.clear();
    if !quick {
        scratch.usage.extend_from_slice(view.usage);
    }
    let mut placement: Placement = if want_placement {
        Vec::with_capacity(req.containers.len())
    } else {
        Vec::new()
    };
    for c in &req.containers {
        let mut picks = Vec::new();
        for dr in &c.devices {
            let usage: &[DeviceUsage] = if quick { view.usage } else { &scratch.usage };
            let input = FitInput {
                node,
                caps: view.caps,
                usage,
                dr,
                numa_bind: req.numa_bind,
                chain,
                templates,
                quota: quota.map(|q| {
                    let (mem, cores) = scratch
                        .taken
                        .iter()
                        .find(|t| t.0 == dr.family)
                        .map_or((0, 0), |t| (t.1, t.2));
                    q.of(dr.family).minus(mem, cores)
                }),
            };
            let ok = fit_one(
                input,
                &mut scratch.cand,
                &mut scratch.chosen,
                reasons.as_deref_mut(),
                quick,
            );
            if !ok {
                return None;
            }
            if !quick {
                for &i in &scratch.chosen {
                    let cand = scratch.cand[i];
                    let p = Pick {
                        device: cand.pos,
                        family: dr.family,
                        memory_mib: cand.mem,
                        cores: dr.cores.min(100),
                        mig: cand.mig,
                    };
                    p.apply(&mut scratch.usage[cand.pos as usize]);
                    match scratch.taken.iter_mut().find(|t| t.0 == dr.family) {
                        Some(t) => {
                            t.1 += p.memory_mib;
                            t.2 += u64::from(p.cores);
                        }
                        None => scratch
                            .taken
                            .push((dr.family, p.memory_mib, u64::from(p.cores))),
                    }
                    if want_placement {
                        picks.push(p);
                    }
                }
            }
        }
        if want_placement {
            placement.push(picks);
        }
    }
    Some(placement)
}

/// What one device request is fitted against.
struct FitInput<'a> {
    node: &'a Node,
    caps: &'a [CardCaps],
    usage: &'a [DeviceUsage],
    dr: &'a DeviceRequest,
    numa_bind: bool,
    chain: &'a DevicePolicyChain,
    templates: &'a Templates,
    /// What the namespace may still take of this request's family.
    quota: Option<FamilyLeft>,
}

fn fit_one(
    inp: FitInput<'_>,
    cand: &mut Vec<Cand>,
    chosen: &mut Vec<usize>,
    mut reasons: Option<&mut ReasonCounts>,
    quick: bool,
) -> bool {
    let FitInput {
        node,
        caps,
        usage,
        dr,
        numa_bind,
        chain,
        templates,
        quota,
    } = inp;
    let mutex = chain.has(DevicePolicyKind::Mutex);
    let binpack = chain
        .0
        .iter()
        .find(|k| matches!(k, DevicePolicyKind::Binpack | DevicePolicyKind::Spread))
        == Some(&DevicePolicyKind::Binpack);
    cand.clear();
    chosen.clear();
    let mut family_cards = 0u32;
    let need = dr.count as usize;
    // A yes/no answer without reasons can stop at the first `need` fitting cards: on a half-used
    // cluster that is usually after two or three cards, not eight.
    let early_exit = quick && !numa_bind && reasons.is_none();
    let templates = templates.of(dr.family);
    for (pos, (dev, cap)) in node.devices.iter().zip(caps).enumerate() {
        if cap.family != dr.family {
            continue;
        }
        family_cards += 1;
        let mem = memory_needed_caps(cap, dr, templates);
        let verdict = check_card_caps(cap, dev, &usage[pos], dr, mem, mutex).and_then(|mig| {
            // HAMi counts a quota per card granted: `need` cards of this size must fit in what
            // the namespace has left.
            match (quota, mem) {
                (Some(q), Some(m))
                    if m.saturating_mul(need as u64) > q.memory_mib
                        || u64::from(dr.cores.min(100)) * need as u64 > q.cores =>
                {
                    Err(Reason::ResourceQuotaNotFit)
                }
                _ => Ok(mig),
            }
        });
        match verdict {
            Ok(mig) => {
                cand.push(Cand {
                    pos: pos as u16,
                    mem: mem.unwrap_or(0),
                    mig,
                    key: 0.0,
                });
                if early_exit && cand.len() >= need {
                    return true;
                }
            }
            Err(r) => {
                if let Some(rc) = reasons.as_deref_mut() {
                    rc.add(r);
                }
            }
        }
    }
    if let Some(rc) = reasons.as_deref_mut() {
        rc.cards = rc.cards.max(family_cards);
    }
    if family_cards < dr.count {
        if let Some(rc) = reasons.as_deref_mut() {
            rc.add_n(Reason::NodeInsufficientDevice, 1);
            rc.cards = rc.cards.max(1);
        }
        return false;
    }
    if cand.len() < need {
        if let Some(rc) = reasons.as_deref_mut()
            && !cand.is_empty()
        {
            rc.add_n(Reason::AllocatedCardsInsufficientRequest, cand.len() as u32);
        }
        return false;
    }
    let numa_pref = chain.has(DevicePolicyKind::Numa);
    if quick && !numa_bind {
        return true;
    }
    // Order: binpack = most used first, spread = least used first; ties by position.
    for c in cand.iter_mut() {
        let sc = card_usage_score(node, usage, c.pos as usize);
        c.key = if binpack { -sc } else { sc };
    }
    cand.sort_by(|a, b| a.key.total_cmp(&b.key).then(a.pos.cmp(&b.pos)));

    if numa_bind || numa_pref {
        // The first NUMA node (in policy order) that holds enough fitting cards.
        let mut chosen_numa = None;
        for c in cand.iter() {
            let numa = node.devices[c.pos as usize].numa;
            let n = cand
                .iter()
                .filter(|x| node.devices[x.pos as usize].numa == numa)
                .count();
            if n >= need {
                chosen_numa = Some(numa);
                break;
            }
        }
        match chosen_numa {
            Some(numa) => cand.retain(|x| node.devices[x.pos as usize].numa == numa),
            None if numa_bind => {
                if let Some(rc) = reasons {
                    rc.add_n(Reason::NumaNotFit, need as u32);
                }
                return false;
            }
            None => {}
        }
    }
    if quick {
        return true;
    }
    if chain.has(DevicePolicyKind::TopologyAware) && node.links.is_known() {
        choose_topology(node, need, cand, chosen);
    } else {
        chosen.extend(0..need);
    }
    true
}

/// Topology-aware choice: one card → the worst-connected fitting card (keeps well-connected
/// groups free); several → the fitting set with the highest sum of pair scores. Ties keep the
/// policy order. Very large searches fall back to a greedy extension of the best pair.
fn choose_topology(node: &Node, need: usize, cand: &[Cand], chosen: &mut Vec<usize>) {
    let pos: Vec<usize> = cand.iter().map(|c| c.pos as usize).collect();
    if need == 1 {
        let mut best = 0usize;
        let mut best_sum = u64::MAX;
        for (i, &p) in pos.iter().enumerate() {
            let sum: u64 = (0..node.devices.len())
                .filter(|&q| q != p)
                .map(|q| u64::from(node.links.get(p, q)))
                .sum();
            if sum < best_sum {
                best_sum = sum;
                best = i;
            }
        }
        chosen.push(best);
        return;
    }
    let m = pos.len();
    let combos = binomial(m, need);
    if combos <= 20_000 {
        let mut idx: Vec<usize> = (0..need).collect();
        let mut best: Option<(u64, Vec<usize>)> = None;
        loop {
            let mut sum = 0u64;
            for a in 0..need {
                for b in (a + 1)..need {
                    sum += u64::from(node.links.get(pos[idx[a]], pos[idx[b]]));
                }
            }
            if best.as_ref().is_none_or(|(bs, _)| sum > *bs) {
                best = Some((sum, idx.clone()));
            }
            // Next combination in lexicographic order.
            let mut i = need;
            while i > 0 && idx[i - 1] == m - need + i - 1 {
                i -= 1;
            }
            if i == 0 {
                break;
            }
            idx[i - 1] += 1;
            for j in i..need {
                idx[j] = idx[j - 1] + 1;
            }
        }
        if let Some((_, v)) = best {
            chosen.extend(v);
        }
    } else {
        // Greedy: start from the first card, repeatedly add the card best connected to the set.
        let mut set = vec![0usize];
        while set.len() < need {
            let next = (0..m).filter(|i| !set.contains(i)).max_by_key(|&i| {
                (
                    set.iter()
                        .map(|&j| u64::from(node.links.get(pos[i], pos[j])))
                        .sum::<u64>(),
                    std::cmp::Reverse(i),
                )
            });
            match next {
                Some(i) => set.push(i),
                None => break,
            }
        }
        set.sort_unstable();
        chosen.extend(set);
    }
}

fn binomial(n: usize, k: usize) -> u64 {
    if k > n {
        return 0;
    }
    let mut r: u64 = 1;
    for i in 0..k as u64 {
        r = r.saturating_mul(n as u64 - i) / (i + 1);
    }
    r
}
