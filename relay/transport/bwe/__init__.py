"""Send-side bandwidth estimation toward a subscriber (GCC family, transport-cc feedback).

:class:`SendSideEstimator` is the entry point; the modules beside it are its parts, one idea
each (see estimator.py for the layout and what came from where).
"""

from relay.transport.bwe.estimator import SendSideEstimator, feedback_packets
from relay.transport.bwe.probe_controller import ProbeCluster
from relay.transport.bwe.send_history import SendHistory, SentPacket
from relay.transport.bwe.trendline import BandwidthUsage

__all__ = [
    "BandwidthUsage",
    "ProbeCluster",
    "SendHistory",
    "SendSideEstimator",
    "SentPacket",
    "feedback_packets",
]
