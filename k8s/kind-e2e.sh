#!/usr/bin/env bash
# podnet end-to-end test on a kind cluster (`make test-kind`).
#
# NOTE: this needs a Docker engine, kind, kubectl and jq. podnet's development and CI machines
# have no Docker engine, so this script has never run there: run it on a workstation that has them.
# It exits 2 (with the reason) when something it needs is missing.
#
# What it does, in order:
#   1. builds podnet and the podnet-sandbox workload (release), and a small image with both;
#   2. creates a kind cluster (k8s/kind-config.yaml: one control plane, one worker) and loads the
#      image into it;
#   3. deploys k8s/rbac.yaml + k8s/daemonset.yaml and waits for the DaemonSet;
#   4. runs two pods on the worker: `rx` receives and `tx` sends exactly COUNT UDP datagrams of SIZE
#      payload bytes, once told to go;
#   5. copies podnet onto the worker node and starts `podnet stats --watch -o json` there with
#      `docker exec`, using the cluster's kubeconfig as root's ~/.kube/config;
#   6. sends the traffic, stops podnet, and checks its last document with jq: rx received COUNT
#      packets and COUNT*(SIZE+28) bytes, tx sent the same and created exactly one socket;
#   7. checks the DaemonSet's own log (in-cluster service account, host cgroup mount) counted the same;
#   8. checks discovery against the real API server: --pods-from - , a 403 from an identity
#      without RBAC, a 401 from a bad token;
#   9. deletes the cluster (trap on EXIT; KEEP=1 keeps it for debugging).
# jq programs are single-quoted on purpose: their $variables are jq's (--arg), not the shell's.
# shellcheck disable=SC2016
set -euo pipefail

CLUSTER="${CLUSTER:-podnet-e2e}"
KEEP="${KEEP:-0}"
COUNT="${COUNT:-100}"
SIZE="${SIZE:-1000}"
NS=podnet-e2e
IMAGE=podnet:dev
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
    kubectl -n podnet logs -l app.kubernetes.io/name=podnet --tail=5 >&2 || true
    docker exec "$NODE" cat /tmp/podnet.err >&2 || true
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
need jq "apt-get install jq"
need cargo "install Rust"
docker info >/dev/null 2>&1 || { echo "kind-e2e: the Docker engine is not running (docker info failed)" >&2; exit 2; }
trap cleanup EXIT

log "build podnet and podnet-sandbox"
(cd "$ROOT" && cargo build --release --locked -p podnet -p podnet-testing --bins)
cp "$ROOT/target/release/podnet" "$ROOT/target/release/podnet-sandbox" "$WORK/"
# kind's node image is Debian-based, like the build machines, so the glibc binaries run there.
cat > "$WORK/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY podnet podnet-sandbox /usr/local/bin/
ENTRYPOINT []
DOCKERFILE
docker build -q -t "$IMAGE" "$WORK" >/dev/null

log "create cluster $CLUSTER"
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
kind create cluster --name "$CLUSTER" --config "$ROOT/k8s/kind-config.yaml" --wait 180s
kubectl config use-context "kind-$CLUSTER" >/dev/null
kind load docker-image --name "$CLUSTER" "$IMAGE"

log "deploy the DaemonSet"
kubectl apply -f "$ROOT/k8s/rbac.yaml"
kubectl apply -f "$ROOT/k8s/daemonset.yaml"
kubectl -n podnet rollout status daemonset/podnet --timeout=180s

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
      image: $IMAGE
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
      image: $IMAGE
      imagePullPolicy: Never
      # Waits for /tmp/go (created with kubectl exec) so that podnet is attached before any packet.
      command: ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 1; done; (echo go; sleep 3600) | podnet-sandbox --hold udp-send --to $RX_IP:9000 --count $COUNT --size $SIZE"]
YAML
kubectl -n "$NS" wait --for=condition=Ready pod/tx --timeout=120s

log "start podnet on $NODE with docker exec"
docker cp "$ROOT/target/release/podnet" "$NODE:/usr/local/bin/podnet"
kind get kubeconfig --internal --name "$CLUSTER" > "$WORK/kubeconfig"
docker exec "$NODE" mkdir -p /root/.kube
docker cp "$WORK/kubeconfig" "$NODE:/root/.kube/config"
docker exec -d "$NODE" sh -c \
  'podnet stats --watch -o json --interval 1s >/tmp/podnet.jsonl 2>/tmp/podnet.err & echo $! >/tmp/podnet.pid; wait'
# The first document means podnet discovered the pods through the API server and attached.
has_both_pods() {
  docker exec "$NODE" sh -c 'tail -n 1 /tmp/podnet.jsonl' \
    | jq -e --arg ns "$NS" '[.items[] | select(.namespace == $ns) | .pod] | sort == ["rx", "tx"]'
}
wait_for 60 "podnet on $NODE to list rx and tx" has_both_pods
# The DaemonSet pod's log mixes its JSON documents (stdout) with warnings (stderr): keep the last
# document about $NODE.
ds_last() {
  kubectl -n podnet logs -l app.kubernetes.io/name=podnet --tail=50 \
    | jq -R -c --arg node "$NODE" 'fromjson? | select(.node == $node)' | tail -n 1
}
ds_has_both_pods() {
  ds_last | jq -e --arg ns "$NS" '[.items[] | select(.namespace == $ns) | .pod] | sort == ["rx", "tx"]'
}
wait_for 90 "the DaemonSet pod on $NODE to list rx and tx" ds_has_both_pods

log "send $COUNT datagrams of $SIZE bytes from tx to rx"
kubectl -n "$NS" exec tx -- touch /tmp/go
rx_done() { kubectl -n "$NS" logs rx | jq -e --argjson n "$COUNT" 'select(.received != null) | .received == $n'; }
wait_for 120 "rx to receive $COUNT datagrams" rx_done
kubectl -n "$NS" logs tx | jq -e --argjson n "$COUNT" 'select(.sent != null) | .sent == $n and .errors == 0' >/dev/null \
  || fail "tx did not send exactly $COUNT datagrams: $(kubectl -n "$NS" logs tx)"
sleep 3 # two more intervals, so the last document covers everything
docker exec "$NODE" sh -c 'kill -INT "$(cat /tmp/podnet.pid)"'
podnet_gone() { ! docker exec "$NODE" sh -c 'kill -0 "$(cat /tmp/podnet.pid)"'; }
wait_for 30 "podnet to exit after SIGINT" podnet_gone
docker exec "$NODE" tail -n 1 /tmp/podnet.jsonl > "$WORK/last.json"

log "check podnet's counts (docker exec on the node)"
BYTES=$((COUNT * (SIZE + 28)))
check() { # check FILE DESCRIPTION JQ-EXPRESSION
  jq -e --arg ns "$NS" --arg node "$NODE" --argjson n "$COUNT" --argjson b "$BYTES" "$3" "$1" >/dev/null \
    || fail "$2: $(jq -c --arg ns "$NS" '[.items[] | select(.namespace == $ns) | {pod, network, sockets}]' "$1")"
  echo "ok: $2"
}
check "$WORK/last.json" "document is podnet/v1 for $NODE" \
  '.apiVersion == "podnet/v1" and .kind == "PodStatsList" and .node == $node'
check "$WORK/last.json" "rx received $COUNT packets, $BYTES bytes" \
  '.items[] | select(.namespace == $ns and .pod == "rx") | .network.rxPackets == $n and .network.rxBytes == $b'
check "$WORK/last.json" "tx sent $COUNT packets, $BYTES bytes" \
  '.items[] | select(.namespace == $ns and .pod == "tx") | .network.txPackets == $n and .network.txBytes == $b'
check "$WORK/last.json" "tx created exactly one socket" \
  '.items[] | select(.namespace == $ns and .pod == "tx") | .sockets.created == 1'
check "$WORK/last.json" "containers are resolved by id" \
  '.items[] | select(.namespace == $ns and .pod == "rx") | [.containers[].name] == ["recv"]'
check "$WORK/last.json" "cgroup paths are kind's nested systemd layout" \
  '.items[] | select(.namespace == $ns and .pod == "rx") | .cgroupPath | test("kubelet-kubepods-besteffort-pod[0-9a-f_]+\\.slice$")'

log "check the DaemonSet's counts (in-cluster service account, host cgroup mount)"
ds_counted() {
  ds_last | jq -e --arg ns "$NS" --argjson n "$COUNT" --argjson b "$BYTES" \
    '[.items[] | select(.namespace == $ns)] as $p
     | ($p[] | select(.pod == "rx") | .network.rxPackets == $n and .network.rxBytes == $b)
       and ($p[] | select(.pod == "tx") | .network.txPackets == $n and .network.txBytes == $b)'
}
wait_for 60 "the DaemonSet's document to show the traffic" ds_counted
echo "ok: the DaemonSet counted the same traffic"

log "check discovery against the real API server"
kubectl get pods -A -o json \
  | docker exec -i "$NODE" podnet stats --pods-from - -n "$NS" -o json > "$WORK/from-file.json"
check "$WORK/from-file.json" "--pods-from - lists rx and tx" '[.items[].pod] | sort == ["rx", "tx"]'

# An identity without RBAC: 403 must be an error that names k8s/rbac.yaml, not a fallback.
kubectl -n "$NS" create serviceaccount norbac >/dev/null
TOKEN="$(kubectl -n "$NS" create token norbac)"
cp "$WORK/kubeconfig" "$WORK/norbac"
kubectl --kubeconfig "$WORK/norbac" config set-credentials norbac --token="$TOKEN" >/dev/null
kubectl --kubeconfig "$WORK/norbac" config set-credentials bogus --token=not-a-token >/dev/null
kubectl --kubeconfig "$WORK/norbac" config set-context norbac --cluster="kind-$CLUSTER" --user=norbac >/dev/null
kubectl --kubeconfig "$WORK/norbac" config set-context bogus --cluster="kind-$CLUSTER" --user=bogus >/dev/null
docker cp "$WORK/norbac" "$NODE:/tmp/norbac.kubeconfig"
expect_error() { # expect_error CONTEXT TEXT
  local out rc=0
  out="$(docker exec "$NODE" podnet stats --kubeconfig /tmp/norbac.kubeconfig --context "$1" 2>&1)" || rc=$?
  [ "$rc" != 0 ] || fail "context $1: podnet exited 0; output: $out"
  grep -qF "$2" <<<"$out" || fail "context $1: expected \"$2\" in: $out"
  echo "ok: context $1 fails with \"$2\""
}
expect_error norbac "RBAC forbids listing pods"
expect_error norbac "k8s/rbac.yaml"
expect_error bogus "rejected our credentials"

log "all checks passed"
