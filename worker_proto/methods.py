"""Every method and event name of the protocol, and the worker's own handler id."""

from __future__ import annotations

# The handlerId of worker-level requests and notifications.
WORKER_HANDLER_ID = ""


class WorkerMethod:
    DUMP = "worker.dump"
    GET_RESOURCE_USAGE = "worker.getResourceUsage"
    CREATE_ROUTER = "worker.createRouter"
    CLOSE = "worker.close"
    CREATE_WEBRTC_SERVER = "worker.createWebRtcServer"
    CLOSE_WEBRTC_SERVER = "worker.closeWebRtcServer"  # {webRtcServerId}
    DUMP_WEBRTC_SERVER = "worker.dumpWebRtcServer"  # handlerId = the webRtcServerId


class RouterMethod:
    CLOSE = "router.close"
    DUMP = "router.dump"
    CREATE_PLAIN_TRANSPORT = "router.createPlainTransport"
    CREATE_WEBRTC_TRANSPORT = "router.createWebRtcTransport"
    CREATE_PIPE_TRANSPORT = "router.createPipeTransport"  # {transportId, listenInfo, enableSrtp, enableRtx}
    CREATE_AUDIO_LEVEL_OBSERVER = "router.createAudioLevelObserver"  # {rtpObserverId, maxEntries, threshold, interval}
    CREATE_ACTIVE_SPEAKER_OBSERVER = "router.createActiveSpeakerObserver"  # {rtpObserverId, interval}


class TransportMethod:
    CLOSE = "transport.close"
    DUMP = "transport.dump"
    GET_STATS = "transport.getStats"
    CONNECT = "transport.connect"
    PRODUCE = "transport.produce"
    CONSUME = "transport.consume"
    RESTART_ICE = "transport.restartIce"  # WebRTC transports
    SET_MAX_INCOMING_BITRATE = "transport.setMaxIncomingBitrate"
    SET_MAX_OUTGOING_BITRATE = "transport.setMaxOutgoingBitrate"  # WebRTC transports
    ENABLE_TRACE_EVENT = "transport.enableTraceEvent"  # {types: ["bwe"]}


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
    SET_PREFERRED_LAYERS = "consumer.setPreferredLayers"  # {spatialLayer, temporalLayer?}
    SET_PRIORITY = "consumer.setPriority"  # {priority: 1..255}


class RtpObserverMethod:  # handlerId = the rtpObserverId
    CLOSE = "rtpObserver.close"
    DUMP = "rtpObserver.dump"
    PAUSE = "rtpObserver.pause"
    RESUME = "rtpObserver.resume"
    ADD_PRODUCER = "rtpObserver.addProducer"  # {producerId}
    REMOVE_PRODUCER = "rtpObserver.removeProducer"  # {producerId}


class WorkerEvent:
    RUNNING = "running"  # first notification, once the worker accepts requests


class TransportEvent:
    TUPLE = "tuple"  # comedia learned the remote RTP address: {tuple}
    RTCP_TUPLE = "rtcptuple"  # comedia learned the remote RTCP address: {rtcpTuple}
    ICE_STATE_CHANGE = "icestatechange"  # {iceState}
    ICE_SELECTED_TUPLE_CHANGE = "iceselectedtuplechange"  # {iceSelectedTuple}
    DTLS_STATE_CHANGE = "dtlsstatechange"  # {dtlsState, dtlsRemoteCert?, reason?}
    WEBRTC_SERVER_CLOSE = "webrtcserverclose"  # the transport's WebRtcServer closed it
    TRACE = "trace"  # {type: "bwe", timestamp, direction: "out", info: {...}}


class ConsumerEvent:
    PRODUCER_CLOSE = "producerclose"
    PRODUCER_PAUSE = "producerpause"
    PRODUCER_RESUME = "producerresume"
    SCORE = "score"  # {score, producerScore, producerScores}
    LAYERS_CHANGE = "layerschange"  # {spatialLayer, temporalLayer} | null (simulcast)


class RtpObserverEvent:
    VOLUMES = "volumes"  # [{producerId, volume}] loudest first
    SILENCE = "silence"  # null
    DOMINANT_SPEAKER = "dominantspeaker"  # {producerId}


class ProducerEvent:
    SCORE = "score"  # [{encodingIdx, ssrc, rid, score}]


def _names(*groups: type) -> frozenset[str]:
    return frozenset(
        value
        for group in groups
        for key, value in vars(group).items()
        if key.isupper() and isinstance(value, str)
    )


ALL_METHODS: frozenset[str] = _names(
    WorkerMethod, RouterMethod, TransportMethod, ProducerMethod, ConsumerMethod, RtpObserverMethod
)
ALL_EVENTS: frozenset[str] = _names(
    WorkerEvent, TransportEvent, ConsumerEvent, ProducerEvent, RtpObserverEvent
)
