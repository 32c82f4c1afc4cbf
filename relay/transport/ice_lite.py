"""ICE-lite, controlled agent for one WebRTC transport (RFC 8445 §2.5, as mediasoup does it).

Sans-I/O: the transport hands every STUN datagram with the tuple it came from to
`handle_stun()` and sends the returned bytes (if any) back to that tuple. Time comes from an
injected clock; the transport calls `poll()` at `next_deadline()` to run consent freshness.

What is checked, in order (anything failing is counted in `stats`):
  1. a parseable STUN message (magic cookie, lengths, FINGERPRINT value if present) — else
     dropped silently;
  2. only Binding requests are answered: indications (keepalives) and responses are ignored;
     another method gets a 400;
  3. FINGERPRINT, USERNAME, MESSAGE-INTEGRITY and PRIORITY present — else 400;
  4. USERNAME is "<local ufrag>:<remote ufrag>" and MESSAGE-INTEGRITY verifies with our
     password — else NO answer: a peer without our credentials learns nothing (mediasoup
     answers 401 here; we deliberately stay silent);
  5. ICE-CONTROLLED in the request means the peer is controlled too: 487 Role Conflict
     (a lite agent is always controlled);
  6. success: Binding success response with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and
     FINGERPRINT; the tuple becomes validated.

State machine (mediasoup's IceServer): a valid check in "new"/"disconnected" selects its
tuple and moves to "connected", or to "completed" when it carries USE-CANDIDATE; in
"connected" a USE-CANDIDATE check selects its tuple and moves to "completed"; in "completed"
a USE-CANDIDATE check on another tuple switches the selected tuple. Consent freshness
(RFC 7675): a tuple without a valid check for `consent_timeout` seconds loses its
validation; when that is the selected tuple another validated tuple (the most recently
checked) takes over, or the state becomes "disconnected". After `restart()` the old
credentials stay valid until the first valid check that uses the new ones (the browser
keeps using the old ones until it has renegotiated).
"""

from __future__ import annotations

import logging
import secrets
import string
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioice import stun

logger = logging.getLogger(__name__)

# (remote ip, remote port, "udp" | "tcp"): a TCP connection is its own tuple.
IceTuple = tuple[str, int, str]

# RFC 8445 §5.3: ufrag ≥ 24 bits and password ≥ 128 bits of randomness, ice-chars only.
# Like mediasoup, 16 and 32 characters: well above the minimum (4 and 22 characters).
USERNAME_FRAGMENT_LENGTH = 16
PASSWORD_LENGTH = 32
CONSENT_TIMEOUT = 30.0

# RFC 8445 §5.1.2.2: recommended type preference of host candidates.
HOST_TYPE_PREFERENCE = 126

_ICE_CHARS = string.ascii_letters + string.digits
_COOKIE = struct.Struct("!I")

STATES = ("new", "connected", "completed", "disconnected", "closed")


def random_ice_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


def candidate_priority(type_preference: int, local_preference: int, component: int = 1) -> int:
    """RFC 8445 §5.1.2.1."""
    return (type_preference << 24) + (local_preference << 8) + (256 - component)


def host_candidate(
    address: str,
    port: int,
    protocol: str,
    *,
    local_preference: int = 65535,
    foundation: str | None = None,
) -> dict[str, Any]:
    """A host candidate in the shape mediasoup-client expects from its server.

    `local_preference` (0–65535) lets the transport order its candidates (prefer_udp /
    prefer_tcp); TCP candidates are passive (RFC 6544), the browser connects to us.
    """
    if protocol not in ("udp", "tcp"):
        raise ValueError(f"protocol must be 'udp' or 'tcp', not {protocol!r}")
    if not 0 <= local_preference <= 65535:
        raise ValueError("local_preference must be in 0..65535")
    candidate: dict[str, Any] = {
        "foundation": foundation or f"{protocol}candidate",
        "priority": candidate_priority(HOST_TYPE_PREFERENCE, local_preference),
        "address": address,
        "port": port,
        "protocol": protocol,
        "type": "host",
    }
    if protocol == "tcp":
        candidate["tcpType"] = "passive"
    return candidate


@dataclass
class IceLiteStats:
    received: int = 0
    malformed: int = 0  # not parseable as STUN: dropped
    ignored: int = 0  # indications and responses: dropped
    bad_requests: int = 0  # answered 400
    auth_failures: int = 0  # wrong ufrag, wrong password, bad integrity: no answer
    role_conflicts: int = 0  # answered 487
    valid_requests: int = 0  # answered with a success response
    dropped_closed: int = 0
    consent_expirations: int = 0


class IceLiteAgent:
    def __init__(
        self,
        *,
        username_fragment: str | None = None,
        password: str | None = None,
        consent_timeout: float = CONSENT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[str], None] | None = None,
        on_selected_tuple_change: Callable[[IceTuple | None], None] | None = None,
    ) -> None:
        self._ufrag = username_fragment or random_ice_string(USERNAME_FRAGMENT_LENGTH)
        self._password = password or random_ice_string(PASSWORD_LENGTH)
        self._old_credentials: tuple[str, str] | None = None
        self.remote_username_fragment: str | None = None  # checked only when known
        self.consent_timeout = consent_timeout
        self._clock = clock
        self.on_state_change = on_state_change
        self.on_selected_tuple_change = on_selected_tuple_change
        self._state = "new"
        self._selected: IceTuple | None = None
        # validated tuple -> time of its last valid check (insertion order = check order)
        self._tuples: dict[IceTuple, float] = {}
        self.stats = IceLiteStats()

    # -- parameters and state --------------------------------------------------------

    @property
    def username_fragment(self) -> str:
        return self._ufrag

    @property
    def password(self) -> str:
        return self._password

    @property
    def ice_parameters(self) -> dict[str, Any]:
        return {"usernameFragment": self._ufrag, "password": self._password, "iceLite": True}

    @property
    def state(self) -> str:
        return self._state

    @property
    def selected_tuple(self) -> IceTuple | None:
        return self._selected

    @property
    def validated_tuples(self) -> list[IceTuple]:
        return list(self._tuples)

    def is_validated(self, tuple_: IceTuple) -> bool:
        """True if `tuple_` passed a connectivity check and its consent has not expired:
        the transport accepts DTLS and media only from such tuples."""
        return tuple_ in self._tuples

    # -- input -----------------------------------------------------------------------

    def handle_stun(
        self, data: bytes, tuple_: IceTuple, now: float | None = None
    ) -> bytes | None:
        """Process one STUN datagram from `tuple_`; return the response to send back to
        `tuple_`, or None when nothing must be sent."""
        if self._state == "closed":
            self.stats.dropped_closed += 1
            return None
        self.stats.received += 1
        message = self._parse(data)
        if message is None:
            self.stats.malformed += 1
            return None
        if message.message_class != stun.Class.REQUEST:
            self.stats.ignored += 1
            return None
        if message.message_method != stun.Method.BINDING:
            return self._bad_request(message, "only Binding requests are supported")
        attributes = message.attributes
        for required in ("FINGERPRINT", "USERNAME", "MESSAGE-INTEGRITY", "PRIORITY"):
            if required not in attributes:
                return self._bad_request(message, f"missing {required}")

        key = self._authenticate(message)
        if key is None:
            self.stats.auth_failures += 1
            return None

        if "ICE-CONTROLLED" in attributes:
            self.stats.role_conflicts += 1
            return self._error(message, 487, "Role Conflict", key)

        self.stats.valid_requests += 1
        self._on_valid_check(tuple_, "USE-CANDIDATE" in attributes, self._now(now))
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=message.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (tuple_[0], tuple_[1])
        response.add_message_integrity(key)  # also adds FINGERPRINT
        return bytes(response)

    def remove_tuple(self, tuple_: IceTuple) -> None:
        """Forget a tuple whose path is gone (a closed TCP connection)."""
        if self._tuples.pop(tuple_, None) is not None and tuple_ == self._selected:
            self._reselect()

    # -- timers ----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """Clock time at which `poll()` has work to do, or None."""
        if not self._tuples or self._state == "closed":
            return None
        return min(self._tuples.values()) + self.consent_timeout

    def poll(self, now: float | None = None) -> None:
        """Expire the consent of tuples without a valid check for `consent_timeout`."""
        if self._state == "closed":
            return
        now = self._now(now)
        expired = [t for t, last in self._tuples.items() if now - last >= self.consent_timeout]
        if not expired:
            return
        for tuple_ in expired:
            del self._tuples[tuple_]
            self.stats.consent_expirations += 1
        if self._selected in expired:
            logger.debug("ICE consent expired on selected tuple %s", self._selected)
            self._reselect()

    # -- control ---------------------------------------------------------------------

    def restart(
        self, username_fragment: str | None = None, password: str | None = None
    ) -> dict[str, Any]:
        """New local credentials (returned as `ice_parameters`). The state and the selected
        tuple stay; the old credentials are accepted until the peer uses the new ones."""
        self._old_credentials = (self._ufrag, self._password)
        self._ufrag = username_fragment or random_ice_string(USERNAME_FRAGMENT_LENGTH)
        self._password = password or random_ice_string(PASSWORD_LENGTH)
        self.remote_username_fragment = None
        return self.ice_parameters

    def close(self) -> None:
        if self._state == "closed":
            return
        self._tuples.clear()
        self._selected = None
        self._set_state("closed")

    # -- internals -------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    @staticmethod
    def _parse(data: bytes) -> stun.Message | None:
        if len(data) < stun.HEADER_LENGTH or _COOKIE.unpack_from(data, 4)[0] != stun.COOKIE:
            return None
        try:
            return stun.parse_message(data)
        except Exception:  # any decoding error of untrusted bytes: drop, never crash
            return None

    def _authenticate(self, message: stun.Message) -> bytes | None:
        """Return the password (as the integrity key) that authenticates `message`."""
        username = message.attributes["USERNAME"]
        local, colon, remote = username.partition(":")
        if not colon or not remote:
            return None
        if self.remote_username_fragment is not None and remote != self.remote_username_fragment:
            return None
        if local == self._ufrag:
            key = self._password.encode()
            if message.check_message_integrity(key):
                self._old_credentials = None  # the peer has moved to the new credentials
                return key
            return None
        if self._old_credentials is not None and local == self._old_credentials[0]:
            key = self._old_credentials[1].encode()
            if message.check_message_integrity(key):
                return key
        return None

    def _bad_request(self, message: stun.Message, reason: str) -> bytes:
        self.stats.bad_requests += 1
        logger.debug("STUN request rejected with 400: %s", reason)
        return self._error(message, 400, "Bad Request", None)

    @staticmethod
    def _error(message: stun.Message, code: int, reason: str, key: bytes | None) -> bytes:
        response = stun.Message(
            message_method=message.message_method,
            message_class=stun.Class.ERROR,
            transaction_id=message.transaction_id,
        )
        response.attributes["ERROR-CODE"] = (code, reason)
        if key is not None:
            response.add_message_integrity(key)
        else:
            response.add_fingerprint()
        return bytes(response)

    def _on_valid_check(self, tuple_: IceTuple, use_candidate: bool, now: float) -> None:
        self._tuples.pop(tuple_, None)
        self._tuples[tuple_] = now  # re-insert: the order is "most recently checked last"
        if self._state in ("new", "disconnected"):
            self._select(tuple_)
            self._set_state("completed" if use_candidate else "connected")
        elif use_candidate:
            self._select(tuple_)
            if self._state == "connected":
                self._set_state("completed")

    def _reselect(self) -> None:
        if self._tuples:
            self._select(next(reversed(self._tuples)))
        else:
            self._select(None)
            if self._state in ("connected", "completed"):
                self._set_state("disconnected")

    def _select(self, tuple_: IceTuple | None) -> None:
        if tuple_ == self._selected:
            return
        self._selected = tuple_
        if self.on_selected_tuple_change is not None:
            self.on_selected_tuple_change(tuple_)

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        logger.debug("ICE state %s -> %s", self._state, state)
        self._state = state
        if self.on_state_change is not None:
            self.on_state_change(state)
