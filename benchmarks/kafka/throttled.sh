#!/usr/bin/env bash
# saltproxy in front of a broker slower than the load (issue 16): a client quota of 300 kB/s
# (producer_byte_rate for every client id) against HTTP clients (16 by default) that each keep a
# 150-record request (155 kB) in flight for 60 s, with upstream.max_queue_delay at its default
# (5 s) and turned off (0s, the behaviour before it existed), one after the other on the same
# broker.
#
#   cmake --build build --target saltproxy && benchmarks/kafka/throttled.sh [build] [seconds] [clients]
#
# Last recorded table (2026-12-07, 2 cores shared by broker, proxy and load; see
# benchmarks/README.md for what it shows):
#   | clients | max_queue_delay | 200 | 429 | records written | 200 answered in p50 / p90 / max s | the same, sent after 10 s | records failed upstream | /readyz not 200 (of checks) |
#   | --- | --- | --- | --- | --- | --- | --- | --- | --- |
#   | 16 | 5s | 142 | 145 | 21300 | 4.11 / 12.25 / 15.53 | 5.01 / 9.47 / 10.38 | 0 | 0 (583) |
#   | 16 | 0s | 155 | 0 | 23250 | 6.46 / 11.48 / 17.11 | 6.82 / 9.22 / 12.04 | 0 | 0 (569) |
#   | 64 | 5s | 144 | 1014 | 20886 | 7.84 / 30.42 / 30.58 | 6.38 / 8.51 / 8.98 | 714 | 0 (571) |
#   | 64 | 0s | 214 | 0 | 31165 | 24.21 / 30.55 / 30.94 | 23.57 / 29.42 / 29.55 | 935 | 0 (581) |
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
seconds=${2:-60}
clients=${3:-16}
source benchmarks/kafka/setup.sh
start_broker
java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$classpath" kafka.admin.ConfigCommand \
  --bootstrap-server "$bootstrap" --alter --add-config producer_byte_rate=300000 \
  --entity-type clients --entity-default >/dev/null

echo "| clients | max_queue_delay | 200 | 429 | records written | 200 answered in p50 / p90 / max s | the same, sent after 10 s | records failed upstream | /readyz not 200 (of checks) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for bound in 5s 0s; do
  topic="throttled-${bound%s}"
  tests/kafka/broker.sh create-topic "$work/kafka" "$topic" 4 >/dev/null
  start_saltproxy "bound-$bound" "  max_queue_delay: $bound
"
  port=${proxy_http##*:}
  for _ in $(seq 1 100); do
    curl -sf "http://$proxy_http/readyz" >/dev/null && break
    sleep 0.1
  done
  result=$(python3 benchmarks/kafka/throttled_load.py "$port" "$seconds" "$clients" 150 1000 "$topic")
  python3 - "$clients" "$bound" "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
print(f"| {sys.argv[1]} | {sys.argv[2]} | {r['ok']} | {r['refused']} | {r['written']} | "
      f"{r['p50_s']} / {r['p90_s']} / {r['max_s']} | "
      f"{r['later_p50_s']} / {r['later_p90_s']} / {r['later_max_s']} | {r['failed']} | "
      f"{r['readyz_not_200']} ({r['readyz_checks']}) |")
PY
  kill -TERM "$proxy_pid" && wait "$proxy_pid" 2>/dev/null || true
  # The quota is measured over 11 one-second windows: let the next case start from a rested one.
  sleep 12
done
