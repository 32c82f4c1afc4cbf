"""Run in a subprocess by the tests: start a worker through the controller API, print JSON.

Usage: python child_worker.py MODE
Prints {"started": true, "sendRing": {...}} or {"started": false, "type", "message", "mode",
"errno", "isWorkerStartError"}.
"""

import asyncio
import json
import logging
import sys

import relay
from worker_proto.errors import WorkerStartError


async def main(mode: str) -> dict:
    try:
        worker = await relay.create_worker(send_mode=mode)
    except WorkerStartError as exc:
        return {"started": False, "type": type(exc).__name__, "message": str(exc),
                "mode": getattr(exc, "mode", None), "errno": getattr(exc, "errno", None)}
    try:
        return {"started": True, "sendRing": (await worker.dump())["sendRing"]}
    finally:
        worker.close()
        await worker.wait_closed()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
