#!/usr/bin/env bash
# A two-node Ray cluster and an MLflow server on this machine, on loopback.
#   cluster/local-up.sh        then: source .cluster/env; ray job submit ... ; cluster/local-down.sh
# Ray head (GCS, dashboard/job API on http://$BIND_HOST:$DASHBOARD_PORT; no Ray Client server),
# a second raylet joined to it (its own ports and CPUs; resource "node2"), and `mlflow server`
# with a sqlite backend store and a local artifact store. Ray uses token authentication
# ($STATE_DIR/auth_token; .cluster/env points clients at it). Each runs in its own process
# group (id in $STATE_DIR/*.pid), which local-down.sh stops.
set -euo pipefail
cd "$(dirname "$0")/.." && REPO="$PWD"
source "$REPO/cluster/common.sh"

# On failure, stop whatever was started so far (by PID) and point at the log.
fail() {
    echo "error: $1" >&2
    "$REPO/cluster/local-down.sh" >/dev/null
    exit 1
}

for tool in ray mlflow python; do
    command -v "$tool" >/dev/null || {
        echo "error: '$tool' is not on PATH: activate raysys's venv first (source .venv/bin/activate; make install creates it)" >&2
        exit 1
    }
done

# node2 gets its own Ray temp dir: two raylets sharing one would delete each other's job packages.
mkdir -p "$STATE_DIR" "$STORAGE_DIR" "$MLFLOW_DIR/artifacts" "$RAY_TMP" "$RAY_TMP-node2"
for name in ray-head ray-node2 mlflow; do
    if [[ -f "$STATE_DIR/$name.pid" ]] && kill -0 -- "-$(cat "$STATE_DIR/$name.pid")" 2>/dev/null; then
        echo "error: $name is already running (pid $(cat "$STATE_DIR/$name.pid")); run cluster/local-down.sh first" >&2
        exit 1
    fi
done

# A new token for this cluster, never on a command line (other users see those in `ps`).
(umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' >"$TOKEN_FILE")

# The head: no Ray Client server (cluster/ray_start.py), everything on $BIND_HOST.
start_tracked ray-head env RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=$((1 - LOOPBACK_ONLY)) RAYSYS_RAY_LOOPBACK="$LOOPBACK_ONLY" \
    python "$REPO/cluster/ray_start.py" start --head --disable-usage-stats \
    --node-ip-address "$BIND_HOST" --port "$GCS_PORT" \
    --include-dashboard true --dashboard-host "$BIND_HOST" --dashboard-port "$DASHBOARD_PORT" \
    --dashboard-agent-listen-port "$HEAD_AGENT_PORT" --num-cpus "$HEAD_CPUS" --num-gpus 0 \
    --resources '{"head": 1}' --temp-dir "$RAY_TMP"
# GET a dashboard/job API route with the token (sent in a header read from a pipe, never on a
# command line).
api_get() {
    curl -sf -H @<(printf 'Authorization: Bearer %s\n' "$(<"$TOKEN_FILE")") "http://$BIND_HOST:$DASHBOARD_PORT$1"
}
if ! wait_for 300 api_get /api/version; then
    fail "the Ray head did not come up; see $STATE_DIR/ray-head.log"
fi

start_node2() {
    start_tracked ray-node2 env RAYSYS_RAY_LOOPBACK="$LOOPBACK_ONLY" \
        python "$REPO/cluster/ray_start.py" start --disable-usage-stats \
        --address "$BIND_HOST:$GCS_PORT" --node-ip-address "$BIND_HOST" \
        --dashboard-agent-listen-port "$NODE_AGENT_PORT" --num-cpus "$NODE_CPUS" --num-gpus 0 \
        --resources '{"node2": 1}' --temp-dir "$RAY_TMP-node2"
}

start_tracked mlflow mlflow server --host "$BIND_HOST" --port "$MLFLOW_PORT" --workers 1 \
    --backend-store-uri "sqlite:///$MLFLOW_DIR/mlflow.db" --artifacts-destination "$MLFLOW_DIR/artifacts"

nodes_alive() {
    [[ "$(RAY_ADDRESS="http://$BIND_HOST:$DASHBOARD_PORT" python -c \
        'from ray.util.state import list_nodes; print(sum(n.state == "ALIVE" for n in list_nodes()))')" == 2 ]]
}
# A raylet must register within Ray's fixed 30 s; on a busy machine that can fail: retry.
joined=0
for attempt in 1 2 3; do
    start_node2
    if wait_for 150 nodes_alive; then joined=1; break; fi
    echo "the second Ray node did not join (attempt $attempt); retrying" >&2
    stop_tracked ray-node2 >/dev/null
done
if ((joined == 0)); then
    fail "the second Ray node did not join; see $STATE_DIR/ray-node2.log"
fi
if ! wait_for 120 curl -sf "http://$BIND_HOST:$MLFLOW_PORT/health"; then
    fail "the MLflow server did not come up; see $STATE_DIR/mlflow.log"
fi

cat >"$STATE_DIR/env" <<ENV
export RAY_ADDRESS=http://$BIND_HOST:$DASHBOARD_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="$TOKEN_FILE"
unset RAY_AUTH_TOKEN
export RAYSYS_TRACKING_URI=http://$BIND_HOST:$MLFLOW_PORT
export RAYSYS_STORAGE=$STORAGE_DIR
ENV
echo "Ray dashboard and job API: http://$BIND_HOST:$DASHBOARD_PORT (2 nodes; token authentication)"
echo "Ray token:                 $TOKEN_FILE (the dashboard asks for it: paste the file's content)"
echo "MLflow:                    http://$BIND_HOST:$MLFLOW_PORT"
echo "run storage:               $STORAGE_DIR (both nodes are this machine: checkpoint.shared=true)"
echo "next: source $STATE_DIR/env, then"
echo "  ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python -m raysys train <preset> \\"
echo "      tracking.uri=\$RAYSYS_TRACKING_URI checkpoint.storage_path=\$RAYSYS_STORAGE checkpoint.shared=true"
