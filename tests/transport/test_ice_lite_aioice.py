"""Interop: aioice's full ICE agent (the browser's role, controlling) against our ICE-lite
agent behind a real UDP socket on 127.0.0.1.

aioice never gathers loopback addresses (`aioice.ice.get_host_addresses` skips 127.0.0.1),
so these tests replace that one function, through pytest's monkeypatch, by one returning
["127.0.0.1"]: aioice then binds and checks from a real loopback socket as usual. aiortc's
RTCIceGatherer goes through the same function.
"""

import asyncio
import socket

import aioice
import aioice.ice
import pytest
from aioice import stun
from lite_udp_endpoint import LiteUdpEndpoint

from relay.transport.dtls import DtlsCertificate
from relay.transport.ice_lite import host_candidate


@pytest.fixture(autouse=True)
def loopback_gathering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def remote_candidate(address: tuple[str, int]) -> aioice.Candidate:
    c = host_candidate(address[0], address[1], "udp")
    return aioice.Candidate(
        foundation=c["foundation"], component=1, transport="udp", priority=c["priority"],
        host=c["address"], port=c["port"], type="host",
    )


async def connect_aioice(endpoint: LiteUdpEndpoint, *, remote_is_lite: bool) -> aioice.Connection:
    connection = aioice.Connection(ice_controlling=True, use_ipv6=False)
    await connection.gather_candidates()
    assert [c.host for c in connection.local_candidates] == ["127.0.0.1"]
    params = endpoint.ice.ice_parameters
    connection.remote_username = params["usernameFragment"]
    connection.remote_password = params["password"]
    # True: regular nomination (a check, then a check with USE-CANDIDATE), as browsers do
    # with an ICE-lite peer; False: aggressive nomination (USE-CANDIDATE on every check).
    connection.remote_is_lite = remote_is_lite
    await connection.add_remote_candidate(remote_candidate(endpoint.address))
    await connection.add_remote_candidate(None)
    await asyncio.wait_for(connection.connect(), 10)
    return connection


@pytest.mark.parametrize("remote_is_lite", [True, False], ids=["regular", "aggressive"])
def test_aioice_connects_and_nominates(remote_is_lite: bool) -> None:
    async def run() -> None:
        endpoint = await LiteUdpEndpoint.open(DtlsCertificate.generate())
        connection = await connect_aioice(endpoint, remote_is_lite=remote_is_lite)
        try:
            local = connection.local_candidates[0]
            expected = ("127.0.0.1", local.port, "udp")
            assert endpoint.ice.state == "completed"
            assert endpoint.ice.selected_tuple == expected
            assert endpoint.selected_tuples == [expected]
            if remote_is_lite:
                assert endpoint.ice_states == ["connected", "completed"]
            else:
                assert endpoint.ice_states == ["completed"]
            assert endpoint.ice.stats.auth_failures == 0
            # the tuple passed a check: its non-STUN datagrams are accepted now
            await connection.send(b"\x80\x60" + bytes(20))
            await asyncio.wait_for(endpoint.media_event.wait(), 5)
            assert endpoint.media == [b"\x80\x60" + bytes(20)]
        finally:
            await connection.close()
            endpoint.close()

    asyncio.run(run())


def test_wrong_password_gets_no_answer_and_unchecked_tuples_are_not_accepted() -> None:
    async def run() -> None:
        endpoint = await LiteUdpEndpoint.open(DtlsCertificate.generate())
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        try:
            def binding(password: str) -> tuple[bytes, bytes]:
                message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
                message.attributes["USERNAME"] = f"{endpoint.ice.username_fragment}:peer"
                message.attributes["PRIORITY"] = 1
                message.attributes["ICE-CONTROLLING"] = 1
                message.attributes["USE-CANDIDATE"] = None
                message.add_message_integrity(password.encode())
                return bytes(message), message.transaction_id

            # Media and DTLS before any check: dropped.
            sock.sendto(b"\x80\x60" + bytes(20), endpoint.address)
            sock.sendto(b"\x16\xfe\xfd" + bytes(20), endpoint.address)
            bad, bad_tid = binding("wrong-password-wrong-password")
            good, good_tid = binding(endpoint.ice.password)
            sock.sendto(bad, endpoint.address)
            sock.sendto(good, endpoint.address)
            # Loopback UDP keeps order and the endpoint answers in order: had the bad
            # request been answered, that answer would arrive first.
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
            response = stun.parse_message(data)
            assert response.transaction_id == good_tid != bad_tid
            assert response.message_class == stun.Class.RESPONSE
            assert endpoint.ice.stats.auth_failures == 1
            assert endpoint.dropped_unvalidated == 2
            assert endpoint.media == []
            assert endpoint.ice.state == "completed"
        finally:
            sock.close()
            endpoint.close()

    asyncio.run(run())
