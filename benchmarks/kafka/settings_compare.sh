#!/usr/bin/env bash
# saltproxy settings side by side: one broker, one saltproxy per setting in front of it, and
# Kafka's ProducerPerformance (default settings) alternating direct and each saltproxy, so that
# each round sees the same machine.
#
#   benchmarks/kafka/settings_compare.sh [-b build-dir] [-r rounds] [-s "1024 100"] SETTING...
#
# A SETTING is "label;upstream lines;kafka options[;binary]": the lines go under `upstream:` (\n
# between lines, each indented two spaces), the options into the Kafka listener's `{listen: …}`,
# and a binary, when given, runs instead of the build's (an older build, to compare two
# versions). E.g.
#
#   benchmarks/kafka/settings_compare.sh 'defaults;;' \
#     'linger 5 ms;  librdkafka: {linger.ms: "5"};' '1 producer;  producers: 1;' \
#     '1 listener thread;;, threads: 1'
#   benchmarks/kafka/settings_compare.sh 'new;;' 'old;;;/tmp/old/build/proxy/saltproxy'
#
# For each run: records/s and its ratio to the direct run of the same round, then saltproxy's
# and the broker's CPU ticks (of 1/CLK_TCK s) and the Produce requests saltproxy sent upstream
# (saltproxy_upstream_produce_requests_total). 250,000 1 KiB or 1,000,000 100-byte records a run.
# benchmarks/README.md has the settings tried and their figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build rounds=3 sizes="1024 100"
while getopts "b:r:s:" opt; do
  case $opt in
    b) build=$OPTARG ;;
    r) rounds=$OPTARG ;;
    s) sizes=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-b build] [-r rounds] [-s sizes] 'label;upstream lines;kafka options'..." >&2; exit 2; }
[ -x "$build/proxy/saltproxy" ] || { echo "no $build/proxy/saltproxy: build it first" >&2; exit 1; }
source benchmarks/kafka/setup.sh
start_broker

labels=() addrs=() pids=() https=()
for setting in "$@"; do
  IFS=';' read -r label upstream kafka binary <<<"$setting"
  saltproxy_binary=${binary:-} \
    start_saltproxy "s${#labels[@]}" "$(printf '%b\n  statistics_interval: 200ms\n' "$upstream")" "$kafka"
  labels+=("$label") addrs+=("$proxy") pids+=("$proxy_pid") https+=("$proxy_http")
done

rps() {  # rps TARGET COUNT SIZE → records/s
  java -Xmx512m -cp "$classpath" org.apache.kafka.tools.ProducerPerformance --topic perf \
    --num-records "$2" --record-size "$3" --throughput -1 \
    --producer-props bootstrap.servers="$1" 2>/dev/null | tail -1 |
    sed -E 's/.* ([0-9.]+) records\/sec.*/\1/'
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
upstream_requests() {
  curl -s "http://$1/metrics" | awk '$1 == "saltproxy_upstream_produce_requests_total" {print $2}'
}

# Warm-up, unmeasured: JIT in the client and the broker, connections and metadata in each proxy.
rps "$bootstrap" 200000 100 >/dev/null
for addr in "${addrs[@]}"; do rps "$addr" 200000 100 >/dev/null; done

for size in $sizes; do
  count=$((size == 100 ? 1000000 : 250000))
  for _ in $(seq 1 "$rounds"); do
    d=$(rps "$bootstrap" "$count" "$size")
    line=$(printf '%4d B direct %.0f' "$size" "$d")
    for i in "${!labels[@]}"; do
      t=$(ticks "${pids[$i]}") b=$(ticks "$broker_pid") u=$(upstream_requests "${https[$i]}")
      r=$(rps "${addrs[$i]}" "$count" "$size")
      sleep 0.5  # the proxy's last statistics of the run
      line+=$(awk -v l="${labels[$i]}" -v r="$r" -v d="$d" -v t=$(($(ticks "${pids[$i]}") - t)) \
        -v b=$(($(ticks "$broker_pid") - b)) -v u0="$u" -v u1="$(upstream_requests "${https[$i]}")" \
        'BEGIN{printf " | %s %.0f (%.3f; saltproxy %d, broker %d ticks; %d requests)", l, r, r / d, t, b, u1 - u0}')
    done
    echo "$line"
  done
done
