#!/usr/bin/env bash
# End-to-end tests on a real control plane (etcd, kube-apiserver, kube-scheduler, KWOK) built
# from the Go module proxy. One command:
#
#   e2e/run.sh                 build (once) + start everything + run every test + tear down
#   E2E_TESTS="gpu_pod plain_pod" e2e/run.sh    run only these tests
#   E2E_KEEP=1 e2e/run.sh      leave the run folder (logs) in e2e/.run/ after the run
#   HAMI_SCHEDULER_ARGS="--node-scheduler-policy spread --gpu-scheduler-policy binpack" \
#     PARITY_POLICY=spread-binpack E2E_TESTS=parity e2e/run.sh    parity under another policy
#
# Everything listens on 127.0.0.1; everything is stopped on exit, also when a test fails.
set -euo pipefail

E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${E2E}/.." && pwd)"
# shellcheck source=controlplane.sh
source "${E2E}/controlplane.sh"

T0=$SECONDS
cmd_build
log "control-plane binaries ready ($((SECONDS - T0))s)"

if [[ -z "${HAMI_BIN:-}" ]]; then
  (cd "${ROOT}" && cargo build --quiet --bin hami)
  HAMI_BIN="${CARGO_TARGET_DIR:-${ROOT}/target}/debug/hami"
fi
log "hami binary: ${HAMI_BIN}"

mkdir -p "${E2E}/.run"
RUN="$(mktemp -d "${E2E}/.run/run.XXXXXX")"
finish() {
  local rc=$?
  cmd_down "${RUN}" || true
  if (( rc != 0 )); then
    log "FAILED (rc ${rc}); logs of this run:"
    for f in "${RUN}"/logs/*.log; do
      echo "----- ${f##*/} (last 30 lines)" >&2; tail -n 30 "${f}" >&2 || true
    done
  fi
  if [[ -z "${E2E_KEEP:-}" && ${rc} -eq 0 ]]; then rm -rf "${RUN}"; else log "run folder kept: ${RUN}"; fi
  exit "${rc}"
}
trap finish EXIT
trap 'exit 130' INT TERM

# A private copy: a rebuild of target/ during the run must not change the binary under test.
cp "${HAMI_BIN}" "${RUN}/hami"
HAMI_BIN="${RUN}/hami"
cmd_up "${RUN}"
# shellcheck disable=SC1091
source "${RUN}/env"
K() { "${BIN}/kubectl" --kubeconfig "${RUN}/kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------------
# The chart, rendered by helm and applied (RBAC, ConfigMaps, webhook) with local endpoints.
NS=kube-system
"${BIN}/helm" template hami-rs "${ROOT}/deploy/helm/hami-rs" --namespace "${NS}" > "${RUN}/rendered.yaml"
if ! cmp -s "${RUN}/rendered.yaml" "${ROOT}/deploy/manifests/hami-rs.yaml"; then
  log "WARNING: deploy/manifests/hami-rs.yaml is not the current render of the chart (see deploy/manifests/README.md)"
fi
EXT_PORT="$(free_port)"
EXT_URL="https://127.0.0.1:${EXT_PORT}"
# Plain-HTTP metrics on loopback (the parity replay reads the ledger from them).
METRICS_ADDR="127.0.0.1:$(free_port)"
METRICS_URL="http://${METRICS_ADDR}/metrics"
python3 "${E2E}/lib/chart.py" "${RUN}/rendered.yaml" "${RUN}" "${EXT_URL}" "${E2E_CA}" \
  "${RUN}/kubeconfig-hami-scheduler"
K apply -f "${RUN}/rbac.yaml" >/dev/null
K apply -f "${RUN}/configmaps.yaml" >/dev/null

# ---------------------------------------------------------------------------------------------
# Our scheduler (extender + webhook, TLS), as the chart's ServiceAccount.
start_hami_scheduler() {
  cp_spawn "${RUN}" hami-scheduler env KUBECONFIG="${RUN}/kubeconfig-hami-scheduler" \
    POD_NAME=hami-e2e POD_NAMESPACE="${NS}" RUST_LOG="${RUST_LOG:-info}" \
    "${HAMI_BIN}" scheduler --http_bind "127.0.0.1:${EXT_PORT}" \
    --cert_file "${E2E_CERTS}/serving.crt" --key_file "${E2E_CERTS}/serving.key" \
    --device-config-file "${RUN}/device-config.yaml" --metrics-bind-address "${METRICS_ADDR}" \
    --leader-elect=true --leader-elect-resource-namespace "${NS}" ${HAMI_SCHEDULER_ARGS:-}
  wait_for "hami scheduler /readyz" 60 curl -sf --cacert "${E2E_CA}" "${EXT_URL}/readyz"
}
start_hami_scheduler
K apply -f "${RUN}/webhook.yaml" >/dev/null
# kube-scheduler with the chart's KubeSchedulerConfiguration (profile hami-scheduler + extender).
cp_spawn "${RUN}" kube-scheduler-hami "${BIN}/kube-scheduler" \
  --config "${RUN}/scheduler-config.yaml" --bind-address 127.0.0.1 --secure-port "$(free_port)" -v=2

# ---------------------------------------------------------------------------------------------
# Fake nodes (KWOK) and their devices: the node agent registers them from a fake inventory.
cat > "${RUN}/inventory.yaml" <<'INV'
nodes:
  - name: gpu-a
    cards:
      - {uuid: GPU-0a000000-0000-4000-8000-000000000000, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960}
      - {uuid: GPU-0a000000-0000-4000-8000-000000000001, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960}
      - {uuid: GPU-0a000000-0000-4000-8000-000000000002, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960}
      - {uuid: GPU-0a000000-0000-4000-8000-000000000003, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960}
  - name: gpu-b
    cards:
      - {uuid: GPU-0b000000-0000-4000-8000-000000000000, model: Tesla T4, memoryMiB: 15360}
      - {uuid: GPU-0b000000-0000-4000-8000-000000000001, model: Tesla T4, memoryMiB: 15360}
  - name: gpu-c
    cards:
      - {uuid: GPU-0c000000-0000-4000-8000-000000000000, model: Tesla T4, memoryMiB: 15360}
      - {uuid: GPU-0c000000-0000-4000-8000-000000000001, model: Tesla T4, memoryMiB: 15360}
INV
make_node() { # NAME GPU_COUNT
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $1
  labels: {kubernetes.io/hostname: $1, type: kwok, gpu: "$( (( $2 > 0 )) && echo on || echo off)"}
  annotations: {kwok.x-k8s.io/node: fake}
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "110", nvidia.com/gpu: "$(( $2 * 10 ))"}
  capacity: {cpu: "64", memory: 512Gi, pods: "110", nvidia.com/gpu: "$(( $2 * 10 ))"}
---
NODE
}
{ make_node gpu-a 4; make_node gpu-b 2; make_node gpu-c 2; make_node cpu-1 0; } | K create -f - >/dev/null
wait_for "nodes Ready (KWOK)" 60 bash -c "[[ \$('${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}' | grep -c True) == 4 ]]"

cp_spawn "${RUN}" node-agent env KUBECONFIG="${RUN}/kubeconfig-hami-device-plugin" \
  "${HAMI_BIN}" node-agent --inventory "${RUN}/inventory.yaml" \
  --device-config "${RUN}/device-config.yaml" --interval 2
for n in gpu-a gpu-b gpu-c; do
  wait_for "registration of ${n}" 60 bash -c "'${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get node ${n} -o jsonpath='{.metadata.annotations.hami\\.io/node-nvidia-register}' | grep -q GPU-"
  mkdir -p "${RUN}/plugins/${n}"
  cp_spawn "${RUN}" "kubelet-harness-${n}" "${BIN}/kubelet-harness" --kubeconfig "${RUN}/kubeconfig" \
    --plugin-dir "${RUN}/plugins/${n}" --node "${n}" --out "${RUN}/alloc"
  wait_for "harness socket ${n}" 30 test -S "${RUN}/plugins/${n}/kubelet.sock"
  cp_spawn "${RUN}" "device-plugin-${n}" env KUBECONFIG="${RUN}/kubeconfig-hami-device-plugin" \
    "${HAMI_BIN}" device-plugin --node-name "${n}" --inventory "${RUN}/inventory.yaml" \
    --device-config "${RUN}/device-config.yaml" --plugin-dir "${RUN}/plugins/${n}" \
    --host-vgpu-dir /usr/local/vgpu
done
for n in gpu-a gpu-b gpu-c; do
  wait_for "plugin registered on ${n}" 60 grep -q "device list" "${RUN}/logs/kubelet-harness-${n}.log"
done
log "cluster ready in $((SECONDS - T0))s"

# ---------------------------------------------------------------------------------------------
# shellcheck source=tests.sh
source "${E2E}/tests.sh"
run_tests "${E2E_TESTS:-}"
log "e2e passed in $((SECONDS - T0))s"
