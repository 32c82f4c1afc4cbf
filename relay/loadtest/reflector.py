"""The harness's self-test peer: a C loop (recvmmsg in; sendmmsg out, with UDP GSO for runs
of equal-sized datagrams, see reflector_core.h) that forwards every datagram of each input
socket to that input's sinks, unchanged. Run as a child process:

    python -m relay.loadtest.reflector '<json: {"inFds": [...], "outFd": n,
                                                "destinations": [[[ip, port], ...], ...]}>'

It prints "ready" once listening; each line the harness writes to its stdin asks for its
counters, answered as one JSON line. It exits when its stdin closes (the harness ended) or
on SIGTERM; it ignores SIGINT, so a Ctrl-C in the terminal stops the harness, which then
closes it."""

from __future__ import annotations

import json
import select
import signal
import sys

from .traffic_lib import ffi, lib


def serve(in_fds: list[int], out_fd: int, destinations: list[list[list]],
          use_gso: bool = True) -> None:
    offsets = [0]
    addrs = bytearray()
    for dst_list in destinations:
        for ip, port in dst_list:
            buf = ffi.new("unsigned char[]", lib.LT_ADDR_SIZE)
            if lib.lt_make_addr(ip.encode(), int(port), buf) < 0:
                raise SystemExit(f"reflector: bad destination {ip}:{port}")
            addrs += ffi.buffer(buf)[:]
        offsets.append(offsets[-1] + len(dst_list))
    c_in = ffi.new("int[]", in_fds)
    c_off = ffi.new("int[]", offsets)
    c_dst = ffi.from_buffer("unsigned char[]", addrs) if addrs else ffi.NULL
    stats = ffi.new("struct lt_reflect_stats *")
    stats.gso = 1 if use_gso else 0
    stdin = sys.stdin.fileno()
    poller = select.poll()
    poller.register(stdin, select.POLLIN | select.POLLHUP)
    print("ready", flush=True)
    while True:
        rc = lib.lt_reflect(c_in, len(in_fds), c_off, c_dst, out_fd, 50, stats)
        if rc < 0:
            raise SystemExit(f"reflector: poll failed (errno {-rc})")
        if poller.poll(0):
            if not sys.stdin.readline():  # the harness closed our stdin: it is done
                return
            print(json.dumps(counters(stats, use_gso)), flush=True)


def counters(stats: object, gso_requested: bool) -> dict:
    return {"received": stats.received, "sent": stats.sent, "sends": stats.sends,
            "sendErrors": stats.send_errors, "gsoRequested": gso_requested,
            "gso": bool(stats.gso),
            "datagramsPerSend": round(stats.sent / stats.sends, 2) if stats.sends else None}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.argv[1])
    serve(config["inFds"], config["outFd"], config["destinations"], config.get("gso", True))


if __name__ == "__main__":
    main()
