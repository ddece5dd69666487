#!/usr/bin/env bash
# `podnet agent` end to end on a kind cluster (`make test-kind`).
#
# NOTE: this needs a Docker engine, kind, kubectl and Rust. podnet's development and CI machines
# have no Docker engine, so this script has never run there: run it on a workstation that has
# them. It exits 2 (with the reason) when something it needs is missing, 1 when a check fails.
# (What CI does run instead: cli/tests/deploy_manifests.rs checks these manifests against the
# agent and runs the image with exactly the DaemonSet's capabilities under podman.)
#
# What it does, in order:
#   1. builds podnet and the podnet-sandbox workload (release); the podnet image with
#      k8s/build-image.sh (FROM scratch, what `make image` builds) and a workload image;
#   2. creates a kind cluster (k8s/kind-config.yaml: one control plane, one worker) and loads both;
#   3. deploys k8s/rbac.yaml + k8s/daemonset.yaml (not privileged) and waits for the rollout,
#      which waits for /readyz;
#   4. runs two pods on the worker: `rx` receives and `tx` sends exactly COUNT UDP datagrams of
#      SIZE payload bytes, once told to go;
#   5. reads the worker's agent's /metrics through the API server's pod proxy and checks exact
#      counts: rx received COUNT packets and COUNT*(SIZE+28) bytes (28 = IPv4 + UDP headers), tx
#      sent the same and created exactly one socket;
#   6. deletes the worker's agent pod: its replacement adopts the pins and shows the same counts;
#   7. checks the service account may watch pods and nothing else it is not granted;
#   8. uninstalls: deletes the DaemonSet, runs k8s/uninstall.yaml on the worker, checks the pins
#      are gone;
#   9. deletes the cluster (trap on EXIT; KEEP=1 keeps it for debugging).
set -euo pipefail

CLUSTER="${CLUSTER:-podnet-e2e}"
KEEP="${KEEP:-0}"
COUNT="${COUNT:-100}"
SIZE="${SIZE:-1000}"
NS=podnet-e2e
IMAGE=podnet:dev
WORKLOAD_IMAGE=podnet-sandbox:dev
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NODE="${CLUSTER}-worker"
WORK="$(mktemp -d)"

log() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'kind-e2e: FAIL: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "kind-e2e: needs $1 on PATH: $2" >&2; exit 2; }; }

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every second until it succeeds.
wait_for() {
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for: $what"
    sleep 1
  done
}

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && command -v kubectl >/dev/null 2>&1; then
    echo "kind-e2e: failed (exit $rc); state for debugging:" >&2
    kubectl get pods -A -o wide >&2 || true
    kubectl -n podnet logs -l app.kubernetes.io/name=podnet --tail=20 >&2 || true
  fi
  if [ "$KEEP" = 1 ]; then
    echo "kind-e2e: KEEP=1: cluster $CLUSTER kept; delete it with: kind delete cluster --name $CLUSTER" >&2
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}

need docker "install Docker (a running engine is needed)"
need kind "install kind (https://kind.sigs.k8s.io)"
need kubectl "install kubectl"
need cargo "install Rust"
need objcopy "apt-get install binutils"
docker info >/dev/null 2>&1 || { echo "kind-e2e: the Docker engine is not running (docker info failed)" >&2; exit 2; }
trap cleanup EXIT

log "build podnet, podnet-sandbox and the images"
(cd "$ROOT" && cargo build --release --locked -p podnet -p podnet-testing --bins)
IMAGE="$IMAGE" ENGINE=docker PODNET="$ROOT/target/release/podnet" "$ROOT/k8s/build-image.sh"
# The workloads need a shell and podnet-sandbox; kind's node image is Debian-based, like the
# build machines, so the glibc binary runs in a Debian image.
cp "$ROOT/target/release/podnet-sandbox" "$WORK/"
cat > "$WORK/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY podnet-sandbox /usr/local/bin/
DOCKERFILE
docker build -q -t "$WORKLOAD_IMAGE" "$WORK" >/dev/null

log "create cluster $CLUSTER"
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
kind create cluster --name "$CLUSTER" --config "$ROOT/k8s/kind-config.yaml" --wait 180s
kubectl config use-context "kind-$CLUSTER" >/dev/null
kind load docker-image --name "$CLUSTER" "$IMAGE" "$WORKLOAD_IMAGE"

log "deploy the agent"
kubectl apply -f "$ROOT/k8s/rbac.yaml"
kubectl apply -f "$ROOT/k8s/daemonset.yaml"
# The rollout completes when every agent's readiness probe (/readyz) passes.
kubectl -n podnet rollout status daemonset/podnet --timeout=180s
privileged="$(kubectl -n podnet get daemonset podnet -o jsonpath='{.spec.template.spec.containers[0].securityContext.privileged}')"
[ "$privileged" = false ] || fail "the DaemonSet is privileged ($privileged)"

# agent_pod: the agent's pod on $NODE.
agent_pod() {
  kubectl -n podnet get pods -l app.kubernetes.io/name=podnet --field-selector "spec.nodeName=$NODE" \
    -o jsonpath='{.items[0].metadata.name}'
}
# agent_get PATH: GET PATH from the agent on $NODE through the API server's pod proxy.
agent_get() {
  kubectl get --raw "/api/v1/namespaces/podnet/pods/$(agent_pod):9983/proxy$1"
}
# metric NAME POD: the value of NAME for pod $NS/POD in the worker agent's /metrics (empty if none).
metric() {
  agent_get /metrics | awk -v want="$1{namespace=\"$NS\",pod=\"$2\"}" '$1 == want { print $2 }'
}
# metric_is NAME POD VALUE: succeeds when the metric has exactly VALUE.
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }

agent_get /readyz | grep -q '^ready' || fail "the worker's agent is not ready: $(agent_get /readyz)"
agent_get /healthz | grep -q '^ok' || fail "the worker's agent is not healthy"

log "start the rx and tx pods on $NODE"
kubectl create namespace "$NS"
# Both pods hold their socket after the job (--hold; stdin stays open), so they stay Running.
cat <<YAML | kubectl apply -f -
apiVersion: v1
kind: Pod
metadata:
  name: rx
  namespace: $NS
  labels: {app: rx}
spec:
  nodeName: $NODE
  restartPolicy: Never
  containers:
    - name: recv
      image: $WORKLOAD_IMAGE
      imagePullPolicy: Never
      command: ["sh", "-c", "(echo go; sleep 3600) | podnet-sandbox --hold udp-recv --bind 0.0.0.0:9000 --count $COUNT --timeout-ms 300000"]
YAML
kubectl -n "$NS" wait --for=condition=Ready pod/rx --timeout=120s
RX_IP="$(kubectl -n "$NS" get pod rx -o jsonpath='{.status.podIP}')"
[ -n "$RX_IP" ] || fail "rx has no pod IP"
cat <<YAML | kubectl apply -f -
apiVersion: v1
kind: Pod
metadata:
  name: tx
  namespace: $NS
  labels: {app: tx}
spec:
  nodeName: $NODE
  restartPolicy: Never
  containers:
    - name: send
      image: $WORKLOAD_IMAGE
      imagePullPolicy: Never
      # Waits for /tmp/go (created with kubectl exec) so that the agent is attached before any packet.
      command: ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 1; done; (echo go; sleep 3600) | podnet-sandbox --hold udp-send --to $RX_IP:9000 --count $COUNT --size $SIZE"]
YAML
kubectl -n "$NS" wait --for=condition=Ready pod/tx --timeout=120s

# The agent learns of both pods through its watch and attaches within a second of their cgroups.
wait_for 60 "the agent to export rx and tx" metric_is podnet_pod_network_transmit_packets_total tx 0
wait_for 60 "the agent to export rx" metric_is podnet_pod_network_receive_packets_total rx 0

log "send $COUNT datagrams of $SIZE bytes from tx to rx"
kubectl -n "$NS" exec tx -- touch /tmp/go
rx_done() { kubectl -n "$NS" logs rx | grep -qE "\"received\": *${COUNT}[,}]"; }
wait_for 120 "rx to receive $COUNT datagrams" rx_done
kubectl -n "$NS" logs tx | grep -qE "\"sent\": *${COUNT}[,}]" \
  || fail "tx did not send exactly $COUNT datagrams: $(kubectl -n "$NS" logs tx)"

log "check the agent's /metrics"
BYTES=$((COUNT * (SIZE + 28)))
check_counts() { # check_counts WHEN
  wait_for 30 "rx packets = $COUNT ($1)" metric_is podnet_pod_network_receive_packets_total rx "$COUNT"
  local name pod want
  while read -r name pod want; do
    metric_is "$name" "$pod" "$want" || fail "$1: $name{pod=$pod} is '$(metric "$name" "$pod")', not $want"
    echo "ok ($1): $name{pod=\"$pod\"} = $want"
  done <<EOF2
podnet_pod_network_receive_packets_total rx $COUNT
podnet_pod_network_receive_bytes_total rx $BYTES
podnet_pod_network_transmit_packets_total tx $COUNT
podnet_pod_network_transmit_bytes_total tx $BYTES
podnet_pod_sockets_created_total tx 1
EOF2
}
check_counts "first agent"

log "restart the worker's agent: the new one adopts the pins"
old="$(agent_pod)"
kubectl -n podnet delete pod "$old" --wait=true
replaced() { p="$(agent_pod)" && [ -n "$p" ] && [ "$p" != "$old" ]; }
wait_for 120 "a new agent pod on $NODE" replaced
kubectl -n podnet rollout status daemonset/podnet --timeout=120s
check_counts "restarted agent"

log "RBAC: the agent's service account watches pods and nothing more"
SA=system:serviceaccount:podnet:podnet
for verb in get list watch; do
  [ "$(kubectl auth can-i "$verb" pods --all-namespaces --as="$SA")" = yes ] || fail "$SA cannot $verb pods"
done
for what in "list secrets" "delete pods" "list nodes" "create pods"; do
  # shellcheck disable=SC2086 # "$what" is a verb and a resource
  if kubectl auth can-i $what --all-namespaces --as="$SA" >/dev/null 2>&1; then
    fail "$SA may $what"
  fi
done
echo "ok: $SA may get, list and watch pods only"

log "uninstall"
kubectl delete -f "$ROOT/k8s/daemonset.yaml" --wait=true
docker exec "$NODE" test -d /sys/fs/bpf/podnet || fail "no pins on $NODE after the agent was deleted"
sed "s/NODE_NAME_HERE/$NODE/" "$ROOT/k8s/uninstall.yaml" | kubectl apply -f -
kubectl -n podnet wait --for=condition=complete job/podnet-uninstall --timeout=120s
if docker exec "$NODE" test -e /sys/fs/bpf/podnet; then
  fail "/sys/fs/bpf/podnet is still on $NODE after the uninstall Job"
fi
echo "ok: nothing of podnet's is pinned on $NODE"

log "all checks passed"
