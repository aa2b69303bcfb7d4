//! hami-cluster: the production components (not built yet; see the production components issue).
