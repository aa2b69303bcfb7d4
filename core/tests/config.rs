//! HAMi's `device-config.yaml`: the chart's real file parses with HAMi's defaults; mistakes are
//! errors that name the key.

use hami_core::build::PodBuilder;
use hami_core::config::DeviceConfig;
use hami_core::request::RequestTranslator;

#[test]
fn hami_chart_config_parses() {
    let text = include_str!("fixtures/device-config.yaml");
    let cfg =
        DeviceConfig::from_yaml("device-config.yaml", text).expect("HAMi's own config parses");
    assert_eq!(cfg.nvidia.device_split_count, 10);
    assert_eq!(cfg.nvidia.default_gpu_num, 1);
    assert_eq!(cfg.nvidia.mig_profile_allowlist.len(), 2);
    let t = cfg.vnpu_templates("Ascend910B3").expect("templates");
    assert_eq!(
        t.iter().map(|t| t.memory).collect::<Vec<_>>(),
        vec![16384, 32768]
    );
}

#[test]
fn defaults_match_hami() {
    let cfg = DeviceConfig::from_yaml("empty.yaml", "nvidia: {}\n").expect("parses");
    assert_eq!(cfg, DeviceConfig::default());
    let n = &cfg.nvidia;
    assert_eq!(
        (
            n.device_split_count,
            n.device_memory_scaling,
            n.device_core_scaling
        ),
        (10, 1.0, 1.0)
    );
    assert_eq!(
        (n.default_memory, n.default_cores, n.default_gpu_num),
        (0, 0, 1)
    );
}

#[test]
fn mistakes_name_the_key() {
    let cases = [
        ("nvidia:\n  deviceSplitCont: 4\n", "deviceSplitCont"),
        ("nvidia:\n  deviceSplitCount: four\n", "deviceSplitCount"),
        ("nvida:\n  deviceSplitCount: 4\n", "nvida"),
        (
            "nvidia:\n  deviceSplitCount: 0\n",
            "nvidia.deviceSplitCount must be at least 1",
        ),
        ("nvidia:\n  gpuCorePolicy: always\n", "nvidia.gpuCorePolicy"),
        ("nvidia:\n  defaultCores: 150\n", "nvidia.defaultCores"),
    ];
    for (text, want) in cases {
        let err = DeviceConfig::from_yaml("cfg.yaml", text)
            .expect_err(text)
            .to_string();
        assert!(err.starts_with("cfg.yaml: "), "{err}");
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn renamed_resources_and_default_memory_apply() {
    let cfg = DeviceConfig::from_yaml(
        "cfg.yaml",
        "nvidia:\n  resourceCountName: example.com/vgpu\n  resourceMemoryName: example.com/vmem\n  defaultMemory: 2048\n",
    )
    .expect("parses");
    let tr = RequestTranslator::new(&cfg);
    let r = tr
        .translate(
            &PodBuilder::new("p")
                .container("main", &[("example.com/vgpu", "1")])
                .build(),
        )
        .expect("valid");
    let d = &r.containers[0].devices[0];
    assert_eq!(d.memory, hami_core::request::MemoryRequest::Mib(2048));
    assert!(tr.is_managed_resource("example.com/vmem"));
    assert!(!tr.is_managed_resource("nvidia.com/gpu"));
}
