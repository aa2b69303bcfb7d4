//! hami-core
