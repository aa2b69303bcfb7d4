#!/usr/bin/env bash
# Overhead and accuracy figures of the interposer, measured on the fake driver:
#   1. wall-clock ns added per cuLaunchKernel and per cuMemAlloc/cuMemFree pair, init time with
#      64 processes of one container (cargo bench --bench overhead);
#   2. achieved compute share per 1-s window (cargo bench --bench share);
#   3. valgrind callgrind instruction counts per call, which do not depend on machine noise.
# Usage: interposer/bench.sh            (from anywhere; needs gcc and valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}

cargo bench -p hami-interposer --bench overhead
cargo bench -p hami-interposer --bench share

if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed: skipping instruction counts"
    exit 0
fi
D=$TARGET/release/deps
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$D/libfake_cuda.so" "$tmp/libcuda.so.1"
cp "$D/libfake_nvml.so" "$tmp/libnvidia-ml.so.1"
cp "$D/libvgpu.so" "$tmp/libvgpu.so"
gcc -O2 -o "$tmp/cutest" interposer/tests/c/cutest.c -ldl
export LD_LIBRARY_PATH=$tmp HAMI_FAKE_GPUS="count=1;memory=8g" HAMI_FAKE_NS_PER_BLOCK=10 \
    BENCH_WARMUP_N=200000

# Instructions executed inside function $1 for `cutest bench $2 <batches> 1000`, as the
# difference between 20 and 10 batches (so warm-up and start-up cancel), per call.
# With the interposer preloaded, callgrind's toggle stops collecting inside the nested driver
# function of the same name: the count is then the interposer's own instructions (plus any other
# driver call it makes, such as cuCtxGetDevice).
per_call() {
    local fn=$1 what=$2 a b
    shift 2
    a=$(env HAMI_FAKE_STATE="$tmp/s1" CUDA_DEVICE_MEMORY_SHARED_CACHE="$tmp/c1" "$@" \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect="$fn" \
        "$tmp/cutest" bench "$what" 10 1000 2>&1 | sed -n 's/.*Collected : //p')
    b=$(env HAMI_FAKE_STATE="$tmp/s2" CUDA_DEVICE_MEMORY_SHARED_CACHE="$tmp/c2" "$@" \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect="$fn" \
        "$tmp/cutest" bench "$what" 20 1000 2>&1 | sed -n 's/.*Collected : //p')
    echo $(((b - a) / 10000))
}

P="LD_PRELOAD=$tmp/libvgpu.so"
echo "== callgrind instructions per call =="
echo "cuLaunchKernel  fake driver itself:                 $(per_call cuLaunchKernel launch)"
echo "cuLaunchKernel  interposer, memory limit only:      $(per_call cuLaunchKernel launch "$P" CUDA_DEVICE_MEMORY_LIMIT=4g)"
echo "cuLaunchKernel  interposer, SM limit 99%:           $(per_call cuLaunchKernel launch "$P" CUDA_DEVICE_SM_LIMIT=99)"
echo "cuMemAlloc_v2   fake driver itself:                 $(per_call cuMemAlloc_v2 alloc)"
echo "cuMemAlloc_v2   interposer, memory limit:           $(per_call cuMemAlloc_v2 alloc "$P" CUDA_DEVICE_MEMORY_LIMIT=4g)"
echo "cuMemFree_v2    fake driver itself:                 $(per_call cuMemFree_v2 alloc)"
echo "cuMemFree_v2    interposer, memory limit:           $(per_call cuMemFree_v2 alloc "$P" CUDA_DEVICE_MEMORY_LIMIT=4g)"
