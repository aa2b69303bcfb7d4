//! hami-sim: scenario loading, trace replay and policy experiments on top of hami-core.
//!
//! Two kinds of scenario run here, both through the core's production scheduling pipeline: the
//! discrete-event simulator ([`des`]: clusters, workloads, faults, checker, reports) and
//! `trace-replay` (the FGD paper's experiment, [`replay`]).

pub mod alloc;
pub mod des;
pub mod matrix;
pub mod plot;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod trace;
