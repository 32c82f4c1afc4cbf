"""worker_proto stands alone, and PROTOCOL.md documents every name it defines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import worker_proto
from worker_proto import methods
from worker_proto.errors import ERROR_TYPES

PROTOCOL_MD = Path(worker_proto.__file__).with_name("PROTOCOL.md")


def test_worker_proto_imports_nothing_from_relay():
    code = ("import sys, worker_proto, worker_proto.framing, worker_proto.messages, "
            "worker_proto.methods, worker_proto.errors, worker_proto.version; "
            "bad = [m for m in sys.modules if m == 'relay' or m.startswith('relay.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(worker_proto.__file__).parents[1])


def test_method_names_are_unique_and_namespaced():
    groups = [methods.WorkerMethod, methods.RouterMethod, methods.TransportMethod,
              methods.ProducerMethod, methods.ConsumerMethod, methods.RtpObserverMethod]
    names = [v for g in groups for k, v in vars(g).items() if k.isupper()]
    assert len(names) == len(set(names)) == len(methods.ALL_METHODS)
    prefixes = {"worker", "router", "transport", "producer", "consumer", "rtpObserver"}
    assert all(name.split(".")[0] in prefixes for name in names)


def test_protocol_md_documents_every_method_event_and_error():
    text = PROTOCOL_MD.read_text()
    for name in sorted(methods.ALL_METHODS | methods.ALL_EVENTS | set(ERROR_TYPES)):
        assert f"`{name}`" in text, name
    assert str(worker_proto.MAX_FRAME_SIZE) in text
    assert f"version {worker_proto.PROTOCOL_VERSION}" in text.lower()
