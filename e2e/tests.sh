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

# Sim-to-real parity: scenarios/parity.yaml (60 nodes, 230 pods, departures) run by the
# simulator and replayed step by step on this control plane — KWOK nodes registered by our node
# agent from the scenario's inventory, pods created in the simulator's scheduling order and each
# waited for, departures as deletions. Every placement (node, cards, memory and cores per
# container) must be identical; `hami replay run` prints the first difference otherwise.
test_parity() {
  local sc="${ROOT}/scenarios/parity.yaml" out="${RUN}/parity" ns=hami-replay rc=0
  mkdir -p "${out}"
  "${HAMI_BIN}" replay inventory "${sc}" --out "${out}/inventory.yaml"
  cp_spawn "${RUN}" node-agent-parity env KUBECONFIG="${RUN}/kubeconfig-hami-device-plugin" \
    "${HAMI_BIN}" node-agent --inventory "${out}/inventory.yaml" \
    --device-config "${RUN}/device-config.yaml" --interval 1
  # PARITY_POLICY: another policy of the scenario, with the scheduler started to match
  # (HAMI_SCHEDULER_ARGS in run.sh).
  "${HAMI_BIN}" replay run "${sc}" --kubeconfig "${RUN}/kubeconfig" --policy "${PARITY_POLICY:-hami-default}" \
    --namespace "${ns}" --metrics-url "${METRICS_URL}" --out "${out}" || rc=$?
  cp_stop "${RUN}" node-agent-parity
  K delete pods -n "${ns}" --all --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  K delete nodes -l "hami.io/replay=${ns}" --wait=false >/dev/null 2>&1 || true
  (( rc == 0 )) || fail "parity: the replay differs from the simulator or failed (rc ${rc}); plan and observations in ${out}"
  # The next replay creates the same pods and nodes.
  wait_until 60 "replay pods and nodes deleted" bash -c "[[ -z \"\$('${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get pods -n '${ns}' -o name; '${BIN}/kubectl' --kubeconfig '${RUN}/kubeconfig' get nodes -l 'hami.io/replay=${ns}' -o name)\" ]]"
}

# Parity under the scenario's second policy (node spread, GPU binpack: 15 unschedulable
# verdicts, 8-card pods waiting for departures): our scheduler runs with those policies for the
# test, then as before.
test_parity_spread() {
  local saved="${HAMI_SCHEDULER_ARGS:-}" rc=0
  cp_stop "${RUN}" hami-scheduler
  HAMI_SCHEDULER_ARGS="--node-scheduler-policy spread --gpu-scheduler-policy binpack" start_hami_scheduler
  PARITY_POLICY=spread-binpack test_parity || rc=$?
  cp_stop "${RUN}" hami-scheduler
  HAMI_SCHEDULER_ARGS="${saved}" start_hami_scheduler
  (( rc == 0 )) || fail "parity under spread-binpack"
}

ALL_TESTS="gpu_pod plain_pod unschedulable delete_frees card_removed restart_burst webhook_down parity parity_spread"

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

# ---------------------------------------------------------------------------------------------
# hami record: the live cluster's GPU nodes, cards and GPU pod history (one pod deleted on the
# way) become a scenario; the recorded nodes, cards and pods are what the cluster has, and
# `hami sim` replays it under two policies with every pod placed.
test_record() {
  local dir="${RUN}/record"; mkdir -p "${dir}"
  "${HAMI_BIN}" record --kubeconfig "${RUN}/kubeconfig" --follow 5m --name e2e-recorded \
    --out "${dir}/scenario.yaml" > "${dir}/record.log" 2>&1 &
  local rec_pid=$!
  sleep 2  # first listing, watch started
  pod rec-share1 gpu=1 mem=3000 cores=30 | K create -f - >/dev/null
  pod rec-share2 gpu=1 mem=5000 cores=50 | K create -f - >/dev/null
  pod rec-whole gpu=2 node=gpu-a | K create -f - >/dev/null
  pod rec-gone gpu=1 mem=2000 | K create -f - >/dev/null
  # A type-constrained pod (annotation) with an init container asking a card too.
  cat <<'POD' | K create -f - >/dev/null
apiVersion: v1
kind: Pod
metadata:
  name: rec-typed
  namespace: default
  labels: {e2e: "1"}
  annotations: {nvidia.com/use-gputype: T4}
spec:
  priority: 0
  initContainers:
  - name: warm
    image: registry.invalid/e2e:never-pulled
    resources: {limits: {nvidia.com/gpu: "1", nvidia.com/gpumem: "1000"}}
  containers:
  - name: main
    image: registry.invalid/e2e:never-pulled
    resources: {limits: {nvidia.com/gpu: "1", nvidia.com/gpumem: "4000", nvidia.com/gpucores: "20"}, requests: {cpu: "1"}}
POD
  # Bad inputs: a node whose registration does not decode, a pod whose annotation does not
  # translate (annotated after admission; no scheduler picks it up). Both are warned about by
  # name and key; everything else is still recorded.
  K annotate node cpu-1 'hami.io/node-nvidia-register=[{"id": 7' >/dev/null
  pod rec-bad gpu=1 mem=1000 scheduler=no-such-scheduler | K create -f - >/dev/null
  K annotate pod rec-bad nvidia.com/numa-bind=maybe >/dev/null
  local p
  for p in rec-share1 rec-share2 rec-whole rec-gone rec-typed; do wait_until 90 "${p} bound" bound "${p}"; done
  sleep 2
  K delete pod rec-gone --wait=false >/dev/null
  wait_until 60 "rec-gone gone" gone rec-gone
  sleep 1
  kill -TERM "${rec_pid}"
  wait "${rec_pid}" || { cat "${dir}/record.log" >&2; fail "hami record exited with $?"; }
  cat "${dir}/record.log"
  K annotate node cpu-1 hami.io/node-nvidia-register- >/dev/null
  grep -q "^warning: node cpu-1: hami.io/node-nvidia-register: registration does not decode" "${dir}/record.log" \
    || fail "no warning naming node cpu-1 and its registration key"
  grep -q "^warning: pod default/rec-bad: annotation nvidia.com/numa-bind: " "${dir}/record.log" \
    || fail "no warning naming pod rec-bad and its annotation"
  K get nodes -o json > "${dir}/nodes.json"
  K get pods -A -o json > "${dir}/pods.json"
  python3 - "${dir}/scenario.yaml" "${dir}/nodes.json" "${dir}/pods.json" <<'PY'
import json, sys, yaml
sc = yaml.safe_load(open(sys.argv[1]))
nodes = json.load(open(sys.argv[2]))["items"]
pods = json.load(open(sys.argv[3]))["items"]
# Nodes and cards: exactly the registered GPU nodes, every card with its UUID, model, memory.
want = {}
for n in nodes:
    reg = (n["metadata"].get("annotations") or {}).get("hami.io/node-nvidia-register")
    if reg and n["metadata"]["name"] != "cpu-1":  # cpu-1: the undecodable one
        want[n["metadata"]["name"]] = [(d["id"], d["type"], d["devmem"], d["count"], d["devcore"]) for d in json.loads(reg)]
got = {n["name"]: [(c["id"], c["model"], int(c["memory"].removesuffix("Mi")), c["split"], c["cores"]) for c in n["cards"]]
       for n in sc["cluster"]["nodes"]}
assert got == want, f"recorded nodes {got}\n!= cluster {want}"
assert "cpu-1" not in got
# Pods: every live GPU pod of the cluster with its resources as in its spec; the deleted one
# with a departure; the live ones without.
rec = {p["name"]: p for p in sc["workload"]["pods"]}
gpu = lambda c: "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
live = {f'{p["metadata"]["namespace"]}/{p["metadata"]["name"]}': p for p in pods
        if any(gpu(c) for c in p["spec"]["containers"] + p["spec"].get("initContainers", []))}
assert "default/rec-bad" not in rec, "the pod whose request does not translate was recorded"
for name, p in live.items():
    if name == "default/rec-bad":
        continue
    assert name in rec, f"live GPU pod {name} not recorded; recorded {sorted(rec)}"
    r = rec[name]
    for kind, field in (("containers", "containers"), ("initContainers", "init_containers")):
        spec_limits = [{k: str(v) for k, v in ((c.get("resources") or {}).get("limits") or {}).items()} for c in p["spec"].get(kind, [])]
        rec_limits = [{k: str(v) for k, v in (c.get("limits") or {}).items()} for c in r.get(field, [])]
        assert spec_limits == rec_limits, f"{name} {kind}: {rec_limits} != {spec_limits}"
    assert "duration" not in r, f"{name} is still running but has a duration"
gone = rec.get("default/rec-gone")
assert gone is not None, f"the deleted pod was not recorded: {sorted(rec)}"
assert "duration" in gone, f"the deleted pod has no departure: {gone}"
assert rec["default/rec-typed"]["annotations"] == {"nvidia.com/use-gputype": "T4"}, rec["default/rec-typed"]
expected = {"default/rec-share1", "default/rec-share2", "default/rec-whole", "default/rec-gone", "default/rec-typed"}
assert expected <= set(rec), sorted(rec)
print(f"recorded: {len(got)} GPU nodes, {sum(map(len, got.values()))} cards, {len(rec)} pods "
      f"(rec-gone: at {gone['at']}, duration {gone['duration']}) match the cluster")
PY
  "${HAMI_BIN}" sim validate "${dir}/scenario.yaml"
  # Two policies: binpack and fgd.
  python3 - "${dir}/scenario.yaml" <<'PY'
import sys, yaml
p = sys.argv[1]; d = yaml.safe_load(open(p))
d["policies"] = [x for x in d["policies"] if x["name"] in ("binpack", "fgd")]
yaml.safe_dump(d, open(p.replace(".yaml", "-2.yaml"), "w"), sort_keys=False)
PY
  "${HAMI_BIN}" sim run "${dir}/scenario-2.yaml" --out "${dir}/sim" --quiet --jobs 1 > "${dir}/sim.log"
  python3 - "${dir}/sim/results.json" "${dir}/scenario.yaml" <<'PY'
import json, sys, yaml
r = json.load(open(sys.argv[1])); n = len(yaml.safe_load(open(sys.argv[2]))["workload"]["pods"])
pol = sorted({x["policy"] for x in r["runs"]})
assert pol == ["binpack", "fgd"], pol
for x in r["runs"]:
    m = x["metrics"]
    assert m["arrived"] == n and m["placed"] == n, (x["policy"], n, {k: m[k] for k in ("arrived", "placed", "unschedulable")}, x["errors"])
print("sim replay:", {x["policy"]: (x["metrics"]["arrived"], x["metrics"]["placed"]) for x in r["runs"]})
PY
  cleanup_pods
}
ALL_TESTS="${ALL_TESTS} record"
