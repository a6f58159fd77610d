#!/usr/bin/env bash
# Kafka's own ProducerPerformance (Java kafka-clients, default settings: idempotent, acks=all)
# against a real broker, direct and through saltproxy's Kafka listener, in one run, for 100-byte
# and 1 KiB records: records/s, MB/s, p50/p99 latency, and CPU per 100 MB.
#
#   benchmarks/kafka/producer_perf.sh [records] [build-dir] [rounds]
#
# (after cmake --build <build-dir> --target saltproxy produce_load; build-dir defaults to build)
#
# Each case runs `rounds` times (3), alternating direct and proxied, after one unmeasured warm-up
# of each, and the table shows the best run of each, so that JVM warm-up and the shared
# machine's noise weigh on both sides alike. Unthrottled runs saturate the 2-core machine
# (broker, proxy and load tool share it), so their latencies are queueing; pairs of 20 s runs at
# a fixed 10,000 records/s compare latency below saturation. Beside throughput: the Java client's
# mean request latency (its --print-metrics), the Produce requests the broker received per
# 100 MB (the client's own direct; saltproxy's upstream ones, saltproxy_upstream_produce_requests_total,
# through it), broker and saltproxy CPU per 100 MB, and the whole machine's.
#
# Last recorded tables (2026-11-30, 2 cores shared by broker, proxy and load tool; 1,000,000
# records, 250,000 of 1 KiB; produce_load 5,000,000 and 2,000,000). *machine CPU*: every process,
# the load tool's JVM included; in the ratio row, direct's over saltproxy's (what the CPU alone
# allows on a saturated machine):
#   | record size | path | records/s | MB/s | p50 ms | p99 ms | client request ms | requests to the broker per 100 MB | broker CPU s per 100 MB | saltproxy CPU s per 100 MB | machine CPU s per 100 MB |
#   | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
#   | 100 B | direct | 508130.1 | 48.46 | 30 | 100 | 5.9 | 1111 | 0.67 |  | 4.86 |
#   | 100 B | saltproxy | 345065.6 | 32.91 | 125 | 376 | 12.3 | 3281 | 1.00 | 1.03 | 6.68 |
#   | 100 B | ratio | 0.68 | | | +276 | | | | | 0.73 |
#   | 1024 B | direct | 89190.2 | 87.10 | 267 | 358 | 4.9 | 816 | 0.45 |  | 2.46 |
#   | 1024 B | saltproxy | 72526.8 | 70.83 | 335 | 503 | 7.5 | 2430 | 0.55 | 0.34 | 2.88 |
#   | 1024 B | ratio | 0.81 | | | +145 | | | | | 0.86 |
#   | 100 B at 10,000/s, pair 1 | direct | 9997.5 | 0.95 | 4 | 8 | 0.765 | | | | |
#   | 100 B at 10,000/s, pair 1 | saltproxy | 9998.5 | 0.95 | 5 | 13 | 2.051 | | | | |
#   | 100 B at 10,000/s, pair 2 | direct | 9998.5 | 0.95 | 4 | 9 | 0.666 | | | | |
#   | 100 B at 10,000/s, pair 2 | saltproxy | 9997.0 | 0.95 | 5 | 13 | 1.971 | | | | |
#   | 100 B at 10,000/s, pair 3 | direct | 10000.0 | 0.95 | 4 | 26 | 0.616 | | | | |
#   | 100 B at 10,000/s, pair 3 | saltproxy | 9998.5 | 0.95 | 5 | 10 | 2.143 | | | | |
#
#   | produce_load | path | records/s | MB/s | request ms | saltproxy CPU s per 100 MB | broker CPU s per 100 MB |
#   | --- | --- | --- | --- | --- | --- | --- |
#   | 100 B | direct | 1848455 | 184.85 | 2.71 |  | 0.51 |
#   | 100 B | saltproxy | 943237 | 94.32 | 5.71 | 0.91 | 0.73 |
#   | 100 B | ratio | 0.51 | | | | |
#   | 1024 B | direct | 158094 | 161.89 | 3.51 |  | 0.59 |
#   | 1024 B | saltproxy | 129919 | 133.04 | 4.41 | 0.29 | 0.55 |
#   | 1024 B | ratio | 0.82 | | | | |
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-1000000}
build=${2:-build}
rounds=${3:-3}
[ -x "$build/proxy/saltproxy" ] || { echo "no $build/proxy/saltproxy: build it first" >&2; exit 1; }
source benchmarks/kafka/setup.sh
start_broker
# Statistics often enough that the upstream request count is current when a run ends.
start_saltproxy saltproxy "  statistics_interval: 200ms
"
pid=$proxy_pid

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }  # every process
upstream_requests() {
  curl -s "http://$proxy_http/metrics" | awk '$1 == "saltproxy_upstream_produce_requests_total" {print $2}'
}
# run TARGET SIZE COUNT [THROUGHPUT] → "records/s MB/s p50 p99 request-ms requests"
# (request-ms and requests: the Java client's mean request latency and its request count)
run() {
  java -Xmx512m -cp "$classpath" org.apache.kafka.tools.ProducerPerformance --topic perf \
    --num-records "$3" --record-size "$2" --throughput "${4:--1}" --print-metrics \
    --producer-props bootstrap.servers="$1" 2>/dev/null | awk '
      /records sent/ { line = $0 }
      /^producer-metrics:request-latency-avg:/ { ms = $NF }
      /^producer-metrics:request-total:/ { n = $NF }
      END { print line " @@ " ms " " n }' |
    sed -E 's/.* ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\).* ([0-9]+) ms 50th, [0-9]+ ms 95th, ([0-9]+) ms 99th.* @@ ([0-9.]+) ([0-9.]+)/\1 \2 \3 \4 \5 \6/'
}
# measure PATH SIZE COUNT → the run's figures, then: requests to the broker, broker ticks,
# saltproxy ticks, machine ticks (the broker's requests are the client's direct, the proxy's
# upstream through it; the machine's ticks count every process, the load tool's JVM included)
measure() {
  local target=$bootstrap b0 p0 u0 m0 r u1
  [ "$1" = saltproxy ] && target=$proxy
  b0=$(ticks "$broker_pid") p0=$(ticks "$pid") u0=$(upstream_requests) m0=$(machine_ticks)
  r=$(run "$target" "$2" "$3")
  local m1
  m1=$(machine_ticks)
  sleep 0.5  # the proxy's last statistics of the run
  u1=$(upstream_requests)
  local requests
  requests=$(awk -v r="$r" -v u0="$u0" -v u1="$u1" -v p="$1" 'BEGIN{split(r, x, " "); print (p == "direct") ? x[6] : u1 - u0}')
  echo "$r $requests $(( $(ticks "$broker_pid") - b0 )) $(( $(ticks "$pid") - p0 )) $((m1 - m0))"
}
better() {  # keep the run with more records/s
  if [ -z "$1" ] || awk -v a="$1" -v b="$2" 'BEGIN{split(a,x," "); split(b,y," "); exit !(y[1] > x[1])}'; then
    echo "$2"
  else
    echo "$1"
  fi
}

hz=$(getconf CLK_TCK)
# Warm-up, unmeasured: the broker's JIT compiles the code paths of each client's requests the
# first time it sees them (seconds of CPU), which would land on whichever run came first.
for path in direct saltproxy; do measure "$path" 100 200000 >/dev/null; done
echo "| record size | path | records/s | MB/s | p50 ms | p99 ms | client request ms | requests to the broker per 100 MB | broker CPU s per 100 MB | saltproxy CPU s per 100 MB | machine CPU s per 100 MB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for size in 100 1024; do
  count=$records
  [ "$size" -gt 100 ] && count=$((records / 4))
  declare -A best=()
  for _ in $(seq 1 "$rounds"); do
    for path in direct saltproxy; do
      best[$path]=$(better "${best[$path]:-}" "$(measure "$path" "$size" "$count")")
    done
  done
  for path in direct saltproxy; do
    read -r rps mbs p50 p99 req_ms _ requests broker proxy_ticks machine <<<"${best[$path]}"
    awk -v s="$size" -v p="$path" -v rps="$rps" -v mbs="$mbs" -v p50="$p50" -v p99="$p99" \
      -v ms="$req_ms" -v n="$requests" -v b="$broker" -v t="$proxy_ticks" -v m="$machine" -v hz="$hz" \
      -v mb="$(awk -v c="$count" -v z="$size" 'BEGIN{print c*z/1e6}')" \
      'BEGIN{printf "| %s B | %s | %s | %s | %s | %s | %.1f | %.0f | %.2f | %s | %.2f |\n", s, p, rps, mbs, p50, p99,
             ms, n/mb*100, b/hz/mb*100, (p == "direct") ? "" : sprintf("%.2f", t/hz/mb*100), m/hz/mb*100}'
  done
  read -r d_rps _ _ d_p99 _ _ _ _ _ d_machine <<<"${best[direct]}"
  read -r p_rps _ _ p_p99 _ _ _ _ _ p_machine <<<"${best[saltproxy]}"
  # The last column of the ratio row: direct's machine CPU over saltproxy's, the ratio the CPU
  # alone would allow on a saturated machine.
  awk -v d="$d_rps" -v p="$p_rps" -v dp="$d_p99" -v pp="$p_p99" -v s="$size" -v dm="$d_machine" -v pm="$p_machine" \
    'BEGIN{printf "| %s B | ratio | %.2f | | | %+d | | | | | %.2f |\n", s, p/d, pp-dp, dm/pm}'
  unset best
done
# Latency below saturation: the same 100-byte records at a fixed 10,000 records/s, 20 s a run
# (shorter runs leave p99 to a handful of records), `rounds` alternating pairs, each shown.
for round in $(seq 1 "$rounds"); do
  direct=$(run "$bootstrap" 100 200000 10000)
  proxied=$(run "$proxy" 100 200000 10000)
  read -r d_rps d_mbs d_p50 d_p99 d_ms _ <<<"$direct"
  read -r p_rps p_mbs p_p50 p_p99 p_ms _ <<<"$proxied"
  echo "| 100 B at 10,000/s, pair $round | direct | $d_rps | $d_mbs | $d_p50 | $d_p99 | $d_ms | | | | |"
  echo "| 100 B at 10,000/s, pair $round | saltproxy | $p_rps | $p_mbs | $p_p50 | $p_p99 | $p_ms | | | | |"
done

# The same request shape from produce_load (benchmarks/kafka/produce_load.cc), a client that
# costs almost no CPU: what saltproxy itself costs, and its capacity when the client does not
# take most of the machine. Best of `rounds`, alternating; CPU in seconds per 100 MB.
load="$build/benchmarks/kafka/produce_load"
if [ ! -x "$load" ]; then
  echo "($load is missing: cmake --build $build --target produce_load for the client-free table)"
  exit 0
fi
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
echo
echo "| produce_load | path | records/s | MB/s | request ms | saltproxy CPU s per 100 MB | broker CPU s per 100 MB |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for size in 100 1024; do
  per_batch=$((16000 / (size + 10)))  # as ProducerPerformance's 16 KB batches
  count=$((records * 5))
  [ "$size" -gt 100 ] && count=$((records * 2))
  declare -A best=()
  for _ in $(seq 1 "$rounds"); do
    for path in direct saltproxy; do
      target=$bootstrap
      [ "$path" = saltproxy ] && target=$proxy
      r=$("$load" --target="$target" --size="$size" --per_batch="$per_batch" --records="$count" \
        --cpu="proxy:$pid,broker:$broker_pid")
      if [ -z "${best[$path]:-}" ] || awk -v a="$(field "${best[$path]}" records_per_s)" \
          -v b="$(field "$r" records_per_s)" 'BEGIN{exit !(b > a)}'; then
        best[$path]=$r
      fi
    done
  done
  for path in direct saltproxy; do
    r=${best[$path]}
    awk -v s="$size" -v p="$path" -v rps="$(field "$r" records_per_s)" -v mbs="$(field "$r" mb_per_s)" \
      -v ms="$(field "$r" request_ms)" -v cp="$(field "$r" cpu_s_proxy)" -v cb="$(field "$r" cpu_s_broker)" \
      -v mb="$(field "$r" records)" -v sz="$size" \
      'BEGIN{mb=mb*sz/1e6; printf "| %s B | %s | %s | %s | %s | %s | %.2f |\n", s, p, rps, mbs, ms,
             (p == "direct") ? "" : sprintf("%.2f", cp/mb*100), cb/mb*100}'
  done
  awk -v d="$(field "${best[direct]}" records_per_s)" -v p="$(field "${best[saltproxy]}" records_per_s)" -v s="$size" \
    'BEGIN{printf "| %s B | ratio | %.2f | | | | |\n", s, p/d}'
done
