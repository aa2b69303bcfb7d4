//! Pure rendering for `hami inspect`: decode every HAMi annotation of a node or pod and print it
//! as plain-text tables.
//!
//! How to call it: collect `metadata.annotations` of the Kubernetes object into a
//! `BTreeMap<String, String>`, pick [`ObjectKind::Node`], [`ObjectKind::Pod`] or
//! [`ObjectKind::Auto`] (from the object's `kind`, or let the keys decide), and call
//! [`inspect_annotations`]. `Ok` is the full report; `Err` carries every decoding error (each names
//! the annotation key and the segment) together with the report of everything that did decode,
//! so a CLI can print both and exit non-zero. No I/O happens here.

use crate::codec::{self, BindPhase, CodecError, Handshake, NodeLock, RegisteredDevice, keys};
use crate::family::{FamilyId, RegisterFormat};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Which kind of object the annotations belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A Node: registrations, handshakes, node lock, topology scores.
    Node,
    /// A Pod: device lists, assigned node, bind phase, MIG allocations.
    Pod,
    /// Decide from the keys: a pod if any pod-only HAMi key is present, else a node.
    Auto,
}

/// Some annotations did not decode.
///
/// Contract: `errors` is non-empty, in key order; `report` is the rendering of everything else.
/// Display prints one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_errors(errors))]
pub struct InspectError {
    /// Every decoding error, each naming its annotation key and segment.
    pub errors: Vec<CodecError>,
    /// The report of the annotations that did decode.
    pub report: String,
}

fn render_errors(errors: &[CodecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Decode and render every known HAMi annotation of one object.
///
/// Contract: deterministic text (families in table order, keys sorted); unknown `hami.io/*` keys
/// are listed as "not decoded"; vendor-format registrations (MetaX, Enflame) are listed as not
/// decoded; non-HAMi keys are ignored. Never panics.
pub fn inspect_annotations(
    kind: ObjectKind,
    annotations: &BTreeMap<String, String>,
) -> Result<String, InspectError> {
    let kind = match kind {
        ObjectKind::Auto if is_pod(annotations) => ObjectKind::Pod,
        ObjectKind::Auto => ObjectKind::Node,
        k => k,
    };
    let mut r = Report::default();
    match kind {
        ObjectKind::Pod => pod(annotations, &mut r),
        _ => node(annotations, &mut r),
    }
    let undecoded: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with("hami.io/") && !r.known.contains(k.as_str()))
        .collect();
    if !undecoded.is_empty() {
        let _ = writeln!(r.out, "\nnot decoded:");
        for k in undecoded {
            let _ = writeln!(r.out, "  {k}");
        }
    }
    if r.errors.is_empty() {
        Ok(r.out)
    } else {
        let _ = writeln!(r.out, "\nerrors: {}", r.errors.len());
        Err(InspectError {
            errors: r.errors,
            report: r.out,
        })
    }
}

#[derive(Default)]
struct Report {
    out: String,
    errors: Vec<CodecError>,
    known: BTreeSet<String>,
}

impl Report {
    /// Mark a key as understood and fetch its value.
    fn take<'a>(&mut self, a: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
        self.known.insert(key.to_string());
        a.get(key).map(String::as_str)
    }
}

fn is_pod(a: &BTreeMap<String, String>) -> bool {
    let pod_keys = [
        keys::VGPU_NODE,
        keys::VGPU_TIME,
        keys::BIND_PHASE,
        keys::BIND_TIME,
        keys::MIG_ALLOCATIONS,
    ];
    pod_keys.iter().any(|k| a.contains_key(*k))
        || FamilyId::all().any(|f| {
            f.spec()
                .device_list_annotations()
                .any(|k| a.contains_key(k))
        })
}

fn node(a: &BTreeMap<String, String>, r: &mut Report) {
    let _ = writeln!(r.out, "node");
    let mut rows = Vec::new();
    for f in FamilyId::all() {
        let spec = f.spec();
        let Some(key) = spec.register() else {
            continue;
        };
        let Some(value) = r.take(a, key) else {
            continue;
        };
        let decoded = match spec.register_format {
            RegisterFormat::Json => codec::decode_register_json(key, value),
            RegisterFormat::LegacyText => codec::decode_legacy_register(key, value),
            RegisterFormat::MetaxJson => codec::decode_metax_sdevices(key, value),
            RegisterFormat::NodeCapacity(_) | RegisterFormat::VendorJson => {
                r.known.remove(key);
                continue;
            }
        };
        match decoded {
            Ok(devs) => rows.extend(devs.iter().map(|d| device_row(spec.name, d))),
            Err(e) => r.errors.push(e),
        }
    }
    let _ = writeln!(r.out, "\ndevices:");
    if rows.is_empty() {
        let _ = writeln!(r.out, "  (none registered)");
    } else {
        table(
            &mut r.out,
            &[
                "FAMILY", "INDEX", "UUID", "TYPE", "COUNT", "MEM(MiB)", "CORES", "NUMA", "MODE",
                "HEALTH",
            ],
            &rows,
        );
        for (f, d) in FamilyId::all().flat_map(|f| {
            let key = f.spec().register();
            key.and_then(|k| a.get(k)).map(|v| (f, v))
        }) {
            // MIG profiles are a per-device sub-table; only NVIDIA writes them.
            if f.spec().register_format != RegisterFormat::Json {
                continue;
            }
            let Ok(devs) = codec::decode_register_json("", d) else {
                continue;
            };
            for dev in devs.iter().filter(|d| !d.mig_profiles.is_empty()) {
                let _ = writeln!(r.out, "\nMIG profiles of {}:", dev.id);
                let rows: Vec<Vec<String>> = dev
                    .mig_profiles
                    .iter()
                    .map(|p| {
                        let placements = p
                            .placements
                            .iter()
                            .flatten()
                            .map(|x| format!("{}+{}", x.start, x.size))
                            .collect::<Vec<_>>()
                            .join(" ");
                        vec![
                            p.name.clone(),
                            p.memory_mb.to_string(),
                            p.core.to_string(),
                            p.slice_count.to_string(),
                            placements,
                        ]
                    })
                    .collect();
                table(
                    &mut r.out,
                    &["PROFILE", "MEM(MiB)", "CORES", "SLICES", "PLACEMENTS"],
                    &rows,
                );
            }
        }
    }
    // Handshakes, one per family that has one.
    let mut hs = Vec::new();
    let mut seen = BTreeSet::new();
    for f in FamilyId::all() {
        let Some(key) = f.spec().handshake_annotation else {
            continue;
        };
        if !seen.insert(key) {
            continue;
        }
        if let Some(v) = r.take(a, key) {
            match Handshake::decode(key, v) {
                Ok(h) => hs.push(vec![key.to_string(), describe_handshake(&h)]),
                Err(e) => r.errors.push(e),
            }
        }
    }
    if !hs.is_empty() {
        let _ = writeln!(r.out, "\nhandshake:");
        table(&mut r.out, &["KEY", "STATE"], &hs);
    }
    if let Some(v) = r.take(a, keys::NODE_LOCK) {
        match NodeLock::decode(keys::NODE_LOCK, v) {
            Ok(l) => {
                let who = l
                    .owner
                    .map_or("unknown pod (legacy value)".to_string(), |o| {
                        format!("{}/{}", o.namespace, o.name)
                    });
                let _ = writeln!(
                    r.out,
                    "\nnode lock: held for {who} since {}",
                    l.at.to_rfc3339()
                );
            }
            Err(e) => r.errors.push(e),
        }
    } else {
        let _ = writeln!(r.out, "\nnode lock: free");
    }
    if let Some(v) = r.take(a, keys::DEVICE_CORDON) {
        let _ = writeln!(r.out, "cordoned devices: {v}");
    }
    if let Some(v) = r.take(a, keys::NODE_NVIDIA_SCORE) {
        match codec::decode_pair_scores(keys::NODE_NVIDIA_SCORE, v) {
            Ok(scores) => {
                let rows: Vec<Vec<String>> = scores
                    .iter()
                    .flat_map(|s| {
                        s.scores
                            .iter()
                            .map(|(peer, n)| vec![s.uuid.clone(), peer.clone(), n.to_string()])
                    })
                    .collect();
                let _ = writeln!(r.out, "\ntopology scores:");
                table(&mut r.out, &["DEVICE", "PEER", "SCORE"], &rows);
            }
            Err(e) => r.errors.push(e),
        }
    }
}

fn device_row(family: &str, d: &RegisteredDevice) -> Vec<String> {
    vec![
        family.to_string(),
        d.index.to_string(),
        d.id.clone(),
        d.device_type.clone(),
        d.count.to_string(),
        d.devmem.to_string(),
        d.devcore.to_string(),
        d.numa.to_string(),
        if d.mode.is_empty() {
            "-".to_string()
        } else {
            d.mode.clone()
        },
        if d.health { "healthy" } else { "unhealthy" }.to_string(),
    ]
}

fn describe_handshake(h: &Handshake) -> String {
    match h {
        Handshake::Requesting { wall_seconds } => format!(
            "requesting since {} (scheduler wall clock)",
            codec::time::format_datetime(*wall_seconds)
        ),
        Handshake::Reported { text } => format!("reported at {text}"),
        Handshake::Deleted { rest } => format!("deleted{rest}"),
    }
}

fn pod(a: &BTreeMap<String, String>, r: &mut Report) {
    let _ = writeln!(r.out, "pod");
    let mut facts = Vec::new();
    for (key, label) in [
        (keys::VGPU_NODE, "node"),
        (keys::VGPU_TIME, "assigned at (unix s)"),
        (keys::BIND_PHASE, "bind phase"),
        (keys::BIND_TIME, "bind time (unix s)"),
        (keys::NODE_SCHEDULER_POLICY, "node policy"),
        (keys::GPU_SCHEDULER_POLICY, "device policy"),
        (keys::DEVICE_SCORING_WEIGHTS, "scoring weights"),
    ] {
        let Some(v) = r.take(a, key) else {
            continue;
        };
        if key == keys::BIND_PHASE
            && let Err(e) = BindPhase::decode(key, v)
        {
            r.errors.push(e);
            continue;
        }
        facts.push(vec![label.to_string(), v.to_string()]);
    }
    if !facts.is_empty() {
        let _ = writeln!(r.out);
        table(&mut r.out, &["FIELD", "VALUE"], &facts);
    }
    let mut rows = Vec::new();
    for f in FamilyId::all() {
        let spec = f.spec();
        for (which, key) in [
            ("to-allocate", spec.to_allocate()),
            ("allocated", Some(spec.allocated_annotation)),
        ] {
            let Some(key) = key else {
                continue;
            };
            let Some(v) = r.take(a, key) else {
                continue;
            };
            match codec::decode_pod_devices(key, v) {
                Ok(pd) => {
                    for (ci, c) in pd.iter().enumerate() {
                        if c.is_empty() {
                            rows.push(vec![
                                spec.name.to_string(),
                                which.to_string(),
                                ci.to_string(),
                                "-".into(),
                                "-".into(),
                                "-".into(),
                                "-".into(),
                                "-".into(),
                            ]);
                        }
                        for (di, d) in c.iter().enumerate() {
                            rows.push(vec![
                                spec.name.to_string(),
                                which.to_string(),
                                ci.to_string(),
                                di.to_string(),
                                d.uuid.clone(),
                                d.type_keyword.clone(),
                                d.usedmem.to_string(),
                                d.usedcores.to_string(),
                            ]);
                        }
                    }
                }
                Err(e) => r.errors.push(e),
            }
        }
    }
    let _ = writeln!(r.out, "\ndevices:");
    if rows.is_empty() {
        let _ = writeln!(r.out, "  (none allocated)");
    } else {
        table(
            &mut r.out,
            &[
                "FAMILY",
                "LIST",
                "CONTAINER",
                "DEVICE",
                "UUID",
                "TYPE",
                "MEM(MiB)",
                "CORES",
            ],
            &rows,
        );
    }
    if let Some(v) = r.take(a, keys::MIG_ALLOCATIONS) {
        match codec::decode_mig_allocations(keys::MIG_ALLOCATIONS, v) {
            Ok(m) => {
                let rows: Vec<Vec<String>> = m
                    .iter()
                    .map(|x| {
                        vec![
                            x.container_index.to_string(),
                            x.device_index.to_string(),
                            x.gpu_uuid.clone(),
                            x.profile.clone(),
                            format!("{}+{}", x.placement.start, x.placement.size),
                            if x.mig_uuid.is_empty() {
                                "-".into()
                            } else {
                                x.mig_uuid.clone()
                            },
                        ]
                    })
                    .collect();
                let _ = writeln!(r.out, "\nMIG allocations:");
                table(
                    &mut r.out,
                    &[
                        "CONTAINER",
                        "DEVICE",
                        "GPU",
                        "PROFILE",
                        "PLACEMENT",
                        "MIG UUID",
                    ],
                    &rows,
                );
            }
            Err(e) => r.errors.push(e),
        }
    }
}

/// Left-aligned columns separated by two spaces, indented by two; no trailing spaces.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(" ");
        for (i, c) in cells.enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            let _ = write!(s, " {c:<w$} ");
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}
