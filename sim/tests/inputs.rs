//! Input handling: scenario and CSV errors name the place; trace model names never match each
//! other as HAMi's case-insensitive substrings; the translation of trace rows.

use hami_core::request::MemoryRequest;
use hami_sim::scenario::Scenario;
use hami_sim::trace::{MODELS, TracePod, read_nodes, read_pods};
use std::path::{Path, PathBuf};

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hami-sim-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let p = dir.join(name);
    std::fs::write(&p, text).ok();
    p
}

#[test]
fn no_model_is_a_substring_of_another() {
    for (a, _) in MODELS {
        for (b, _) in MODELS {
            if a != b {
                let (la, lb) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
                assert!(!lb.contains(&la), "{a} matches {b}");
            }
        }
    }
}

#[test]
fn bad_csv_rows_name_file_line_and_column() {
    let p = tmp(
        "pods.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\np2,x,10,1,500\n",
    );
    let e = read_pods(&p).err().unwrap_or_default();
    assert!(
        e.contains("pods.csv:3") && e.contains("column cpu_milli"),
        "{e}"
    );
    let p = tmp(
        "pods2.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,505\n",
    );
    let e = read_pods(&p).err().unwrap_or_default();
    assert!(
        e.contains("pods2.csv:2") && e.contains("column gpu_milli"),
        "{e}"
    );
    let p = tmp(
        "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn1,1000,10,2,H100\n",
    );
    let e = read_nodes(&p).err().unwrap_or_default();
    assert!(
        e.contains("nodes.csv:2") && e.contains("column model"),
        "{e}"
    );
    let p = tmp("nodes2.csv", "sn,cpu_milli,gpu,model\nn1,1000,2,T4\n");
    let e = read_nodes(&p).err().unwrap_or_default();
    assert!(e.contains("missing column \"memory_mib\""), "{e}");
    // A row cut short names its line and the first column it lacks; a long one its line, the
    // first value without a column and the last column.
    let p = tmp(
        "pods3.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\np2,1000\n",
    );
    let e = read_pods(&p).err().unwrap_or_default();
    assert!(
        e.contains("pods3.csv:3: column memory_mib: missing value"),
        "{e}"
    );
    let p = tmp(
        "nodes3.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn1,1000,10,2,T4,extra\n",
    );
    let e = read_nodes(&p).err().unwrap_or_default();
    assert!(
        e.contains(
            "nodes3.csv:2: 6 values where the header has 5 columns: value 6 has no column (the last is model)"
        ),
        "{e}"
    );
}

#[test]
fn bad_scenarios_name_file_line_and_field() {
    let csv = tmp(
        "n.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn1,1000,10,2,T4\n",
    );
    let _ = tmp(
        "p.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\n",
    );
    let dir = csv.parent().unwrap_or(Path::new("."));
    let base = "kind: trace-replay\nname: t\ntrace:\n  nodes: n.csv\n  pods: p.csv\nseeds: [1]\npolicies: [fgd]\n";
    assert!(Scenario::parse(&dir.join("ok.yaml"), base).is_ok());
    let e = Scenario::parse(&dir.join("a.yaml"), &format!("{base}colour: red\n"))
        .err()
        .unwrap_or_default();
    assert!(e.contains("a.yaml:8:") && e.contains("colour"), "{e}");
    let e = Scenario::parse(&dir.join("b.yaml"), &base.replace("[fgd]", "[fgd, tetris]"))
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("b.yaml:7: policies") && e.contains("tetris"),
        "{e}"
    );
    let e = Scenario::parse(&dir.join("c.yaml"), &base.replace("p.csv", "missing.csv"))
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("c.yaml:5: trace.pods") && e.contains("missing.csv"),
        "{e}"
    );
    let e = Scenario::parse(
        &dir.join("d.yaml"),
        &base.replace("seeds: [1]", "seeds: [one]"),
    )
    .err()
    .unwrap_or_default();
    assert!(e.contains("d.yaml:6:"), "{e}");
}

#[test]
fn trace_rows_translate_to_hami_requests() {
    let tr = hami_core::request::RequestTranslator::default();
    let share = TracePod {
        name: "p".into(),
        cpu_milli: 4000,
        memory_mib: 1024,
        num_gpu: 1,
        gpu_milli: 250,
        gpu_spec: "V100M16|V100M32".into(),
    };
    let r = match tr.translate(&share.to_pod()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let d = &r.containers[0].devices[0];
    assert_eq!(
        (d.count, d.cores, d.memory),
        (1, 25, MemoryRequest::Percent(25))
    );
    assert_eq!(d.selectors.use_types, vec!["v100m16", "v100m32"]);
    assert_eq!((r.cpu_milli, r.memory_mib), (4000, 1024));
    let whole = TracePod {
        num_gpu: 4,
        gpu_milli: 1000,
        gpu_spec: String::new(),
        ..share
    };
    let r = match tr.translate(&whole.to_pod()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let d = &r.containers[0].devices[0];
    assert_eq!(
        (d.count, d.cores, d.memory),
        (4, 100, MemoryRequest::Percent(100))
    );
}
