#!/usr/bin/env bash
# Starts the embedded deployment: redis-server (unless REDIS_URL points elsewhere), WORKERS
# worker processes and the API under gunicorn; Ctrl-C or SIGTERM stops them all.
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
mkdir -p "$root/var/redis" "$UPLOAD_DIR" "$MODEL_CACHE_DIR"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping..."
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop INT TERM EXIT

if [ -z "${REDIS_URL:-}" ]; then
  redis_args=(--port "$REDIS_PORT" --bind 127.0.0.1 --dir "$root/var/redis"
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save "")
  [ -n "${REDIS_PASSWORD:-}" ] && redis_args+=(--requirepass "$REDIS_PASSWORD")
  redis-server "${redis_args[@]}" &
  pids+=($!)
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ${REDIS_PASSWORD:+-a "$REDIS_PASSWORD"} ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

for _ in $(seq "$workers"); do
  "$root/.venv/bin/python" -m worker &
  pids+=($!)
done

"$root/.venv/bin/gunicorn" api.main:app -k uvicorn_worker.UvicornWorker \
  --bind "0.0.0.0:$PORT" --graceful-timeout 30 --access-logfile - &
pids+=($!)

echo "API on http://localhost:$PORT (docs at /docs); $workers worker(s); Ctrl-C stops everything"
wait -n "${pids[@]}"
