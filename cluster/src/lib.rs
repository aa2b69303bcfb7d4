//! hami-cluster: the production components — scheduler extender, admission webhook, device
//! plugin, node agent, metrics and leader election — around the core's control loop.

pub mod agent;
pub mod allocate;
pub mod deviceplugin;
pub mod extender;
pub mod kube;
pub mod leader;
pub mod metrics;
pub mod quota;
pub mod record;
pub mod replay;
pub mod tls;
pub mod webhook;
