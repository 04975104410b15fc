#!/usr/bin/env bash
# Prometheus without Docker: the one of Debian's `prometheus` package (it ships promtool too), run as
# our own process, never as the package's system service.
#   scripts/prometheus.sh install                   install the package when prometheus or promtool
#                                                   is missing (root on Debian); its service is kept
#                                                   from starting and disabled
#   scripts/prometheus.sh up CONFIG PORT DATA_DIR    start on 127.0.0.1:PORT in the background (TSDB in
#                                                   DATA_DIR/tsdb, DATA_DIR/prometheus.log and .pid),
#                                                   wait until /-/ready answers 200
#   scripts/prometheus.sh down DATA_DIR              stop the one `up` started there (SIGTERM; SIGKILL
#                                                   after PROMETHEUS_STOP_TIMEOUT seconds)
#   scripts/prometheus.sh status DATA_DIR            say whether it runs (exit 0 up, 3 down)
#   scripts/prometheus.sh check                      promtool: check config (and the rule files it
#                                                   names), check rules, and the rules' unit tests
# `up` runs with the flags the compose service uses: --enable-feature=exemplar-storage (exemplars of
# the HTTP latency histogram, scraped as OpenMetrics) is a command-line flag, not a prometheus.yml key.
# Environment: PROMETHEUS_START_TIMEOUT (seconds, 30), PROMETHEUS_STOP_TIMEOUT (seconds, 30).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
START_TIMEOUT=${PROMETHEUS_START_TIMEOUT:-30}
STOP_TIMEOUT=${PROMETHEUS_STOP_TIMEOUT:-30}

say() { printf '%s\n' "$*"; }                    # the one result line, on stdout
log() { printf 'prometheus: %s\n' "$*" >&2; }    # progress and errors, on stderr
usage() {
  echo "usage: $0 install | up CONFIG PORT DATA_DIR | down DATA_DIR | status DATA_DIR | check" >&2
  exit 2
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# HTTP status of GET $2 on $HOST:$1, with bash alone (no curl needed); empty when nothing answers.
http_status() {
  local port=$1 path=$2 line
  line=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$HOST/$port" || exit 0
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$HOST" "$port" >&3
    IFS= read -r -t 5 line <&3 || true
    printf '%s' "$line"
  ) || true
  line=${line%$'\r'}   # "HTTP/1.0 200 OK"
  line=${line#* }
  printf '%s' "${line%% *}"
}

absolute() { # a path made absolute against the current directory
  case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac
}

# The pid in DATA_DIR's pid file when that process is alive and is the prometheus of that directory.
running_pid() {
  local dir=$1 pid
  [ -f "$dir/prometheus.pid" ] || return 1
  pid=$(cat "$dir/prometheus.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # a recycled pid belongs to another program: check the command line names our TSDB directory
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--storage.tsdb.path=$dir/tsdb" || return 1
  printf '%s' "$pid"
}

install() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    log "installed: $(prometheus --version 2>&1 | head -n 1)"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "prometheus/promtool are not installed and this is not a root Debian shell; apt-get install prometheus"
    return 1
  fi
  log "installing Prometheus from Debian's packages"
  # The package starts its own service (as user prometheus, on :9090) unless policy-rc.d says no;
  # we run our own process, so keep it from starting, and disable it afterwards.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  local status=0
  { apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || status=$?
  if [ "$ours" = 1 ]; then rm -f "$policy"; fi
  if [ "$status" != 0 ]; then log "apt-get install prometheus failed"; return "$status"; fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  log "installed: $(prometheus --version 2>&1 | head -n 1)"
}

up() {
  [ $# = 3 ] || usage
  local config port dir pid status
  config=$(absolute "$1")
  port=$2
  dir=$(absolute "$3")
  [ -f "$config" ] || { log "no such config file: $config"; return 1; }
  case "$port" in '' | *[!0-9]*) log "PORT must be a number, not '$port'"; return 2 ;; esac
  command -v prometheus >/dev/null 2>&1 || { log "prometheus is not installed ($0 install)"; return 1; }
  mkdir -p "$dir/tsdb"
  if pid=$(running_pid "$dir"); then
    say "Prometheus already running on http://$HOST:$port (pid $pid, $dir)"
    return 0
  fi
  if port_open "$HOST" "$port"; then
    log "port $port is in use by another process; choose another PORT"
    return 1
  fi
  # stdin, stdout and stderr detached from the caller: a caller reading our output (a test's
  # subprocess pipe) gets its EOF when this script ends, not when Prometheus does.
  nohup prometheus \
    --config.file="$config" \
    --web.listen-address="$HOST:$port" \
    --storage.tsdb.path="$dir/tsdb" \
    --enable-feature=exemplar-storage \
    </dev/null >>"$dir/prometheus.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$dir/prometheus.pid"
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/prometheus.pid"
      log "exited during startup; the end of $dir/prometheus.log:"
      tail -n 20 "$dir/prometheus.log" >&2
      return 1
    fi
    status=$(http_status "$port" /-/ready)
    if [ "$status" = 200 ]; then
      say "Prometheus on http://$HOST:$port (pid $pid, config $config, data $dir)"
      return 0
    fi
    sleep 0.2
  done
  log "not ready within ${START_TIMEOUT}s (see $dir/prometheus.log); stopping it"
  down "$dir" >/dev/null || true
  return 1
}

down() {
  [ $# = 1 ] || usage
  local dir pid
  dir=$(absolute "$1")
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/prometheus.pid"
    say "Prometheus not running ($dir)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/prometheus.pid"
  say "Prometheus stopped (pid $pid, $dir)"
}

status() {
  [ $# = 1 ] || usage
  local dir pid
  dir=$(absolute "$1")
  if pid=$(running_pid "$dir"); then
    say "Prometheus running (pid $pid, $dir)"
  else
    say "Prometheus not running ($dir)"
    return 3
  fi
}

check() {
  command -v promtool >/dev/null 2>&1 || { log "promtool is not installed ($0 install)"; return 1; }
  cd "$ROOT"
  promtool check config prometheus/prometheus.yml
  promtool check rules prometheus/rules/*.yml
  promtool test rules prometheus/tests/*.yml
}

case "${1:-}" in
  install) install ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  status) shift; status "$@" ;;
  check) check ;;
  *) usage ;;
esac
