//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! [`decide`] is the pure state machine: given the time, our identity and the Lease as read,
//! it says whether to create, renew, take over or wait. [`run`] wraps it with the API calls
//! (optimistic concurrency through `resourceVersion`: a conflict means someone else won).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The fields of a Lease that the decision reads. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseView {
    /// `spec.holderIdentity`.
    pub holder: Option<String>,
    /// `spec.renewTime` (or `acquireTime` when no renew happened yet).
    pub renew_ms: Option<i64>,
    /// `spec.leaseDurationSeconds`.
    pub duration_s: Option<i32>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
}

/// What to do with the Lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// No Lease exists: create it holding it ourselves.
    Create,
    /// We hold it: renew (update renewTime).
    Renew,
    /// Someone else held it but it expired (or nobody holds it): take it over, counting a
    /// transition.
    Acquire,
    /// Someone else holds a live lease until `until_ms`.
    Wait {
        /// The holder.
        holder: String,
        /// When it expires unless renewed, unix ms.
        until_ms: i64,
    },
}

/// Decide at `now_ms` for identity `me`; `default_duration_s` applies when the Lease has none.
pub fn decide(
    now_ms: i64,
    me: &str,
    lease: Option<&LeaseView>,
    default_duration_s: i32,
) -> LeaseAction {
    let Some(l) = lease else {
        return LeaseAction::Create;
    };
    match l.holder.as_deref() {
        None | Some("") => LeaseAction::Acquire,
        Some(h) if h == me => LeaseAction::Renew,
        Some(h) => {
            let dur_ms = i64::from(l.duration_s.unwrap_or(default_duration_s).max(1)) * 1000;
            match l.renew_ms {
                Some(r) if now_ms < r.saturating_add(dur_ms) => LeaseAction::Wait {
                    holder: h.to_string(),
                    until_ms: r + dur_ms,
                },
                _ => LeaseAction::Acquire,
            }
        }
    }
}

/// Read the decision's fields from a Lease object.
pub fn view_of(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    let ms = |t: &MicroTime| t.0.as_millisecond();
    LeaseView {
        holder: spec.holder_identity.clone(),
        renew_ms: spec
            .renew_time
            .as_ref()
            .or(spec.acquire_time.as_ref())
            .map(ms),
        duration_s: spec.lease_duration_seconds,
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

/// Settings of the election (defaults follow kube-scheduler: 15 s lease, 10 s renew deadline,
/// 2 s retry).
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// Our identity (pod name).
    pub identity: String,
    /// `leaseDurationSeconds` written.
    pub lease_duration_s: i32,
    /// Stop leading when no renew succeeded for this long.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn micro_now() -> Option<MicroTime> {
    jiff_now().map(MicroTime)
}

fn jiff_now() -> Option<k8s_openapi::jiff::Timestamp> {
    k8s_openapi::jiff::Timestamp::from_millisecond(now_ms()).ok()
}

/// Run the election forever, keeping `leader` true exactly while we hold the Lease.
/// `on_change` is called with the new state on every change.
pub async fn run(
    client: kube::Client,
    cfg: LeaderConfig,
    leader: Arc<AtomicBool>,
    on_change: impl Fn(bool) + Send + 'static,
) {
    use kube::api::{Api, PostParams};
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renew = std::time::Instant::now();
    loop {
        let now = now_ms();
        let current = api.get_opt(&cfg.name).await;
        let ok = match current {
            Err(e) => {
                tracing::warn!(error = %e, "reading the leader lease failed");
                false
            }
            Ok(obj) => {
                let view = obj.as_ref().map(view_of);
                match decide(now, &cfg.identity, view.as_ref(), cfg.lease_duration_s) {
                    LeaseAction::Wait { holder, .. } => {
                        tracing::debug!(%holder, "another replica leads");
                        if leader.swap(false, Ordering::SeqCst) {
                            on_change(false);
                        }
                        tokio::time::sleep(cfg.retry_period).await;
                        continue;
                    }
                    action => {
                        let mut lease = obj.unwrap_or_else(|| Lease {
                            metadata: ObjectMeta {
                                name: Some(cfg.name.clone()),
                                namespace: Some(cfg.namespace.clone()),
                                ..ObjectMeta::default()
                            },
                            spec: None,
                        });
                        let mut spec = lease.spec.clone().unwrap_or_else(LeaseSpec::default);
                        spec.holder_identity = Some(cfg.identity.clone());
                        spec.lease_duration_seconds = Some(cfg.lease_duration_s);
                        spec.renew_time = micro_now();
                        if action != LeaseAction::Renew {
                            spec.acquire_time = micro_now();
                            if action == LeaseAction::Acquire {
                                spec.lease_transitions =
                                    Some(view.map(|v| v.transitions).unwrap_or(0) + 1);
                            }
                        }
                        lease.spec = Some(spec);
                        let res = if action == LeaseAction::Create {
                            api.create(&PostParams::default(), &lease).await.map(|_| ())
                        } else {
                            api.replace(&cfg.name, &PostParams::default(), &lease)
                                .await
                                .map(|_| ())
                        };
                        match res {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::info!(error = %e, "lease write lost or failed");
                                false
                            }
                        }
                    }
                }
            }
        };
        if ok {
            last_renew = std::time::Instant::now();
            if !leader.swap(true, Ordering::SeqCst) {
                tracing::info!(identity = %cfg.identity, "became the leader");
                on_change(true);
            }
        } else if leader.load(Ordering::SeqCst) && last_renew.elapsed() > cfg.renew_deadline {
            tracing::warn!("renew deadline passed: stop leading");
            leader.store(false, Ordering::SeqCst);
            on_change(false);
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renew_ms: Option<i64>, dur: Option<i32>) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_string),
            renew_ms,
            duration_s: dur,
            transitions: 3,
        }
    }

    #[test]
    fn table() {
        let t = 1_000_000_i64;
        let cases: Vec<(&str, i64, Option<LeaseView>, LeaseAction)> = vec![
            ("no lease", t, None, LeaseAction::Create),
            (
                "we hold it",
                t,
                Some(lease(Some("me"), Some(t - 100_000), Some(15))),
                LeaseAction::Renew,
            ),
            (
                "nobody holds it",
                t,
                Some(lease(None, Some(t), Some(15))),
                LeaseAction::Acquire,
            ),
            (
                "empty holder",
                t,
                Some(lease(Some(""), Some(t), Some(15))),
                LeaseAction::Acquire,
            ),
            (
                "other holder, live",
                t,
                Some(lease(Some("other"), Some(t - 14_999), Some(15))),
                LeaseAction::Wait {
                    holder: "other".into(),
                    until_ms: t + 1,
                },
            ),
            (
                "other holder, expired exactly",
                t,
                Some(lease(Some("other"), Some(t - 15_000), Some(15))),
                LeaseAction::Acquire,
            ),
            (
                "other holder, never renewed",
                t,
                Some(lease(Some("other"), None, Some(15))),
                LeaseAction::Acquire,
            ),
            (
                "other holder, no duration: default 15 s",
                t,
                Some(lease(Some("other"), Some(t - 10_000), None)),
                LeaseAction::Wait {
                    holder: "other".into(),
                    until_ms: t + 5_000,
                },
            ),
        ];
        for (name, now, l, want) in cases {
            assert_eq!(decide(now, "me", l.as_ref(), 15), want, "{name}");
        }
    }

    #[test]
    fn view_reads_renew_or_acquire_time() {
        let ts = k8s_openapi::jiff::Timestamp::from_millisecond(5_000).ok();
        let l = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                acquire_time: ts.map(MicroTime),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
        };
        let v = view_of(&l);
        assert_eq!(v.renew_ms, Some(5_000));
        assert_eq!(v.holder.as_deref(), Some("a"));
    }
}
