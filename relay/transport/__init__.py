"""Worker-side transports and what they are made of: UDP ports, SRTP, plain RTP transport
(and, later, ICE-lite, DTLS, WebRTC and pipe transports)."""
