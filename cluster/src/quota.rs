//! HAMi's ResourceQuota extension on the scheduler side: `ResourceQuota` objects whose
//! `spec.hard` names `limits.<memory resource>` or `limits.<core resource>` of a managed device
//! (`limits.nvidia.com/gpumem`, `limits.nvidia.com/gpucores`) limit what a namespace may be
//! granted, counted per card actually granted (a `gpumem-percentage` request counts the MiB it
//! resolved to).
//!
//! The rules follow HAMi's `QuotaManager` (pkg/device/quota.go):
//! * only keys with the `limits.` prefix count, and only for the memory and core resources of a
//!   device family (the count resource `limits.nvidia.com/gpu` is kube-apiserver's business);
//! * scoped quotas (`spec.scopes` or `spec.scopeSelector`) are skipped: usage is tracked per
//!   namespace, so applying a scoped limit would restrict pods outside its scope;
//! * several quota objects in one namespace: the smallest limit per resource wins;
//! * a memory limit is in units of the memory resource, i.e. multiplied by `memoryFactor`.
//!
//! Where HAMi silently skips a value that is not a whole number (`AsInt64` fails), this module
//! reports an error naming the quota object and key, and leaves that object out until it is
//! fixed: a quota that silently does nothing is worse than a clear complaint.
//!
//! The core's quota ([`hami_core::ledger::Quota`]) is one memory and one core limit per
//! namespace summed over every card, which is exact for the NVIDIA family. Limits on other
//! families' resources are reported as unsupported instead of being folded into it.

use hami_core::config::DeviceConfig;
use hami_core::control::Event;
use hami_core::family::FamilyId;
use hami_core::ledger::Quota;
use k8s_openapi::api::core::v1::ResourceQuota;
use std::collections::BTreeMap;

/// The resource names a quota may limit, resolved from the device configuration.
#[derive(Debug, Clone)]
pub struct QuotaNames {
    memory: String,
    cores: String,
    memory_factor: u64,
    /// Memory and core resources of the other families (limits on them are not enforced).
    others: Vec<String>,
}

impl QuotaNames {
    /// Names from `cfg`: the NVIDIA memory and core resources and `memoryFactor`.
    pub fn new(cfg: &DeviceConfig) -> QuotaNames {
        QuotaNames {
            memory: cfg.nvidia.resource_memory_name.clone(),
            cores: cfg.nvidia.resource_core_name.clone(),
            memory_factor: u64::from(cfg.nvidia.memory_factor.max(1)),
            others: FamilyId::all()
                .filter(|f| *f != FamilyId::NVIDIA)
                .flat_map(|f| [f.spec().memory_resource, f.spec().cores_resource])
                .flatten()
                .map(str::to_string)
                .collect(),
        }
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
    /// The device limits this object sets (`None` fields: not limited by this object).
    pub quota: Quota,
    /// Managed keys this scheduler does not enforce (other families' memory/core limits),
    /// for a warning; sorted.
    pub unsupported: Vec<String>,
    /// Whether the object is scoped and therefore skipped entirely (as HAMi does).
    pub scoped: bool,
}

/// Translate one `ResourceQuota` object into the device limits it sets. Pure.
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
        let is_memory = resource == names.memory;
        let is_cores = resource == names.cores;
        if !is_memory && !is_cores {
            if names.others.iter().any(|o| o == resource) {
                out.unsupported.push(key.clone());
            }
            continue;
        }
        let err = |problem: String| QuotaError {
            namespace: namespace.clone(),
            name: name.clone(),
            key: key.clone(),
            value: value.0.clone(),
            problem,
        };
        let n = hami_core::quantity::parse_count(&value.0)
            .map_err(|e| err(format!("not a whole, non-negative number: {e}")))?;
        if is_memory {
            let mib = n.checked_mul(names.memory_factor).ok_or_else(|| {
                err(format!(
                    "times memoryFactor {} overflows 64 bits",
                    names.memory_factor
                ))
            })?;
            out.quota.memory_mib = Some(mib);
        } else {
            out.quota.cores = Some(n);
        }
    }
    out.unsupported.sort();
    Ok(out)
}

/// Every device quota object seen, per namespace; turns watch events into
/// [`Event::QuotaChanged`] with the effective (smallest) limits of the namespace.
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

    /// The effective quota of `namespace`: per resource the smallest limit of its objects;
    /// `None` when no object limits anything.
    pub fn effective(&self, namespace: &str) -> Option<Quota> {
        let objs = self.objects.get(namespace)?;
        let q = objs.values().fold(Quota::default(), |acc, q| Quota {
            memory_mib: min_opt(acc.memory_mib, q.memory_mib),
            cores: min_opt(acc.cores, q.cores),
        });
        (q.memory_mib.is_some() || q.cores.is_some()).then_some(q)
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
            Ok(l) if l.quota.memory_mib.is_some() || l.quota.cores.is_some() => {
                objs.insert(name, l.quota);
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

    /// Memory MiB, cores and unsupported keys a case expects.
    type Limits = (Option<u64>, Option<u64>, &'static [&'static str]);
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
                want: Ok((Some(4096), Some(200), &[])),
            },
            Case {
                what: "memory in units of memoryFactor",
                factor: 4,
                hard: &[("limits.nvidia.com/gpumem", "1000")],
                want: Ok((Some(4000), None, &[])),
            },
            Case {
                what: "decimal suffix is a whole number",
                factor: 1,
                hard: &[("limits.nvidia.com/gpumem", "8k")],
                want: Ok((Some(8000), None, &[])),
            },
            Case {
                what: "zero blocks everything (explicit limit)",
                factor: 1,
                hard: &[("limits.nvidia.com/gpucores", "0")],
                want: Ok((None, Some(0), &[])),
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
                want: Ok((None, None, &[])),
            },
            Case {
                what: "count resource is not a device quota",
                factor: 1,
                hard: &[("limits.nvidia.com/gpu", "2")],
                want: Ok((None, None, &[])),
            },
            Case {
                what: "other families reported as unsupported",
                factor: 1,
                hard: &[
                    ("limits.hygon.com/dcumem", "1000"),
                    ("limits.nvidia.com/gpumem", "10"),
                ],
                want: Ok((Some(10), None, &["limits.hygon.com/dcumem"])),
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
                what: "garbage",
                factor: 1,
                hard: &[("limits.nvidia.com/gpumem", "lots")],
                want: Err("ResourceQuota team-a/gpu"),
            },
            Case {
                what: "overflow with factor",
                factor: 1024,
                hard: &[("limits.nvidia.com/gpumem", "18446744073709551615")],
                want: Err("times memoryFactor 1024 overflows"),
            },
        ];
        for c in cases {
            let got = object_limits(&names(c.factor), &rq("team-a", "gpu", c.hard));
            match (&got, c.want) {
                (Ok(l), Ok((mem, cores, unsupported))) => {
                    assert_eq!(l.quota.memory_mib, mem, "{}", c.what);
                    assert_eq!(l.quota.cores, cores, "{}", c.what);
                    assert_eq!(l.unsupported, unsupported, "{}", c.what);
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
    fn scoped_quotas_are_skipped() {
        let mut a = rq("ns", "scoped", &[("limits.nvidia.com/gpumem", "1")]);
        if let Some(s) = a.spec.as_mut() {
            s.scopes = Some(vec!["BestEffort".into()]);
        }
        let mut b = rq("ns", "selected", &[("limits.nvidia.com/gpumem", "1")]);
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
        let q = |m: Option<u64>, c: Option<u64>| {
            Some(Quota {
                memory_mib: m,
                cores: c,
            })
        };
        let steps: Vec<(&str, Op, Changed)> = vec![
            (
                "first object sets the limit",
                Op::Apply("a", "big", &[("limits.nvidia.com/gpumem", "8000")]),
                Some(("a", q(Some(8000), None))),
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
                Some(("a", q(Some(2000), Some(50)))),
            ),
            (
                "same object re-applied unchanged: no event",
                Op::Apply("a", "big", &[("limits.nvidia.com/gpumem", "8000")]),
                None,
            ),
            (
                "a broken edit forgets the object (the other one still holds)",
                Op::Apply("a", "small", &[("limits.nvidia.com/gpumem", "x")]),
                Some(("a", q(Some(8000), None))),
            ),
            (
                "deleting an unknown object: no event",
                Op::Remove("a", "nope"),
                None,
            ),
            (
                "deleting the last object removes the quota",
                Op::Remove("a", "big"),
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
