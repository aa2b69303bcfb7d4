//! Fake libnvidia-ml.so.1 backed by the same simulated devices as the fake libcuda
