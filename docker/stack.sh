#!/usr/bin/env bash
# The textcls production stack as real processes on loopback: the uncontainerised form of docker/compose.yaml,
# with the same environment variable names and the same server commands (tests/test_docker.py compares them).
#   docker/stack.sh up                 # PostgreSQL 15, S3 (moto), MLflow server, Prefect server, work pool, worker
#   source "$TEXTCLS_STACK_DIR/stack.env"   # PREFECT_API_URL, MLFLOW_TRACKING_URI, ... for your shell
#   docker/stack.sh deploy             # prefect deploy --all from the repository (what the compose worker does)
#   docker/stack.sh status | stop mlflow | start mlflow | down [--purge]
# S3: compose runs MinIO; MinIO does not install from PyPI, so this script (and the tests) run moto's S3 server
# instead. Both are reached through MLFLOW_S3_ENDPOINT_URL, so MLflow's command is the same.
# Settings (environment, all optional): TEXTCLS_STACK_DIR (state, logs, stack.env; default /tmp/textcls-stack),
# POSTGRES_USER, POSTGRES_PASSWORD (default: generated), MINIO_ROOT_USER, MINIO_ROOT_PASSWORD (the S3 keys),
# MLFLOW_BUCKET, MLFLOW_WORKERS, TEXTCLS_HOME (the worker's data folder: runs, cache),
# POSTGRES_PORT, S3_PORT, MLFLOW_PORT, PREFECT_PORT, WORKER_PORT (health; default: free ports), PGBIN, PYTHON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${TEXTCLS_STACK_DIR:-${TMPDIR:-/tmp}/textcls-stack}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
SERVICES=(postgres s3 mlflow prefect-server worker)

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_http() {  # URL SECONDS NAME: until it answers, it times out, or its process (pids/NAME) exits
  "$PYTHON" - "$1" "$2" "$STACK_DIR/pids/$3" <<'EOF' || die "$3 did not answer at $1 within $2 s or exited; see $STACK_DIR/logs/$3.log"
import os, sys, time, urllib.request
url, seconds, pidfile = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=3):
            sys.exit(0)
    except Exception:
        time.sleep(0.5)
    try:
        os.kill(int(open(pidfile).read()), 0)
    except (OSError, ValueError):
        sys.exit(1)
sys.exit(1)
EOF
}

# PostgreSQL refuses to run as root: run its binaries as the `postgres` user on a folder that user owns
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

load_env() { [ -f "$STACK_DIR/stack.env" ] || die "no stack in $STACK_DIR (run: docker/stack.sh up)"; set -a; . "$STACK_DIR/stack.env"; set +a; }

write_env() {  # everything a client, the worker or a test needs; secrets included, so the file is private
  umask 077
  cat > "$STACK_DIR/stack.env" <<EOF
TEXTCLS_STACK_DIR=$STACK_DIR
POSTGRES_USER=$POSTGRES_USER
POSTGRES_PASSWORD=$POSTGRES_PASSWORD
POSTGRES_PORT=$POSTGRES_PORT
PGDATA_DIR=$PGDATA_DIR
MINIO_ROOT_USER=$MINIO_ROOT_USER
MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD
MLFLOW_BUCKET=$MLFLOW_BUCKET
MLFLOW_WORKERS=$MLFLOW_WORKERS
S3_PORT=$S3_PORT
MLFLOW_PORT=$MLFLOW_PORT
PREFECT_PORT=$PREFECT_PORT
WORKER_PORT=$WORKER_PORT
MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER
AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD
MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
PREFECT_HOME=$STACK_DIR/prefect-home
PREFECT_SERVER_ANALYTICS_ENABLED=false
TEXTCLS_HOME=$TEXTCLS_HOME
EOF
}

spawn() {  # NAME CMD... : own session (so stop reaches its children), log and pid in the stack folder
  local name="$1"; shift
  setsid "$@" >> "$STACK_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/$name"
}

alive() { [ -f "$STACK_DIR/pids/$1" ] && kill -0 "$(cat "$STACK_DIR/pids/$1")" 2>/dev/null; }

start_postgres() {
  if [ ! -f "$PGDATA_DIR/data/PG_VERSION" ]; then
    mkdir -p "$PGDATA_DIR/data" "$PGDATA_DIR/socket"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$PGDATA_DIR/pwfile"
    [ "$(id -u)" = 0 ] && chown -R postgres "$PGDATA_DIR"
    chmod 700 "$PGDATA_DIR" "$PGDATA_DIR/data"
    as_pg "$PGBIN/initdb" -D "$PGDATA_DIR/data" -U "$POSTGRES_USER" --pwfile="$PGDATA_DIR/pwfile" \
      --auth=scram-sha-256 -E UTF8 --no-locale > "$STACK_DIR/logs/postgres-initdb.log"
    rm -f "$PGDATA_DIR/pwfile"
    local fresh=1
  fi
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -k $PGDATA_DIR/socket" start > /dev/null
  as_pg "$PGBIN/pg_isready" -h 127.0.0.1 -p "$POSTGRES_PORT" -t 30 > /dev/null
  if [ -n "${fresh:-}" ]; then  # the same init script compose mounts into the postgres image
    PGPASSWORD="$POSTGRES_PASSWORD" "$PGBIN/psql" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$POSTGRES_USER" -d postgres \
      -v ON_ERROR_STOP=1 -f "$ROOT/docker/postgres-init.sql" > /dev/null
  fi
}

start_s3() {
  spawn s3 "$BIN/moto_server" -H 127.0.0.1 -p "$S3_PORT"
  wait_http "http://127.0.0.1:$S3_PORT/moto-api/" 60 s3
  "$PYTHON" -c 'import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"], region_name="us-east-1")
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
sys.argv[1] in names or s3.create_bucket(Bucket=sys.argv[1])' "$MLFLOW_BUCKET"  # compose: mc mb --ignore-existing
}

start_mlflow() {
  spawn mlflow env MLFLOW_S3_ENDPOINT_URL="$MLFLOW_S3_ENDPOINT_URL" AWS_ACCESS_KEY_ID="$MINIO_ROOT_USER" \
    AWS_SECRET_ACCESS_KEY="$MINIO_ROOT_PASSWORD" \
    "$BIN/mlflow" server \
      --host=127.0.0.1 \
      --port="$MLFLOW_PORT" \
      --workers="$MLFLOW_WORKERS" \
      --allowed-hosts="127.0.0.1:$MLFLOW_PORT,localhost:$MLFLOW_PORT" \
      --backend-store-uri="postgresql+psycopg2://$POSTGRES_USER:$POSTGRES_PASSWORD@127.0.0.1:$POSTGRES_PORT/mlflow" \
      --artifacts-destination="s3://$MLFLOW_BUCKET/artifacts"
}

start_prefect_server() {
  spawn prefect-server env PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$POSTGRES_USER:$POSTGRES_PASSWORD@127.0.0.1:$POSTGRES_PORT/prefect" \
    "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
}

start_worker() {
  # the flow runs it starts inherit this environment: runs and cache go to TEXTCLS_HOME (the compose volume)
  mkdir -p "$TEXTCLS_HOME"
  "$BIN/prefect" work-pool create textcls-process --type process > /dev/null 2>&1 || true
  spawn worker env TEXTCLS_RUN__OUTPUT_DIR="$TEXTCLS_HOME/runs" TEXTCLS_RUN__CACHE_DIR="$TEXTCLS_HOME/cache" \
    PREFECT_WORKER_WEBSERVER_HOST=127.0.0.1 PREFECT_WORKER_WEBSERVER_PORT="$WORKER_PORT" \
    PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-5}" \
    "$BIN/prefect" worker start --pool textcls-process --with-healthcheck
}

start_service() {
  case "$1" in
    postgres) start_postgres ;;
    s3) start_s3 ;;
    mlflow) start_mlflow; wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 180 mlflow ;;
    prefect-server) start_prefect_server; wait_http "http://127.0.0.1:$PREFECT_PORT/api/health" 180 prefect-server ;;
    worker) start_worker; wait_http "http://127.0.0.1:$WORKER_PORT/health" 120 worker ;;
    *) die "unknown service '$1'; one of: ${SERVICES[*]}" ;;
  esac
  log "$1 up"
}

stop_service() {
  if [ "$1" = postgres ]; then
    [ -f "$PGDATA_DIR/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -m fast -w stop > /dev/null || true
    return
  fi
  alive "$1" || { rm -f "$STACK_DIR/pids/$1"; return 0; }
  local pid; pid="$(cat "$STACK_DIR/pids/$1")"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$STACK_DIR/pids/$1"
  log "$1 stopped"
}

cmd_up() {
  mkdir -p "$STACK_DIR/logs" "$STACK_DIR/pids"
  if [ -f "$STACK_DIR/stack.env" ]; then load_env; else
    POSTGRES_USER="${POSTGRES_USER:-textcls}"
    POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))')}"
    MINIO_ROOT_USER="${MINIO_ROOT_USER:-textcls}"
    MINIO_ROOT_PASSWORD="${MINIO_ROOT_PASSWORD:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))')}"
    MLFLOW_BUCKET="${MLFLOW_BUCKET:-textcls}"
    MLFLOW_WORKERS="${MLFLOW_WORKERS:-1}"
    POSTGRES_PORT="${POSTGRES_PORT:-$(free_port)}" S3_PORT="${S3_PORT:-$(free_port)}"
    MLFLOW_PORT="${MLFLOW_PORT:-$(free_port)}" PREFECT_PORT="${PREFECT_PORT:-$(free_port)}"
    WORKER_PORT="${WORKER_PORT:-$(free_port)}"
    PGDATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/textcls-pg.XXXXXX")"  # outside STACK_DIR: the postgres user must reach it
    TEXTCLS_HOME="${TEXTCLS_HOME:-$STACK_DIR/data}"
    write_env
    load_env
  fi
  start_service postgres
  start_service s3
  # the two servers migrate their databases at first start: in parallel, then wait for both
  start_mlflow; start_prefect_server
  wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 180 mlflow; log "mlflow up"
  wait_http "http://127.0.0.1:$PREFECT_PORT/api/health" 180 prefect-server; log "prefect-server up"
  start_service worker
  log "ready: source $STACK_DIR/stack.env  (MLflow $MLFLOW_TRACKING_URI, Prefect $PREFECT_API_URL)"
}

cmd_down() {
  load_env
  for svc in worker prefect-server mlflow s3 postgres; do stop_service "$svc"; done
  if [ "${1:-}" = "--purge" ]; then
    rm -rf "$PGDATA_DIR" "$STACK_DIR"
    log "purged $STACK_DIR and $PGDATA_DIR"
  fi
}

cmd_status() {
  load_env
  local rc=0
  if as_pg "$PGBIN/pg_isready" -h 127.0.0.1 -p "$POSTGRES_PORT" -t 2 > /dev/null 2>&1; then
    echo "postgres        up    127.0.0.1:$POSTGRES_PORT"; else echo "postgres        down"; rc=1; fi
  local -A url=([s3]="http://127.0.0.1:$S3_PORT/moto-api/" [mlflow]="http://127.0.0.1:$MLFLOW_PORT/health"
                 [prefect-server]="http://127.0.0.1:$PREFECT_PORT/api/health" [worker]="http://127.0.0.1:$WORKER_PORT/health")
  for svc in s3 mlflow prefect-server worker; do
    if alive "$svc" && "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "${url[$svc]}" 2>/dev/null; then
      printf '%-15s up    pid %s  %s\n' "$svc" "$(cat "$STACK_DIR/pids/$svc")" "${url[$svc]}"
    else printf '%-15s down\n' "$svc"; rc=1; fi
  done
  return $rc
}

cmd_deploy() {  # what the compose worker runs before it polls: every deployment in prefect.yaml
  load_env
  cd "$ROOT" && "$BIN/prefect" --no-prompt deploy --all
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "${1:-}" ;;
  status) cmd_status ;;
  deploy) cmd_deploy ;;
  start) [ -n "${2:-}" ] || die "start SERVICE"; load_env; start_service "$2" ;;
  stop) [ -n "${2:-}" ] || die "stop SERVICE"; load_env; stop_service "$2" ;;
  env) load_env; cat "$STACK_DIR/stack.env" ;;
  *) echo "usage: docker/stack.sh up|down [--purge]|status|deploy|start SERVICE|stop SERVICE|env   (services: ${SERVICES[*]})" >&2; exit 2 ;;
esac
