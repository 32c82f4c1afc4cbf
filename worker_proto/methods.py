"""Every method and event name of the protocol, and the worker's own handler id."""

from __future__ import annotations

# The handlerId of worker-level requests and notifications.
WORKER_HANDLER_ID = ""


class WorkerMethod:
    DUMP = "worker.dump"
    GET_RESOURCE_USAGE = "worker.getResourceUsage"
    CREATE_ROUTER = "worker.createRouter"
    CLOSE = "worker.close"


class RouterMethod:
    CLOSE = "router.close"
    DUMP = "router.dump"
    CREATE_PLAIN_TRANSPORT = "router.createPlainTransport"


class TransportMethod:
    CLOSE = "transport.close"
    DUMP = "transport.dump"
    GET_STATS = "transport.getStats"
    CONNECT = "transport.connect"
    PRODUCE = "transport.produce"
    CONSUME = "transport.consume"


class ProducerMethod:
    CLOSE = "producer.close"
    DUMP = "producer.dump"
    GET_STATS = "producer.getStats"
    PAUSE = "producer.pause"
    RESUME = "producer.resume"


class ConsumerMethod:
    CLOSE = "consumer.close"
    DUMP = "consumer.dump"
    GET_STATS = "consumer.getStats"
    PAUSE = "consumer.pause"
    RESUME = "consumer.resume"
    REQUEST_KEY_FRAME = "consumer.requestKeyFrame"


class WorkerEvent:
    RUNNING = "running"  # first notification, once the worker accepts requests


class TransportEvent:
    TUPLE = "tuple"  # comedia learned the remote RTP address: {tuple}
    RTCP_TUPLE = "rtcptuple"  # comedia learned the remote RTCP address: {rtcpTuple}


class ConsumerEvent:
    PRODUCER_CLOSE = "producerclose"
    PRODUCER_PAUSE = "producerpause"
    PRODUCER_RESUME = "producerresume"


def _names(*groups: type) -> frozenset[str]:
    return frozenset(
        value
        for group in groups
        for key, value in vars(group).items()
        if key.isupper() and isinstance(value, str)
    )


ALL_METHODS: frozenset[str] = _names(
    WorkerMethod, RouterMethod, TransportMethod, ProducerMethod, ConsumerMethod
)
ALL_EVENTS: frozenset[str] = _names(WorkerEvent, TransportEvent, ConsumerEvent)
