"""Fuzz targets for STUN as relay handles it: aioice's message parser behind relay's guards
(IceLiteAgent._parse, webrtc_server.stun_local_username_fragment), and the ICE-lite agent's
request handling (relay/transport/ice_lite.py).

A fuzzer cannot forge MESSAGE-INTEGRITY, so the agent target can also sign what it is given:
an operation carries a STUN header and attributes, and the target appends a valid (or a
deliberately wrong) MESSAGE-INTEGRITY and FINGERPRINT. That lets the fuzzer reach the
checks that come after authentication (role conflicts, USE-CANDIDATE, the state machine).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
from dataclasses import asdict

from aioice import stun

from relay.transport.ice_lite import STATES, IceLiteAgent
from relay.transport.webrtc_server import stun_local_username_fragment

from .fuzz_support import ByteReader, check, expect

LOCAL_UFRAG = "fuzzLocalUfrag00"
LOCAL_PASSWORD = "fuzzLocalPasswordThirtyTwoChars0"
REMOTE_UFRAG = "remoteUfrag"
WRONG_PASSWORD = "not-the-password-of-this-agent!!"
TUPLES = [("127.0.0.1", 5000, "udp"), ("127.0.0.1", 5001, "udp"), ("::1", 5002, "udp"),
          ("127.0.0.1", 5003, "tcp")]
MAX_OPS = 16
OUTCOMES = ("malformed", "ignored", "bad_requests", "auth_failures", "role_conflicts",
            "valid_requests")

_MI = struct.Struct("!HH20s")
_FINGERPRINT = struct.Struct("!HHI")


def sign(body: bytes, key: bytes) -> bytes:
    """`body` (a STUN header and attributes) with the magic cookie, a correct length, then
    MESSAGE-INTEGRITY under `key` and FINGERPRINT (RFC 8489 14.5, 14.7)."""
    header = bytearray(body[:20].ljust(20, b"\x00"))
    attributes = body[20:]
    attributes += bytes(-len(attributes) % 4)
    header[4:8] = struct.pack("!I", stun.COOKIE)
    header[2:4] = struct.pack("!H", len(attributes) + _MI.size)
    integrity = hmac.new(key, bytes(header) + attributes, hashlib.sha1).digest()
    header[2:4] = struct.pack("!H", len(attributes) + _MI.size + _FINGERPRINT.size)
    message = bytes(header) + attributes + _MI.pack(0x0008, 20, integrity)
    crc = binascii.crc32(message) ^ stun.FINGERPRINT_XOR
    return message + _FINGERPRINT.pack(0x8028, 4, crc)


def fuzz_stun_parse(data: bytes) -> None:
    """Relay's two entry points into aioice's parser never raise, and agree."""
    message = expect(lambda: IceLiteAgent._parse(data), (), "IceLiteAgent._parse")
    ufrag = expect(lambda: stun_local_username_fragment(data), (),
                   "stun_local_username_fragment")
    check(message is None or isinstance(message, stun.Message), "_parse returned a non-message")
    if message is None:
        check(ufrag is None, "a ufrag from a message the agent cannot parse")
        return
    username = message.attributes.get("USERNAME")
    check(username is None or isinstance(username, str), "USERNAME is not a string")
    local, colon, _ = (username or "").partition(":")
    check(ufrag == (local if colon else None), f"ufrag {ufrag!r} for USERNAME {username!r}")
    check(isinstance(message.check_message_integrity(LOCAL_PASSWORD.encode()), bool),
          "check_message_integrity did not answer a bool")


class _Agent:
    """An agent with a fake clock, and the passwords it may sign with."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.restarts = 0
        self.passwords = [LOCAL_PASSWORD]
        self.ufrags = [LOCAL_UFRAG]
        self.agent = IceLiteAgent(username_fragment=LOCAL_UFRAG, password=LOCAL_PASSWORD,
                                  clock=lambda: self.now)

    def restart(self) -> None:
        self.restarts += 1
        ufrag, password = f"fuzzLocalUfrag{self.restarts:02d}", f"{LOCAL_PASSWORD[:-2]}" \
            f"{self.restarts:02d}"
        self.agent.restart(username_fragment=ufrag, password=password)
        self.ufrags.append(ufrag)
        self.passwords.append(password)

    def check_state(self) -> None:
        agent = self.agent
        check(agent.state in STATES, f"unknown state {agent.state}")
        selected = agent.selected_tuple
        check(selected is None or agent.is_validated(selected), "selected tuple not validated")
        check((selected is not None) == (agent.state in ("connected", "completed")),
              f"state {agent.state} with selected tuple {selected}")
        check(len(agent.validated_tuples) <= len(TUPLES), "more validated tuples than exist")


def fuzz_stun_ice_lite(data: bytes) -> None:
    """A program of STUN datagrams (raw or signed), ICE restarts and clock jumps for one
    agent. Every datagram is counted exactly once by outcome; answers are well-formed STUN
    for the same transaction; the state machine's invariants hold throughout."""
    r = ByteReader(data)
    harness = _Agent()
    agent = harness.agent
    for _ in range(MAX_OPS):
        if r.exhausted:
            break
        op = r.u8()
        kind = op & 0x07
        tuple_ = TUPLES[(op >> 3) % len(TUPLES)]
        if kind == 6:  # time passes: consent may expire
            harness.now += r.u8() / 4
            expect(lambda: agent.poll(), (), "IceLiteAgent.poll")
            harness.check_state()
            continue
        if kind == 7:
            harness.restart()
            continue
        body = r.chunk(r.u16() % 1024)
        if kind <= 1:
            message = body
        else:
            keys = [harness.passwords[-1], harness.passwords[-2] if len(harness.passwords) > 1
                    else WRONG_PASSWORD, WRONG_PASSWORD, harness.passwords[0]]
            message = sign(body, keys[kind - 2].encode())
        before = asdict(agent.stats)
        response = expect(lambda m=message, t=tuple_: agent.handle_stun(m, t), (),
                          "IceLiteAgent.handle_stun")
        after = asdict(agent.stats)
        grown = [k for k in OUTCOMES if after[k] != before[k]]
        check(after["received"] == before["received"] + 1 and len(grown) == 1
              and after[grown[0]] == before[grown[0]] + 1,
              f"datagram not counted exactly once: {before} -> {after}")
        _check_response(message, response, grown[0], tuple_, harness.passwords)
        ufrag = expect(lambda m=message: stun_local_username_fragment(m), (),
                       "stun_local_username_fragment")
        if grown[0] in ("valid_requests", "role_conflicts"):
            check(ufrag in harness.ufrags, f"authenticated request for ufrag {ufrag!r}")
        harness.check_state()


def _check_response(message: bytes, response: bytes | None, outcome: str,
                    tuple_: tuple[str, int, str], passwords: list[str]) -> None:
    if outcome not in ("bad_requests", "role_conflicts", "valid_requests"):
        check(response is None, f"answered a datagram counted as {outcome}")
        return
    check(isinstance(response, bytes), f"no answer to a request counted as {outcome}")
    assert response is not None
    parsed = expect(lambda: stun.parse_message(response), (), "parsing relay's own answer")
    check(parsed.transaction_id == message[8:20], "answer for another transaction")
    check("FINGERPRINT" in parsed.attributes, "answer without FINGERPRINT")
    if outcome == "bad_requests":
        check(parsed.message_class == stun.Class.ERROR and parsed.error_code == 400,
              "a bad request not answered 400")
        return
    check(any(parsed.check_message_integrity(p.encode()) for p in passwords),
          "an authenticated answer whose MESSAGE-INTEGRITY does not verify")
    if outcome == "role_conflicts":
        check(parsed.message_class == stun.Class.ERROR and parsed.error_code == 487,
              "a role conflict not answered 487")
        return
    check(parsed.message_class == stun.Class.RESPONSE
          and parsed.message_method == stun.Method.BINDING, "not a Binding success response")
    check(parsed.attributes.get("XOR-MAPPED-ADDRESS") == (tuple_[0], tuple_[1]),
          "XOR-MAPPED-ADDRESS is not the request's source")


def _request(attributes: dict, method: stun.Method = stun.Method.BINDING,
             message_class: stun.Class = stun.Class.REQUEST) -> bytes:
    """A message's header and attributes, without MESSAGE-INTEGRITY and FINGERPRINT."""
    return bytes(stun.Message(message_method=method, message_class=message_class,
                              transaction_id=b"fuzz-txn-001", attributes=dict(attributes)))


def _op(op: int, body: bytes = b"") -> bytes:
    return bytes([op]) + struct.pack("!H", len(body)) + body


def seeds_stun_ice_lite() -> list[bytes]:
    check_attrs = {"USERNAME": f"{LOCAL_UFRAG}:{REMOTE_UFRAG}", "PRIORITY": 1853817087,
                   "ICE-CONTROLLING": 0x1122334455667788}
    nominate = {**check_attrs, "USE-CANDIDATE": None}
    conflict = {"USERNAME": f"{LOCAL_UFRAG}:{REMOTE_UFRAG}", "PRIORITY": 1,
                "ICE-CONTROLLED": 5}
    good = _request(check_attrs)
    signed_good = sign(good, LOCAL_PASSWORD.encode())
    return [
        _op(2, good),  # a valid check, signed by the target
        _op(2, good) + _op(2 | 8, _request(nominate)) + bytes([6, 200]) + bytes([6, 200]),
        _op(2, _request(nominate)) + bytes([7]) + _op(3, good) + _op(2, good),
        _op(2, _request(conflict)) + _op(4, good),
        _op(0, signed_good),  # the same, raw: mutations of a signed message
        _op(2, _request({"PRIORITY": 1})),  # no USERNAME: 400
        _op(2, _request(check_attrs, stun.Method.ALLOCATE)),
        _op(2, _request({}, message_class=stun.Class.INDICATION)),
    ]


def seeds_stun_parse() -> list[bytes]:
    request = _request({"USERNAME": f"{LOCAL_UFRAG}:{REMOTE_UFRAG}", "PRIORITY": 7,
                        "ICE-CONTROLLING": 1, "USE-CANDIDATE": None})
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, b"fuzz-txn-002",
                            {"XOR-MAPPED-ADDRESS": ("10.0.0.1", 4000)})
    response.add_message_integrity(b"key")
    error = stun.Message(stun.Method.BINDING, stun.Class.ERROR, b"fuzz-txn-003",
                         {"ERROR-CODE": (487, "Role Conflict")})
    error.add_fingerprint()
    return [sign(request, LOCAL_PASSWORD.encode()), request, bytes(response), bytes(error)]
