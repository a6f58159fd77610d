# Sourced by the Kafka benchmarks (from the repository's root, with `build` set): a real broker
# with an 8-partition topic `perf`, saltproxies in front of it, all stopped on exit.
#
#   source benchmarks/kafka/setup.sh
#   start_broker                     # sets bootstrap, classpath, broker_pid
#   start_saltproxy NAME [YAML] [KAFKA]  # YAML appended under upstream:, KAFKA (", threads: 1")
#                                    # after the Kafka listener's address; sets proxy, proxy_pid
#                                    # and proxy_http (its HTTP listener, for /metrics); runs
#                                    # $saltproxy_binary if set, else $build/proxy/saltproxy

work=$(mktemp -d)
saltproxy_pids=()
stop_all() {
  local p
  for p in "${saltproxy_pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  tests/kafka/broker.sh stop "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_all EXIT

start_broker() {
  bootstrap=$(tests/kafka/broker.sh start "$work/kafka")
  classpath=$(tests/kafka/broker.sh classpath | tail -1)
  broker_pid=$(cat "$work/kafka/pid")
  tests/kafka/broker.sh create-topic "$work/kafka" perf 8 >/dev/null
}

start_saltproxy() {
  local name=$1 upstream_extra=${2:-} kafka_extra=${3:-} port
  printf 'log_level: info\nhttp: {listen: 127.0.0.1:0}\nkafka: {listen: 127.0.0.1:0%s}\nupstream:\n  bootstrap_servers: %s\n%s' \
    "$kafka_extra" "$bootstrap" "$upstream_extra" >"$work/$name.yaml"
  "${saltproxy_binary:-$build/proxy/saltproxy}" --config "$work/$name.yaml" 2>"$work/$name.log" &
  proxy_pid=$!
  saltproxy_pids+=("$proxy_pid")
  proxy=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's/.*event=kafka_listening .*port=\([0-9]*\).*/\1/p' "$work/$name.log" | head -1)
    if [ -n "$port" ]; then
      proxy="127.0.0.1:$port"
      proxy_http="127.0.0.1:$(sed -n 's/.*event=http_listening .*port=\([0-9]*\).*/\1/p' "$work/$name.log" | head -1)"
      return 0
    fi
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  return 1
}
