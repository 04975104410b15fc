#!/usr/bin/env bash
# Jaeger v2 (tools/jaeger: the Go program github.com/jaegertracing/jaeger/cmd/jaeger) as a native
# trace receiver the tests can query, without Docker: OTLP in, spans kept in memory, the query API out.
#   scripts/jaeger.sh build      build the binary once into the cache (below); again only when
#                                tools/jaeger/go.mod or go.sum change
#   scripts/jaeger.sh up         build if needed, start in the background, wait until the query API
#                                and both OTLP ports answer (fails with the log's tail otherwise)
#   scripts/jaeger.sh down       stop (SIGTERM; SIGKILL after 10 s); the spans are gone
#   scripts/jaeger.sh status     say whether it answers (exit 0 up, 1 unhealthy, 3 down)
#   scripts/jaeger.sh logs [-f]  its log (LINES=100 lines, or follow it)
# `up` on a running Jaeger and `down` on a stopped one do nothing.
# Configuration: tools/jaeger/config.yaml. Environment: JAEGER_OTLP_GRPC_PORT (4317),
# JAEGER_OTLP_HTTP_PORT (4318), JAEGER_QUERY_PORT (16686), JAEGER_QUERY_GRPC_PORT (0: any free port),
# JAEGER_LISTEN_HOST (127.0.0.1), JAEGER_LOG_LEVEL (info), JAEGER_START_TIMEOUT (seconds, 60),
# JAEGER_HOME (var/jaeger: the log and pid file; a test runs a private Jaeger with its own and its own ports),
# GO (the go command; else go on PATH, else /usr/local/go/bin/go; Go 1.24 or newer).
# The binary, and Go's module and build caches, are kept outside the repo in
# ${XDG_CACHE_HOME:-$HOME/.cache}/user-service/ (jaeger/<version>/jaeger, go/mod, go/build), so a
# machine that keeps $HOME/.cache (CI) builds once. On two cores a cold build takes about 5 minutes
# (fetching the modules, 1.2 GB unpacked, some 15 s of it), with Go's build cache kept about 6 s;
# `up` with the binary built is ready in well under a second.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/tools/jaeger
CONFIG=$TOOLS/config.yaml
PACKAGE=github.com/jaegertracing/jaeger/cmd/jaeger
VERSION=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$TOOLS/go.mod")
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/user-service
BIN=$CACHE/jaeger/$VERSION/jaeger
STAMP=$BIN.sum # go.mod and go.sum the binary was built from
GO_MODCACHE=$CACHE/go/mod
GO_BUILDCACHE=$CACHE/go/build
HOME_DIR=${JAEGER_HOME:-$ROOT/var/jaeger} # its log, pid file and lock: another directory, another Jaeger
LOG=$HOME_DIR/jaeger.log
PID_FILE=$HOME_DIR/jaeger.pid
BUILD_LOG=$HOME_DIR/build.log

export JAEGER_LISTEN_HOST=${JAEGER_LISTEN_HOST:-127.0.0.1}
export JAEGER_OTLP_GRPC_PORT=${JAEGER_OTLP_GRPC_PORT:-4317}
export JAEGER_OTLP_HTTP_PORT=${JAEGER_OTLP_HTTP_PORT:-4318}
export JAEGER_QUERY_PORT=${JAEGER_QUERY_PORT:-16686}
export JAEGER_QUERY_GRPC_PORT=${JAEGER_QUERY_GRPC_PORT:-0}
case "$JAEGER_LISTEN_HOST" in 0.0.0.0 | '' | '[::]' | ::) HOST=127.0.0.1 ;; *) HOST=$JAEGER_LISTEN_HOST ;; esac
START_TIMEOUT=${JAEGER_START_TIMEOUT:-60}
STOP_TIMEOUT=10

say() { printf '%s\n' "$*"; }              # the one result line, on stdout
log() { printf 'jaeger: %s\n' "$*" >&2; } # progress and errors, on stderr
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
endpoints() {
  printf 'OTLP gRPC %s:%s, OTLP HTTP http://%s:%s, query http://%s:%s' "$HOST" "$JAEGER_OTLP_GRPC_PORT" \
    "$HOST" "$JAEGER_OTLP_HTTP_PORT" "$HOST" "$JAEGER_QUERY_PORT"
}

# --- Build ---------------------------------------------------------------------------------------

find_go() { # sets GO_CMD
  local version
  GO_CMD=${GO:-$(command -v go 2>/dev/null || true)}
  [ -n "$GO_CMD" ] || GO_CMD=/usr/local/go/bin/go
  if ! version=$("$GO_CMD" env GOVERSION 2>/dev/null); then
    log "building Jaeger needs Go 1.24 or newer, and no go command was found (set GO, or put go on PATH)"
    return 1
  fi
  log "building with $GO_CMD ($version)"
}

module_sum() { cat "$TOOLS/go.mod" "$TOOLS/go.sum" | cksum; }

build() {
  local started size
  if [ -z "$VERSION" ]; then log "no github.com/jaegertracing/jaeger requirement in $TOOLS/go.mod"; return 1; fi
  if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(module_sum)" ]; then
    log "Jaeger $VERSION already built ($BIN)"
    return 0
  fi
  find_go
  mkdir -p "$(dirname "$BIN")" "$HOME_DIR"
  log "building Jaeger $VERSION into $BIN (without Go's build cache about 5 minutes; output: $BUILD_LOG)"
  started=$(now)
  # -modcacherw: a module cache that rm -rf can remove; -mod=readonly: go.mod and go.sum as they are.
  # -s -w: no symbol table and DWARF (a smaller binary, a faster link).
  if ! (cd "$TOOLS" && GOMODCACHE=$GO_MODCACHE GOCACHE=$GO_BUILDCACHE \
    GOFLAGS="-modcacherw -mod=readonly -buildvcs=false" \
    "$GO_CMD" build -trimpath \
    -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$VERSION" \
    -o "$BIN.tmp" "$PACKAGE") >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    rm -f "$BIN.tmp"
    log "building Jaeger failed after $(since "$started") s (full output: $BUILD_LOG)"
    return 1
  fi
  mv -f "$BIN.tmp" "$BIN"
  module_sum >"$STAMP"
  size=$(du -m "$BIN" | cut -f1)
  log "built Jaeger $VERSION in $(since "$started") s ($BIN, $size MB)"
}

# --- The process ---------------------------------------------------------------------------------

running_pid() { # the pid when it is the Jaeger this script started and it is alive
  local pid
  [ -f "$PID_FILE" ] && read -r pid <"$PID_FILE" 2>/dev/null && [ -n "$pid" ] || return 1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config=$CONFIG" || return 1
  printf '%s' "$pid"
}

api_answers() ( # GET /api/services answers 200
  local status
  if command -v curl >/dev/null 2>&1; then
    exec curl -fsS -o /dev/null -m 2 "http://$HOST:$JAEGER_QUERY_PORT/api/services" 2>/dev/null
  fi
  exec 3<>"/dev/tcp/$HOST/$JAEGER_QUERY_PORT" 2>/dev/null || exit 1
  printf 'GET /api/services HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$HOST" "$JAEGER_QUERY_PORT" >&3
  read -r -t 2 status <&3 || exit 1
  [[ $status == "HTTP/1."?" 200"* ]]
)

answers() { # the query API and both OTLP receivers
  api_answers && port_open "$HOST" "$JAEGER_OTLP_GRPC_PORT" && port_open "$HOST" "$JAEGER_OTLP_HTTP_PORT"
}

ports_taken() { # the ports Jaeger would listen on that something already listens on
  local name port owner taken=0
  for name in JAEGER_OTLP_GRPC_PORT JAEGER_OTLP_HTTP_PORT JAEGER_QUERY_PORT JAEGER_QUERY_GRPC_PORT; do
    port=${!name}
    [ "$port" = 0 ] && continue
    if port_open "$HOST" "$port"; then
      owner=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 || true)
      log "$HOST:$port ($name) is taken${owner:+ by $owner}; stop that, or set $name to a free port"
      taken=1
    fi
  done
  return "$taken"
}

wait_ready() { # $1: pid, $2: start time
  local pid=$1 started=$2 deadline
  deadline=$(($(date +%s) + START_TIMEOUT))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOG" >&2
      log "Jaeger exited while starting (log: $LOG)"
      rm -f "$PID_FILE"
      return 1
    fi
    if answers; then
      say "Jaeger: up ($(endpoints); pid $pid, ready in $(since "$started") s)"
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$LOG" >&2
  log "Jaeger did not answer within $START_TIMEOUT s (pid $pid, log: $LOG)"
  return 1
}

up() {
  local pid started
  if pid=$(running_pid); then
    if answers; then say "Jaeger: already up ($(endpoints); pid $pid)"; return 0; fi
    wait_ready "$pid" "$(now)"
    return
  fi
  ports_taken || return 1
  build
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.1" # one log per run, the previous one kept
  started=$(now)
  rm -f "$PID_FILE"
  # Its own session (survives the caller's terminal and process group); the lock's fd stays here.
  # shellcheck disable=SC2016 # $$ and $1 are the child shell's
  setsid bash -c 'printf "%s\n" "$$" >"$1"; shift; exec "$@"' jaeger "$PID_FILE" \
    "$BIN" --config="$CONFIG" </dev/null >>"$LOG" 2>&1 9>&- &
  for _ in $(seq 1 50); do [ -s "$PID_FILE" ] && break; sleep 0.1; done
  read -r pid <"$PID_FILE" 2>/dev/null || { log "Jaeger did not start (log: $LOG)"; return 1; }
  wait_ready "$pid" "$started"
}

down() {
  local pid started
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    say "Jaeger: not running"
    return 0
  fi
  started=$(now)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "Jaeger did not stop within $STOP_TIMEOUT s; killing it (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  say "Jaeger: stopped (pid $pid, in $(since "$started") s)"
}

status() {
  local pid
  if pid=$(running_pid); then
    if answers; then say "Jaeger: up ($(endpoints); pid $pid)"; return 0; fi
    say "Jaeger: running but not answering ($(endpoints); pid $pid; log: $LOG)"
    return 1
  fi
  if api_answers; then
    say "Jaeger: http://$HOST:$JAEGER_QUERY_PORT answers, but not a Jaeger this script started"
    return 1
  fi
  say "Jaeger: down"
  return 3
}

logs() {
  [ -f "$LOG" ] || { log "no log yet ($LOG)"; return 1; }
  if [ "${1:-}" = -f ]; then exec tail -n "${LINES:-100}" -F "$LOG"; fi
  tail -n "${LINES:-100}" "$LOG"
}

locked() { # one build/up/down at a time
  mkdir -p "$HOME_DIR"
  exec 9>"$HOME_DIR/.lock"
  flock -w 1200 9 || { log "another scripts/jaeger.sh holds $HOME_DIR/.lock"; return 1; }
  "$@"
}

case "${1:-}" in
  build) locked build ;;
  up) locked up ;;
  down) locked down ;;
  status) status ;;
  logs) logs "${2:-}" ;;
  *) echo "usage: $0 build|up|down|status|logs [-f]" >&2; exit 2 ;;
esac
