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


def murmur2(data):
    """Kafka's murmur2 (the Java client's default partitioner), as an unsigned 32-bit value."""
    m, seed, length = 0x5bd1e995, 0x9747b28c, len(data)
    h = (seed ^ length) & 0xffffffff
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xffffffff
        k ^= k >> 24
        k = (k * m) & 0xffffffff
        h = ((h * m) & 0xffffffff) ^ k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xffffffff
    h ^= h >> 13
    h = (h * m) & 0xffffffff
    h ^= h >> 15
    return h


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
    p.add_argument("--partitions", type=int, default=16, help="the topic's partition count")
    args = p.parse_args()
    partitions = args.partitions

    rng = random.Random(args.seed)
    cdf = zipf_cdf(args.keys, args.zipf)
    conn = http.client.HTTPConnection(args.host, args.port, timeout=60)
    per_partition, per_key_partitions, errors = {}, {}, 0
    plain = {}  # where the Java default partitioner would have put each record
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
            # The JSON embedded format stores the key as its JSON text: "\"user-1\"".
            would = (murmur2(json.dumps(key).encode()) & 0x7fffffff) % partitions
            plain[would] = plain.get(would, 0) + 1
            per_key_partitions.setdefault(key, set()).add(part)
        sent += n
    elapsed = time.time() - started

    total = sum(per_partition.values())
    mean = total / max(1, len(per_partition))
    print("sent %d records in %.1f s (%.0f records/s), %d failed" %
          (sent, elapsed, sent / elapsed, errors))
    plain_mean = sum(plain.values()) / partitions
    print("partition  without saltproxy   through saltproxy")
    for part in range(partitions):
        c, w = per_partition.get(part, 0), plain.get(part, 0)
        print("%9d  %6d %5.2f  %-12s %6d %5.2f  %s" % (
            part, w, w / plain_mean, "#" * int(12 * w / max(plain.values())),
            c, c / mean, "#" * int(12 * c / max(per_partition.values()))))
    print("max/mean partition load: %.2f without saltproxy (plain murmur2), %.2f through saltproxy"
          % (max(plain.values()) / plain_mean, max(per_partition.values()) / mean))
    hot = per_key_partitions.get("concert-2026", set())
    print("the hot key concert-2026 landed on %d partition(s): %s" % (len(hot), sorted(hot)))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
