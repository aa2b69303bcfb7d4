//! `hami scheduler`: the kube-scheduler extender (filter/bind), the webhook on the same server,
//! metrics, leader election. Flag names follow HAMi's where they mean the same.

use hami_cluster::extender::run::{
    SchedulerOptions, init_logging, managed_resources, run_scheduler,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `hami scheduler`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the extender and webhook server (HTTPS when --cert_file/--key_file are set).
    #[arg(long = "http_bind", default_value = "127.0.0.1:8080")]
    http_bind: String,
    /// TLS certificate (PEM).
    #[arg(long = "cert_file")]
    cert_file: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long = "key_file")]
    key_file: Option<PathBuf>,
    /// The scheduler name the webhook sets and whose pods are watched.
    #[arg(long = "scheduler-name", default_value = "hami-scheduler")]
    scheduler_name: String,
    /// Node policy: binpack or spread.
    #[arg(long = "node-scheduler-policy", default_value = "binpack")]
    node_scheduler_policy: String,
    /// GPU policy chain: spread, binpack, topology-aware, numa (comma-separated).
    #[arg(long = "gpu-scheduler-policy", default_value = "spread")]
    gpu_scheduler_policy: String,
    /// HAMi's device-config.yaml (defaults when absent).
    #[arg(long = "device-config-file")]
    device_config_file: Option<PathBuf>,
    /// Separate metrics address (empty: only /metrics on --http_bind).
    #[arg(long = "metrics-bind-address", default_value = ":9395")]
    metrics_bind_address: String,
    /// Elect a leader through a coordination.k8s.io Lease; only the leader filters and binds.
    #[arg(long = "leader-elect", default_value_t = false, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Lease name.
    #[arg(long = "leader-elect-resource-name", default_value = "hami-scheduler")]
    lease_name: String,
    /// Lease namespace (default: env POD_NAMESPACE, else kube-system).
    #[arg(long = "leader-elect-resource-namespace")]
    lease_namespace: Option<String>,
    /// Overwrite `default-scheduler` on managed pods.
    #[arg(long = "force-overwrite-default-scheduler", default_value_t = true, action = clap::ArgAction::Set)]
    force_overwrite_default_scheduler: bool,
    /// Accepted for HAMi compatibility; this scheduler takes no node lock at bind.
    #[arg(long = "node-lock-timeout", default_value = "5m")]
    node_lock_timeout: String,
    /// Run HAMi's node handshake (hami.io/node-handshake).
    #[arg(long = "node-handshake", default_value_t = true, action = clap::ArgAction::Set)]
    handshake: bool,
    /// Seed for policies that draw randomness.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also emit HAMi's pre-v2.9 metric names (GPUDeviceMemoryLimit, vGPUMemoryAllocated, …).
    #[arg(long = "legacy-metrics", default_value_t = false, action = clap::ArgAction::Set)]
    legacy_metrics: bool,
    /// Enforce HAMi's device ResourceQuotas, per family (limits.<memory resource> and
    /// limits.<cores resource> of each: limits.nvidia.com/gpumem, limits.cambricon.com/mlu.smlu.vmemory, …);
    /// needs list/watch on resourcequotas, and readiness waits for their first list.
    #[arg(long = "resource-quota-watch", default_value_t = true, action = clap::ArgAction::Set)]
    quota_watch: bool,
    /// Seconds a filter's reservation waits for kube-scheduler's bind before it is released
    /// (the pod is then filtered again if kube-scheduler still wants it).
    #[arg(long = "reservation-ttl-seconds", default_value_t = hami_cluster::extender::DEFAULT_RESERVATION_TTL_S)]
    reservation_ttl_s: i64,
    /// Print the resource names kube-scheduler's extender config must list as managedResources
    /// (ignoredByScheduler) for --device-config-file, one per line, and exit.
    #[arg(long = "print-managed-resources")]
    print_managed_resources: bool,
}

fn env_var(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("environment variable {name}: {e}")),
    }
}

/// Run the scheduler extender.
pub fn run(a: Args) -> Result<ExitCode, String> {
    if a.print_managed_resources {
        for r in managed_resources(a.device_config_file.as_ref())? {
            println!("{r}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    init_logging();
    let identity = match env_var("POD_NAME")? {
        Some(v) => v,
        None => env_var("HOSTNAME")?.ok_or_else(|| {
            "leader identity: set environment variable POD_NAME (or HOSTNAME)".to_string()
        })?,
    };
    let lease_namespace = match a.lease_namespace {
        Some(n) => n,
        None => env_var("POD_NAMESPACE")?.unwrap_or_else(|| "kube-system".into()),
    };
    run_scheduler(SchedulerOptions {
        http_bind: a.http_bind,
        cert_file: a.cert_file,
        key_file: a.key_file,
        scheduler_name: a.scheduler_name,
        node_scheduler_policy: a.node_scheduler_policy,
        gpu_scheduler_policy: a.gpu_scheduler_policy,
        device_config_file: a.device_config_file,
        metrics_bind_address: a.metrics_bind_address,
        leader_elect: a.leader_elect,
        lease_name: a.lease_name,
        lease_namespace,
        identity,
        force_overwrite_default_scheduler: a.force_overwrite_default_scheduler,
        handshake: a.handshake,
        seed: a.seed,
        legacy_metrics: a.legacy_metrics,
        quota_watch: a.quota_watch,
        reservation_ttl_s: a.reservation_ttl_s,
    })?;
    Ok(ExitCode::SUCCESS)
}
