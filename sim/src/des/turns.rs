//! Pure per-item work shared between this thread and one helper that take units in turn.
//!
//! A fixed split leaves the thread that finishes first waiting (the helper starts later, on a
//! cold heap); taking the next unit from one counter keeps both busy to the end. Results do
//! not depend on the threads: each unit records its number and the caller merges in order.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Do units `0..units` with `step`, each thread folding the units it takes into its own state
/// made by `init`: on this thread alone when `alone`, else on this thread and one helper taking
/// the next unit in turn. The states come back with this thread's first; the units each one
/// took are in increasing order, and any other order is the caller's to restore. A panic in
/// the helper is raised again here.
pub fn in_turns<S: Send>(
    units: usize,
    alone: bool,
    init: impl Fn() -> S + Sync,
    step: impl Fn(&mut S, usize) + Sync,
) -> Vec<S> {
    let next = AtomicUsize::new(0);
    let run = || {
        let mut state = init();
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            if u >= units {
                return state;
            }
            step(&mut state, u);
        }
    };
    if alone {
        return vec![run()];
    }
    std::thread::scope(|s| {
        let helper = s.spawn(run);
        let mine = run();
        match helper.join() {
            Ok(theirs) => vec![mine, theirs],
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit is done once, on one thread or two, and each thread's units come in order.
    #[test]
    fn every_unit_once_in_order_per_thread() {
        for (units, alone) in [(0, true), (5, true), (0, false), (1, false), (1000, false)] {
            let states = in_turns(units, alone, Vec::new, |v: &mut Vec<usize>, u| v.push(u));
            assert_eq!(states.len(), if alone { 1 } else { 2 });
            for s in &states {
                assert!(s.windows(2).all(|w| w[0] < w[1]), "{units} units: {s:?}");
            }
            let mut all: Vec<usize> = states.into_iter().flatten().collect();
            all.sort_unstable();
            assert_eq!(all, (0..units).collect::<Vec<_>>(), "{units} units");
        }
    }
}
