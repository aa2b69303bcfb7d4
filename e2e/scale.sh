#!/usr/bin/env bash
# Scale benchmark (issue #6 point 6; a measurement, not a test): NODES KWOK nodes × CARDS GPUs,
# PODS GPU pods created as fast as the API allows, through the real kube-scheduler, our webhook
# and extender. Prints end-to-end pods/s (first create → last bind), the extender's filter/bind
# latency quantiles (our /metrics histograms), API writes per GPU pod (our counter and the API
# server's apiserver_request_total), errors, and peak RSS; writes them to RUN/scale-report.md.
#
#   e2e/scale.sh                                   # 1000 × 8, 5000 pods, node policy spread
#   NODES=200 PODS=1000 e2e/scale.sh               # smaller
#   NODE_POLICY=binpack e2e/scale.sh               # the chart's default node policy
#   HAMI_BIN=target/debug/hami e2e/scale.sh        # default: target/release/hami (built if missing)
#   SCALE_KEEP=1 e2e/scale.sh                      # keep e2e/.run/scale.*/ (logs, metrics)
#   SCHEDULE_ONLY=1 e2e/scale.sh                   # scheduling only (below)
#
# SCHEDULE_ONLY=1 (or --schedule-only): our kube-scheduler (profile hami-scheduler) is started
# only after every pod exists, so the pods wait in its queue from the start and creation (about
# 21 pods/s through kubectl on a 2-core machine) no longer limits the rate. The throughput figure
# is then first bind → last bind; filter/bind latency and API writes per pod are counted as in
# the normal mode, over the scheduling phase only (creation's requests are outside the window).
#
# There is no kubelet and no device plugin: e2e/lib/fake_kubelet.py plays kubelet's half of the
# allocate protocol (marks bound pods allocated) so the extender's bind rule does not hold pods
# back forever. Everything listens on 127.0.0.1 and is stopped on exit, also on failure.
set -euo pipefail

E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${E2E}/.." && pwd)"
# shellcheck source=controlplane.sh
source "${E2E}/controlplane.sh"

NODES="${NODES:-1000}"
CARDS="${CARDS:-8}"
PODS="${PODS:-5000}"
PAR="${PAR:-8}"               # parallel kubectl create streams
NODE_POLICY="${NODE_POLICY:-spread}"
GPU_POLICY="${GPU_POLICY:-spread}"
SCHED_QPS="${SCHED_QPS:-1000}" # kube-scheduler's client QPS (its default, 50, caps events/status)
TIMEOUT="${TIMEOUT:-900}"
SCHEDULE_ONLY="${SCHEDULE_ONLY:-}"
for a in "$@"; do
  case "${a}" in
    --schedule-only) SCHEDULE_ONLY=1 ;;
    *) echo "unknown argument: ${a} (the settings are environment variables; see the top of $0)" >&2; exit 2 ;;
  esac
done
# Extra KWOK flags (e.g. --node-lease-duration-seconds=0). Measured: with KWOK v0.7.0's defaults
# the idle cluster of 1000 fake nodes costs the API server 0.1 writes/s (no node status
# heartbeats, no node lease renewals reach it), so the benchmark keeps them.
export KWOK_ARGS="${KWOK_ARGS:-}"
IDLE_S="${IDLE_S:-10}"        # seconds of idle cluster measured before the pods (background writes)
PPROF_S="${PPROF_S:-0}"       # > 0: a CPU profile of kube-apiserver over that many seconds of the pod phase
PPROF_AT="${PPROF_AT:-20}"    # ... starting this many seconds after the first create
(( PPROF_S > 0 )) && export APISERVER_PROFILING=true

cmd_check >/dev/null || { log "control plane not built: run e2e/controlplane.sh build"; exit 1; }
if [[ -z "${HAMI_BIN:-}" ]]; then
  HAMI_BIN="${CARGO_TARGET_DIR:-${ROOT}/target}/release/hami"
  [[ -x "${HAMI_BIN}" ]] || (cd "${ROOT}" && cargo build --release --quiet --bin hami)
fi

mkdir -p "${E2E}/.run"
RUN="$(mktemp -d "${E2E}/.run/scale.XXXXXX")"
finish() {
  local rc=$?
  cmd_down "${RUN}" || true
  if (( rc != 0 )); then
    log "FAILED (rc ${rc})"
    for f in "${RUN}"/logs/*.log; do
      echo "----- ${f##*/} (last 15 lines)" >&2; tail -n 15 "${f}" >&2 || true
    done
  fi
  if [[ -z "${SCALE_KEEP:-}" && ${rc} -eq 0 ]]; then rm -rf "${RUN}"; else log "run folder kept: ${RUN}"; fi
  exit "${rc}"
}
trap finish EXIT
trap 'exit 130' INT TERM

cp "${HAMI_BIN}" "${RUN}/hami"
HAMI_BIN="${RUN}/hami"
cmd_up "${RUN}"
# shellcheck disable=SC1091
source "${RUN}/env"
K() { "${BIN}/kubectl" --kubeconfig "${RUN}/kubeconfig" "$@"; }
now() { date +%s.%N; }

NS=kube-system
"${BIN}/helm" template hami-rs "${ROOT}/deploy/helm/hami-rs" --namespace "${NS}" > "${RUN}/rendered.yaml"
EXT_PORT="$(free_port)"
EXT_URL="https://127.0.0.1:${EXT_PORT}"
METRICS_ADDR="127.0.0.1:$(free_port)"
python3 "${E2E}/lib/chart.py" "${RUN}/rendered.yaml" "${RUN}" "${EXT_URL}" "${E2E_CA}" \
  "${RUN}/kubeconfig-hami-scheduler"
python3 - "${RUN}/scheduler-config.yaml" "${SCHED_QPS}" <<'PY'
import sys, yaml
p, qps = sys.argv[1], int(sys.argv[2])
c = yaml.safe_load(open(p))
c["clientConnection"].update({"qps": qps, "burst": 2 * qps})
yaml.safe_dump(c, open(p, "w"), sort_keys=False)
PY
K apply -f "${RUN}/rbac.yaml" >/dev/null
K apply -f "${RUN}/configmaps.yaml" >/dev/null

cp_spawn "${RUN}" hami-scheduler env KUBECONFIG="${RUN}/kubeconfig-hami-scheduler" \
  POD_NAME=hami-scale POD_NAMESPACE="${NS}" RUST_LOG="${RUST_LOG:-warn}" \
  "${HAMI_BIN}" scheduler --http_bind "127.0.0.1:${EXT_PORT}" \
  --cert_file "${E2E_CERTS}/serving.crt" --key_file "${E2E_CERTS}/serving.key" \
  --device-config-file "${RUN}/device-config.yaml" --metrics-bind-address "${METRICS_ADDR}" \
  --node-scheduler-policy "${NODE_POLICY}" --gpu-scheduler-policy "${GPU_POLICY}"
wait_for "hami scheduler /readyz" 60 curl -sf --cacert "${E2E_CA}" "${EXT_URL}/readyz"
K apply -f "${RUN}/webhook.yaml" >/dev/null
start_kube_scheduler() {
  cp_spawn "${RUN}" kube-scheduler-hami "${BIN}/kube-scheduler" \
    --config "${RUN}/scheduler-config.yaml" --bind-address 127.0.0.1 --secure-port "$(free_port)" -v=1
}
[[ -n "${SCHEDULE_ONLY}" ]] || start_kube_scheduler

# ---------------------------------------------------------------------------------------------
log "creating ${NODES} KWOK nodes × ${CARDS} GPUs"
python3 - "${RUN}" "${NODES}" "${CARDS}" <<'PY'
import sys
run, nodes, cards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
inv = ["nodes:"]
for n in range(nodes):
    name = f"scale-{n:05d}"
    inv.append(f"  - name: {name}\n    cards:")
    for c in range(cards):
        inv.append(f"      - {{uuid: GPU-{n:08x}-0000-4000-8000-{c:012x}, model: NVIDIA A100-SXM4-80GB, memoryMiB: 81920, numa: {c * 2 // cards}}}")
open(f"{run}/inventory.yaml", "w").write("\n".join(inv) + "\n")
chunks = 8
for k in range(chunks):
    with open(f"{run}/nodes.{k}.yaml", "w") as f:
        for n in range(k, nodes, chunks):
            name = f"scale-{n:05d}"
            f.write(f"""apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, type: kwok}}
  annotations: {{kwok.x-k8s.io/node: fake}}
status:
  allocatable: {{cpu: "256", memory: 2Ti, pods: "110", nvidia.com/gpu: "{cards * 10}"}}
  capacity: {{cpu: "256", memory: 2Ti, pods: "110", nvidia.com/gpu: "{cards * 10}"}}
---
""")
PY
# (Wait on these pids only: a bare `wait` would also wait for the components started above.)
jobs_=()
for k in 0 1 2 3 4 5 6 7; do K create -f "${RUN}/nodes.${k}.yaml" >/dev/null & jobs_+=($!); done
wait "${jobs_[@]}"
cp_spawn "${RUN}" node-agent env KUBECONFIG="${RUN}/kubeconfig-hami-device-plugin" \
  "${HAMI_BIN}" node-agent --inventory "${RUN}/inventory.yaml" \
  --device-config "${RUN}/device-config.yaml" --interval 60
metrics() { curl -sf "http://${METRICS_ADDR}/metrics"; }
want_cards=$((NODES * CARDS))
wait_for "the scheduler's ledger lists ${want_cards} cards" 300 bash -c \
  "[[ \$(curl -sf http://${METRICS_ADDR}/metrics | grep -c '^hami_gpu_memory_limit_bytes{') -ge ${want_cards} ]]"
log "cluster ready: ${NODES} nodes, ${want_cards} cards in the ledger"

cp_spawn "${RUN}" fake-kubelet python3 "${E2E}/lib/fake_kubelet.py" "${E2E_API}" "${E2E_CA}" \
  admin-token scale=1 "${RUN}/bound.tsv"

# ---------------------------------------------------------------------------------------------
# Pods: 70 % sharing 1-card, 20 % whole card, 10 % two cards; PAR files created in parallel.
python3 - "${RUN}" "${PODS}" "${PAR}" <<'PY'
import sys
run, pods, par = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = [open(f"{run}/pods.{k}.yaml", "w") for k in range(par)]
for i in range(pods):
    m = i % 10
    if m < 7:
        lim = 'nvidia.com/gpu: "1", nvidia.com/gpumem: "8000", nvidia.com/gpucores: "20"'
    elif m < 9:
        lim = 'nvidia.com/gpu: "1"'
    else:
        lim = 'nvidia.com/gpu: "2", nvidia.com/gpumem: "20000", nvidia.com/gpucores: "50"'
    files[i % par].write(f"""apiVersion: v1
kind: Pod
metadata: {{name: gpu-{i:05d}, namespace: default, labels: {{scale: "1"}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: registry.invalid/scale:never-pulled
    resources:
      limits: {{{lim}}}
---
""")
for f in files:
    f.close()
PY

# The API server's request counts (every verb and resource), latency histograms of its writes,
# watch events sent (per resource: the fan-out of every write to every watcher), registered
# watchers, webhook calls and etcd requests.
apiserver_metrics() {
  curl -sf --cacert "${E2E_CA}" -H "Authorization: Bearer admin-token" "${E2E_API}/metrics" \
    | grep -E '^(apiserver_request_(total\{|duration_seconds_(bucket|count|sum)\{.*verb="(PATCH|POST)")|apiserver_watch_events_(total|sizes_sum)\{|apiserver_registered_watchers\{|apiserver_longrunning_requests\{|apiserver_admission_webhook_request_total\{|etcd_request_duration_seconds_count\{)' || true
}
# CPU seconds (user + system) of each component, and of the whole machine, around the pod phase.
cpu_snapshot() {
  local name pid
  while read -r name pid; do
    [[ -r "/proc/${pid}/stat" ]] || continue
    awk -v n="${name}" -v t="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%s %.2f\n", n, ($12 + $13) / t}' "/proc/${pid}/stat"
  done < "${RUN}/pids"
  awk -v t="$(getconf CLK_TCK)" '$1=="cpu" {printf "machine %.2f\n", ($2 + $3 + $4 + $7 + $8) / t}' /proc/stat
}
# The idle cluster's background: requests the API server serves with no pod being created.
apiserver_metrics > "${RUN}/apiserver.idle0"
sleep "${IDLE_S}"
apiserver_metrics > "${RUN}/apiserver.idle1"
before_snapshots() {
  cpu_snapshot > "${RUN}/cpu.before"
  apiserver_metrics > "${RUN}/apiserver.before"
  metrics > "${RUN}/hami.before"
  LOAD_BEFORE="$(uptime)"
}
# Progress comes from the fake kubelet's pod watch (bound.tsv): scraping our /metrics during the
# run would cost the scheduler a full ledger snapshot per scrape (about 11 MB of text at 1000
# nodes × 8 cards and 5000 pods).
bound_count() { tail -n 1 "${RUN}/bound.tsv" 2>/dev/null | awk '{print $2 + 0}'; }
B0=0

log "creating ${PODS} GPU pods (${PAR} parallel streams)"
[[ -n "${SCHEDULE_ONLY}" ]] || before_snapshots
T0="$(now)"
TCREATE0="${T0}"
any_alive() { local p; for p in "$@"; do kill -0 "${p}" 2>/dev/null && return 0; done; return 1; }
jobs_=()
for k in $(seq 0 $((PAR - 1))); do
  K create -f "${RUN}/pods.${k}.yaml" > /dev/null 2>"${RUN}/create.${k}.err" & jobs_+=($!)
done
if [[ -n "${SCHEDULE_ONLY}" ]]; then
  wait "${jobs_[@]}" || true
  now > "${RUN}/created.at"
  log "${PODS} pods created in $(awk -v a="${TCREATE0}" -v b="$(cat "${RUN}/created.at")" 'BEGIN {printf "%.1f", b - a}') s; starting kube-scheduler (schedule-only)"
  # Every pod is pending and none was filtered: the measured window starts here.
  before_snapshots
  T0="$(now)"
  start_kube_scheduler
fi
# (PPROF_AT counts from T0: the first create, or kube-scheduler's start in schedule-only mode.)
if (( PPROF_S > 0 )); then
  ( sleep "${PPROF_AT}"; curl -sf --max-time $((PPROF_S + 60)) --cacert "${E2E_CA}" -H "Authorization: Bearer admin-token" \
      -o "${RUN}/apiserver.pprof" "${E2E_API}/debug/pprof/profile?seconds=${PPROF_S}" ) &
  PPROF_PID=$!
fi
deadline=$((SECONDS + TIMEOUT))
while :; do
  if [[ ! -f "${RUN}/created.at" ]] && ! any_alive "${jobs_[@]}"; then now > "${RUN}/created.at"; fi
  b=$(( $(bound_count) - B0 ))
  (( b >= PODS )) && break
  if (( SECONDS > deadline )); then log "timed out: ${b}/${PODS} bound after ${TIMEOUT}s"; break; fi
  sleep 0.5
done
T1="$(tail -n 1 "${RUN}/bound.tsv" | awk '{print $1}')"
if [[ -n "${PPROF_PID:-}" ]]; then
  wait "${PPROF_PID}" || log "apiserver profile not taken"
  if [[ -s "${RUN}/apiserver.pprof" ]] && command -v go >/dev/null; then
    go tool pprof -top -nodecount=45 "${BIN}/kube-apiserver" "${RUN}/apiserver.pprof" > "${RUN}/apiserver-pprof-top.txt" 2>&1 || true
    go tool pprof -top -cum -nodecount=60 "${BIN}/kube-apiserver" "${RUN}/apiserver.pprof" > "${RUN}/apiserver-pprof-cum.txt" 2>&1 || true
    log "apiserver CPU profile: ${RUN}/apiserver-pprof-top.txt, ${RUN}/apiserver-pprof-cum.txt"
  fi
fi
# Our scheduler's memory now (VmRSS), before the final /metrics scrape inflates it.
HAMI_PID="$(awk '$1=="hami-scheduler"{print $2}' "${RUN}/pids" | tail -1)"
HAMI_RSS_NOW="$(awk '/^VmRSS/ {print $2}' "/proc/${HAMI_PID}/status" 2>/dev/null || echo 0)"
HAMI_HWM_BEFORE_SCRAPE="$(awk '/^VmHWM/ {print $2}' "/proc/${HAMI_PID}/status" 2>/dev/null || echo 0)"
cp "${RUN}/bound.tsv" "${RUN}/progress.tsv"
LOAD_AFTER="$(uptime)"
[[ -n "${SCHEDULE_ONLY}" ]] || wait "${jobs_[@]}" || true
TC="$(cat "${RUN}/created.at" 2>/dev/null || echo "${T1}")"
# Schedule-only: the report's window opens at kube-scheduler's start (creation is before it).
[[ -z "${SCHEDULE_ONLY}" ]] || TC="${T0}"
cpu_snapshot > "${RUN}/cpu.after"
metrics > "${RUN}/hami.after"
apiserver_metrics > "${RUN}/apiserver.after"
rss() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
HAMI_RSS="$(rss "${HAMI_PID}")"
APISERVER_RSS="$(rss "$(awk '$1=="kube-apiserver"{print $2}' "${RUN}/pids")")"
KS_RSS="$(rss "$(awk '$1=="kube-scheduler-hami"{print $2}' "${RUN}/pids")")"
K get pods -l scale=1 -o json > "${RUN}/pods.json"
cat "${RUN}"/create.*.err > "${RUN}/create.err" || true

IDLE_S="${IDLE_S}" KWOK_ARGS="${KWOK_ARGS}" \
python3 "${E2E}/lib/scale_report.py" "${RUN}" "${PODS}" "${NODES}" "${CARDS}" "${T0}" "${TC}" "${T1}" \
  "${HAMI_RSS}" "${APISERVER_RSS}" "${KS_RSS}" "${NODE_POLICY}/${GPU_POLICY}" "${LOAD_BEFORE}" "${LOAD_AFTER}" \
  > "${RUN}/scale-report.raw.md"
if [[ -n "${SCHEDULE_ONLY}" ]]; then
  # The report's time origin is kube-scheduler's start, not the first create: say so in its rows,
  # and add the scheduling throughput between the first and the last bind the watch recorded
  # (progress.tsv: "<time of the latest bind seen> <pods bound>", sampled every 0.25 s, so the
  # rate is counted between two exactly timed binds: (bound at last − bound at first) / Δt).
  sed -e 's/^## Scale benchmark: /## Scale benchmark, schedule-only: /' \
      -e 's/| pods created (kubectl, parallel) | [^;]*;/| pods created (kubectl, parallel; before kube-scheduler started, outside the window) | '"${PODS}"' in '"$(awk -v a="${TCREATE0}" -v b="$(cat "${RUN}/created.at")" 'BEGIN {printf "%.1f", b - a}')"' s;/' \
      -e 's/| first create → last bind |\(.*\) end to end |/| kube-scheduler start → last bind |\1 |/' \
      -e 's/| time to 50 % \/ 90 % \/ 100 % bound |/| time to 50 % \/ 90 % \/ 100 % bound, from kube-scheduler start |/' \
      -e 's/^CPU seconds during the pod phase/CPU seconds during the scheduling phase/' \
      "${RUN}/scale-report.raw.md" > "${RUN}/scale-report.md"
  awk -v t0="${T0}" 'NR == 1 {f = $1; fn = $2} {l = $1; ln = $2}
    END {
      if (NR == 0) { print "\nno bind recorded"; exit }
      d = l - f
      printf "\n**Scheduling throughput, first → last bind: %d pods in %.1f s → %.0f pods/s** (first bind %.1f s after kube-scheduler started; bound %d at the first sample, %d at the last)\n",
        ln - fn, d, (d > 0 ? (ln - fn) / d : 0), f - t0, fn, ln
    }' "${RUN}/progress.tsv" >> "${RUN}/scale-report.md"
  cat "${RUN}/scale-report.md"
else
  tee "${RUN}/scale-report.md" < "${RUN}/scale-report.raw.md"
fi
{
  echo
  echo "hami scheduler memory at the last bind, before the final /metrics scrape: VmRSS $((HAMI_RSS_NOW / 1024)) MiB, VmHWM $((HAMI_HWM_BEFORE_SCRAPE / 1024)) MiB"
  echo "(one scrape of /metrics at this size: $(wc -c < "${RUN}/hami.after") bytes)"
} | tee -a "${RUN}/scale-report.md"
python3 "${E2E}/lib/ledger.py" "${RUN}/inventory.yaml" "${RUN}/pods.json" 10 && log "ledger check: no card over memory, cores or slots"
