//! hami-core: the model and every decision of hami-rs.
//!
//! Pure, synchronous and deterministic: no I/O, no clock reads, no global randomness. Time and
//! seeds come in as arguments; decisions come out as values.

pub mod codec;
pub mod family;
