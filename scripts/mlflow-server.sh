#!/usr/bin/env bash
# Start or stop a throwaway local MLflow tracking server for `[tracking] mlflow_uri` and the tracking
# integration test (ICDTUNE_MLFLOW_URI).
#
# MLflow comes from PyPI into a private venv (git-ignored), so a fresh machine needs only python3 with
# venv and the ordinary pip client. The server binds 127.0.0.1 only, keeps runs in SQLite and proxies
# artifacts (`--serve-artifacts` is MLflow's default since 2.0; it is passed explicitly anyway so that
# the `mlflow-artifacts` upload endpoint the Rust client uses is guaranteed to exist).
#
# Usage: scripts/mlflow-server.sh start|stop|status [PORT] [DIR]
#          PORT  default 5000
#          DIR   default .venv-mlflow/store-PORT (SQLite db, artifacts, pidfile, server log)
# Env:   ICDTUNE_MLFLOW_VENV    venv location (default .venv-mlflow/venv)
#        ICDTUNE_MLFLOW_VERSION pinned mlflow version (default below)
#        ICDTUNE_MLFLOW_WAIT    seconds to wait for /health (default 180)
#        PYTHON                 interpreter that creates the venv (default python3)
# After `start`, use: export ICDTUNE_MLFLOW_URI=http://127.0.0.1:PORT
set -euo pipefail
cd "$(dirname "$0")/.."

ACTION="${1:-}"
PORT="${2:-5000}"
DIR="${3:-.venv-mlflow/store-$PORT}"
VENV="${ICDTUNE_MLFLOW_VENV:-.venv-mlflow/venv}"
MLFLOW_VERSION="${ICDTUNE_MLFLOW_VERSION:-3.17.2}"
WAIT_S="${ICDTUNE_MLFLOW_WAIT:-180}"
PYTHON="${PYTHON:-python3}"

usage() {
    echo "usage: scripts/mlflow-server.sh start|stop|status [PORT] [DIR]" >&2
    exit 2
}

[[ "$PORT" =~ ^[0-9]+$ ]] || usage

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/mlflow.pid"
LOG="$DIR/mlflow.log"
HEALTH="http://127.0.0.1:$PORT/health"

# Installs mlflow once; a venv with the pinned version already in it is reused as is.
ensure_mlflow() {
    if [[ -x "$VENV/bin/mlflow" ]] &&
        [[ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null)" == "$MLFLOW_VERSION" ]]; then
        return 0
    fi
    echo "installing mlflow==$MLFLOW_VERSION into $VENV (from PyPI)"
    local t0=$SECONDS
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
    echo "installed mlflow==$MLFLOW_VERSION in $((SECONDS - t0)) s"
}

healthy() {
    curl -fsS --max-time 2 "$HEALTH" >/dev/null 2>&1
}

# A process that exited but was not reaped yet (a zombie, common without a real init) counts as gone.
alive() {
    kill -0 "$1" 2>/dev/null && ! grep -qs '^[0-9]* ([^)]*) Z' "/proc/$1/stat"
}

running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" && echo "$pid"
}

start() {
    if pid="$(running_pid)"; then
        echo "mlflow already running (pid $pid) on 127.0.0.1:$PORT"
        return 0
    fi
    if healthy; then
        echo "error: something else already answers on $HEALTH" >&2
        exit 1
    fi
    ensure_mlflow
    mkdir -p "$DIR/artifacts"
    # setsid: the server becomes a process-group leader, so `stop` can end it and its workers by id.
    setsid "$VENV/bin/mlflow" server \
        --host 127.0.0.1 --port "$PORT" --workers 1 \
        --backend-store-uri "sqlite:///$DIR/mlflow.db" \
        --artifacts-destination "$DIR/artifacts" \
        --serve-artifacts \
        >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local t0=$SECONDS
    until healthy; do
        if ! running_pid >/dev/null; then
            echo "error: mlflow server exited during startup; last lines of $LOG:" >&2
            tail -n 30 "$LOG" >&2
            rm -f "$PIDFILE"
            exit 1
        fi
        if ((SECONDS - t0 >= WAIT_S)); then
            echo "error: $HEALTH did not answer within $WAIT_S s; last lines of $LOG:" >&2
            tail -n 30 "$LOG" >&2
            stop
            exit 1
        fi
        sleep 1
    done
    echo "mlflow $MLFLOW_VERSION up on http://127.0.0.1:$PORT (pid $(cat "$PIDFILE"), ready in $((SECONDS - t0)) s, store $DIR)"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "mlflow not running (no live pid in $PIDFILE)"
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        alive "$pid" || break
        sleep 0.5
    done
    if alive "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    echo "mlflow stopped (pid $pid)"
}

case "$ACTION" in
start) start ;;
stop) stop ;;
status)
    if pid="$(running_pid)" && healthy; then
        echo "mlflow running (pid $pid) on http://127.0.0.1:$PORT"
    else
        echo "mlflow not running on 127.0.0.1:$PORT"
        exit 1
    fi
    ;;
*) usage ;;
esac
