#!/usr/bin/env bash
# Checks deploy/ against the tools that read those files and against the proxy itself.
#   bash tests/deploy/deploy_files_test.sh build/proxy/saltproxy .
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
passed=0
failed=0
check() {
  local name=$1; shift
  if "$@" >"$work/check.log" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAILED: $name"; cat "$work/check.log"
  fi
}
py=/usr/bin/python3

check "alert rules pass promtool" promtool check rules "$src/deploy/prometheus/alerts.yaml"

sed "s|/usr/local/bin/saltproxy|$bin|g; s|/etc/saltproxy/saltproxy.yaml|$src/config/saltproxy.yaml|g" \
  "$src/deploy/systemd/saltproxy.service" >"$work/saltproxy.service"
check "systemd unit passes systemd-analyze verify" systemd-analyze verify "$work/saltproxy.service"

check "kubernetes manifests parse and carry probes and scrape annotations" $py - "$src/deploy/kubernetes" "$work" <<'PY'
import sys, yaml, pathlib
d, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
docs = {p.name: list(yaml.safe_load_all(p.read_text())) for p in d.glob("*.yaml")}
kinds = {doc["kind"]: doc for ds in docs.values() for doc in ds}
assert {"Deployment", "Service", "ConfigMap"} <= set(kinds), kinds.keys()
dep = kinds["Deployment"]
c = dep["spec"]["template"]["spec"]["containers"][0]
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
ann = dep["spec"]["template"]["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
assert dep["spec"]["selector"]["matchLabels"] == kinds["Service"]["spec"]["selector"]
(work / "k8s.yaml").write_text(kinds["ConfigMap"]["data"]["saltproxy.yaml"])
PY
check "the ConfigMap's config passes --check-config" "$bin" --config "$work/k8s.yaml" --check-config
check "the ConfigMap's config turns the Kafka listener on (the Service exposes it)" \
  grep -q 'listen: 0.0.0.0:9092' "$work/k8s.yaml"
check "the container's config passes --check-config" \
  "$bin" --config "$src/deploy/container/saltproxy.yaml" --check-config
# Every shared library the binary needs comes from a package the image's runtime stage installs
# (or that Debian's slim image has).
check "the image's runtime stage installs every library the binary links" $py - "$bin" "$src" <<'PY'
import re, subprocess, sys, pathlib
binary, src = sys.argv[1], pathlib.Path(sys.argv[2])
libs = re.findall(r"=> (/\S+)", subprocess.run(["ldd", binary], capture_output=True, text=True).stdout)
packages = set()
for lib in libs:
    real = str(pathlib.Path(lib).resolve())
    for path in (real, lib):
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if out.returncode == 0:
            packages.add(out.stdout.split(":")[0])
            break
text = (src / "deploy/container/Containerfile").read_text()
runtime = text[text.rindex("FROM "):]
installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", runtime))
base = {"libc6", "libgcc-s1", "libstdc++6"}  # in debian:bookworm-slim
dependencies = {"libssl3", "libsasl2-2"}  # librdkafka1's own dependencies
missing = sorted(packages - installed - base - dependencies)
assert not missing, f"the runtime stage does not install: {missing}"
PY

# A running proxy's /metrics: promtool's lint, and every metric the dashboard and the alerts use.
printf 'http:\n  listen: 127.0.0.1:0\nkafka:\n  listen: 127.0.0.1:0\nupstream:\n  embedded: true\n  embedded_topics: [{name: t, partitions: 4}]\n' >"$work/run.yaml"
"$bin" --config "$work/run.yaml" 2>"$work/log" &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*event=http_listening .*port=\([0-9]*\).*/\1/p' "$work/log" | head -1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
curl -s -H 'Content-Type: application/vnd.kafka.json.v2+json' -d '{"records":[{"key":"a","value":1}]}' \
  "http://127.0.0.1:$port/topics/t" >/dev/null
curl -s -H 'Content-Type: application/json' -d 'not json' "http://127.0.0.1:$port/topics/t" >/dev/null
for _ in $(seq 1 50); do
  curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics"
  grep -q '^saltproxy_topic_records_in_total{topic="t"} 1' "$work/metrics" && break
  sleep 0.1
done
check "live /metrics passes promtool check metrics" promtool check metrics <"$work/metrics"
check "every saltproxy metric of the dashboard and the alerts is exported" $py - "$src" "$work/metrics" <<'PY'
import json, re, sys, pathlib
src, metrics = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text()
exported = set(re.findall(r"^# TYPE (\S+) ", metrics, re.M))
def base(name):
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)] in exported:
            return name[: -len(suffix)]
    return name
used = set()
dash = json.loads((src / "deploy/grafana/saltproxy-dashboard.json").read_text())
for p in dash["panels"]:
    for t in p["targets"]:
        used |= set(re.findall(r"saltproxy_[a-z_]+", t["expr"]))
used |= set(re.findall(r"saltproxy_[a-z_]+", (src / "deploy/prometheus/alerts.yaml").read_text()))
missing = sorted(n for n in used if base(n) not in exported)
assert not missing, f"not exported: {missing}"
print(f"{len(used)} metric names checked")
PY
kill -TERM $pid; wait $pid; pid=""

echo "deploy: $passed passed, $failed failed"
[ $failed -eq 0 ]
