//! Fake libcuda.so.1: a CUDA driver API with simulated devices and simulated kernel time
