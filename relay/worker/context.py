"""What every worker-side object gets: the loop, the send ring, ports, handlers, notify."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from relay.transport.port_allocator import PortAllocator
    from relay.uring import SendRing


class RequestHandler(Protocol):
    """A worker-side object that answers requests addressed to its handlerId."""

    def handle_request(
        self, method: str, data: dict
    ) -> dict | None | Awaitable[dict | None]: ...


@dataclass
class WorkerContext:
    loop: asyncio.AbstractEventLoop
    ring: SendRing  # relay.uring.SendRing, created by main.py
    ports: PortAllocator | None  # None only if relay.transport is not installed
    handlers: dict[str, RequestHandler] = field(default_factory=dict)  # handlerId -> object
    # notify(handler_id, event, data): sends a notification to the controller.
    notify: Callable[[str, str, dict | None], None] = lambda handler_id, event, data: None
    settings: dict[str, Any] = field(default_factory=dict)  # logLevel, rtcMinPort, ...
