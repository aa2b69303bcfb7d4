//! Table tests of the pure decision functions.

use super::testing::{PodBuilder, TO_ALLOCATE};
use super::*;

const NODE: &str = "n1";
const A: &str = "GPU-aaaaaaaa-0000-0000-0000-000000000001";
const B: &str = "GPU-bbbbbbbb-0000-0000-0000-000000000002";
const C: &str = "GPU-cccccccc-0000-0000-0000-000000000003";

fn cards() -> BTreeSet<String> {
    [A, B, C].iter().map(|s| s.to_string()).collect()
}

fn cands(pods: Vec<PodBuilder>) -> Vec<Candidate> {
    pods.into_iter()
        .map(|p| Candidate::from_pod(&p.build(), TO_ALLOCATE))
        .collect()
}

fn ids(list: &[(&str, u32)]) -> Vec<String> {
    list.iter().map(|(u, n)| replica_id(u, *n)).collect()
}

/// What the table expects: the pod name and container index, or a wait/refusal containing text.
#[derive(Debug)]
enum Want {
    Serve(&'static str, usize),
    Wait(&'static str),
    Refuse(&'static str),
}

fn check(
    name: &str,
    pods: Vec<PodBuilder>,
    served: &[(&str, usize)],
    req: &[(&str, u32)],
    want: Want,
) {
    let c = cands(pods);
    let served: BTreeSet<(String, usize)> = served
        .iter()
        .map(|(p, i)| (PodBuilder::uid_of(p), *i))
        .collect();
    let got = decide(NODE, &cards(), &c, &served, &ids(req));
    match (&want, &got) {
        (Want::Serve(pod, k), Decision::Allocate(a)) => {
            assert_eq!(
                (c[a.pod].name.as_str(), a.container),
                (*pod, *k),
                "{name}: {got:?}"
            );
        }
        (Want::Wait(text), Decision::Wait(why)) | (Want::Refuse(text), Decision::Refuse(why)) => {
            assert!(why.contains(text), "{name}: reason {why:?} lacks {text:?}");
        }
        _ => panic!("{name}: wanted {want:?}, got {got:?}"),
    }
}

/// One row: name, pods, served memo, kubelet's IDs, expectation.
type Row = (
    &'static str,
    Vec<PodBuilder>,
    Vec<(&'static str, usize)>,
    Vec<(&'static str, u32)>,
    Want,
);

#[test]
fn decision_table() {
    let p = PodBuilder::new;
    let cases: Vec<Row> = vec![
        (
            "single pod, one card",
            vec![p("a", NODE).container("c", &[(A, 1000, 10)])],
            vec![],
            vec![(A, 3)],
            Want::Serve("a", 0),
        ),
        (
            "count tells two in-flight pods apart",
            vec![
                p("a", NODE).container("c", &[(A, 1000, 10)]),
                p("b", NODE).container("c", &[(A, 2000, 20), (B, 2000, 20)]),
            ],
            vec![],
            vec![(B, 0), (A, 7)],
            Want::Serve("b", 0),
        ),
        (
            "same count on two pods is ambiguous: wait, never pick",
            vec![
                p("a", NODE).container("c", &[(A, 1000, 10)]),
                p("b", NODE).container("c", &[(B, 3000, 30)]),
            ],
            vec![],
            vec![(A, 1)],
            Want::Wait("ambiguous"),
        ),
        (
            "no candidate yet: wait for the annotations",
            vec![],
            vec![],
            vec![(A, 1)],
            Want::Wait("awaits 1 card"),
        ),
        (
            "served pods, other nodes, failed phases and deleting pods do not count",
            vec![
                p("done", NODE)
                    .container("c", &[(A, 30480, 0)])
                    .bind_phase(Some("success")),
                p("other", "n2").container("c", &[(A, 1, 1)]),
                p("gone", NODE).container("c", &[(A, 1, 1)]).deleting(),
                p("failed", NODE)
                    .container("c", &[(A, 1, 1)])
                    .phase("Failed"),
                p("nobind", NODE)
                    .container("c", &[(A, 1, 1)])
                    .bind_phase(None),
                p("new", NODE).container("c", &[(A, 1024, 0)]),
            ],
            vec![],
            vec![(A, 0)],
            Want::Serve("new", 0),
        ),
        (
            "containers are served in order; the memo skips a served one",
            vec![
                p("a", NODE)
                    .container("c0", &[(A, 1000, 10)])
                    .container("c1", &[(B, 2000, 20)]),
            ],
            vec![("a", 0)],
            vec![(B, 4)],
            Want::Serve("a", 1),
        ),
        (
            "init containers come first",
            vec![
                p("a", NODE)
                    .init("i0", &[(C, 500, 5)])
                    .container("c0", &[(A, 1000, 10), (B, 1000, 10)]),
            ],
            vec![],
            vec![(C, 2)],
            Want::Serve("a", 0),
        ),
        (
            "containers without GPUs are skipped",
            vec![
                p("a", NODE)
                    .container("side", &[])
                    .container("c", &[(A, 1, 1)]),
            ],
            vec![],
            vec![(A, 9)],
            Want::Serve("a", 1),
        ),
        (
            "kubelet picked other cards than granted: refuse",
            vec![p("a", NODE).container("c", &[(A, 1000, 10)])],
            vec![],
            vec![(B, 0)],
            Want::Refuse("granted cards"),
        ),
        (
            "two replicas of one card: refuse",
            vec![p("a", NODE).container("c", &[(A, 1, 1), (B, 1, 1)])],
            vec![],
            vec![(A, 0), (A, 1)],
            Want::Refuse("two replicas"),
        ),
        (
            "unknown device ID: refuse",
            vec![p("a", NODE).container("c", &[(A, 1, 1)])],
            vec![],
            vec![("GPU-unknown", 0)],
            Want::Refuse("not a replica"),
        ),
    ];
    for (name, pods, served, req, want) in cases {
        check(name, pods, &served, &req, want);
    }
}

#[test]
fn unreadable_annotation_is_refused_not_guessed() {
    let mut pod = PodBuilder::new("a", NODE)
        .container("c", &[(A, 1, 1)])
        .build();
    pod.metadata
        .annotations
        .get_or_insert_default()
        .insert(TO_ALLOCATE.into(), "GPU-x,NVIDIA,notanumber,0:;".into());
    let c = vec![Candidate::from_pod(&pod, TO_ALLOCATE)];
    let got = decide(NODE, &cards(), &c, &BTreeSet::new(), &ids(&[(A, 0)]));
    assert!(
        matches!(got, Decision::Refuse(ref r) if r.contains("unreadable")),
        "{got:?}"
    );
}

#[test]
fn replica_ids_parse_against_known_cards() {
    let mut cards = cards();
    cards.insert(format!("{A}-1"));
    // `<A>-1-3` is replica 3 of the card named `<A>-1`, not a parse of A.
    assert_eq!(
        parse_replica_id(&format!("{A}-1-3"), &cards),
        Some(ReplicaId {
            uuid: format!("{A}-1"),
            replica: 3
        })
    );
    assert_eq!(parse_replica_id("GPU-x-notnum", &cards), None);
    assert_eq!(parse_replica_id("", &cards), None);
}

#[test]
fn preferred_steers_to_the_granted_cards() {
    let c = cands(vec![
        PodBuilder::new("a", NODE).container("c", &[(C, 1, 1), (A, 1, 1)]),
    ]);
    let avail = ids(&[(A, 5), (A, 2), (B, 0), (C, 7), (C, 3)]);
    let got = preferred(NODE, &cards(), &c, &BTreeSet::new(), &avail, &[], 2);
    assert_eq!(got, ids(&[(C, 3), (A, 2)]));
}

#[test]
fn preferred_without_identity_spreads_over_distinct_cards() {
    let c = cands(vec![
        PodBuilder::new("a", NODE).container("c", &[(A, 1, 1)]),
        PodBuilder::new("b", NODE).container("c", &[(B, 1, 1)]),
    ]);
    let avail = ids(&[(A, 0), (A, 1), (A, 2), (B, 0), (C, 0)]);
    let got = preferred(
        NODE,
        &cards(),
        &c,
        &BTreeSet::new(),
        &avail,
        &ids(&[(A, 1)]),
        3,
    );
    assert_eq!(got, ids(&[(A, 1), (B, 0), (C, 0)]));
}

#[test]
fn bind_conflict_only_for_indistinguishable_pods() {
    let inflight = cands(vec![
        PodBuilder::new("a", NODE).container("c", &[(A, 1, 1)]),
        PodBuilder::new("b", NODE).container("c", &[(A, 1, 1), (B, 1, 1)]),
        PodBuilder::new("done", NODE)
            .container("c", &[(C, 1, 1), (A, 1, 1), (B, 1, 1)])
            .bind_phase(Some("success")),
    ]);
    let none = BTreeSet::new();
    assert!(bind_conflict(NODE, "default/x", &[3], &inflight, &none).is_none());
    let why = bind_conflict(NODE, "default/x", &[1], &inflight, &none);
    assert!(
        why.as_deref().is_some_and(|w| w.contains("default/a")),
        "{why:?}"
    );
    assert!(bind_conflict(NODE, "default/x", &[0, 2], &inflight, &none).is_some());
    // Once a's container is served, a pod asking one card may bind.
    let served: BTreeSet<(String, usize)> = [(PodBuilder::uid_of("a"), 0)].into_iter().collect();
    assert!(bind_conflict(NODE, "default/x", &[1], &inflight, &served).is_none());
    // A pod never conflicts with itself.
    assert!(bind_conflict(NODE, "default/a", &[1], &inflight, &none).is_none());
}

#[test]
fn refusal_targets_table() {
    let p = PodBuilder::new;
    let broken = {
        let mut pod = p("broken", NODE).container("c", &[(A, 1, 1)]).build();
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(TO_ALLOCATE.into(), "GPU-x,NVIDIA,notanumber,0:;".into());
        Candidate::from_pod(&pod, TO_ALLOCATE)
    };
    // (name, candidates, served, request size, failed pod names, informed pod names)
    type Case = (
        &'static str,
        Vec<Candidate>,
        Vec<(&'static str, usize)>,
        usize,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "one pod awaits that many cards: it is failed",
            cands(vec![
                p("a", NODE).container("c", &[(A, 1, 1), (B, 1, 1)]),
                p("b", NODE).container("c", &[(C, 1, 1)]),
            ]),
            vec![],
            2,
            vec!["a"],
            vec![],
        ),
        (
            "two pods await it: both informed, none failed",
            cands(vec![
                p("a", NODE).container("c", &[(A, 1, 1)]),
                p("b", NODE).container("c", &[(B, 1, 1)]),
            ]),
            vec![],
            1,
            vec![],
            vec!["a", "b"],
        ),
        (
            "nobody awaits it: nobody to mark",
            cands(vec![p("a", NODE).container("c", &[(A, 1, 1)])]),
            vec![],
            3,
            vec![],
            vec![],
        ),
        (
            "already served container does not count",
            cands(vec![p("a", NODE).container("c", &[(A, 1, 1)])]),
            vec![("a", 0)],
            1,
            vec![],
            vec![],
        ),
        (
            "pods not in flight (success, other node) never touched",
            cands(vec![
                p("done", NODE)
                    .container("c", &[(A, 1, 1)])
                    .bind_phase(Some("success")),
                p("other", "n2").container("c", &[(A, 1, 1)]),
            ]),
            vec![],
            1,
            vec![],
            vec![],
        ),
        (
            "no match but an unreadable annotation: that pod can never be served",
            vec![broken.clone()],
            vec![],
            1,
            vec!["broken"],
            vec![],
        ),
        (
            "a match wins over an unreadable neighbour",
            {
                let mut v = cands(vec![p("a", NODE).container("c", &[(A, 1, 1)])]);
                v.push(broken.clone());
                v
            },
            vec![],
            1,
            vec!["a"],
            vec![],
        ),
    ];
    for (name, c, served, size, failed, informed) in cases {
        let served: BTreeSet<(String, usize)> = served
            .iter()
            .map(|(p, i)| (PodBuilder::uid_of(p), *i))
            .collect();
        let t = refusal_targets(NODE, &c, &served, size);
        let names = |v: &[usize]| -> Vec<String> { v.iter().map(|&i| c[i].name.clone()).collect() };
        assert_eq!(names(&t.failed), failed, "{name}: failed");
        assert_eq!(names(&t.informed), informed, "{name}: informed");
    }
}
