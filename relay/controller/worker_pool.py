"""A worker per core behind one controller: `WorkerPool` starts the workers, places each new
router on the least-loaded one, and spreads a big room over several workers by piping a
producer's router to routers on the others (`Router.pipe_to_router`).

    pool = await relay.WorkerPool.create(size=4, rtc_min_port=40000, rtc_max_port=49999)
    room = await pool.create_router(media_codecs=codecs)          # least-loaded worker
    edges = await pool.spread(room, producer_id, copies=3)        # routers on the others

A worker is one process on one core; the load that decides placement is what the
controller knows each worker carries: its consumers (each costs per-packet work), then its
producers, then its routers (an empty new room counts too, so rooms made together spread
out). The workers' port range is split evenly between them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from worker_proto.errors import ArgumentError, InvalidStateError

from .router import Router
from .worker import Worker, create_worker

MAX_POOL_SIZE = 256


def worker_load(worker: Worker) -> tuple[int, int, int]:
    """(consumers, producers, routers) on `worker`, as its controller knows them."""
    consumers = producers = 0
    for router in worker.routers:
        for transport in router.transports:
            consumers += len(transport.consumers)
            producers += len(transport.producers)
    return consumers, producers, len(worker.routers)


class WorkerPool:
    """Workers of one controller and where new routers go. Make one with `create()`."""

    def __init__(self, workers: list[Worker]) -> None:
        self._workers = list(workers)

    @classmethod
    async def create(cls, size: int | None = None, *, rtc_min_port: int = 10000,
                     rtc_max_port: int = 59999, **worker_settings: Any) -> WorkerPool:
        """`size` workers (default: one per CPU this process may run on), each with an equal
        share of the port range; other settings go to every `create_worker`."""
        if size is None:
            size = len(os.sched_getaffinity(0))
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_POOL_SIZE:
            raise ArgumentError(f"size must be an integer in 1..{MAX_POOL_SIZE}")
        for name, value in (("rtc_min_port", rtc_min_port), ("rtc_max_port", rtc_max_port)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                raise ArgumentError(f"{name} must be an integer in 1..65535")
        share = (rtc_max_port - rtc_min_port + 1) // size
        if share < 1:
            raise ArgumentError(f"the port range {rtc_min_port}-{rtc_max_port} is too small for "
                                f"{size} workers")
        results = await asyncio.gather(*(
            create_worker(rtc_min_port=rtc_min_port + i * share,
                          rtc_max_port=rtc_min_port + (i + 1) * share - 1, **worker_settings)
            for i in range(size)), return_exceptions=True)
        workers = [w for w in results if isinstance(w, Worker)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            for worker in workers:
                worker.close()
            raise failure
        return cls(workers)

    @property
    def workers(self) -> list[Worker]:
        """The workers still running."""
        return [w for w in self._workers if not w.closed]

    def least_loaded(self) -> Worker:
        """The running worker with the least load (`worker_load`; ties: the first)."""
        workers = self.workers
        if not workers:
            raise InvalidStateError("no worker of the pool is running")
        return min(workers, key=worker_load)

    async def create_router(self, *, media_codecs: list[dict] | None = None,
                            app_data: Any = None) -> Router:
        """A router on the least-loaded worker."""
        return await self.least_loaded().create_router(media_codecs=media_codecs,
                                                       app_data=app_data)

    async def spread(self, router: Router, producer_id: str, copies: int,
                     **pipe_options: Any) -> list[Router]:
        """Routers on `copies` other workers (the least loaded first, one per worker), each
        carrying `router`'s producer `producer_id` through `pipe_to_router` (its
        `pipe_options`: listen_info, enable_srtp, enable_rtx): consumers of a big room go
        on them. Routers made earlier for the same room can be given the producer with
        `router.pipe_to_router` directly."""
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 0:
            raise ArgumentError("copies must be a non-negative integer")
        home = next((w for w in self.workers if router in w.routers), None)
        others = sorted((w for w in self.workers if w is not home), key=worker_load)
        if copies > len(others):
            raise ArgumentError(f"copies={copies} but the pool has only {len(others)} other "
                                f"running worker(s)")
        routers = []
        for worker in others[:copies]:
            edge = await worker.create_router(
                media_codecs=_media_codecs(router.rtp_capabilities))
            await router.pipe_to_router(producer_id=producer_id, router=edge, **pipe_options)
            routers.append(edge)
        return routers

    def close(self) -> None:
        for worker in self._workers:
            worker.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*(w.wait_closed() for w in self._workers))


def _media_codecs(capabilities: dict) -> list[dict]:
    """The media codecs a router was made with, from its capabilities (RTX is added back)."""
    codecs = []
    for codec in capabilities["codecs"]:
        if codec["mimeType"].lower().endswith("/rtx"):
            continue
        entry = {key: codec[key] for key in ("kind", "mimeType", "clockRate",
                                              "preferredPayloadType") if key in codec}
        if "channels" in codec:
            entry["channels"] = codec["channels"]
        if codec.get("parameters"):
            entry["parameters"] = dict(codec["parameters"])
        codecs.append(entry)
    return codecs
