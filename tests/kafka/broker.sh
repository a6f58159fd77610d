#!/usr/bin/env bash
# A real Apache Kafka broker for tests and the demo: single node, KRaft (broker + controller in
# one JVM), loopback only, on free ports, from Maven Central's jars cached in .cache/kafka/.
#
#   tests/kafka/broker.sh fetch                      jars into .cache/kafka/<version>/lib
#   tests/kafka/broker.sh start DIR                  start; prints host:port; DIR/bootstrap too
#   tests/kafka/broker.sh create-topic DIR TOPIC N   a topic of N partitions
#   tests/kafka/broker.sh stop DIR                   SIGTERM, then SIGKILL after 30 s
#   tests/kafka/broker.sh kill DIR                   SIGKILL at once (a crash; data kept)
#   tests/kafka/broker.sh resume DIR                 start a killed broker again, same ports/data
#   tests/kafka/broker.sh classpath                  for other Kafka tools (ProducerPerformance)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
lib="$root/.cache/kafka/$version/lib"

die() { echo "broker.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$lib/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn is missing: run scripts/install-deps"
  command -v java >/dev/null || die "java is missing: run scripts/install-deps"
  # Tests start brokers in parallel: on a fresh machine they all arrive here at once. One fetches
  # while the others wait on the lock, and the jars go to a private folder renamed into place, so
  # that nobody ever sees (or copies over) a half-filled lib/.
  mkdir -p "$(dirname "$lib")"
  exec 9>"$lib.lock"
  flock 9
  if [ -f "$lib/.complete" ]; then exec 9>&-; return 0; fi
  echo "broker.sh: fetching Apache Kafka $version from Maven Central (once)" >&2
  local tmp="$lib.tmp.$$"
  rm -rf "$tmp" "$lib"
  mkdir -p "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >&2; then
    rm -rf "$tmp"
    die "could not fetch Kafka's jars with Maven"
  fi
  touch "$tmp/.complete"
  mv "$tmp" "$lib"
  exec 9>&-
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

java_opts=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
           -Djava.awt.headless=true)

start_once() {  # start_once DIR: 0 when ready, 1 when the ports were taken, 2 on other failures
  local dir=$1 port cport
  port=$(free_port)
  cport=$(free_port)
  [ "$port" != "$cport" ] || return 1
  rm -rf "$dir/data" "$dir/broker.log"
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=8388608
PROPS
  cat >"$dir/log4j2.properties" <<LOG
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $dir/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache
logger.apache.level = warn
LOG
  local cluster_id
  cluster_id=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  java "${java_opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$lib/*" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
    --ignore-formatted >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; return 2; }
  launch "$dir" "$port"
}

# Runs the broker of DIR (formatted, server.properties written) and waits until it answers.
launch() {  # launch DIR PORT: as start_once
  local dir=$1 port=$2
  nohup java "${java_opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$lib/*" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  local deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      if grep -q "Address already in use" "$dir/broker.log" "$dir/stdout.log" 2>/dev/null; then
        return 1
      fi
      return 2
    fi
    # Started, and answering a metadata request: a TCP connect alone is not readiness.
    if grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null &&
       kcat -L -b "127.0.0.1:$port" -m 5 2>/dev/null | grep -q "1 brokers"; then
      echo "127.0.0.1:$port" >"$dir/bootstrap"
      return 0
    fi
    sleep 0.3
  done
  return 2
}

start() {
  local dir=$1
  [ -n "$dir" ] || die "usage: broker.sh start DIR"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  fetch
  command -v kcat >/dev/null || die "kcat is missing: run scripts/install-deps"
  for attempt in 1 2 3; do
    set +e
    start_once "$dir"
    local rc=$?
    set -e
    if [ $rc -eq 0 ]; then
      cat "$dir/bootstrap"
      return 0
    fi
    stop "$dir" >/dev/null 2>&1 || true
    [ $rc -eq 1 ] || break  # only a port race is worth another try
  done
  echo "broker.sh: the broker did not become ready; the end of its log:" >&2
  tail -n 40 "$dir/broker.log" "$dir/stdout.log" >&2 2>/dev/null || true
  exit 1
}

stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  local pid
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

kill_now() {
  local dir=$1
  [ -f "$dir/pid" ] || die "no broker running in $dir"
  kill -KILL "$(cat "$dir/pid")" 2>/dev/null || true
  while kill -0 "$(cat "$dir/pid")" 2>/dev/null; do sleep 0.05; done
  rm -f "$dir/pid"
}

resume() {
  local dir=$1
  [ -f "$dir/bootstrap" ] || die "no broker was started in $dir"
  local port
  port=$(sed 's/.*://' "$dir/bootstrap")
  # Its ports may be held a moment by the killed process's sockets: a few tries.
  for attempt in 1 2 3 4 5; do
    set +e
    launch "$dir" "$port"
    local rc=$?
    set -e
    [ $rc -eq 0 ] && return 0
    [ -f "$dir/pid" ] && kill -KILL "$(cat "$dir/pid")" 2>/dev/null
    rm -f "$dir/pid"
    sleep 1
  done
  die "the broker did not come back"
}

create_topic() {
  local dir=$1 topic=$2 partitions=$3
  [ -f "$dir/bootstrap" ] || die "no broker started in $dir"
  java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cat "$dir/bootstrap")" \
    --create --if-not-exists --topic "$topic" --partitions "$partitions" --replication-factor 1
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:-}" ;;
  stop) stop "${2:?usage: broker.sh stop DIR}" ;;
  kill) kill_now "${2:?usage: broker.sh kill DIR}" ;;
  resume) fetch; resume "${2:?usage: broker.sh resume DIR}" ;;
  create-topic) create_topic "${2:?DIR}" "${3:?TOPIC}" "${4:?PARTITIONS}" ;;
  classpath) fetch; echo "$lib/*" ;;
  *) die "usage: broker.sh fetch | start DIR | stop DIR | kill DIR | resume DIR |" \
         "create-topic DIR TOPIC N | classpath" ;;
esac
