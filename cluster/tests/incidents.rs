//! HAMi's five Allocate incidents, replayed against our device plugin (the real `Service`, with an
//! in-memory API server) and the pure decision. kubelet is modelled by the test: it knows which
//! pod it is admitting; the plugin does not. A "wrong assignment" is a response that hands the
//! admitted container any other container's cards or limits. Every scenario asserts there are
//! none: the plugin serves the right container, or refuses.

use hami_cluster::allocate::source::FakeSource;
use hami_cluster::allocate::testing::{Grant, PodBuilder, TO_ALLOCATE};
use hami_cluster::allocate::{Candidate, bind_conflict};
use hami_cluster::deviceplugin::api::device_plugin_server::DevicePlugin;
use hami_cluster::deviceplugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest,
    PreferredAllocationRequest,
};
use hami_cluster::deviceplugin::{Card, CardsHandle, PluginConfig, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tonic::Request;

const NODE: &str = "gpu-node";

fn card(i: usize) -> String {
    format!("GPU-{i:08x}-0000-4000-8000-00000000000{i}")
}

/// Per pod, per container: (card, MiB, cores).
type Grants = BTreeMap<String, Vec<Vec<(String, i32, i32)>>>;

struct Harness {
    source: FakeSource,
    svc: Service<FakeSource>,
    _cards: CardsHandle,
    /// Every pod's grant per container, as the scheduler wrote it (the ground truth).
    grants: Grants,
}

fn harness(n_cards: usize) -> Harness {
    let source = FakeSource::new();
    source.put_node(NODE, BTreeMap::new());
    let cards: Vec<Card> = (0..n_cards)
        .map(|i| Card {
            uuid: card(i),
            numa: None,
            healthy: true,
        })
        .collect();
    let (h, rx) = CardsHandle::new(cards);
    let mut cfg = PluginConfig::new(NODE);
    cfg.allocate_wait = Duration::from_millis(150);
    cfg.retry_interval = Duration::from_millis(10);
    cfg.create_container_dirs = false;
    Harness {
        svc: Service::new(cfg, Arc::new(source.clone()), rx),
        source,
        _cards: h,
        grants: BTreeMap::new(),
    }
}

/// What kubelet saw for one container.
#[derive(Debug)]
enum Outcome {
    Served,
    Refused(String),
}

impl Harness {
    /// The scheduler binds a pod: remember its grant, make it visible.
    fn bind(&mut self, pod: PodBuilder, grants: &[&[Grant<'_>]]) {
        let built = pod.build();
        let name = built.metadata.name.clone().unwrap_or_default();
        self.grants.insert(
            name,
            grants
                .iter()
                .map(|c| c.iter().map(|(u, m, k)| (u.to_string(), *m, *k)).collect())
                .collect(),
        );
        self.source.put_pod(built);
    }

    async fn preferred(&self, size: usize) -> Vec<String> {
        let available: Vec<String> = (0..8)
            .flat_map(|i| (0..10).map(move |n| format!("{}-{n}", card(i))))
            .collect();
        let r = self
            .svc
            .get_preferred_allocation(Request::new(PreferredAllocationRequest {
                container_requests: vec![ContainerPreferredAllocationRequest {
                    available_device_i_ds: available,
                    must_include_device_i_ds: vec![],
                    allocation_size: i32::try_from(size).unwrap_or(0),
                }],
            }))
            .await
            .expect("preferred")
            .into_inner();
        r.container_responses[0].device_i_ds.clone()
    }

    /// kubelet admits container `k` of `pod` with these replica IDs. Asserts that a served
    /// response carries exactly that container's grant (no wrong assignment).
    async fn kubelet_allocates(&self, pod: &str, k: usize, ids: Vec<String>) -> Outcome {
        let r = self
            .svc
            .allocate(Request::new(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest { devices_ids: ids }],
            }))
            .await;
        match r {
            Err(e) => Outcome::Refused(e.message().to_string()),
            Ok(resp) => {
                let resp = resp.into_inner();
                let env = &resp.container_responses[0].envs;
                let want = &self.grants[pod][k];
                let uuids: Vec<&str> = want.iter().map(|(u, _, _)| u.as_str()).collect();
                assert_eq!(
                    env["NVIDIA_VISIBLE_DEVICES"],
                    uuids.join(","),
                    "WRONG ASSIGNMENT: {pod}[{k}] got another container's cards"
                );
                for (i, (_, mem, _)) in want.iter().enumerate() {
                    assert_eq!(
                        env[&format!("CUDA_DEVICE_MEMORY_LIMIT_{i}")],
                        format!("{mem}m"),
                        "WRONG ASSIGNMENT: {pod}[{k}] got another container's memory limit"
                    );
                }
                assert_eq!(env["CUDA_DEVICE_SM_LIMIT"], want[0].2.to_string());
                // And the consumed segment is this pod's, not someone else's.
                let ann = self.source.pod_annotations("default", pod);
                let seg = ann[TO_ALLOCATE]
                    .split(';')
                    .nth(k)
                    .unwrap_or("x")
                    .to_string();
                assert_eq!(seg, "", "{pod}[{k}] segment not consumed");
                Outcome::Served
            }
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        ["a", "b", "c", "r", "n"]
            .iter()
            .filter_map(|p| self.source.pod("default", p))
            .map(|p| Candidate::from_pod(&p, TO_ALLOCATE))
            .collect()
    }

    fn set_lock(&self, pod: &str) {
        self.source.put_node(
            NODE,
            [(
                "hami.io/mutex.lock".to_string(),
                format!("2026-09-21T06:20:39Z,default,{pod}"),
            )]
            .into_iter()
            .collect(),
        );
    }
}

fn assert_refused(o: &Outcome, text: &str) {
    match o {
        Outcome::Refused(m) => assert!(m.contains(text), "refusal {m:?} lacks {text:?}"),
        Outcome::Served => panic!("expected a refusal containing {text:?}"),
    }
}

/// HAMi #3096: the lock of pod a expired and was handed to pod b while a still waited for
/// Allocate; a's Allocate read the lock and got b's limits (1000 vs 3000 MiB swapped).
#[tokio::test]
async fn incident_3096_expired_lock_handed_over() {
    let mut h = harness(2);
    let (c0, c1) = (card(0), card(1));
    h.bind(
        PodBuilder::new("a", NODE).container("main", &[(&c0, 1000, 0)]),
        &[&[(&c0, 1000, 0)]],
    );
    // Our scheduler would not bind b now: it is indistinguishable from a.
    let why = bind_conflict(NODE, "default/b", &[1], &h.candidates(), &BTreeSet::new());
    assert!(why.is_some_and(|w| w.contains("default/a")));
    // HAMi's scheduler does bind it (lock expired and handed over to b).
    h.bind(
        PodBuilder::new("b", NODE)
            .container("main", &[(&c1, 3000, 0)])
            .bind_time(1_700_000_300),
        &[&[(&c1, 3000, 0)]],
    );
    h.set_lock("b");
    // kubelet admits a. The lock names b; HAMi would serve b's annotation. We refuse.
    let pref = h.preferred(1).await;
    let o = h.kubelet_allocates("a", 0, pref).await;
    assert_refused(&o, "ambiguous");
    // kubelet fails a (UnexpectedAdmissionError); its phase becomes Failed. b is admitted next.
    h.source.put_pod(
        PodBuilder::new("a", NODE)
            .container("main", &[(&c0, 1000, 0)])
            .phase("Failed")
            .build(),
    );
    let pref = h.preferred(1).await;
    assert_eq!(pref, vec![format!("{c1}-0")]);
    assert!(matches!(
        h.kubelet_allocates("b", 0, pref).await,
        Outcome::Served
    ));
    // With our scheduler's rule the same two pods go through in order, both served right.
    let mut h = harness(2);
    h.bind(
        PodBuilder::new("a", NODE).container("main", &[(&c0, 1000, 0)]),
        &[&[(&c0, 1000, 0)]],
    );
    h.set_lock("a");
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("a", 0, pref).await,
        Outcome::Served
    ));
    assert!(
        !h.source
            .node(NODE)
            .unwrap_or_default()
            .contains_key("hami.io/mutex.lock")
    );
    assert!(bind_conflict(NODE, "default/b", &[1], &h.candidates(), &BTreeSet::new()).is_none());
    h.bind(
        PodBuilder::new("b", NODE).container("main", &[(&c1, 3000, 0)]),
        &[&[(&c1, 3000, 0)]],
    );
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("b", 0, pref).await,
        Outcome::Served
    ));
}

/// HAMi #781 (ascend-device-plugin #15): two pending HAMi pods on one node with different
/// templates (1/2 and 1/8 of a card); "first pending pod" gave both the same template.
#[tokio::test]
async fn incident_781_two_pending_pods() {
    let c0 = card(0);
    // Different shapes (one and two cards): identity by count, both served right, either order.
    let mut h = harness(2);
    let c1 = card(1);
    h.bind(
        PodBuilder::new("a", NODE).container("main", &[(&c0, 32768, 50)]),
        &[&[(&c0, 32768, 50)]],
    );
    h.bind(
        PodBuilder::new("b", NODE).container("main", &[(&c0, 8192, 12), (&c1, 8192, 12)]),
        &[&[(&c0, 8192, 12), (&c1, 8192, 12)]],
    );
    let pref = h.preferred(2).await;
    assert!(matches!(
        h.kubelet_allocates("b", 0, pref).await,
        Outcome::Served
    ));
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("a", 0, pref).await,
        Outcome::Served
    ));
    // Same shape (one card each, 1/2 vs 1/8): both pending at once is refused, never swapped.
    let mut h = harness(1);
    h.bind(
        PodBuilder::new("a", NODE).container("main", &[(&c0, 32768, 50)]),
        &[&[(&c0, 32768, 50)]],
    );
    h.bind(
        PodBuilder::new("b", NODE).container("main", &[(&c0, 8192, 12)]),
        &[&[(&c0, 8192, 12)]],
    );
    for pod in ["b", "a"] {
        let pref = h.preferred(1).await;
        assert_refused(&h.kubelet_allocates(pod, 0, pref).await, "ambiguous");
    }
}

/// HAMi #1741: an 8-GPU pod; without a preferred allocation kubelet picked replicas of only 5
/// cards (4 of one card), and the container's devices disagreed with the grant.
#[tokio::test]
async fn incident_1741_eight_gpus_spread_replicas() {
    let mut h = harness(8);
    let cards: Vec<String> = (0..8).map(card).collect();
    let grant: Vec<Grant<'_>> = cards.iter().map(|c| (c.as_str(), 81559, 100)).collect();
    h.bind(
        PodBuilder::new("a", NODE).container("main", &grant),
        &[&grant],
    );
    // kubelet's own pick, as in the issue: duplicates of card 0 and card 1.
    let spread: Vec<String> = [
        (0, 17),
        (0, 6),
        (0, 2),
        (1, 1),
        (2, 1),
        (0, 3),
        (1, 6),
        (3, 0),
    ]
    .iter()
    .map(|(c, n)| format!("{}-{}", card(*c), n % 10))
    .collect();
    assert_refused(&h.kubelet_allocates("a", 0, spread).await, "two replicas");
    // kubelet fails that pod's admission; the plugin marks it so (HAMi's bind-phase value).
    assert_eq!(
        h.source.pod_annotations("default", "a")["hami.io/bind-phase"],
        "failed"
    );
    // The same pod with our preference (a fresh node): kubelet gets one replica of each granted
    // card, and all 8 are served.
    let mut h = harness(8);
    h.bind(
        PodBuilder::new("a", NODE).container("main", &grant),
        &[&grant],
    );
    let pref = h.preferred(8).await;
    let picked: BTreeSet<String> = pref
        .iter()
        .map(|id| {
            id.rsplit_once('-')
                .map(|(u, _)| u.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(picked, cards.iter().cloned().collect::<BTreeSet<_>>());
    assert!(matches!(
        h.kubelet_allocates("a", 0, pref).await,
        Outcome::Served
    ));
}

/// HAMi #2640: GPU requests only in init containers bypassed the lock; two concurrent pods
/// (1024 MiB/10 % and 2048 MiB/20 %) and both Allocate calls selected pod a.
#[tokio::test]
async fn incident_2640_init_container_only_requests() {
    let c0 = card(0);
    let mut h = harness(1);
    let a = PodBuilder::new("a", NODE)
        .init("setup", &[(&c0, 1024, 10)])
        .container("app", &[]);
    let b = PodBuilder::new("b", NODE)
        .init("setup", &[(&c0, 2048, 20)])
        .container("app", &[]);
    h.bind(a.clone(), &[&[(&c0, 1024, 10)], &[]]);
    h.bind(b.clone(), &[&[(&c0, 2048, 20)], &[]]);
    // Concurrent: never served pod a twice, never a's limits to b — refused.
    for pod in ["a", "b"] {
        let pref = h.preferred(1).await;
        assert_refused(&h.kubelet_allocates(pod, 0, pref).await, "ambiguous");
    }
    // Init-container counts take part in the bind rule, so our scheduler serialises them.
    let mut h = harness(1);
    h.bind(a, &[&[(&c0, 1024, 10)], &[]]);
    assert!(
        bind_conflict(
            NODE,
            "default/b",
            &[1, 0],
            &h.candidates(),
            &BTreeSet::new()
        )
        .is_some()
    );
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("a", 0, pref.clone()).await,
        Outcome::Served
    ));
    // A repeated Allocate for the same replicas (kubelet retry) is not served from a's grant again.
    assert_refused(&h.kubelet_allocates("a", 0, pref).await, "awaits 1 card");
    h.bind(b, &[&[(&c0, 2048, 20)], &[]]);
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("b", 0, pref).await,
        Outcome::Served
    ));
}

/// HAMi #404: a 1024 MiB pod got 30480 MiB because another pod on the node (already served,
/// restarting, still Pending) was picked as "the pending pod".
#[tokio::test]
async fn incident_404_restarting_pod_picked() {
    let c0 = card(0);
    let mut h = harness(1);
    h.bind(
        PodBuilder::new("r", NODE)
            .container("main", &[(&c0, 30480, 0)])
            .bind_time(1_600_000_000),
        &[&[(&c0, 30480, 0)]],
    );
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("r", 0, pref).await,
        Outcome::Served
    ));
    // r restarts: Pending again, bind-phase success, to-allocate consumed.
    assert_eq!(
        h.source.pod_annotations("default", "r")["hami.io/bind-phase"],
        "success"
    );
    h.bind(
        PodBuilder::new("n", NODE).container("main", &[(&c0, 1024, 0)]),
        &[&[(&c0, 1024, 0)]],
    );
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("n", 0, pref).await,
        Outcome::Served
    ));
}

/// Related races: a pod deleted mid-allocation, a stale lock naming a gone pod, a late pod.
#[tokio::test]
async fn deleted_mid_allocation_and_stale_lock() {
    let (c0, c1) = (card(0), card(1));
    let mut h = harness(2);
    h.set_lock("long-gone");
    h.bind(
        PodBuilder::new("a", NODE)
            .container("c0", &[(&c0, 1000, 10)])
            .container("c1", &[(&c1, 1000, 10)]),
        &[&[(&c0, 1000, 10)], &[(&c1, 1000, 10)]],
    );
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("a", 0, pref).await,
        Outcome::Served
    ));
    // a is deleted before its second container; b (one card) is bound and admitted.
    h.source.put_pod(
        PodBuilder::new("a", NODE)
            .container("c0", &[])
            .container("c1", &[(&c1, 1000, 10)])
            .deleting()
            .build(),
    );
    h.bind(
        PodBuilder::new("b", NODE).container("main", &[(&c1, 5000, 50)]),
        &[&[(&c1, 5000, 50)]],
    );
    let pref = h.preferred(1).await;
    assert!(matches!(
        h.kubelet_allocates("b", 0, pref).await,
        Outcome::Served
    ));
    // The stale lock names neither pod: the plugin leaves it to the scheduler.
    assert!(
        h.source
            .node(NODE)
            .unwrap_or_default()
            .contains_key("hami.io/mutex.lock")
    );
    // A pod removed between GetPreferredAllocation and Allocate: wait, then refuse.
    h.bind(
        PodBuilder::new("c", NODE).container("main", &[(&c0, 100, 1)]),
        &[&[(&c0, 100, 1)]],
    );
    let pref = h.preferred(1).await;
    h.source.delete_pod("default", "c");
    assert_refused(&h.kubelet_allocates("c", 0, pref).await, "awaits 1 card");
}
