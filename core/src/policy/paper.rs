//! The FGD paper's baseline node policies (Weng et al., USENIX ATC'23): Random, DotProduct,
//! GPU Clustering, GPU Packing and Best-fit, with the card choice each makes.
//!
//! GPU shares are accounted in integer milli-GPU per card, derived from HAMi usage: a card's
//! free share is `min((cores − used_cores)·1000/cores, (memory − used_mem)·1000/memory)`, so a
//! pod asking `gpucores: c` and `gpumem-percentage: c` takes `10·c` milli-GPU, whole-card pods
//! (exclusive: 100 cores, 100 % memory) take 1000, and memory-only pods count through the memory
//! fraction. A pod's per-card share is `max(cores·10, memory·1000/card memory)`, capped at 1000.
//!
//! The policies understand pods with one device request (one container asking one family), which
//! is every pod of the paper's traces. For pods with several device requests they still score
//! (on the summed request) but leave the card choice to the device policy.

use super::{NodePolicy, NodePolicyKind, Placement, ScoreContext, Scored};
use crate::fit::{Pick, check_card, memory_needed};
use crate::ledger::NodeView;
use crate::model::{Device, DeviceUsage};
use crate::request::{DeviceRequest, PodRequest};
use rand::RngExt;
use smallvec::SmallVec;

/// One whole card, in milli-GPU.
pub const MILLI: u64 = 1000;
/// CPU normaliser of the paper's scores: 128 cores, in milli-CPU.
pub const MAX_SPEC_CPU: u64 = 128_000;
/// GPU normaliser of the paper's scores: 8 cards, in milli-GPU.
pub const MAX_SPEC_GPU: u64 = 8_000;

/// Free share of one card in milli-GPU: the smaller of the free core and free memory fractions.
/// Unhealthy or cordoned cards have no free share.
pub fn card_free_milli(dev: &Device, u: &DeviceUsage) -> u64 {
    if !dev.healthy || dev.cordoned {
        return 0;
    }
    let cores = if dev.cores == 0 {
        MILLI
    } else {
        u64::from(dev.cores.saturating_sub(u.used_cores)) * MILLI / u64::from(dev.cores)
    };
    let mem = (dev.memory_mib.saturating_sub(u.used_mem) * MILLI)
        .checked_div(dev.memory_mib)
        .unwrap_or(MILLI);
    cores.min(mem).min(MILLI)
}

/// The free share of each of the node's cards, in position order, milli-GPU ([`card_free_milli`];
/// up to 8 cards inline).
pub fn card_frees(node: &NodeView<'_>) -> SmallVec<[u64; 8]> {
    node.node
        .devices
        .iter()
        .zip(node.usage)
        .map(|(d, u)| card_free_milli(d, u))
        .collect()
}

/// The node's total free share over all its cards, milli-GPU.
pub fn node_free_milli(node: &NodeView<'_>) -> u64 {
    card_frees(node).iter().sum()
}

/// Per-card share of `dr` on a card like `dev`, milli-GPU: `max(cores·10, memory fraction)`,
/// capped at one card (memory rounded up so a memory-only request never counts as zero).
pub fn request_share_milli(dr: &DeviceRequest, dev: &Device) -> u64 {
    let cores = u64::from(dr.cores.min(100)) * MILLI / 100;
    let mem = if dev.memory_mib == 0 {
        0
    } else {
        (dr.memory_on(dev.memory_mib) * MILLI).div_ceil(dev.memory_mib)
    };
    cores.max(mem).min(MILLI)
}

/// The pod's only device request with the index of its container, when it has exactly one.
pub fn single_device_request(req: &PodRequest) -> Option<(usize, &DeviceRequest)> {
    let mut found = None;
    for (ci, c) in req.containers.iter().enumerate() {
        for dr in &c.devices {
            if found.is_some() {
                return None;
            }
            found = Some((ci, dr));
        }
    }
    found
}

/// A card that can take one unit of a request: position, free share before, memory it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardFit {
    /// Position of the card on the node.
    pub pos: u16,
    /// Free share of the card before placement, milli-GPU.
    pub free: u64,
    /// Memory the request takes on it, MiB.
    pub memory_mib: u64,
}

/// The pod shape a paper policy reasons about, resolved on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeShape {
    /// Container index holding the device request (when the pod has exactly one).
    pub container: Option<usize>,
    /// Cards asked.
    pub count: u32,
    /// Per-card share, milli-GPU (0 for CPU-only pods).
    pub share: u64,
    /// Cards of the node that can take one unit of the request, in position order.
    pub fits: SmallVec<[CardFit; 8]>,
    /// The node's free share per card, milli-GPU (every card of the node).
    pub free: SmallVec<[u64; 8]>,
}

impl NodeShape {
    /// Resolve `req` on `node`: per-card share, fitting cards, free shares.
    pub fn of(node: &NodeView<'_>, req: &PodRequest) -> NodeShape {
        // Inline up to 8 cards: this runs for every (pod shape, changed node) pair.
        let free = card_frees(node);
        let Some((ci, dr)) = single_device_request(req) else {
            // CPU-only, or several device requests: the summed share on the first matching card.
            let mut count = 0;
            let mut share_total = 0;
            for dr in req.containers.iter().flat_map(|c| &c.devices) {
                count += dr.count;
                if let Some(d) = node.node.devices.iter().find(|d| d.family == dr.family) {
                    share_total += request_share_milli(dr, d) * u64::from(dr.count);
                }
            }
            let share = if count == 0 {
                0
            } else {
                share_total / u64::from(count)
            };
            return NodeShape {
                container: None,
                count,
                share,
                fits: SmallVec::new(),
                free,
            };
        };
        let mut fits = SmallVec::new();
        let mut share = 0;
        for (pos, (d, u)) in node.node.devices.iter().zip(node.usage).enumerate() {
            if d.family != dr.family {
                continue;
            }
            let s = request_share_milli(dr, d);
            share = share.max(s);
            let mem = memory_needed(d, dr, &[]);
            if check_card(d, u, dr, mem, false).is_ok() {
                fits.push(CardFit {
                    pos: pos as u16,
                    free: free[pos],
                    memory_mib: mem.unwrap_or(0),
                });
            }
        }
        NodeShape {
            container: Some(ci),
            count: dr.count,
            share,
            fits,
            free,
        }
    }

    /// Total GPU request of the pod, milli-GPU.
    pub fn gpu_request(&self) -> u64 {
        self.share * u64::from(self.count)
    }

    /// Whether the pod shares one card (one card, less than a whole one).
    pub fn is_sharing(&self) -> bool {
        self.count == 1 && self.share > 0 && self.share < MILLI
    }

    /// The node's total free share, milli-GPU.
    pub fn node_free(&self) -> u64 {
        self.free.iter().sum()
    }

    /// Picks for the given fitting cards (indexes into `fits`), as a per-container placement.
    /// `None` when the pod has no single device request (the device policy chooses).
    pub fn placement(&self, req: &PodRequest, chosen: &[usize]) -> Option<Placement> {
        let ci = self.container?;
        let (_, dr) = single_device_request(req)?;
        let mut p: Placement = vec![Vec::new(); req.containers.len()];
        p[ci] = chosen
            .iter()
            .map(|&i| {
                let f = self.fits[i];
                Pick {
                    device: f.pos,
                    family: dr.family,
                    memory_mib: f.memory_mib,
                    cores: dr.cores.min(100),
                    mig: None,
                }
            })
            .collect();
        Some(p)
    }

    /// Indexes (into `fits`) of the `count` fitting cards with the least free share, lowest
    /// position first on equal shares; `None` when too few cards fit. Whole-card requests only
    /// fit fully free cards, so this is then the lowest-index free cards.
    pub fn least_free(&self) -> Option<SmallVec<[usize; 8]>> {
        let need = self.count as usize;
        if self.fits.len() < need {
            return None;
        }
        let mut idx: SmallVec<[usize; 8]> = (0..self.fits.len()).collect();
        idx.sort_by_key(|&i| (self.fits[i].free, self.fits[i].pos));
        idx.truncate(need);
        idx.sort_unstable();
        Some(idx)
    }

    /// Indexes of the first `count` fitting cards by position.
    pub fn lowest_index(&self) -> Option<SmallVec<[usize; 8]>> {
        let need = self.count as usize;
        (self.fits.len() >= need).then(|| (0..need).collect())
    }
}

/// CPU free on the node and the pod's CPU request, milli.
fn cpu_free_req(node: &NodeView<'_>, req: &PodRequest) -> (u64, u64) {
    (
        node.node.cpu_milli.saturating_sub(node.used.cpu_milli),
        req.cpu_milli,
    )
}

/// Card choice shared by DotProduct, Clustering, Packing and Best-fit: the least free fitting
/// cards (whole-card pods: the lowest-index free cards). `None` placement for pods without a
/// single device request or without enough fitting cards.
/// The least free fitting cards as a placement, when `wanted` (see [`ScoreContext::cards`]).
fn least_free_placement(shape: &NodeShape, req: &PodRequest, wanted: bool) -> Option<Placement> {
    if shape.count == 0 || !wanted {
        return None;
    }
    shape.least_free().and_then(|c| shape.placement(req, &c))
}

/// DotProduct score: `100·(1 − (cpuFree·cpuReq/128000² + gpuFree·gpuReq/8000²)/2)`, truncated.
pub fn dot_product_score(cpu_free: u64, cpu_req: u64, gpu_free: u64, gpu_req: u64) -> i64 {
    let c = (cpu_free as f64 / MAX_SPEC_CPU as f64) * (cpu_req as f64 / MAX_SPEC_CPU as f64);
    let g = (gpu_free as f64 / MAX_SPEC_GPU as f64) * (gpu_req as f64 / MAX_SPEC_GPU as f64);
    (100.0 * (1.0 - (c + g) / 2.0)) as i64
}

/// Best-fit score: `100·(1 − ½(cpuFree − cpuReq)/128000 − ½(gpuFree − gpuReq)/8000)`, truncated.
pub fn best_fit_score(cpu_free: u64, cpu_req: u64, gpu_free: u64, gpu_req: u64) -> i64 {
    let c = (cpu_free as f64 - cpu_req as f64) / MAX_SPEC_CPU as f64 * 0.5;
    let g = (gpu_free as f64 - gpu_req as f64) / MAX_SPEC_GPU as f64 * 0.5;
    (100.0 * (1.0 - (c + g))) as i64
}

/// GPU shape of a pod for GPU Clustering: sharing, or the number of whole cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GpuShape {
    /// One card, less than a whole one.
    Share,
    /// This many whole cards.
    Whole(u32),
}

/// GPU Clustering score from the shapes already on the node: tier 75 (only this shape), 50
/// (mixed shapes including this one), 25 (no GPU pod), 0 (only other shapes), plus
/// `25·(8000 − gpuFree)/8000` (integer arithmetic).
pub fn clustering_score(shape: GpuShape, on_node: &[GpuShape], gpu_free: u64) -> i64 {
    let has = on_node.contains(&shape);
    let distinct = {
        let mut v = on_node.to_vec();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let tier = match (has, distinct) {
        (true, 1) => 75,
        (true, _) => 50,
        (false, 0) => 25,
        (false, _) => 0,
    };
    let used = MAX_SPEC_GPU.saturating_sub(gpu_free) as i64;
    25 * used / MAX_SPEC_GPU as i64 + tier
}

/// GPU Packing score. `free` is every card's free share; `used` the free shares (before
/// placement) of the cards the pod would take (the least free fitting ones).
pub fn packing_score(free: &[u64], used: &[u64]) -> i64 {
    let fully_free = free.iter().filter(|&&f| f == MILLI).count() as i64;
    if fully_free == free.len() as i64 {
        return (33 - fully_free).max(fully_free);
    }
    let full_used = used.iter().filter(|&&f| f == MILLI).count() as i64;
    if full_used > 0 {
        return (50 - full_used).max(33);
    }
    let ratio: i64 = used.iter().map(|&f| (f * 100 / MILLI) as i64).sum();
    (100 - ratio / 10).max(50)
}

/// A uniformly random feasible node (the pipeline draws one index into the feasible nodes, see
/// [`NodePolicy::uniform`]; [`NodePolicy::score`] gives each node an independent random score
/// for `explain`); sharing pods take a uniformly random fitting card, whole-card pods the
/// lowest-index free cards.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

impl NodePolicy for Random {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::Random
    }
    fn memoizable(&self) -> bool {
        false
    }
    fn uniform(&self) -> bool {
        true
    }
    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        _node: &NodeView<'_>,
        _req: &PodRequest,
    ) -> Option<Scored> {
        // Every feasible node gets a random score; the cards are drawn for the winner only.
        Some(Scored {
            score: i64::from(cx.rng.random_range(0..u32::MAX)),
            placement: None,
        })
    }
    fn cards_for_winner(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Placement> {
        let shape = NodeShape::of(node, req);
        if shape.count == 0 || shape.container.is_none() {
            None
        } else if shape.is_sharing() {
            if shape.fits.is_empty() {
                return None;
            }
            let i = cx.rng.random_range(0..shape.fits.len());
            shape.placement(req, &[i])
        } else {
            shape.lowest_index().and_then(|c| shape.placement(req, &c))
        }
    }
}

/// DotProduct (Tetris-style alignment of free and requested resources, higher when aligned
/// less); least free fitting card.
#[derive(Debug, Clone, Copy, Default)]
pub struct DotProduct;

impl NodePolicy for DotProduct {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::DotProduct
    }
    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Scored> {
        let shape = NodeShape::of(node, req);
        let (cf, cr) = cpu_free_req(node, req);
        Some(Scored {
            score: dot_product_score(cf, cr, shape.node_free(), shape.gpu_request()),
            placement: least_free_placement(&shape, req, cx.cards),
        })
    }
}

/// Best-fit: the node with the least free CPU and GPU after placement; least free fitting card.
#[derive(Debug, Clone, Copy, Default)]
pub struct BestFit;

impl NodePolicy for BestFit {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::BestFit
    }
    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Scored> {
        let shape = NodeShape::of(node, req);
        let (cf, cr) = cpu_free_req(node, req);
        Some(Scored {
            score: best_fit_score(cf, cr, shape.node_free(), shape.gpu_request()),
            placement: least_free_placement(&shape, req, cx.cards),
        })
    }
}

/// The GPU shape of a pod already placed, from its grant (CPU-only pods have none).
fn grant_shape(node: &NodeView<'_>, g: &crate::ledger::PodGrant) -> Option<GpuShape> {
    let mut n = 0u32;
    let mut share = 0u64;
    for d in g.devices() {
        n += 1;
        let mem_frac = node
            .node
            .devices
            .iter()
            .find(|x| x.uuid == d.uuid)
            .filter(|x| x.memory_mib > 0)
            .map(|x| (d.memory_mib * MILLI).div_ceil(x.memory_mib))
            .unwrap_or(0);
        share = share.max((u64::from(d.cores.min(100)) * 10).max(mem_frac));
    }
    match n {
        0 => None,
        1 if share < MILLI => Some(GpuShape::Share),
        n => Some(GpuShape::Whole(n)),
    }
}

/// GPU Clustering: nodes that already hold pods of the same GPU shape first; CPU-only pods
/// score 0 everywhere; least free fitting card.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clustering;

impl NodePolicy for Clustering {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::Clustering
    }
    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Scored> {
        let shape = NodeShape::of(node, req);
        if shape.count == 0 {
            return Some(Scored {
                score: 0,
                placement: None,
            });
        }
        let mine = if shape.is_sharing() {
            GpuShape::Share
        } else {
            GpuShape::Whole(shape.count)
        };
        let on_node: Vec<GpuShape> = node
            .pod_grants()
            .filter_map(|g| grant_shape(node, g))
            .collect();
        Some(Scored {
            score: clustering_score(mine, &on_node, shape.node_free()),
            placement: least_free_placement(&shape, req, cx.cards),
        })
    }
}

/// GPU Packing: partly used cards first, then partly used nodes, then idle nodes; CPU-only pods
/// score 0 everywhere; least free fitting card.
#[derive(Debug, Clone, Copy, Default)]
pub struct Packing;

impl NodePolicy for Packing {
    fn kind(&self) -> NodePolicyKind {
        NodePolicyKind::Packing
    }
    fn score(
        &self,
        cx: &mut ScoreContext<'_>,
        node: &NodeView<'_>,
        req: &PodRequest,
    ) -> Option<Scored> {
        let shape = NodeShape::of(node, req);
        if shape.count == 0 {
            return Some(Scored {
                score: 0,
                placement: None,
            });
        }
        let chosen = shape.least_free();
        let used: Vec<u64> = chosen
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|&i| shape.fits[i].free)
            .collect();
        Some(Scored {
            score: packing_score(&shape.free, &used),
            placement: chosen
                .filter(|_| cx.cards)
                .and_then(|c| shape.placement(req, &c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_product_table() {
        // (cpuFree, cpuReq, gpuFree, gpuReq) → score
        let cases = [(0, 0, 0, 0, 100), (128_000, 128_000, 8_000, 8_000, 0)];
        for (cf, cr, gf, gr, want) in cases {
            let c = (cf as f64 / 128_000.0) * (cr as f64 / 128_000.0);
            let g = (gf as f64 / 8_000.0) * (gr as f64 / 8_000.0);
            let by_hand = (100.0 * (1.0 - (c + g) / 2.0)) as i64;
            assert_eq!(dot_product_score(cf, cr, gf, gr), by_hand);
            assert_eq!(by_hand, want);
        }
        // 64000·8000/128000² = 0.03125; 4000·500/8000² = 0.03125 → 100·(1 − 0.03125) = 96.875 → 96
        assert_eq!(dot_product_score(64_000, 8_000, 4_000, 500), 96);
    }

    #[test]
    fn best_fit_table() {
        let cases = [
            // exact fit → 100
            (8_000, 8_000, 500, 500, 100),
            // ½·(64000−0)/128000 + ½·(8000−0)/8000 = 0.25 + 0.5 → 25
            (64_000, 0, 8_000, 0, 25),
            // ½·(32000−16000)/128000 = 0.0625; ½·(2000−1000)/8000 = 0.0625 → 87.5 → 87
            (32_000, 16_000, 2_000, 1_000, 87),
        ];
        for (cf, cr, gf, gr, want) in cases {
            assert_eq!(best_fit_score(cf, cr, gf, gr), want, "{cf} {cr} {gf} {gr}");
        }
    }

    #[test]
    fn clustering_table() {
        use GpuShape::*;
        let cases: [(GpuShape, &[GpuShape], u64, i64); 6] = [
            (Share, &[], 8_000, 25),                // idle node, nothing used
            (Share, &[Share, Share], 7_000, 78),    // 75 + 25·1000/8000 = 75 + 3
            (Share, &[Share, Whole(1)], 6_500, 54), // 50 + 25·1500/8000 = 50 + 4
            (Whole(2), &[Share], 7_500, 1),         // 0 + 25·500/8000 = 1
            (Whole(8), &[], 8_000, 25),
            (Whole(1), &[Whole(1)], 0, 100),
        ];
        for (s, on, free, want) in cases {
            assert_eq!(clustering_score(s, on, free), want, "{s:?} {on:?} {free}");
        }
    }

    #[test]
    fn packing_table() {
        let cases: [(&[u64], &[u64], i64); 6] = [
            // idle 8-card node: max(33 − 8, 8) = 25
            (&[1000; 8], &[1000], 25),
            // idle 2-card node: max(31, 2) = 31
            (&[1000, 1000], &[1000, 1000], 31),
            // partly used node, pod needs one free card: max(50 − 1, 33) = 49
            (&[400, 1000], &[1000], 49),
            // partly used node, 8-card pod impossible but 2 free used: 48
            (&[0, 1000, 1000], &[1000, 1000], 48),
            // shared card with 400 free: 100 − 40/10 = 96
            (&[400, 1000], &[400], 96),
            // shared card with 990 free: 100 − 99/10 = 91
            (&[990, 1000], &[990], 91),
        ];
        for (free, used, want) in cases {
            assert_eq!(packing_score(free, used), want, "{free:?} {used:?}");
        }
    }

    #[test]
    fn card_free_takes_the_smaller_fraction() {
        let mut d = Device::new("g", 0, crate::family::FamilyId::NVIDIA, "T4", 15_000);
        d.split_count = 100;
        let u = DeviceUsage {
            used: 1,
            used_mem: 15_000 * 30 / 100,
            used_cores: 30,
            mig_slices: 0,
        };
        assert_eq!(card_free_milli(&d, &u), 700);
        let mem_only = DeviceUsage {
            used: 1,
            used_mem: 7_500,
            used_cores: 0,
            mig_slices: 0,
        };
        assert_eq!(card_free_milli(&d, &mem_only), 500);
    }
}
