# E2E tests, sourced by run.sh once the cluster is up. Each test_* function fails the run
# (set -e / fail) on the first wrong observation and cleans up its pods when it passes.
# Available: K (kubectl as admin), RUN, E2E, BIN, start_hami_scheduler, cp_stop, log.

fail() { log "FAIL: $*"; return 1; }

# wait_until SECONDS WHAT CMD...: poll CMD every 0.25 s.
wait_until() {
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || fail "timed out after ${secs}s: ${what}"
    sleep 0.25
  done
}

# pod NAME [gpu=N] [mem=MiB] [cores=PCT] [node=NAME] [scheduler=NAME] [ignore=1]: a pod manifest.
pod() {
  local name="$1"; shift
  local gpu="" mem="" cores="" node="" sched="" labels=""
  for kv in "$@"; do
    case "${kv}" in
      gpu=*) gpu="${kv#gpu=}" ;; mem=*) mem="${kv#mem=}" ;; cores=*) cores="${kv#cores=}" ;;
      node=*) node="${kv#node=}" ;; scheduler=*) sched="${kv#scheduler=}" ;;
      *) fail "pod ${name}: unknown option ${kv}" ;;
    esac
  done
  echo "apiVersion: v1"
  echo "kind: Pod"
  echo "metadata: {name: ${name}, namespace: default, labels: {e2e: \"1\"}}"
  echo "spec:"
  [[ -n "${sched}" ]] && echo "  schedulerName: ${sched}"
  [[ -n "${node}" ]] && echo "  nodeSelector: {kubernetes.io/hostname: ${node}}"
  echo "  containers:"
  echo "  - name: main"
  echo "    image: registry.invalid/e2e:never-pulled"
  if [[ -n "${gpu}" ]]; then
    echo "    resources:"
    echo "      limits:"
    echo "        nvidia.com/gpu: \"${gpu}\""
    [[ -n "${mem}" ]] && echo "        nvidia.com/gpumem: \"${mem}\""
    [[ -n "${cores}" ]] && echo "        nvidia.com/gpucores: \"${cores}\""
  fi
  return 0
}

jp() { K get pod "$1" -o "jsonpath=$2"; }
ann() { K get pod "$1" -o json | python3 -c "import json,sys; print((json.load(sys.stdin)['metadata'].get('annotations') or {}).get('$2',''))"; }
phase_is() { [[ "$(jp "$1" '{.status.phase}')" == "$2" ]]; }
bound() { [[ -n "$(jp "$1" '{.spec.nodeName}')" ]]; }
alloc_file() { echo "${RUN}/alloc/default.$1.json"; }
gone() { ! K get pod "$1" >/dev/null 2>&1; }
cleanup_pods() {
  K delete pods -l e2e=1 --wait=false >/dev/null 2>&1 || true
  wait_until 60 "test pods deleted" bash -c "[[ -z \"\$('${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get pods -l e2e=1 -o name)\" ]]"
}
check_ledger() {
  K get pods -A -o json > "${RUN}/pods.json"
  python3 "${E2E}/lib/ledger.py" "${RUN}/inventory.yaml" "${RUN}/pods.json" 10 --alloc "${RUN}/alloc" "$@"
}
# A FailedScheduling-type event for pod $1 whose message contains $2.
event_has() {
  K get events -n default --field-selector "involvedObject.name=$1" -o jsonpath='{range .items[*]}{.reason}{": "}{.message}{"\n"}{end}' \
    | grep -E "^(FailedScheduling|FilteringFailed): .*$2"
}

# ---------------------------------------------------------------------------------------------
# A GPU pod: mutated by our webhook, filtered and bound through the real kube-scheduler,
# annotated as HAMi does, Allocate hands its container the granted card and limits, then Running.
test_gpu_pod() {
  pod gp1 gpu=1 mem=3000 cores=30 | K create -f - >/dev/null
  [[ "$(jp gp1 '{.spec.schedulerName}')" == hami-scheduler ]] || fail "gp1 not mutated: schedulerName $(jp gp1 '{.spec.schedulerName}')"
  wait_until 60 "gp1 bound" bound gp1
  local node; node="$(jp gp1 '{.spec.nodeName}')"
  [[ "$(ann gp1 hami.io/vgpu-node)" == "${node}" ]] || fail "hami.io/vgpu-node $(ann gp1 hami.io/vgpu-node) != ${node}"
  local grant; grant="$(ann gp1 hami.io/vgpu-devices-allocated)"
  [[ "${grant}" =~ ^(GPU-[0-9a-f-]+),NVIDIA,3000,30:\;$ ]] || fail "gp1 grant ${grant}"
  local uuid="${BASH_REMATCH[1]}"
  wait_until 60 "Allocate for gp1" test -f "$(alloc_file gp1)"
  wait_until 30 "gp1 bind phase success" bash -c "[[ \$('${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get pod gp1 -o jsonpath='{.metadata.annotations.hami\\.io/bind-phase}') == success ]]"
  python3 - "$(alloc_file gp1)" "${uuid}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); uuid = sys.argv[2]
(c,) = r["containers"]
assert not c.get("error"), c
assert [i.rsplit("-", 1)[0] for i in c["deviceIDs"]] == [uuid], c["deviceIDs"]
e = c["envs"]
assert e.get("NVIDIA_VISIBLE_DEVICES") == uuid, e
assert e.get("CUDA_DEVICE_MEMORY_LIMIT_0") == "3000m", e
assert e.get("CUDA_DEVICE_SM_LIMIT") == "30", e
print("allocate ok:", c["deviceIDs"], {k: e[k] for k in sorted(e) if k.startswith(("CUDA_DEVICE", "NVIDIA"))})
PY
  wait_until 30 "gp1 Running (KWOK after Allocate)" phase_is gp1 Running
  [[ -z "$(ann gp1 hami.io/vgpu-devices-to-allocate | tr -d ';')" ]] || fail "to-allocate not emptied: $(ann gp1 hami.io/vgpu-devices-to-allocate)"
  check_ledger
  cleanup_pods
}

# A pod without GPU requests: untouched by the webhook, scheduled by the default scheduler.
test_plain_pod() {
  pod plain1 | K create -f - >/dev/null
  [[ "$(jp plain1 '{.spec.schedulerName}')" == default-scheduler ]] || fail "plain1 schedulerName $(jp plain1 '{.spec.schedulerName}')"
  wait_until 60 "plain1 bound" bound plain1
  wait_until 30 "plain1 Running" phase_is plain1 Running
  [[ -z "$(ann plain1 hami.io/vgpu-node)" ]] || fail "plain1 got HAMi annotations"
  # The harness admits every pod; this one must have had no device container to allocate.
  if [[ -f "$(alloc_file plain1)" ]]; then
    python3 -c 'import json,sys; sys.exit(1 if json.load(open(sys.argv[1]))["containers"] else 0)' "$(alloc_file plain1)" \
      || fail "plain1 went through Allocate"
  fi
  cleanup_pods
}

# A pod that fits nowhere stays Pending with a FailedScheduling event carrying our reason.
test_unschedulable() {
  pod huge1 gpu=1 mem=100000 | K create -f - >/dev/null
  wait_until 60 "FailedScheduling event for huge1 with our reason" event_has huge1 "CardInsufficientMemory"
  event_has huge1 "CardInsufficientMemory" | head -2
  sleep 2
  phase_is huge1 Pending || fail "huge1 not Pending"
  ! bound huge1 || fail "huge1 was bound"
  cleanup_pods
}

# Deleting a pod frees its share for the next one.
test_delete_frees() {
  pod fill1 gpu=2 mem=12000 node=gpu-b | K create -f - >/dev/null
  wait_until 60 "fill1 Running" phase_is fill1 Running
  pod fill2 gpu=2 mem=12000 node=gpu-b | K create -f - >/dev/null
  wait_until 60 "fill2 rejected while fill1 holds gpu-b" event_has fill2 "CardInsufficientMemory"
  ! bound fill2 || fail "fill2 bound while gpu-b was full"
  K delete pod fill1 >/dev/null
  wait_until 60 "fill1 gone" gone fill1
  wait_until 120 "fill2 bound after fill1 left" bound fill2
  [[ "$(jp fill2 '{.spec.nodeName}')" == gpu-b ]] || fail "fill2 on $(jp fill2 '{.spec.nodeName}')"
  wait_until 60 "fill2 Running" phase_is fill2 Running
  check_ledger
  cleanup_pods
}

# Webhook down: failurePolicy Ignore (the chart's default) admits the pod unmutated.
test_webhook_down() {
  local policy; policy="$(K get mutatingwebhookconfiguration hami-rs-webhook -o jsonpath='{.webhooks[0].failurePolicy}')"
  cp_stop "${RUN}" hami-scheduler
  if [[ "${policy}" == Ignore ]]; then
    pod wd1 gpu=1 mem=1000 | K create -f - >/dev/null || fail "creation refused with failurePolicy Ignore"
    [[ "$(jp wd1 '{.spec.schedulerName}')" == default-scheduler ]] || fail "wd1 mutated with the webhook down"
  else
    if pod wd1 gpu=1 mem=1000 | K create -f - >/dev/null 2>&1; then fail "creation admitted with failurePolicy ${policy}"; fi
  fi
  start_hami_scheduler
  cleanup_pods
}

# A card that leaves a node's inventory gets no new pods.
test_card_removed() {
  local gone_uuid=GPU-0c000000-0000-4000-8000-000000000001
  python3 - "${RUN}/inventory.yaml" "${gone_uuid}" <<'PY'
import sys, yaml
p, gone = sys.argv[1], sys.argv[2]
d = yaml.safe_load(open(p))
for n in d["nodes"]:
    n["cards"] = [c for c in n.get("cards", []) if c["uuid"] != gone]
yaml.safe_dump(d, open(p + ".tmp", "w"), sort_keys=False)
PY
  mv "${RUN}/inventory.yaml.tmp" "${RUN}/inventory.yaml"
  wait_until 30 "gpu-c registration without the removed card" bash -c "! '${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get node gpu-c -o jsonpath='{.metadata.annotations.hami\\.io/node-nvidia-register}' | grep -q ${gone_uuid}"
  sleep 1  # the scheduler's node watch
  local i
  for i in 1 2 3; do pod cr${i} gpu=1 mem=10000 node=gpu-c | K create -f - >/dev/null; done
  wait_until 60 "one pod on the remaining card" bash -c "[[ \$('${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get pods -l e2e=1 -o jsonpath='{range .items[*]}{.spec.nodeName}{\"\\n\"}{end}' | grep -c gpu-c) -ge 1 ]]"
  sleep 3
  local n; n="$(K get pods -l e2e=1 -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | grep -c gpu-c || true)"
  [[ "${n}" == 1 ]] || fail "${n} pods of 10000 MiB on gpu-c with one 15360 MiB card left"
  check_ledger --forbid "${gone_uuid}"
  cleanup_pods
}

# Killing and restarting our scheduler in the middle of a burst loses nothing and double-
# allocates nothing.
test_restart_burst() {
  local i total=30
  for i in $(seq 1 ${total}); do
    # schedulerName set explicitly: pods created while our webhook is down are ours too.
    pod burst${i} gpu=1 mem=4000 cores=10 scheduler=hami-scheduler | K create -f - >/dev/null
    if (( i == 10 )); then
      # SIGKILL: no graceful shutdown.
      kill -KILL -- "-$(awk '$1=="hami-scheduler"{print $2}' "${RUN}/pids" | tail -1)" 2>/dev/null || true
      awk '$1!="hami-scheduler"' "${RUN}/pids" > "${RUN}/pids.tmp" && mv "${RUN}/pids.tmp" "${RUN}/pids"
    fi
    if (( i == 15 )); then start_hami_scheduler; fi
  done
  wait_until 300 "every burst pod of hami-scheduler bound and Running" bash -c "
    '${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get pods -l e2e=1 -o jsonpath='{range .items[*]}{.spec.schedulerName} {.status.phase}{\"\\n\"}{end}' \
      | awk '\$1==\"hami-scheduler\" && \$2!=\"Running\" {bad=1} END {exit bad}'"
  local ours; ours="$(K get pods -l e2e=1 -o jsonpath='{range .items[*]}{.spec.schedulerName}{"\n"}{end}' | grep -c hami-scheduler || true)"
  log "burst: ${ours}/${total} pods went through hami-scheduler"
  (( ours == total )) || fail "only ${ours} of ${total} burst pods belong to hami-scheduler"
  check_ledger
  cleanup_pods
}

ALL_TESTS="gpu_pod plain_pod unschedulable delete_frees card_removed restart_burst webhook_down"

run_tests() {
  local list="${1:-${ALL_TESTS}}" t t0 passed=0
  for t in ${list}; do
    t0=$SECONDS
    log "=== test ${t}"
    "test_${t}"
    log "--- ok ${t} ($((SECONDS - t0))s)"
    passed=$((passed + 1))
  done
  log "${passed} e2e tests passed"
}
