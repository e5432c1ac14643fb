"""Holds idle JacobianStreams open against a server and reports what they cost it (docs/security.md, "Connections and
idle streams"): CONNECTIONS connections, each carrying STREAMS streams that send nothing, held for SECONDS; halfway
through, the server's resident memory, descriptors and established connections are read from /proc and ss.

Usage: python3 bench/idle_streams.py HOST:PORT SERVER_PID CONNECTIONS STREAMS [SECONDS]
Debian's python3-grpcio (/usr/bin/python3). Calls go out as raw bytes: no stubs are needed for streams that send nothing.
"""
import asyncio
import os
import subprocess
import sys
import time

import grpc


def server_state(pid, port):
    rss_kib = int(subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    ss = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    return rss_kib // 1024, fds, len(ss.splitlines())


async def main(target, pid, connections, streams, seconds):
    port = int(target.rsplit(":", 1)[1])
    before = server_state(pid, port)
    raw = lambda b: b  # noqa: E731
    channels, calls = [], []
    for c in range(connections):
        # A subchannel per channel: otherwise gRPC shares one connection among channels to the same target.
        channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1), ("grpc.channel_id", c)])
        channels.append(channel)
        method = channel.stream_stream("/jacservice.v1.JacobianService/JacobianStream", request_serializer=raw, response_deserializer=raw)
        calls.extend(method() for _ in range(streams))
    started = time.monotonic()
    try:
        # A connection the server refuses (Kestrel:Limits:MaxConcurrentConnections) is retried by gRPC, never ready.
        await asyncio.wait_for(asyncio.gather(*(call.wait_for_connection() for call in calls), return_exceptions=True), 60)
    except asyncio.TimeoutError:
        print("not every stream was open after 60 s", flush=True)
    print(f"opened {len(calls)} streams on {connections} connections in {time.monotonic() - started:.1f} s", flush=True)
    await asyncio.sleep(seconds / 2)
    held = server_state(pid, port)
    await asyncio.sleep(seconds / 2)
    ended = sum(1 for call in calls if call.done())
    print(f"server before: {before[0]} MiB resident, {before[1]} descriptors, {before[2]} connections")
    print(f"server held:   {held[0]} MiB resident, {held[1]} descriptors, {held[2]} connections")
    print(f"per stream: {(held[0] - before[0]) * 1024 / max(1, len(calls)):.1f} KiB; streams the server ended: {ended}", flush=True)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]) if len(args) > 4 else 20))
    # grpc's aio channels can keep the process alive after close; the measurement is done.
    os._exit(0)
