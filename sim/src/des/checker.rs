//! The outside checker: after every event (or every N events) it proves that
//! 1. the ledger's own invariants hold (no card over its slots, memory or cores; usage equals
//!    the sum of grants) — [`hami_core::ledger::Ledger::check_invariants`];
//! 2. the ledger equals what the pods holding cards say in their annotations, decoded with the
//!    production codec ([`hami_core::annotations::grant_from_annotations`]), and a ledger
//!    rebuilt from those annotations alone fits the cards (what a restarted scheduler would do);
//! 3. every pod is running, pending with a reason, or finished.

use hami_core::annotations::grant_from_annotations;
use hami_core::control::key_of;
use hami_core::ledger::{DeviceGrant, Ledger, PodGrant};
use hami_core::request::PodKey;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the checker needs to know about one simulated pod.
#[derive(Debug, Clone, Copy)]
pub struct PodCheck<'a> {
    /// The Pod object (None once finished).
    pub pod: Option<&'a Pod>,
    /// Whether it holds cards (running or binding on a node).
    pub holds: bool,
    /// Whether it waits.
    pub pending: bool,
    /// Its current reason, when pending.
    pub reason: Option<&'static str>,
}

fn cards(g: &PodGrant) -> Vec<(usize, String, u64, u32)> {
    let mut v: Vec<(usize, String, u64, u32)> = g
        .containers
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.iter()
                .map(move |d: &DeviceGrant| (i, d.uuid.clone(), d.memory_mib, d.cores))
        })
        .collect();
    v.sort();
    v
}

fn show(g: &PodGrant) -> String {
    let parts: Vec<String> = cards(g)
        .iter()
        .map(|(c, u, m, k)| format!("c{c}:{u} {m}MiB {k}%"))
        .collect();
    format!("{} [{}]", g.node, parts.join(", "))
}

/// Check the three properties; the error is a readable dump of every violation (at most 20).
pub fn check<'a>(ledger: &Ledger, pods: impl Iterator<Item = PodCheck<'a>>) -> Result<(), String> {
    let mut out = String::new();
    let mut n = 0usize;
    let mut say = |out: &mut String, s: String| {
        n += 1;
        if n <= 20 {
            let _ = writeln!(out, "  - {s}");
        }
    };
    if let Err(vs) = ledger.check_invariants() {
        for v in vs {
            say(&mut out, format!("ledger invariant: {v}"));
        }
    }
    let mut from_ann: BTreeMap<PodKey, PodGrant> = BTreeMap::new();
    for (i, p) in pods.enumerate() {
        if p.pending && p.reason.is_none() {
            say(&mut out, format!("pod #{i} is pending without a reason"));
        }
        if !p.holds {
            continue;
        }
        let Some(pod) = p.pod else {
            say(&mut out, format!("pod #{i} holds cards but has no object"));
            continue;
        };
        let key = key_of(pod);
        let empty = BTreeMap::new();
        let ann = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        match grant_from_annotations(ann, 0, 0) {
            Ok(Some(g)) => {
                from_ann.insert(key, g);
            }
            Ok(None) => {}
            Err(e) => say(
                &mut out,
                format!("pod {key}: annotations do not decode: {e}"),
            ),
        }
    }
    let grants = ledger.grants();
    for (k, g) in grants {
        match from_ann.get(k) {
            None => say(
                &mut out,
                format!(
                    "ledger holds {} for pod {k}, whose annotations record no grant",
                    show(g)
                ),
            ),
            Some(a) if a.node != g.node || cards(a) != cards(g) => say(
                &mut out,
                format!(
                    "pod {k}: ledger says {} but its annotations say {}",
                    show(g),
                    show(a)
                ),
            ),
            Some(_) => {}
        }
    }
    for (k, a) in &from_ann {
        if !grants.contains_key(k) {
            say(
                &mut out,
                format!(
                    "pod {k} annotations record {} but the ledger holds nothing",
                    show(a)
                ),
            );
        }
    }
    // Rebuild from annotations alone: the cards' totals must fit (what a restarted scheduler
    // would have to accept).
    let mut sums: BTreeMap<(&str, &str), (u32, u64, u32)> = BTreeMap::new();
    for a in from_ann.values() {
        for d in a.devices() {
            let e = sums
                .entry((a.node.as_str(), d.uuid.as_str()))
                .or_insert((0, 0, 0));
            e.0 += 1;
            e.1 += d.memory_mib;
            e.2 += d.cores;
        }
    }
    for ((node, uuid), (slots, mem, cores)) in sums {
        let dev = ledger
            .node_id(node)
            .and_then(|id| ledger.entry(id))
            .and_then(|e| e.node.devices.iter().find(|d| d.uuid == uuid));
        match dev {
            None => say(
                &mut out,
                format!("rebuilding from annotations: card {uuid} on {node} does not exist"),
            ),
            Some(d) if slots > d.split_count || mem > d.memory_mib || cores > d.cores => say(
                &mut out,
                format!(
                    "rebuilding from annotations: card {uuid} on {node} does not fit the recorded grants: {mem} MiB of {} MiB, {cores} of {} cores, {slots} of {} slots",
                    d.memory_mib, d.cores, d.split_count
                ),
            ),
            Some(_) => {}
        }
    }
    if n == 0 {
        Ok(())
    } else {
        if n > 20 {
            let _ = writeln!(out, "  … and {} more", n - 20);
        }
        Err(format!("{n} violation(s):\n{out}"))
    }
}
