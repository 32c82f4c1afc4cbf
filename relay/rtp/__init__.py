"""RTP/RTCP on the worker: packet parsing, per-consumer rewriting, and (later) NACK, RTCP."""
