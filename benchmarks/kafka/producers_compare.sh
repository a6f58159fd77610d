#!/usr/bin/env bash
# upstream.producers side by side: one broker, two saltproxies (1 and 2 upstream librdkafka
# producers) in front of it, and Kafka's ProducerPerformance (default settings) alternating
# direct, 2 producers, 1 producer, so that each round sees the same machine.
#
#   benchmarks/kafka/producers_compare.sh [build-dir] [rounds]
#
# Last recorded (2026-11-29, 2 shared cores; 250,000 1 KiB and 1,000,000 100-byte records a run;
# ratios of direct, saltproxy CPU ticks of 10 ms):
#   1024 B direct 81064 | 2 producers 67495 (0.833, 98 ticks) | 1 producer 61335 (0.757, 101 ticks)
#   1024 B direct 82536 | 2 producers 65020 (0.788, 109 ticks) | 1 producer 68343 (0.828, 80 ticks)
#   1024 B direct 83333 | 2 producers 66120 (0.793, 111 ticks) | 1 producer 65496 (0.786, 89 ticks)
#   1024 B direct 92524 | 2 producers 69502 (0.751, 90 ticks) | 1 producer 66138 (0.715, 83 ticks)
#    100 B direct 501002 | 2 producers 359195 (0.717, 108 ticks) | 1 producer 312695 (0.624, 95 ticks)
#    100 B direct 482858 | 2 producers 358809 (0.743, 106 ticks) | 1 producer 329707 (0.683, 95 ticks)
#    100 B direct 500751 | 2 producers 359324 (0.718, 105 ticks) | 1 producer 335570 (0.670, 92 ticks)
#    100 B direct 481928 | 2 producers 301386 (0.625, 149 ticks) | 1 producer 331895 (0.689, 93 ticks)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
rounds=${2:-4}
[ -x "$build/proxy/saltproxy" ] || { echo "no $build/proxy/saltproxy: build it first" >&2; exit 1; }
source benchmarks/kafka/setup.sh
start_broker
declare -A addr proc
for n in 1 2; do
  start_saltproxy "p$n" "  producers: $n
"
  addr[$n]=$proxy
  proc[$n]=$proxy_pid
done

rps() {  # rps TARGET COUNT SIZE → records/s
  java -Xmx512m -cp "$classpath" org.apache.kafka.tools.ProducerPerformance --topic perf \
    --num-records "$2" --record-size "$3" --throughput -1 \
    --producer-props bootstrap.servers="$1" 2>/dev/null | tail -1 |
    sed -E 's/.* ([0-9.]+) records\/sec.*/\1/'
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

rps "${addr[1]}" 50000 1024 >/dev/null  # warm both proxies' connections and metadata
rps "${addr[2]}" 50000 1024 >/dev/null
for size in 1024 100; do
  count=$((size == 100 ? 1000000 : 250000))
  for _ in $(seq 1 "$rounds"); do
    d=$(rps "$bootstrap" "$count" "$size")
    t=$(ticks "${proc[2]}"); p2=$(rps "${addr[2]}" "$count" "$size"); c2=$(($(ticks "${proc[2]}") - t))
    t=$(ticks "${proc[1]}"); p1=$(rps "${addr[1]}" "$count" "$size"); c1=$(($(ticks "${proc[1]}") - t))
    awk -v s="$size" -v d="$d" -v a="$p2" -v b="$p1" -v c2="$c2" -v c1="$c1" 'BEGIN{
      printf "%4d B direct %.0f | 2 producers %.0f (%.3f, %d ticks) | 1 producer %.0f (%.3f, %d ticks)\n",
        s, d, a, a / d, c2, b, b / d, c1}'
  done
done
