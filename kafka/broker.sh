#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft mode, broker and controller in one JVM), without Docker.
#   kafka/broker.sh up         fetch the jars (Maven), format the storage, start, wait until ready
#   kafka/broker.sh down       stop gracefully (SIGTERM; SIGKILL after 30 s)
#   kafka/broker.sh restart    down, then up (the data stays)
#   kafka/broker.sh status     say whether it answers (exit 0 up, 1 unhealthy, 3 down)
#   kafka/broker.sh logs [-f]  the broker's log (LINES=100 lines, or follow it)
# Every command is idempotent: `up` on a running broker and `down` on a stopped one do nothing.
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT + 1), KAFKA_HOME_DIR (var/kafka:
# jars in libs/, data in data/, broker.log, broker.pid), KAFKA_HEAP_OPTS (-Xms256m -Xmx512m),
# KAFKA_LOG_LEVEL (info), KAFKA_START_TIMEOUT (seconds, 120), KAFKA_JAVA_HOME (a Java 17+ to use).
# Needs Java 17 and Maven; as root on Debian it installs them (openjdk-17-jre-headless, maven).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
HOME_DIR=${KAFKA_HOME_DIR:-$ROOT/var/kafka}
case "$HOME_DIR" in /*) ;; *) HOME_DIR=$ROOT/$HOME_DIR ;; esac
LIBS=$HOME_DIR/libs
DATA=$HOME_DIR/data
LOG=$HOME_DIR/broker.log
PID_FILE=$HOME_DIR/broker.pid
PROPS=$HOME_DIR/server.properties
TEMPLATE=$ROOT/kafka/server.properties
POM=$ROOT/kafka/pom.xml
START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
STOP_TIMEOUT=30
read -r -a HEAP <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
JVM_OPTS=(
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  # slf4j-simple (kafka/pom.xml) writes to stderr, which goes to broker.log
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${KAFKA_LOG_LEVEL:-info}"
  -Dorg.slf4j.simpleLogger.showDateTime=true
  "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS"
  -Dorg.slf4j.simpleLogger.showThreadName=false
  -Dorg.slf4j.simpleLogger.showShortLogName=true
)

say() { printf '%s\n' "$*"; }                  # the one result line, on stdout
log() { printf 'kafka: %s\n' "$*" >&2; }      # progress and errors, on stderr
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
is_root() { [ "$(id -u)" = 0 ]; }

# --- Java 17 and Maven -------------------------------------------------------------------------

java_major() { # $1: a Java home; prints its major version
  local home=$1 version=""
  [ -x "$home/bin/java" ] || return 1
  [ -f "$home/release" ] && version=$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release")
  [ -n "$version" ] || version=$("$home/bin/java" -version 2>&1 | sed -n '1s/.*version "\([^"]*\)".*/\1/p')
  version=${version#1.}
  [ -n "$version" ] && printf '%s' "${version%%[.+-]*}"
}

java_homes() { # candidate homes, most preferred first
  local java
  [ -n "${KAFKA_JAVA_HOME:-}" ] && printf '%s\n' "$KAFKA_JAVA_HOME"
  [ -n "${JAVA_HOME:-}" ] && printf '%s\n' "$JAVA_HOME"
  java=$(command -v java 2>/dev/null) && readlink -f "$java" | sed 's|/bin/java$||'
  update-alternatives --list java 2>/dev/null | sed 's|/bin/java$||'
  for java in /usr/lib/jvm/*; do [ -d "$java" ] && printf '%s\n' "$java"; done
}

find_java() { # $1: "17" for exactly 17, "17+" for 17 or newer; prints the home
  local home major
  while read -r home; do
    major=$(java_major "$home" 2>/dev/null) || continue
    if [ "$major" = 17 ] || { [ "$1" = 17+ ] && [ "$major" -gt 17 ] 2>/dev/null; }; then printf '%s' "$home"; return 0; fi
  done < <(java_homes)
  return 1
}

apt_install() {
  is_root && command -v apt-get >/dev/null 2>&1 || return 1
  log "installing $* from Debian's packages"
  mkdir -p /usr/share/man/man1 # the JRE's post-install fails on slim images without it
  apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_java() { # sets JAVA_HOME_KAFKA
  if [ -n "${KAFKA_JAVA_HOME:-}" ] && JAVA_HOME_KAFKA=$(find_java 17+); then return 0; fi
  if JAVA_HOME_KAFKA=$(find_java 17); then return 0; fi
  if apt_install openjdk-17-jre-headless && JAVA_HOME_KAFKA=$(find_java 17); then return 0; fi
  if JAVA_HOME_KAFKA=$(find_java 17+); then
    log "no Java 17 found; using $JAVA_HOME_KAFKA (Java $(java_major "$JAVA_HOME_KAFKA"))"
    return 0
  fi
  log "Kafka needs Java 17, and none was found (set KAFKA_JAVA_HOME, or as root on Debian this script installs openjdk-17-jre-headless)"
  return 1
}

ensure_maven() {
  command -v mvn >/dev/null 2>&1 && return 0
  apt_install maven && command -v mvn >/dev/null 2>&1 && return 0
  log "Kafka's jars are fetched with Maven, and mvn was not found (install maven, or as root on Debian this script does)"
  return 1
}

# --- Fetch, configure, format --------------------------------------------------------------------

fetch() { # the jars kafka/pom.xml names, into libs/ (again when the pom changes)
  local want started
  want=$(cksum <"$POM")
  [ -f "$LIBS/.pom-cksum" ] && [ "$(cat "$LIBS/.pom-cksum")" = "$want" ] && return 0
  ensure_maven || return 1
  log "fetching Kafka's jars with Maven (kafka/pom.xml) into $LIBS"
  started=$(now)
  rm -rf "$LIBS.tmp"
  if ! JAVA_HOME=$JAVA_HOME_KAFKA mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS.tmp" -DincludeScope=runtime >"$HOME_DIR/fetch.log" 2>&1; then
    tail -n 20 "$HOME_DIR/fetch.log" >&2
    log "fetching the jars failed (full output: $HOME_DIR/fetch.log)"
    rm -rf "$LIBS.tmp"
    return 1
  fi
  printf '%s\n' "$want" >"$LIBS.tmp/.pom-cksum"
  rm -rf "$LIBS" && mv "$LIBS.tmp" "$LIBS"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $(since "$started") s"
}

configure() { # kafka/server.properties with the placeholders filled in
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$DATA|g" "$TEMPLATE" >"$PROPS.tmp" && mv "$PROPS.tmp" "$PROPS"
}

kafka_tool() { "$JAVA_HOME_KAFKA/bin/java" -Xmx256m -XX:TieredStopAtLevel=1 -cp "$LIBS/*" "$@"; }

format() { # once: a fresh cluster id and the metadata log in data/
  local started cluster_id
  [ -f "$DATA/meta.properties" ] && return 0
  started=$(now)
  cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>"$HOME_DIR/format.log" | tail -n 1)
  mkdir -p "$DATA"
  if [ -z "$cluster_id" ] ||
    ! kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >>"$HOME_DIR/format.log" 2>&1; then
    tail -n 20 "$HOME_DIR/format.log" >&2
    log "formatting $DATA failed (full output: $HOME_DIR/format.log)"
    return 1
  fi
  log "formatted $DATA (cluster id $cluster_id) in $(since "$started") s"
}

# --- The process ---------------------------------------------------------------------------------

running_pid() { # the broker's pid when it is this broker and alive
  local pid
  [ -f "$PID_FILE" ] && read -r pid <"$PID_FILE" 2>/dev/null && [ -n "$pid" ] || return 1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $PROPS" || return 1
  printf '%s' "$pid"
}

wait_ready() { # $1: pid, $2: start time; ready = port open and the broker says it started
  local pid=$1 started=$2 deadline
  deadline=$(($(date +%s) + START_TIMEOUT))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOG" >&2
      log "the broker exited while starting (log: $LOG)"
      rm -f "$PID_FILE"
      return 1
    fi
    if port_open "$HOST" "$KAFKA_PORT" && grep -q 'Kafka Server started' "$LOG" 2>/dev/null; then
      say "Kafka: up on $HOST:$KAFKA_PORT (pid $pid, ready in $(since "$started") s)"
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$LOG" >&2
  log "the broker did not get ready within $START_TIMEOUT s (pid $pid, log: $LOG)"
  return 1
}

up() {
  local pid started
  if pid=$(running_pid); then
    if port_open "$HOST" "$KAFKA_PORT"; then say "Kafka: already up on $HOST:$KAFKA_PORT (pid $pid)"; return 0; fi
    wait_ready "$pid" "$(now)"
    return
  fi
  if port_open "$HOST" "$KAFKA_PORT"; then
    log "$HOST:$KAFKA_PORT is taken by a process this script did not start (pid file: $PID_FILE)"
    return 1
  fi
  ensure_java && fetch && configure && format || return 1
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.1" # one log per run, the previous one kept
  started=$(now)
  rm -f "$PID_FILE"
  # Its own session (survives the caller's terminal and process group); the lock's fd stays here.
  # shellcheck disable=SC2016 # $$ and $1 are the child shell's
  setsid bash -c 'printf "%s\n" "$$" >"$1"; shift; exec "$@"' kafka-broker "$PID_FILE" \
    "$JAVA_HOME_KAFKA/bin/java" "${HEAP[@]}" "${JVM_OPTS[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$LOG" 2>&1 9>&- &
  for _ in $(seq 1 50); do [ -s "$PID_FILE" ] && break; sleep 0.1; done
  read -r pid <"$PID_FILE" 2>/dev/null || { log "the broker did not start (log: $LOG)"; return 1; }
  wait_ready "$pid" "$started"
}

down() {
  local pid started
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    say "Kafka: not running"
    return 0
  fi
  started=$(now)
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "the broker did not stop within $STOP_TIMEOUT s; killing it (pid $pid)"
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  say "Kafka: stopped (pid $pid, in $(since "$started") s)"
}

status() {
  local pid
  if pid=$(running_pid); then
    if port_open "$HOST" "$KAFKA_PORT"; then say "Kafka: up on $HOST:$KAFKA_PORT (pid $pid)"; return 0; fi
    say "Kafka: running but not answering on $HOST:$KAFKA_PORT (pid $pid; log: $LOG)"
    return 1
  fi
  if port_open "$HOST" "$KAFKA_PORT"; then
    say "Kafka: $HOST:$KAFKA_PORT answers, but not a broker this script started"
    return 1
  fi
  say "Kafka: down"
  return 3
}

restart() { down && up; }

logs() {
  [ -f "$LOG" ] || { log "no log yet ($LOG)"; return 1; }
  if [ "${1:-}" = -f ]; then exec tail -n "${LINES:-100}" -F "$LOG"; fi
  tail -n "${LINES:-100}" "$LOG"
}

locked() { # one up/down/restart at a time
  mkdir -p "$HOME_DIR" || return 1
  exec 9>"$HOME_DIR/.lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) 9 || { log "another kafka/broker.sh holds $HOME_DIR/.lock"; return 1; }
  "$@"
}

case "${1:-}" in
  up) locked up ;;
  down) locked down ;;
  restart) locked restart ;;
  status) status ;;
  logs) logs "${2:-}" ;;
  *) echo "usage: $0 up|down|restart|status|logs [-f]" >&2; exit 2 ;;
esac
