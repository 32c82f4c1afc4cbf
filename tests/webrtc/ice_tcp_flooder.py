"""An ICE-TCP slot flooder, run as its own process by the flood test:

    python ice_tcp_flooder.py HOST PORT DURATION SOURCE_IP:COUNT [SOURCE_IP:COUNT ...]

holds COUNT idle TCP connections from each SOURCE_IP (bound before connect) to HOST:PORT and
reconnects each one as soon as the server drops it, never sending a byte. It prints "filled"
once every slot has connected once, and at the end one JSON line of counts. Bounded: it stops
after DURATION seconds and after MAX_CONNECTS_PER_SLOT connects of any one slot.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections import Counter

MAX_CONNECTS_PER_SLOT = 20000
RETRY_PAUSE = 0.005  # after a failed connect (e.g. SYN dropped): don't spin
# Linux: choose the source port at connect(), so a bound source IP is not limited to the
# ports no other socket on that IP holds.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def hold_slot(source: str, server: tuple[str, int], counts: Counter[str],
                    first_connect: asyncio.Event, pending: list[int]) -> None:
    loop = asyncio.get_running_loop()
    first = True
    for _ in range(MAX_CONNECTS_PER_SLOT):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            await loop.sock_connect(sock, server)
            counts["connects"] += 1
            if first:
                first = False
                pending[0] -= 1
                if pending[0] == 0:
                    first_connect.set()
            # The server's close shows as EOF (or a reset): that is a drop; reconnect at once.
            try:
                await loop.sock_recv(sock, 1)
            except ConnectionError:
                pass
            counts["drops"] += 1
        except OSError as exc:
            counts[f"connectError {exc.errno}"] += 1
            await asyncio.sleep(RETRY_PAUSE)
        finally:
            sock.close()


async def flood(host: str, port: int, duration: float, groups: list[tuple[str, int]]) -> dict:
    counts: Counter[str] = Counter()
    filled = asyncio.Event()
    pending = [sum(n for _, n in groups)]
    tasks = [asyncio.create_task(hold_slot(source, (host, port), counts, filled, pending))
             for source, n in groups for _ in range(n)]

    async def announce() -> None:
        await filled.wait()
        print("filled", flush=True)

    announcer = asyncio.create_task(announce())
    try:
        await asyncio.wait(tasks, timeout=duration)
    finally:
        for task in [*tasks, announcer]:
            task.cancel()
        await asyncio.gather(*tasks, announcer, return_exceptions=True)
    return dict(counts)


def main(argv: list[str]) -> None:
    host, port, duration = argv[0], int(argv[1]), float(argv[2])
    groups = [(spec.rpartition(":")[0], int(spec.rpartition(":")[2])) for spec in argv[3:]]
    print(json.dumps(asyncio.run(flood(host, port, duration, groups))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
