//! Shared by the integration tests and the benchmarks: finds the built cdylibs, installs the
//! fake driver under its real names, compiles the C test programs with gcc and runs them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Variables of the interposer's contract, removed from every child so the caller's
/// environment cannot leak into a test.
pub const CONTRACT_VARS: &[&str] = &[
    "CUDA_DEVICE_MEMORY_LIMIT",
    "CUDA_DEVICE_SM_LIMIT",
    "CUDA_DEVICE_MEMORY_SHARED_CACHE",
    "GPU_CORE_UTILIZATION_POLICY",
    "CUDA_DISABLE_CONTROL",
    "LIBCUDA_LOG_LEVEL",
    "CUDA_VISIBLE_DEVICES",
    "HAMI_FAKE_INVENTORY",
    "HAMI_FAKE_GPUS",
    "HAMI_FAKE_STATE",
    "HAMI_FAKE_NS_PER_BLOCK",
    "HAMI_FAKE_NVML_PID_OFFSET",
    "LD_PRELOAD",
];

/// Built artefacts.
pub struct Kit {
    /// Folder holding `libcuda.so.1`, `libnvidia-ml.so.1` (the fakes) and the test libraries.
    pub lib_dir: PathBuf,
    /// Absolute path of the interposer.
    pub vgpu: PathBuf,
    /// The dlopen-based test driver.
    pub cutest: PathBuf,
    /// The directly linked program.
    pub linked: PathBuf,
    /// The RTLD_NEXT program.
    pub rtld_next: PathBuf,
    /// Scratch space for state files.
    pub scratch: PathBuf,
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .expect("gcc must be installed to build the C test programs");
    assert!(
        out.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The artefact folder: next to the running test or bench executable (`target/<profile>/deps`),
/// where cargo puts the cdylibs of this crate and of its dev-dependencies.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("exe folder").to_path_buf()
}

/// Builds (once per process) and returns the kit.
pub fn kit() -> &'static Kit {
    static KIT: OnceLock<Kit> = OnceLock::new();
    KIT.get_or_init(|| {
        let deps = deps_dir();
        let base = std::env::temp_dir().join(format!("hami-interposer-kit-{}", std::process::id()));
        let lib_dir = base.join("lib");
        std::fs::create_dir_all(&lib_dir).unwrap();
        let copy = |from: &str, to: &str| {
            let src = deps.join(from);
            assert!(
                src.exists(),
                "{} not built (run cargo build --workspace)",
                src.display()
            );
            std::fs::copy(&src, lib_dir.join(to)).unwrap();
        };
        copy("libfake_cuda.so", "libcuda.so.1");
        copy("libfake_nvml.so", "libnvidia-ml.so.1");
        copy("libvgpu.so", "libvgpu.so");
        let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
        let cs = |f: &str| c.join(f).to_string_lossy().into_owned();
        let out = |f: &str| base.join(f).to_string_lossy().into_owned();
        let l = lib_dir.to_string_lossy().into_owned();
        gcc(&[
            "-O2",
            "-Wall",
            "-o",
            &out("cutest"),
            &cs("cutest.c"),
            "-ldl",
        ]);
        gcc(&[
            "-O2",
            "-o",
            &out("linked"),
            &cs("linked.c"),
            "-L",
            &l,
            "-l:libcuda.so.1",
            "-l:libnvidia-ml.so.1",
        ]);
        gcc(&[
            "-shared",
            "-fPIC",
            "-o",
            &format!("{l}/libnext_a.so"),
            &cs("next_a.c"),
            "-ldl",
        ]);
        gcc(&[
            "-shared",
            "-fPIC",
            "-o",
            &format!("{l}/libnext_b.so"),
            &cs("next_b.c"),
        ]);
        gcc(&[
            "-o",
            &out("rtld_next"),
            &cs("rtld_next.c"),
            "-L",
            &l,
            "-Wl,--no-as-needed",
            "-lnext_a",
            "-lnext_b",
        ]);
        let scratch = base.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        Kit {
            vgpu: lib_dir.join("libvgpu.so"),
            cutest: base.join("cutest"),
            linked: base.join("linked"),
            rtld_next: base.join("rtld_next"),
            lib_dir,
            scratch,
        }
    })
}

/// A fresh folder for one scenario's state file and accounting file.
pub fn scratch(name: &str) -> PathBuf {
    let d = kit().scratch.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A command for `prog` with a clean contract environment, the fake driver on the library
/// path, one 8 GiB fake card with its state in `dir`, and (if `preload`) the interposer.
pub fn command(prog: &Path, dir: &Path, preload: bool) -> Command {
    let k = kit();
    let mut c = Command::new(prog);
    for v in CONTRACT_VARS {
        c.env_remove(v);
    }
    for i in 0..16 {
        c.env_remove(format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"));
        c.env_remove(format!("CUDA_DEVICE_SM_LIMIT_{i}"));
    }
    c.env("LD_LIBRARY_PATH", &k.lib_dir)
        .env("HAMI_FAKE_GPUS", "count=1;memory=8g;sms=80")
        .env("HAMI_FAKE_STATE", dir.join("fake.state"))
        .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", dir.join("vgpu.cache"))
        .stdin(Stdio::null());
    if preload {
        c.env("LD_PRELOAD", &k.vgpu);
    }
    c
}

/// Runs to completion, returning (stdout, stderr, output).
pub fn run(mut c: Command) -> (String, String, Output) {
    let o = c.output().expect("spawn");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o,
    )
}

/// Parses `WINDOW i share=x` lines.
pub fn windows(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("WINDOW "))
        .filter_map(|l| l.split("share=").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// One compute-share scenario: a label, the SM limit, the policy, and the card it runs on.
pub struct ShareCase {
    /// Shown in reports.
    pub label: &'static str,
    /// `CUDA_DEVICE_SM_LIMIT`.
    pub limit: u32,
    /// `GPU_CORE_UTILIZATION_POLICY`, if set.
    pub policy: Option<&'static str>,
    /// Cases with the same card name share one fake card.
    pub card: &'static str,
    /// Extra environment.
    pub env: &'static [(&'static str, &'static str)],
}

/// Runs all cases concurrently for `secs` seconds (5 ms fake kernels, all four launch paths in
/// turn) and returns the per-window shares of each, in order.
pub fn run_shares(tag: &str, cases: &[ShareCase], secs: u32) -> Vec<Vec<f64>> {
    let root = scratch(tag);
    let children: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let dir = root.join(format!("c{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut c = command(&kit().cutest, &dir, true);
            c.args(["share", &secs.to_string(), "50", "mixed"])
                .env("HAMI_FAKE_NS_PER_BLOCK", "100000")
                .env("HAMI_FAKE_STATE", root.join(format!("{}.state", case.card)))
                .env("CUDA_DEVICE_SM_LIMIT", case.limit.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.envs(case.env.iter().copied());
            if let Some(p) = case.policy {
                c.env("GPU_CORE_UTILIZATION_POLICY", p);
            }
            c.spawn().expect("spawn cutest share")
        })
        .collect();
    children
        .into_iter()
        .map(|ch| {
            let o = ch.wait_with_output().unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "share run failed: {out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            windows(&out)
        })
        .collect()
}
