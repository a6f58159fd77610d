#!/usr/bin/env python3
"""HTTP load against saltproxy in front of a throttled broker (benchmarks/kafka/throttled.sh).

  throttled_load.py HTTP_PORT SECONDS CLIENTS RECORDS VALUE_BYTES TOPIC

Each client keeps one v2 request of RECORDS records in flight for SECONDS, and after a 429 waits
what Retry-After says; a thread polls /readyz every 100 ms meanwhile. Prints one line of JSON:
requests answered 200 and 429, records written, answer times of the 200s (all, and of those sent
after the first 10 s: the first requests all arrive at once, before anything says the broker is
slow), records that failed upstream (an error_code in a 200), /readyz answers that were not 200.
"""
import http.client
import json
import sys
import threading
import time

port, seconds, clients, records, value_bytes, topic = (
    int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
    sys.argv[6])
lock = threading.Lock()
stats = {"ok": 0, "refused": 0, "other": 0, "written": 0, "failed": 0, "took": [], "later": [],
         "readyz_checks": 0, "readyz_not_200": 0}
begin = time.time()
end = begin + seconds


def client(c):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    n = 0
    while time.time() < end:
        body = json.dumps({"records": [{"key": f"c{c}-{n}-{i}", "value": "x" * value_bytes}
                                       for i in range(records)]})
        n += 1
        start = time.time()
        try:
            conn.request("POST", f"/topics/{topic}", body,
                         {"Content-Type": "application/vnd.kafka.json.v2+json"})
            answer = conn.getresponse()
            data = answer.read()
        except OSError:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            with lock:
                stats["other"] += 1
            continue
        took = time.time() - start
        wait = 0
        with lock:
            if answer.status == 200:
                offsets = json.loads(data)["offsets"]
                failed = sum(1 for o in offsets if o["error_code"] is not None)
                stats["ok"] += 1
                stats["failed"] += failed
                stats["written"] += len(offsets) - failed
                stats["took"].append(took)
                if start - begin >= 10:
                    stats["later"].append(took)
            elif answer.status == 429:
                stats["refused"] += 1
                wait = int(answer.getheader("Retry-After", "1"))
            else:
                stats["other"] += 1
        time.sleep(wait)


def readiness():
    while time.time() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
        except OSError:
            status = 0
        with lock:
            stats["readyz_checks"] += 1
            stats["readyz_not_200"] += status != 200
        time.sleep(0.1)


threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
threads.append(threading.Thread(target=readiness))
for t in threads:
    t.start()
for t in threads:
    t.join()


def pick(took, p):
    took = sorted(took) or [0]
    return round(took[min(len(took) - 1, int(p * len(took)))], 2)


took, later = stats.pop("took"), stats.pop("later")
stats.update({"p50_s": pick(took, 0.5), "p90_s": pick(took, 0.9), "max_s": pick(took, 1),
              "later_p50_s": pick(later, 0.5), "later_p90_s": pick(later, 0.9),
              "later_max_s": pick(later, 1)})
print(json.dumps(stats))
