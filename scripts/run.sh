#!/usr/bin/env bash
# Starts the embedded deployment: redis-server (unless REDIS_URL points elsewhere), WORKERS
# worker processes and the API under gunicorn. Ctrl-C or SIGTERM stops the API and the workers
# first (a running job gets SHUTDOWN_GRACE_S, then is requeued), and Redis last.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export PORT="${PORT:-8000}"
export REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
export REDIS_PORT="${REDIS_PORT:-6379}"
export UPLOAD_DIR="${UPLOAD_DIR:-$root/var/uploads}"
export MODEL_CACHE_DIR="${MODEL_CACHE_DIR:-$root/var/models}"
export WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"
workers="${WORKERS:-1}"
# Workers that each use every core oversubscribe them: OpenMP threads spin at every barrier
# while a peer waits for a core (5-15% of throughput lost in `make bench`, more on a busy
# host). Share the cores out instead.
if [ -z "${CPU_THREADS:-}" ] && [ "$workers" -gt 1 ]; then
  cores=$(nproc)
  export CPU_THREADS=$(( cores > workers ? cores / workers : 1 ))
fi
# A second instance on another Redis port keeps its own Redis data.
redis_dir="$root/var/redis"
[ "$REDIS_PORT" = 6379 ] || redis_dir="$root/var/redis-$REDIS_PORT"
mkdir -p "$redis_dir" "$UPLOAD_DIR" "$MODEL_CACHE_DIR"

# Children run in their own sessions, so Ctrl-C reaches only this script, which then stops
# them in order.
redis_pid=""
service_pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping the API and workers..."
  [ ${#service_pids[@]} -gt 0 ] && kill -TERM "${service_pids[@]}" 2>/dev/null || true
  for pid in "${service_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$redis_pid" ]; then
    echo "stopping redis-server..."
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
# A stop asked for with Ctrl-C or SIGTERM is a clean end: exit 0 once everything has stopped.
on_signal() {
  stop
  exit 0
}
trap on_signal INT TERM
trap stop EXIT

if [ -z "${REDIS_URL:-}" ]; then
  redis_args=(--port "$REDIS_PORT" --bind 127.0.0.1 --dir "$redis_dir"
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save "")
  [ -n "${REDIS_PASSWORD:-}" ] && redis_args+=(--requirepass "$REDIS_PASSWORD")
  setsid redis-server "${redis_args[@]}" &
  redis_pid=$!
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ${REDIS_PASSWORD:+-a "$REDIS_PASSWORD"} ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

# With WORKER_METRICS_PORT set, worker i (from 0) serves its metrics on that port + i.
metrics_port="${WORKER_METRICS_PORT:-0}"
for i in $(seq 0 $((workers - 1))); do
  port=0
  [ "$metrics_port" -gt 0 ] && port=$((metrics_port + i))
  WORKER_METRICS_PORT=$port setsid "$root/.venv/bin/python" -m worker &
  service_pids+=($!)
done

# The config module gathers every gunicorn process's metrics for GET /metrics.
setsid "$root/.venv/bin/gunicorn" -c python:api.gunicorn_conf api.main:app \
  -k uvicorn_worker.UvicornWorker \
  --bind "0.0.0.0:$PORT" --graceful-timeout 30 --access-logfile - &
service_pids+=($!)

echo "API on http://localhost:$PORT (docs at /docs); $workers worker(s); Ctrl-C stops everything"
wait -n "${service_pids[@]}" ${redis_pid:+"$redis_pid"}
