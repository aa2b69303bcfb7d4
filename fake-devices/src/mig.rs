//! Fake MIG instances: what a device plugin's "create the GPU instance and compute instance the
//! scheduler reserved" step does on a real card, without a card.
//!
//! It behaves like NVML does for the calls HAMi's plugin makes (create a GPU instance at an
//! exact placement, one compute instance spanning it, read back the MIG device UUID):
//!
//! * the placement is taken exactly as asked, never moved; one that overlaps a live instance on
//!   the same card, or leaves the card's slices, is refused (NVML's `ERROR_INSUFFICIENT_RESOURCES`
//!   / `ERROR_INVALID_ARGUMENT`), with an error saying which instance is in the way;
//! * asking again for the same profile and placement returns the live instance (idempotent, as
//!   the plugin's manager is for a retried Allocate) and says it was not created now;
//! * identities are deterministic functions of the placement and the card, so tests and fake
//!   nodes can predict them: GPU instance id = first slice (unique among the live, non-overlapping
//!   instances of a card), compute instance id = 0 (the first and only compute instance of its
//!   GPU instance, as NVML numbers it), MIG UUID = `MIG-` + a UUID hashed from the card UUID and
//!   both ids (NVML's R470+ form).
//!
//! Real NVML picks GPU instance ids itself (a per-model table), so only the shape, not the
//! numbers, matches a real card.

use std::collections::BTreeMap;

/// Memory slices of the largest MIG-capable cards (A100/H100/H200: 8 slices, 7 of compute).
pub const MAX_SLICES: u32 = 8;

/// The runtime identity of one MIG instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigIdentity {
    /// MIG device UUID (`MIG-…`).
    pub mig_uuid: String,
    /// GPU instance id on the card.
    pub gpu_instance_id: u32,
    /// Compute instance id inside the GPU instance.
    pub compute_instance_id: u32,
}

/// One live instance on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigInstance {
    /// Profile name as reserved (`1g.10gb`).
    pub profile: String,
    /// First slice.
    pub start: u32,
    /// Number of slices.
    pub size: u32,
    /// Its identity.
    pub identity: MigIdentity,
}

impl MigInstance {
    fn overlaps(&self, start: u32, size: u32) -> bool {
        start < self.start + self.size && self.start < start + size
    }
}

/// The MIG UUID of GPU instance `gi`, compute instance `ci` on card `gpu_uuid`: a UUID hashed
/// (FNV-1a, 128 bits) from the three, printed as NVML prints MIG UUIDs.
pub fn mig_uuid(gpu_uuid: &str, gi: u32, ci: u32) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in gpu_uuid
        .bytes()
        .chain(gi.to_le_bytes())
        .chain(ci.to_le_bytes())
        .chain(*b"mig")
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let b = h.to_be_bytes();
    let g = crate::inventory::uuid_string(&b);
    format!("MIG-{}", g.strip_prefix("GPU-").unwrap_or(&g))
}

/// The identity a fake card gives the instance at `start` (see the module text).
pub fn identity_for(gpu_uuid: &str, start: u32) -> MigIdentity {
    MigIdentity {
        mig_uuid: mig_uuid(gpu_uuid, start, 0),
        gpu_instance_id: start,
        compute_instance_id: 0,
    }
}

/// One MIG profile a fake card offers, as NVML would list it (`nvmlDeviceGetGpuInstanceProfileInfo`
/// and `…PossiblePlacements`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMigProfile {
    /// Profile name (`1g.10gb`).
    pub name: String,
    /// Memory of one instance, MiB.
    pub memory_mib: u64,
    /// Compute share of one instance, percent of the card.
    pub cores: u32,
    /// Memory slices one instance takes.
    pub slice_count: u32,
    /// Placements as (first slice, slices).
    pub placements: Vec<(u32, u32)>,
}

/// The MIG profiles of a fake card of model `model` with `memory_mib`, or none when the model is
/// not MIG-capable. MIG-capable means an A100, A30, H100, H200 or B200 by name; the geometry is
/// the 8-memory-slice, 7-compute-slice one of NVIDIA's A100/H100 class (1g at any of slices 0–6,
/// 2g at 0/2/4, 3g at 0/4, 4g at 0, 7g over all 8 slices; A30 has 4 slices: 1g at 0–3, 2g at
/// 0/2, 4g at 0). Names follow NVIDIA's `<g>g.<GB>gb` with the memory an eighth (a quarter on
/// A30) of the card per slice, rounded down to whole GB; memory is that many slices of the card.
/// Real cards report slightly less memory per instance; only the shape is NVIDIA's.
pub fn profiles_for(model: &str, memory_mib: u64) -> Vec<FakeMigProfile> {
    let m = model.to_ascii_uppercase();
    let a30 = m.contains("A30");
    if !(a30
        || ["A100", "H100", "H200", "B200"]
            .iter()
            .any(|k| m.contains(k)))
        || memory_mib == 0
    {
        return Vec::new();
    }
    // (compute slices, memory slices, placements)
    let shapes: &[(u32, u32, &[u32])] = if a30 {
        &[(1, 1, &[0, 1, 2, 3]), (2, 2, &[0, 2]), (4, 4, &[0])]
    } else {
        &[
            (1, 1, &[0, 1, 2, 3, 4, 5, 6]),
            (2, 2, &[0, 2, 4]),
            (3, 4, &[0, 4]),
            (4, 4, &[0]),
            (7, 8, &[0]),
        ]
    };
    let (memory_slices, compute_slices) = if a30 { (4u64, 4u32) } else { (8, 7) };
    let per_slice = memory_mib / memory_slices;
    shapes
        .iter()
        .map(|&(g, slices, starts)| FakeMigProfile {
            name: format!("{g}g.{}gb", per_slice * u64::from(slices) / 1024),
            memory_mib: per_slice * u64::from(slices),
            cores: g * 100 / compute_slices,
            slice_count: slices,
            placements: starts.iter().map(|&s| (s, slices)).collect(),
        })
        .collect()
}

/// Live MIG instances of a node's fake cards, by card UUID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeMig {
    cards: BTreeMap<String, Vec<MigInstance>>,
}

impl FakeMig {
    /// No instances.
    pub fn new() -> FakeMig {
        FakeMig::default()
    }

    /// Create the instance of `profile` at exactly `start`/`size` on card `gpu_uuid`, or return
    /// the live one with the same profile and placement. The flag is `true` when this call
    /// created it. Errors name the card, the placement and what is in the way.
    pub fn ensure(
        &mut self,
        gpu_uuid: &str,
        profile: &str,
        start: u32,
        size: u32,
    ) -> Result<(MigIdentity, bool), String> {
        if gpu_uuid.is_empty() || profile.is_empty() {
            return Err(format!(
                "MIG instance needs a card and a profile (card {gpu_uuid:?}, profile {profile:?})"
            ));
        }
        if size == 0 || start.checked_add(size).is_none_or(|end| end > MAX_SLICES) {
            return Err(format!(
                "card {gpu_uuid}: placement start {start} size {size} is not within the card's {MAX_SLICES} slices"
            ));
        }
        let live = self.cards.entry(gpu_uuid.to_string()).or_default();
        if let Some(i) = live
            .iter()
            .find(|i| i.profile == profile && i.start == start && i.size == size)
        {
            return Ok((i.identity.clone(), false));
        }
        if let Some(i) = live.iter().find(|i| i.overlaps(start, size)) {
            return Err(format!(
                "card {gpu_uuid}: placement start {start} size {size} for {profile} overlaps live instance {} ({} at start {} size {})",
                i.identity.mig_uuid, i.profile, i.start, i.size
            ));
        }
        let identity = identity_for(gpu_uuid, start);
        live.push(MigInstance {
            profile: profile.to_string(),
            start,
            size,
            identity: identity.clone(),
        });
        live.sort_by_key(|i| i.start);
        Ok((identity, true))
    }

    /// Destroy the instance with this MIG UUID; `false` when none has it.
    pub fn release(&mut self, mig_uuid: &str) -> bool {
        let mut found = false;
        for live in self.cards.values_mut() {
            let before = live.len();
            live.retain(|i| i.identity.mig_uuid != mig_uuid);
            found |= live.len() != before;
        }
        self.cards.retain(|_, v| !v.is_empty());
        found
    }

    /// Every card with live instances, by card UUID.
    pub fn cards(&self) -> impl Iterator<Item = (&str, &[MigInstance])> {
        self.cards.iter().map(|(g, v)| (g.as_str(), v.as_slice()))
    }

    /// The live instances of a card, by first slice.
    pub fn instances(&self, gpu_uuid: &str) -> &[MigInstance] {
        self.cards.get(gpu_uuid).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPU: &str = "GPU-fa4e0000-0000-4000-8000-0000fa4e0000";

    #[test]
    fn uuids_are_deterministic_distinct_and_shaped() {
        let a = mig_uuid(GPU, 0, 0);
        assert_eq!(a, mig_uuid(GPU, 0, 0));
        assert_ne!(a, mig_uuid(GPU, 1, 0));
        assert_ne!(a, mig_uuid(GPU, 0, 1));
        assert_ne!(a, mig_uuid("GPU-other", 0, 0));
        assert!(a.starts_with("MIG-"), "{a}");
        let parts: Vec<usize> = a["MIG-".len()..].split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
    }

    #[test]
    fn profiles_table() {
        // (model, MiB, profile names)
        let cases: [(&str, u64, &[&str]); 4] = [
            (
                "NVIDIA A100-SXM4-80GB",
                81920,
                &["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
            ),
            (
                "NVIDIA A100-PCIE-40GB",
                40960,
                &["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"],
            ),
            ("NVIDIA A30", 24576, &["1g.6gb", "2g.12gb", "4g.24gb"]),
            ("Tesla T4", 15360, &[]),
        ];
        for (model, mem, names) in cases {
            let got = profiles_for(model, mem);
            let got_names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(got_names, names, "{model}");
            for p in &got {
                assert!(p.memory_mib <= mem, "{model} {}", p.name);
                for &(s, n) in &p.placements {
                    assert_eq!(n, p.slice_count, "{model} {}", p.name);
                    assert!(s + n <= MAX_SLICES, "{model} {}", p.name);
                }
            }
        }
        let a100 = profiles_for("A100", 81920);
        assert_eq!(a100[0].placements.len(), 7);
        assert_eq!(a100[4].cores, 100);
        assert_eq!(a100[0].cores, 14);
    }

    #[test]
    fn ensure_table() {
        // (what, profile, start, size, Ok(created, gi) or Err(text))
        type Want = Result<(bool, u32), &'static str>;
        let steps: [(&str, &str, u32, u32, Want); 8] = [
            ("first instance", "3g.40gb", 0, 4, Ok((true, 0))),
            ("same reservation again", "3g.40gb", 0, 4, Ok((false, 0))),
            ("next to it", "1g.10gb", 4, 1, Ok((true, 4))),
            ("overlap", "2g.20gb", 2, 2, Err("overlaps live instance")),
            (
                "same start, other profile",
                "1g.10gb",
                0,
                1,
                Err("overlaps live instance"),
            ),
            ("beyond the card", "1g.10gb", 8, 1, Err("not within")),
            ("empty placement", "1g.10gb", 5, 0, Err("not within")),
            ("no profile", "", 6, 1, Err("needs a card and a profile")),
        ];
        let mut m = FakeMig::new();
        for (what, profile, start, size, want) in steps {
            let got = m.ensure(GPU, profile, start, size);
            match (got, want) {
                (Ok((id, created)), Ok((c, gi))) => {
                    assert_eq!(created, c, "{what}");
                    assert_eq!(id.gpu_instance_id, gi, "{what}");
                    assert_eq!(id.compute_instance_id, 0, "{what}");
                    assert_eq!(id, identity_for(GPU, start), "{what}");
                }
                (Err(e), Err(text)) => assert!(e.contains(text), "{what}: {e}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(m.instances(GPU).len(), 2);
        assert!(m.release(&mig_uuid(GPU, 0, 0)));
        assert!(!m.release(&mig_uuid(GPU, 0, 0)));
        assert_eq!(
            m.ensure(GPU, "2g.20gb", 2, 2).map(|(_, c)| c),
            Ok(true),
            "freed slices can be used again"
        );
    }
}
