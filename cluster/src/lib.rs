//! hami-cluster: the production components (not built yet; see the production components issue).

pub mod agent;
pub mod allocate;
pub mod deviceplugin;
