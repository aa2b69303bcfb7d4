//! hami-cluster: the production components (not built yet; see the production components issue).

pub mod agent;
pub mod allocate;
pub mod deviceplugin;
pub mod extender;
pub mod kube;
pub mod leader;
pub mod metrics;
pub mod tls;
pub mod webhook;
