import random
import string

import pytest
from aioice import stun

from relay.transport.ice_lite import (
    PASSWORD_LENGTH,
    USERNAME_FRAGMENT_LENGTH,
    IceLiteAgent,
    candidate_priority,
    host_candidate,
)

TUPLE_A = ("127.0.0.1", 40000, "udp")
TUPLE_B = ("127.0.0.1", 40001, "udp")
TUPLE_TCP = ("127.0.0.1", 40002, "tcp")
REMOTE_UFRAG = "peer"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(
    agent: IceLiteAgent,
    *,
    use_candidate: bool = False,
    password: str | None = None,
    username: str | None = None,
    controlling: bool = True,
    drop: tuple[str, ...] = (),
    method: stun.Method = stun.Method.BINDING,
    message_class: stun.Class = stun.Class.REQUEST,
) -> tuple[bytes, bytes]:
    """A Binding request as a browser sends it; returns (datagram, transaction id)."""
    message = stun.Message(message_method=method, message_class=message_class)
    message.attributes["USERNAME"] = username or f"{agent.username_fragment}:{REMOTE_UFRAG}"
    message.attributes["PRIORITY"] = 1853817087
    if controlling:
        message.attributes["ICE-CONTROLLING"] = 0x1234
    else:
        message.attributes["ICE-CONTROLLED"] = 0x1234
    if use_candidate:
        message.attributes["USE-CANDIDATE"] = None
    for name in drop:
        message.attributes.pop(name, None)
    if "MESSAGE-INTEGRITY" not in drop:
        message.add_message_integrity((password or agent.password).encode())
    if "FINGERPRINT" in drop:
        message.attributes.pop("FINGERPRINT", None)
    elif "FINGERPRINT" not in message.attributes:
        message.add_fingerprint()
    return bytes(message), message.transaction_id


def make_agent(**kwargs):
    events: list[tuple[str, object]] = []
    clock = kwargs.pop("clock", FakeClock())
    agent = IceLiteAgent(
        clock=clock,
        on_state_change=lambda s: events.append(("state", s)),
        on_selected_tuple_change=lambda t: events.append(("tuple", t)),
        **kwargs,
    )
    return agent, events, clock


def parse_response(agent: IceLiteAgent, data: bytes, transaction_id: bytes) -> stun.Message:
    response = stun.parse_message(data)  # verifies FINGERPRINT
    assert "FINGERPRINT" in response.attributes
    assert response.transaction_id == transaction_id
    return response


def test_ice_parameters_and_credentials() -> None:
    agent = IceLiteAgent()
    params = agent.ice_parameters
    assert set(params) == {"usernameFragment", "password", "iceLite"}
    assert params["iceLite"] is True
    assert len(params["usernameFragment"]) == USERNAME_FRAGMENT_LENGTH >= 4
    assert len(params["password"]) == PASSWORD_LENGTH >= 22
    ice_chars = set(string.ascii_letters + string.digits + "+/")
    assert set(params["usernameFragment"] + params["password"]) <= ice_chars
    assert IceLiteAgent().ice_parameters != params
    assert agent.state == "new" and agent.selected_tuple is None


def test_valid_request_gets_authenticated_success_with_mapped_address() -> None:
    agent, events, _ = make_agent()
    data, tid = request(agent)
    response = parse_response(agent, agent.handle_stun(data, TUPLE_A), tid)
    assert response.message_class == stun.Class.RESPONSE
    assert response.message_method == stun.Method.BINDING
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("127.0.0.1", 40000)
    assert response.check_message_integrity(agent.password.encode())
    assert agent.stats.valid_requests == 1
    # without USE-CANDIDATE: connected, tuple selected (tuple event first, like mediasoup)
    assert events == [("tuple", TUPLE_A), ("state", "connected")]
    assert agent.selected_tuple == TUPLE_A
    assert agent.is_validated(TUPLE_A) and not agent.is_validated(TUPLE_B)


def test_use_candidate_nominates_new_to_completed() -> None:
    agent, events, _ = make_agent()
    data, _ = request(agent, use_candidate=True)
    assert agent.handle_stun(data, TUPLE_A) is not None
    assert events == [("tuple", TUPLE_A), ("state", "completed")]


def test_connected_then_nomination_of_another_tuple_then_switch() -> None:
    agent, events, _ = make_agent()
    agent.handle_stun(request(agent)[0], TUPLE_A)
    agent.handle_stun(request(agent)[0], TUPLE_B)  # validated, not selected
    assert agent.selected_tuple == TUPLE_A and agent.is_validated(TUPLE_B)
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_B)
    assert agent.state == "completed" and agent.selected_tuple == TUPLE_B
    # in completed, a plain check changes nothing; USE-CANDIDATE on another tuple switches
    agent.handle_stun(request(agent)[0], TUPLE_TCP)
    assert agent.selected_tuple == TUPLE_B
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_TCP)
    assert agent.selected_tuple == TUPLE_TCP
    assert events == [
        ("tuple", TUPLE_A), ("state", "connected"),
        ("tuple", TUPLE_B), ("state", "completed"),
        ("tuple", TUPLE_TCP),
    ]


@pytest.mark.parametrize("case", ["password", "ufrag", "no-remote-ufrag", "no-colon"])
def test_wrong_credentials_get_no_answer(case: str) -> None:
    agent, events, _ = make_agent()
    if case == "password":
        data, _ = request(agent, password="x" * 22)
    elif case == "ufrag":
        data, _ = request(agent, username=f"someoneelse:{REMOTE_UFRAG}")
    elif case == "no-remote-ufrag":
        data, _ = request(agent, username=f"{agent.username_fragment}:")
    else:
        data, _ = request(agent, username=agent.username_fragment)
    assert agent.handle_stun(data, TUPLE_A) is None
    assert agent.stats.auth_failures == 1
    assert events == [] and not agent.is_validated(TUPLE_A)


def test_known_remote_ufrag_is_checked() -> None:
    agent, _, _ = make_agent()
    agent.remote_username_fragment = "other"
    assert agent.handle_stun(request(agent)[0], TUPLE_A) is None
    agent.remote_username_fragment = REMOTE_UFRAG
    assert agent.handle_stun(request(agent)[0], TUPLE_A) is not None


def test_tampered_message_is_dropped() -> None:
    agent, _, _ = make_agent()
    data = bytearray(request(agent)[0])
    data[30] ^= 0xFF  # inside USERNAME: FINGERPRINT no longer matches
    assert agent.handle_stun(bytes(data), TUPLE_A) is None
    assert agent.stats.malformed == 1


@pytest.mark.parametrize("missing", ["USERNAME", "PRIORITY", "MESSAGE-INTEGRITY", "FINGERPRINT"])
def test_missing_attribute_gets_400(missing: str) -> None:
    agent, events, _ = make_agent()
    data, tid = request(agent, drop=(missing,))
    response = parse_response(agent, agent.handle_stun(data, TUPLE_A), tid)
    assert response.message_class == stun.Class.ERROR
    assert response.error_code == 400
    assert agent.stats.bad_requests == 1 and events == []


def test_other_method_gets_400() -> None:
    agent, _, _ = make_agent()
    data, tid = request(agent, method=stun.Method.ALLOCATE)
    assert parse_response(agent, agent.handle_stun(data, TUPLE_A), tid).error_code == 400


def test_role_conflict_gets_authenticated_487() -> None:
    agent, events, _ = make_agent()
    data, tid = request(agent, controlling=False)
    response = parse_response(agent, agent.handle_stun(data, TUPLE_A), tid)
    assert response.error_code == 487
    assert response.check_message_integrity(agent.password.encode())
    assert agent.stats.role_conflicts == 1 and events == []


def test_indications_and_responses_are_ignored() -> None:
    agent, _, _ = make_agent()
    for message_class in (stun.Class.INDICATION, stun.Class.RESPONSE, stun.Class.ERROR):
        data, _ = request(agent, message_class=message_class)
        assert agent.handle_stun(data, TUPLE_A) is None
    assert agent.stats.ignored == 3 and agent.state == "new"


def test_garbage_never_raises() -> None:
    agent, events, _ = make_agent()
    valid, _ = request(agent)
    rng = random.Random(8445)
    samples = [b"", b"\x00", bytes(19), bytes(20), valid[:-1], valid + b"\x00",
               b"\x00\x01\x00\x00" + bytes(16)]  # wrong magic cookie
    for _ in range(2000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        samples.append(bytes(data[: rng.randint(0, len(data))]))
        samples.append(rng.randbytes(rng.randint(0, 120)))
    for data in samples:
        agent.handle_stun(data, TUPLE_A)  # must not raise
    assert agent.stats.malformed > 0
    assert agent.stats.received == len(samples)


def test_consent_expires_after_30_s_and_comes_back() -> None:
    agent, events, clock = make_agent()
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_A)
    assert agent.next_deadline() == clock.now + 30.0
    clock.now += 20.0
    agent.handle_stun(request(agent)[0], TUPLE_A)  # consent refreshed
    clock.now += 29.0
    agent.poll()
    assert agent.state == "completed" and agent.is_validated(TUPLE_A)
    clock.now += 1.0
    agent.poll()
    assert agent.state == "disconnected"
    assert agent.selected_tuple is None and not agent.is_validated(TUPLE_A)
    assert agent.stats.consent_expirations == 1
    assert agent.next_deadline() is None
    agent.handle_stun(request(agent)[0], TUPLE_A)
    assert agent.state == "connected" and agent.selected_tuple == TUPLE_A
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_A)
    assert [e for e in events if e[0] == "state"] == [
        ("state", "completed"), ("state", "disconnected"),
        ("state", "connected"), ("state", "completed"),
    ]


def test_consent_expiry_of_selected_tuple_falls_back_to_a_fresh_one() -> None:
    agent, events, clock = make_agent()
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_A)
    clock.now += 10.0
    agent.handle_stun(request(agent)[0], TUPLE_B)
    clock.now += 20.0
    agent.poll()
    assert agent.selected_tuple == TUPLE_B and agent.state == "completed"
    assert not agent.is_validated(TUPLE_A)


def test_remove_tuple() -> None:
    agent, _, _ = make_agent()
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_TCP)
    agent.remove_tuple(TUPLE_TCP)
    assert agent.state == "disconnected" and agent.selected_tuple is None
    agent.remove_tuple(TUPLE_TCP)  # unknown tuple: nothing happens


def test_restart_keeps_old_credentials_until_the_new_ones_are_used() -> None:
    agent, events, _ = make_agent()
    agent.handle_stun(request(agent, use_candidate=True)[0], TUPLE_A)
    old_ufrag, old_password = agent.username_fragment, agent.password
    params = agent.restart()
    assert params["usernameFragment"] != old_ufrag and params["password"] != old_password
    assert agent.state == "completed" and agent.selected_tuple == TUPLE_A
    old = request(agent, username=f"{old_ufrag}:{REMOTE_UFRAG}", password=old_password)
    response = parse_response(agent, agent.handle_stun(old[0], TUPLE_A), old[1])
    assert response.check_message_integrity(old_password.encode())
    new = request(agent)
    response = parse_response(agent, agent.handle_stun(new[0], TUPLE_A), new[1])
    assert response.check_message_integrity(agent.password.encode())
    old = request(agent, username=f"{old_ufrag}:{REMOTE_UFRAG}", password=old_password)
    assert agent.handle_stun(old[0], TUPLE_A) is None
    given = agent.restart("abcd", "p" * 22)
    assert given == {"usernameFragment": "abcd", "password": "p" * 22, "iceLite": True}


def test_close() -> None:
    agent, events, _ = make_agent()
    agent.handle_stun(request(agent)[0], TUPLE_A)
    agent.close()
    assert agent.state == "closed" and not agent.is_validated(TUPLE_A)
    assert agent.handle_stun(request(agent)[0], TUPLE_A) is None
    assert agent.stats.dropped_closed == 1
    assert events[-1] == ("state", "closed")


def test_host_candidates_in_mediasoup_client_shape() -> None:
    udp = host_candidate("127.0.0.1", 5000, "udp")
    assert udp == {
        "foundation": "udpcandidate",
        "priority": candidate_priority(126, 65535),
        "address": "127.0.0.1",
        "port": 5000,
        "protocol": "udp",
        "type": "host",
    }
    tcp = host_candidate("127.0.0.1", 5001, "tcp", local_preference=100)
    assert tcp["tcpType"] == "passive" and tcp["protocol"] == "tcp"
    assert tcp["priority"] < udp["priority"]
    assert candidate_priority(126, 65535, 1) == 2130706431  # RFC 8445's usual host value
    with pytest.raises(ValueError):
        host_candidate("127.0.0.1", 1, "sctp")
