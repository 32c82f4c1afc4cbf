"""SendRing: batched UDP sends from a preregistered ring of slots, through io_uring.

Tiers, decided once at construction and reported in ``stats()``:

* ``"zerocopy"``: the slot region is registered with the kernel as one fixed buffer and
  every send is an ``IORING_OP_SEND_ZC`` from it. A slot comes back only on its
  notification CQE (``IORING_CQE_F_NOTIF``), never on the first CQE.
* ``"copy"``: ``IORING_OP_SEND`` from the same slots (the kernel copies). A slot comes back
  on its one CQE.
* ``"socket"``: io_uring is unavailable; the same slots are sent with one ``sendmmsg`` per
  socket per flush and released at once.

How the registration errno decides (``registration_errno``; ``None`` = not attempted,
because the mode was forced to "copy" or "socket" or there is no ring):

==========  ======================================================================
errno       decision
==========  ======================================================================
0           zero-copy, once a one-datagram self-test of SEND_ZC passed
ENOMEM      copy sends; warning naming RLIMIT_MEMLOCK, its limits, the bytes needed
            and how to raise it. Retried first with a short backoff, because a
            ring of the same user that was just torn down still holds its budget.
EPERM       copy sends; warning (an LSM or io_uring restriction forbids pinning)
EFAULT      copy sends; warning (the region could not be pinned)
EINVAL      copy sends; warning (the kernel rejected the region: size or kernel age)
EOVERFLOW   copy sends; warning (the region is larger than the kernel allows)
EBUSY       copy sends; warning (buffers already registered on this ring; a bug)
any other   copy sends; warning with the errno name; never silent
==========  ======================================================================

(These are the decisions for ``"auto"``; an explicit ``"zerocopy"`` raises instead.)

Creating the ring itself failing (ENOSYS: no io_uring; EPERM: seccomp or
``kernel.io_uring_disabled``; ENOMEM: the ring's queues count against RLIMIT_MEMLOCK, about
400 KiB for 4096 slots; anything else) lands in ``"socket"`` with a warning (for ENOMEM one
naming RLIMIT_MEMLOCK, its limits and how to raise it). A kernel whose ``IORING_OP_SEND``
cannot take a destination address (before 6.1) fails the copy self-test and also lands in
``"socket"``.

``"auto"`` then chooses by what the kernel reports. With zero-copy chosen and usage reports
accepted (``IORING_SEND_ZC_REPORT_USAGE``, Linux 6.2; ``zcUsageReporting``), every
notification says whether the kernel copied the datagram anyway (loopback always does; so
does a device without scatter-gather). For each socket, a window of its first
``RC_AUTO_WINDOW`` (32) zero-copy sends of which the kernel copied at least 3/4 switches that
socket to copy sends, the cheaper send when the kernel copies (one CQE instead of two, no
pinned pages); a mostly zero-copied window starts the next one. Zero-copy sends in flight at
the switch complete as they are (their slots come back on their notifications). The
switch is logged once, at its first occurrence, and reported in ``stats()``:
``autoCopyFds`` (sockets on copy sends now), ``autoSwitches``, ``autoSwitchReason``, and
``zcSends`` / ``copySends`` (sends queued each way). ``mode`` and ``zero_copy_enabled``
keep meaning what start-up decided. A socket never switches back; a socket number given to
``forget_fd`` learns afresh. An explicit ``"zerocopy"`` never switches, and without usage
reports (before 6.2) ``"auto"`` keeps zero-copy sends (``autoCopy`` false).

Only ``"auto"`` degrades. An explicit ``"zerocopy"`` or ``"copy"`` that cannot be had
(any of the failures above that would lower the tier) raises ``SendModeUnavailableError``
naming the mode, the errno and, for ENOMEM, how to raise RLIMIT_MEMLOCK: configuration is
honoured or refused, never silently replaced.

Exhaustion policy: when no slot is free, ``send()`` reaps completions, then submits what is
queued and reaps again; if still none is free the datagram is dropped, counted in
``exhaustion_drops``, and ``send()`` returns False. It never blocks and never grows.

A full socket costs only its own packets. Every io_uring send carries ``MSG_DONTWAIT``
(for SEND and SEND_ZC the kernel then sets REQ_F_NOWAIT: a send that would block completes
at once with -EAGAIN instead of waiting in the kernel, holding its slot, for the socket to
drain); it is counted as ``eagainDrops`` of that fd, as sendmmsg's EAGAIN is in socket
mode. And no fd may hold more than ``min(fd_cap, slots free)`` slots that the kernel has
not released (default ``fd_cap`` = slots / 8 = 512 of 4096): its next send is dropped,
counted as ``capDrops`` of that fd, and returns False. The cap is what bounds zero-copy
slots, which stay held while their datagrams wait in a qdisc or a device queue; the socket
buffer bounds them only loosely (the worker's 8 MiB one holds ~1,600, each charged a page).
"slots free" keeps any number of congested fds from taking the last slots. Slots queued since the last ``flush()`` do not count, so a fan-out of many
datagrams to one shared socket in one event-loop turn is not capped. Per-fd counters:
``fd_stats(fd)``; ``forget_fd(fd)`` just before the socket closes (every transport does).
The table is bounded (2 x slots fds; idle fds without counts are swept first, then idle ones
with counts, counted in ``fdTableEvictions``).

One submit per event-loop turn: ``flush_soon()`` (what transports call after draining a
socket) flushes once, from a ``loop.call_soon`` callback, for every socket read in that turn,
so many small transports batch as well as one big fan-out. Once ``SUBMIT_BATCH`` (32)
datagrams wait it flushes at once instead: batches past 32 save nothing more, and a long
turn (a backlog on many sockets, each drained up to its budget) must not hold every
datagram of the turn until its end. Before ``attach(loop)`` it flushes at once.

``close()`` drains: it submits what is queued, waits (bounded) for every slot's completion,
cancels stragglers once and waits for their CQEs; only then is the region unregistered and
unmapped. If the kernel still holds slots at the deadline, the region is deliberately leaked
(``leaked_slots`` in stats) rather than freed under the kernel.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import logging
import os
import resource
import time
from array import array
from collections.abc import Sequence
from typing import Any

from relay.uring._ring import ffi, lib
from worker_proto.errors import SendModeUnavailableError

log = logging.getLogger("relay.uring")

MODES = ("zerocopy", "copy", "socket")
_ADDR_CACHE_MAX = 65536
_FD_TOP = 16  # fds with the most drops listed in stats()["fdDrops"]
# flush_soon() submits at once from this many queued datagrams: 16-32 sends per submit save
# ~25 % of the kernel's per-datagram cost, more buy nothing (docs/performance.md).
SUBMIT_BATCH = 32

_REGISTRATION_DECISIONS = {
    errno_mod.EPERM: "an LSM or an io_uring restriction forbids pinning the buffers",
    errno_mod.EFAULT: "the kernel could not pin the slot region",
    errno_mod.EINVAL: "the kernel rejected the region (size, or a kernel too old)",
    errno_mod.EOVERFLOW: "the region is larger than the kernel allows for one buffer",
    errno_mod.EBUSY: "buffers are already registered on this ring",
}


class SendRingClosed(RuntimeError):
    """A send on a ring that was closed."""


def _errno_name(err: int) -> str:
    return errno_mod.errorcode.get(err, f"errno {err}")


def _resolve_mode(mode: str | None) -> str:
    requested = mode if mode is not None else os.environ.get("RELAY_SEND_MODE", "auto")
    requested = requested.strip().lower() or "auto"
    if requested not in ("auto", *MODES):
        # A misspelt mode is an error, not a silent "auto".
        raise ValueError(f"send mode must be one of auto, zerocopy, copy, socket; got {requested!r}")
    return requested


class SendRing:
    """A bounded ring of send slots; see the module documentation for the tiers."""

    def __init__(
        self,
        slots: int = 4096,
        slot_size: int = 1500,
        mode: str | None = None,
        *,
        sq_entries: int = 4096,
        register_attempts: int = 5,
        drain_timeout: float = 2.0,
        fd_cap: int | None = None,
    ) -> None:
        if not isinstance(slots, int) or not 1 <= slots <= 65536:
            raise ValueError(f"slots must be an int in 1..65536, got {slots!r}")
        if not isinstance(slot_size, int) or not 64 <= slot_size <= 65507:
            raise ValueError(f"slot_size must be an int in 64..65507, got {slot_size!r}")
        if not isinstance(sq_entries, int) or not 1 <= sq_entries <= 32768:
            raise ValueError(f"sq_entries must be an int in 1..32768, got {sq_entries!r}")
        if fd_cap is not None and (not isinstance(fd_cap, int) or not 1 <= fd_cap <= slots):
            raise ValueError(f"fd_cap must be an int in 1..slots, got {fd_cap!r}")
        self.requested_mode = _resolve_mode(mode)
        self.slots = slots
        self.slot_size = slot_size
        self._sq_entries = sq_entries
        self.drain_timeout = drain_timeout
        self.registration_errno: int | None = None
        self.ring_errno: int | None = None
        self.zero_copy_enabled = False
        self.zc_usage_reporting = False
        self.fallbacks = 0
        self.fallback_reasons: list[str] = []
        self.leaked_slots = 0
        self._closed = False
        self._final_stats: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # watching the eventfd
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # flush_soon's loop
        self._flush_scheduled = False
        self._efd = -1
        self.auto_copy = False  # "auto" may switch sockets to copy sends (see the module doc)
        self.auto_switch_reason: str | None = None
        self._auto_logged = False
        self._addrs: dict[Any, Any] = {}
        self._cstats = ffi.new("struct rc_stats *")
        self._cfd = ffi.new("struct rc_fd_stats *")
        self._r = self._create(slots, slot_size, sq_entries)
        try:
            self._decide(register_attempts)
        except SendModeUnavailableError:
            lib.rc_destroy(self._r)  # nothing was sent: no slot is in flight
            self._r = ffi.NULL
            self._closed = True
            raise
        self.fd_cap = fd_cap if fd_cap is not None else max(1, self.slots // 8)
        lib.rc_set_fd_cap(self._r, self.fd_cap)
        # Bound once: the hot path does no attribute lookups beyond these.
        self._rc_send = lib.rc_send
        self._rc_queued = lib.rc_queued
        log.info("send ring: mode=%s zero_copy=%s slots=%d", self.mode, self.zero_copy_enabled, slots)

    # -- construction -------------------------------------------------------------------

    def _create(self, slots: int, slot_size: int, sq_entries: int) -> Any:
        err = ffi.new("int *")
        stage = ffi.new("int *")
        use_uring = self.requested_mode != "socket"
        r = lib.rc_create(slots, slot_size, int(use_uring), sq_entries, err, stage)
        if r == ffi.NULL and stage[0] == 2:
            self.ring_errno = err[0]
            self._ring_failed(err[0], slots, slot_size, sq_entries)
            r = lib.rc_create(slots, slot_size, 0, sq_entries, err, stage)
        if r == ffi.NULL:
            # The slot memory itself: a start-up resource failure degrades to fewer slots.
            n = slots
            while r == ffi.NULL and n > 64:
                n //= 2
                r = lib.rc_create(n, slot_size, int(use_uring and self.ring_errno is None),
                                  sq_entries, err, stage)
            if r == ffi.NULL:
                raise MemoryError(f"send ring: cannot allocate slot memory ({_errno_name(err[0])})")
            self._fallback(f"slot memory for {slots} slots could not be allocated; using {n}")
            self.slots = n
        self.mode = "socket" if self.requested_mode == "socket" or self.ring_errno is not None else "copy"
        return r

    def _ring_failed(self, err: int, slots: int, slot_size: int, sq_entries: int) -> None:
        """io_uring_setup failed: an explicit mode is refused; auto warns and goes on."""
        what = f"io_uring could not be created ({_errno_name(err)}: {os.strerror(err)})"
        if err == errno_mod.ENOMEM:
            ring = _ring_bytes(slots, sq_entries)
            why = (f": its submission and completion queues (about {-(-ring // 1024)} KiB for "
                   f"{slots} slots) count against {_memlock_limits()}, which is too low")
            fix = _memlock_fix(ring + slots * slot_size)
        elif err == errno_mod.ENOSYS:
            why, fix = ": the kernel has no io_uring", ""
        elif err == errno_mod.EPERM:
            why, fix = ": io_uring is forbidden here (kernel.io_uring_disabled or a seccomp filter)", ""
        else:
            why, fix = "", ""
        self._lower_tier(err, f"{what}{why}", "socket", fix)

    def _lower_tier(self, err: int | None, what: str, tier: str, fix: str = "") -> None:
        """The requested tier cannot be had (``what``): refuse an explicit mode, or let
        "auto" go on with ``tier`` and a warning."""
        if self.requested_mode != "auto":
            raise SendModeUnavailableError(
                f"send mode {self.requested_mode!r} is not available: {what}"
                f"{'. ' + fix if fix else ''}. Ask for send_mode='auto' to fall back to the best "
                "available tier instead", mode=self.requested_mode, errno=err)
        sends = "plain socket sends" if tier == "socket" else "copy sends"
        self._fallback(f"{what}; sends go on as {sends}{'. ' + fix if fix else ''}")

    def _fallback(self, reason: str) -> None:
        self.fallbacks += 1
        self.fallback_reasons.append(reason)
        log.warning("send ring: %s", reason)

    def _decide(self, register_attempts: int) -> None:
        if self.mode == "socket":
            lib.rc_set_mode(self._r, lib.RC_MODE_SOCKET, 0)
            return
        zc_report = ffi.new("int *")
        # Copy sends are the floor of the io_uring tiers: check them on this kernel first.
        test = lib.rc_self_test(self._r, 0, zc_report) if lib.rc_opcode_supported(self._r, 0) == 1 \
            else -errno_mod.EOPNOTSUPP
        if test != 0:
            self._lower_tier(-test, "io_uring cannot send datagrams to an address on this kernel "
                             f"({_errno_name(-test)}; needs Linux 6.1)", "socket")
            self._destroy_and_recreate_socket()
            return
        lib.rc_set_mode(self._r, lib.RC_MODE_COPY, 0)
        self.mode = "copy"
        if self.requested_mode == "copy":
            return
        ret = self._register(register_attempts)
        self.registration_errno = -ret
        if ret != 0:
            self._registration_failed(-ret)
            return
        if lib.rc_opcode_supported(self._r, 1) != 1:
            self._lower_tier(errno_mod.EOPNOTSUPP, "buffers registered, but this kernel has no "
                             "IORING_OP_SEND_ZC (needs Linux 6.0)", "copy")
            return
        test = lib.rc_self_test(self._r, 1, zc_report)
        if test != 0:
            self._lower_tier(-test, f"zero-copy self-test failed ({_errno_name(-test)})", "copy")
            return
        lib.rc_set_mode(self._r, lib.RC_MODE_ZEROCOPY, zc_report[0])
        self.mode = "zerocopy"
        self.zero_copy_enabled = True
        self.zc_usage_reporting = bool(zc_report[0])
        if self.requested_mode == "auto":
            # auto chooses per socket by what the kernel reports; it cannot without reports.
            lib.rc_set_auto_copy(self._r, 1)
            self.auto_copy = self.zc_usage_reporting

    def _register(self, attempts: int) -> int:
        delay = 0.01
        ret = lib.rc_register(self._r)
        for _ in range(max(0, attempts - 1)):
            if ret != -errno_mod.ENOMEM:
                break
            # The memlock budget of a ring this user just closed is released 15-50 ms later.
            time.sleep(delay)
            delay *= 2
            ret = lib.rc_register(self._r)
        return ret

    def _registration_failed(self, err: int) -> None:
        region = self.slots * self.slot_size
        if err == errno_mod.ENOMEM:
            what = ("zero-copy disabled: io_uring_register_buffers failed with ENOMEM: "
                    f"{_memlock_limits()} is below the {region} bytes ({-(-region // 1024)} KiB) "
                    f"the {self.slots} x {self.slot_size}-byte send slots need")
            fix = ("To enable zero-copy raise the limit: "
                   + _memlock_fix(region + _ring_bytes(self.slots, self._sq_entries)))
        else:
            why = _REGISTRATION_DECISIONS.get(err, "unexpected")
            what = (f"zero-copy disabled: io_uring_register_buffers failed with {_errno_name(err)} "
                    f"({os.strerror(err)}; {why})")
            fix = ""
        self._lower_tier(err, what, "copy", fix)

    def _destroy_and_recreate_socket(self) -> None:
        lib.rc_destroy(self._r)
        err = ffi.new("int *")
        stage = ffi.new("int *")
        self._r = lib.rc_create(self.slots, self.slot_size, 0, 0, err, stage)
        if self._r == ffi.NULL:
            raise MemoryError(f"send ring: cannot allocate slot memory ({_errno_name(err[0])})")
        lib.rc_set_mode(self._r, lib.RC_MODE_SOCKET, 0)
        self.mode = "socket"

    # -- the packet path ----------------------------------------------------------------

    @property
    def core(self) -> Any:
        """The C ring (`struct rc_ring *`, NULL once closed) for the C fan-out core
        (relay.uring.fanout_core), which queues with rc_send directly."""
        return self._r

    def address(self, addr: tuple[str, int] | None) -> Any:
        """The C destination for (ip, port), cached; None for a connected socket."""
        if addr is None:
            return ffi.NULL
        dst = self._addrs.get(addr)
        if dst is None:
            try:
                ip, port = addr[0], addr[1]
                encoded = ip.encode("ascii")
            except (TypeError, IndexError, AttributeError, UnicodeEncodeError, KeyError):
                raise ValueError(f"address must be (ip, port), got {addr!r}") from None
            buf = ffi.new("char[]", lib.RC_ADDR_SIZE)
            if not isinstance(port, int) or lib.rc_make_sockaddr(encoded, port, buf) < 0:
                raise ValueError(f"not an IP address and port: {addr!r}")
            # bytes, so send() passes it to C without a conversion and send_many joins it.
            dst = ffi.buffer(buf)[:]
            if len(self._addrs) >= _ADDR_CACHE_MAX:
                self._addrs.clear()  # bounded: addresses come from the network
            self._addrs[addr] = dst
        return dst

    def send(self, fd: int, data: bytes | bytearray | memoryview, addr: tuple[str, int] | None) -> bool:
        """Copy ``data`` into a free slot and queue it for ``addr`` on UDP socket ``fd``.

        Returns False when the datagram was dropped because every slot is in flight
        (counted in ``exhaustionDrops``) or because ``fd`` already holds its share of slots
        (counted in that fd's ``capDrops``). Raises ValueError for a datagram larger than
        ``slot_size`` or a bad fd or address, SendRingClosed after ``close()``.
        """
        dst = self._addrs.get(addr)
        if dst is None:
            dst = self.address(addr)
        if type(data) is not bytes:
            data = ffi.from_buffer(data)  # bytearray / memoryview: no copy, no exception path
        rc = self._rc_send(self._r, fd, data, len(data), dst)
        if rc == 0:
            return True
        return self._send_failed(rc, fd, data)

    def send_many(
        self,
        fd: int | Sequence[int],
        datagrams: Sequence[bytes],
        addr: tuple[str, int] | None | Sequence[tuple[str, int]],
    ) -> int:
        """Queue many datagrams with one C call. ``fd`` and ``addr`` are one value for all
        or a sequence as long as ``datagrams``. Returns how many were queued (the rest were
        dropped because the ring was full, counted). A datagram over ``slot_size`` or a bad
        fd raises ValueError and queues none of the batch."""
        if self._closed:
            raise SendRingClosed("send_many on a closed SendRing")
        n = len(datagrams)
        if n == 0:
            return 0
        buf = b"".join(datagrams)
        lens = array("I", map(len, datagrams))
        if isinstance(fd, int):
            fds = ffi.NULL
        else:
            if len(fd) != n:
                raise ValueError("send_many: fd sequence and datagrams differ in length")
            fds = ffi.from_buffer("int[]", array("i", fd))
            fd = 0
        if addr is None:
            dsts, stride = ffi.NULL, 0
        elif isinstance(addr, tuple) and len(addr) == 2 and isinstance(addr[0], str):
            dsts, stride = self._addrs.get(addr) or self.address(addr), 0
        else:
            if len(addr) != n:
                raise ValueError("send_many: addr sequence and datagrams differ in length")
            get = self._addrs.get
            dsts = b"".join([get(a) or self.address(a) for a in addr])
            stride = lib.RC_ADDR_SIZE
        rc = lib.rc_send_many(self._r, buf, ffi.from_buffer("unsigned[]", lens), n, fd, fds,
                              dsts, stride)
        if rc >= 0:
            return rc
        if rc == lib.RC_TOO_BIG:
            raise ValueError(f"a datagram in the batch exceeds slot_size {self.slot_size}")
        return self._send_failed(rc, -1, buf)

    def _send_failed(self, rc: int, fd: int, data: Any) -> bool:
        if rc == lib.RC_DROPPED_FULL or rc == lib.RC_DROPPED_FD_CAP:
            return False
        if rc == lib.RC_TOO_BIG:
            raise ValueError(f"datagram of {len(data)} bytes exceeds slot_size {self.slot_size}")
        if rc == lib.RC_BAD_FD:
            raise ValueError(f"bad socket fd {fd!r}")
        if rc == lib.RC_CLOSED:
            raise SendRingClosed("send on a closed SendRing")
        raise ValueError(f"send rejected ({rc})")

    def flush(self, reap: bool = True) -> int:
        """Submit everything queued with one io_uring_enter (one sendmmsg per socket in
        socket mode). Returns the datagrams handed to the kernel; then reaps what already
        completed unless ``reap`` is False."""
        if self._closed:
            return 0
        n = lib.rc_flush(self._r)
        if reap:
            lib.rc_poll(self._r)
            if self.auto_copy and not self._auto_logged:
                self._check_auto_switch()
        return n

    def flush_soon(self) -> None:
        """Flush once at the end of this event-loop turn, however many sockets queued sends
        in it (the first call schedules it); at once when ``SUBMIT_BATCH`` datagrams wait,
        or before ``attach()``."""
        loop = self._flush_loop
        if loop is None or self._rc_queued(self._r) >= SUBMIT_BATCH:
            self.flush()  # (a flush already scheduled then finds less or nothing to do)
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def poll(self, max_completions: int | None = None) -> int:
        """Reap ready completions without blocking, releasing their slots."""
        if self._closed:
            return 0
        if max_completions is None:
            return lib.rc_poll(self._r)
        return lib.rc_poll_max(self._r, max(1, max_completions))

    def completions_ready(self) -> int:
        """Completions posted by the kernel and not yet reaped."""
        return 0 if self._closed else lib.rc_cq_ready(self._r)

    # -- event loop ---------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Reap completions from ``loop`` when the kernel posts them asynchronously
        (an eventfd registered with the ring), instead of busy-polling."""
        if self._closed:
            raise SendRingClosed("attach on a closed SendRing")
        loop = loop or asyncio.get_running_loop()
        self._flush_loop = loop
        if self._loop is not None or self.mode == "socket":
            return  # socket sends complete inside flush(): nothing to watch
        efd = lib.rc_eventfd(self._r)
        if efd < 0:
            raise OSError(-efd, f"send ring eventfd: {os.strerror(-efd)}")
        self._efd = efd
        loop.add_reader(efd, self._on_eventfd)
        self._loop = loop

    def detach(self) -> None:
        if self._flush_scheduled:
            self._scheduled_flush()  # what was queued goes now, not never
        self._flush_loop = None
        if self._loop is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._efd)
            self._loop = None

    def _on_eventfd(self) -> None:
        try:
            os.read(self._efd, 8)
        except BlockingIOError:
            pass
        self.poll()
        if self.auto_copy and not self._auto_logged:
            self._check_auto_switch()

    def _check_auto_switch(self) -> None:
        """Log the first time "auto" switched a socket to copy sends (once)."""
        if lib.rc_auto_switches(self._r) == 0:
            return
        self._auto_logged = True
        st = self._cstats
        lib.rc_get_stats(self._r, st)
        log.info("send ring: %s", self._auto_reason(st))

    def _auto_reason(self, st: Any) -> str | None:
        """Why "auto" switched sockets to copy sends (None until it did), from rc stats."""
        if st.auto_switches == 0:
            return None
        if self.auto_switch_reason is None:
            window = lib.RC_AUTO_WINDOW
            self.auto_switch_reason = (
                f"auto: the kernel copied {st.first_switch_copied} of {window} zero-copy sends "
                f"on socket fd {st.first_switch_fd} (IORING_NOTIF_USAGE_ZC_COPIED: loopback, or "
                "a device without scatter-gather), so that socket sends by copy from now on, "
                "the cheaper send when the kernel copies anyway; so does every socket whose "
                f"window of {window} zero-copy sends is at least 3/4 copied (autoCopyFds)")
        return self.auto_switch_reason

    # -- per-socket accounting -----------------------------------------------------------

    def fd_stats(self, fd: int) -> dict[str, int]:
        """What the ring counted for socket ``fd``: ``eagainDrops`` (sends that found its
        buffer full), ``capDrops`` (sends refused because it held its share of slots),
        ``sendErrors`` (other failed sends), ``inFlight`` (its slots not yet released) and
        ``copySends`` (True once "auto" switched it to copy sends).
        Zeros for an fd the ring has no entry for (never sent on, or forgotten)."""
        out = self._cfd
        if self._closed or not isinstance(fd, int):
            return {"eagainDrops": 0, "capDrops": 0, "sendErrors": 0, "inFlight": 0,
                    "copySends": False}
        lib.rc_fd_stats(self._r, fd, out)
        return _fd_dict(out)

    def forget_fd(self, fd: int) -> None:
        """Socket ``fd`` is about to close (call it before ``close()``): drop its counters and
        auto decision, so the table stays bounded and a new socket given the same number
        starts from zero. What is queued for any socket is submitted first: the kernel takes
        its own reference to the socket at submit, so those sends still go out from it, and
        none can reach a new socket that reuses the number. Its sends still in flight keep
        the entry until the last completes (then it goes); their slots come back as usual."""
        if not self._closed and isinstance(fd, int):
            if self._rc_queued(self._r):
                self.flush(reap=False)
            lib.rc_forget_fd(self._r, fd)

    def _fd_top(self) -> dict[str, dict[str, int]]:
        top = ffi.new("struct rc_fd_stats[]", _FD_TOP)
        n = lib.rc_fd_top(self._r, top, _FD_TOP)
        return {str(top[i].fd): _fd_dict(top[i]) for i in range(n)}

    # -- stats and shutdown -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        if self._closed:
            return dict(self._final_stats or {})
        st = self._cstats
        lib.rc_get_stats(self._r, st)
        by_errno = {
            (_errno_name(i) if i else "other"): st.errors_by_errno[i]
            for i in range(lib.RC_MAX_ERRNO)
            if st.errors_by_errno[i]
        }
        submits = st.submits
        return {
            "mode": self.mode,
            "requestedMode": self.requested_mode,
            "zeroCopyEnabled": self.zero_copy_enabled,
            "registrationErrno": self.registration_errno,
            "ringErrno": self.ring_errno,
            "zcUsageReporting": self.zc_usage_reporting,
            "slotsTotal": st.slots_total,
            "slotSize": self.slot_size,
            "slotsFree": st.slots_free,
            "slotsInFlight": st.slots_in_flight,
            "slotsQueued": st.slots_queued,
            "sendsQueued": st.sends_queued,
            "bytesQueued": st.bytes_queued,
            "submits": submits,
            "sqesSubmitted": st.sqes_submitted,
            "sqesPerSubmit": round(st.sqes_submitted / submits, 2) if submits else 0.0,
            "completions": st.completions,
            "zcNotifications": st.zc_notifications,
            "zcCopied": st.zc_copied,
            "zcSends": st.zc_sends,
            "copySends": st.copy_sends,
            # "auto" switching sockets whose zero-copy sends the kernel copies anyway
            "autoCopy": self.auto_copy,
            "autoCopyFds": st.auto_copy_fds,
            "autoSwitches": st.auto_switches,
            "autoSwitchReason": self._auto_reason(st),
            "cqeErrors": st.cqe_errors,
            "cqeErrorsByErrno": by_errno,
            "exhaustionDrops": st.exhaustion_drops,
            "eagainDrops": st.eagain_drops,
            "capDrops": st.cap_drops,
            "fdCap": st.fd_cap,
            "fdTableEntries": st.fd_entries,
            "fdTableSize": st.fd_table_size,
            "fdTableEvictions": st.fd_evictions,
            # the fds with the most drops (at most 16), by fd number as a string
            "fdDrops": self._fd_top(),
            "socketSendCalls": st.socket_send_calls,
            "fallbacks": self.fallbacks,
            "fallbackReasons": list(self.fallback_reasons),
            "leakedSlots": self.leaked_slots,
            "closed": self._closed,
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Drain, then unregister and free. Safe to call twice."""
        if self._closed:
            return
        self.detach()
        timeout_ms = int(max(0.0, self.drain_timeout) * 1000)
        still_held = lib.rc_drain(self._r, timeout_ms)
        final = self.stats()
        self.leaked_slots = lib.rc_destroy(self._r)
        if still_held or self.leaked_slots:
            log.error(
                "send ring: %d slots still held by the kernel after %d ms; their memory is "
                "left mapped rather than freed under the kernel", self.leaked_slots, timeout_ms)
        final["leakedSlots"] = self.leaked_slots
        final["closed"] = True
        self._final_stats = final
        self._r = ffi.NULL
        self._closed = True
        self.send = self._send_closed  # type: ignore[method-assign]

    def _send_closed(self, fd: int, data: Any, addr: Any) -> bool:
        raise SendRingClosed("send on a closed SendRing")

    def __enter__(self) -> SendRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and getattr(self, "_r", ffi.NULL) != ffi.NULL:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass

    def __repr__(self) -> str:
        return f"<SendRing mode={self.mode} slots={self.slots} closed={self._closed}>"


def _limit(value: int) -> str:
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{value} bytes ({value // 1024} KiB)"


def _memlock_limits() -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return f"RLIMIT_MEMLOCK (soft {_limit(soft)}, hard {_limit(hard)})"


def _memlock_fix(need: int) -> str:
    kib = max(8192, -(-need // 1024) + 1024)
    return (f"Raise RLIMIT_MEMLOCK: `ulimit -l {kib}` in the shell that starts the worker "
            f"(above the hard limit only as root), LimitMEMLOCK={kib}K in its systemd unit, "
            "or memlock in /etc/security/limits.conf")


def _ring_bytes(slots: int, sq_entries: int) -> int:
    """About what io_uring_setup locks for rc_create's queues: 64-byte SQEs, 16-byte CQEs
    (twice the slots), the SQ index array and a page of headers each."""
    if sq_entries > slots:
        sq_entries = max(8, slots)
    sq = 1 << (max(1, sq_entries) - 1).bit_length()
    cq = 1 << (max(sq, slots * 2) - 1).bit_length()
    return sq * 64 + sq * 4 + cq * 16 + 2 * 4096


def _fd_dict(st: Any) -> dict[str, int]:
    return {"eagainDrops": st.eagain_drops, "capDrops": st.cap_drops,
            "sendErrors": st.send_errors, "inFlight": st.in_flight,
            "copySends": bool(st.copy_sends)}
