"""Run in a subprocess by the tests: make a SendRing, send through it, print JSON.

Usage: python child_send.py [--seccomp-deny-io-uring] [--rings N] [--mode MODE]
"""

import argparse
import ctypes
import json
import logging
import socket
import struct
import sys


def deny_io_uring_setup() -> None:
    """Install a seccomp filter that fails io_uring_setup(2) with EPERM, as a container
    runtime's default profile does."""
    nr_io_uring_setup = 425  # same number on every architecture (unified syscall table)
    seccomp_ret_errno, seccomp_ret_allow, eperm = 0x00050000, 0x7FFF0000, 1
    insns = [
        (0x20, 0, 0, 0),  # ld [nr]
        (0x15, 0, 1, nr_io_uring_setup),  # jeq nr, deny, allow
        (0x06, 0, 0, seccomp_ret_errno | eperm),
        (0x06, 0, 0, seccomp_ret_allow),
    ]
    code = b"".join(struct.pack("HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(code)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(insns), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seccomp-deny-io-uring", action="store_true")
    ap.add_argument("--rings", type=int, default=1)
    ap.add_argument("--mode", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.seccomp_deny_io_uring:
        deny_io_uring_setup()
    from relay.uring import SendModeUnavailableError, SendRing

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    results = []
    # Several rings one after another: the memlock budget of a closed ring comes back late.
    for _ in range(args.rings):
        try:
            ring = SendRing(mode=args.mode)
        except SendModeUnavailableError as exc:
            results.append({"error": type(exc).__name__, "message": str(exc), "mode": exc.mode,
                            "errno": exc.errno})
            continue
        sent = [i.to_bytes(4, "big") * 50 for i in range(100)]
        for data in sent:
            ring.send(tx.fileno(), data, rx.getsockname())
        ring.flush()
        got = [rx.recv(2000) for _ in sent]
        ring.close()
        st = ring.stats()
        results.append({
            "mode": ring.mode,
            "zero_copy_enabled": ring.zero_copy_enabled,
            "registration_errno": ring.registration_errno,
            "ring_errno": ring.ring_errno,
            "delivered_exactly": got == sent,
            "leaked": st["leakedSlots"],
            "fallbacks": st["fallbacks"],
        })
    print(json.dumps(results))


if __name__ == "__main__":
    main()
