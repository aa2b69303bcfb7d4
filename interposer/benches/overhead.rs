//! Overhead of the interposer on the fake driver: ns added per cuLaunchKernel and per
//! cuMemAlloc+cuMemFree pair (preloaded against direct), and initialisation time with 64
//! processes of one container starting at once. Run with `cargo bench -p hami-interposer
//! --bench overhead`; `interposer/bench.sh` adds callgrind instruction counts.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{command, kit, run, scratch};
use std::process::Stdio;

fn p50(out: &str, what: &str) -> f64 {
    out.lines()
        .find(|l| l.starts_with(&format!("BENCH {what} ")))
        .and_then(|l| l.split("p50=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no BENCH {what} line in {out}"))
}

fn bench(what: &str, preload: bool, env: &[(&str, &str)]) -> (f64, String) {
    let dir = scratch(&format!("bench-{what}-{preload}-{}", env.len()));
    let mut c = command(&kit().cutest, &dir, preload);
    c.args(["bench", what, "200", "2000"])
        .env("HAMI_FAKE_NS_PER_BLOCK", "10")
        .env("BENCH_WARMUP", "0.5")
        .envs(env.iter().copied());
    let (out, err, o) = run(c);
    assert!(o.status.success(), "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("BENCH"))
        .unwrap_or("")
        .to_string();
    (p50(&out, what), line)
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn init_times(preload: bool, n: usize) -> Vec<f64> {
    let dir = scratch(&format!("init-{preload}"));
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut c = command(&kit().cutest, &dir, preload);
            c.arg("init")
                .env("CUDA_DEVICE_MEMORY_LIMIT", "1g")
                .env("CUDA_DEVICE_SM_LIMIT", "50")
                .stdout(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|ch| {
            let o = ch.wait_with_output().unwrap();
            let s = String::from_utf8_lossy(&o.stdout);
            s.split("us=")
                .nth(1)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("bad init output {s}"))
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("== launch: ns per cuLaunchKernel (p50 of 200 batches x 2000) ==");
    let (direct, l) = bench("launch", false, &[]);
    println!("direct                 {l}");
    for (name, env) in [
        ("preload, no limits   ", vec![]),
        (
            "preload, memory limit",
            vec![("CUDA_DEVICE_MEMORY_LIMIT", "4g")],
        ),
        (
            "preload, SM limit 99%",
            vec![("CUDA_DEVICE_SM_LIMIT", "99")],
        ),
    ] {
        let (v, l) = bench("launch", true, &env);
        println!("{name}  {l}   added {:+.1} ns", v - direct);
    }
    println!("== alloc: ns per cuMemAlloc_v2 + cuMemFree_v2 pair ==");
    let (direct, l) = bench("alloc", false, &[]);
    println!("direct                 {l}");
    let (v, l) = bench("alloc", true, &[("CUDA_DEVICE_MEMORY_LIMIT", "4g")]);
    println!(
        "preload, memory limit  {l}   added {:+.1} ns per pair",
        v - direct
    );
    println!(
        "== init: 64 processes of one container at once (us from dlopen to first allocation) =="
    );
    for preload in [false, true] {
        let mut t = init_times(preload, 64);
        println!(
            "{}  p50 {:.0} us  p90 {:.0} us  max {:.0} us",
            if preload { "preload" } else { "direct " },
            pct(&mut t, 0.5),
            pct(&mut t, 0.9),
            pct(&mut t, 1.0)
        );
    }
    // The interposer's own initialisation, as it logs it at level 3.
    let dir = scratch("init-log");
    let children: Vec<_> = (0..64)
        .map(|_| {
            let mut c = command(&kit().cutest, &dir, true);
            c.arg("init")
                .env("CUDA_DEVICE_MEMORY_LIMIT", "1g")
                .env("CUDA_DEVICE_SM_LIMIT", "50")
                .env("LIBCUDA_LOG_LEVEL", "3")
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = children
        .into_iter()
        .filter_map(|ch| {
            let o = ch.wait_with_output().unwrap();
            let e = String::from_utf8_lossy(&o.stderr).into_owned();
            let rest = e.split("initialised in ").nth(1)?;
            let wall: f64 = rest.split_whitespace().next()?.parse().ok()?;
            let cpu: f64 = rest
                .split("(cpu ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((wall, cpu))
        })
        .unzip();
    println!(
        "interposer's own init, 64 processes: wall p50 {:.0} us p90 {:.0} us max {:.0} us; \
         cpu p50 {:.0} us p90 {:.0} us max {:.0} us",
        pct(&mut wall, 0.5),
        pct(&mut wall, 0.9),
        pct(&mut wall, 1.0),
        pct(&mut cpu, 0.5),
        pct(&mut cpu, 0.9),
        pct(&mut cpu, 1.0)
    );
}
