#!/usr/bin/env bash
# Real-GPU check of the hami-rs interposer (libvgpu.so) with PyTorch.
#
# Needs: an NVIDIA GPU with its driver (nvidia-smi), python3 with a CUDA build of torch, cargo.
# What it does, on GPU 0:
#   1. builds the interposer (release);
#   2. memory: runs PyTorch under CUDA_DEVICE_MEMORY_LIMIT=4g; torch.cuda.mem_get_info() must
#      report a 4 GiB total, and allocating past the limit must raise torch's out-of-memory
#      error (not crash the process);
#   3. compute: runs a matmul loop for DURATION seconds without the interposer, with it at 100 %
#      (no SM limit, hooks active through a memory limit) and at 30 %; samples the card's
#      utilisation once a second with nvidia-smi and reports the achieved utilisation per window
#      and the throughput cost of the interposer against no interposer.
# The check is meant for an otherwise idle GPU. Exit status 0 when every check passes.
#
# NOTE: written without access to a GPU; it has not run on one yet.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-15}
GPU=${GPU:-0}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
fail=0

command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: no NVIDIA GPU here"; exit 2; }
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    { echo "python3 with a CUDA-enabled torch is required"; exit 2; }
nvidia-smi -i "$GPU" --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "== building the interposer"
(cd "$ROOT" && cargo build --release -p hami-interposer)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VGPU=$TARGET/release/libvgpu.so
[ -f "$VGPU" ] || { echo "missing $VGPU"; exit 1; }

# Each run gets its own accounting file, as each container would.
run_limited() { # env assignments..., then the command
    env CUDA_VISIBLE_DEVICES="$GPU" CUDA_DEVICE_MEMORY_SHARED_CACHE="$WORK/cache.$RANDOM" \
        LD_PRELOAD="$VGPU" "$@"
}

echo "== memory: 4 GiB limit"
cat >"$WORK/mem.py" <<'PY'
import torch
free, total = torch.cuda.mem_get_info()
print(f"mem_get_info: free={free} total={total}")
ok = total == 4 << 30
held, step = [], 128 << 20
try:
    while True:
        held.append(torch.empty(step, dtype=torch.uint8, device="cuda"))
except torch.cuda.OutOfMemoryError as e:
    got = len(held) * step
    print(f"out of memory after {got / 2**30:.2f} GiB (torch error: {str(e).splitlines()[0][:100]})")
    ok = ok and (3 << 30) <= got <= (4 << 30)
del held
torch.cuda.empty_cache()
# The limit is still usable after the error: allocate 1 GiB again.
x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
print("allocation after OOM: ok")
print("MEM_CHECK", "PASS" if ok else "FAIL")
PY
out=$(run_limited CUDA_DEVICE_MEMORY_LIMIT=4g python3 "$WORK/mem.py" 2>&1) || true
echo "$out"
echo "$out" | grep -q "MEM_CHECK PASS" || { echo "memory check FAILED"; fail=1; }

echo "== compute: matmul loop, ${DURATION}s per run"
cat >"$WORK/mm.py" <<'PY'
import sys, time, torch
secs = float(sys.argv[1])
a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
b = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
for _ in range(10):
    a @ b
torch.cuda.synchronize()
n, t0 = 0, time.time()
while time.time() - t0 < secs:
    for _ in range(10):
        c = a @ b
    torch.cuda.synchronize()
    n += 10
dt = time.time() - t0
print(f"THROUGHPUT {n / dt:.1f} matmul/s")
PY
# Runs the loop while sampling utilisation each second; prints per-window values.
measure() { # label, then env assignments (or nothing) and the runner
    local label=$1; shift
    nvidia-smi -i "$GPU" --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 1000 \
        >"$WORK/util.$label" &
    local smi=$!
    local o
    o=$("$@" python3 "$WORK/mm.py" "$DURATION" 2>&1) || { echo "$o"; kill $smi; return 1; }
    kill $smi; wait $smi 2>/dev/null || true
    local tp utils mean
    tp=$(echo "$o" | sed -n 's/^THROUGHPUT \([0-9.]*\).*/\1/p')
    # Drop the first two and the last sample (start-up and tear-down).
    utils=$(sed '1,2d;$d' "$WORK/util.$label" | tr '\n' ' ')
    mean=$(echo "$utils" | awk '{s=0; for(i=1;i<=NF;i++) s+=$i; if (NF) printf "%.1f", s/NF}')
    echo "$label: throughput $tp matmul/s; utilisation per 1-s window: $utils; mean $mean %"
    eval "TP_$label=$tp; UTIL_$label=$mean"
}
measure none env CUDA_VISIBLE_DEVICES="$GPU"
measure full run_limited CUDA_DEVICE_MEMORY_LIMIT=64g
measure share30 run_limited CUDA_DEVICE_SM_LIMIT=30

cost=$(awk -v a="$TP_none" -v b="$TP_full" 'BEGIN { printf "%.2f", 100 * (a - b) / a }')
echo "throughput cost of the interposer at 100 %: $cost % (interposer $TP_full vs none $TP_none matmul/s)"
echo "share 30 %: mean utilisation $UTIL_share30 % (target 30 +/- 5); throughput $TP_share30 matmul/s ="\
     "$(awk -v a="$TP_none" -v b="$TP_share30" 'BEGIN { printf "%.1f", 100 * b / a }') % of unlimited"
awk -v u="$UTIL_share30" 'BEGIN { exit !(u >= 25 && u <= 35) }' || { echo "compute share check FAILED"; fail=1; }
awk -v c="$cost" 'BEGIN { exit !(c < 3) }' || { echo "throughput cost above 3 %"; fail=1; }

[ $fail -eq 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit $fail
