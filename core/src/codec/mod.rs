//! HAMi annotation wire codec (in progress).
