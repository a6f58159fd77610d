#!/usr/bin/env python3
"""Sends a short burst of skewed traffic to saltproxy's REST API and prints where it landed.

    scripts/demo-traffic.py --port 8080 --topic clicks --records 20000

Keys follow a Zipf law over --keys distinct keys, plus one viral key ("concert-2026") that
carries --hot-share of all records, like the hot concert of the seeds. Records go in batches of
--batch per request over one keep-alive connection; the per-record answers say which
partition each record went to, and the table shows each partition's share of the burst.
"""
import argparse
import bisect
import http.client
import json
import random
import sys
import time


def zipf_cdf(n, s):
    weights = [1.0 / (i ** s) for i in range(1, n + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    return cdf


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", default="clicks")
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--keys", type=int, default=10000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--hot-share", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()

    rng = random.Random(args.seed)
    cdf = zipf_cdf(args.keys, args.zipf)
    conn = http.client.HTTPConnection(args.host, args.port, timeout=60)
    per_partition, per_key_partitions, errors = {}, {}, 0
    sent, started = 0, time.time()
    while sent < args.records:
        n = min(args.batch, args.records - sent)
        keys = []
        for _ in range(n):
            if rng.random() < args.hot_share:
                keys.append("concert-2026")
            else:
                keys.append("user-%d" % bisect.bisect_left(cdf, rng.random()))
        body = json.dumps({"records": [{"key": k, "value": {"seq": sent + i}}
                                       for i, k in enumerate(keys)]})
        conn.request("POST", "/topics/" + args.topic, body,
                     {"Content-Type": "application/vnd.kafka.json.v2+json"})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            print("request failed: %d %s" % (resp.status, payload.decode()), file=sys.stderr)
            return 1
        for key, off in zip(keys, json.loads(payload)["offsets"]):
            if off["error_code"] is not None:
                errors += 1
                continue
            part = off["partition"]
            per_partition[part] = per_partition.get(part, 0) + 1
            per_key_partitions.setdefault(key, set()).add(part)
        sent += n
    elapsed = time.time() - started

    total = sum(per_partition.values())
    mean = total / max(1, len(per_partition))
    print("sent %d records in %.1f s (%.0f records/s), %d failed" %
          (sent, elapsed, sent / elapsed, errors))
    print("partition  records  share  load/mean")
    for part in sorted(per_partition):
        c = per_partition[part]
        print("%9d  %7d  %4.1f%%  %5.2f  %s" % (part, c, 100.0 * c / total, c / mean,
                                             "#" * int(40 * c / max(per_partition.values()))))
    print("max/mean partition load: %.2f" % (max(per_partition.values()) / mean))
    hot = per_key_partitions.get("concert-2026", set())
    print("the hot key concert-2026 landed on %d partition(s): %s" % (len(hot), sorted(hot)))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
