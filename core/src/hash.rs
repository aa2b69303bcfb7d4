//! Fixed-key hashing for the core's in-memory maps and for grant fingerprints.
//!
//! The core draws no randomness, so its hash maps use fixed keys. The standard library's
//! SipHash is built to resist hash flooding from hostile keys; the keys here (pod keys, node
//! names) come from our own ledger, and SipHash was a tenth of the simulator's time at a
//! million pods. [`FastHasher`] mixes one machine word per step instead.

use std::hash::{BuildHasherDefault, Hasher};

/// An odd constant with well-spread bits (the multiplier of the multiply-rotate scheme).
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// A fast multiply-rotate hasher with fixed keys: deterministic within one build, not
/// resistant to chosen keys (never use it on keys an outside party picks in bulk).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastHasher(u64);

/// Builds [`FastHasher`]s; the `S` parameter of a `HashMap` that uses it.
pub type FastBuild = BuildHasherDefault<FastHasher>;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K).rotate_left(26);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.add(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A strong final mix of one word (every input bit moves about half the output bits), for
/// sums of hashes, where weakly mixed terms could cancel out.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    fn h(v: impl Hash) -> u64 {
        FastBuild::default().hash_one(v)
    }

    #[test]
    fn same_input_same_hash_and_prefixes_differ() {
        assert_eq!(h("pod-1"), h("pod-1"));
        assert_ne!(h("ab"), h("ab\0"));
        assert_ne!(h(("a", "bc")), h(("ab", "c")));
    }

    #[test]
    fn pod_like_names_spread_over_buckets() {
        // hashbrown picks buckets from the low bits and tags from the top 7: both must vary.
        let names: Vec<u64> = (0..4096).map(|i| h(format!("share-small-{i}"))).collect();
        let low: HashSet<u64> = names.iter().map(|x| x & 4095).collect();
        let top: HashSet<u64> = names.iter().map(|x| x >> 57).collect();
        assert!(low.len() > 2400, "low bits: {} distinct of 4096", low.len());
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn mix_moves_about_half_the_bits() {
        for x in [0u64, 1, 2, 1 << 40] {
            let d = (mix(x) ^ mix(x ^ 1)).count_ones();
            assert!((16..=48).contains(&d), "{x}: {d} bits moved");
        }
    }
}
