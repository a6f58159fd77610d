#!/usr/bin/env bash
# Loads saltproxy's live page in headless Chromium while skewed traffic flows, and checks what
# it shows: a chart per topic with every partition's load without and through saltproxy, the
# viral key among the hot keys, and its entry in the salt map.
#   bash tests/ui/live_page_test.sh build/proxy/saltproxy .   [SCREENSHOT=/tmp/page.png]
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d)
pid=""
traffic=""
trap '[ -n "$traffic" ] && kill $traffic 2>/dev/null; [ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
passed=0
failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
command -v chromium >/dev/null || { echo "chromium is missing: run scripts/install-deps"; exit 1; }

"$bin" --config "$src/config/demo.yaml" 2>"$work/log" &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*event=http_listening .*port=\([0-9]*\).*/\1/p' "$work/log" | head -1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
check "the proxy is ready" test -n "$port"
# A first burst makes concert-2026 hot; more traffic keeps flowing while the page loads.
python3 "$src/scripts/demo-traffic.py" --port "$port" --records 6000 >/dev/null
for _ in $(seq 1 50); do
  curl -s "http://127.0.0.1:$port/saltmap" | grep -q concert-2026 && break
  sleep 0.1
done
python3 "$src/scripts/demo-traffic.py" --port "$port" --records 200000 >/dev/null 2>&1 &
traffic=$!

chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --disable-dev-shm-usage --user-data-dir="$work/profile" --virtual-time-budget=4000)
timeout 60 "${chrome[@]}" --dump-dom "http://127.0.0.1:$port/" >"$work/dom.html" 2>"$work/chromium.log"
if [ -n "${SCREENSHOT:-}" ]; then
  timeout 60 "${chrome[@]}" --window-size=900,1100 --screenshot="$SCREENSHOT" \
    "http://127.0.0.1:$port/" >/dev/null 2>&1
fi
through=$(grep -o 'class="through"' "$work/dom.html" | wc -l)
plain=$(grep -o 'class="plain"' "$work/dom.html" | wc -l)
check "the page has a chart for the topic" grep -q 'data-topic="clicks"' "$work/dom.html"
check "one bar per partition through saltproxy (16, plus the legend's)" test "$through" -eq 17
check "one bar per partition without saltproxy (16, plus the legend's)" test "$plain" -eq 17
check "the viral key is listed hot" grep -q '<td class="hot-key">"concert-2026"</td>' "$work/dom.html"
check "the salt map shows it salted" grep -q '<td class="salted-key">"concert-2026"</td><td>salted</td>' "$work/dom.html"
check "the epoch is shown" grep -qE '<span id="epoch">[1-9][0-9]*</span>' "$work/dom.html"
check "the skew line compares both" grep -qE 'max/mean partition load: [0-9.]+ without saltproxy, [0-9.]+ through it' "$work/dom.html"
if [ $failed -gt 0 ]; then head -c 3000 "$work/dom.html"; tail -5 "$work/chromium.log"; fi
echo "live page: $passed passed, $failed failed"
[ $failed -eq 0 ]
