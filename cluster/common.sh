# Shared settings of local-up.sh / local-down.sh. Every value can be overridden from the environment.
# Everything listens on loopback unless RAYSYS_BIND_HOST names another (private) interface.
BIND_HOST="${RAYSYS_BIND_HOST:-127.0.0.1}"
STATE_DIR="${RAYSYS_CLUSTER_DIR:-$PWD/.cluster}"          # PIDs, logs, env file
STORAGE_DIR="${RAYSYS_STORAGE_DIR:-$STATE_DIR/storage}"    # checkpoint.storage_path of every run
MLFLOW_DIR="${RAYSYS_MLFLOW_DIR:-$STATE_DIR/mlflow}"       # sqlite backend store + artifact store
GCS_PORT="${RAYSYS_GCS_PORT:-6379}"
DASHBOARD_PORT="${RAYSYS_DASHBOARD_PORT:-8265}"
CLIENT_PORT="${RAYSYS_CLIENT_PORT:-10001}"   # unused: no Ray Client server is started (cluster/ray_start.py)
MLFLOW_PORT="${RAYSYS_MLFLOW_PORT:-5000}"
HEAD_AGENT_PORT="${RAYSYS_HEAD_AGENT_PORT:-52365}"
NODE_AGENT_PORT="${RAYSYS_NODE_AGENT_PORT:-52366}"
HEAD_CPUS="${RAYSYS_HEAD_CPUS:-2}"
NODE_CPUS="${RAYSYS_NODE_CPUS:-2}"
# Ray's session files; short, because Ray's unix socket paths must stay under 108 bytes.
RAY_TMP="${RAYSYS_RAY_TMP:-/tmp/raysys-ray-$GCS_PORT}"
# Ray's token authentication (Ray >= 2.52): every Ray process of the cluster and every client
# (ray job submit, the state API, the dashboard) needs this token. local-up.sh makes a new one
# per cluster, readable by this user only; clients find it through RAY_AUTH_TOKEN_PATH.
TOKEN_FILE="$STATE_DIR/auth_token"
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="$TOKEN_FILE"
unset RAY_AUTH_TOKEN   # it would take precedence over the file
# On loopback, Ray must not "resolve" 127.0.0.1 to the machine's outward address (and then
# listen on every interface): see cluster/ray_start.py.
if [[ "$BIND_HOST" == 127.0.0.1 || "$BIND_HOST" == localhost ]]; then
    LOOPBACK_ONLY=1
else
    LOOPBACK_ONLY=0
fi

# The dashboard's modules start slowly on a busy laptop.
export RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT="${RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT:-180}"
export RAY_DASHBOARD_STARTUP_TIMEOUT_S="${RAY_DASHBOARD_STARTUP_TIMEOUT_S:-240}"
# The raylet waits for its agents to report their ports; give slow imports time.
export RAY_agent_register_timeout_ms="${RAY_agent_register_timeout_ms:-180000}"

# Run "$@" in its own session (process group id = its PID) in the background; record the PID.
# Everything it starts stays in that process group, even after it exits.
start_tracked() {
    local name="$1"; shift
    setsid "$@" >"$STATE_DIR/$name.log" 2>&1 < /dev/null &
    echo $! >"$STATE_DIR/$name.pid"
}

# Wait until "$@" succeeds, up to $1 seconds.
wait_for() {
    local seconds="$1"; shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then return 1; fi
        sleep 1
    done
}

# Stop the process group recorded in $STATE_DIR/$1.pid (its leader may have exited, as
# `ray start` does after launching its daemons): TERM, then KILL after a grace period.
stop_tracked() {
    local name="$1" pidfile="$STATE_DIR/$1.pid"
    [[ -f "$pidfile" ]] || return 0
    local pgid; pgid="$(cat "$pidfile")"
    if kill -0 -- "-$pgid" 2>/dev/null; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "stopped $name (process group $pgid)"
}
