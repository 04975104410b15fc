#!/usr/bin/env bash
# Start the services the tests and the full mode need, natively (no Docker needed).
#   scripts/services.sh up       start what is missing: PostgreSQL (installed from Debian's packages
#                                when root), then a single-node Kafka (kafka/broker.sh: Java 17 and
#                                Maven, installed the same way when missing), Redis (scripts/redis.sh:
#                                Debian's redis-server, no persistence); wrk, the load
#                                generator of `make bench-api`, is installed too when missing and
#                                root (optional: failing to install it only warns)
#                                Prometheus (Debian's package: promtool checks the stack's config and
#                                the observability proof scrapes the service with it) and Jaeger,
#                                the OTLP trace receiver of the tests (scripts/jaeger.sh: built once
#                                with Go into ~/.cache, about 5 minutes the first time)
#   scripts/services.sh down     stop Kafka, Jaeger and Redis (PostgreSQL is the machine's cluster and keeps running)
#   scripts/services.sh status   say what answers
# `up` fails when any service did not come up; each one is still tried.
# The same script serves developers (make services / make test) and CI (.ci/run).
set -uo pipefail

PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
APP_ROLE=${APP_DB_USER:-app}
APP_PASSWORD=${APP_DB_PASSWORD:-app}
APP_DB=${APP_DB_NAME:-app}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_BROKER=$ROOT_DIR/kafka/broker.sh

log() { printf 'services: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

postgres_install() {
  if command -v pg_ctlcluster >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL is not installed and this is not a root Debian shell; install it, or set TEST_DATABASE_URL"
    return 1
  fi
  log "installing PostgreSQL from Debian's packages"
  # LANG decides the encoding of the cluster the package creates: UTF-8, not SQL_ASCII.
  apt-get update -qq >/dev/null &&
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

postgres_up() {
  if ! port_open "$PG_HOST" "$PG_PORT"; then
    postgres_install || return 1
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
      pg_createcluster --locale C.UTF-8 --encoding UTF8 "$version" main >/dev/null || return 1
    fi
    pg_ctlcluster "$version" main start || return 1
    for _ in $(seq 1 50); do port_open "$PG_HOST" "$PG_PORT" && break; sleep 0.2; done
  fi
  if ! port_open "$PG_HOST" "$PG_PORT"; then log "PostgreSQL did not start on $PG_HOST:$PG_PORT"; return 1; fi
  if id postgres >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ "$(id -un)" = postgres ]; }; then
    as_postgres psql -qtA -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_ROLE') THEN
        CREATE ROLE \"$APP_ROLE\" LOGIN PASSWORD '$APP_PASSWORD' CREATEDB CREATEROLE;
      ELSE
        ALTER ROLE \"$APP_ROLE\" CREATEDB CREATEROLE;
      END IF; END \$\$;" >/dev/null || return 1
    if [ -z "$(as_postgres psql -qtA -c "SELECT 1 FROM pg_database WHERE datname = '$APP_DB'")" ]; then
      as_postgres createdb -O "$APP_ROLE" -E UTF8 -T template0 --locale C.UTF-8 "$APP_DB" || return 1
    fi
  fi
  log "PostgreSQL on $PG_HOST:$PG_PORT (role $APP_ROLE, database $APP_DB)"
}

wrk_install() {
  # Optional (make bench-api only): never fails `up`, at most warns.
  if command -v wrk >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "wrk is not installed (make bench-api needs it; apt-get install wrk); the rest works without it"
    return 0
  fi
  log "installing wrk from Debian's packages (for make bench-api)"
  if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }; then
    log "warning: could not install wrk; make bench-api needs it (its smoke test is skipped); the rest works without it"
  fi
  return 0
}

kafka_up() {
  local line
  if line=$(bash "$KAFKA_BROKER" up); then
    log "$line"
  else
    log "Kafka did not start (see the lines above; kafka/broker.sh logs shows the broker's log)"
    return 1
  fi
}

prometheus_install() {
  if bash "$ROOT_DIR/scripts/prometheus.sh" install; then
    log "Prometheus: $(command -v prometheus) (started by the tests that need it)"
  else
    log "Prometheus is not installed (apt-get install prometheus); the observability proof needs it"
    return 1
  fi
}

redis_up() {
  local line
  if line=$(bash "$ROOT_DIR/scripts/redis.sh" up); then
    log "$line"
  else
    log "Redis did not start (scripts/redis.sh); the cache and rate-limit tests need it"
    return 1
  fi
}

jaeger_up() {
  local line
  if line=$(bash "$ROOT_DIR/scripts/jaeger.sh" up); then
    log "$line"
  else
    log "Jaeger did not start (scripts/jaeger.sh logs); the trace export tests need it"
    return 1
  fi
}

status() {
  if port_open "$PG_HOST" "$PG_PORT"; then log "PostgreSQL: up on $PG_HOST:$PG_PORT"; else log "PostgreSQL: down"; fi
  log "$(bash "$ROOT_DIR/scripts/redis.sh" status)"
  log "$(bash "$KAFKA_BROKER" status)"
  log "$(bash "$ROOT_DIR/scripts/jaeger.sh" status)"
}

case "${1:-up}" in
  up)
    failed=0
    postgres_up || failed=1
    wrk_install
    redis_up || failed=1
    kafka_up || failed=1
    prometheus_install || failed=1
    jaeger_up || failed=1
    exit "$failed"
    ;;
  down)
    # Kafka only: PostgreSQL is the machine's cluster (pg_ctlcluster), often shared with other work.
    bash "$KAFKA_BROKER" down
    bash "$ROOT_DIR/scripts/jaeger.sh" down
    bash "$ROOT_DIR/scripts/redis.sh" down
    ;;
  status) status ;;
  *) echo "usage: $0 [up|down|status]" >&2; exit 2 ;;
esac
