//! Explicit nodes (`cluster.nodes`) and explicit pods (`workload.pods`), the shape `hami record`
//! writes: they load, run under every policy, and bad entries are errors that name the field.

use hami_sim::des::engine::{Engine, RunOptions};
use hami_sim::des::model::{Scenario, Source};
use std::path::Path;

const EXPLICIT: &str = r#"
name: recorded
cluster:
  nodes:
    - name: gpu-a
      cpu: "64"
      ram: 512Gi
      links: [[0, 1, 600]]
      cards:
        - {id: GPU-a0, model: NVIDIA-A100-SXM4-40GB, memory: 40960Mi}
        - {id: GPU-a1, model: NVIDIA-A100-SXM4-40GB, memory: 40960Mi, numa: 1}
    - name: gpu-b
      cards:
        - {id: GPU-b0, model: Tesla-T4, memory: 15360Mi, split: 4, cores: 100}
        - {id: GPU-b1, model: Tesla-T4, memory: 15360Mi, healthy: false}
workload:
  pods:
    - {name: default/share, at: 0s, duration: 30s, containers: [{limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: "3000", nvidia.com/gpucores: 30}}]}
    - {name: default/whole, at: 2s, containers: [{name: main, limits: {nvidia.com/gpu: "2"}, requests: {cpu: "2"}}]}
    - name: default/typed
      at: 1s
      priority: 5
      annotations: {nvidia.com/use-gputype: T4}
      init_containers: [{limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: 1000}}]
      containers: [{limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: 2000}}]
policies:
  - {name: binpack, node: binpack, device: binpack}
  - {name: fgd, node: fgd, device: binpack}
stop: {time: 1m, drain: true}
"#;

fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse(Path::new("rec.yaml"), text)
}

#[test]
fn explicit_nodes_and_pods_load() {
    let sc = parse(EXPLICIT).unwrap_or_else(|e| panic!("{e}"));
    let v = &sc.variants[0];
    let names: Vec<&str> = v.nodes.iter().map(|(n, _)| n.name.as_str()).collect();
    assert_eq!(names, ["gpu-a", "gpu-b"]);
    assert_eq!(v.total_cards, 4);
    let (a, _) = &v.nodes[0];
    assert_eq!(a.cpu_milli, 64_000);
    assert_eq!(a.devices[1].uuid, "GPU-a1");
    assert_eq!(a.devices[1].numa, 1);
    assert_eq!(a.links.get(1, 0), 600);
    let (b, pool_b) = &v.nodes[1];
    assert_eq!(b.devices[0].split_count, 4);
    assert!(!b.devices[1].healthy);
    assert_eq!(v.pools[usize::from(*pool_b)].model, "Tesla-T4");
    assert_eq!(v.pools.len(), 2);
    let classes: Vec<&str> = v.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(classes, ["default-share", "default-whole", "default-typed"]);
    assert_eq!(v.classes[2].request.priority, 5);
    let Source::Trace { pods, .. } = &v.source else {
        panic!("explicit pods replay as a timed list")
    };
    let order: Vec<(u32, u64, Option<u64>)> =
        pods.iter().map(|a| (a.class, a.at, a.duration)).collect();
    assert_eq!(
        order,
        [(0, 0, Some(30_000)), (2, 1000, None), (1, 2000, None)]
    );
}

#[test]
fn explicit_scenario_runs_under_each_policy() {
    let sc = parse(EXPLICIT).unwrap_or_else(|e| panic!("{e}"));
    for p in &sc.policies {
        let o = Engine::new(&sc, &sc.variants[0], p, 1, RunOptions::default())
            .run()
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        assert_eq!(o.metrics["arrived"], 3.0, "{}", p.name);
        // The whole pod needs both A100s, the typed one a T4: everything fits.
        assert_eq!(o.metrics["placed"], 3.0, "{}: {:?}", p.name, o.metrics);
    }
}

#[test]
fn bad_explicit_entries_name_the_field() {
    let cases = [
        (
            EXPLICIT.replace("nvidia.com/gpumem: \"3000\"", "nvidia.com/gpumem: 3 gigs"),
            "workload.pods[0]",
        ),
        (
            EXPLICIT.replace("id: GPU-a1", "id: GPU-a0"),
            "cluster.nodes[0].cards[1].id",
        ),
        (
            EXPLICIT.replace("memory: 15360Mi, split", "memory: 15 gigs, split"),
            "memory",
        ),
        (
            EXPLICIT.replace("policies:", "  trace: {pods: x.csv}\npolicies:"),
            "workload",
        ),
        (
            EXPLICIT.replace("name: gpu-b", "name: gpu-a"),
            "cluster.nodes[1].name",
        ),
        (
            EXPLICIT.replace("[[0, 1, 600]]", "[[0, 2, 600]]"),
            "cluster.nodes[0].links[0]",
        ),
    ];
    for (text, field) in cases {
        let e = match parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        assert!(e.starts_with("rec.yaml:"), "{e}");
        assert!(e.contains(field), "{field} not in {e}");
    }
}

/// A recorded cluster is far larger than a hand-written scenario: 500 nodes × 8 cards and
/// 20,000 pods (~300,000 YAML nodes) must load (the reader's default budget is 250,000).
#[test]
fn a_large_recording_loads() {
    let mut t = String::from("name: big\ncluster:\n  nodes:\n");
    for i in 0..500 {
        t.push_str(&format!("    - name: n{i}\n      cards:\n"));
        for c in 0..8 {
            t.push_str(&format!(
                "        - {{id: GPU-{i}-{c}, model: A100, memory: 40960Mi}}\n"
            ));
        }
    }
    t.push_str("workload:\n  pods:\n");
    for j in 0..20_000 {
        t.push_str(&format!(
            "    - {{name: p{j}, at: {j}s, duration: 600s, containers: [{{limits: {{nvidia.com/gpu: 1}}}}]}}\n"
        ));
    }
    t.push_str("policies:\n  - {name: binpack, node: binpack}\nstop: {time: 6h, drain: true}\n");
    let sc = parse(&t).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sc.variants[0].total_cards, 4000);
    assert_eq!(sc.variants[0].classes.len(), 20_000);
}
