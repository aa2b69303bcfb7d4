//! Compute-share report: achieved share per 1-second window with the fake driver's simulated
//! kernel time (5 ms kernels, all four launch paths in turn), for 10/30/50/90 % alone on a card
//! and 10 % + 90 % sharing one card. Run with `cargo bench -p hami-interposer --bench share`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{ShareCase, run_shares};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = std::env::var("SHARE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cases = [
        ShareCase {
            label: "10% alone",
            limit: 10,
            policy: None,
            card: "a",
            env: &[],
        },
        ShareCase {
            label: "30% alone",
            limit: 30,
            policy: None,
            card: "b",
            env: &[],
        },
        ShareCase {
            label: "50% alone",
            limit: 50,
            policy: None,
            card: "c",
            env: &[],
        },
        ShareCase {
            label: "90% alone",
            limit: 90,
            policy: None,
            card: "d",
            env: &[],
        },
        ShareCase {
            label: "10% + 90%: the 10%",
            limit: 10,
            policy: None,
            card: "e",
            env: &[],
        },
        ShareCase {
            label: "10% + 90%: the 90%",
            limit: 90,
            policy: None,
            card: "e",
            env: &[],
        },
    ];
    let res = run_shares("share-bench", &cases, secs);
    println!("achieved share per 1-s window (percent of the card), {secs} windows each");
    for (c, w) in cases.iter().zip(&res) {
        let s: Vec<String> = w.iter().map(|x| format!("{x:.1}")).collect();
        let max_err = w
            .iter()
            .skip(1)
            .map(|x| (x - c.limit as f64).abs())
            .fold(0.0, f64::max);
        let mean = w.iter().skip(1).sum::<f64>() / (w.len() - 1).max(1) as f64;
        println!(
            "{:<20} target {:>2}: [{}]  mean(w1..) {:.1}  max |error|(w1..) {:.1}",
            c.label,
            c.limit,
            s.join(", "),
            mean,
            max_err
        );
    }
}
