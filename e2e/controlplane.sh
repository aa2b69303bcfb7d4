#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from the Go module proxy only.
#
#   e2e/controlplane.sh build        build the pinned binaries into e2e/bin (once per machine)
#   e2e/controlplane.sh check        exit 0 when they are all built (the CI guard)
#   e2e/controlplane.sh up DIR       start etcd + kube-apiserver (+ kube-scheduler, KWOK) under DIR;
#                                    writes DIR/env (sourceable) and DIR/kubeconfig; returns when healthy
#   e2e/controlplane.sh down DIR     stop everything started by `up DIR`
#
# Every component listens on 127.0.0.1 only. Nothing is downloaded except through `go build`
# (the Go module proxy); the Go default caches (GOMODCACHE, GOCACHE) make a second build fast.
set -euo pipefail

E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${E2E}/bin"

# Pinned versions. The k8s wrapper module replaces every k8s.io/<staging> module with v0.X.Y
# (the list is copied from kubernetes' own go.mod replace block).
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.19.5

log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# build_one NAME MODULE_DIR PACKAGE VERSION
build_one() {
  local name="$1" dir="$2" pkg="$3" version="$4"
  local stamp="${BIN}/${name}.version"
  if [[ -x "${BIN}/${name}" && -f "${stamp}" && "$(cat "${stamp}")" == "${version}" ]]; then
    log "${name} ${version}: already built"
    return 0
  fi
  log "building ${name} ${version} (${pkg})"
  local t0=$SECONDS
  (
    cd "${E2E}/gomod/${dir}"
    # -mod=mod: the wrapper go.mod is resolved through the module proxy (go.sum is kept in git).
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w" -o "${BIN}/${name}.tmp" "${pkg}"
  )
  mv "${BIN}/${name}.tmp" "${BIN}/${name}"
  echo "${version}" > "${stamp}"
  log "${name} built in $((SECONDS - t0))s"
}

# The harness is our own code: its stamp is a hash of its source.
harness_hash() { sha256sum "${E2E}/gomod/k8s/kubelet-harness/main.go" | cut -c1-12; }

cmd_build() {
  mkdir -p "${BIN}"
  local only="${1:-all}"
  case "${only}" in all|etcd) build_one etcd etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" ;; esac
  case "${only}" in all|helm) build_one helm helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}" ;; esac
  case "${only}" in all|kwok) build_one kwok kwok sigs.k8s.io/kwok/cmd/kwok "${KWOK_VERSION}" ;; esac
  case "${only}" in all|kube-apiserver) build_one kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "${K8S_VERSION}" ;; esac
  case "${only}" in all|kube-scheduler) build_one kube-scheduler k8s k8s.io/kubernetes/cmd/kube-scheduler "${K8S_VERSION}" ;; esac
  case "${only}" in all|kubectl) build_one kubectl k8s k8s.io/kubernetes/cmd/kubectl "${K8S_VERSION}" ;; esac
  case "${only}" in all|kubelet-harness) build_one kubelet-harness k8s ./kubelet-harness "${K8S_VERSION}-$(harness_hash)" ;; esac
}

# ---------------------------------------------------------------------------------------------
# Processes: each component runs in its own process group (setsid); DIR/pids lists "name pgid".

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# cp_spawn DIR NAME CMD...: start CMD in a new process group, logging to DIR/logs/NAME.log.
cp_spawn() {
  local dir="$1" name="$2"; shift 2
  mkdir -p "${dir}/logs"
  setsid "$@" >"${dir}/logs/${name}.log" 2>&1 < /dev/null &
  local pid=$!
  echo "${name} ${pid}" >> "${dir}/pids"
  log "started ${name} (pid ${pid}), log ${dir}/logs/${name}.log"
}

# cp_stop DIR NAME: stop one component (TERM, then KILL after 5 s) and forget it.
cp_stop() {
  local dir="$1" name="$2" pid
  [[ -f "${dir}/pids" ]] || return 0
  pid="$(awk -v n="${name}" '$1==n {print $2}' "${dir}/pids" | tail -1)"
  [[ -n "${pid}" ]] || return 0
  kill -TERM -- "-${pid}" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 -- "-${pid}" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-${pid}" 2>/dev/null || true
  awk -v n="${name}" '$1!=n' "${dir}/pids" > "${dir}/pids.tmp" && mv "${dir}/pids.tmp" "${dir}/pids"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then log "timed out after ${secs}s waiting for ${what}"; return 1; fi
    sleep 0.3
  done
}

gen_certs() {
  local c="$1/certs"
  mkdir -p "${c}"
  (
    cd "${c}"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj "/CN=hami-e2e-ca" 2>/dev/null
    # One serving certificate for every local TLS server (API server, extender/webhook).
    openssl req -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr \
      -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    # Service-account token signing key pair.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  # Static tokens: admin, and the identities the chart's RBAC is written for.
  local ns="${HAMI_E2E_NAMESPACE:-kube-system}" rel="${HAMI_E2E_RELEASE:-hami-rs}"
  cat > "${c}/tokens.csv" <<TOKENS
admin-token,admin,admin,"system:masters"
kube-scheduler-token,system:kube-scheduler,kube-scheduler
hami-scheduler-token,system:serviceaccount:${ns}:${rel}-scheduler,hami-scheduler,"system:serviceaccounts,system:serviceaccounts:${ns}"
hami-device-plugin-token,system:serviceaccount:${ns}:${rel}-device-plugin,hami-device-plugin,"system:serviceaccounts,system:serviceaccounts:${ns}"
TOKENS
}

# write_kubeconfig FILE SERVER CA TOKEN
write_kubeconfig() {
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $2
    certificate-authority: $3
contexts:
- name: e2e
  context: {cluster: e2e, user: u}
current-context: e2e
users:
- name: u
  user:
    token: $4
KC
}

cmd_up() {
  local dir="${1:?usage: up DIR}"
  mkdir -p "${dir}"
  dir="$(cd "${dir}" && pwd)"
  for b in etcd kube-apiserver kube-scheduler kwok; do
    [[ -x "${BIN}/${b}" ]] || { log "missing ${BIN}/${b}: run $0 build"; return 1; }
  done
  : > "${dir}/pids"
  gen_certs "${dir}"
  local c="${dir}/certs"
  local etcd_port etcd_peer api_port sched_port kwok_port
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"
  sched_port="$(free_port)"; kwok_port="$(free_port)"

  cp_spawn "${dir}" etcd "${BIN}/etcd" --name e2e --data-dir "${dir}/etcd" \
    --listen-client-urls "http://127.0.0.1:${etcd_port}" \
    --advertise-client-urls "http://127.0.0.1:${etcd_port}" \
    --listen-peer-urls "http://127.0.0.1:${etcd_peer}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${etcd_peer}" \
    --initial-cluster "e2e=http://127.0.0.1:${etcd_peer}" \
    --listen-metrics-urls "http://127.0.0.1:$(free_port)" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
  wait_for etcd 60 curl -sf "http://127.0.0.1:${etcd_port}/health"

  cp_spawn "${dir}" kube-apiserver "${BIN}/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:${etcd_port}" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "${api_port}" \
    --tls-cert-file "${c}/serving.crt" --tls-private-key-file "${c}/serving.key" \
    --client-ca-file "${c}/ca.crt" --token-auth-file "${c}/tokens.csv" \
    --authorization-mode RBAC,Node \
    --service-account-issuer "https://127.0.0.1:${api_port}" \
    --service-account-key-file "${c}/sa.pub" --service-account-signing-key-file "${c}/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --disable-admission-plugins ServiceAccount,TaintNodesByCondition \
    --endpoint-reconciler-type none \
    --enable-priority-and-fairness=false \
    --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
    --cert-dir "${dir}/apiserver-certs" --profiling="${APISERVER_PROFILING:-false}" -v=1
  local admin="${dir}/kubeconfig"
  write_kubeconfig "${admin}" "https://127.0.0.1:${api_port}" "${c}/ca.crt" admin-token
  write_kubeconfig "${dir}/kubeconfig-kube-scheduler" "https://127.0.0.1:${api_port}" "${c}/ca.crt" kube-scheduler-token
  write_kubeconfig "${dir}/kubeconfig-hami-scheduler" "https://127.0.0.1:${api_port}" "${c}/ca.crt" hami-scheduler-token
  write_kubeconfig "${dir}/kubeconfig-hami-device-plugin" "https://127.0.0.1:${api_port}" "${c}/ca.crt" hami-device-plugin-token
  wait_for kube-apiserver 120 curl -sf --cacert "${c}/ca.crt" -H "Authorization: Bearer admin-token" \
    "https://127.0.0.1:${api_port}/readyz"

  # The default scheduler (pods that are not ours).
  cp_spawn "${dir}" kube-scheduler "${BIN}/kube-scheduler" \
    --kubeconfig "${dir}/kubeconfig-kube-scheduler" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "${sched_port}" -v=1

  # KWOK: every node is fake; pods bound to them become Running. KWOK_ARGS: extra flags.
  # shellcheck disable=SC2086
  cp_spawn "${dir}" kwok "${BIN}/kwok" --config "${E2E}/kwok-pod-stages.yaml" \
    --kubeconfig "${admin}" --manage-all-nodes=true \
    --server-address "127.0.0.1:${kwok_port}" --cidr 10.244.0.0/16 --node-ip 127.0.0.1 ${KWOK_ARGS:-}

  cat > "${dir}/env" <<ENV
export KUBECONFIG='${admin}'
E2E_DIR='${dir}'
E2E_API='https://127.0.0.1:${api_port}'
E2E_CA='${c}/ca.crt'
E2E_CERTS='${c}'
ENV
  log "control plane up: https://127.0.0.1:${api_port} (kubeconfig ${admin})"
}

cmd_down() {
  local dir="${1:?usage: down DIR}"
  [[ -f "${dir}/pids" ]] || return 0
  local names
  # Reverse start order: clients first, etcd last.
  names="$(awk '{print $1}' "${dir}/pids" | tac)"
  for n in ${names}; do cp_stop "${dir}" "${n}"; done
  log "control plane down (${dir})"
}

# cmd_check: exit 0 when every binary is built at its pinned version (nothing to build).
cmd_check() {
  local name version
  while read -r name version; do
    [[ -x "${BIN}/${name}" && -f "${BIN}/${name}.version" && "$(cat "${BIN}/${name}.version")" == "${version}" ]] || {
      echo "${name} ${version}: not built" >&2; return 1; }
  done <<LIST
etcd ${ETCD_VERSION}
helm ${HELM_VERSION}
kwok ${KWOK_VERSION}
kube-apiserver ${K8S_VERSION}
kube-scheduler ${K8S_VERSION}
kubectl ${K8S_VERSION}
kubelet-harness ${K8S_VERSION}-$(harness_hash)
LIST
}

main() {
  local cmd="${1:-}"; shift || true
  case "${cmd}" in
    build) cmd_build "$@" ;;
    check) cmd_check ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    *) echo "usage: $0 build|check|up DIR|down DIR" >&2; exit 2 ;;
  esac
}

# Sourced (by run.sh): only define the functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
