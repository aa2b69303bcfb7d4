//! hami-sim: scenario loading, trace replay and policy experiments on top of hami-core.
//!
//! The discrete-event simulator will live here too; today the crate runs `trace-replay`
//! scenarios (the FGD paper's experiment) through the core's production scheduling pipeline.

pub mod des;
pub mod matrix;
pub mod plot;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod trace;
