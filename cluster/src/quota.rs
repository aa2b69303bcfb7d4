//! HAMi's ResourceQuota extension on the scheduler side: `ResourceQuota` objects whose
//! `spec.hard` names `limits.<memory resource>` or `limits.<core resource>` of a managed device
//! family (`limits.nvidia.com/gpumem`, `limits.cambricon.com/mlu.smlu.vmemory`,
//! `limits.huawei.com/Ascend910B3-core`, …) limit what a namespace may be granted of that
//! family, counted per card actually granted (a `gpumem-percentage` request counts the MiB it
//! resolved to).
//!
//! The rules follow HAMi's `QuotaManager` (pkg/device/quota.go), which keys limits by resource
//! name, i.e. per family:
//! * only keys with the `limits.` prefix count, and only for the memory and core resources of a
//!   device family (the count resource `limits.nvidia.com/gpu` is kube-apiserver's business);
//! * scoped quotas (`spec.scopes` or `spec.scopeSelector`) are skipped: usage is tracked per
//!   namespace, so applying a scoped limit would restrict pods outside its scope;
//! * several quota objects in one namespace: the smallest limit per resource wins (HAMi keeps
//!   whichever object it saw last, which depends on watch order);
//! * a memory limit is in units of the family's memory resource, so it is multiplied by the MiB
//!   one unit stands for: `memoryFactor` for NVIDIA (HAMi's `FitQuota`), the vendor's unit for
//!   the others (256 MiB per `cambricon.com/mlu.smlu.vmemory`, HAMi's Cambricon
//!   `MemoryFactor`), exactly as [`hami_core::request::RequestTranslator`] converts requests.
//!
//! Where HAMi silently skips a value that is not a whole number (`AsInt64` fails), this module
//! reports an error naming the quota object and key, and leaves that object out until it is
//! fixed: a quota that silently does nothing is worse than a clear complaint.

use hami_core::config::DeviceConfig;
use hami_core::control::Event;
use hami_core::family::FamilyId;
use hami_core::ledger::{FamilyQuota, Quota};
use k8s_openapi::api::core::v1::ResourceQuota;
use std::collections::BTreeMap;

/// The quota-relevant resources of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FamilyResources {
    family: FamilyId,
    memory: Option<String>,
    cores: Option<String>,
    mib_per_unit: u64,
}

/// Which limit a resource name sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// The family's memory resource (`nvidia.com/gpumem`).
    Memory,
    /// The family's core resource (`nvidia.com/gpucores`).
    Cores,
}

/// The resource names a quota may limit, per family, resolved from the device configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaNames {
    families: Vec<FamilyResources>,
}

impl Default for QuotaNames {
    fn default() -> Self {
        QuotaNames::new(&DeviceConfig::default())
    }
}

impl QuotaNames {
    /// Names from `cfg`: NVIDIA's configured memory and core resources, every other family's
    /// from the family table; MiB per memory unit = the family's unit × `memoryFactor` (the
    /// request translator's conversion, so limits and grants are in the same MiB).
    pub fn new(cfg: &DeviceConfig) -> QuotaNames {
        let factor = u64::from(cfg.nvidia.memory_factor.max(1));
        let families = FamilyId::all()
            .map(|f| {
                let spec = f.spec();
                let (memory, cores) = if f == FamilyId::NVIDIA {
                    (
                        Some(cfg.nvidia.resource_memory_name.clone()),
                        Some(cfg.nvidia.resource_core_name.clone()),
                    )
                } else {
                    (
                        spec.memory_resource.map(str::to_string),
                        spec.cores_resource.map(str::to_string),
                    )
                };
                FamilyResources {
                    family: f,
                    memory: memory.filter(|m| !m.is_empty()),
                    cores: cores.filter(|c| !c.is_empty()),
                    mib_per_unit: spec.memory_unit_mib.max(1).saturating_mul(factor),
                }
            })
            .collect();
        QuotaNames { families }
    }

    /// Use `memory` and `cores` as the NVIDIA family's resource names.
    pub fn set_nvidia(&mut self, memory: &str, cores: &str) {
        if let Some(r) = self
            .families
            .iter_mut()
            .find(|r| r.family == FamilyId::NVIDIA)
        {
            r.memory = (!memory.is_empty()).then(|| memory.to_string());
            r.cores = (!cores.is_empty()).then(|| cores.to_string());
        }
    }

    /// The family and the kind of limit `resource` (without `limits.`) sets, if it is a managed
    /// memory or core resource.
    pub fn lookup(&self, resource: &str) -> Option<(FamilyId, QuotaKind)> {
        self.families.iter().find_map(|r| {
            if r.memory.as_deref() == Some(resource) {
                Some((r.family, QuotaKind::Memory))
            } else if r.cores.as_deref() == Some(resource) {
                Some((r.family, QuotaKind::Cores))
            } else {
                None
            }
        })
    }

    fn of(&self, family: FamilyId) -> Option<&FamilyResources> {
        self.families.iter().find(|r| r.family == family)
    }

    /// The memory resource of `family`, if it has one.
    pub fn memory_resource(&self, family: FamilyId) -> Option<&str> {
        self.of(family).and_then(|r| r.memory.as_deref())
    }

    /// The core resource of `family`, if it has one.
    pub fn cores_resource(&self, family: FamilyId) -> Option<&str> {
        self.of(family).and_then(|r| r.cores.as_deref())
    }

    /// MiB one unit of `family`'s memory resource stands for.
    pub fn mib_per_unit(&self, family: FamilyId) -> u64 {
        self.of(family).map_or(1, |r| r.mib_per_unit)
    }
}

/// A `spec.hard` value that cannot be a device limit, naming the object and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ResourceQuota {namespace}/{name}: spec.hard[\"{key}\"] = {value:?}: {problem}")]
pub struct QuotaError {
    /// Namespace of the quota object.
    pub namespace: String,
    /// Name of the quota object.
    pub name: String,
    /// The `spec.hard` key (`limits.nvidia.com/gpumem`).
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

/// What one quota object limits, after translation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectLimits {
    /// The device limits this object sets, per family (families it does not name: unlimited).
    pub quota: Quota,
    /// Whether the object is scoped and therefore skipped entirely (as HAMi does).
    pub scoped: bool,
}

/// Translate one `ResourceQuota` object into the device limits it sets, per family. Pure.
///
/// Errors name the object and the offending key; keys that are not device limits are ignored.
pub fn object_limits(names: &QuotaNames, rq: &ResourceQuota) -> Result<ObjectLimits, QuotaError> {
    let namespace = rq.metadata.namespace.clone().unwrap_or_default();
    let name = rq.metadata.name.clone().unwrap_or_default();
    let mut out = ObjectLimits::default();
    let Some(spec) = rq.spec.as_ref() else {
        return Ok(out);
    };
    if spec.scopes.as_ref().is_some_and(|s| !s.is_empty()) || spec.scope_selector.is_some() {
        out.scoped = true;
        return Ok(out);
    }
    let Some(hard) = spec.hard.as_ref() else {
        return Ok(out);
    };
    for (key, value) in hard {
        let Some(resource) = key.strip_prefix("limits.") else {
            continue;
        };
        let Some((family, kind)) = names.lookup(resource) else {
            continue;
        };
        let err = |problem: String| QuotaError {
            namespace: namespace.clone(),
            name: name.clone(),
            key: key.clone(),
            value: value.0.clone(),
            problem,
        };
        let n = hami_core::quantity::parse_count(&value.0)
            .map_err(|e| err(format!("not a whole, non-negative number: {e}")))?;
        let mut fq = out.quota.get(family);
        match kind {
            QuotaKind::Memory => {
                let unit = names.mib_per_unit(family);
                let mib = n.checked_mul(unit).ok_or_else(|| {
                    err(format!(
                        "times {unit} MiB per unit of {resource} overflows 64 bits"
                    ))
                })?;
                fq.memory_mib = Some(mib);
            }
            QuotaKind::Cores => fq.cores = Some(n),
        }
        out.quota.set(family, fq);
    }
    Ok(out)
}

/// Every device quota object seen, per namespace; turns watch events into
/// [`Event::QuotaChanged`] with the effective (smallest per resource) limits of the namespace.
#[derive(Debug, Clone, Default)]
pub struct QuotaBook {
    objects: BTreeMap<String, BTreeMap<String, Quota>>,
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl QuotaBook {
    /// An empty book.
    pub fn new() -> QuotaBook {
        QuotaBook::default()
    }

    /// The effective quota of `namespace`: per family and resource the smallest limit of its
    /// objects; `None` when no object limits anything.
    pub fn effective(&self, namespace: &str) -> Option<Quota> {
        let objs = self.objects.get(namespace)?;
        let mut q = Quota::new();
        for o in objs.values() {
            for (f, fq) in o.families() {
                let acc = q.get(f);
                q.set(
                    f,
                    FamilyQuota {
                        memory_mib: min_opt(acc.memory_mib, fq.memory_mib),
                        cores: min_opt(acc.cores, fq.cores),
                    },
                );
            }
        }
        (!q.is_empty()).then_some(q)
    }

    /// Namespaces that have an effective quota, sorted.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.objects.keys().map(String::as_str)
    }

    fn changed(&self, namespace: &str, before: Option<Quota>) -> Option<Event> {
        let after = self.effective(namespace);
        (after != before).then(|| Event::QuotaChanged {
            namespace: namespace.to_string(),
            quota: after,
        })
    }

    /// A quota object appeared or changed. Returns the event to feed the controller when the
    /// namespace's effective quota changed. On error the object is forgotten (as if deleted),
    /// so a broken edit never leaves a stale limit behind, and the error names the object and key.
    pub fn apply(
        &mut self,
        names: &QuotaNames,
        rq: &ResourceQuota,
    ) -> (Option<Event>, Result<ObjectLimits, QuotaError>) {
        let namespace = rq.metadata.namespace.clone().unwrap_or_default();
        let name = rq.metadata.name.clone().unwrap_or_default();
        let before = self.effective(&namespace);
        let res = object_limits(names, rq);
        let objs = self.objects.entry(namespace.clone()).or_default();
        match &res {
            Ok(l) if !l.quota.is_empty() => {
                objs.insert(name, l.quota.clone());
            }
            _ => {
                objs.remove(&name);
            }
        }
        if objs.is_empty() {
            self.objects.remove(&namespace);
        }
        (self.changed(&namespace, before), res)
    }

    /// A quota object was deleted. Returns the event when the effective quota changed.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Event> {
        let before = self.effective(namespace);
        if let Some(objs) = self.objects.get_mut(namespace) {
            objs.remove(name);
            if objs.is_empty() {
                self.objects.remove(namespace);
            }
        }
        self.changed(namespace, before)
    }

    /// Every object the book holds, as `(namespace, name)`, sorted (for re-list reconciliation).
    pub fn objects(&self) -> Vec<(String, String)> {
        self.objects
            .iter()
            .flat_map(|(ns, o)| o.keys().map(move |n| (ns.clone(), n.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceQuotaSpec, ScopeSelector};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn rq(ns: &str, name: &str, hard: &[(&str, &str)]) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(
                    hard.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        }
    }

    fn names(factor: u32) -> QuotaNames {
        let mut cfg = DeviceConfig::default();
        cfg.nvidia.memory_factor = factor;
        QuotaNames::new(&cfg)
    }

    fn fam(name: &str) -> FamilyId {
        FamilyId::by_name(name).unwrap_or_else(|| panic!("no family {name}"))
    }

    /// A quota from `(family name, memory MiB, cores)` rows.
    fn quota(rows: &[(&str, Option<u64>, Option<u64>)]) -> Quota {
        rows.iter().fold(Quota::new(), |q, (f, memory_mib, cores)| {
            q.with(
                fam(f),
                FamilyQuota {
                    memory_mib: *memory_mib,
                    cores: *cores,
                },
            )
        })
    }

    /// Per family: memory MiB and cores a case expects.
    type Limits = &'static [(&'static str, Option<u64>, Option<u64>)];
    /// The namespace and quota a step's event carries.
    type Changed = Option<(&'static str, Option<Quota>)>;

    #[test]
    fn translation_table() {
        struct Case {
            what: &'static str,
            factor: u32,
            hard: &'static [(&'static str, &'static str)],
            want: Result<Limits, &'static str>,
        }
        let cases = [
            Case {
                what: "memory and cores",
                factor: 1,
                hard: &[
                    ("limits.nvidia.com/gpumem", "4096"),
                    ("limits.nvidia.com/gpucores", "200"),
                ],
                want: Ok(&[("nvidia", Some(4096), Some(200))]),
            },
            Case {
                what: "memory in units of memoryFactor",
                factor: 4,
                hard: &[("limits.nvidia.com/gpumem", "1000")],
                want: Ok(&[("nvidia", Some(4000), None)]),
            },
            Case {
                what: "decimal suffix is a whole number",
                factor: 1,
                hard: &[("limits.nvidia.com/gpumem", "8k")],
                want: Ok(&[("nvidia", Some(8000), None)]),
            },
            Case {
                what: "zero blocks everything (explicit limit)",
                factor: 1,
                hard: &[("limits.nvidia.com/gpucores", "0")],
                want: Ok(&[("nvidia", None, Some(0))]),
            },
            Case {
                what: "requests. prefix and plain keys are kube-apiserver's",
                factor: 1,
                hard: &[
                    ("requests.nvidia.com/gpumem", "1"),
                    ("nvidia.com/gpumem", "1"),
                    ("limits.cpu", "1.5"),
                    ("pods", "10"),
                ],
                want: Ok(&[]),
            },
            Case {
                what: "count resource is not a device quota",
                factor: 1,
                hard: &[
                    ("limits.nvidia.com/gpu", "2"),
                    ("limits.cambricon.com/vmlu", "1"),
                ],
                want: Ok(&[]),
            },
            Case {
                what: "Cambricon memory in 256 MiB units",
                factor: 1,
                hard: &[("limits.cambricon.com/mlu.smlu.vmemory", "16")],
                want: Ok(&[("cambricon", Some(4096), None)]),
            },
            Case {
                what: "Ascend 910B3 memory and core, MiB units",
                factor: 1,
                hard: &[
                    ("limits.huawei.com/Ascend910B3-memory", "32768"),
                    ("limits.huawei.com/Ascend910B3-core", "40"),
                ],
                want: Ok(&[("ascend910b3", Some(32768), Some(40))]),
            },
            Case {
                what: "several families in one object, each its own limit",
                factor: 1,
                hard: &[
                    ("limits.hygon.com/dcumem", "1000"),
                    ("limits.nvidia.com/gpumem", "10"),
                    ("limits.metax-tech.com/vcore", "50"),
                ],
                want: Ok(&[
                    ("nvidia", Some(10), None),
                    ("hygon", Some(1000), None),
                    ("metax-sgpu", None, Some(50)),
                ]),
            },
            Case {
                what: "fraction",
                factor: 1,
                hard: &[("limits.nvidia.com/gpumem", "1.5")],
                want: Err(
                    "ResourceQuota team-a/gpu: spec.hard[\"limits.nvidia.com/gpumem\"] = \"1.5\": not a whole",
                ),
            },
            Case {
                what: "milli",
                factor: 1,
                hard: &[("limits.nvidia.com/gpucores", "500m")],
                want: Err("spec.hard[\"limits.nvidia.com/gpucores\"] = \"500m\""),
            },
            Case {
                what: "negative",
                factor: 1,
                hard: &[("limits.nvidia.com/gpucores", "-1")],
                want: Err("\"-1\": not a whole, non-negative number"),
            },
            Case {
                what: "garbage in another family's key",
                factor: 1,
                hard: &[("limits.cambricon.com/mlu.smlu.vcore", "lots")],
                want: Err(
                    "ResourceQuota team-a/gpu: spec.hard[\"limits.cambricon.com/mlu.smlu.vcore\"] = \"lots\"",
                ),
            },
            Case {
                what: "overflow with factor",
                factor: 1024,
                hard: &[("limits.nvidia.com/gpumem", "18446744073709551615")],
                want: Err("times 1024 MiB per unit of nvidia.com/gpumem overflows"),
            },
            Case {
                what: "overflow with a vendor unit",
                factor: 1,
                hard: &[(
                    "limits.cambricon.com/mlu.smlu.vmemory",
                    "18446744073709551615",
                )],
                want: Err("times 256 MiB per unit of cambricon.com/mlu.smlu.vmemory overflows"),
            },
        ];
        for c in cases {
            let got = object_limits(&names(c.factor), &rq("team-a", "gpu", c.hard));
            match (&got, c.want) {
                (Ok(l), Ok(rows)) => {
                    assert_eq!(l.quota, quota(rows), "{}", c.what);
                    assert!(!l.scoped, "{}", c.what);
                }
                (Err(e), Err(text)) => {
                    assert!(e.to_string().contains(text), "{}: {e}", c.what);
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.what),
            }
        }
    }

    #[test]
    fn configured_nvidia_names_replace_the_defaults() {
        let mut cfg = DeviceConfig::default();
        cfg.nvidia.resource_memory_name = "example.com/vram".into();
        let n = QuotaNames::new(&cfg);
        assert_eq!(
            n.lookup("example.com/vram"),
            Some((FamilyId::NVIDIA, QuotaKind::Memory))
        );
        assert_eq!(n.lookup("nvidia.com/gpumem"), None);
        let mut m = QuotaNames::default();
        m.set_nvidia("a/mem", "a/cores");
        assert_eq!(m.memory_resource(FamilyId::NVIDIA), Some("a/mem"));
        assert_eq!(m.cores_resource(FamilyId::NVIDIA), Some("a/cores"));
        assert_eq!(
            m.memory_resource(fam("cambricon")),
            Some("cambricon.com/mlu.smlu.vmemory")
        );
        assert_eq!(m.mib_per_unit(fam("cambricon")), 256);
    }

    #[test]
    fn scoped_quotas_are_skipped() {
        let mut a = rq("ns", "scoped", &[("limits.nvidia.com/gpumem", "1")]);
        if let Some(s) = a.spec.as_mut() {
            s.scopes = Some(vec!["BestEffort".into()]);
        }
        let mut b = rq("ns", "selected", &[("limits.hygon.com/dcumem", "1")]);
        if let Some(s) = b.spec.as_mut() {
            s.scope_selector = Some(ScopeSelector::default());
        }
        let n = names(1);
        let mut book = QuotaBook::new();
        for q in [a, b] {
            let l = object_limits(&n, &q).expect("scoped quota translates");
            assert!(l.scoped);
            assert_eq!(l.quota, Quota::default());
            let (ev, _) = book.apply(&n, &q);
            assert!(ev.is_none());
        }
        assert_eq!(book.effective("ns"), None);
    }

    fn quota_of(ev: Option<Event>) -> Option<(String, Option<Quota>)> {
        match ev {
            Some(Event::QuotaChanged { namespace, quota }) => Some((namespace, quota)),
            _ => None,
        }
    }

    #[test]
    fn book_events_table() {
        enum Op {
            Apply(
                &'static str,
                &'static str,
                &'static [(&'static str, &'static str)],
            ),
            Remove(&'static str, &'static str),
        }
        let steps: Vec<(&str, Op, Changed)> = vec![
            (
                "first object sets the limit",
                Op::Apply("a", "big", &[("limits.nvidia.com/gpumem", "8000")]),
                Some(("a", Some(quota(&[("nvidia", Some(8000), None)])))),
            ),
            (
                "a smaller second object wins per resource",
                Op::Apply(
                    "a",
                    "small",
                    &[
                        ("limits.nvidia.com/gpumem", "2000"),
                        ("limits.nvidia.com/gpucores", "50"),
                    ],
                ),
                Some(("a", Some(quota(&[("nvidia", Some(2000), Some(50))])))),
            ),
            (
                "another family's limit is kept apart",
                Op::Apply(
                    "a",
                    "mlu",
                    &[("limits.cambricon.com/mlu.smlu.vmemory", "4")],
                ),
                Some((
                    "a",
                    Some(quota(&[
                        ("nvidia", Some(2000), Some(50)),
                        ("cambricon", Some(1024), None),
                    ])),
                )),
            ),
            (
                "same object re-applied unchanged: no event",
                Op::Apply("a", "big", &[("limits.nvidia.com/gpumem", "8000")]),
                None,
            ),
            (
                "a broken edit forgets the object (the others still hold)",
                Op::Apply("a", "small", &[("limits.nvidia.com/gpumem", "x")]),
                Some((
                    "a",
                    Some(quota(&[
                        ("nvidia", Some(8000), None),
                        ("cambricon", Some(1024), None),
                    ])),
                )),
            ),
            (
                "deleting an unknown object: no event",
                Op::Remove("a", "nope"),
                None,
            ),
            (
                "deleting the NVIDIA object leaves the Cambricon limit",
                Op::Remove("a", "big"),
                Some(("a", Some(quota(&[("cambricon", Some(1024), None)])))),
            ),
            (
                "deleting the last object removes the quota",
                Op::Remove("a", "mlu"),
                Some(("a", None)),
            ),
            (
                "an object without device keys changes nothing",
                Op::Apply("b", "cpu", &[("limits.cpu", "4")]),
                None,
            ),
        ];
        let n = names(1);
        let mut book = QuotaBook::new();
        for (what, op, want) in steps {
            let ev = match op {
                Op::Apply(ns, name, hard) => book.apply(&n, &rq(ns, name, hard)).0,
                Op::Remove(ns, name) => book.remove(ns, name),
            };
            let want = want.map(|(ns, q)| (ns.to_string(), q));
            assert_eq!(quota_of(ev), want, "{what}");
        }
        assert!(book.objects().is_empty(), "{:?}", book.objects());
    }

    #[test]
    fn broken_object_reports_error_and_no_limit() {
        let n = names(1);
        let mut book = QuotaBook::new();
        let (ev, res) = book.apply(&n, &rq("t", "q", &[("limits.nvidia.com/gpucores", "1.5")]));
        assert!(ev.is_none());
        let e = res.expect_err("fraction is refused");
        assert_eq!(e.namespace, "t");
        assert_eq!(e.name, "q");
        assert_eq!(e.key, "limits.nvidia.com/gpucores");
        assert_eq!(book.effective("t"), None);
    }
}
