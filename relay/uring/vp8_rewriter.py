"""VP8 PictureID and TL0PICIDX continuity for a consumer that switches between a producer's
streams (simulcast layers, RFC 7741 4.2), as a thin wrapper over the C that does it
(rewriter_core.c's fc_vp8_rewrite, which the C fan-out core calls per packet).

Each simulcast layer numbers its pictures on its own. A receiver that sees the PictureID jump
at a layer switch (or go backwards) takes the new pictures for ones it has seen or for a gap
in its reference chain, and stops assembling frames until a key frame resets it, although
every packet arrives. So, like the sequence numbers (`relay.uring.rewriter`), the consumer's
PictureID and TL0PICIDX continue from the last ones it sent: at every re-sync of the
consumer's `RtpRewriter` (a layer switch, a resume) the offsets are chosen so the next
picture is the last one sent plus one; between syncs they are fixed. The state lives in the
rewriter's C struct (its `vp8` fields).
"""

from __future__ import annotations

from relay.uring._ring import ffi, lib
from relay.uring.rewriter import RtpRewriter

_from_buffer = ffi.from_buffer
# (rewriter.c, input packet, its copy, payload offset, n, update): the fan-out loop's call
rewrite_vp8 = lib.fc_vp8_rewrite


class Vp8PictureRewriter:
    """One consumer's output PictureID / TL0PICIDX (see the module doc)."""

    __slots__ = ("rewriter",)

    def __init__(self, rewriter: RtpRewriter) -> None:
        self.rewriter = rewriter  # its syncs are this one's re-bases; it holds the state
        c = rewriter.c
        c.vp8 = 1
        c.vp8_syncs = -1
        c.last_pid = -1
        c.last_tl0 = -1

    def rewrite(self, buf: bytearray, offset: int, n: int, update: bool = True) -> None:
        """Rewrite the descriptor of the VP8 payload at `buf[offset:n]` in place (no-op for a
        descriptor without PictureID/TL0PICIDX or a malformed one). `update`: this is the
        newest packet sent (False for a resend: apply the offsets, change nothing)."""
        if not 0 <= offset <= n <= len(buf):
            raise ValueError("offset and n must lie within buf")
        ptr = _from_buffer("unsigned char[]", buf)
        lib.fc_vp8_rewrite(self.rewriter.c, ptr, ptr, offset, n, update)

    @property
    def pid_offset(self) -> int:
        return self.rewriter.c.pid_offset

    @property
    def tl0_offset(self) -> int:
        return self.rewriter.c.tl0_offset

    @property
    def last_pid(self) -> int:
        """The newest output PictureID (15-bit space), -1: none yet."""
        return self.rewriter.c.last_pid

    @property
    def last_tl0(self) -> int:
        return self.rewriter.c.last_tl0
