#!/usr/bin/env bash
# Redis as the service's cache, natively (Debian's redis-server; no Docker needed).
#   scripts/redis.sh up       install redis-server when missing (root on Debian), start it in the
#                             background on REDIS_PORT (6379) unless something answers there already
#   scripts/redis.sh down     stop the server this script started (SHUTDOWN NOSAVE)
#   scripts/redis.sh status   say whether it answers (exit 0 up, 3 down)
# A cache, so no persistence (no RDB, no AOF): a restarted Redis starts empty, never with entries
# that went stale while it was down. maxmemory 256 MB, least-recently-used keys evicted first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${REDIS_PORT:-6379}
HOST=127.0.0.1
HOME_DIR=$ROOT/var/redis
PID_FILE=$HOME_DIR/redis-$PORT.pid
LOG=$HOME_DIR/redis-$PORT.log

say() { printf '%s\n' "$*"; }
log() { printf 'redis: %s\n' "$*" >&2; }

answers() { command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null)" = PONG ]; }

install() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "redis-server is not installed and this is not a root Debian shell: apt-get install redis-server"
    return 1
  fi
  log "installing redis-server from Debian's packages"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
}

up() {
  if answers; then say "Redis on $HOST:$PORT (already running)"; return 0; fi
  install || return 1
  mkdir -p "$HOME_DIR"
  redis-server --port "$PORT" --bind "$HOST" --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG" \
    --dir "$HOME_DIR" --save '' --appendonly no --maxmemory 256mb --maxmemory-policy allkeys-lru
  for _ in $(seq 1 50); do answers && break; sleep 0.1; done
  if ! answers; then log "Redis did not answer on $HOST:$PORT; its log:"; tail -n 20 "$LOG" >&2 || true; return 1; fi
  say "Redis on $HOST:$PORT ($(redis-server --version | awk '{print $3}'))"
}

down() {
  if answers; then redis-cli -h "$HOST" -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; fi
  rm -f "$PID_FILE"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) if answers; then say "Redis: up on $HOST:$PORT"; else say "Redis: down"; exit 3; fi ;;
  *) echo "usage: $0 [up|down|status]" >&2; exit 2 ;;
esac
