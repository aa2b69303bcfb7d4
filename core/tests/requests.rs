//! Pod → request translation: HAMi defaults, validation errors that name the place, and
//! arbitrary input never panics.

use hami_core::build::PodBuilder;
use hami_core::request::{MemoryRequest, RequestTranslator};
use proptest::prelude::*;

#[test]
fn hami_defaults() {
    let tr = RequestTranslator::default();
    // (case, limits, expected (count, memory, cores))
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], (u32, MemoryRequest, u32));
    let cases: &[Case] = &[
        (
            "memory only → one card",
            &[("nvidia.com/gpumem", "3000")],
            (1, MemoryRequest::Mib(3000), 0),
        ),
        (
            "cores only → one card, whole memory",
            &[("nvidia.com/gpucores", "30")],
            (1, MemoryRequest::Percent(100), 30),
        ),
        (
            "whole card → exclusive",
            &[("nvidia.com/gpu", "2")],
            (2, MemoryRequest::Percent(100), 100),
        ),
        (
            "percentage",
            &[
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpumem-percentage", "25"),
            ],
            (1, MemoryRequest::Percent(25), 0),
        ),
        (
            "MiB wins over percentage",
            &[
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpumem", "100"),
                ("nvidia.com/gpumem-percentage", "25"),
            ],
            (1, MemoryRequest::Mib(100), 0),
        ),
    ];
    for (name, limits, (count, mem, cores)) in cases {
        let r = tr
            .translate(&PodBuilder::new("p").container("main", limits).build())
            .expect(name);
        let d = &r.containers[0].devices[0];
        assert_eq!(
            (d.count, d.memory, d.cores),
            (*count, *mem, *cores),
            "{name}"
        );
    }
}

#[test]
fn containers_keep_annotation_order_init_first() {
    let tr = RequestTranslator::default();
    let pod = PodBuilder::new("p")
        .container("app", &[("nvidia.com/gpu", "1")])
        .init_container("init", &[("cpu", "2")])
        .build();
    let r = tr.translate(&pod).expect("valid");
    let names: Vec<(&str, bool)> = r
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.init))
        .collect();
    assert_eq!(names, vec![("init", true), ("app", false)]);
    assert_eq!(r.cpu_milli, 2000, "effective CPU is max(sum app, max init)");
}

#[test]
fn invalid_requests_name_container_and_field() {
    let tr = RequestTranslator::default();
    let cases: Vec<(&str, k8s_openapi::api::core::v1::Pod, &str)> = vec![
        (
            "percentage",
            PodBuilder::new("p")
                .container("main", &[("nvidia.com/gpumem-percentage", "150")])
                .build(),
            "pod default/p: container \"main\": resource nvidia.com/gpumem-percentage: percentage must be 0..=100, got 150",
        ),
        (
            "cores",
            PodBuilder::new("p")
                .container("main", &[("nvidia.com/gpucores", "101")])
                .build(),
            "pod default/p: container \"main\": resource nvidia.com/gpucores: cores are a percentage of one card and must be 0..=100, got 101",
        ),
        (
            "negative",
            PodBuilder::new("p")
                .container("main", &[("nvidia.com/gpu", "-1")])
                .build(),
            "pod default/p: container \"main\": resource nvidia.com/gpu: negative quantity \"-1\"",
        ),
        (
            "fractional",
            PodBuilder::new("p")
                .container("main", &[("nvidia.com/gpumem", "1.5")])
                .build(),
            "pod default/p: container \"main\": resource nvidia.com/gpumem: \"1.5\" is not a whole number",
        ),
        (
            "priority",
            PodBuilder::new("p")
                .container(
                    "main",
                    &[("nvidia.com/gpu", "1"), ("nvidia.com/priority", "3")],
                )
                .build(),
            "pod default/p: container \"main\": resource nvidia.com/priority: priority must be 0 (high) or 1 (low), got 3",
        ),
        (
            "policy",
            PodBuilder::new("p")
                .gpu(1, 10, 0)
                .annotation("hami.io/node-scheduler-policy", "packer")
                .build(),
            "pod default/p: annotation hami.io/node-scheduler-policy=\"packer\": unknown node policy \"packer\"; expected one of binpack, spread, fgd, fgd-exact, random, dotproduct, clustering, packing, bestfit",
        ),
        (
            "device policy",
            PodBuilder::new("p")
                .gpu(1, 10, 0)
                .annotation("hami.io/gpu-scheduler-policy", "binpack,wat")
                .build(),
            "pod default/p: annotation hami.io/gpu-scheduler-policy=\"binpack,wat\": unknown device policy \"wat\"; expected binpack, spread, mutex, numa or topology-aware (comma-chained)",
        ),
        (
            "numa-bind",
            PodBuilder::new("p")
                .gpu(1, 10, 0)
                .annotation("nvidia.com/numa-bind", "yes")
                .build(),
            "pod default/p: annotation nvidia.com/numa-bind=\"yes\": expected \"true\" or \"false\"",
        ),
        (
            "vgpu-mode",
            PodBuilder::new("p")
                .gpu(1, 10, 0)
                .annotation("nvidia.com/vgpu-mode", "sliced")
                .build(),
            "pod default/p: annotation nvidia.com/vgpu-mode=\"sliced\": expected hami-core, mig or mps",
        ),
        (
            "empty type list",
            PodBuilder::new("p")
                .gpu(1, 10, 0)
                .annotation("nvidia.com/use-gputype", " , ")
                .build(),
            "pod default/p: annotation nvidia.com/use-gputype=\" , \": empty list",
        ),
    ];
    for (name, pod, want) in cases {
        let err = tr.translate(&pod).expect_err(name);
        assert_eq!(err.to_string(), want, "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_resources_and_annotations_never_panic(
        values in prop::collection::vec("\\PC{0,12}", 6),
        ann in prop::collection::vec(("(nvidia.com/(use|nouse)-gpu(type|uuid)|hami.io/(node|gpu)-scheduler-policy|nvidia.com/(numa-bind|vgpu-mode))", "\\PC{0,16}"), 0..4),
    ) {
        let tr = RequestTranslator::default();
        let mut b = PodBuilder::new("p").container("main", &[
            ("nvidia.com/gpu", &values[0]),
            ("nvidia.com/gpumem", &values[1]),
            ("nvidia.com/gpumem-percentage", &values[2]),
            ("nvidia.com/gpucores", &values[3]),
            ("cpu", &values[4]),
            ("memory", &values[5]),
        ]);
        for (k, v) in &ann {
            b = b.annotation(k, v);
        }
        let _ = tr.translate(&b.build());
    }
}

/// A container whose resources are split between limits and requests.
fn split_pod(
    limits: &[(&str, &str)],
    requests: &[(&str, &str)],
) -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        })
    };
    let mut pod = PodBuilder::new("p").build();
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.push(Container {
            name: "main".into(),
            resources: Some(ResourceRequirements {
                limits: map(limits),
                requests: map(requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        });
    }
    pod
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    /// HAMi reads a device resource from the limits and falls back to the requests, resource
    /// by resource: a pod with both translates exactly as the pod listing, in its limits only,
    /// each resource's effective value (the same request, or the same error).
    #[test]
    fn limits_win_over_requests_resource_by_resource(
        picks in prop::collection::vec(
            (prop::option::of(0usize..9), prop::option::of(0usize..9)),
            5,
        ),
    ) {
        const NAMES: [&str; 5] = [
            "nvidia.com/gpu",
            "nvidia.com/gpumem",
            "nvidia.com/gpumem-percentage",
            "nvidia.com/gpucores",
            "nvidia.com/priority",
        ];
        const VALUES: [&str; 9] = ["0", "1", "2", "50", "100", "101", "3000", "-1", "x"];
        let mut limits = Vec::new();
        let mut requests = Vec::new();
        let mut effective = Vec::new();
        for (name, (l, r)) in NAMES.iter().zip(&picks) {
            if let Some(l) = l {
                limits.push((*name, VALUES[*l]));
            }
            if let Some(r) = r {
                requests.push((*name, VALUES[*r]));
            }
            if let Some(v) = l.or(*r) {
                effective.push((*name, VALUES[v]));
            }
        }
        let tr = RequestTranslator::default();
        let both = tr.translate(&split_pod(&limits, &requests));
        let plain = tr.translate(&split_pod(&effective, &[]));
        prop_assert_eq!(both, plain);
    }
}
