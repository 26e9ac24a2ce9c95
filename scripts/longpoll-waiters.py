#!/usr/bin/env python3
"""Opens N long-poll requests on one process, reads confbus's memory and thread count while
they wait, then changes a file and reloads, and times how long until every waiter has its answer.
Loopback only. Usage: longpoll-waiters.py PORT N PID TOKEN FILE"""
import asyncio, os, sys, time

port, n, pid, token, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

async def waiter(results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/config/feature-flags?wait=60&after=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status = (await reader.readline()).split()[1]
    await reader.read()
    results.append((status, time.monotonic()))
    writer.close()

async def waiting():
    """confbus's own count of the long-polls it holds (the gauge is refreshed every 2 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    body = (await reader.read()).decode()
    writer.close()
    for line in body.splitlines():
        if line.startswith("confbus_long_poll_waiters "):
            return int(float(line.split()[1]))
    return 0

async def main():
    before = rss_kib()
    results = []
    tasks = [asyncio.create_task(waiter(results)) for _ in range(n)]
    # Memory is read once confbus itself holds every waiter (at most 60 s).
    for _ in range(120):
        await asyncio.sleep(0.5)
        if await waiting() >= n:
            break
    else:
        print(f"only {await waiting()} of {n} waiters were held after 60 s")
    threads = len(os.listdir(f"/proc/{pid}/task"))
    during = rss_kib()
    print(f"{n} waiters open: RSS {before} KiB -> {during} KiB ({(during - before) * 1024 / n:.0f} bytes per waiter), {threads} threads")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("dark_mode:", "dark_mode_bench:"))
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    await reader.read()
    await asyncio.gather(*tasks)
    last = max(t for _, t in results)
    ok = sum(1 for s, _ in results if s == b"200")
    print(f"all {len(results)} answered ({ok} with 200) {(last - started) * 1000:.0f} ms after the reload request")

import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, max(n + 1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
asyncio.run(main())
