//! hami-core: the model and every decision of hami-rs.
//!
//! Pure, synchronous and deterministic: no I/O, no clock reads, no global randomness. Time and
//! seeds come in as arguments; decisions come out as values.

pub mod annotations;
pub mod build;
pub mod codec;
pub mod config;
pub mod control;
pub mod family;
pub mod fit;
pub mod hash;
pub mod inspect;
pub mod ledger;
pub mod memo;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod quantity;
pub mod replay;
pub mod request;
