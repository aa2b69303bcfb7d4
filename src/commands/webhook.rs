//! `hami webhook`: the mutating admission webhook alone (the scheduler also serves it).

use hami_cluster::extender::run::{init_logging, load_device_config, run_webhook};
use hami_cluster::webhook::WebhookConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `hami webhook`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen address (HTTPS when --cert_file/--key_file are set, as the API server requires).
    #[arg(long = "http_bind", default_value = "0.0.0.0:443")]
    http_bind: String,
    /// TLS certificate (PEM).
    #[arg(long = "cert_file")]
    cert_file: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long = "key_file")]
    key_file: Option<PathBuf>,
    /// The scheduler name set on managed pods.
    #[arg(long = "scheduler-name", default_value = "hami-scheduler")]
    scheduler_name: String,
    /// HAMi's device-config.yaml (defaults when absent).
    #[arg(long = "device-config-file")]
    device_config_file: Option<PathBuf>,
    /// Overwrite `default-scheduler` on managed pods.
    #[arg(long = "force-overwrite-default-scheduler", default_value_t = true, action = clap::ArgAction::Set)]
    force_overwrite_default_scheduler: bool,
}

/// Run the webhook server.
pub fn run(a: Args) -> Result<ExitCode, String> {
    init_logging();
    let cfg = load_device_config(a.device_config_file.as_ref())?;
    let mut wh = WebhookConfig::new(a.scheduler_name, &cfg);
    wh.force_overwrite_default_scheduler = a.force_overwrite_default_scheduler;
    run_webhook(&a.http_bind, a.cert_file, a.key_file, wh)?;
    Ok(ExitCode::SUCCESS)
}
