//! Codec tests: HAMi's own fixture values (from its `*_test.go` files and docs) decode and
//! re-encode byte-identically; malformed values give the typed error, snapshotted.

use hami_core::codec::{
    self, BindPhase, ContainerDevice, DevicePairScore, Handshake, LockOwner, MigAllocation,
    MigPlacement, MigProfile, NodeLock, RegisteredDevice, WireTime, keys,
};
use std::collections::BTreeMap;

const REG: &str = "hami.io/node-nvidia-register";
const DEVS: &str = "hami.io/vgpu-devices-allocated";

/// JSON registration values as Go's json.Marshal writes them (field order of `DeviceInfo`).
const JSON_FIXTURES: &[&str] = &[
    // HAMI-PROTOCOL.md §2.2 illustrative value (index/numa 0 omitted).
    r#"[{"id":"GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448","count":10,"devmem":32768,"devcore":100,"type":"NVIDIA-Tesla V100-PCIE-32GB","mode":"hami-core","health":true},{"id":"GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec","index":1,"count":10,"devmem":32768,"devcore":100,"type":"NVIDIA-Tesla V100-PCIE-32GB","numa":1,"mode":"hami-core","health":true}]"#,
    // pkg/device/nvidia tests: two V100 without mode.
    r#"[{"id":"GPU-0","count":1,"devmem":8192,"devcore":100,"type":"NVIDIA-V100","health":true},{"id":"GPU-1","count":1,"devmem":8192,"devcore":100,"type":"NVIDIA-V100","health":true}]"#,
    // MIG profile layout from pkg/device/devices_test.go (TestMigProfile JSON) inside a device.
    r#"[{"id":"GPU-0","count":7,"devmem":40960,"devcore":100,"type":"NVIDIA-A100-SXM4-40GB","mode":"mig","migProfiles":[{"name":"1g.5gb","memoryMB":4864,"core":15,"sliceCount":1,"placements":[{"start":6,"size":1}]}],"health":true}]"#,
    "[]",
];

#[test]
fn json_register_fixtures_round_trip() {
    for v in JSON_FIXTURES {
        let d = codec::decode_register_json(REG, v).unwrap();
        assert_eq!(codec::encode_register_json(&d), *v);
    }
    let d = codec::decode_register_json(REG, JSON_FIXTURES[0]).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].index, 0);
    assert_eq!(d[0].numa, 0);
    assert_eq!(d[1].numa, 1);
    assert!(d[1].health);
    assert_eq!(d[1].device_type, "NVIDIA-Tesla V100-PCIE-32GB");
}

#[test]
fn json_register_tolerates_go_shapes() {
    // From HAMi's TestUnMarshalNodeDevices: key order differs, trailing newline, zero values
    // present; plus an unknown field, explicit nulls and a non-canonical key case.
    let v = "[{\"index\":1,\"id\":\"id-1\",\"count\":1,\"devmem\":1024,\"devcore\":10,\"type\":\"type\",\"numa\":0,\"health\":true,\"devicepairscore\":{},\"instanceCount\":7,\"Mode\":null}]\n";
    let d = codec::decode_register_json(REG, v).unwrap();
    assert_eq!(
        d,
        vec![RegisteredDevice {
            id: "id-1".into(),
            index: 1,
            count: 1,
            devmem: 1024,
            devcore: 10,
            device_type: "type".into(),
            health: true,
            ..Default::default()
        }]
    );
    assert_eq!(
        codec::encode_register_json(&d),
        r#"[{"id":"id-1","index":1,"count":1,"devmem":1024,"devcore":10,"type":"type","health":true}]"#
    );
    assert_eq!(codec::decode_register_json(REG, "null").unwrap(), vec![]);
    // HAMi test value with instanceCount/multiprocessorCount that Go drops (json:"-" / unknown).
    let mig = r#"[{"id":"GPU-0","count":7,"devmem":40960,"devcore":100,"type":"NVIDIA-A100-SXM4-40GB","numa":0,"health":true,"mode":"mig","migProfiles":[{"name":"1g.5gb","memoryMB":5120,"core":14,"sliceCount":1,"instanceCount":7,"multiprocessorCount":14,"placements":[{"start":6,"size":1}]}]}]"#;
    let d = codec::decode_register_json(REG, mig).unwrap();
    assert_eq!(
        d[0].mig_profiles,
        vec![MigProfile {
            name: "1g.5gb".into(),
            memory_mb: 5120,
            core: 14,
            slice_count: 1,
            placements: Some(vec![MigPlacement { start: 6, size: 1 }]),
        }]
    );
}

#[test]
fn json_escaping_matches_go() {
    let d = vec![RegisteredDevice {
        id: "a<b>&\"c\"\\\u{2028}\n\u{1}".into(),
        custom_info: serde_json::from_str(r#"{"z":1,"a":[1.5,1e21,1e-7,true,null,"x"]}"#).unwrap(),
        ..Default::default()
    }];
    assert_eq!(
        codec::encode_register_json(&d),
        r#"[{"id":"a\u003cb\u003e\u0026\"c\"\\\u2028\n\u0001","custominfo":{"a":[1.5,1e+21,1e-7,true,null,"x"],"z":1}}]"#
    );
}

#[test]
fn legacy_register_fixtures() {
    // pkg/device/devices_test.go (TestDecodeNodeDevices / TestEncodeNodeDevices).
    let nine =
        "GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,10,7680,100,NVIDIA-Tesla P4,0,true,0,hami-core:";
    let d = codec::decode_legacy_register("hami.io/node-dcu-register", nine).unwrap();
    assert_eq!(d[0].count, 10);
    assert_eq!(d[0].devmem, 7680);
    assert_eq!(d[0].mode, "hami-core");
    assert_eq!(codec::encode_legacy_register(&d), nine);

    let seven = "GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,10,7680,100,NVIDIA-Tesla P4,0,true:";
    let d7 = codec::decode_legacy_register("k", seven).unwrap();
    assert_eq!(d7, d, "7 fields default index 0 and mode hami-core");

    let one =
        "GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,10,7680,100,NVIDIA-Tesla P4,0,true,1,hami-core:";
    assert_eq!(codec::decode_legacy_register("k", one).unwrap()[0].index, 1);
    let v100 =
        "GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:";
    assert_eq!(
        codec::decode_legacy_register("k", v100).unwrap()[0].devmem,
        32768
    );
    // Either-format entry point.
    assert_eq!(codec::decode_register("k", nine).unwrap(), d);
    assert_eq!(
        codec::decode_register("k", JSON_FIXTURES[1]).unwrap().len(),
        2
    );
}

#[test]
fn device_list_fixtures_round_trip() {
    // pkg/device/devices_test.go and pkg/scheduler tests.
    for v in [
        "GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448,NVIDIA,3000,0:;",
        "GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448,NVIDIA,3000,0:;GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448,NVIDIA,5000,0:;",
        "GPU-8dcd427f-483b-b48f-d7e5-75fb19a52b76,NVIDIA,500,3:;GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,NVIDIA,500,3:;",
        "GPU-uuid,NVIDIA,1024,10:GPU-uuid2,NVIDIA,2048,20:;",
        ";;",
        ";GPU-a,NVIDIA,8000,30:GPU-b,NVIDIA,8000,30:;;",
        "",
    ] {
        let pd = codec::decode_pod_devices(DEVS, v).unwrap();
        assert_eq!(codec::encode_pod_devices(&pd), v);
    }
    let pd = codec::decode_pod_devices(DEVS, ";;").unwrap();
    assert_eq!(pd, vec![vec![], vec![]]);
    // A container segment without terminators (HAMi test value) and extra fields.
    let c = codec::decode_container_devices(
        DEVS,
        0,
        "GPU-936619fc-f6a1-74a8-0bc6-ecf6b3269313,NVIDIA,1000,10:GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,NVIDIA,3000,30,extra",
    )
    .unwrap();
    assert_eq!(
        c,
        vec![
            ContainerDevice {
                uuid: "GPU-936619fc-f6a1-74a8-0bc6-ecf6b3269313".into(),
                type_keyword: "NVIDIA".into(),
                usedmem: 1000,
                usedcores: 10
            },
            ContainerDevice {
                uuid: "GPU-ebe7c3f7-303d-558d-435e-99a160631fe4".into(),
                type_keyword: "NVIDIA".into(),
                usedmem: 3000,
                usedcores: 30
            },
        ]
    );
    assert_eq!(codec::devices::first_pending_container(&pd), None);
    assert!(codec::devices::fully_consumed(";;", "NVIDIA"));
}

#[test]
fn lock_handshake_phase_scores_mig() {
    let v = "2026-08-21T06:20:39Z,default,gpu-pod";
    let l = NodeLock::decode(keys::NODE_LOCK, v).unwrap();
    assert_eq!(
        l,
        NodeLock {
            at: WireTime::utc(1_787_293_239),
            owner: Some(LockOwner {
                namespace: "default".into(),
                name: "gpu-pod".into()
            })
        }
    );
    assert_eq!(l.encode(), v);
    let legacy = NodeLock::decode(keys::NODE_LOCK, "2024-01-02T03:04:05+08:00").unwrap();
    assert_eq!(legacy.owner, None);
    assert_eq!(legacy.encode(), "2024-01-02T03:04:05+08:00");

    let h = Handshake::decode("hami.io/node-handshake", "Requesting_2026-08-21 06:20:09").unwrap();
    assert_eq!(
        h,
        Handshake::Requesting {
            wall_seconds: 1_787_293_209
        }
    );
    assert_eq!(h.encode(), "Requesting_2026-08-21 06:20:09");
    let r = "Reported 2024-05-06 07:08:09.123456789 +0800 CST m=+1.5";
    assert_eq!(Handshake::decode("k", r).unwrap().encode(), r);
    assert_eq!(
        Handshake::decode("k", "Deleted_2024-05-06 07:08:09")
            .unwrap()
            .encode(),
        "Deleted_2024-05-06 07:08:09"
    );

    for p in [BindPhase::Allocating, BindPhase::Success, BindPhase::Failed] {
        assert_eq!(BindPhase::decode(keys::BIND_PHASE, p.as_str()), Ok(p));
    }

    // pkg/device/nvidia tests: topology scores.
    let s = r#"[{"uuid":"GPU-0","score":{"GPU-1":100}},{"uuid":"GPU-1","score":{"GPU-0":100}}]"#;
    let d = codec::decode_pair_scores(keys::NODE_NVIDIA_SCORE, s).unwrap();
    assert_eq!(d[0].scores.get("GPU-1"), Some(&100));
    assert_eq!(codec::encode_pair_scores(&d), s);
    let unsorted = DevicePairScore {
        uuid: "GPU-a".into(),
        scores: BTreeMap::from([("GPU-c".into(), 10), ("GPU-b".into(), 200)]),
    };
    assert_eq!(
        codec::encode_pair_scores(&[unsorted]),
        r#"[{"uuid":"GPU-a","score":{"GPU-b":200,"GPU-c":10}}]"#
    );

    let m = vec![
        MigAllocation {
            container_index: 0,
            device_index: 0,
            gpu_uuid: "GPU-0".into(),
            profile: "1g.10gb".into(),
            placement: MigPlacement { start: 6, size: 1 },
            ..Default::default()
        },
        MigAllocation {
            container_index: 1,
            device_index: 0,
            gpu_uuid: "GPU-0".into(),
            profile: "3g.40gb".into(),
            placement: MigPlacement { start: 0, size: 4 },
            mig_uuid: "MIG-1".into(),
            gpu_instance_id: Some(2),
            compute_instance_id: Some(0),
        },
    ];
    let enc = codec::encode_mig_allocations(&m);
    assert_eq!(
        enc,
        r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-0","profile":"1g.10gb","placement":{"start":6,"size":1}},{"containerIndex":1,"deviceIndex":0,"gpuUUID":"GPU-0","profile":"3g.40gb","placement":{"start":0,"size":4},"migUUID":"MIG-1","gpuInstanceID":2,"computeInstanceID":0}]"#
    );
    assert_eq!(
        codec::decode_mig_allocations(keys::MIG_ALLOCATIONS, &enc).unwrap(),
        m
    );
    assert_eq!(codec::encode_mig_allocations(&[]), "[]");
}

/// Every malformed value gives a `CodecError` naming key, segment, raw text and expectation.
#[test]
fn malformed_values_snapshot() {
    let mut out = String::new();
    let mut line = |r: Result<String, codec::CodecError>| {
        out.push_str(&match r {
            Ok(v) => format!("unexpected ok: {v}\n"),
            Err(e) => format!("{e}\n"),
        });
    };
    let dbg = |x: &dyn std::fmt::Debug| format!("{x:?}");
    line(codec::decode_pod_devices(DEVS, "GPU-a,NVIDIA,1000:;").map(|x| dbg(&x)));
    line(
        codec::decode_pod_devices(DEVS, ";GPU-a,NVIDIA,1000,10:GPU-b,NVIDIA,lots,10:;")
            .map(|x| dbg(&x)),
    );
    line(codec::decode_pod_devices(DEVS, "GPU-a,NVIDIA,1000,99999999999:;").map(|x| dbg(&x)));
    line(codec::decode_pod_devices(DEVS, "GPU-a:;").map(|x| dbg(&x)));
    line(
        codec::decode_legacy_register("hami.io/node-dcu-register", "no separator").map(|x| dbg(&x)),
    );
    line(
        codec::decode_legacy_register("hami.io/node-dcu-register", "a,1,2,3,t,0,true,1:")
            .map(|x| dbg(&x)),
    );
    line(
        codec::decode_legacy_register("hami.io/node-dcu-register", "a,1,2,3,t,0,yes:")
            .map(|x| dbg(&x)),
    );
    line(
        codec::decode_legacy_register(
            "hami.io/node-dcu-register",
            "a,1,2,3,t,0,true,-1,hami-core:",
        )
        .map(|x| dbg(&x)),
    );
    line(codec::decode_register_json(REG, r#"[{"id":"GPU-0","count":"10"}]"#).map(|x| dbg(&x)));
    line(
        codec::decode_register_json(REG, r#"[{"id":"GPU-0"},{"devmem":3000000000}]"#)
            .map(|x| dbg(&x)),
    );
    line(codec::decode_register_json(REG, r#"[{"id":"GPU-0","health":true"#).map(|x| dbg(&x)));
    line(codec::decode_register_json(REG, r#"{"id":"GPU-0"}"#).map(|x| dbg(&x)));
    line(
        codec::decode_register_json(REG, r#"[{"migProfiles":[{"placements":[{"start":-1}]}]}]"#)
            .map(|x| dbg(&x)),
    );
    line(NodeLock::decode(keys::NODE_LOCK, "2026-08-21T06:20:39Z,default").map(|x| dbg(&x)));
    line(NodeLock::decode(keys::NODE_LOCK, "yesterday,default,pod").map(|x| dbg(&x)));
    line(
        Handshake::decode("hami.io/node-handshake", "Requesting_2026-13-01 00:00:00")
            .map(|x| dbg(&x)),
    );
    line(Handshake::decode("hami.io/node-handshake", "hello").map(|x| dbg(&x)));
    line(BindPhase::decode(keys::BIND_PHASE, "Success").map(|x| dbg(&x)));
    line(
        codec::decode_pair_scores(
            keys::NODE_NVIDIA_SCORE,
            r#"[{"uuid":"a","score":{"b":"high"}}]"#,
        )
        .map(|x| dbg(&x)),
    );
    line(
        codec::decode_mig_allocations(keys::MIG_ALLOCATIONS, r#"[{"gpuInstanceID":-2}]"#)
            .map(|x| dbg(&x)),
    );
    insta::assert_snapshot!(out);
}
