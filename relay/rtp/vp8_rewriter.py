"""VP8 PictureID and TL0PICIDX continuity for a consumer that switches between a producer's
streams (simulcast layers, RFC 7741 4.2).

Each simulcast layer numbers its pictures on its own. A receiver that sees the PictureID jump
at a layer switch (or go backwards) takes the new pictures for ones it has seen or for a gap
in its reference chain, and stops assembling frames until a key frame resets it, although
every packet arrives. So, like the sequence numbers (`relay.uring.rewriter`), the consumer's
PictureID and TL0PICIDX continue from the last ones it sent: at every re-sync of the
consumer's `RtpRewriter` (a layer switch, a resume) the offsets are chosen so the next
picture is the last one sent plus one; between syncs they are fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.uring.rewriter import RtpRewriter


class Vp8PictureRewriter:
    """One consumer's output PictureID / TL0PICIDX (see the module doc)."""

    __slots__ = ("rewriter", "_syncs", "pid_offset", "tl0_offset", "last_pid", "last_tl0",
                 "started")

    def __init__(self, rewriter: RtpRewriter) -> None:
        self.rewriter = rewriter  # its syncs are this one's re-bases
        self._syncs = -1
        self.pid_offset = 0
        self.tl0_offset = 0
        self.last_pid = -1  # the newest output PictureID (15-bit space), -1: none yet
        self.last_tl0 = -1
        self.started = False

    def rewrite(self, buf: bytearray, offset: int, n: int, update: bool = True) -> None:
        """Rewrite the descriptor of the VP8 payload at `buf[offset:n]` in place (no-op for a
        descriptor without PictureID/TL0PICIDX or a malformed one). `update`: this is the
        newest packet sent (False for a resend: apply the offsets, change nothing)."""
        if offset + 2 > n or not buf[offset] & 0x80:
            return
        x = buf[offset + 1]
        pos = offset + 2
        pid_pos = tl0_pos = -1
        in_pid = 0
        wide = False
        if x & 0x80:
            if pos >= n:
                return
            pid_pos = pos
            wide = bool(buf[pos] & 0x80)
            pos += 2 if wide else 1
        if x & 0x40:
            if pos >= n:
                return
            tl0_pos = pos
        if pid_pos < 0 and tl0_pos < 0:
            return
        if wide:
            if pid_pos + 1 >= n:
                return
            in_pid = ((buf[pid_pos] & 0x7F) << 8) | buf[pid_pos + 1]
        elif pid_pos >= 0:
            in_pid = buf[pid_pos] & 0x7F
        in_tl0 = buf[tl0_pos] if tl0_pos >= 0 else 0
        if update and self._syncs != self.rewriter.syncs:
            self._syncs = self.rewriter.syncs
            if self.started:
                if pid_pos >= 0 and self.last_pid >= 0:
                    self.pid_offset = (self.last_pid + 1 - in_pid) & 0x7FFF
                if tl0_pos >= 0 and self.last_tl0 >= 0:
                    self.tl0_offset = (self.last_tl0 + 1 - in_tl0) & 0xFF
            self.started = True
        if pid_pos >= 0:
            if wide:
                out = (in_pid + self.pid_offset) & 0x7FFF
                buf[pid_pos] = 0x80 | (out >> 8)
                buf[pid_pos + 1] = out & 0xFF
            else:
                out = (in_pid + self.pid_offset) & 0x7F
                buf[pid_pos] = out
            mask = 0x7FFF if wide else 0x7F
            if update and (self.last_pid < 0 or 0 < (out - self.last_pid) & mask < (mask + 1) // 2):
                self.last_pid = out
        if tl0_pos >= 0:
            out_tl0 = (in_tl0 + self.tl0_offset) & 0xFF
            buf[tl0_pos] = out_tl0
            if update and (self.last_tl0 < 0 or 0 < (out_tl0 - self.last_tl0) & 0xFF < 0x80):
                self.last_tl0 = out_tl0
