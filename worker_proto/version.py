"""The protocol version both ends must agree on before any request is sent."""

# Bump on any incompatible change to framing, message shapes, method or event names.
PROTOCOL_VERSION = 1
