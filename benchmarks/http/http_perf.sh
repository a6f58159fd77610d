#!/usr/bin/env bash
# saltproxy's HTTP ingestion against a real broker, in one run: single-record v2 requests over
# keep-alive connections, v3 chunked streaming, NDJSON bulk, and beside them the same records
# produced straight to the broker with librdkafka (acks=all, idempotent, the proxy's own
# producer settings), each at the same number of records in flight as the HTTP case it faces.
#
#   cmake --build build --target saltproxy http_benchmark && benchmarks/http/http_perf.sh [build] [seconds]
#
# Goals (issue 4, this 2-core machine, broker included): at least 30,000 single-record requests/s
# and at least 300,000 records/s in bulk.
#
# Every record is key "k00000".."k99999" and value {"n":1} as JSON (8 + 7 bytes on the broker),
# into a topic of 8 partitions. Each case runs for `seconds` (default 10) after a 2 s warm-up,
# twice, alternating, and the table keeps the better run (records/s) of each. The load client
# (benchmarks/http/http_benchmark.cc) reports records/s, p50/p99 latency (request or record
# written → its answer read) and the CPU that it, saltproxy and the broker used meanwhile.
#
# Last recorded table (2026-11-29, 2 cores shared by broker, proxy and load client; 10 s a case,
# best of two; see benchmarks/README.md for what it shows):
#   | case | records/s | p50 ms | p99 ms | mean ms | of it upstream | records/s vs direct | p99 vs direct | saltproxy CPU µs/record | CPU cores: saltproxy / broker / client |
#   | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
#   | direct, 64 in flight | 25055 | 2.53 | 4.44 | 2.55 | | | | | - / 0.50 / 0.19 |
#   | v2 single record, 64 connections | 21733 | 2.89 | 6.17 | 2.94 | 2.60 | 0.87 | +1.73 ms | 30.4 | 0.66 / 0.48 / 0.20 |
#   | direct, 256 in flight | 98938 | 2.53 | 4.54 | 2.58 | | | | | - / 0.50 / 0.21 |
#   | v2 single record, 256 connections | 48489 | 5.16 | 9.53 | 5.28 | 3.78 | 0.49 | +4.99 ms | 21.0 | 1.02 / 0.38 / 0.38 |
#   | direct, 4000 in flight | 1357804 | 2.77 | 5.90 | 2.83 | | | | | - / 0.71 / 0.72 |
#   | v3 streaming, 4 × 1000 in flight | 315562 | 11.86 | 23.89 | 12.34 | 6.98 | 0.23 | +17.99 ms | 3.9 | 1.23 / 0.38 / 0.12 |
#   | NDJSON bulk, 4 × 1000 in flight | 529009 | 7.13 | 12.87 | 7.31 | 4.34 | 0.39 | +6.97 ms | 2.1 | 1.10 / 0.49 / 0.15 |
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
seconds=${2:-10}
for binary in "$build/proxy/saltproxy" "$build/benchmarks/http/http_benchmark"; do
  [ -x "$binary" ] || { echo "$binary is missing: cmake --build $build --target saltproxy http_benchmark" >&2; exit 2; }
done
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  tests/kafka/broker.sh stop "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bootstrap=$(tests/kafka/broker.sh start "$work/kafka")
broker_pid=$(cat "$work/kafka/pid")
tests/kafka/broker.sh create-topic "$work/kafka" perf 8 >/dev/null
printf 'log_level: info\nhttp: {listen: 127.0.0.1:0}\nupstream:\n  bootstrap_servers: %s\n' \
  "$bootstrap" >"$work/saltproxy.yaml"
"$build/proxy/saltproxy" --config "$work/saltproxy.yaml" 2>"$work/saltproxy.log" &
pid=$!
http=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*event=http_listening .*port=\([0-9]*\).*/\1/p' "$work/saltproxy.log" | head -1)
  [ -n "$port" ] && http="127.0.0.1:$port" && break
  sleep 0.1
done
[ -n "$http" ] || { cat "$work/saltproxy.log"; exit 1; }

upstream() {  # the proxy's upstream delivery histogram: "sum count"
  curl -s "http://$http/metrics" |
    awk '/^saltproxy_upstream_delivery_seconds_sum/{s=$2} /^saltproxy_upstream_delivery_seconds_count/{c=$2} END{print s, c}'
}
run() {  # run MODE ARGS… → the client's key=value line, plus upstream_ms for proxied runs
  local before after line
  before=$(upstream)
  line=$("$build/benchmarks/http/http_benchmark" --mode="$1" "${@:2}" --topic=perf --seconds="$seconds" \
    --warmup=2 --cpu="proxy:$pid,broker:$broker_pid") || {
    echo "http_benchmark --mode=$1 failed; the end of saltproxy's log:" >&2
    tail -n 20 "$work/saltproxy.log" >&2
    exit 1
  }
  after=$(upstream)
  # Mean time from the proxy queueing a record upstream to its delivery report, over the run.
  awk -v l="$line" -v b="$before" -v a="$after" 'BEGIN{split(b,x," "); split(a,y," ");
    n=y[2]-x[2]; u=(n>0) ? sprintf("%.2f", (y[1]-x[1])/n*1000) : "-"; print l " upstream_ms=" u}'
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
better() {  # keep the run with more records/s
  if [ -z "$1" ] || awk -v a="$(field "$1" rps)" -v b="$(field "$2" rps)" 'BEGIN{exit !(b > a)}'; then
    echo "$2"
  else
    echo "$1"
  fi
}

# name, mode and arguments of each case; a direct case precedes the HTTP cases it is compared to.
cases=(
  "direct, 64 in flight|direct|--bootstrap=$bootstrap --window=64"
  "v2 single record, 64 connections|single|--http=$http --connections=64"
  "direct, 256 in flight|direct|--bootstrap=$bootstrap --window=256"
  "v2 single record, 256 connections|single|--http=$http --connections=256"
  "direct, 4000 in flight|direct|--bootstrap=$bootstrap --window=4000"
  "v3 streaming, 4 × 1000 in flight|v3|--http=$http --connections=4 --window=1000"
  "NDJSON bulk, 4 × 1000 in flight|bulk|--http=$http --connections=4 --window=1000"
)
declare -A best
for _ in 1 2; do
  for c in "${cases[@]}"; do
    IFS='|' read -r name mode args <<<"$c"
    # shellcheck disable=SC2086
    r=$(run "$mode" $args)  # a plain assignment, so that a failed run stops the script
    best[$name]=$(better "${best[$name]:-}" "$r")
  done
done

echo "| case | records/s | p50 ms | p99 ms | mean ms | of it upstream | records/s vs direct | p99 vs direct | saltproxy CPU µs/record | CPU cores: saltproxy / broker / client |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
direct=""
for c in "${cases[@]}"; do
  IFS='|' read -r name mode _ <<<"$c"
  r=${best[$name]}
  rps=$(field "$r" rps) p50=$(field "$r" p50_ms) p99=$(field "$r" p99_ms) mean=$(field "$r" mean_ms)
  cp=$(field "$r" cpu_proxy) cb=$(field "$r" cpu_broker) cc=$(field "$r" cpu_client)
  if [ "$mode" = direct ]; then
    direct=$r
    echo "| $name | $rps | $p50 | $p99 | $mean | | | | | - / $cb / $cc |"
  else
    awk -v n="$name" -v r="$rps" -v p50="$p50" -v p99="$p99" -v mean="$mean" \
      -v up="$(field "$r" upstream_ms)" -v dr="$(field "$direct" rps)" \
      -v d99="$(field "$direct" p99_ms)" -v cp="$cp" -v cb="$cb" -v cc="$cc" \
      'BEGIN{printf "| %s | %s | %s | %s | %s | %s | %.2f | %+.2f ms | %.1f | %s / %s / %s |\n",
             n, r, p50, p99, mean, up, r/dr, p99-d99, cp*1e6/r, cp, cb, cc}'
  fi
done
