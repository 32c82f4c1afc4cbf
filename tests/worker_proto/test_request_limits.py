"""The bounds a request must keep (validation.py) and the controller-only timeout error."""

from __future__ import annotations

import pytest

import relay
from worker_proto import messages
from worker_proto.errors import (
    ERROR_TYPES,
    ArgumentError,
    ProtocolError,
    RelayError,
    RequestTimeoutError,
    error_to_wire,
)
from worker_proto.validation import (
    MAX_DATA_DEPTH,
    MAX_ID_LENGTH,
    MAX_STRING_LENGTH,
    brief,
    check_request_data,
    require_id,
)


def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_require_id_bounds_length_and_type():
    assert require_id({"routerId": "r" * MAX_ID_LENGTH}, "routerId") == "r" * MAX_ID_LENGTH
    for bad in ("r" * (MAX_ID_LENGTH + 1), "", None, 5, ["r"], {"r": 1}):
        with pytest.raises(ArgumentError, match=f"routerId must be .* at most {MAX_ID_LENGTH}"):
            require_id({"routerId": bad}, "routerId")
    with pytest.raises(ArgumentError, match="got 257 characters"):
        require_id({"x": "x" * 257}, "x")


def test_depth_counts_data_itself_and_names_the_path():
    check_request_data({"a": nested_lists(MAX_DATA_DEPTH - 1)})
    with pytest.raises(ArgumentError) as info:
        check_request_data({"a": nested_lists(MAX_DATA_DEPTH)})
    assert str(info.value).startswith("data.a[0][0]")
    assert f"nested deeper than {MAX_DATA_DEPTH} levels" in str(info.value)


def test_long_strings_and_keys_are_refused_anywhere():
    check_request_data({"k" * MAX_STRING_LENGTH: ["v" * MAX_STRING_LENGTH]})
    with pytest.raises(ArgumentError, match=r"^data\.codecs\[1\]\.x: a string of 4097"):
        check_request_data({"codecs": [{}, {"x": "v" * (MAX_STRING_LENGTH + 1)}]})
    with pytest.raises(ArgumentError, match="a key of 4097 characters"):
        check_request_data({"p": {"k" * (MAX_STRING_LENGTH + 1): 1}})
    # The path shows long keys cut short.
    with pytest.raises(ArgumentError, match=r"^data\.kkkk.{33}\.\.\.\.x"):
        check_request_data({"k" * 100: {"x": "v" * (MAX_STRING_LENGTH + 1)}})


def test_the_payload_shortcut_never_skips_a_bad_request():
    """Given its payload, a request that cannot break a bound is not walked; every one that
    does is still refused (depth needs as many brackets, a long string as many bytes)."""
    bad = ({"a": nested_lists(MAX_DATA_DEPTH)}, {"s": "é" * (MAX_STRING_LENGTH + 1)},
           {"k" * (MAX_STRING_LENGTH + 1): 0})
    for data in bad:
        payload = messages.encode_message(messages.make_request(1, "x.y", "", data))
        with pytest.raises(ArgumentError):
            check_request_data(data, payload)
    fine = {"a": nested_lists(MAX_DATA_DEPTH - 1), "s": "é" * 100}
    check_request_data(fine, messages.encode_message(messages.make_request(1, "x.y", "", fine)))


def test_brief_cuts_for_messages():
    assert brief("abc") == "abc"
    assert brief("x" * 200) == "x" * 77 + "..."


def test_stdlib_decoder_turns_deep_nesting_into_a_protocol_error(monkeypatch):
    monkeypatch.setattr(messages, "_orjson", None)  # the fallback when orjson is missing
    payload = b'{"kind":"request","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ProtocolError):
        messages.decode_message(payload)


def test_request_timeout_error_is_a_timeout_and_never_on_the_wire():
    error = RequestTimeoutError("router.dump on handler 'r': no response within 2 s",
                                method="router.dump", handler_id="r", timeout=2.0,
                                request_id=7)
    assert isinstance(error, TimeoutError) and isinstance(error, RelayError)
    assert (error.method, error.handler_id, error.timeout, error.request_id) == (
        "router.dump", "r", 2.0, 7)
    assert "RequestTimeoutError" not in ERROR_TYPES
    assert error_to_wire(error)["type"] == "RelayError"
    assert relay.RequestTimeoutError is RequestTimeoutError
