#!/usr/bin/env python3
"""The etcd floor of `make bench`: N sequential puts of a small value, each timed from the put
request to the watch event on a second connection (etcd's JSON gateway, one process, fsync on).
Usage: etcd-floor.py HOST:PORT N"""
import base64, http.client, json, sys, threading, time

address, n = sys.argv[1], int(sys.argv[2])
host, port = address.split(":")
key = base64.b64encode(b"bench/floor").decode()

events = []
ready = threading.Event()
cond = threading.Condition()

def watch():
    conn = http.client.HTTPConnection(host, int(port))
    body = json.dumps({"create_request": {"key": key}})
    conn.request("POST", "/v3/watch", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    while True:
        line = response.readline()
        if not line:
            return
        message = json.loads(line)
        result = message.get("result", {})
        if result.get("created"):
            ready.set()
        for _ in result.get("events", []):
            with cond:
                events.append(time.perf_counter())
                cond.notify()

threading.Thread(target=watch, daemon=True).start()
ready.wait(10)
put = http.client.HTTPConnection(host, int(port))
samples = []
for i in range(n):
    value = base64.b64encode(json.dumps({"pool_size": i}).encode()).decode()
    with cond:
        seen = len(events)
    start = time.perf_counter()
    put.request("POST", "/v3/kv/put", body=json.dumps({"key": key, "value": value}), headers={"Content-Type": "application/json"})
    put.getresponse().read()
    with cond:
        while len(events) <= seen:
            cond.wait(5)
        samples.append(events[seen] - start)
samples.sort()
p = lambda q: samples[min(len(samples) - 1, int((len(samples) - 1) * q))] * 1000
print(f"floor  etcd put→watch event           p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  max {samples[-1] * 1000:.2f} ms  (n={n})")
