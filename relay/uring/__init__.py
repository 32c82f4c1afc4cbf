"""relay's io_uring send ring: ``SendRing`` and its errors (see send_ring.py)."""

from relay.uring.send_ring import MODES, SendModeUnavailableError, SendRing, SendRingClosed

__all__ = ["MODES", "SendModeUnavailableError", "SendRing", "SendRingClosed"]
