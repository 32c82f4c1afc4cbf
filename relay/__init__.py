"""relay: a WebRTC SFU whose media workers are Python processes driven from this controller.

    import relay
    worker = await relay.create_worker(rtc_min_port=40000, rtc_max_port=49999)
    router = await worker.create_router(media_codecs=[...])
"""

from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    NotFoundError,
    ProtocolError,
    RelayError,
    RequestTimeoutError,
    ResourceExhaustedError,
    UnknownMethodError,
    UnsupportedError,
    WorkerDiedError,
    WorkerStartError,
)

from .controller.consumer import Consumer
from .controller.pipe_transport import PipeTransport
from .controller.plain_transport import PlainTransport
from .controller.producer import Producer
from .controller.router import PipeToRouterResult, Router
from .controller.rtp_observer import ActiveSpeakerObserver, AudioLevelObserver, RtpObserver
from .controller.webrtc_server import WebRtcServer
from .controller.webrtc_transport import WebRtcTransport
from .controller.worker import Worker, create_worker
from .controller.worker_pool import WorkerPool

__version__ = "0.1.0"

__all__ = [
    "ActiveSpeakerObserver",
    "ArgumentError",
    "AudioLevelObserver",
    "Consumer",
    "InvalidStateError",
    "NotFoundError",
    "PipeToRouterResult",
    "PipeTransport",
    "PlainTransport",
    "Producer",
    "ProtocolError",
    "RelayError",
    "RequestTimeoutError",
    "ResourceExhaustedError",
    "Router",
    "RtpObserver",
    "UnknownMethodError",
    "UnsupportedError",
    "WebRtcServer",
    "WebRtcTransport",
    "Worker",
    "WorkerDiedError",
    "WorkerPool",
    "WorkerStartError",
    "__version__",
    "create_worker",
]
