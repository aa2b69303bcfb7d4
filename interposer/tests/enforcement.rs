//! End-to-end tests of the interposer: C programs (built here with gcc) run against the fake
//! `libcuda.so.1` / `libnvidia-ml.so.1`, with and without `LD_PRELOAD=libvgpu.so`.

mod common;

use common::{ShareCase, command, kit, run, run_shares, scratch};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const LIMIT: u64 = 64 << 20;

#[test]
fn every_allocation_path_stops_at_the_limit() {
    let dir = scratch("paths");
    let mut c = command(&kit().cutest, &dir, true);
    c.args(["paths", &LIMIT.to_string()])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "64m");
    let (out, err, o) = run(c);
    println!("{out}");
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("PATHS_DONE failures=0"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("PATH ") && l.contains(" ok"))
            .count(),
        13,
        "{out}"
    );
    // Out-of-memory is reported on stderr, never a crash.
    assert!(
        err.contains("[hami-rs interposer Warn]") && err.contains("out of memory"),
        "{err}"
    );
}

#[test]
fn without_the_interposer_nothing_is_limited() {
    // Guards the test above: the same program against the bare fake driver sees no limit.
    let dir = scratch("direct");
    let mut c = command(&kit().cutest, &dir, false);
    c.args(["paths", &LIMIT.to_string()]);
    let (out, _, _) = run(c);
    assert!(
        out.contains("PATH cuMemAlloc_v2 FAIL one unit more: got 0 want 2"),
        "{out}"
    );
}

#[test]
fn no_limits_or_disable_control_is_pass_through() {
    for (name, extra) in [
        ("none", vec![]),
        (
            "disabled",
            vec![
                ("CUDA_DEVICE_MEMORY_LIMIT", "64m"),
                ("CUDA_DISABLE_CONTROL", "true"),
            ],
        ),
    ] {
        let dir = scratch(&format!("pass-{name}"));
        let mut c = command(&kit().cutest, &dir, true);
        c.args(["paths", &LIMIT.to_string()]).envs(extra);
        let (out, err, _) = run(c);
        assert!(
            out.contains("PATH cuMemAlloc_v2 FAIL one unit more: got 0 want 2"),
            "{name}: {out}"
        );
        assert!(!err.contains("hami-rs interposer"), "{name}: {err}");
        assert!(
            !dir.join("vgpu.cache").exists(),
            "{name}: pass-through must not create the cache"
        );
    }
}

#[test]
fn garbage_env_values_log_and_fall_back_to_no_limit() {
    let dir = scratch("garbage");
    let mut c = command(&kit().cutest, &dir, true);
    c.args(["alloc", &(1u64 << 30).to_string()])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "lots")
        .env("CUDA_DEVICE_MEMORY_LIMIT_0", "12q")
        .env("CUDA_DEVICE_SM_LIMIT", "half")
        .env("LIBCUDA_LOG_LEVEL", "loud");
    let (out, err, o) = run(c);
    assert!(o.status.success());
    assert!(out.contains("ALLOC rc=0"), "{out}");
    for needle in [
        "CUDA_DEVICE_MEMORY_LIMIT=\"lots\" is not a size",
        "CUDA_DEVICE_MEMORY_LIMIT_0=\"12q\" is not a size",
        "CUDA_DEVICE_SM_LIMIT=\"half\" is not a whole percentage",
        "LIBCUDA_LOG_LEVEL=\"loud\" is not 0..4",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    // A good per-device value still applies next to a bad global one.
    let mut c = command(&kit().cutest, &dir, true);
    c.args(["alloc", &(1u64 << 30).to_string()])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "lots")
        .env("CUDA_DEVICE_MEMORY_LIMIT_0", "512m");
    let (out, _, _) = run(c);
    assert!(out.contains("ALLOC rc=2"), "{out}");
}

#[test]
fn two_processes_share_one_limit() {
    let dir = scratch("two");
    let mut a = command(&kit().cutest, &dir, true);
    a.args(["hold", &(40u64 << 20).to_string(), "30"])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "64m")
        .stdout(Stdio::piped());
    let mut a = a.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(a.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "HELD rc=0");
    let alloc = |bytes: u64| {
        let mut b = command(&kit().cutest, &dir, true);
        b.args(["alloc", &bytes.to_string()])
            .env("CUDA_DEVICE_MEMORY_LIMIT", "64m");
        run(b).0
    };
    assert!(
        alloc(40 << 20).contains("ALLOC rc=2"),
        "second process must not get 40 MiB more"
    );
    assert!(
        alloc(24 << 20).contains("ALLOC rc=0"),
        "the remaining 24 MiB must be available"
    );
    assert!(alloc((24 << 20) + 1).contains("ALLOC rc=2"));
    a.kill().unwrap();
    a.wait().unwrap();
}

#[test]
fn a_killed_process_memory_comes_back() {
    let dir = scratch("killed");
    let mut a = command(&kit().cutest, &dir, true);
    a.args(["hold", &LIMIT.to_string(), "60"])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "64m")
        .stdout(Stdio::piped());
    let mut a = a.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(a.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "HELD rc=0");
    let pid = a.id();
    a.kill().unwrap(); // SIGKILL: no chance to free anything
    a.wait().unwrap();
    let mut b = command(&kit().cutest, &dir, true);
    b.args(["alloc", &LIMIT.to_string()])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "64m");
    let (out, err, _) = run(b);
    assert!(out.contains("ALLOC rc=0"), "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "reclaimed {LIMIT} bytes held by dead process {pid}"
        )),
        "{err}"
    );
}

#[test]
fn cuda_and_nvml_report_the_limit() {
    let dir = scratch("meminfo");
    let mut c = command(&kit().cutest, &dir, true);
    c.arg("meminfo").env("CUDA_DEVICE_MEMORY_LIMIT", "64m");
    let (out, err, _) = run(c);
    let used = 1u64 << 20;
    let free = LIMIT - used;
    for want in [
        format!("MEMINFO rc=0 free={free} total={LIMIT}"),
        format!("TOTALMEM rc=0 bytes={LIMIT}"),
        format!("NVML rc=0 total={LIMIT} free={free} used={used}"),
        format!("NVML2 rc=0 total={LIMIT} free={free} used={used}"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}\n{err}");
    }
    // Without the interposer the whole fake card shows.
    let (out, _, _) = run({
        let mut c = command(&kit().cutest, &dir, false);
        c.arg("meminfo");
        c
    });
    assert!(
        out.contains(&format!("TOTALMEM rc=0 bytes={}", 8u64 << 30)),
        "{out}"
    );
}

#[test]
fn a_directly_linked_program_is_limited() {
    let dir = scratch("linked");
    let mut c = command(&kit().linked, &dir, true);
    c.arg(LIMIT.to_string())
        .env("CUDA_DEVICE_MEMORY_LIMIT_0", "64m");
    let (out, err, _) = run(c);
    for want in [
        "LINKED first=0".to_string(),
        "LINKED second=2".to_string(),
        format!("LINKED meminfo free=0 total={LIMIT}"),
        format!("LINKED nvml total={LIMIT} used={LIMIT}"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}\n{err}");
    }
}

#[test]
fn other_libraries_rtld_next_still_works() {
    let dir = scratch("rtld");
    for preload in [false, true] {
        let mut c = command(&kit().rtld_next, &dir, preload);
        c.env("CUDA_DEVICE_MEMORY_LIMIT", "64m");
        let (out, err, _) = run(c);
        assert_eq!(out.trim(), "RTLD_NEXT whoami=2", "preload={preload}: {err}");
    }
}

#[test]
fn log_level_zero_hides_warnings() {
    let dir = scratch("quiet");
    let mut c = command(&kit().cutest, &dir, true);
    c.args(["alloc", &(LIMIT + 1).to_string()])
        .env("CUDA_DEVICE_MEMORY_LIMIT", "64m")
        .env("LIBCUDA_LOG_LEVEL", "0");
    let (out, err, _) = run(c);
    assert!(out.contains("ALLOC rc=2"));
    assert!(err.is_empty(), "{err}");
}

/// Compute share with simulated kernel time: 10/30/50/90 % each alone on a card, 10 % + 90 % on
/// one card, 30 % when NVML's pids are not ours (PID namespace: whole-card fallback after 1 s),
/// and a 30 % limit switched off by policy. Windows are 1 s; the first is warm-up.
/// The mean of the other windows must be within ±5 points (per-window values are printed; the
/// `share` bench prints the longer report).
#[test]
fn compute_share_meets_the_limit_per_window() {
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
            label: "10% shared",
            limit: 10,
            policy: None,
            card: "e",
            env: &[],
        },
        ShareCase {
            label: "90% shared",
            limit: 90,
            policy: None,
            card: "e",
            env: &[],
        },
        ShareCase {
            label: "30% PID namespace",
            limit: 30,
            policy: None,
            card: "g",
            env: &[("HAMI_FAKE_NVML_PID_OFFSET", "100000")],
        },
        ShareCase {
            label: "30% policy=disable",
            limit: 30,
            policy: Some("disable"),
            card: "f",
            env: &[],
        },
    ];
    let results = run_shares("share", &cases, 5);
    let mut bad = Vec::new();
    for (case, w) in cases.iter().zip(&results) {
        assert!(w.len() >= 4, "{}: too few windows {w:?}", case.label);
        let steady = &w[1..];
        let mean = steady.iter().sum::<f64>() / steady.len() as f64;
        println!(
            "{:<20} windows {:?} mean(after warm-up) {:.1}",
            case.label, w, mean
        );
        let ok = if case.policy == Some("disable") {
            mean > 80.0
        } else {
            (mean - case.limit as f64).abs() <= 5.0
        };
        if !ok {
            bad.push(format!("{}: mean {mean:.1}", case.label));
        }
    }
    assert!(bad.is_empty(), "shares off target: {bad:?}");
}
