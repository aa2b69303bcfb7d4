//! `hami sim explain`: why each node was or was not chosen for one pod, computed with
//! [`hami_core::pipeline::Scheduler::explain`] on the ledger of the moment the pod was placed
//! (or of its last attempt when it never was).

use super::engine::{Engine, Explanation, RunOptions};
use super::model::Scenario;
use hami_core::pipeline::NodeVerdict;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Run `policy` (default: the first) with the first seed until the end and return the
/// explanation for `pod`.
pub fn explain(sc: &Scenario, policy: Option<&str>, pod: &str) -> Result<Explanation, String> {
    let p = match policy {
        Some(name) => sc.policies.iter().find(|p| p.name == name).ok_or_else(|| {
            format!(
                "unknown policy {name:?}; policies: {}",
                sc.policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?,
        None => sc.policies.first().ok_or("the scenario has no policy")?,
    };
    let v = sc.variants.first().ok_or("the scenario has no variant")?;
    let seed = sc.seeds.first().copied().unwrap_or(0);
    let out = Engine::new(
        sc,
        v,
        p,
        seed,
        RunOptions {
            explain_pod: Some(pod.to_string()),
            ..RunOptions::default()
        },
    )
    .run()?;
    out.explanation.ok_or_else(|| {
        let classes: Vec<String> = v.classes.iter().take(5).map(|c| format!("{}-N", c.name)).collect();
        format!(
            "pod {pod:?} was never scheduled in this run (pods are named <class>-<arrival index>, e.g. {})",
            classes.join(", ")
        )
    })
}

/// Render an explanation: the chosen node, the best-scored nodes, and the filtered nodes
/// grouped by reason.
pub fn render(e: &Explanation, top: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pod {} — policy {} — attempt {} at t = {:.3} s\noutcome: {}\n",
        e.pod, e.policy, e.attempt, e.t, e.outcome
    );
    let mut scored: Vec<(&String, i64)> = Vec::new();
    let mut vetoed: Vec<&String> = Vec::new();
    let mut filtered: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for (n, v) in &e.verdicts {
        match v {
            NodeVerdict::Scored(x) => scored.push((n, *x)),
            NodeVerdict::Vetoed => vetoed.push(n),
            NodeVerdict::Filtered(rc) => {
                let mut reasons: Vec<String> = rc.iter().map(|(r, c)| format!("{c} {r}")).collect();
                if reasons.is_empty() {
                    reasons.push("filtered".into());
                }
                filtered.entry(reasons.join(", ")).or_default().push(n);
            }
        }
    }
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        s,
        "{} nodes: {} feasible, {} vetoed by the node policy, {} filtered out",
        e.verdicts.len(),
        scored.len(),
        vetoed.len(),
        filtered.values().map(Vec::len).sum::<usize>()
    );
    if !scored.is_empty() {
        let _ = writeln!(
            s,
            "\nfeasible nodes by score (higher wins; ties by the tie rule):"
        );
        let _ = writeln!(s, "  {:<4} {:<28} {:>16}  note", "rank", "node", "score");
        for (i, (n, x)) in scored.iter().take(top).enumerate() {
            let note = if e.chosen.as_deref() == Some(n.as_str()) {
                "← chosen"
            } else {
                ""
            };
            let _ = writeln!(s, "  {:<4} {:<28} {:>16}  {note}", i + 1, n, x);
        }
        if scored.len() > top {
            let _ = writeln!(s, "  … {} more feasible nodes", scored.len() - top);
        }
        if let Some(c) = &e.chosen
            && !scored.iter().take(top).any(|(n, _)| *n == c)
        {
            let _ = writeln!(s, "  chosen: {c}");
        }
    }
    if !vetoed.is_empty() {
        let _ = writeln!(
            s,
            "\nvetoed (feasible, but the node policy found no acceptable cards):"
        );
        for n in vetoed.iter().take(top) {
            let _ = writeln!(s, "  {n}");
        }
    }
    if !filtered.is_empty() {
        let _ = writeln!(
            s,
            "\nfiltered out, by reason (per card counts, HAMi's reason words):"
        );
        let mut groups: Vec<(&String, &Vec<&String>)> = filtered.iter().collect();
        groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (why, nodes) in groups {
            let shown: Vec<&str> = nodes.iter().take(4).map(|n| n.as_str()).collect();
            let more = if nodes.len() > 4 {
                format!(", … ({} nodes)", nodes.len())
            } else {
                String::new()
            };
            let _ = writeln!(s, "  {why}: {}{more}", shown.join(", "));
        }
    }
    s
}
