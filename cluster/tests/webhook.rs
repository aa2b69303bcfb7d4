//! The webhook over real HTTP with a recorded kube-apiserver AdmissionReview.

mod common;

use base64::Engine;
use common::{fixture, post, start};
use serde_json::Value;

fn review_with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("admission_gpu_pod.json")).expect("fixture");
    edit(&mut v);
    v.to_string().into_bytes()
}

fn response(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["response"].clone()
}

#[tokio::test]
async fn gpu_pod_is_routed_and_patched() {
    let h = start(&[]).await;
    let (status, body) = post(h.addr, "/webhook", fixture("admission_gpu_pod.json")).await;
    assert_eq!(status, 200, "{body}");
    let full: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(full["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(full["kind"], "AdmissionReview");
    let r = response(&body);
    assert_eq!(r["uid"], "0c7a3a4e-6b1f-4f0e-9a55-1c8e1b0d2f7a");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let b64 = r["patch"].as_str().expect("patch is a base64 string");
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("patch JSON");
    insta::assert_json_snapshot!("webhook_gpu_pod_patch", patch);
}

#[tokio::test]
async fn pod_without_managed_resources_is_allowed_unchanged() {
    let h = start(&[]).await;
    let body = review_with(|v| {
        v["request"]["object"]["spec"]["containers"][0]["resources"] =
            serde_json::json!({"limits": {"cpu": "1"}});
    });
    let (status, body) = post(h.addr, "/webhook", body).await;
    assert_eq!(status, 200);
    let r = response(&body);
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none(), "{body}");
}

#[tokio::test]
async fn validations_deny_with_hami_messages() {
    let h = start(&[]).await;
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "privileged",
            Box::new(|v: &mut Value| {
                v["request"]["object"]["spec"]["containers"][1]["securityContext"] =
                    serde_json::json!({"privileged": true});
            }),
            "container sidecar is privileged",
        ),
        (
            "node name preset",
            Box::new(|v: &mut Value| {
                v["request"]["object"]["spec"]["nodeName"] = "gpu-node-a".into();
            }),
            "pod has node assigned",
        ),
        (
            "percentage out of range",
            Box::new(|v: &mut Value| {
                let c = &mut v["request"]["object"]["spec"]["containers"][0]["resources"];
                c["limits"]["nvidia.com/gpumem-percentage"] = "150".into();
                c["requests"]["nvidia.com/gpumem-percentage"] = "150".into();
            }),
            "percentage must be 0..=100",
        ),
        (
            "cores over 100",
            Box::new(|v: &mut Value| {
                let c = &mut v["request"]["object"]["spec"]["containers"][0]["resources"];
                c["limits"]["nvidia.com/gpucores"] = "120".into();
                c["requests"]["nvidia.com/gpucores"] = "120".into();
            }),
            "must be 0..=100",
        ),
    ];
    for (name, edit, want) in cases {
        let (status, body) = post(h.addr, "/webhook", review_with(edit)).await;
        assert_eq!(status, 200, "{name}");
        let r = response(&body);
        assert_eq!(r["allowed"], false, "{name}: {body}");
        let msg = r["status"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{name}: {msg}");
    }
}

#[tokio::test]
async fn other_schedulers_and_operations_are_left_alone() {
    let h = start(&[]).await;
    for edit in [
        Box::new(|v: &mut Value| {
            v["request"]["object"]["spec"]["schedulerName"] = "volcano".into();
        }) as Box<dyn FnOnce(&mut Value)>,
        Box::new(|v: &mut Value| {
            v["request"]["operation"] = "UPDATE".into();
        }),
    ] {
        let (_, body) = post(h.addr, "/webhook", review_with(edit)).await;
        let r = response(&body);
        assert_eq!(r["allowed"], true);
        assert!(r.get("patch").is_none(), "{body}");
    }
}

#[tokio::test]
async fn malformed_reviews_get_proper_errors() {
    let h = start(&[]).await;
    let (status, body) = post(h.addr, "/webhook", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("malformed AdmissionReview JSON"), "{body}");
    // Readable uid, unreadable object: a review that denies with the reason.
    let bad = review_with(|v| {
        v["request"]["object"]["spec"]["containers"] = "oops".into();
    });
    let (status, body) = post(h.addr, "/webhook", bad).await;
    assert_eq!(status, 200);
    let r = response(&body);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["uid"], "0c7a3a4e-6b1f-4f0e-9a55-1c8e1b0d2f7a");
    assert_eq!(r["status"]["code"], 400);
    let (status, _) = post(
        h.addr,
        "/webhook",
        b"{\"kind\":\"AdmissionReview\"}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
}
