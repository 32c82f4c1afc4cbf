"""Coalesced key-frame requests from a producer to its sender.

Many consumers may ask for a key frame at once (joins, resumes, their receivers' PLI/FIR).
One request per producer is in flight: further asks while it is pending are counted and
dropped; when a key frame arrives the request is satisfied; if none arrives within
`RETRY_INTERVAL` the request is sent again, as long as someone still wants it (a consumer
waiting for a key frame, or an ask since the last send), at most `MAX_RETRIES` times in a row.
A request made before any stream of the producer has an SSRC (a consumer that joins before
the sender's first packet) is kept: it is tried again every `WAIT_INTERVAL` while wanted
(`deferred` counts those waits), and the producer asks again when a stream starts.
PLI (RFC 4585) unless the producer negotiated only "ccm fir", then FIR (RFC 5104) with an
incremented command sequence number per new request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.rtp.rtcp import Fir, Pli

RETRY_INTERVAL = 1.0
MAX_RETRIES = 10
WAIT_INTERVAL = 0.5
MAX_WAITS = 600  # 5 minutes of a silent sender; then a stream start asks again


class KeyFrameRequester:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[bytes], bool],
        media_ssrcs: Callable[[], list[int]],
        still_wanted: Callable[[], bool],
        use_fir: bool = False,
        sender_ssrc: int = 0,
    ) -> None:
        self._loop = loop
        self._send = send
        self._media_ssrcs = media_ssrcs
        self._still_wanted = still_wanted
        self.use_fir = use_fir
        self._sender_ssrc = sender_ssrc
        self._fir_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._asked_again = False
        self._retries = 0
        self.pending = False
        self.requests_sent = 0
        self.coalesced = 0
        self.deferred = 0
        self._waits = 0

    def request(self) -> None:
        if self.pending:
            self.coalesced += 1
            self._asked_again = True
            return
        self._fir_seq = (self._fir_seq + 1) & 0xFF
        self._retries = 0
        self._send_now()

    def on_key_frame(self) -> None:
        self.pending = False
        self._asked_again = False
        self._cancel()

    def close(self) -> None:
        self.pending = False
        self._cancel()

    def _send_now(self) -> None:
        sent = False
        for ssrc in self._media_ssrcs():
            if self.use_fir:
                packet = Fir(self._sender_ssrc, [(ssrc, self._fir_seq)]).serialize()
            else:
                packet = Pli(self._sender_ssrc, ssrc).serialize()
            if self._send(packet):
                self.requests_sent += 1
                sent = True
        self.pending = sent
        self._asked_again = False
        self._cancel()
        if sent:
            self._waits = 0
            self._timer = self._loop.call_later(RETRY_INTERVAL, self._on_timeout)
        elif self._waits < MAX_WAITS:  # nobody to ask yet: wait for the sender's first SSRC
            self._waits += 1
            self.deferred += 1
            self._timer = self._loop.call_later(WAIT_INTERVAL, self._on_wait)

    def _on_wait(self) -> None:
        self._timer = None
        if not self.pending and self._still_wanted():
            self._send_now()

    def _on_timeout(self) -> None:
        self._timer = None
        if not self.pending:
            return
        wanted = self._asked_again or self._still_wanted()
        if not wanted or self._retries >= MAX_RETRIES:
            self.pending = False
            return
        self._retries += 1
        self._send_now()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
