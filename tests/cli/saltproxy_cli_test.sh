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

# Start in front of the embedded cluster, produce, reload, then SIGTERM: exit 0 after a flush.
cp "$src/config/demo.yaml" "$work/run.yaml"
"$bin" --config "$work/run.yaml" 2>"$work/log" &
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
wait_log() {  # wait_log PATTERN: until the log has it, 10 s at most
  for _ in $(seq 1 100); do grep -q "$1" "$work/log" && return 0; sleep 0.1; done
  return 1
}
# SIGHUP with a valid change: applied, connections untouched.
sed -i 's/^instance_id: .*/&\nlog_level: debug/' "$work/run.yaml"
printf 'salting:\n  defaults: {max_salts: 4}\n' >>"$work/run.yaml"
kill -HUP $pid
check "a valid reload is applied" wait_log "event=reload_applied"
# SIGHUP with an invalid file: refused with the reason; the proxy keeps serving.
cp "$work/run.yaml" "$work/good.yaml"
printf 'bogus_field: 1\n' >>"$work/run.yaml"
kill -HUP $pid
check "an invalid reload is refused, naming the field" wait_log "event=reload_refused.*bogus_field: unknown field"
# SIGHUP changing what needs a restart: refused, the running config stays.
sed 's/listen: 127.0.0.1:0/listen: 127.0.0.1:1/' "$work/good.yaml" >"$work/run.yaml"
kill -HUP $pid
check "a reload of the listen address is refused" wait_log "reason=.*http.listen.*needs a restart"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
check "the proxy still serves after refused reloads" test "$code" = 200
# POST /admin/reload: the same, over HTTP, with the answer in the response.
code=$(curl -s -o "$work/resp" -w '%{http_code}' -X POST "http://127.0.0.1:$port/admin/reload")
check "POST /admin/reload of a restart-only change is 409" test "$code" = 409
check "...saying what needs a restart" grep -q "needs a restart" "$work/resp"
cp "$work/good.yaml" "$work/run.yaml"
code=$(curl -s -o "$work/resp" -w '%{http_code}' -X POST "http://127.0.0.1:$port/admin/reload")
check "POST /admin/reload of a valid file is applied" test "$code" = 200
printf 'nonsense: [\n' >>"$work/run.yaml"
code=$(curl -s -o "$work/resp" -w '%{http_code}' -X POST "http://127.0.0.1:$port/admin/reload")
check "POST /admin/reload of an invalid file is 422" test "$code" = 422
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/admin/reload")
check "GET /admin/reload is 405" test "$code" = 405

kill -TERM $pid
wait $pid; rc=$?
pid=""
check "SIGTERM exits 0" test $rc -eq 0
check "the shutdown flushed upstream" grep -q "event=shutdown_finished flushed=true" "$work/log"
check "the shutdown left no request unanswered" grep -q "event=shutdown_finished .*abandoned=0 " \
  "$work/log"

echo "cli: $passed passed, $failed failed"
[ $failed -eq 0 ]
