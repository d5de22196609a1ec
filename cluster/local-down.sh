#!/usr/bin/env bash
# Stop what cluster/local-up.sh started, by the PIDs it recorded (never `ray stop`, which would
# stop every Ray on the machine). Run storage and the MLflow store are kept; the Ray token goes.
set -uo pipefail
cd "$(dirname "$0")/.." && REPO="$PWD"
source "$REPO/cluster/common.sh"

stop_tracked mlflow
stop_tracked ray-node2
stop_tracked ray-head
rm -f "$STATE_DIR/env" "$TOKEN_FILE"   # a new cluster gets a new token
