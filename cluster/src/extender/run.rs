//! Process entry points: `hami scheduler` and `hami webhook`.

use super::server::{metrics_router, router, serve};
use super::writer::ApiWriter;
use super::{Extender, system_clock};
use crate::kube::{KubeWriter, SyncState, watch_nodes, watch_pods, watch_quotas};
use crate::leader::{LeaderConfig, run as run_leader};
use crate::webhook::WebhookConfig;
use hami_core::config::DeviceConfig;
use hami_core::control::Controller;
use hami_core::pipeline::{Scheduler, SchedulerConfig};
use hami_core::policy::{DevicePolicyChain, NodePolicyKind};
use hami_core::request::RequestTranslator;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of `hami scheduler` (flag names follow HAMi's where they mean the same).
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// `--http_bind`: address of the extender/webhook server.
    pub http_bind: String,
    /// `--cert_file` (TLS when both files are given).
    pub cert_file: Option<PathBuf>,
    /// `--key_file`.
    pub key_file: Option<PathBuf>,
    /// `--scheduler-name`.
    pub scheduler_name: String,
    /// `--node-scheduler-policy`.
    pub node_scheduler_policy: String,
    /// `--gpu-scheduler-policy`.
    pub gpu_scheduler_policy: String,
    /// `--device-config-file`.
    pub device_config_file: Option<PathBuf>,
    /// `--metrics-bind-address` (empty: metrics only on the main server).
    pub metrics_bind_address: String,
    /// `--leader-elect`.
    pub leader_elect: bool,
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace.
    pub lease_namespace: String,
    /// Leader identity.
    pub identity: String,
    /// `--force-overwrite-default-scheduler`.
    pub force_overwrite_default_scheduler: bool,
    /// Run HAMi's node handshake.
    pub handshake: bool,
    /// Seed for policies that draw randomness.
    pub seed: u64,
    /// `--legacy-metrics`: also emit HAMi's pre-v2.9 metric names.
    pub legacy_metrics: bool,
    /// `--resource-quota-watch`: enforce HAMi's device ResourceQuotas (needs list/watch on
    /// resourcequotas; readiness waits for their first list).
    pub quota_watch: bool,
    /// `--reservation-ttl-seconds`: how long a filter reservation waits for its bind.
    pub reservation_ttl_s: i64,
}

/// Read the device configuration file, or HAMi's defaults when none is given.
pub fn load_device_config(path: Option<&PathBuf>) -> Result<DeviceConfig, String> {
    match path {
        None => Ok(DeviceConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("--device-config-file {}: {e}", p.display()))?;
            DeviceConfig::from_yaml(&p.display().to_string(), &text).map_err(|e| e.to_string())
        }
    }
}

/// The resource names kube-scheduler must leave to the extender (`managedResources` with
/// `ignoredByScheduler: true`) for the device configuration at `path` (HAMi's defaults when
/// `None`): exactly what the request translator manages, sorted.
pub fn managed_resources(path: Option<&PathBuf>) -> Result<Vec<String>, String> {
    let cfg = load_device_config(path)?;
    Ok(RequestTranslator::new(&cfg).managed_resources())
}

/// Build the control loop from the options and device configuration.
pub fn build_controller(o: &SchedulerOptions, cfg: &DeviceConfig) -> Result<Controller, String> {
    let node_policy = NodePolicyKind::parse(&o.node_scheduler_policy)
        .map_err(|e| format!("--node-scheduler-policy {:?}: {e}", o.node_scheduler_policy))?;
    let device_policy = DevicePolicyChain::parse(&o.gpu_scheduler_policy)
        .map_err(|e| format!("--gpu-scheduler-policy {:?}: {e}", o.gpu_scheduler_policy))?;
    let sc = SchedulerConfig {
        node_policy,
        device_policy,
        // kube-scheduler already checked CPU and memory before asking us.
        check_node_resources: false,
        templates: hami_core::annotations::default_templates(),
        ..SchedulerConfig::default()
    };
    Ok(Controller::new(
        Scheduler::new(sc),
        RequestTranslator::new(cfg),
        o.seed,
    ))
}

fn bind_listener(addr: &str, flag: &str) -> Result<std::net::TcpListener, String> {
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    std::net::TcpListener::bind(&addr).map_err(|e| format!("{flag} {addr}: {e}"))
}

async fn tls_config(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<axum_server::tls_rustls::RustlsConfig>, String> {
    match (cert, key) {
        (Some(c), Some(k)) => crate::tls::server_config(c, k)
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
        (None, None) => Ok(None),
        _ => Err("--cert_file and --key_file must be given together".into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// Run `hami scheduler` until a server fails.
pub fn run_scheduler(o: SchedulerOptions) -> Result<(), String> {
    crate::tls::install_ring_provider();
    let cfg = load_device_config(o.device_config_file.as_ref())?;
    let controller = build_controller(&o, &cfg)?;
    let mut webhook = WebhookConfig::new(o.scheduler_name.clone(), &cfg);
    webhook.force_overwrite_default_scheduler = o.force_overwrite_default_scheduler;
    let listener = bind_listener(&o.http_bind, "--http_bind")?;
    let metrics_listener = if o.metrics_bind_address.is_empty() {
        None
    } else {
        Some(bind_listener(
            &o.metrics_bind_address,
            "--metrics-bind-address",
        )?)
    };
    runtime()?.block_on(async move {
        let client = ::kube::Client::try_default().await.map_err(|e| {
            format!("connecting to the Kubernetes API (in-cluster config or KUBECONFIG): {e}")
        })?;
        let writer: Arc<dyn ApiWriter> =
            Arc::new(KubeWriter::new(client.clone(), o.scheduler_name.clone()));
        let ext = Arc::new(Extender::new(
            controller,
            writer.clone(),
            webhook,
            system_clock(),
        ));
        ext.set_reservation_ttl(o.reservation_ttl_s);
        ext.metrics().set_legacy(o.legacy_metrics);
        // Reservations no bind claims (abandoned decisions, lost leadership) are released.
        let sweeper = ext.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                sweeper.expire_reservations().await;
            }
        });
        ext.metrics().set_quota_resources(
            &cfg.nvidia.resource_memory_name,
            &cfg.nvidia.resource_core_name,
        );
        if o.leader_elect {
            let flag = ext.leader_flag();
            flag.store(false, std::sync::atomic::Ordering::SeqCst);
            let m = ext.metrics().clone();
            tokio::spawn(run_leader(
                client.clone(),
                LeaderConfig {
                    namespace: o.lease_namespace.clone(),
                    name: o.lease_name.clone(),
                    identity: o.identity.clone(),
                    lease_duration_s: 15,
                    renew_deadline: Duration::from_secs(10),
                    retry_period: Duration::from_secs(2),
                },
                flag,
                move |l| m.set_leader(l),
            ));
        }
        let sync = Arc::new(SyncState::new(o.quota_watch));
        if o.quota_watch {
            tokio::spawn(watch_quotas(
                client.clone(),
                ext.clone(),
                sync.clone(),
                crate::quota::QuotaNames::new(&cfg),
            ));
        }
        tokio::spawn(watch_nodes(
            client.clone(),
            ext.clone(),
            writer.clone(),
            sync.clone(),
            o.handshake,
            Duration::from_secs(15),
        ));
        tokio::spawn(watch_pods(
            client,
            ext.clone(),
            sync,
            o.scheduler_name.clone(),
        ));
        let tls = tls_config(&o.cert_file, &o.key_file).await?;
        if let Some(ml) = metrics_listener {
            let r = metrics_router(ext.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(ml, r, None).await {
                    tracing::error!(error = %e, "metrics server failed");
                }
            });
        }
        tracing::info!(addr = %o.http_bind, tls = tls.is_some(), "serving the extender");
        serve(listener, router(ext), tls)
            .await
            .map_err(|e| format!("--http_bind {}: {e}", o.http_bind))
    })
}

/// Run `hami webhook` (the webhook alone) until the server fails.
pub fn run_webhook(
    http_bind: &str,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    cfg: WebhookConfig,
) -> Result<(), String> {
    crate::tls::install_ring_provider();
    let listener = bind_listener(http_bind, "--http_bind")?;
    runtime()?.block_on(async move {
        let tls = tls_config(&cert_file, &key_file).await?;
        serve(listener, crate::webhook::router(Arc::new(cfg)), tls)
            .await
            .map_err(|e| format!("--http_bind {http_bind}: {e}"))
    })
}

/// Install a `tracing` subscriber that honours `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
