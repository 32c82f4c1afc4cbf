"""The compiled traffic core (`_traffic`), built on first use if the install did not build it,
and libsrtp's protect/unprotect as C function pointers the core can call."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def _build_in_place() -> None:
    """Compile _traffic beside this file (what setup.py's cffi_modules does at install)."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        # Out of the source tree: setuptools would otherwise read the project's pyproject.toml.
        os.chdir(tmp)
        sys.path.insert(0, str(HERE))
        try:
            sys.modules.pop("_build", None)
            import _build  # type: ignore[import-not-found]

            built = Path(_build.ffibuilder.compile(tmpdir=tmp, verbose=False))
            shutil.copy(built, HERE / built.name)
        finally:
            sys.path.remove(str(HERE))
            sys.modules.pop("_build", None)
            os.chdir(cwd)
    log.warning("relay-loadtest: built its C helper in place (%s)", HERE)


def load() -> tuple[Any, Any]:
    """(ffi, lib) of the traffic core."""
    try:
        module = importlib.import_module("relay.loadtest._traffic")
    except ImportError:
        _build_in_place()
        module = importlib.import_module("relay.loadtest._traffic")
    return module.ffi, module.lib


ffi, lib = load()


def srtp_functions() -> tuple[Any, Any]:
    """libsrtp's srtp_protect and srtp_unprotect from pylibsrtp's own library, as this
    ffi's lt_srtp_fn: the harness encrypts with the same libsrtp the worker uses."""
    from pylibsrtp._binding import ffi as srtp_ffi
    from pylibsrtp._binding import lib as srtp_lib

    def pointer(name: str) -> Any:
        address = int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, name)))
        return ffi.cast("lt_srtp_fn", address)

    return pointer("srtp_protect"), pointer("srtp_unprotect")


def srtp_context(session: Any) -> Any:
    """The srtp_t of a pylibsrtp Session, as a void * for the core."""
    from pylibsrtp._binding import ffi as srtp_ffi

    return ffi.cast("void *", int(srtp_ffi.cast("uintptr_t", session._srtp[0])))
