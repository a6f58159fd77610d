#!/usr/bin/env bash
# The saltproxy binary's contract with its user: --version, --check-config on good and bad
# files (exit codes and messages), and a graceful exit 0 on SIGTERM with records delivered.
#
#   bash tests/cli/saltproxy_cli_test.sh build/proxy/saltproxy .
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
pid=""
passed=0
failed=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

out=$("$bin" --version); rc=$?
check "--version exits 0" test $rc -eq 0
check "--version names the program" grep -q "^saltproxy [0-9]" <<<"$out"

"$bin" --config "$src/config/saltproxy.yaml" --check-config >"$work/out" 2>&1; rc=$?
check "--check-config on the example exits 0" test $rc -eq 0
check "--check-config says valid" grep -q "configuration is valid" "$work/out"

printf 'upstream:\n  embedded: true\nhttp:\n  treads: 2\n' >"$work/bad.yaml"
"$bin" --config "$work/bad.yaml" --check-config >"$work/out" 2>&1; rc=$?
check "--check-config on a bad file exits 2" test $rc -eq 2
check "the error names file, line and field" grep -q "bad.yaml:4: http.treads: unknown field" "$work/out"

"$bin" --config "$work/missing.yaml" --check-config >"$work/out" 2>&1; rc=$?
check "an unreadable file exits 2" test $rc -eq 2
check "an unreadable file is named" grep -q "missing.yaml: cannot read" "$work/out"

"$bin" --no-such-flag >"$work/out" 2>&1; rc=$?
check "an unknown flag exits 2 with usage" test $rc -eq 2

# Start in front of the embedded cluster, produce, then SIGTERM: exit 0 after a clean flush.
"$bin" --config "$src/config/demo.yaml" 2>"$work/log" &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*event=http_listening .*port=\([0-9]*\).*/\1/p' "$work/log" | head -1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
check "the proxy starts and becomes ready" test -n "$port"
code=$(curl -s -o "$work/resp" -w '%{http_code}' -H 'Content-Type: application/vnd.kafka.json.v2+json' \
  -d '{"records":[{"key":"k","value":"v"}]}' "http://127.0.0.1:$port/topics/clicks")
check "a produce request is answered 200" test "$code" = 200
check "with an offset" grep -q '"offset":0' "$work/resp"
kill -TERM $pid
wait $pid; rc=$?
pid=""
check "SIGTERM exits 0" test $rc -eq 0
check "the shutdown flushed upstream" grep -q "event=shutdown_finished flushed=true" "$work/log"

echo "cli: $passed passed, $failed failed"
[ $failed -eq 0 ]
