//! The discrete-event simulator (`hami sim`): scenario files with node pools or trace node
//! lists, workload generators or trace replay, faults, an outside checker, metrics, and
//! reports comparing policies. Every decision is taken by [`hami_core::control::Controller`].

pub mod checker;
pub mod engine;
pub mod expect;
pub mod explain;
pub mod follow;
pub mod metrics;
pub mod model;
pub mod placements;
pub mod progress;
pub mod report;
pub mod results;
pub mod scenario;
pub mod turns;
pub mod units;
