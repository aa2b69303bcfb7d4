//! The fragmentation metric, computed on a helper thread.
//!
//! The FGD fragmentation of a node is asked after every change to it, and its sum over the
//! cluster only feeds metrics (the time average and the sampled series): no decision reads it.
//! So the engine streams what the measure reads — each changed node's free card shares and
//! free CPU, each advance of the clock, each sample point — and a helper thread keeps the sum,
//! its time integral and the sampled values, with the same floating-point operations in the
//! same order as the engine would. [`FragStream::finish`] hands them back. Memory stays
//! bounded: the stream goes in batches.

use hami_core::model::Node;
use hami_core::policy::fgd::{AccessRows, TargetWorkload};
use smallvec::SmallVec;
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

/// Operations per batch sent to the helper.
const BATCH: usize = 2048;

/// One thing the helper is told, in event order.
#[derive(Debug, Clone)]
enum Op {
    /// Node `ni` is up with these free card shares (position order) and free CPU.
    Node {
        ni: u32,
        frees: SmallVec<[u64; 8]>,
        cpu_free: u64,
    },
    /// Node `ni` counts for nothing (down or not registered).
    Gone(u32),
    /// The clock advanced by this many milliseconds.
    Advance(f64),
    /// Sample point `k` of the series.
    Sample(usize),
}

/// What the helper hands back.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FragTotals {
    /// The integral over time (ms) of the cluster's fragmentation as a fraction of its cards.
    pub area: f64,
    /// Per sample point index, the fragmentation fraction at that point.
    pub samples: Vec<(usize, f64)>,
}

/// The card models of a cluster: each node's cards (position order) as indices into the
/// distinct model names.
#[derive(Debug, Default, Clone)]
pub struct NodeModels {
    names: Vec<String>,
    of_node: Vec<SmallVec<[u16; 8]>>,
}

impl NodeModels {
    /// The models of `nodes`' cards, node by node.
    pub fn of<'n>(nodes: impl Iterator<Item = &'n Node>) -> NodeModels {
        let mut m = NodeModels::default();
        for n in nodes {
            let cards = n
                .devices
                .iter()
                .map(|d| match m.names.iter().position(|x| *x == d.model) {
                    Some(i) => i as u16,
                    None => {
                        m.names.push(d.model.clone());
                        (m.names.len() - 1) as u16
                    }
                })
                .collect();
            m.of_node.push(cards);
        }
        m
    }
}

/// The helper's state: the measure, each node's last value and the running results.
#[derive(Debug)]
struct Totals {
    target: Arc<TargetWorkload>,
    models: Arc<NodeModels>,
    rows: AccessRows,
    last: Vec<f64>,
    sum: f64,
    /// Cards × 1000: the sum as a fraction of the cluster's cards.
    norm: f64,
    out: FragTotals,
}

impl Totals {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Node {
                ni,
                frees,
                cpu_free,
            } => {
                let m = &*self.models;
                let models = m.of_node[ni as usize]
                    .iter()
                    .map(|&i| m.names[usize::from(i)].as_str());
                let f = self
                    .target
                    .cards_frag_with(models, frees, cpu_free, &mut self.rows);
                self.set(ni, f);
            }
            Op::Gone(ni) => self.set(ni, 0.0),
            Op::Advance(dt) => self.out.area += dt * self.sum / self.norm,
            Op::Sample(k) => self.out.samples.push((k, self.sum.max(0.0) / self.norm)),
        }
    }

    fn set(&mut self, ni: u32, f: f64) {
        let last = &mut self.last[ni as usize];
        self.sum += f - *last;
        *last = f;
    }
}

/// The engine's end of the stream.
#[derive(Debug)]
pub struct FragStream {
    batch: Vec<Op>,
    tx: Option<Sender<Vec<Op>>>,
    helper: Option<JoinHandle<FragTotals>>,
    /// The state itself when no helper thread could be started: the work is done here.
    local: Option<Box<Totals>>,
}

impl FragStream {
    /// Start the helper for a cluster with `cards` cards whose nodes' card models are
    /// `models` (by node index), measured against `target`.
    pub fn start(target: Arc<TargetWorkload>, models: Arc<NodeModels>, cards: u64) -> FragStream {
        let totals = |target, models: Arc<NodeModels>| Totals {
            target,
            last: vec![0.0; models.of_node.len()],
            models,
            rows: AccessRows::default(),
            sum: 0.0,
            norm: cards.max(1) as f64 * 1000.0,
            out: FragTotals::default(),
        };
        let (tx, rx) = channel::<Vec<Op>>();
        let mut remote = totals(target.clone(), models.clone());
        let work = move || {
            for batch in rx {
                for op in batch {
                    remote.apply(op);
                }
            }
            remote.out
        };
        match std::thread::Builder::new()
            .name("hami-sim-frag".into())
            .spawn(work)
        {
            Ok(helper) => FragStream {
                batch: Vec::with_capacity(BATCH),
                tx: Some(tx),
                helper: Some(helper),
                local: None,
            },
            Err(_) => FragStream {
                batch: Vec::new(),
                tx: None,
                helper: None,
                local: Some(Box::new(totals(target, models))),
            },
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(t) = self.local.as_mut() {
            t.apply(op);
            return;
        }
        self.batch.push(op);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if let Some(tx) = &self.tx {
            // A helper that is gone (it panicked) reports at `finish`.
            let _ = tx.send(batch);
        }
    }

    /// Node `ni` changed: it is up with these free card shares and free CPU.
    pub fn node(&mut self, ni: u32, frees: SmallVec<[u64; 8]>, cpu_free: u64) {
        self.push(Op::Node {
            ni,
            frees,
            cpu_free,
        });
    }

    /// Node `ni` changed: it counts for nothing now.
    pub fn gone(&mut self, ni: u32) {
        self.push(Op::Gone(ni));
    }

    /// The clock advanced by `dt` milliseconds.
    pub fn advance(&mut self, dt: f64) {
        self.push(Op::Advance(dt));
    }

    /// Sample point `k` of the series is taken now.
    pub fn sample(&mut self, k: usize) {
        self.push(Op::Sample(k));
    }

    /// The totals: the helper's, once it has taken everything sent (`Err` if it panicked).
    pub fn finish(mut self) -> Result<FragTotals, String> {
        if let Some(t) = self.local.take() {
            return Ok(t.out);
        }
        self.flush();
        drop(self.tx.take());
        match self.helper.take() {
            Some(h) => h
                .join()
                .map_err(|_| "the fragmentation helper thread panicked".to_string()),
            None => Err("the fragmentation stream has no helper and no local state".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_core::policy::fgd::TaskType;

    fn workload() -> Arc<TargetWorkload> {
        let task = |cpu_milli, share, count, spec: &str| TaskType {
            cpu_milli,
            share,
            count,
            gpu_spec: spec.to_string(),
        };
        Arc::new(TargetWorkload::new(vec![
            (task(4000, 500, 1, ""), 3.0),
            (task(8000, 1000, 2, "a100"), 2.0),
            (task(2000, 250, 1, "t4"), 1.0),
        ]))
    }

    fn models() -> Arc<NodeModels> {
        let name = |s: &str| s.to_string();
        Arc::new(NodeModels {
            names: vec![name("A100"), name("T4")],
            of_node: vec![
                SmallVec::from_slice(&[0, 0, 0, 0]),
                SmallVec::from_slice(&[1, 1]),
                SmallVec::from_slice(&[0, 1]),
            ],
        })
    }

    /// A few thousand operations, more than two batches: the helper's totals are the ones
    /// the same operations give applied in order on this thread, bit for bit, with the
    /// samples where they were taken.
    #[test]
    fn the_helper_totals_what_the_engine_would() {
        let mut ops = Vec::new();
        let mut x = 7u64;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for step in 0..5000usize {
            let ni = next(3) as u32;
            let cards = models().of_node[ni as usize].len();
            ops.push(match next(10) {
                0 => Op::Gone(ni),
                1..=6 => Op::Node {
                    ni,
                    frees: (0..cards).map(|_| next(1001)).collect(),
                    cpu_free: next(16_000),
                },
                7 | 8 => Op::Advance(next(50) as f64),
                _ => Op::Sample(step),
            });
        }
        let mut here = Totals {
            target: workload(),
            models: models(),
            rows: AccessRows::default(),
            last: vec![0.0; 3],
            sum: 0.0,
            norm: 8.0 * 1000.0,
            out: FragTotals::default(),
        };
        let mut stream = FragStream::start(workload(), models(), 8);
        assert!(stream.helper.is_some());
        for op in ops {
            here.apply(op.clone());
            stream.push(op);
        }
        let got = stream.finish().unwrap_or_else(|e| panic!("{e}"));
        assert!(got.area > 0.0 && got.samples.len() > 100);
        assert!(got.samples.iter().any(|&(_, v)| v > 0.0));
        assert_eq!(got, here.out);
    }
}
