//! The node agent: fake inventories give HAMi's registration annotations byte for byte, per-node
//! overrides apply, patches happen only on change, and NVML discovery works against the fake
//! `libnvidia-ml.so.1`.

use hami_cluster::agent::config::{parse_node_config, settings_for};
use hami_cluster::agent::{node_annotations, parse_inventory, publish};
use hami_cluster::allocate::source::FakeSource;
use hami_core::config::NvidiaConfig;
use std::collections::BTreeMap;

const REG: &str = "hami.io/node-nvidia-register";
const SCORE: &str = "hami.io/node-nvidia-score";

/// The recorded HAMi node annotations (core's codec fixture).
fn fixture() -> BTreeMap<String, String> {
    let text = include_str!("../../core/tests/fixtures/node-nvidia.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

const TWO_V100: &str = r#"
nodes:
  - name: v100-node
    cards:
      - uuid: GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448
        model: Tesla V100-PCIE-32GB
        memoryMiB: 32768
      - uuid: GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec
        model: Tesla V100-PCIE-32GB
        memoryMiB: 32768
        numa: 1
    links:
      - { a: 0, b: 1, score: 200 }
  - name: fake-node
    fake: "count=2;name=NVIDIA A100-SXM4-80GB;memory=80g;device.1.numa=1"
"#;

#[test]
fn fake_inventory_gives_hami_bytes() {
    let nodes = parse_inventory(TWO_V100, "inventory.yaml", "unused").expect("parse");
    assert_eq!(nodes.len(), 2);
    let none = Default::default();
    let s = settings_for("v100-node", &NvidiaConfig::default(), &none);
    let ann = node_annotations(&nodes[0], &s);
    let want = fixture();
    assert_eq!(
        ann[REG], want[REG],
        "registration must be byte-identical to HAMi's"
    );
    assert_eq!(
        ann[SCORE], want[SCORE],
        "pair scores must be byte-identical to HAMi's"
    );

    let s = settings_for("fake-node", &NvidiaConfig::default(), &none);
    let ann = node_annotations(&nodes[1], &s);
    assert_eq!(
        ann[REG],
        "[{\"id\":\"GPU-fa4e0000-0000-4000-8000-0000fa4e0000\",\"count\":10,\"devmem\":81920,\"devcore\":100,\"type\":\"NVIDIA A100-SXM4-80GB\",\"mode\":\"hami-core\",\"health\":true},\
{\"id\":\"GPU-fa4e0001-0000-4000-8000-0000fa4e0001\",\"index\":1,\"count\":10,\"devmem\":81920,\"devcore\":100,\"type\":\"NVIDIA A100-SXM4-80GB\",\"numa\":1,\"mode\":\"hami-core\",\"health\":true}]"
    );
    assert!(
        !ann.contains_key(SCORE),
        "no topology known, no score annotation"
    );
}

#[test]
fn key_value_file_is_one_node() {
    let nodes =
        parse_inventory("count=1\nname=Tesla T4\nmemory=15g\n", "gpus.txt", "n7").expect("parse");
    assert_eq!(nodes[0].name, "n7");
    let s = settings_for("n7", &NvidiaConfig::default(), &Default::default());
    let ann = node_annotations(&nodes[0], &s);
    assert!(
        ann[REG].contains("\"type\":\"NVIDIA-Tesla T4\""),
        "{}",
        ann[REG]
    );
    assert!(ann[REG].contains("\"devmem\":15360"));
}

#[test]
fn per_node_config_overrides() {
    let cfg = parse_node_config(
        "config.json",
        r#"{"nodeconfig":[{"name":"v100-node","operatingmode":"hami-core","devicememoryscaling":1.5,
            "devicecorescaling":2,"devicesplitcount":4,"migstrategy":"none",
            "filterdevices":{"uuid":[],"index":[1]}},{"name":"other","devicesplitcount":99}]}"#,
    )
    .expect("config");
    let nodes = parse_inventory(TWO_V100, "inventory.yaml", "unused").expect("parse");
    let s = settings_for("v100-node", &NvidiaConfig::default(), &cfg);
    let ann = node_annotations(&nodes[0], &s);
    assert_eq!(
        ann[REG],
        "[{\"id\":\"GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448\",\"count\":4,\"devmem\":49152,\"devcore\":200,\"type\":\"NVIDIA-Tesla V100-PCIE-32GB\",\"mode\":\"hami-core\",\"health\":true}]"
    );
    // The filtered card's link disappears with it.
    assert_eq!(ann[SCORE], "[]");
    assert!(parse_node_config("config.json", "{not json").is_err());
}

#[test]
fn bad_inventory_names_the_source() {
    let e = parse_inventory(
        "nodes:\n  - name: x\n    links: [{a: 0, b: 3, score: 1}]\n",
        "inv.yaml",
        "n",
    )
    .expect_err("bad link");
    assert!(e.contains("inv.yaml") && e.contains("(0, 3)"), "{e}");
    let e = parse_inventory("count=lots", "gpus.txt", "n").expect_err("bad count");
    assert!(e.contains("gpus.txt:1"), "{e}");
}

#[tokio::test]
async fn publishes_only_on_change() {
    let src = FakeSource::new();
    src.put_node("v100-node", BTreeMap::new());
    let nodes = parse_inventory(TWO_V100, "inventory.yaml", "unused").expect("parse");
    let s = settings_for("v100-node", &NvidiaConfig::default(), &Default::default());
    let ann = node_annotations(&nodes[0], &s);
    assert!(publish(&src, "v100-node", &ann).await.expect("first"));
    assert!(!publish(&src, "v100-node", &ann).await.expect("second"));
    assert_eq!(src.writes().len(), 1);
    assert_eq!(
        src.node("v100-node").unwrap_or_default()[REG],
        fixture()[REG]
    );
}

#[test]
fn nvml_discovery_with_fake_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("gpus.txt");
    std::fs::write(
        &inv,
        "count=2\nname=NVIDIA H100 80GB HBM3\nmemory=80g\ndevice.1.numa=1\n",
    )
    .expect("write");
    // The fake reads its inventory and shared state from the environment.
    // SAFETY: this is the only test in this binary that touches these variables.
    unsafe {
        std::env::set_var("HAMI_FAKE_INVENTORY", &inv);
        std::env::set_var("HAMI_FAKE_STATE", dir.path().join("state"));
    }
    let lib = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("libfake_nvml.so")))
        .filter(|p| p.exists());
    let Some(lib) = lib else {
        eprintln!("libfake_nvml.so not built next to the test binary; skipping");
        return;
    };
    let node = hami_cluster::agent::nvml::discover("h100-node", Some(&lib)).expect("discover");
    assert_eq!(node.cards.len(), 2);
    assert_eq!(node.cards[0].model, "NVIDIA H100 80GB HBM3");
    assert_eq!(node.cards[0].memory_mib, 81920);
    assert_eq!(node.cards[1].numa, 1);
    // Different NUMA nodes: the fake reports a cross-CPU relation, HAMi's score 10.
    assert_eq!(node.links, vec![(0, 1, 10)]);
    let s = settings_for("h100-node", &NvidiaConfig::default(), &Default::default());
    let ann = node_annotations(&node, &s);
    assert!(
        ann[REG].starts_with("[{\"id\":\"GPU-fa4e0000"),
        "{}",
        ann[REG]
    );
    assert!(ann[SCORE].contains(":10"));

    // MIG geometry through NVML's GPU instance profile calls (the fake answers for MIG-capable
    // models): five profiles, 1g at seven placements, compute share from multiprocessors.
    let p = &node.cards[0].mig_profiles;
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
        "{p:?}"
    );
    assert_eq!(p[0].placements, (0..7).map(|s| (s, 1)).collect::<Vec<_>>());
    assert_eq!(p[2].placements, vec![(0, 4), (4, 4)]);
    assert_eq!(p[4].cores, 100);
    assert_eq!(p[4].slice_count, 8);
    let mig = hami_cluster::agent::config::parse_node_config(
        "config.json",
        r#"{"nodeconfig":[{"name":"h100-node","operatingmode":"mig"}]}"#,
    )
    .expect("config");
    let global = NvidiaConfig {
        mig_profile_allowlist: vec![hami_core::config::MigAllowlistEntry {
            models: vec!["H100".into()],
            profiles: vec!["1g.10gb".into(), "7g.80gb".into()],
        }],
        ..NvidiaConfig::default()
    };
    let ann = node_annotations(&node, &settings_for("h100-node", &global, &mig));
    assert!(
        ann[REG].contains("\"mode\":\"mig\",\"migProfiles\":[{\"name\":\"1g.10gb\""),
        "{}",
        ann[REG]
    );
}

/// A fake A100 node in MIG mode registers its MIG geometry (`migProfiles`, HAMi's field), the
/// scheduler reads it back, and a MIG pod is reserved an exact instance on it.
#[test]
fn fake_mig_node_registers_profiles_the_scheduler_uses() {
    use hami_core::control::{Action, Controller, Event};
    let cfg = parse_node_config(
        "config.json",
        r#"{"nodeconfig":[{"name":"fake-node","operatingmode":"mig"}]}"#,
    )
    .expect("config");
    let nodes = parse_inventory(TWO_V100, "inventory.yaml", "unused").expect("parse");
    // Without an allowlist entry for the model no profile is registered and the card is left
    // out, as in HAMi; HAMi's chart default names the A100-80GB profiles.
    let s = settings_for("fake-node", &NvidiaConfig::default(), &cfg);
    assert_eq!(node_annotations(&nodes[1], &s).get(REG), None);
    let global = NvidiaConfig {
        mig_profile_allowlist: vec![
            hami_core::config::MigAllowlistEntry {
                models: vec!["A30".into()],
                profiles: vec!["1g.6gb".into()],
            },
            hami_core::config::MigAllowlistEntry {
                models: vec!["A100-SXM4-80GB".into(), "A100-PCIE-80GB".into()],
                profiles: vec![
                    "1g.10gb".into(),
                    "2g.20gb".into(),
                    "3g.40gb".into(),
                    "7g.79gb".into(),
                ],
            },
        ],
        ..NvidiaConfig::default()
    };
    let s = settings_for("fake-node", &global, &cfg);
    let ann = node_annotations(&nodes[1], &s);
    let reg = &ann[REG];
    assert!(reg.contains("\"name\":\"7g.79gb\",\"memoryMB\":81920,\"core\":100,\"sliceCount\":8,\"placements\":[{\"start\":0,\"size\":8}]"), "{reg}");
    assert!(!reg.contains("4g."), "not in the allowlist: {reg}");
    assert!(
        reg.starts_with("[{\"id\":\"GPU-fa4e0000-0000-4000-8000-0000fa4e0000\",\"count\":7,\"devmem\":81920,\"devcore\":100,\"type\":\"NVIDIA A100-SXM4-80GB\",\"mode\":\"mig\",\"migProfiles\":[{\"name\":\"1g.10gb\",\"memoryMB\":10240,\"core\":14,\"sliceCount\":1,\"placements\":[{\"start\":0,\"size\":1},"),
        "{reg}"
    );
    // The V100 node in MIG mode has no MIG geometry: nothing is invented, the cards are left
    // out (HAMi skips MIG-mode cards without profiles).
    let cfg_v100 = parse_node_config(
        "config.json",
        r#"{"nodeconfig":[{"name":"v100-node","operatingmode":"mig"}]}"#,
    )
    .expect("config");
    let s = settings_for("v100-node", &global, &cfg_v100);
    assert_eq!(
        node_annotations(&nodes[0], &s).get(REG),
        None,
        "no card registers"
    );

    let node =
        hami_core::annotations::node_from_annotations("fake-node", &ann, 0, 0).expect("decodes");
    assert_eq!(node.devices[0].mig_profiles.len(), 4);
    let mut c = Controller::new(
        hami_core::pipeline::Scheduler::new(hami_core::pipeline::SchedulerConfig {
            check_node_resources: false,
            ..hami_core::pipeline::SchedulerConfig::default()
        }),
        hami_core::request::RequestTranslator::default(),
        1,
    );
    c.handle(
        0,
        Event::NodeChanged(Box::new(hami_core::build::k8s_node(&node))),
    );
    let pod = hami_core::build::PodBuilder::new("p")
        .gpu(1, 30000, 0)
        .annotation("nvidia.com/vgpu-mode", "mig")
        .build();
    let out = c.handle(
        1,
        Event::Filter {
            pod: Box::new(pod),
            nodes: vec!["fake-node".into()],
        },
    );
    let mig = out
        .iter()
        .find_map(|a| match a {
            Action::PatchPod { annotations, .. } => annotations
                .get("hami.io/vgpu-mig-allocations")
                .cloned()
                .flatten(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no MIG reservation in {out:?}"));
    assert!(
        mig.contains("\"profile\":\"3g.40gb\",\"placement\":{\"start\":0,\"size\":4}"),
        "{mig}"
    );
}
