#!/usr/bin/env python3
"""Runs every curl example of README.md's "HTTP API" section against a real saltproxy.

    python3 tests/http/readme_examples_test.py build/proxy/saltproxy .

Each ```sh block that runs curl is run with the port replaced by the test proxy's; its output
must be the JSON documents shown under it in comments (one or more: streams answer one per
record), each carrying every field shown, with the same value where the value is not a number
that depends on the run (partitions and offsets) or the string "…" (any string: cluster ids,
timestamps, links).
"""
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request


def examples(readme):
    section = readme.split("### HTTP API", 1)[1].split("\n### ", 1)[0]
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        lines = block.strip().splitlines()
        command = "\n".join(l for l in lines if not l.startswith("#"))
        expected = "".join(l[1:].strip() for l in lines if l.startswith("#"))
        if "curl " in command:
            yield command, documents(expected)


def documents(text):
    """The JSON documents in `text`, one after the other (NDJSON, or concatenated)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    return docs


def same_shape(got, want, path="$"):
    """Every field of `want` is in `got`; strings, booleans and nulls are equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
        for k, v in want.items():
            assert k in got, f"{path}: missing field {k!r} in {got!r}"
            same_shape(got[k], v, f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            same_shape(g, w, f"{path}[{i}]")
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert isinstance(got, (int, float)), f"{path}: expected a number, got {got!r}"
        if path.endswith("error_code"):
            assert got == want, f"{path}: {got} vs {want}"
    elif want == "…":
        assert isinstance(got, str), f"{path}: expected a string, got {got!r}"
    else:
        assert got == want, f"{path}: {got!r} vs {want!r}"


def main():
    binary, src = sys.argv[1], sys.argv[2]
    readme = open(f"{src}/README.md").read()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    proxy = subprocess.Popen([binary, "--config", f"{src}/config/demo.yaml"], stderr=log)
    passed = failed = 0
    try:
        port = None
        for _ in range(100):
            log.seek(0)
            m = re.search(r"event=http_listening .*port=(\d+)", log.read())
            if m:
                port = m.group(1)
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    break
                except Exception:
                    pass
            time.sleep(0.1)
        assert port, "saltproxy did not start"
        found = list(examples(readme))
        assert len(found) >= 11, f"only {len(found)} examples found in README.md"
        for command, expected in found:
            out = subprocess.run(["bash", "-c", command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
                                 capture_output=True, text=True, timeout=60)
            try:
                same_shape(documents(out.stdout), expected)
                passed += 1
            except Exception as e:  # report every example, not only the first
                failed += 1
                print(f"FAILED: {command}\n  {e}\n  output: {out.stdout}{out.stderr}")
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    print(f"readme examples: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
