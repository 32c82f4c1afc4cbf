from __future__ import annotations

import pytest

from worker_proto import errors
from worker_proto.errors import (
    ERROR_TYPES,
    ArgumentError,
    InvalidStateError,
    NotFoundError,
    RelayError,
    UnknownMethodError,
    UnsupportedError,
    error_from_wire,
    error_to_wire,
)


@pytest.mark.parametrize("cls", list(ERROR_TYPES.values()))
def test_every_wire_error_round_trips_by_name(cls):
    wire = error_to_wire(cls("boom"))
    assert wire == {"type": cls.__name__, "message": "boom"}
    back = error_from_wire(wire)
    assert type(back) is cls and str(back) == "boom"


def test_hierarchy():
    assert issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, RelayError)
    assert issubclass(NotFoundError, InvalidStateError)
    assert issubclass(UnknownMethodError, UnsupportedError)
    assert issubclass(errors.WorkerDiedError, RelayError)


def test_foreign_exceptions():
    assert error_to_wire(TypeError("t")) == {"type": "ArgumentError", "message": "t"}
    assert error_to_wire(ValueError("v")) == {"type": "ArgumentError", "message": "v"}
    assert error_to_wire(KeyError("k")) == {"type": "Error", "message": "KeyError: 'k'"}

    class Custom(UnsupportedError):
        pass

    assert error_to_wire(Custom("c")) == {"type": "UnsupportedError", "message": "c"}


def test_unknown_or_malformed_wire_errors_stay_relay_errors():
    unknown = error_from_wire({"type": "Error", "message": "KeyError: 'k'"})
    assert type(unknown) is RelayError and "KeyError" in str(unknown)
    assert isinstance(error_from_wire("nonsense"), errors.ProtocolError)
    assert type(error_from_wire({"message": 3})) is RelayError


def test_worker_died_error_carries_exit_details():
    error = errors.WorkerDiedError("gone", exit_code=None, signal="SIGKILL")
    assert (error.exit_code, error.signal) == (None, "SIGKILL")
